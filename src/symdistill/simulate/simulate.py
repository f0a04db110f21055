"""simulate(): initial conditions and vectorised integration of many simulations at once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from symdistill.errors import SymdistillError, check_dim, check_positive, check_seed
from symdistill.simulate.integrate import Bodies, accelerations, advance, get_integrator
from symdistill.simulate.potentials import Law, get_law


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a dataset besides the law. ``dt`` None means the law's default."""

    n_sims: int = 1000
    n_bodies: int = 4
    dim: int = 2
    n_steps: int = 500       # saved states, the first at t = 0
    dt: float | None = None  # time between saved states
    substeps: int = 1        # integration steps between saved states (the minimum when adaptive)
    max_substeps: int = 64   # > substeps: each simulation refines its steps near close encounters
    tolerance: float = 0.05  # adaptive step <= tolerance x the shortest pair timescale
    integrator: str = "verlet"
    seed: int = 0
    dtype: str = "float64"   # integration precision
    batch_size: int | None = None  # simulations integrated together (None: sized for memory)
    device: str = "cpu"

    def __post_init__(self):
        for name in ("n_sims", "n_steps", "substeps", "max_substeps", "tolerance"):
            check_positive(name, getattr(self, name))
        if self.n_bodies < 2:
            raise SymdistillError(f"`n_bodies` must be >= 2 (got {self.n_bodies})")
        check_dim(self.dim)
        check_seed("seed", self.seed)
        check_positive("dt", self.dt, optional=True)
        if self.dtype not in ("float64", "float32"):
            raise SymdistillError(f"`dtype` must be float64 or float32 (got {self.dtype!r})")
        check_positive("batch_size", self.batch_size, optional=True)
        get_integrator(self.integrator)

    def resolved_dt(self, law: Law) -> float:
        return self.dt if self.dt is not None else law.dt

    def auto_batch(self) -> int:
        if self.batch_size:
            return min(self.batch_size, self.n_sims)
        # ~40 temporaries of [B, N, N, D] per force evaluation; keep them near 256 MB.
        per_sim = 40 * self.n_bodies**2 * self.dim * 8
        return int(max(1, min(self.n_sims, (256 << 20) // per_sim)))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Trajectory:
    """An in-memory dataset: pos/vel/acc [n_sims, n_steps, n_bodies, dim], mass/charge [n_sims, n_bodies]."""

    pos: np.ndarray
    vel: np.ndarray
    acc: np.ndarray
    mass: np.ndarray
    charge: np.ndarray
    t: np.ndarray
    law: Law
    config: SimulationConfig

    @property
    def dt(self) -> float:
        return self.config.resolved_dt(self.law)


def initial_conditions(n_sims: int, n_bodies: int, dim: int, seed: int, law: Law):
    """Positions and velocities N(0,1), masses exp(N(0,1)), charges +-1 where the law uses them.

    Every draw is made whatever the law, in a fixed order, so one seed gives the same positions,
    velocities and masses for every law (and for every batch size).
    """
    rng = np.random.default_rng(seed)
    pos = rng.standard_normal((n_sims, n_bodies, dim))
    vel = rng.standard_normal((n_sims, n_bodies, dim))
    mass = np.exp(rng.standard_normal((n_sims, n_bodies)))
    sign = rng.integers(0, 2, size=(n_sims, n_bodies)) * 2.0 - 1.0
    nuisance = rng.standard_normal((n_sims, n_bodies))
    if law.uses_charge:
        charge = sign
    elif law.paper_quirks:
        charge = nuisance  # the reference code's constant N(0,1) feature, unused by the law
    else:
        charge = np.zeros((n_sims, n_bodies))
    return pos, vel, mass, charge


def integrate_chunks(law: Law, config: SimulationConfig, *, chunk_steps: int = 50,
                     progress: bool = False) -> Iterator[tuple[slice, slice, dict[str, np.ndarray]]]:
    """Integrate every simulation and yield saved states in blocks.

    Yields ``(sims, steps, arrays)`` where arrays holds ``pos``, ``vel``, ``acc`` of shape
    [len(sims), len(steps), n_bodies, dim]. Blocks of simulations are integrated together.
    """
    c = config
    dtype = getattr(torch, c.dtype)
    dev = torch.device(c.device)
    pos0, vel0, mass, charge = initial_conditions(c.n_sims, c.n_bodies, c.dim, c.seed, law)
    integrator = get_integrator(c.integrator)
    dt = c.resolved_dt(law)
    batch = c.auto_batch()
    damping = law.damping_coefficients(c.n_bodies, dtype=dtype, device=dev)
    bar = tqdm(total=c.n_sims * c.n_steps, disable=None if progress else True, unit="state", unit_scale=True,
               desc=f"simulate {law.name}")
    with torch.no_grad():
        for b0 in range(0, c.n_sims, batch):
            sims = slice(b0, min(b0 + batch, c.n_sims))
            t = lambda a: torch.as_tensor(a[sims], dtype=dtype, device=dev)  # noqa: E731
            bodies = Bodies(t(mass), t(charge), damping)
            pos, vel = t(pos0), t(vel0)
            acc = accelerations(law, pos, vel, bodies)
            for s0 in range(0, c.n_steps, chunk_steps):
                steps = slice(s0, min(s0 + chunk_steps, c.n_steps))
                k = steps.stop - steps.start
                out = {n: torch.empty((pos.shape[0], k, c.n_bodies, c.dim), dtype=dtype, device=dev)
                       for n in ("pos", "vel", "acc")}
                for i in range(k):
                    if s0 + i > 0:
                        pos, vel, acc = advance(integrator, law, pos, vel, acc, bodies, dt,
                                                c.substeps, c.max_substeps, c.tolerance)
                    out["pos"][:, i], out["vel"][:, i], out["acc"][:, i] = pos, vel, acc
                bad = [n for n, v in out.items() if not torch.isfinite(v).all()]
                if bad:
                    raise SymdistillError(
                        f"Simulation of {law.name!r} overflowed (NaN or inf in {', '.join(bad)} by step {steps.stop}): "
                        "nothing was written; lower --dt, raise --substeps, or check the potential's size"
                    )
                bar.update((sims.stop - sims.start) * k)
                yield sims, steps, {n: v.cpu().numpy() for n, v in out.items()}
    bar.close()


def simulate(system=None, *, potential=None, config: SimulationConfig | None = None,
             progress: bool = False, paper_quirks: bool = False, damping: float | None = None,
             **overrides) -> Trajectory:
    """Simulate in memory. ``simulate("spring", n_sims=10, dim=3)`` or with a ``config``.

    For datasets too large for memory use :func:`symdistill.simulate.dataset.simulate_to_file`.
    """
    law = get_law(system, potential=potential, paper_quirks=paper_quirks, damping=damping)
    config = _resolve_config(config, overrides)
    c = config
    shape = (c.n_sims, c.n_steps, c.n_bodies, c.dim)
    arrays = {n: np.empty(shape, dtype=np.float64) for n in ("pos", "vel", "acc")}
    for sims, steps, block in integrate_chunks(law, c, progress=progress):
        for n in arrays:
            arrays[n][sims, steps] = block[n]
    _, _, mass, charge = initial_conditions(c.n_sims, c.n_bodies, c.dim, c.seed, law)
    t = np.arange(c.n_steps) * c.resolved_dt(law)
    return Trajectory(**arrays, mass=mass, charge=charge, t=t, law=law, config=c)


def _resolve_config(config: SimulationConfig | None, overrides: dict) -> SimulationConfig:
    fields = SimulationConfig.__dataclass_fields__
    bad = [k for k in overrides if k not in fields]
    if bad:
        from symdistill.errors import unknown_name
        raise unknown_name("simulation option", bad[0], fields)
    base = config.to_dict() if config is not None else {}
    return SimulationConfig(**{**base, **overrides})
