"""Node and edge input features of particle graphs, with their names.

Two kinds of edge inputs (``EDGE_INPUTS``):

- ``relative`` (default): displacement ``dx, dy, (dz)`` = receiver - sender, the softened distance
  ``r = |dx| + 0.01`` (the same ``r`` as the ground-truth laws), masses ``m1, m2`` and charges
  ``q1, q2`` of receiver (1) and sender (2), relative velocity ``dvx, dvy, (dvz)``. Translation
  invariant by construction; the node model then sees only translation-invariant node features
  (velocity, charge, mass).
- ``paper``: the raw node features ``[x, v, q, m]`` of receiver then sender, as in the reference
  code (translation invariance only by augmentation); the node model sees ``[x, v, q, m]``.

With ``inverse_mass`` the node model also gets ``1/m``: an acceleration is a force divided by the
mass, and an MLP learns a product far faster than a quotient (PAPER.md §3 measured it).
"""

from __future__ import annotations

import torch

from symdistill.errors import unknown_name
from symdistill.simulate.potentials import EPS

EDGE_INPUTS = ("relative", "paper")
_AXES = ("x", "y", "z")


def _check(kind: str) -> None:
    if kind not in EDGE_INPUTS:
        raise unknown_name("edge inputs", kind, EDGE_INPUTS)


def edge_input_names(kind: str, dim: int) -> list[str]:
    """Names of the columns of :func:`edge_inputs`."""
    _check(kind)
    ax = _AXES[:dim]
    if kind == "relative":
        return [f"d{a}" for a in ax] + ["r", "m1", "m2", "q1", "q2"] + [f"dv{a}" for a in ax]
    node = [*ax, *(f"v{a}" for a in ax), "q", "m"]
    return [f"{n}1" for n in node] + [f"{n}2" for n in node]


def node_input_names(kind: str, dim: int, inverse_mass: bool = True) -> list[str]:
    """Names of the columns of :func:`node_inputs` (what the node model sees besides the messages)."""
    _check(kind)
    ax = _AXES[:dim]
    names = ([] if kind == "relative" else list(ax)) + [f"v{a}" for a in ax] + ["q", "m"]
    return names + (["inv_m"] if inverse_mass else [])


def feature_group(name: str) -> str:
    """Columns sharing a scale in normalisation (so e.g. dx and dy keep their ratio: rotations commute)."""
    base = name.rstrip("12")
    if base in ("dx", "dy", "dz"):
        return "d"
    if base.startswith("dv"):
        return "dv"
    if base in _AXES:
        return "x"
    if base in ("vx", "vy", "vz"):
        return "v"
    return base


def node_inputs(kind: str, pos, vel, mass, charge, inverse_mass: bool = True) -> torch.Tensor:
    """Node-model inputs.

    Shapes:
        pos, vel: [V, D]; mass, charge: [V]  ->  output: [V, len(node_input_names(...))]
    """
    _check(kind)
    cols = ([] if kind == "relative" else [pos]) + [vel, charge[:, None], mass[:, None]]
    if inverse_mass:
        cols.append(1.0 / mass[:, None])
    return torch.cat(cols, dim=1)


def edge_inputs(kind: str, pos, vel, mass, charge, edge_index) -> torch.Tensor:
    """Edge-model inputs for every edge (receiver i = ``edge_index[1]``, sender j = ``edge_index[0]``).

    Shapes:
        pos, vel: [V, D]; mass, charge: [V]; edge_index: [2, E]  ->  output: [E, len(edge_input_names(...))]
    """
    _check(kind)
    send, recv = edge_index[0], edge_index[1]
    if kind == "paper":
        x = torch.cat([pos, vel, charge[:, None], mass[:, None]], dim=1)
        return torch.cat([x[recv], x[send]], dim=1)
    d = pos[recv] - pos[send]
    r = torch.linalg.vector_norm(d, dim=1, keepdim=True) + EPS
    return torch.cat([d, r, mass[recv, None], mass[send, None], charge[recv, None], charge[send, None],
                      vel[recv] - vel[send]], dim=1)
