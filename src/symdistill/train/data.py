"""In-memory graph data: a dataset file's states as float32 tensors, batched by index.

Every state of every simulation is one graph. A batch is a gather of B rows plus one constant
edge pattern with offsets: no per-sample Python work, whatever B.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from symdistill.errors import SymdistillError
from symdistill.graphs.batch import GraphBatch
from symdistill.limits import check_memory
from symdistill.graphs.edges import batch_edge_index, fully_connected
from symdistill.simulate.dataset import open_dataset
from symdistill.simulate.potentials import Law


@dataclass
class GraphData:
    """Graphs as dense tensors.

    Shapes:
        pos, vel, acc: [G, N, D] (float32); mass, charge: [G, N]
    """

    pos: torch.Tensor
    vel: torch.Tensor
    acc: torch.Tensor
    mass: torch.Tensor
    charge: torch.Tensor
    law: Law | None = None

    def __post_init__(self):
        self._pattern = fully_connected(self.n_bodies)
        self._edges: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.pos.shape[0]

    @property
    def n_bodies(self) -> int:
        return self.pos.shape[1]

    @property
    def dim(self) -> int:
        return self.pos.shape[2]

    def batch(self, idx: torch.Tensor | slice | None = None) -> GraphBatch:
        """The graphs ``idx`` (indices or a slice) as one :class:`GraphBatch`."""
        idx = slice(None) if idx is None else idx
        pos, vel, acc, mass, charge = (a[idx] for a in (self.pos, self.vel, self.acc, self.mass, self.charge))
        b, n, d = pos.shape
        edges = self._edges.get(b)
        if edges is None:  # one edge_index per batch size, built once
            edges = self._edges[b] = batch_edge_index(self._pattern, n, b)
        return GraphBatch(pos.reshape(b * n, d), vel.reshape(b * n, d), mass.reshape(-1), charge.reshape(-1),
                          edges, b, acc=acc.reshape(b * n, d), in_degree=n - 1)

    def subset(self, idx) -> "GraphData":
        return GraphData(self.pos[idx], self.vel[idx], self.acc[idx], self.mass[idx], self.charge[idx], self.law)

    @classmethod
    def from_arrays(cls, arrays: dict, law: Law | None = None) -> "GraphData":
        """From ``pos/vel/acc [S, T, N, D]`` and ``mass/charge [S, N]`` (what ``NBodyDataset.read`` and
        ``simulate`` give), or already flat ``[G, N, D]`` / ``[G, N]``."""
        pos = np.asarray(arrays["pos"])
        if pos.ndim == 4:
            s, t, n, d = pos.shape
            flat = lambda a: np.asarray(a).reshape(s * t, n, d)  # noqa: E731
            node = lambda a: np.repeat(np.asarray(a)[:, None, :], t, axis=1).reshape(s * t, n)  # noqa: E731
        elif pos.ndim == 3:
            flat = node = np.asarray
        else:
            raise SymdistillError(f"Expected pos of shape [S, T, N, D] or [G, N, D] (got {list(pos.shape)})")
        f32 = lambda a: torch.as_tensor(a, dtype=torch.float32).contiguous()  # noqa: E731
        return cls(f32(flat(arrays["pos"])), f32(flat(arrays["vel"])), f32(flat(arrays["acc"])),
                   f32(node(arrays["mass"])), f32(node(arrays["charge"])), law)

    @classmethod
    def from_trajectory(cls, traj) -> "GraphData":
        return cls.from_arrays({k: getattr(traj, k) for k in ("pos", "vel", "acc", "mass", "charge")}, traj.law)


def load_graphs(path, sims=None, *, step_stride: int = 1) -> GraphData:
    """Read simulations ``sims`` (default all) of a dataset file, every ``step_stride``-th state.

    Raises a one-line SymdistillError for a file without accelerations.
    """
    with open_dataset(path) as ds:
        if not ds.has_acc:
            raise SymdistillError(f"{path} has no accelerations ('acc'); training needs them: estimate them "
                                  f"from its positions with `symdistill derive --data {path} --out OUT.h5`")
        sims = np.arange(ds.n_sims) if sims is None else np.asarray(sims)
        steps = len(range(0, ds.n_steps, step_stride))
        # float64 as read, then float32 tensors (and their graph copies), 3 fields
        need = len(sims) * steps * ds.n_bodies * ds.dim * 3 * (8 + 4 + 4) + ds.n_bodies**2 * 8 * 512
        check_memory(f"Loading {len(sims)} simulations x {steps} steps of {path}", need,
                     fix="use fewer with --set data.max_sims=N, or keep every k-th state with --set data.step_stride=k")
        arrays = ds.read(np.sort(sims), slice(None, None, step_stride))
        return GraphData.from_arrays(arrays, ds.law())
