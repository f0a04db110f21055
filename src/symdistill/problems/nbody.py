"""The N-body force problem: particles, fully connected, accelerations per body; the messages should be
the pair forces, judged by :func:`symdistill.distill.verify.verify`.

Node fields of a batch: ``pos``, ``vel`` [V, D], ``mass``, ``charge`` [V]; target ``acc`` [V, D].

Two kinds of edge-model inputs (``EDGE_INPUTS``; the names are in :mod:`symdistill.names`):

- ``relative`` (default): displacement ``dx, dy, (dz)`` = receiver - sender, the softened distance
  ``r = |dx| + 0.01`` (the same ``r`` as the ground-truth laws), masses ``m1, m2`` and charges
  ``q1, q2`` of receiver (1) and sender (2), relative velocity ``dvx, dvy, (dvz)``. Translation
  invariant by construction; the node model then sees only translation-invariant node features
  (velocity, charge, mass).
- ``paper``: the raw node features ``[x, v, q, m]`` of receiver then sender, as in the reference
  code (translation invariance only by augmentation: :meth:`NBodyForces.augment`); the node model
  sees ``[x, v, q, m]``.

With ``inverse_mass`` the node model also gets ``1/m``: an acceleration is a force divided by the
mass, and an MLP learns a product far faster than a quotient (PAPER.md §3 measured it). Whatever
the model's inputs, the recorder records the ``relative`` ones: the variables of the laws.
"""

from __future__ import annotations

import numpy as np
import torch

from symdistill import names
from symdistill.errors import check_dim, unknown_name
from symdistill.problems.base import Problem, Target
from symdistill.simulate.potentials import EPS

EDGE_INPUTS = ("relative", "paper")


def edge_geometry(pos: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Displacement receiver - sender [E, D] and its norm [E] for every edge."""
    d = pos[edge_index[1]] - pos[edge_index[0]]
    return d, torch.linalg.vector_norm(d, dim=1)


def relative_edge_features(pos, vel, mass, charge, edge_index) -> torch.Tensor:
    """The ``relative`` edge inputs [E, 2D + 5] (columns :func:`symdistill.names.relative_edge_inputs`)."""
    send, recv = edge_index[0], edge_index[1]
    d, dist = edge_geometry(pos, edge_index)
    return torch.cat([d, dist[:, None] + EPS, mass[recv, None], mass[send, None], charge[recv, None],
                      charge[send, None], vel[recv] - vel[send]], dim=1)


class NBodyForces(Problem):
    """Particles under a pair force law (any dimension 1-3, any number of bodies)."""

    name = "nbody-forces"
    message_divisor = "m"

    def __init__(self, dim: int, edge_inputs: str = "relative", inverse_mass: bool = True):
        check_dim(dim)
        if edge_inputs not in EDGE_INPUTS:
            raise unknown_name("edge inputs", edge_inputs, EDGE_INPUTS)
        self.dim, self.kind, self.inverse_mass = dim, edge_inputs, inverse_mass
        self.target = Target("acc", "node", dim, "acceleration of every body")
        self.edge_names = (names.relative_edge_inputs(dim) if edge_inputs == "relative"
                           else names.paper_edge_inputs(dim))
        own = [] if edge_inputs == "relative" else list(names.axes(dim))
        self.node_names = own + list(names.velocity(dim)) + ["q", "m"] + (["inv_m"] if inverse_mass else [])
        self.record_names = names.relative_edge_inputs(dim)

    @property
    def message_width(self) -> int:
        return self.dim  # a pair force has D components

    def to_dict(self) -> dict:
        return {"name": self.name, "dim": self.dim, "edge_inputs": self.kind, "inverse_mass": self.inverse_mass}

    # ---- features ----------------------------------------------------------------------------
    def edge_features(self, batch) -> torch.Tensor:
        n = batch.nodes
        if self.kind == "paper":
            x = torch.cat([n["pos"], n["vel"], n["charge"][:, None], n["mass"][:, None]], dim=1)
            send, recv = batch.edge_index
            return torch.cat([x[recv], x[send]], dim=1)
        return relative_edge_features(n["pos"], n["vel"], n["mass"], n["charge"], batch.edge_index)

    def node_features(self, batch) -> torch.Tensor:
        n = batch.nodes
        cols = ([] if self.kind == "relative" else [n["pos"]]) + [n["vel"], n["charge"][:, None], n["mass"][:, None]]
        if self.inverse_mass:
            cols.append(1.0 / n["mass"][:, None])
        return torch.cat(cols, dim=1)

    def record_features(self, batch) -> torch.Tensor:
        n = {k: v.double() for k, v in batch.nodes.items()}
        return relative_edge_features(n["pos"], n["vel"], n["mass"], n["charge"], batch.edge_index)

    def feature_group(self, name: str) -> str:
        """dx, dy, dz share a scale (so rotations commute with normalisation), as do m1 and m2, ..."""
        base = name.rstrip("12")
        if base in names.displacement(3):
            return "d"
        if base.startswith("dv"):
            return "dv"
        if base in names.AXES:
            return "x"
        if base in names.velocity(3):
            return "v"
        return base

    def augment(self, batch, generator: torch.Generator, shift: float):
        """The paper's only translation invariance (``paper`` inputs): one random shift per batch."""
        if self.kind != "paper" or shift <= 0:
            return batch
        step = shift * torch.randn(batch.dim, generator=generator)
        batch.nodes["pos"] = batch.nodes["pos"] + step.to(batch.nodes["pos"].device)
        return batch

    # ---- truth -------------------------------------------------------------------------------
    def edge_truth(self, law, batch) -> np.ndarray | None:
        """The true pair force on the receiver of every edge, [E, D] float64 (damping is not a pair force)."""
        if law is None:
            return None
        from symdistill.simulate.integrate import pair_force
        n = {k: v.double() for k, v in batch.nodes.items()}
        send, recv = batch.edge_index
        d, dist = edge_geometry(n["pos"], batch.edge_index)
        m, q = n["mass"], n["charge"]
        return pair_force(law, d, dist, m[recv], m[send], q[recv], q[send]).cpu().numpy()

    def judge(self, formulas, law, *, scalar=None):
        from symdistill.distill.verify import verify
        return verify(formulas, law, self.dim, scalar=scalar)
