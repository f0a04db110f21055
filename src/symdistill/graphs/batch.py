"""GraphBatch: many particle systems as one disjoint graph, built by index offsets.

Every system of a dataset has the same number of bodies n, so a batch of B systems is one graph of
B*n nodes whose ``edge_index`` is one graph's pattern plus offsets (:func:`batch_edge_index`):
no per-sample Python collation. The edges are receiver-major with a constant in-degree, which lets
the model sum messages with a reshape instead of a scatter (``in_degree``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from symdistill.errors import SymdistillError
from symdistill.graphs.edges import batch_edge_index, fully_connected


@dataclass
class GraphBatch:
    """A batch of graphs, flattened over nodes.

    Shapes:
        pos, vel, acc: [V, D]; mass, charge: [V]; edge_index: [2, E]; graph: [V] (graph id per node)

    ``in_degree`` is set when edges are sorted by receiver with the same in-degree for every node
    (then message aggregation is ``messages.view(V, in_degree, M).sum(1)``); None means use a scatter.
    ``acc`` may be None (prediction only).
    """

    pos: torch.Tensor
    vel: torch.Tensor
    mass: torch.Tensor
    charge: torch.Tensor
    edge_index: torch.Tensor
    n_graphs: int
    acc: torch.Tensor | None = None
    in_degree: int | None = None

    @property
    def n_nodes(self) -> int:
        return self.pos.shape[0]

    @property
    def dim(self) -> int:
        return self.pos.shape[1]

    @property
    def graph(self) -> torch.Tensor:
        """Graph id of every node (PyG's ``batch`` vector)."""
        return torch.arange(self.n_graphs, device=self.pos.device).repeat_interleave(self.n_nodes // self.n_graphs)

    @classmethod
    def from_arrays(cls, pos, vel, mass, charge, acc=None, *, dtype=torch.float32) -> "GraphBatch":
        """Fully connected graphs from per-system arrays.

        Shapes:
            pos, vel, acc: [B, N, D]; mass, charge: [B, N]  (numpy or torch)
        """
        t = lambda a: None if a is None else torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a,  # noqa: E731
                                                          dtype=dtype)
        pos, vel, mass, charge, acc = t(pos), t(vel), t(mass), t(charge), t(acc)
        if pos.ndim != 3:
            raise SymdistillError(f"Expected pos of shape [B, N, D] (got {list(pos.shape)})")
        b, n, d = pos.shape
        for name, a, shape in (("vel", vel, (b, n, d)), ("acc", acc, (b, n, d)),
                               ("mass", mass, (b, n)), ("charge", charge, (b, n))):
            if a is not None and tuple(a.shape) != shape:
                raise SymdistillError(f"Expected {name} of shape {list(shape)} (got {list(a.shape)})")
        return cls.fully_connected(pos.reshape(b * n, d), vel.reshape(b * n, d), mass.reshape(-1),
                                   charge.reshape(-1), n_bodies=n,
                                   acc=None if acc is None else acc.reshape(b * n, d))

    @classmethod
    def fully_connected(cls, pos, vel, mass, charge, *, n_bodies: int, acc=None,
                        pattern: torch.Tensor | None = None) -> "GraphBatch":
        """Flat node tensors (graph g owns nodes [g*n, (g+1)*n)) -> fully connected batch."""
        n_graphs = pos.shape[0] // n_bodies
        if pattern is None:
            pattern = fully_connected(n_bodies, device=pos.device)
        return cls(pos, vel, mass, charge, batch_edge_index(pattern, n_bodies, n_graphs), n_graphs,
                   acc=acc, in_degree=n_bodies - 1)

    def select_graphs(self, graphs) -> "GraphBatch":
        """A sub-batch of whole graphs (fully connected batches only)."""
        if self.in_degree is None:
            raise SymdistillError("select_graphs needs a fully connected batch")
        n = self.n_nodes // self.n_graphs
        idx = (torch.as_tensor(graphs)[:, None] * n + torch.arange(n)).reshape(-1)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return GraphBatch.fully_connected(pick(self.pos), pick(self.vel), pick(self.mass), pick(self.charge),
                                          n_bodies=n, acc=pick(self.acc))
