"""Recording a Hamiltonian network's energies: what its distillation searches, and its training monitor.

A pair energy is identified only up to terms without r (a function of the masses and charges alone
exerts no force), so what is recorded and compared is *gauge-fixed*: the difference
U(r) - U(r_ref) at the same masses and charges, with r_ref a fixed distance inside the data (the
model's distance scale). Likewise the self energy is recorded as T(p) - T(0) at the same m and q.
The truth is fixed the same way, so a perfect network has R^2 = 1 whatever its offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from symdistill.graphs.batch import GraphBatch
from symdistill.train.metrics import _graph_subset, affine_fit


@dataclass
class EnergyRecord:
    """Recorded energies (float64 numpy).

    Attributes:
        pair: named 1-D arrays [E]: ``r, m1, m2, q1, q2``.
        pair_energy: [E] the network's U(r) - U(r_ref) (symmetric in the two ends).
        pair_truth: [E] the law's U(r) - U(r_ref), or None.
        self_inputs: named 1-D arrays [V]: ``p, m, q`` (p = |m v|).
        self_energy: [V] the network's T(p) - T(0).
        self_truth: [V] p^2 / 2m - 0.
        r_ref: the reference distance.
    """

    pair: dict[str, np.ndarray]
    pair_energy: np.ndarray
    pair_truth: np.ndarray | None
    self_inputs: dict[str, np.ndarray]
    self_energy: np.ndarray
    self_truth: np.ndarray
    r_ref: float


@torch.no_grad()
def record_energies(model, data, *, law=None, max_graphs: int | None = None, seed: int = 0) -> EnergyRecord:
    """The gauge-fixed pair energy of every edge and self energy of every node of ``data`` (a
    GraphBatch or GraphData; ``max_graphs`` keeps a seeded random subset of whole graphs)."""
    model.eval()
    data = _graph_subset(data, max_graphs, seed)
    law = law if law is not None else getattr(data, "law", None)
    b = (data if isinstance(data, GraphBatch) else data.batch()).to(model.device)
    problem = model.problem
    x = problem.record_features(b)                         # [E, 5] float64: r, m1, m2, q1, q2
    r_ref = float(model.edge_scale[0])
    ref = x.clone()
    ref[:, 0] = r_ref
    sym = lambda z: model.symmetric_pair_energy(z.float()).double()  # noqa: E731
    pair_energy = (sym(x) - sym(ref)).cpu().numpy()
    truth = None
    if law is not None and law.has_truth:
        u = lambda z: law.pair_energy(*(z[:, k] for k in range(5)))  # noqa: E731
        truth = (u(x) - u(ref)).cpu().numpy()
    s = problem.self_features(b)                            # [V, 3] float64: p, m, q
    feats = lambda p: torch.stack([p * p, s[:, 1], s[:, 2]], dim=1).float()  # noqa: E731
    t = (model.self_energy(feats(s[:, 0])) - model.self_energy(feats(torch.zeros_like(s[:, 0])))).double()
    return EnergyRecord(
        pair={n: x[:, i].cpu().numpy() for i, n in enumerate(problem.record_names)},
        pair_energy=pair_energy, pair_truth=truth,
        self_inputs={n: s[:, i].cpu().numpy() for i, n in enumerate(problem.self_names)},
        self_energy=t.cpu().numpy(), self_truth=(s[:, 0] ** 2 / (2 * s[:, 1])).cpu().numpy(), r_ref=r_ref)


#: The bulk R^2 leaves out this fraction of the records with the largest true |energy|.
BULK_FRACTION = 0.01


def energy_r2(record: EnergyRecord, *, bulk: bool = False) -> tuple[float, float]:
    """(R^2 of the pair energy, of the self energy) against the truth by one scale and offset each;
    NaN for the pair without a known law. ``bulk``: without the 1% of records with the largest true
    |energy| (the heaviest pairs, the fastest bodies: rare in the data, and there the R^2 of all records
    is theirs)."""
    def r2(y, t):
        if t is None or not np.isfinite(y).all():
            return float("nan")
        if bulk:
            keep = np.abs(t) <= np.quantile(np.abs(t), 1 - BULK_FRACTION)
            y, t = y[keep], t[keep]
        return float(affine_fit(t[:, None], y[:, None])[2][0])
    return r2(record.pair_energy, record.pair_truth), r2(record.self_energy, record.self_truth)
