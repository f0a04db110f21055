"""The N-body energy problem: the same particles and the same target (accelerations), learned through
an energy, H = sum_i T(p_i, m_i, q_i) + sum_{i<j} U(r_ij, m_i, m_j, q_i, q_j) (the paper's FlatHGN,
:class:`symdistill.models.HamiltonianNetwork`). What is distilled is not a message but the two
energies: the pair energy U on edges and the self (kinetic) energy T on nodes.

Variables (names in :mod:`symdistill.names`):

- pair energy: ``r`` (softened distance |dx| + 0.01, as the laws'), ``m1, m2, q1, q2``. The energy is a
  scalar, so it sees the distance and not the direction: a potential that depended on the direction
  would break rotation invariance (an inductive bias, stated here; the paper's model saw raw states).
- self energy: ``p`` = |p| (the momentum's magnitude, p = m v), ``m``, ``q``. The network's input is
  p^2, smooth at p = 0.

What the data cannot identify (and the verdict, :func:`symdistill.distill.energy_verify.verify_energy`,
accepts): any term of U without r (a function of the masses and charges alone exerts no force), any
term of T without p, and one overall scale shared by U and T.
"""

from __future__ import annotations

import numpy as np
import torch

from symdistill.errors import check_dim
from symdistill.names import PAIR_VARIABLES
from symdistill.problems.base import Problem, Target
from symdistill.problems.nbody import edge_geometry
from symdistill.simulate.potentials import EPS

#: The self (kinetic) energy's variables.
SELF_VARIABLES = ("p", "m", "q")


#: The columns of :func:`pair_inputs` with the two ends exchanged (1 <-> 2).
SWAP_ENDS = [0, 2, 1, 4, 3]


def pair_inputs(pos: torch.Tensor, mass: torch.Tensor, charge: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    """``[r, m1, m2, q1, q2]`` of every edge, [E, 5]."""
    send, recv = edge_index
    _, dist = edge_geometry(pos, edge_index)
    return torch.stack([dist + EPS, mass[recv], mass[send], charge[recv], charge[send]], dim=1)


def self_inputs(momentum: torch.Tensor, mass: torch.Tensor, charge: torch.Tensor) -> torch.Tensor:
    """``[p^2, m, q]`` of every node, [V, 3], from momenta [V, D]: the self energy's network inputs."""
    return torch.stack([(momentum * momentum).sum(1), mass, charge], dim=1)


class NBodyEnergy(Problem):
    """Particles under a conservative pair law, learned through its energy (module docstring)."""

    name = "nbody-energy"
    distills = "energy"

    def __init__(self, dim: int):
        check_dim(dim)
        self.dim = dim
        self.target = Target("acc", "node", dim, "acceleration of every body, -(dH/dq)/m")
        self.edge_names = list(PAIR_VARIABLES)
        self.node_names = ["p2", "m", "q"]
        self.record_names = list(PAIR_VARIABLES)
        self.self_names = list(SELF_VARIABLES)

    @property
    def message_width(self) -> int:
        return 1  # one pair energy per edge

    def to_dict(self) -> dict:
        return {"name": self.name, "dim": self.dim}

    def feature_group(self, name: str) -> str:
        """m1 and m2 share a scale, as do q1 and q2 (so that swapping the ends commutes with it)."""
        return name.rstrip("12")

    # ---- features ----------------------------------------------------------------------------
    def edge_features(self, batch) -> torch.Tensor:
        n = batch.nodes
        return pair_inputs(n["pos"], n["mass"], n["charge"], batch.edge_index)

    def node_features(self, batch) -> torch.Tensor:
        n = batch.nodes
        return self_inputs(n["mass"][:, None] * n["vel"], n["mass"], n["charge"])

    def record_features(self, batch) -> torch.Tensor:
        n = {k: v.double() for k, v in batch.nodes.items()}
        return pair_inputs(n["pos"], n["mass"], n["charge"], batch.edge_index)

    def self_features(self, batch) -> torch.Tensor:
        """``[p, m, q]`` of every node, [V, 3] float64 (what the self energy is searched in)."""
        n = {k: v.double() for k, v in batch.nodes.items()}
        p = torch.linalg.vector_norm(n["mass"][:, None] * n["vel"], dim=1)
        return torch.stack([p, n["mass"], n["charge"]], dim=1)

    # ---- truth -------------------------------------------------------------------------------
    def edge_truth(self, law, batch) -> np.ndarray | None:
        """The true pair energy U of every edge, [E, 1] float64."""
        if law is None or not law.has_truth:
            return None
        x = self.record_features(batch)
        u = law.pair_energy(*(x[:, k] for k in range(5)))
        return u.reshape(-1, 1).cpu().numpy()

    def judge(self, formulas, law, *, scalar=None, kinetic=None):
        """The strict energy verdict on a pair energy (``formulas``: one expression, or a list of one)."""
        from symdistill.distill.energy_verify import verify_energy
        pair = formulas[0] if isinstance(formulas, (list, tuple)) else formulas
        return verify_energy(pair, law, self.dim, kinetic=kinetic)
