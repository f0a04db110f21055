"""Metrics and message recording: what the distillation stage reads from a trained network.

- :func:`record_messages`: edge inputs as named 1-D arrays, messages, true pair forces.
- :func:`top_components`: the significant message components (PAPER.md §4).
- :func:`force_r2`: the paper's Table-1 metric.
- :func:`record_nodes`: node inputs and summed messages, to distill the node model.
- :func:`test_mae`: mean absolute error on accelerations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from symdistill.graphs.batch import GraphBatch
from symdistill.problems import NBodyForces
from symdistill.simulate.potentials import Law

#: A component is "active" when its significance is at least this fraction of the largest.
ACTIVE_FRACTION = 0.01


@dataclass
class MessageRecord:
    """Recorded edge data.

    Attributes:
        inputs: named 1-D arrays [E], the problem's ``record_names`` (N-body: ``dx, dy, (dz), r, m1,
            m2, q1, q2, dvx, dvy, (dvz)`` with dx = receiver - sender and r = |dx| + 0.01, the
            ground-truth laws' variables), whatever edge inputs the model itself uses.
        messages: [E, M] messages (means for ``kl``), float64.
        significance: [M] per-component std (standard, bottleneck, l1) or mean KL (kl).
        variant: the model's message variant.
        dim: how many components the true messages have (N-body: the spatial dimension).
        forces: [E, K] the ground truth of the messages, the problem's ``edge_truth`` (N-body: the true
            pair force on the receiver; None if the law is unknown).
        edge_index: [2, E] within the recorded graphs (row 0 sender, row 1 receiver).
    """

    inputs: dict[str, np.ndarray]
    messages: np.ndarray
    significance: np.ndarray
    variant: str
    dim: int
    forces: np.ndarray | None = None
    edge_index: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.messages.shape[0]


def _as_batch(data) -> GraphBatch:
    return data if isinstance(data, GraphBatch) else data.batch()


def _graph_subset(data, max_graphs: int | None, seed: int):
    n = data.n_graphs if isinstance(data, GraphBatch) else len(data)
    if max_graphs is None or n <= max_graphs:
        return data
    idx = torch.as_tensor(np.sort(np.random.default_rng(seed).choice(n, max_graphs, replace=False)))
    return data.select_graphs(idx) if isinstance(data, GraphBatch) else data.subset(idx)


def pair_forces(law: Law, batch: GraphBatch) -> np.ndarray:
    """True pair force on the receiver of every edge, [E, D] float64 (damping excluded: not a pair force)."""
    return NBodyForces(batch.dim).edge_truth(law, batch)


@torch.no_grad()
def record_messages(model, data, *, max_edges: int | None = None, law: Law | None = None,
                    seed: int = 0, chunk_graphs: int = 4096) -> MessageRecord:
    """Run the edge model on ``data`` (a GraphBatch or GraphData) and record its inputs and messages.

    ``max_edges`` keeps a random subset of whole graphs (seeded). ``law`` (default: the data's, if
    any) gives the true pair forces. The model is evaluated in eval mode (kl: means).
    """
    model.eval()
    problem = model.problem
    if max_edges is not None:
        per_graph = _edges_per_graph(data)
        data = _graph_subset(data, max(1, max_edges // per_graph), seed)
    law = law if law is not None else getattr(data, "law", None)
    batches = _chunks(data, chunk_graphs)
    feats, raws, forces, edges, offset = [], [], [], [], 0
    for b in batches:
        raws.append(model.edge_raw(b.to(model.device)).double().cpu())
        feats.append(problem.record_features(b))
        edges.append(b.edge_index + offset)
        offset += b.n_nodes
        truth = problem.edge_truth(law, b)
        if truth is not None:
            forces.append(truth)
    raw = torch.cat(raws)
    f = torch.cat(feats).cpu().numpy()
    return MessageRecord(
        inputs={n: f[:, i].copy() for i, n in enumerate(problem.record_names)},
        messages=model.variant.messages(raw).numpy(),
        significance=model.variant.significance(raw).numpy(),
        variant=model.variant.name, dim=problem.message_width,
        forces=np.concatenate(forces) if forces else None,
        edge_index=torch.cat(edges, dim=1).cpu().numpy(),
    )


@torch.no_grad()
def record_nodes(model, data, *, max_nodes: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Node-model inputs as named 1-D arrays (``model.node_input_names``), plus ``summed`` [V, M]
    messages, the true target ``target`` and the predicted ``pred`` [V, K] (N-body: accelerations,
    the target also as ``acc``): the node model's data for distillation.
    ``model.apply_node_model(node_inputs, summed)`` reproduces ``pred`` (per-node targets)."""
    model.eval()
    if max_nodes is not None:
        n = _as_batch(data).n_nodes // max(1, _as_batch(data).n_graphs) if isinstance(data, GraphBatch) else data.n_bodies
        data = _graph_subset(data, max(1, max_nodes // n), seed)
    b = _as_batch(data).to(model.device)
    out = model(b)
    feats = model.node_features(b)
    rec = {n: feats[:, i].double().cpu().numpy() for i, n in enumerate(model.node_input_names)}
    target = model.problem.target_values(b)
    target = None if target is None else target.double().cpu().numpy()
    rec.update(summed=out.summed.double().cpu().numpy(), pred=(out.pred * model.out_scale).double().cpu().numpy(),
               target=target, **{model.problem.target.name: target})
    return rec


def _edges_per_graph(data) -> int:
    if isinstance(data, GraphBatch):
        return max(1, data.edge_index.shape[1] // data.n_graphs)
    return data.n_bodies * (data.n_bodies - 1)


def _chunks(data, size: int):
    if isinstance(data, GraphBatch):
        return [data]
    return [data.batch(slice(i, i + size)) for i in range(0, len(data), size)]


def top_components(record: MessageRecord, k: int | None = None) -> np.ndarray:
    """Indices of the ``k`` (default: spatial dim) most significant message components, most
    significant first: by std (standard, l1), by mean KL (kl), all of them for bottleneck."""
    order = np.argsort(-record.significance, kind="stable")
    if record.variant == "bottleneck":
        return order
    return order[: record.dim if k is None else k]


def active_components(record: MessageRecord, fraction: float = ACTIVE_FRACTION) -> int:
    """Components whose significance is at least ``fraction`` of the largest."""
    s = record.significance
    return int((s >= fraction * s.max()).sum()) if s.size and s.max() > 0 else 0


#: :func:`force_r2` with ``bulk=True`` leaves out the edges whose |force| is above this quantile.
BULK_QUANTILE = 0.99
#: How reports name the edges ``bulk=True`` leaves out.
BULK_LEFT_OUT = f"the {1 - BULK_QUANTILE:.0%} largest forces"


def force_r2(record: MessageRecord, components=None, *, bulk: bool = False) -> list[float]:
    """Table-1 metric: R^2 of each component (default :func:`top_components`) fitted by an affine
    function of the true force components (least squares, so any rotated force basis scores 1).

    ``bulk=True``: the same on the edges whose |force| is at most its 99th percentile. On r^-1, r^-2
    and charge data the top 1% of edges (near-collisions) carry 98-99.999% of the force variance, so
    the plain R^2 measures a handful of edges; the bulk R^2 says whether the other 99% are force-like."""
    if record.forces is None:
        raise ValueError("force_r2 needs true forces: record the messages with a known law")
    comps = top_components(record) if components is None else components
    keep = slice(None)
    if bulk:
        mag = np.linalg.norm(record.forces, axis=1)
        keep = mag <= np.quantile(mag, BULK_QUANTILE)
    return [float(x) for x in affine_fit(record.forces[keep], record.messages[keep][:, list(comps)])[2]]


def affine_fit(X: np.ndarray, Y: np.ndarray, w: np.ndarray | None = None):
    """Y ~ X A^T + b by (weighted) least squares, every column of Y at once.

    Shapes:
        X: [n, D]; Y: [n, K]; w: [n] or None  ->  A [K, D], b [K], R^2 [K] (0 for a constant column)
    """
    w = np.ones(len(X)) if w is None else w
    design = np.column_stack([X, np.ones(len(X))])
    sw = np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(design * sw, Y * sw, rcond=None)
    res = Y - design @ coef
    mean = (w[:, None] * Y).sum(0) / w.sum()
    ss_tot = (w[:, None] * (Y - mean) ** 2).sum(0)
    ss_res = (w[:, None] * res**2).sum(0)
    r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 0.0)
    return coef[:-1].T, coef[-1], r2


def mean_abs_error(pairs, *, nonfinite: float | None = None) -> float:
    """Mean absolute error over (prediction, target) tensor pairs of any shapes (chunks of one set).
    ``nonfinite``: the error a non-finite prediction counts as (None: it makes the mean NaN or inf)."""
    total, count = 0.0, 0
    for pred, target in pairs:
        err = (pred - target).abs()
        if nonfinite is not None:
            err = torch.nan_to_num(err, nan=nonfinite, posinf=nonfinite)
        total, count = total + float(err.double().sum()), count + err.numel()
    return total / max(count, 1)


@torch.no_grad()
def test_mae(model, data, chunk_graphs: int = 8192) -> float:
    """Mean absolute error of the predicted target, per component, in data units (kl: means)."""
    model.eval()
    return mean_abs_error((model.predict(b), model.problem.target_values(b)) for b in _chunks(data, chunk_graphs))
