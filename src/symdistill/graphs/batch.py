"""GraphBatch: the one graph container of symdistill (PyG's conventions).

A batch is many graphs flattened into one disjoint graph:

- ``nodes``: named node fields, each [V, ...] (e.g. ``pos`` [V, D], ``mass`` [V]);
- ``edge_index`` [2, E]: row 0 the sender j, row 1 the receiver i, indices into the V nodes;
- ``edges``: named edge attributes of any width, each [E, ...] (e.g. a periodic builder's
  minimum-image ``displacement`` [E, D]);
- ``targets``: named targets, per node ([V] or [V, K]) or per graph ([G] or [G, K]);
- ``batch`` [V]: the graph id of every node (PyG's ``batch`` vector); graphs may differ in size.

Which fields exist is the problem's business (:mod:`symdistill.problems`), not the container's:
``batch["pos"]`` looks a name up among the nodes, the edges and the targets.

``in_degree`` is set when the edges are sorted by receiver with the same in-degree for every node
(fully connected graphs of one size): then a sum over incoming edges is a reshape and a sum instead
of a scatter. A batch of G copies of one size is built by index offsets (:func:`batch_edge_index`),
with no per-sample Python collation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from symdistill.errors import SymdistillError
from symdistill.graphs.edges import batch_edge_index, fully_connected


def _tensor(a, dtype=None):
    if a is None:
        return None
    t = a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))
    return t if dtype is None else t.to(dtype)


def gather_ranges(ptr: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Concatenated index ranges ptr[c]:ptr[c+1] for each c of ``chosen``, in that order (no Python loop)."""
    starts, counts = ptr[chosen], ptr[chosen + 1] - ptr[chosen]
    shift = starts - (counts.cumsum(0) - counts)
    return torch.repeat_interleave(shift, counts) + torch.arange(int(counts.sum()), device=ptr.device)


@dataclass
class GraphBatch:
    """A batch of graphs, flattened over nodes (see the module docstring).

    Shapes:
        nodes[k]: [V, ...]; edge_index: [2, E]; edges[k]: [E, ...]; batch: [V] (graph id per node);
        targets[k]: [V, ...] (per node) or [G, ...] (per graph)
    """

    nodes: dict[str, torch.Tensor]
    edge_index: torch.Tensor
    n_graphs: int
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    edges: dict[str, torch.Tensor] = field(default_factory=dict)
    batch: torch.Tensor | None = None  # None: every graph has n_nodes // n_graphs nodes, in order
    in_degree: int | None = None

    def __post_init__(self):
        if self.edge_index.ndim != 2 or self.edge_index.shape[0] != 2:
            raise SymdistillError(f"Expected edge_index of shape [2, E] (got {list(self.edge_index.shape)})")
        v = self.n_nodes
        for kind, fields, size in (("node", self.nodes, v), ("edge", self.edges, self.n_edges)):
            for name, t in fields.items():
                if t.shape[0] != size:
                    raise SymdistillError(f"{kind} field {name!r} has {t.shape[0]} rows, expected {size}")
        if self.batch is not None and self.batch.shape != (v,):
            raise SymdistillError(f"Expected a batch vector of shape [{v}] (got {list(self.batch.shape)})")

    # ---- access --------------------------------------------------------------------------------
    def _fields(self) -> tuple[dict, dict, dict]:
        """Node fields, edge attributes and targets, in lookup order (read from ``__dict__``: safe
        inside ``__getattr__`` and while the dataclass is being built)."""
        d = self.__dict__
        return d.get("nodes", {}), d.get("edges", {}), d.get("targets", {})

    def __getitem__(self, name: str) -> torch.Tensor:
        for fields in self._fields():
            if name in fields:
                return fields[name]
        raise KeyError(f"{name!r} is not a node field, edge attribute or target of this batch "
                       f"(it has {sorted(self.nodes) + sorted(self.edges) + sorted(self.targets)})")

    def __contains__(self, name: str) -> bool:
        return any(name in fields for fields in self._fields())

    def __getattr__(self, name: str):
        # batch.pos for batch["pos"] (fields only: dataclass attributes are found before this is called)
        if name.startswith("_") or name in ("nodes", "edges", "targets"):
            raise AttributeError(name)
        for fields in self._fields():
            if name in fields:
                return fields[name]
        raise AttributeError(f"GraphBatch has no field {name!r}")

    def __setattr__(self, name: str, value) -> None:
        # batch.pos = ... replaces the field (a dataclass attribute is set as usual)
        for fields in self._fields():
            if name in fields and name not in self.__dataclass_fields__:
                fields[name] = value
                return
        object.__setattr__(self, name, value)

    @property
    def n_nodes(self) -> int:
        return next(iter(self.nodes.values())).shape[0] if self.nodes else int(self.edge_index.max()) + 1

    @property
    def n_edges(self) -> int:
        return self.edge_index.shape[1]

    @property
    def dim(self) -> int:
        """Spatial dimension: the width of the ``pos`` field."""
        return self.nodes["pos"].shape[1]

    @property
    def device(self) -> torch.device:
        return self.edge_index.device

    @property
    def graph(self) -> torch.Tensor:
        """Graph id of every node (PyG's ``batch`` vector), [V]."""
        if self.batch is not None:
            return self.batch
        return torch.arange(self.n_graphs, device=self.device).repeat_interleave(self.n_nodes // self.n_graphs)

    @property
    def ptr(self) -> torch.Tensor:
        """Offsets [G + 1]: graph g owns nodes ptr[g]:ptr[g+1] (PyG's ``ptr``)."""
        counts = torch.bincount(self.graph, minlength=self.n_graphs)
        return torch.cat([counts.new_zeros(1), counts.cumsum(0)])

    def to(self, device) -> "GraphBatch":
        """The batch on ``device`` (itself when it is there already: the training loop calls this every step)."""
        if torch.device(device) == self.device:
            return self
        move = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return GraphBatch(move(self.nodes), self.edge_index.to(device), self.n_graphs, move(self.targets),
                          move(self.edges), None if self.batch is None else self.batch.to(device), self.in_degree)

    # ---- construction --------------------------------------------------------------------------
    @classmethod
    def fully_connected(cls, nodes: dict, *, n_bodies: int, targets: dict | None = None,
                        pattern: torch.Tensor | None = None) -> "GraphBatch":
        """Flat node fields (graph g owns nodes [g*n, (g+1)*n)) -> fully connected batch."""
        first = next(iter(nodes.values()))
        n_graphs = first.shape[0] // n_bodies
        if pattern is None:
            pattern = fully_connected(n_bodies, device=first.device)
        return cls(dict(nodes), batch_edge_index(pattern, n_bodies, n_graphs), n_graphs, dict(targets or {}),
                   in_degree=n_bodies - 1)

    @classmethod
    def from_dense(cls, nodes: dict, targets: dict | None = None, *, dtype=torch.float32) -> "GraphBatch":
        """Fully connected graphs from dense per-graph arrays (numpy or torch).

        Shapes:
            nodes[k], targets[k]: [B, N, ...] (per node) -> fields [B*N, ...]
        """
        nodes = {k: _tensor(v, dtype) for k, v in nodes.items()}
        first = next(iter(nodes.values()))
        if first.ndim < 2:
            raise SymdistillError(f"Expected node fields of shape [B, N, ...] (got {list(first.shape)})")
        b, n = first.shape[:2]
        for name, a in (*nodes.items(), *(targets or {}).items()):
            if a is not None and tuple(a.shape[:2]) != (b, n):
                raise SymdistillError(f"Expected {name} of shape [{b}, {n}, ...] (got {list(a.shape)})")
        flat = lambda a: a.reshape(b * n, *a.shape[2:])  # noqa: E731
        tg = {k: flat(_tensor(v, dtype)) for k, v in (targets or {}).items() if v is not None}
        return cls.fully_connected({k: flat(v) for k, v in nodes.items()}, n_bodies=n, targets=tg)

    @classmethod
    def from_arrays(cls, pos, vel, mass, charge, acc=None, *, dtype=torch.float32) -> "GraphBatch":
        """Fully connected particle graphs (the N-body problem's fields) from per-system arrays.

        Shapes:
            pos, vel, acc: [B, N, D]; mass, charge: [B, N]  (numpy or torch)
        """
        pos = _tensor(pos, dtype)
        if pos.ndim != 3:
            raise SymdistillError(f"Expected pos of shape [B, N, D] (got {list(pos.shape)})")
        b, n, d = pos.shape
        for name, a, shape in (("vel", vel, (b, n, d)), ("acc", acc, (b, n, d)),
                               ("mass", mass, (b, n)), ("charge", charge, (b, n))):
            if a is not None and tuple(np.shape(a)) != shape:
                raise SymdistillError(f"Expected {name} of shape {list(shape)} (got {list(np.shape(a))})")
        return cls.from_dense(dict(pos=pos, vel=vel, mass=mass, charge=charge),
                              None if acc is None else {"acc": acc}, dtype=dtype)

    @classmethod
    def build(cls, nodes: dict, builder, *, batch=None, targets: dict | None = None, position: str = "pos") -> "GraphBatch":
        """Nodes plus edges from an edge builder (:mod:`symdistill.graphs.builders`) on ``nodes[position]``;
        the builder's ``displacement`` [E, D] (minimum image in a periodic box) and ``distance`` [E]
        become edge attributes. ``batch``: PyG's graph id per node (None: one graph).

        Shapes:
            nodes[k]: [V, ...]; batch: [V]  ->  edge_index [2, E]
        """
        nodes = {k: _tensor(v) for k, v in nodes.items()}
        vec = None if batch is None else torch.as_tensor(batch, dtype=torch.long)
        edges = builder(nodes[position], vec)
        n_graphs = 1 if vec is None or len(vec) == 0 else int(vec.max()) + 1
        return cls(nodes, edges.edge_index, n_graphs, {k: _tensor(v) for k, v in (targets or {}).items()},
                   {"displacement": edges.displacement, "distance": edges.distance}, vec)

    @classmethod
    def collate(cls, graphs: list["GraphBatch"]) -> "GraphBatch":
        """One batch from graphs (or batches) of any sizes: fields concatenated, node indices offset,
        per-graph targets stacked, a ``batch`` vector built (PyG's collation)."""
        if not graphs:
            raise SymdistillError("Expected at least one graph to batch")
        keys = [set(g.nodes) for g in graphs]
        if any(k != keys[0] for k in keys):
            raise SymdistillError("Every graph of a batch needs the same node fields")
        offsets = np.cumsum([0] + [g.n_nodes for g in graphs])
        ids = np.cumsum([0] + [g.n_graphs for g in graphs])
        cat = lambda part: {k: torch.cat([getattr(g, part)[k] for g in graphs]) for k in getattr(graphs[0], part)}  # noqa: E731
        edge_index = torch.cat([g.edge_index + int(o) for g, o in zip(graphs, offsets)], dim=1)
        batch = torch.cat([g.graph + int(i) for g, i in zip(graphs, ids)])
        degrees = {g.in_degree for g in graphs}
        uniform = len({g.n_nodes // max(g.n_graphs, 1) for g in graphs}) == 1 and len(degrees) == 1
        return cls(cat("nodes"), edge_index, int(ids[-1]), cat("targets"), cat("edges"),
                   None if uniform and None not in degrees else batch,
                   degrees.pop() if uniform and None not in degrees else None)

    def select_graphs(self, graphs) -> "GraphBatch":
        """A sub-batch of whole graphs ``graphs`` (indices), in that order; each graph's edges keep
        their order."""
        graphs = torch.as_tensor(graphs, dtype=torch.long, device=self.device).reshape(-1)
        ptr, gid = self.ptr, self.graph
        idx = gather_ranges(ptr, graphs)
        edge_graph = gid[self.edge_index[1]]
        edge_order = torch.argsort(edge_graph, stable=True)
        edge_ptr = torch.cat([ptr.new_zeros(1), torch.bincount(edge_graph, minlength=self.n_graphs).cumsum(0)])
        edge_pos = edge_order[gather_ranges(edge_ptr, graphs)]
        node_map = torch.full((self.n_nodes,), -1, dtype=torch.long, device=self.device)
        node_map[idx] = torch.arange(len(idx), device=self.device)
        counts = (ptr[1:] - ptr[:-1])[graphs]
        # a target with one row per graph is per graph (with one node per graph the two coincide)
        targets = {k: t[graphs] if t.shape[0] == self.n_graphs else t[idx] for k, t in self.targets.items()}
        return GraphBatch({k: v[idx] for k, v in self.nodes.items()}, node_map[self.edge_index[:, edge_pos]],
                          len(graphs), targets, {k: v[edge_pos] for k, v in self.edges.items()},
                          None if self.batch is None else torch.repeat_interleave(
                              torch.arange(len(graphs), device=self.device), counts), self.in_degree)
