"""Benchmark laws: a development set (the paper's six systems) and a held-out set that is not.

Defaults are tuned on the development set only; the held-out set is run to see whether they
generalise, and is reported beside it, never tuned on. The held-out laws were chosen before any
of them was run: other powers, screened and exponential potentials, anharmonic and shifted springs,
mass- and charge-weighted mixes, in 2D and 3D.
"""

from __future__ import annotations

from dataclasses import dataclass

from symdistill.simulate.potentials import SYSTEMS, Law, get_law


@dataclass(frozen=True)
class Case:
    """One benchmark case: a law (a built-in ``system`` or a ``potential`` string) in ``dim``."""

    name: str
    dim: int
    system: str | None = None
    potential: str | None = None
    note: str = ""

    def law(self) -> Law:
        return get_law(self.system) if self.system else get_law(potential=self.potential)


DEVELOPMENT: tuple[Case, ...] = tuple(
    Case(f"{s}-{d}d", d, system=s) for s in SYSTEMS for d in (2, 3))

HELD_OUT: tuple[Case, ...] = (
    Case("yukawa-2d", 2, potential="q1*q2*exp(-r)/r", note="screened Coulomb"),
    Case("r1.5-3d", 3, potential="-2*m1*m2/r**0.5", note="force -m1 m2 / r^1.5: a fractional power"),
    Case("linear-2d", 2, potential="m1*m2*r", note="constant attraction -m1 m2"),
    Case("morse-3d", 3, potential="(1 - exp(1 - r))**2", note="Morse potential, rest length 1"),
    Case("anharmonic-2d", 2, potential="(r - 1)**2 + (r - 1)**4", note="spring with a quartic term"),
    Case("shifted-spring-3d", 3, potential="(r - 1.5)**2", note="rest length 3/2"),
    Case("mass-spring-2d", 2, potential="m1*m2*(r - 1)**2", note="mass-weighted spring"),
    Case("charge-gravity-3d", 3, potential="(q1*q2 - m1*m2)/r", note="charge and gravity mixed"),
)

SETS = {"development": DEVELOPMENT, "held-out": HELD_OUT}
