"""The offline halo generator: 2LPT initial conditions, a particle-mesh run to z = 0, friends-of-friends
halos and the smoothed overdensity at their centres, in one deterministic call.

Sizes (:data:`SIZES`): ``tiny`` (125 Mpc/h, 64^3 particles: tests), ``default`` (250 Mpc/h, 128^3:
Quijote's particle mass, 6.6e11 Msun/h), ``large`` (500 Mpc/h, 256^3). Any box, particle count or seed
can be given; several independent boxes are several seeds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

from tqdm.auto import tqdm

from symdistill.cosmology.catalogue import QUIJOTE_FIDUCIAL, HaloCatalogue
from symdistill.cosmology.density import TARGET_MEDIAN, SmoothedDensity
from symdistill.cosmology.fof import friends_of_friends, group_properties, particle_mass
from symdistill.cosmology.ics import lpt_initial_conditions
from symdistill.cosmology.pm import PMStepper
from symdistill.errors import SymdistillError, check_positive, check_seed, unknown_name

#: name -> (box Mpc/h, particles per side)
SIZES = {"tiny": (125.0, 64), "default": (250.0, 128), "large": (500.0, 256)}


@dataclass(frozen=True)
class GeneratorConfig:
    """Settings of one generated box. ``smoothing``: the Gaussian radius of the target delta in Mpc/h,
    or None to calibrate it to a median of ``target_median`` (see :mod:`symdistill.cosmology.density`).
    ``mesh_factor``: PM mesh cells per particle per side."""

    box_size: float = 250.0
    n_side: int = 128
    seed: int = 0
    z_start: float = 9.0
    n_steps: int = 20
    mesh_factor: int = 2
    lpt_order: int = 2
    linking_length: float = 0.2
    min_members: int = 20
    smoothing: float | None = None
    target_median: float = TARGET_MEDIAN
    cosmology: dict = field(default_factory=lambda: dict(QUIJOTE_FIDUCIAL))

    @classmethod
    def of_size(cls, size: str, **overrides) -> "GeneratorConfig":
        if size not in SIZES:
            raise unknown_name("size", size, SIZES)
        box, n = SIZES[size]
        return cls(box_size=box, n_side=n, **overrides)

    def check(self) -> None:
        check_positive("box_size", self.box_size)
        check_seed("seed", self.seed)
        check_positive("z_start", self.z_start)
        for name in ("n_side", "n_steps", "mesh_factor", "min_members"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SymdistillError(f"`{name}` must be a positive integer (got {v!r})")
        if self.n_side < 8:
            raise SymdistillError(f"`n_side` must be >= 8 particles per side (got {self.n_side})")
        if self.n_side * self.mesh_factor > 1024:
            raise SymdistillError(f"a PM mesh of {self.n_side * self.mesh_factor}^3 cells will not fit a laptop: "
                                  "use fewer particles or --mesh-factor 1")
        check_positive("smoothing", self.smoothing, optional=True)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        return cls(**d)

    def with_(self, **kw) -> "GeneratorConfig":
        return replace(self, **kw)


def generate(config: GeneratorConfig | None = None, *, progress: bool = True, log=None) -> HaloCatalogue:
    """Simulate one box and return its halos with their overdensity ``delta``; deterministic by seed."""
    c = config or GeneratorConfig()
    c.check()
    n_mesh = c.n_side * c.mesh_factor
    a_start = 1.0 / (1.0 + c.z_start)
    t0 = time.perf_counter()
    stepper = PMStepper(c.box_size, n_mesh, a_start, 1.0, c.n_steps, c.cosmology)
    bar = tqdm(total=c.n_steps + 3, disable=None if progress else True, unit="stage",
               desc=f"box {c.box_size:g} Mpc/h, {c.n_side}^3")
    pos, mom, _ = lpt_initial_conditions(c.n_side, c.box_size, a_start, c.seed, c.cosmology, order=c.lpt_order)
    bar.update(1)
    stepper.run(pos, mom, progress=lambda i: bar.update(1))
    labels, members = friends_of_friends(pos, c.box_size, linking_length=c.linking_length,
                                         min_members=c.min_members)
    vel = mom * 100.0  # peculiar velocity a dx/dt = p / a, in 100 km/s; a = 1 at the end
    centres, mean_v = group_properties(pos, vel, labels, c.box_size)
    bar.update(1)
    density = SmoothedDensity(pos, c.box_size, n_mesh)
    radius = c.smoothing if c.smoothing is not None else density.calibrate(centres, c.target_median)
    delta = density.at(centres, radius)
    bar.update(1)
    bar.close()
    m_p = particle_mass(c.box_size, c.n_side ** 3, stepper.omega_m)
    meta = {"source": "symdistill cosmology simulate", "generator": c.to_dict(), "smoothing_radius": radius,
            "particle_mass": m_p, "n_mesh": n_mesh, "seconds": round(time.perf_counter() - t0, 2)}
    cat = HaloCatalogue(centres, mean_v, members * m_p, c.box_size, delta=delta, redshift=0.0,
                        cosmology=dict(c.cosmology), meta=meta)
    if log is not None:
        log(f"{len(cat):,} halos; smoothing radius {radius:.2f} Mpc/h; {meta['seconds']:.0f} s")
    return cat
