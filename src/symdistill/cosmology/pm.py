"""A particle-mesh N-body solver: cloud-in-cell painting, an FFT Poisson solve, kick-drift-kick
leapfrog in the scale factor.

Units as in :mod:`symdistill.cosmology.ics`: comoving x in Mpc/h, time in 1/H0, momentum p = a^2 dx/dt.
Equations: dp/dt = -grad(phi) with laplacian(phi) = 3/2 Om delta / a, dx/dt = p / a^2; in the scale
factor, dp/da = F / (a E(a)) and dx/da = p / (a^3 E(a)). The kick and drift factors are the exact
integrals of 1/(a E) and 1/(a^3 E) over each step (so a step is exact for free particles and for a
constant force). The force is the spectral gradient of the potential of the CIC-painted overdensity,
interpolated back with the same CIC weights: a particle exerts no force on itself, and the momentum
sum is conserved to rounding (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from scipy.integrate import quad

from symdistill.cosmology.ics import colossus_cosmology, wavenumbers


def _cells(pos: np.ndarray, n: int, box: float):
    """CIC: the lower cell index [N, 3] and the weight of the upper neighbour [N, 3] of each particle
    (cell centres at (i + 0.5) box / n)."""
    u = pos * (n / box) - 0.5
    lo = np.floor(u)
    frac = u - lo
    return lo.astype(np.int64) % n, frac


def _corner_index(lo: np.ndarray, n: int, dx: int, dy: int, dz: int) -> np.ndarray:
    return (((lo[:, 0] + dx) % n) * n + (lo[:, 1] + dy) % n) * n + (lo[:, 2] + dz) % n


def _corners(lo, frac, n):
    for dx in (0, 1):
        wx = frac[:, 0] if dx else 1 - frac[:, 0]
        for dy in (0, 1):
            wy = frac[:, 1] if dy else 1 - frac[:, 1]
            for dz in (0, 1):
                wz = frac[:, 2] if dz else 1 - frac[:, 2]
                yield _corner_index(lo, n, dx, dy, dz), wx * wy * wz


def paint(pos: np.ndarray, n: int, box: float, weights: np.ndarray | None = None) -> np.ndarray:
    """The CIC overdensity rho / mean(rho) - 1 of particles (equal masses, or ``weights``) on an n^3 grid."""
    lo, frac = _cells(pos, n, box)
    grid = np.zeros(n ** 3)
    for idx, w in _corners(lo, frac, n):
        grid += np.bincount(idx, weights=w if weights is None else w * weights, minlength=n ** 3)
    total = len(pos) if weights is None else float(np.sum(weights))
    return (grid * (n ** 3 / total) - 1.0).reshape(n, n, n)


def interpolate(fields: list[np.ndarray], pos: np.ndarray, box: float) -> np.ndarray:
    """The CIC interpolation of grid ``fields`` (each n^3) at ``pos``: [N, len(fields)]."""
    n = fields[0].shape[0]
    lo, frac = _cells(pos, n, box)
    flat = [f.ravel() for f in fields]
    out = np.zeros((len(pos), len(fields)))
    for idx, w in _corners(lo, frac, n):
        for c, f in enumerate(flat):
            out[:, c] += w * f[idx]
    return out


def potential_k(delta: np.ndarray, box: float, factor: float) -> np.ndarray:
    """phi_k for laplacian(phi) = factor * delta, in Fourier space (the k = 0 mode is 0)."""
    n = delta.shape[0]
    dk = sfft.rfftn(delta, workers=-1)
    kx, ky, kz = wavenumbers(n, box)
    k2 = kx ** 2 + ky ** 2 + kz ** 2
    k2[0, 0, 0] = 1.0
    phi = -factor * dk / k2
    phi[0, 0, 0] = 0.0
    return phi


def forces(pos: np.ndarray, n_mesh: int, box: float, a: float, omega_m: float) -> np.ndarray:
    """F = -grad(phi) at each particle, laplacian(phi) = 3/2 Om delta / a (H0 = 1, Mpc/h)."""
    phi = potential_k(paint(pos, n_mesh, box), box, 1.5 * omega_m / a)
    kx, ky, kz = wavenumbers(n_mesh, box)
    s = (n_mesh,) * 3
    # the Nyquist planes of a derivative are zeroed (their sign is ambiguous): the force stays real
    grads = []
    for k in (kx, ky, kz):
        kd = k.copy()
        if n_mesh % 2 == 0:
            kd[np.isclose(np.abs(kd), np.pi * n_mesh / box)] = 0.0
        grads.append(sfft.irfftn(-1j * kd * phi, s=s, workers=-1))
    del phi
    return interpolate(grads, pos, box)


@dataclass
class PMStepper:
    """Kick-drift-kick leapfrog from ``a_start`` to ``a_end`` in ``n_steps`` steps uniform in a."""

    box: float
    n_mesh: int
    a_start: float
    a_end: float = 1.0
    n_steps: int = 20
    cosmology: dict | None = None

    def __post_init__(self):
        c = colossus_cosmology(self.cosmology)
        self.omega_m = float(c.Om0)
        self._E = lambda a: float(c.Ez(1.0 / a - 1.0))
        self.a = np.linspace(self.a_start, self.a_end, self.n_steps + 1)

    def kick_factor(self, a0: float, a1: float) -> float:
        return quad(lambda a: 1.0 / (a * self._E(a)), a0, a1)[0]

    def drift_factor(self, a0: float, a1: float) -> float:
        return quad(lambda a: 1.0 / (a ** 3 * self._E(a)), a0, a1)[0]

    def force(self, pos, a):
        return forces(pos, self.n_mesh, self.box, a, self.omega_m)

    def step(self, pos, mom, i: int, force=None):
        """One KDK step i -> i + 1 (in place); returns the force at the new positions (reused by the
        next step's first kick)."""
        a0, a1 = self.a[i], self.a[i + 1]
        am = 0.5 * (a0 + a1)
        if force is None:
            force = self.force(pos, a0)
        mom += force * self.kick_factor(a0, am)
        pos += mom * self.drift_factor(a0, a1)
        np.mod(pos, self.box, out=pos)
        force = self.force(pos, a1)
        mom += force * self.kick_factor(am, a1)
        return force

    def run(self, pos, mom, *, progress=None):
        """All steps, in place; ``progress(i)`` after each."""
        force = None
        for i in range(self.n_steps):
            force = self.step(pos, mom, i, force)
            if progress is not None:
                progress(i)
        return pos, mom
