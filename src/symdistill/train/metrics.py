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
from symdistill.graphs.features import edge_input_names, edge_inputs, node_input_names, node_inputs
from symdistill.simulate.integrate import pair_force
from symdistill.simulate.potentials import Law

#: A component is "active" when its significance is at least this fraction of the largest.
ACTIVE_FRACTION = 0.01


@dataclass
class MessageRecord:
    """Recorded edge data.

    Attributes:
        inputs: named 1-D arrays [E]: ``dx, dy, (dz), r, m1, m2, q1, q2, dvx, dvy, (dvz)`` with
            dx = receiver - sender and r = |dx| + 0.01 (the ground-truth laws' variables), whatever
            edge inputs the model itself uses.
        messages: [E, M] messages (means for ``kl``), float64.
        significance: [M] per-component std (standard, bottleneck, l1) or mean KL (kl).
        variant: the model's message variant.
        forces: [E, D] the true pair force on the receiver (None if the law is unknown).
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
    send, recv = batch.edge_index
    pos = batch.pos.double()
    d = pos[recv] - pos[send]
    m, q = batch.mass.double(), batch.charge.double()
    return pair_force(law, d, torch.linalg.vector_norm(d, dim=1), m[recv], m[send], q[recv], q[send]).numpy()


@torch.no_grad()
def record_messages(model, data, *, max_edges: int | None = None, law: Law | None = None,
                    seed: int = 0, chunk_graphs: int = 4096) -> MessageRecord:
    """Run the edge model on ``data`` (a GraphBatch or GraphData) and record its inputs and messages.

    ``max_edges`` keeps a random subset of whole graphs (seeded). ``law`` (default: the data's, if
    any) gives the true pair forces. The model is evaluated in eval mode (kl: means).
    """
    model.eval()
    if max_edges is not None:
        per_graph = _edges_per_graph(data)
        data = _graph_subset(data, max(1, max_edges // per_graph), seed)
    law = law if law is not None else getattr(data, "law", None)
    batches = _chunks(data, chunk_graphs)
    feats, raws, forces, edges, offset = [], [], [], [], 0
    for b in batches:
        raws.append(model.edge_raw(b).double())
        feats.append(edge_inputs("relative", b.pos.double(), b.vel.double(), b.mass.double(),
                                 b.charge.double(), b.edge_index))
        edges.append(b.edge_index + offset)
        offset += b.n_nodes
        if law is not None:
            forces.append(pair_forces(law, b))
    raw = torch.cat(raws)
    f = torch.cat(feats).numpy()
    names = edge_input_names("relative", model.dim)
    return MessageRecord(
        inputs={n: f[:, i].copy() for i, n in enumerate(names)},
        messages=model.variant.messages(raw).numpy(),
        significance=model.variant.significance(raw).numpy(),
        variant=model.variant.name, dim=model.dim,
        forces=np.concatenate(forces) if forces else None,
        edge_index=torch.cat(edges, dim=1).numpy(),
    )


@torch.no_grad()
def record_nodes(model, data, *, max_nodes: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Node-model inputs as named 1-D arrays (``model.node_input_names``), plus ``summed`` [V, M]
    messages, true ``acc`` and predicted ``pred`` [V, D]: the node model's data for distillation.
    ``model.apply_node_model(node_inputs, summed)`` reproduces ``pred``."""
    model.eval()
    if max_nodes is not None:
        n = _as_batch(data).n_nodes // max(1, _as_batch(data).n_graphs) if isinstance(data, GraphBatch) else data.n_bodies
        data = _graph_subset(data, max(1, max_nodes // n), seed)
    b = _as_batch(data)
    out = model(b)
    feats = node_inputs(model.config.edge_inputs, b.pos, b.vel, b.mass, b.charge, model.config.inverse_mass)
    rec = {n: feats[:, i].double().numpy() for i, n in enumerate(
        node_input_names(model.config.edge_inputs, model.dim, model.config.inverse_mass))}
    rec.update(summed=out.summed.double().numpy(), pred=(out.acc * model.acc_scale).double().numpy(),
               acc=None if b.acc is None else b.acc.double().numpy())
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
    forces = record.forces[keep]
    a = np.column_stack([forces, np.ones(len(forces))])
    out = []
    for c in comps:
        y = record.messages[keep, c]
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        ss_res = float(((y - a @ coef) ** 2).sum())
        ss_tot = float(((y - y.mean()) ** 2).sum())
        out.append(1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0)
    return out


@torch.no_grad()
def test_mae(model, data, chunk_graphs: int = 8192) -> float:
    """Mean absolute error of predicted accelerations, per component, in data units (kl: means)."""
    model.eval()
    total, count = 0.0, 0
    for b in _chunks(data, chunk_graphs):
        err = (model.predict(b) - b.acc).abs()
        total += float(err.double().sum())
        count += err.numel()
    return total / max(count, 1)
