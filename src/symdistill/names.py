"""The N-body variable names, defined once: every module that names an axis, an edge input or a node
input of the particle problem reads them from here.

Edge variables (a pair j -> i, receiver i = "1", sender j = "2"): the displacement ``dx, dy, (dz)`` =
x_i - x_j, the softened distance ``r = |dx| + 0.01``, masses ``m1, m2``, charges ``q1, q2``, and the
relative velocity ``dvx, dvy, (dvz)``. Node variables: position ``x, y, (z)``, velocity ``vx, vy,
(vz)``, charge ``q``, mass ``m`` and (optionally) ``inv_m`` = 1/m.
"""

from __future__ import annotations

#: Spatial axes, in order.
AXES = ("x", "y", "z")
#: The pair variables of a law besides the displacement (what a central force may depend on).
PAIR_VARIABLES = ("r", "m1", "m2", "q1", "q2")
#: A node's own properties that the node model sees: the receiver's side of a pair.
RECEIVER = ("m1", "q1")


def axes(dim: int) -> tuple[str, ...]:
    return AXES[:dim]


def displacement(dim: int) -> tuple[str, ...]:
    """``dx, dy, (dz)``: receiver minus sender."""
    return tuple(f"d{a}" for a in AXES[:dim])


def relative_velocity(dim: int) -> tuple[str, ...]:
    return tuple(f"dv{a}" for a in AXES[:dim])


def velocity(dim: int) -> tuple[str, ...]:
    return tuple(f"v{a}" for a in AXES[:dim])


def law_variables(dim: int) -> tuple[str, ...]:
    """What a pair-force formula may use, in the recording order: ``dx, .., r, m1, m2, q1, q2``."""
    return (*displacement(dim), *PAIR_VARIABLES)


#: Every law variable in 3D (sympy symbols are made from these names).
LAW_VARIABLES = law_variables(3)


def relative_edge_inputs(dim: int) -> list[str]:
    """The ``relative`` edge inputs (and what the recorder always records): law variables + dv."""
    return [*law_variables(dim), *relative_velocity(dim)]


def paper_edge_inputs(dim: int) -> list[str]:
    """The ``paper`` edge inputs: the raw node features ``[x, v, q, m]`` of receiver then sender."""
    node = [*AXES[:dim], *velocity(dim), "q", "m"]
    return [f"{n}1" for n in node] + [f"{n}2" for n in node]


def node_model_variables(dim: int, n_messages: int) -> list[str]:
    """What a symbolic node formula may use: summed messages ``s0..``, the body's m, q and velocity."""
    return [f"s{k}" for k in range(n_messages)] + ["m", "q", *velocity(dim)]
