"""Conversion between :class:`~symdistill.graphs.GraphBatch` and PyTorch Geometric (optional extra).

    from symdistill.graphs.pyg import from_pyg, to_pyg
    pyg = to_pyg(batch, problem=problem)   # torch_geometric.data.Batch: our fields, plus x, edge_attr, y
    batch = from_pyg(pyg, targets=["acc"])  # back, e.g. from a PyG DataLoader or dataset

Both use PyG's conventions, which are ours: ``edge_index`` [2, E] with row 0 the sender, row 1 the
receiver; a ``batch`` vector; per-graph targets stacked into [G, ...]. ``to_pyg`` builds one ``Data``
per graph and collates them with ``Batch.from_data_list``, so ``to_data_list()``, PyG loaders and
layers work on the result (it is meant for interoperability, not for the training loop's hot path).
"""

from __future__ import annotations

import torch

from symdistill.errors import SymdistillError
from symdistill.graphs.batch import GraphBatch, gather_ranges


def _pyg():
    try:
        import torch_geometric.data as pyg_data
    except ImportError:
        raise SymdistillError("PyTorch Geometric is not installed: pip install 'symdistill[pyg]' "
                              "(or torch-geometric)") from None
    return pyg_data


def to_pyg(batch: GraphBatch, *, problem=None):
    """A ``torch_geometric.data.Batch`` holding every node field, edge attribute and target of ``batch``
    under its own name. With a ``problem`` (:mod:`symdistill.problems`) it also holds PyG's standard
    ``x`` (the problem's node features [V, F_v]), ``edge_attr`` (its edge features [E, F_e]) and ``y``
    (its target), so PyG layers apply directly."""
    pyg_data = _pyg()
    extra_nodes, extra_edges, extra_targets = {}, {}, {}
    if problem is not None:
        extra_nodes["x"] = problem.node_features(batch)
        extra_edges["edge_attr"] = problem.edge_features(batch)
        y = problem.target_values(batch)
        if y is not None:
            extra_targets["y"] = y
    ptr, gid = batch.ptr, batch.graph
    edge_graph = gid[batch.edge_index[1]]
    order = torch.argsort(edge_graph, stable=True)
    edge_ptr = torch.cat([ptr.new_zeros(1), torch.bincount(edge_graph, minlength=batch.n_graphs).cumsum(0)])
    nodes = {**batch.nodes, **extra_nodes}
    edges = {**batch.edges, **extra_edges}
    targets = {**batch.targets, **extra_targets}
    per_graph = {k for k, t in targets.items() if t.shape[0] == batch.n_graphs and t.shape[0] != batch.n_nodes}
    graphs = []
    for g in range(batch.n_graphs):
        lo, hi = int(ptr[g]), int(ptr[g + 1])
        e = order[gather_ranges(edge_ptr, torch.tensor([g]))]
        fields = {k: v[lo:hi] for k, v in nodes.items()} | {k: v[e] for k, v in edges.items()}
        fields |= {k: (t[g:g + 1] if k in per_graph else t[lo:hi]) for k, t in targets.items()}
        graphs.append(pyg_data.Data(edge_index=batch.edge_index[:, e] - lo, num_nodes=hi - lo, **fields))
    return pyg_data.Batch.from_data_list(graphs)


def from_pyg(data, *, targets=("y",), nodes=None, edges=None) -> GraphBatch:
    """A :class:`GraphBatch` from a PyG ``Data``, ``Batch``, list of ``Data`` or dataset.

    ``targets``: the attributes that are targets (per node if they have a row per node, else per
    graph); ``nodes`` / ``edges``: the node fields and edge attributes to keep (default: every
    attribute PyG classifies as node-level / edge-level, other than the targets and ``batch``/``ptr``).
    """
    pyg_data = _pyg()
    if not isinstance(data, pyg_data.Data):  # Batch subclasses Data; a list or a dataset does not
        data = pyg_data.Batch.from_data_list(list(data))
    if data.edge_index is None:
        raise SymdistillError("The PyG graph has no edge_index: build its edges first (e.g. a radius graph)")
    n_nodes = int(data.num_nodes)
    is_batch = isinstance(data, pyg_data.Batch)
    n_graphs = int(data.num_graphs) if is_batch else 1
    skip = {"edge_index", "batch", "ptr", *targets}
    keys = [k for k in data.keys() if k not in skip and torch.is_tensor(data[k])]
    edge_keys = list(edges) if edges is not None else [k for k in keys if data.is_edge_attr(k)]
    node_keys = list(nodes) if nodes is not None else [k for k in keys if data.is_node_attr(k) and k not in edge_keys]
    missing = [k for k in (*node_keys, *edge_keys) if k not in data]
    if missing:
        raise SymdistillError(f"The PyG graph has no attribute {missing[0]!r} (it has {sorted(data.keys())})")
    tg = {k: data[k] for k in targets if k in data and torch.is_tensor(data[k])}
    for k, t in tg.items():
        if t.shape[0] not in (n_nodes, n_graphs):
            raise SymdistillError(f"Target {k!r} has {t.shape[0]} rows: expected one per node ({n_nodes}) or per "
                                  f"graph ({n_graphs})")
    batch_vec = data.batch if is_batch and data.batch is not None else torch.zeros(n_nodes, dtype=torch.long)
    ei = data.edge_index
    out = GraphBatch({k: data[k] for k in node_keys}, ei, n_graphs, tg, {k: data[k] for k in edge_keys},
                     batch_vec)
    deg = ei.shape[1] // max(n_nodes, 1)
    if deg > 0 and ei.shape[1] == deg * n_nodes and torch.equal(
            ei[1], torch.arange(n_nodes, device=ei.device).repeat_interleave(deg)):
        out.in_degree = deg  # receiver-major with one in-degree: the network sums by a reshape
    return out
