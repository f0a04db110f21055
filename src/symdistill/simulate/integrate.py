"""Forces and fixed-step integrators, vectorised over a batch of simulations.

State tensors have shape [B, N, D] (B simulations, N bodies, D dimensions); masses and charges
[B, N]. No Python loop runs per simulation: one step advances every simulation of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from symdistill.errors import unknown_name
from symdistill.simulate.potentials import EPS, Law


@dataclass
class Bodies:
    """The constant per-body properties of a batch: masses, charges, damping coefficients."""

    mass: torch.Tensor    # [B, N]
    charge: torch.Tensor  # [B, N]
    damping: torch.Tensor  # [N]

    def __post_init__(self):
        # Broadcast views (receiver i along dim 1, sender j along dim 2), built once per batch.
        self.m1, self.m2 = self.mass[:, :, None], self.mass[:, None, :]
        self.q1, self.q2 = self.charge[:, :, None], self.charge[:, None, :]
        self.damped = bool((self.damping != 0).any())


def pair_geometry(pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """d[b, i, j] = x_i - x_j (receiver minus sender), |d|, and the off-diagonal mask [N, N].

    The diagonal of |d| is set to 1 (not 0) so that sqrt stays differentiable there; callers mask it.
    """
    n = pos.shape[1]
    d = pos[:, :, None, :] - pos[:, None, :, :]
    off = ~torch.eye(n, dtype=torch.bool, device=pos.device)
    dist = torch.sqrt((d * d).sum(-1) + (~off).to(pos.dtype))
    return d, dist, off


def pair_force(law: Law, d, dist, m1, m2, q1, q2, valid=None) -> torch.Tensor:
    """Pair force on the receiver, [..., D], from d = x_receiver - x_sender [..., D] and |d| [...].

    Pairs outside ``valid`` (e.g. self-pairs) and exactly coincident bodies, where the direction is
    undefined, exert nothing.
    """
    mag = law.force_magnitude(dist + EPS, m1, m2, q1, q2)
    ok = dist > 0 if valid is None else valid & (dist > 0)
    return torch.where(ok, mag / dist, 0.0)[..., None] * d  # the unselected inf/nan is discarded


def forces(law: Law, pos: torch.Tensor, vel: torch.Tensor, bodies: Bodies) -> torch.Tensor:
    """Total force on every body, [B, N, D]."""
    d, dist, off = pair_geometry(pos)
    f = pair_force(law, d, dist, bodies.m1, bodies.m2, bodies.q1, bodies.q2, off).sum(2)
    if bodies.damped:
        f = f - bodies.damping[:, None] * vel
    return f


def accelerations(law, pos, vel, bodies: Bodies) -> torch.Tensor:
    """Accelerations [B, N, D] under a :class:`Law`, or under any dynamics object (duck typed: a
    method ``accelerations(pos, vel, mass, charge) -> [B, N, D]`` that includes its own damping, e.g.
    :class:`symdistill.distill.rollout.NetworkDynamics`), so the integrators drive either."""
    if not isinstance(law, Law):
        return law.accelerations(pos, vel, bodies.mass, bodies.charge)
    return forces(law, pos, vel, bodies) / bodies.mass[..., None]


def potential_energy(law: Law, pos: torch.Tensor, bodies: Bodies) -> torch.Tensor:
    """Total pair energy per simulation, [B] (each pair counted once)."""
    _, dist, off = pair_geometry(pos)
    u = law.pair_energy(dist + EPS, bodies.m1, bodies.m2, bodies.q1, bodies.q2)
    return 0.5 * torch.where(off, u, 0.0).sum((1, 2))


def total_energy(law: Law, pos, vel, bodies: Bodies) -> torch.Tensor:
    kinetic = 0.5 * (bodies.mass[..., None] * vel * vel).sum((1, 2))
    return kinetic + potential_energy(law, pos, bodies)


class Integrator:
    """One fixed step of size h. ``step`` returns (pos, vel, acc) with acc exact at the new state."""

    name = "base"

    def step(self, law, pos, vel, acc, bodies, h):  # pragma: no cover - interface
        raise NotImplementedError


class VelocityVerlet(Integrator):
    """Kick-drift-kick; symplectic (bounded energy error) for conservative laws.

    With damping the force depends on v, so the closing kick uses the half-step velocity and the
    stored acceleration is recomputed at the final (x, v): stored targets stay exact.
    """

    name = "verlet"

    def step(self, law, pos, vel, acc, bodies, h):
        v_half = vel + 0.5 * h * acc
        pos = pos + h * v_half
        acc = accelerations(law, pos, v_half, bodies)
        vel = v_half + 0.5 * h * acc
        if bodies.damped:
            acc = accelerations(law, pos, vel, bodies)
        return pos, vel, acc


class RK4(Integrator):
    """Classical fourth-order Runge-Kutta on (x, v)."""

    name = "rk4"

    def step(self, law, pos, vel, acc, bodies, h):
        k1x, k1v = vel, acc
        k2x = vel + 0.5 * h * k1v
        k2v = accelerations(law, pos + 0.5 * h * k1x, k2x, bodies)
        k3x = vel + 0.5 * h * k2v
        k3v = accelerations(law, pos + 0.5 * h * k2x, k3x, bodies)
        k4x = vel + h * k3v
        k4v = accelerations(law, pos + h * k3x, k4x, bodies)
        pos = pos + (h / 6) * (k1x + 2 * k2x + 2 * k3x + k4x)
        vel = vel + (h / 6) * (k1v + 2 * k2v + 2 * k3v + k4v)
        return pos, vel, accelerations(law, pos, vel, bodies)


INTEGRATORS = {"verlet": VelocityVerlet, "rk4": RK4}


def get_integrator(name: str | Integrator) -> Integrator:
    if isinstance(name, Integrator):
        return name
    if name not in INTEGRATORS:
        raise unknown_name("integrator", name, INTEGRATORS)
    return INTEGRATORS[name]()


def pair_timescale(pos: torch.Tensor, vel: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
    """Shortest pair timescale per simulation, [B]: min over pairs of |d|/|dv| and sqrt(|d|/|da|).

    Small when two bodies are about to pass close to each other, where the force changes fastest.
    """
    d, dist, off = pair_geometry(pos)
    dv = vel[:, :, None, :] - vel[:, None, :, :]
    da = acc[:, :, None, :] - acc[:, None, :, :]
    tiny = torch.finfo(pos.dtype).tiny
    t_v = dist / torch.sqrt((dv * dv).sum(-1) + tiny)
    t_a = torch.sqrt(dist / torch.sqrt((da * da).sum(-1) + tiny))
    tau = torch.where(off, torch.minimum(t_v, t_a), torch.inf)
    return tau.flatten(1).min(1).values


def advance(integrator: Integrator, law: Law, pos, vel, acc, bodies: Bodies, dt: float,
            substeps: int = 1, max_substeps: int = 1, tolerance: float = 0.05):
    """Advance every simulation by ``dt``.

    Each simulation takes between ``substeps`` and ``max_substeps`` equal steps: as many as make
    each step at most ``tolerance`` x its shortest pair timescale. Simulations that need more steps
    (near-collisions, rare) are stepped alone, so the batch pays only for them.
    """
    if max_substeps <= substeps:
        h = dt / substeps
        for _ in range(substeps):
            pos, vel, acc = integrator.step(law, pos, vel, acc, bodies, h)
        return pos, vel, acc
    tau = pair_timescale(pos, vel, acc)
    k = torch.ceil(dt / (tolerance * tau)).clamp(substeps, max_substeps).to(torch.long)
    h_all = (dt / k.to(pos.dtype))[:, None, None]
    base = int(k.min())
    for _ in range(base):  # every simulation takes these steps
        pos, vel, acc = integrator.step(law, pos, vel, acc, bodies, h_all)
    # The rest step only the simulations that still need it, kept compacted: a simulation's final
    # state is written back once, when it is done.
    idx = torch.nonzero(k > base).squeeze(1)
    if idx.numel() == 0:
        return pos, vel, acc
    pos, vel, acc = pos.clone(), vel.clone(), acc.clone()
    p, v, a, kk, h = pos[idx], vel[idx], acc[idx], k[idx], h_all[idx]
    sub = Bodies(bodies.mass[idx], bodies.charge[idx], bodies.damping)
    for i in range(base, int(k.max())):
        p, v, a = integrator.step(law, p, v, a, sub, h)
        done = kk == i + 1
        if done.any():
            for full, part in ((pos, p), (vel, v), (acc, a)):
                full.index_copy_(0, idx[done], part[done])
            keep = ~done
            idx, p, v, a, kk, h = idx[keep], p[keep], v[keep], a[keep], kk[keep], h[keep]
            sub = Bodies(sub.mass[keep], sub.charge[keep], bodies.damping)
    return pos, vel, acc
