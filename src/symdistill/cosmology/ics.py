"""Initial conditions: a Gaussian random field with colossus' linear power spectrum, displaced to
second order in Lagrangian perturbation theory (2LPT).

Conventions (used by :mod:`symdistill.cosmology.pm` too): comoving positions in Mpc/h, time in units
of 1/H0, the momentum ``p = a^2 dx/dt`` (so the peculiar velocity is ``100 p / a`` km/s). The linear
field is normalised at z = 0 and scaled by the growth factor D1(a) (D1(1) = 1).

The field is drawn as white noise in configuration space (deterministic by seed, Hermitian by
construction) and coloured in Fourier space: delta_k = W_k sqrt(P(k) / V_cell), so that the estimator
|delta_k V_cell|^2 / V of :func:`power_spectrum` averages to P(k).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft as sfft

from symdistill.cosmology.catalogue import QUIJOTE_FIDUCIAL
from symdistill.errors import SymdistillError

#: colossus' Eisenstein & Hu (1998) transfer function with baryon wiggles.
POWER_MODEL = "eisenstein98"


def colossus_cosmology(params: dict | None = None):
    """A colossus cosmology object (no cache files written: persistence off)."""
    import importlib.util
    if importlib.util.find_spec("colossus") is None:  # pragma: no cover - a dependency of the package
        raise SymdistillError("colossus is not installed: `pip install colossus` (a dependency of symdistill)")
    p = dict(QUIJOTE_FIDUCIAL if params is None else params)
    name = str(p.pop("name", "custom"))
    return _cosmology(name, tuple(sorted(p.items())))


@lru_cache(maxsize=8)
def _cosmology(name: str, items: tuple):
    from colossus.cosmology import cosmology
    return cosmology.setCosmology(f"symdistill-{name}", **dict(items), persistence="")


def linear_power(k: np.ndarray, cosmology: dict | None = None) -> np.ndarray:
    """The linear matter power spectrum at z = 0, (Mpc/h)^3, at wavenumbers ``k`` (h/Mpc); 0 at k = 0."""
    k = np.asarray(k, dtype=np.float64)
    out = np.zeros_like(k)
    pos = k > 0
    out[pos] = colossus_cosmology(cosmology).matterPowerSpectrum(k[pos], z=0.0, model=POWER_MODEL)
    return out


def growth(a: float, cosmology: dict | None = None) -> tuple[float, float, float, float]:
    """(D1, f1, D2, f2) at scale factor ``a``: the linear growth factor (1 today) and rate, and the
    second-order ones (D2 = -3/7 D1^2 Om(a)^(-1/143), f2 = 2 Om(a)^(6/11); Bouchet et al. 1995)."""
    c = colossus_cosmology(cosmology)
    z = 1.0 / a - 1.0
    d1 = float(c.growthFactor(z))
    om = float(c.Om(z))
    h = 1e-4  # f1 = dlnD/dlna, by a central difference of colossus' growth factor
    f1 = float(np.log(c.growthFactor(1 / (a * (1 + h)) - 1) / c.growthFactor(1 / (a * (1 - h)) - 1))
               / np.log((1 + h) / (1 - h)))
    return d1, f1, -3.0 / 7.0 * d1 ** 2 * om ** (-1.0 / 143.0), 2.0 * om ** (6.0 / 11.0)


def wavenumbers(n: int, box: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kx, ky, kz (h/Mpc) of a real FFT of an n^3 grid, broadcastable to (n, n, n // 2 + 1)."""
    k = 2 * np.pi * sfft.fftfreq(n, d=box / n)
    kz = 2 * np.pi * sfft.rfftfreq(n, d=box / n)
    return k[:, None, None], k[None, :, None], kz[None, None, :]


def linear_field_k(n: int, box: float, seed: int, cosmology: dict | None = None) -> np.ndarray:
    """The z = 0 linear overdensity on an n^3 grid, in Fourier space (numpy's rfftn convention)."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n, n, n))
    wk = sfft.rfftn(white, workers=-1)
    del white
    kx, ky, kz = wavenumbers(n, box)
    kk = np.sqrt(kx ** 2 + ky ** 2 + kz ** 2)
    cell = (box / n) ** 3
    wk *= np.sqrt(linear_power(kk, cosmology) / cell)
    wk[0, 0, 0] = 0.0
    return wk


def power_spectrum(field: np.ndarray, box: float, *, n_bins: int = 24, deconvolve_cic: bool = False):
    """Spherically averaged power spectrum of a real overdensity grid: (k centres, P(k), modes per bin),
    bins logarithmic from the fundamental to the Nyquist wavenumber. ``deconvolve_cic`` divides out the
    cloud-in-cell window of a painted field."""
    n = field.shape[0]
    fk = sfft.rfftn(field, workers=-1) * (box / n) ** 3
    kx, ky, kz = wavenumbers(n, box)
    kk = np.sqrt(kx ** 2 + ky ** 2 + kz ** 2)
    pk = np.abs(fk) ** 2 / box ** 3
    if deconvolve_cic:
        w = (np.sinc(kx * box / (2 * np.pi * n)) * np.sinc(ky * box / (2 * np.pi * n))
             * np.sinc(kz * box / (2 * np.pi * n))) ** 2
        pk = pk / w ** 2
    # the rfft half-plane counts every mode with 0 < kz < Nyquist twice
    weight = np.full(kk.shape, 2.0)
    weight[..., 0] = 1.0
    if n % 2 == 0:
        weight[..., -1] = 1.0
    kf, kn = 2 * np.pi / box, np.pi * n / box
    edges = np.geomspace(kf, kn, n_bins + 1)
    idx = np.digitize(kk.ravel(), edges) - 1
    ok = (idx >= 0) & (idx < n_bins)
    counts = np.bincount(idx[ok], weights=weight.ravel()[ok], minlength=n_bins)
    sums = np.bincount(idx[ok], weights=(weight * pk).ravel()[ok], minlength=n_bins)
    ksum = np.bincount(idx[ok], weights=(weight * kk).ravel()[ok], minlength=n_bins)
    good = counts > 0
    return ksum[good] / counts[good], sums[good] / counts[good], counts[good]


def _grad_potential(delta_k: np.ndarray, box: float, n: int) -> list[np.ndarray]:
    """-grad(phi) in configuration space for laplacian(phi) = delta: the Zel'dovich displacement."""
    kx, ky, kz = wavenumbers(n, box)
    k2 = kx ** 2 + ky ** 2 + kz ** 2
    k2[0, 0, 0] = 1.0
    phi_k = -delta_k / k2
    return [sfft.irfftn(-1j * ki * phi_k, s=(n, n, n), workers=-1) for ki in (kx, ky, kz)]


def second_order_source(delta_k: np.ndarray, box: float, n: int) -> np.ndarray:
    """delta2 = sum_{i<j} (phi_ii phi_jj - phi_ij^2) of the linear potential (laplacian phi = delta), in
    Fourier space: the source of the 2LPT potential."""
    kx, ky, kz = wavenumbers(n, box)
    ks = (kx, ky, kz)
    k2 = kx ** 2 + ky ** 2 + kz ** 2
    k2[0, 0, 0] = 1.0
    phi_k = -delta_k / k2

    def d2(i, j):
        return sfft.irfftn(-ks[i] * ks[j] * phi_k, s=(n, n, n), workers=-1)

    xx, yy, zz = d2(0, 0), d2(1, 1), d2(2, 2)
    src = xx * yy + xx * zz + yy * zz
    del xx, yy, zz
    for i, j in ((0, 1), (0, 2), (1, 2)):
        src -= d2(i, j) ** 2
    return sfft.rfftn(src, workers=-1)


def lpt_initial_conditions(n: int, box: float, a_start: float, seed: int, cosmology: dict | None = None,
                           *, order: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Particles on an n^3 lattice displaced by 2LPT (``order`` 1: Zel'dovich) to scale factor ``a_start``:
    (positions [n^3, 3] Mpc/h in [0, box), momenta p = a^2 dx/dt [n^3, 3] (H0 = 1), the z = 0 linear
    field in Fourier space)."""
    if order not in (1, 2):
        raise SymdistillError(f"`order` must be 1 (Zel'dovich) or 2 (2LPT) (got {order})")
    delta_k = linear_field_k(n, box, seed, cosmology)
    d1, f1, d2, f2 = growth(a_start, cosmology)
    e = colossus_cosmology(cosmology).Ez(1.0 / a_start - 1.0)
    psi1 = _grad_potential(delta_k, box, n)  # x = q + D1 psi1 + D2 psi2
    psi2 = (_grad_potential(second_order_source(delta_k, box, n), box, n) if order == 2
            else [np.zeros_like(p) for p in psi1])
    # 2LPT: x = q - D1 grad(phi1) + D2 grad(phi2) with laplacian(phi2) = delta2, i.e. psi2 = +grad(phi2)
    # = -(the Zel'dovich-like displacement of the source)
    q = (np.indices((n, n, n), dtype=np.float64).reshape(3, -1).T + 0.5) * (box / n)
    pos = np.empty_like(q)
    mom = np.empty_like(q)
    for i in range(3):
        s1, s2 = psi1[i].ravel(), -psi2[i].ravel()
        pos[:, i] = q[:, i] + d1 * s1 + d2 * s2
        mom[:, i] = a_start ** 2 * e * (f1 * d1 * s1 + f2 * d2 * s2)  # p = a^2 dx/dt, dx/dt = H f D psi
    return np.mod(pos, box), mom, delta_k
