"""In-memory graph data: a dataset file's states as dense float32 tensors, batched by index.

Every state of every simulation is one graph of the same N nodes. A batch is a gather of B rows plus
one constant edge pattern with offsets: no per-sample Python work, whatever B. Which fields there are
is the problem's (:mod:`symdistill.problems`); the N-body files give node fields ``pos, vel, mass,
charge`` and the target ``acc``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from symdistill.errors import SymdistillError
from symdistill.graphs.batch import GraphBatch
from symdistill.graphs.edges import batch_edge_index, fully_connected
from symdistill.limits import check_memory
from symdistill.simulate.dataset import open_dataset, split_indices
from symdistill.simulate.potentials import Law

#: Node fields and targets of the N-body dataset files.
NBODY_NODES = ("pos", "vel", "mass", "charge")
NBODY_TARGETS = ("acc",)


@dataclass
class GraphData:
    """Graphs of one size as dense tensors, fully connected.

    Shapes:
        nodes[k], targets[k]: [G, N, ...] (float32), e.g. pos [G, N, D], mass [G, N]
    """

    nodes: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    law: Law | None = None

    def __post_init__(self):
        self._pattern = fully_connected(self.n_bodies)
        self._edges: dict[int, torch.Tensor] = {}

    def __getattr__(self, name: str):  # data.pos for data.nodes["pos"], data.acc for data.targets["acc"]
        if not name.startswith("_") and name not in ("nodes", "targets"):
            for fields in (self.__dict__.get("nodes", {}), self.__dict__.get("targets", {})):
                if name in fields:
                    return fields[name]
        raise AttributeError(name)

    def __len__(self) -> int:
        return next(iter(self.nodes.values())).shape[0]

    @property
    def n_bodies(self) -> int:
        return next(iter(self.nodes.values())).shape[1]

    @property
    def dim(self) -> int:
        return self.nodes["pos"].shape[2]

    def batch(self, idx: torch.Tensor | slice | None = None) -> GraphBatch:
        """The graphs ``idx`` (indices or a slice) as one :class:`GraphBatch`."""
        idx = slice(None) if idx is None else idx
        nodes = {k: v[idx] for k, v in self.nodes.items()}
        b, n = next(iter(nodes.values())).shape[:2]
        edges = self._edges.get(b)
        if edges is None:  # one edge_index per batch size, built once
            edges = self._edges[b] = batch_edge_index(self._pattern, n, b)
        flat = lambda a: a.reshape(b * n, *a.shape[2:])  # noqa: E731
        return GraphBatch({k: flat(v) for k, v in nodes.items()}, edges, b,
                          {k: flat(v[idx]) for k, v in self.targets.items()}, in_degree=n - 1)

    def subset(self, idx) -> "GraphData":
        return GraphData({k: v[idx] for k, v in self.nodes.items()}, {k: v[idx] for k, v in self.targets.items()},
                         self.law)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every field as a float64 numpy array, [G, N, ...] (what the symbolic models read)."""
        return {k: v.double().numpy() for k, v in (*self.nodes.items(), *self.targets.items())}

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
        nodes = {"pos": f32(flat(arrays["pos"])), "vel": f32(flat(arrays["vel"])),
                 "mass": f32(node(arrays["mass"])), "charge": f32(node(arrays["charge"]))}
        return cls(nodes, {"acc": f32(flat(arrays["acc"]))}, law)

    @classmethod
    def from_trajectory(cls, traj) -> "GraphData":
        return cls.from_arrays({k: getattr(traj, k) for k in (*NBODY_NODES, *NBODY_TARGETS)}, traj.law)


def split_sims(d) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation simulations of a :class:`~symdistill.train.config.DataConfig`: a split
    by simulation (seeded), among the first ``max_sims`` of its file."""
    with open_dataset(d.path) as ds:
        n_sims = ds.n_sims if d.max_sims is None else min(d.max_sims, ds.n_sims)
    return split_indices(n_sims, d.val_fraction, d.split_seed)


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
