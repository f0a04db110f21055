"""The in-memory halo catalogue every cosmology command reads and writes.

Units: positions in Mpc/h, wrapped into [0, box_size); velocities in km/s (peculiar); masses in
Msun/h; ``delta`` the smoothed matter overdensity at each halo centre (NaN where unknown, e.g. a
Quijote catalogue read without a density field).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from symdistill.errors import SymdistillError

#: Quijote's fiducial cosmology (Villaescusa-Navarro et al. 2020), as colossus parameters.
QUIJOTE_FIDUCIAL = {"name": "quijote-fiducial", "flat": True, "H0": 67.11, "Om0": 0.3175, "Ob0": 0.049,
                    "ns": 0.9624, "sigma8": 0.834}


@dataclass
class HaloCatalogue:
    """Halos of one snapshot in a periodic box.

    ``pos`` [N, 3] Mpc/h, ``vel`` [N, 3] km/s, ``mass`` [N] Msun/h, ``delta`` [N] (NaN: unknown);
    ``box_size`` Mpc/h; ``redshift``; ``cosmology`` (colossus parameter names, see
    :data:`QUIJOTE_FIDUCIAL`); ``meta``: provenance (source, seed, generator settings), JSON-safe.
    """

    pos: np.ndarray
    vel: np.ndarray
    mass: np.ndarray
    box_size: float
    delta: np.ndarray | None = None
    redshift: float = 0.0
    cosmology: dict = field(default_factory=lambda: dict(QUIJOTE_FIDUCIAL))
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.pos = np.asarray(self.pos, dtype=np.float64).reshape(-1, 3)
        n = len(self.pos)
        self.vel = np.asarray(self.vel, dtype=np.float64).reshape(-1, 3)
        self.mass = np.asarray(self.mass, dtype=np.float64).reshape(-1)
        self.delta = (np.full(n, np.nan) if self.delta is None
                      else np.asarray(self.delta, dtype=np.float64).reshape(-1))
        for name in ("vel", "mass", "delta"):
            if len(getattr(self, name)) != n:
                raise SymdistillError(f"halo catalogue: `{name}` has {len(getattr(self, name))} rows but `pos` "
                                      f"has {n} (every field needs one row per halo)")
        self.box_size = float(self.box_size)
        if not (np.isfinite(self.box_size) and self.box_size > 0):
            raise SymdistillError(f"halo catalogue: `box_size` must be a positive number of Mpc/h "
                                  f"(got {self.box_size})")
        if n and not (np.isfinite(self.pos).all() and np.isfinite(self.mass).all()):
            raise SymdistillError("halo catalogue: `pos` and `mass` must be finite (found NaN or inf)")
        if n and (self.mass <= 0).any():
            raise SymdistillError("halo catalogue: every `mass` must be > 0 Msun/h")
        self.pos = np.mod(self.pos, self.box_size)
        self.pos[self.pos >= self.box_size] = 0.0  # np.mod can round up to the box size itself
        self.redshift = float(self.redshift)

    def __len__(self) -> int:
        return len(self.pos)

    @property
    def has_delta(self) -> bool:
        return len(self) > 0 and bool(np.isfinite(self.delta).all())

    def subset(self, index) -> "HaloCatalogue":
        """The halos at ``index`` (a boolean mask or integer indices), with the same box and metadata."""
        return HaloCatalogue(self.pos[index], self.vel[index], self.mass[index], self.box_size,
                             delta=self.delta[index], redshift=self.redshift,
                             cosmology=dict(self.cosmology), meta=dict(self.meta))

    def summary(self) -> str:
        lines = [f"halo catalogue: {len(self):,} halos in a {self.box_size:g} Mpc/h box at z = {self.redshift:g}"]
        if len(self):
            m = self.mass
            lines.append(f"  mass: {m.min():.3g} to {m.max():.3g} Msun/h (median {np.median(m):.3g})")
            n_density = len(self) / self.box_size ** 3
            lines.append(f"  number density: {n_density:.3g} (Mpc/h)^-3")
            if self.has_delta:
                d = self.delta
                lines.append(f"  delta: median {np.median(d):.3f}, {np.mean(d > 1):.1%} above 1, "
                             f"range {d.min():.2f} to {d.max():.2f}")
            else:
                lines.append("  delta: not known (a catalogue without the density field)")
        source = self.meta.get("source")
        if source:
            lines.append(f"  source: {source}")
        return "\n".join(lines)
