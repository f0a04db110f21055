"""Positions-only data: noisy positions at the saved states; velocities and accelerations estimated.

Arrays are ``pos [..., T, N, D]``: time is axis -3 (``[n_sims, n_steps, n_bodies, dim]`` in files),
saved states ``dt`` apart. Each coordinate series (one body, one axis, one simulation) is smoothed
and differentiated on its own, by scipy: ``"savgol"`` (:func:`scipy.signal.savgol_filter`,
``deriv`` 0/1/2, ``delta=dt``) or ``"spline"`` (:func:`scipy.interpolate.make_smoothing_spline`,
its GCV-chosen smoothing, fitted on the step index so that scipy's search for the smoothing
parameter does not depend on ``dt``: in time units at dt 1e-3 it returned straight lines; the
derivatives are then scaled by ``1/dt``, ``1/dt^2``).

Why savgol, polyorder 3, window chosen from the data (``benchmarks/derivatives.py``: spring-2D, 4
bodies, 100 saved states, dt 1e-2, 200 simulations; rms = sqrt(mean |a_est - a|^2 / mean |a|^2),
med = median over bodies and states of |a_est - a| / |a|, on the states kept, see Ends):

    noise (x position scale)     0                  0.01               0.05
                                 rms      med       rms     med        rms     med
    savgol w=7  p=4              0.012    1.1e-4    10      33         52      165
    savgol w=31 p=3              0.11     0.029     0.13    0.24       0.40    1.0
    savgol w=51 p=3              0.20     0.076     0.20    0.15       0.23    0.41
    savgol w=51 p=4              0.10     0.018     0.12    0.21       0.31    0.90
    savgol auto p=3 (default)    0.024    1.4e-3    0.13    0.24       0.23    0.43    (w = 7, 31, 49)
    savgol auto p=4              0.012    1.1e-4    0.12    0.23       0.28    0.31    (w = 7, 49, 99)
    spline, GCV (32 sims)        0.005    3.6e-4    0.54    0.73       1.65    3.2

No fixed window serves both exact and noisy positions, so :func:`choose_window` picks it per file:
the least estimated error^2 = noise^2 (the position noise, estimated below, through the filter's
coefficients) + bias^2 (the difference between the polyorder p and p+2 fits of the same window,
less that difference's own noise). Over 15 spring cases (noise 0 to 0.05, three seeds) the choice
for p=3 was within 14% of the best window's rms; for p=4 it was up to 40% off at 5% noise (the p+2
fit shares more of a quartic's bias, so wide windows look unbiased), hence p=3 although p=4's best
window is ~10% better at 1-2% noise. The GCV spline is best on exact positions but undersmooths for a
second derivative (GCV suits the *positions*) and scipy searches its parameter only in (0, n); it
also takes ~40 ms per series (~10 min for a 2000-simulation file). r2 (dt 1e-3: 100 states are 0.1
time units) is not observable at 1% noise by any estimator (median relative error > 2): a typical
acceleration moves a body 0.5|a|t^2 ~ 0.007 over the whole record, the size of the noise; and on
exact r2 positions the window goes wide (median 1e-3 instead of 1e-6 at w=7) because the close
encounters, which dominate the mean squared error, are unresolved at the saved cadence by any window.

Noise estimate, from the data alone (a user's file does not come with its noise known): sigma_hat
from the residual r = (I - H) y of a short savgol smoother H (window 2p+3), each r_t divided by its
noise gain ||(I - H)_t|| (the degrees of freedom), as a median absolute deviation (robust to the
states where H misses the signal); measured at 0.99 x the injected noise. The acceleration noise
per coordinate is sigma_a = sigma_hat * rms_t ||c_t||, c_t the deriv=2 coefficients at each kept
state (= ||c|| / dt^2 inside); for the spline, a parametric bootstrap on 64 series. It is noise
only: a formula that explains the data leaves sqrt(sigma_a^2 + bias^2), with the bias estimated apart
(``acc_bias_estimate``; spring, 1%: 0.45 noise and 0.66 bias against 0.80 measured).

Ends: savgol ``mode="interp"`` fits the first and last windows one-sidedly and the natural spline
pins the curvature at the ends to 0. Measured (spring, 1% noise, w=31, p=3: rms by state 0.51 at the
first, 0.25 five states in, 0.19 at window//4, 0.12 inside): over the states kept, dropping window//4
at each end gives the rms of dropping window//2 (0.133 both; 0.184 keeping all) with ~15% more states
(49: 0.234 both, 0.314 all). So ``window // 4`` states are dropped at each end (savgol), and 5 for the
spline (its error is at the interior level from the 5th state).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import h5py
import numpy as np

from symdistill import __version__
from symdistill.errors import SymdistillError, check_positive, unknown_name
from symdistill.io import SpaceGuard, atomic_path, check_output_file, hdf5_writing
from symdistill.limits import DEFAULT_MAX_SIZE, check_file_size

METHODS = ("savgol", "spline")
POLYORDER = 3            # savgol default (measured: module docstring)
SPLINE_TRIM = 5          # states dropped at each end by the spline (measured)
SAMPLE_SIMS = 64         # simulations the window choice and the spline bootstrap look at
NOISE_STREAM = 0x0B5     # tags the noise's random stream apart from the initial conditions'
BLOCK_VALUES = 1 << 22   # values per array a file is read and written in (~32 MB of float64)


@dataclass(frozen=True)
class Estimator:
    """How velocities and accelerations are estimated from positions.

    ``window`` (savgol, odd, in saved states) None: chosen from the data by :func:`choose_window`.
    ``trim`` (states dropped at each end) None: ``window // 4`` (savgol) or 5 (spline).
    """

    method: str = "savgol"
    window: int | None = None
    polyorder: int | None = None    # savgol only; None: POLYORDER
    trim: int | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise unknown_name("estimator", self.method, METHODS)
        if self.method == "spline" and (self.window is not None or self.polyorder is not None):
            raise SymdistillError("`window` and `polyorder` apply to the savgol estimator only: "
                                  "drop them or use --estimator savgol")
        if self.polyorder is not None and self.polyorder < 2:
            raise SymdistillError(f"`polyorder` must be >= 2 to give accelerations (got {self.polyorder})")
        if self.window is not None and (self.window % 2 == 0 or self.window <= self.order):
            raise SymdistillError(f"`window` must be odd and > polyorder {self.order} (got {self.window})")
        check_positive("trim", self.trim, allow_zero=True, optional=True)

    @property
    def order(self) -> int:
        return POLYORDER if self.polyorder is None else self.polyorder

    @property
    def edge(self) -> int:
        """States dropped at each end of every simulation."""
        if self.trim is not None:
            return self.trim
        if self.method == "spline":
            return SPLINE_TRIM
        return 0 if self.window is None else self.window // 4

    def min_steps(self) -> int:
        if self.method == "spline":
            return max(5, 2 * self.edge + 1, 2 * self.order + 3)  # 2p+3: the noise estimate's smoother
        return max(self.window or 0, 2 * self.order + 3, 2 * self.edge + 1)

    def check_steps(self, n_steps: int) -> None:
        need = self.min_steps()
        if n_steps < need:
            raise SymdistillError(
                f"Estimating accelerations with {self.describe()} needs >= {need} saved states per simulation "
                f"(got {n_steps}): save more --steps" + (" or choose a smaller window" if self.window else ""))

    def describe(self) -> str:
        if self.method == "spline":
            return "spline (GCV smoothing)"
        return f"savgol(window={self.window or 'auto'}, polyorder={self.order})"

    def resolve(self, pos: np.ndarray, dt: float) -> Estimator:
        """This estimator with its window fixed (chosen from ``pos`` when None) and polyorder set."""
        self.check_steps(pos.shape[-3])
        if self.method == "spline":
            return self
        window = self.window or choose_window(pos, dt, self.order)
        return replace(self, window=window, polyorder=self.order)


def as_estimator(estimator: str | Estimator | None = None, **options) -> Estimator:
    """``"savgol"``, ``"spline"``, an :class:`Estimator` or None (the default), plus its options
    (an option given as None keeps the default)."""
    names = {f.name for f in fields(Estimator)} - {"method"}
    bad = [k for k in options if k not in names]
    if bad:
        raise unknown_name("estimator option", bad[0], names)
    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(estimator, Estimator):
        return replace(estimator, **options)
    return Estimator(method=estimator or "savgol", **options)


# ---- derivatives -----------------------------------------------------------------------------
def estimate_derivatives(pos, dt: float, *, method: str = "savgol", **options):
    """Smoothed positions, velocities and accelerations from positions ``pos [..., T, N, D]``.

    Time is axis -3, saved states ``dt`` apart; every state is returned (the worse ends included:
    :func:`observe` drops them). Options: ``window``, ``polyorder`` (savgol). Shapes: all ``pos.shape``.
    """
    pos = _check_pos(pos)
    check_positive("dt", dt)
    est = as_estimator(method, **options).resolve(pos, dt)
    return _apply(est, pos, dt)


def _apply(est: Estimator, pos: np.ndarray, dt: float):
    from scipy.interpolate import make_smoothing_spline  # scipy here, not at import: the CLI starts faster
    from scipy.signal import savgol_filter

    if est.method == "savgol":
        return tuple(savgol_filter(pos, est.window, est.order, deriv=k, delta=dt, axis=-3) for k in range(3))
    y, shape = _series(pos)
    x = np.arange(len(y), dtype=np.float64)
    spline = make_smoothing_spline(x, y, axis=0)
    return tuple(_unseries(spline(x, k) / dt**k, shape) for k in range(3))


def _series(pos: np.ndarray):
    """[..., T, N, D] -> [T, M] (one column per coordinate series) and the shape to undo it."""
    moved = np.moveaxis(pos, -3, 0)
    return moved.reshape(moved.shape[0], -1), moved.shape


def _unseries(y: np.ndarray, shape) -> np.ndarray:
    return np.moveaxis(y.reshape(shape), 0, -3)


def _check_pos(pos) -> np.ndarray:
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim < 3:
        raise SymdistillError(f"Expected positions [..., n_steps, n_bodies, dim] (got shape {list(pos.shape)})")
    if not np.isfinite(pos).all():
        raise SymdistillError("Positions contain NaN or inf: remove those simulations before estimating derivatives")
    return pos


@functools.lru_cache(maxsize=64)
def _operator(n_steps: int, window: int, polyorder: int, deriv: int, dt: float) -> np.ndarray:
    """savgol_filter as a matrix M [T, T]: M @ y is the filter applied to the series y."""
    from scipy.signal import savgol_filter

    m = savgol_filter(np.eye(n_steps), window, polyorder, deriv=deriv, delta=dt, axis=0)
    m.flags.writeable = False
    return m


def _odd_windows(lo: int, hi: int) -> list[int]:
    grid = np.unique(np.r_[np.arange(lo, 16), np.geomspace(17, max(hi, 17), 16).round()]).astype(int)
    return [int(w) for w in grid if w % 2 and lo <= w <= hi]


def _sample(y: np.ndarray, at_most: int = SAMPLE_SIMS * 16) -> np.ndarray:
    cols = np.unique(np.linspace(0, y.shape[1] - 1, min(at_most, y.shape[1])).round().astype(int))
    return y[:, cols]


def choose_window(pos, dt: float, polyorder: int = POLYORDER) -> int:
    """The savgol window with the least estimated acceleration error on ``pos [..., T, N, D]``:
    noise^2 + bias^2 from :func:`_error_terms`, over the states kept (``w // 4`` dropped at each end)."""
    y = _sample(_series(_check_pos(pos))[0])
    n = y.shape[0]
    sigma = position_noise(y, polyorder)
    windows = _odd_windows(polyorder + 3, n if n % 2 else n - 1)
    if not windows:
        raise SymdistillError(f"Too few saved states ({n}) to choose a savgol window: save more --steps")
    err2 = [sum(x**2 for x in _error_terms(y, w, polyorder, w // 4, dt, sigma)) for w in windows]
    return windows[int(np.argmin(err2))]


def _error_terms(y: np.ndarray, window: int, polyorder: int, trim: int, dt: float, sigma: float):
    """rms noise and rms smoothing bias per coordinate of the savgol acceleration of series ``y [T, M]``
    on the kept states. Noise: sigma |D_p| (D_p: the deriv=2 filter as a matrix, rms over its rows).
    Bias: from the p+2 fit of the same window, sqrt(max(mean (a_p - a_{p+2})^2 - sigma^2 |D_p - D_{p+2}|^2, 0));
    it reads low where the p+2 fit shares the bias. None when the window is too short for p+2."""
    n = y.shape[0]
    kept = slice(trim, n - trim)
    dp = _operator(n, window, polyorder, 2, dt)[kept]
    noise = sigma * float(np.sqrt(np.mean((dp**2).sum(1))))
    if window <= polyorder + 2:
        return noise, None
    delta = dp - _operator(n, window, polyorder + 2, 2, dt)[kept]
    bias2 = float(np.mean((delta @ y) ** 2)) - sigma**2 * float(np.mean((delta**2).sum(1)))
    return noise, float(np.sqrt(max(bias2, 0.0)))


def position_noise(y: np.ndarray, polyorder: int = POLYORDER) -> float:
    """sigma_hat of series ``y [T, M]`` from the residual r = (I - H) y of a window-(2p+3) savgol H.

    Each r_t is divided by its own standard deviation per unit noise, ||(I - H)_t||, and sigma_hat is
    the median absolute value over 0.6745 (the normal distribution's): unbiased for Gaussian noise, and
    blind to the few states where the smoother misses the signal itself (close encounters), which an
    rms would count as noise.
    """
    resid, norms = _residual(y.shape[0], polyorder)
    return float(np.median(np.abs(resid @ y) / norms[:, None]) / 0.6744897501960817)


@functools.lru_cache(maxsize=8)
def _residual(n_steps: int, polyorder: int) -> tuple[np.ndarray, np.ndarray]:
    """I - H for the noise estimate's smoother H (savgol, window 2p+3) and the norms of its rows."""
    resid = np.eye(n_steps) - _operator(n_steps, 2 * polyorder + 3, polyorder, 0, 1.0)
    norms = np.sqrt((resid**2).sum(1))
    resid.flags.writeable = norms.flags.writeable = False
    return resid, norms


@dataclass(frozen=True)
class NoiseEstimate:
    """Per coordinate, from the data alone: ``pos`` (sigma_hat, position units), ``acc`` (propagated
    acceleration noise, acceleration units), ``acc_bias`` (rough rms smoothing bias; None: unknown)."""

    pos: float
    acc: float
    acc_bias: float | None


def estimate_noise(pos, dt: float, estimator: Estimator) -> NoiseEstimate:
    """The noise of ``estimator``'s (window resolved) accelerations from ``pos [..., T, N, D]``."""
    y = _sample(_series(_check_pos(pos))[0])
    n, est = y.shape[0], estimator
    sigma = position_noise(y, est.order)
    if est.method == "spline":
        kept = slice(est.edge, n - est.edge)
        return NoiseEstimate(sigma, sigma * _spline_gain(_sample(y, SAMPLE_SIMS), dt, kept), None)
    return NoiseEstimate(sigma, *_error_terms(y, est.window, est.order, est.edge, dt, sigma))


def _spline_gain(y: np.ndarray, dt: float, kept: slice) -> float:
    """Acceleration noise per unit position noise of the GCV spline, by a parametric bootstrap: refit
    the smoothed series plus fresh noise of the measured size and compare with the smoothed series'
    own second derivative."""
    from scipy.interpolate import make_smoothing_spline

    x = np.arange(y.shape[0], dtype=np.float64)
    smooth = make_smoothing_spline(x, y, axis=0)
    sigma = position_noise(y)
    if sigma == 0:
        return 0.0
    fake = smooth(x) + sigma * np.random.default_rng(NOISE_STREAM).standard_normal(y.shape)
    err = (make_smoothing_spline(x, fake, axis=0)(x, 2) - smooth(x, 2))[kept] / dt**2
    return float(np.sqrt(np.mean(err**2))) / sigma


# ---- noise -----------------------------------------------------------------------------------
def position_scale(pos) -> float:
    """The position scale noise is relative to: the rms of all coordinates about each state's
    centroid (the mean of its bodies), over ``pos [..., T, N, D]``. Translation invariant."""
    total, count = _centred_squares(pos)
    return float(np.sqrt(total / count))


def _centred_squares(pos) -> tuple[float, int]:
    pos = np.asarray(pos, dtype=np.float64)
    return float(np.sum((pos - pos.mean(axis=-2, keepdims=True)) ** 2)), pos.size


def add_noise(pos: np.ndarray, sigma: float, seed: int, sims=None) -> np.ndarray:
    """``pos [S, T, N, D]`` plus N(0, sigma^2) noise. Simulation ``sims[i]`` (default ``i``) draws its
    own stream ``default_rng([seed, NOISE_STREAM, sims[i]])``, so the noise does not depend on blocks."""
    out = np.array(pos, dtype=np.float64)
    sims = range(len(out)) if sims is None else sims
    if sigma > 0:
        for i, sim in enumerate(sims):
            out[i] += sigma * np.random.default_rng([seed, NOISE_STREAM, int(sim)]).standard_normal(out[i].shape)
    return out


def sample_sims(n_sims: int) -> np.ndarray:
    """The simulations the window is chosen on: up to SAMPLE_SIMS, evenly spread."""
    return np.unique(np.linspace(0, n_sims - 1, min(n_sims, SAMPLE_SIMS)).round().astype(int))


def check_noise(noise) -> None:
    if noise is not None and not (np.isfinite(noise) and noise >= 0):
        raise SymdistillError(f"`noise` must be >= 0, a fraction of the position scale (got {noise})")


@dataclass
class Observed:
    """Positions-only observation: ``pos`` (smoothed), ``vel``, ``acc`` (estimated), ``pos_observed``
    (what was observed) and ``acc_true`` (exact, or None; for benchmarks only) [S, T', N, D] on the
    kept states ``t``; ``mass``, ``charge`` [S, N]; ``attrs``: what a file of it records."""

    pos: np.ndarray
    vel: np.ndarray
    acc: np.ndarray
    pos_observed: np.ndarray
    acc_true: np.ndarray | None
    mass: np.ndarray | None
    charge: np.ndarray | None
    t: np.ndarray
    attrs: dict
    law: object = None


def observe(data, noise: float | None, *, seed: int = 0, dt: float | None = None,
            method: str | Estimator = "savgol", **options) -> Observed:
    """Observe positions only, with N(0, (noise * scale)^2) noise, and estimate vel and acc from them.

    ``data``: a :class:`~symdistill.simulate.simulate.Trajectory` or a dict with ``pos [S, T, N, D]``
    (``mass``, ``charge``, ``acc`` optional; then give ``dt``). ``noise`` 0 or None: the positions as
    they are (None records no noise level: a user's own positions). ``scale``: :func:`position_scale`
    of the exact positions. ``method``: "savgol", "spline" or an :class:`Estimator`; ``options``: its
    fields. Deterministic by ``seed``; the same as a file from ``simulate_to_file``.
    """
    check_noise(noise)
    get = (lambda k: getattr(data, k, None)) if not isinstance(data, dict) else data.get
    dt = dt if dt is not None else getattr(data, "dt", None)
    if dt is None:
        raise SymdistillError("Give `dt`, the time between saved states, with positions given as arrays")
    exact = _check_pos(get("pos"))
    if exact.ndim != 4:
        raise SymdistillError(f"Expected pos [n_sims, n_steps, n_bodies, dim] (got shape {list(exact.shape)})")
    est = as_estimator(method, **options)
    est.check_steps(exact.shape[1])
    scale = position_scale(exact)
    seen = add_noise(exact, (noise or 0.0) * scale, seed)
    picked = sample_sims(len(seen))
    est = est.resolve(seen[picked], dt)
    noise_est = estimate_noise(seen[picked], dt, est)
    smooth, vel, acc = _apply(est, seen, dt)
    kept = slice(est.edge, exact.shape[1] - est.edge)
    acc_true = get("acc")
    t = np.arange(exact.shape[1]) * dt if get("t") is None else np.asarray(get("t"))
    return Observed(smooth[:, kept], vel[:, kept], acc[:, kept], seen[:, kept],
                    None if acc_true is None else np.asarray(acc_true)[:, kept], get("mass"), get("charge"),
                    t[kept], observation_attrs(noise, scale, est, noise_est), get("law"))


OBSERVATION_ATTRS = ("observed", "noise", "position_scale", "estimator", "estimator_window", "estimator_polyorder",
                     "estimator_trim", "pos_noise_estimate", "acc_noise_estimate", "acc_bias_estimate")


def observation_attrs(noise: float | None, scale: float, est: Estimator, n: NoiseEstimate) -> dict:
    """The file attributes of an observation (see :mod:`symdistill.simulate.dataset`)."""
    attrs = {"observed": "positions", "position_scale": scale, "estimator": est.method,
             "estimator_trim": est.edge, "pos_noise_estimate": n.pos, "acc_noise_estimate": n.acc}
    if noise is not None:
        attrs["noise"] = float(noise)
    if est.method == "savgol":
        attrs.update(estimator_window=est.window, estimator_polyorder=est.order)
    if n.acc_bias is not None:
        attrs["acc_bias_estimate"] = n.acc_bias
    return attrs


# ---- files -----------------------------------------------------------------------------------
def _file_seed(ds) -> int:
    """The file's ``seed`` attribute (seeds the added noise); 0 when absent or not a valid seed."""
    try:
        seed = int(np.asarray(ds.attrs.get("seed", 0)).item())
    except (TypeError, ValueError, OverflowError):
        return 0
    return seed if 0 <= seed < 2**32 else 0


def derive_file(src, dst, *, noise: float | None = None, seed: int | None = None,
                estimator: str | Estimator | None = None, file_dtype: str = "float64",
                max_size: int | None = DEFAULT_MAX_SIZE, **options) -> Path:
    """Estimate vel and acc from the positions of dataset ``src`` and write dataset ``dst`` (atomically).

    ``noise`` None: ``src``'s positions as they are (a user's positions-only file); a number >= 0:
    first add that relative noise (seeded by ``seed``, default the file's ``seed`` attribute). ``src``'s
    ``acc``, when present, is kept as ``acc_true`` for benchmarks; nothing in training reads it. An
    observed ``src`` is derived again from its ``pos_observed`` (and keeps its ``acc_true``, noise and scale).
    Simulations are read and written in blocks; the window is chosen on :func:`sample_sims`. ``dst`` is
    checked before any work, and its size against ``max_size`` (:mod:`symdistill.limits`).
    """
    from symdistill.simulate.dataset import FILE_DTYPES, FORMAT, open_dataset

    check_noise(noise)
    est = as_estimator(estimator, **options)
    if file_dtype not in FILE_DTYPES:
        raise SymdistillError(f"`file_dtype` must be one of {', '.join(FILE_DTYPES)} (got {file_dtype!r})")
    dst = check_output_file(dst, what="the derived dataset")
    if Path(src).exists() and dst.exists() and os.path.samefile(src, dst):
        raise SymdistillError(f"--out {dst} is the input file: give another --out (the input is kept as it is)")
    with open_dataset(src) as ds:
        s, n, b, d = ds.n_sims, ds.n_steps, ds.n_bodies, ds.dim
        est.check_steps(n)
        check_file_size(f"Deriving {ds.path}", 5.0 * s * n * b * d * np.dtype(file_dtype).itemsize, dst, max_size,
                        fix="derive a smaller file")
        if ds.observed and noise is not None:
            raise SymdistillError(f"{ds.path} is already observed with noise: give `noise` only for exact data")
        source, truth = ("pos_observed", "acc_true") if ds.observed else ("pos", "acc")
        truth = truth if truth in ds._f else None
        seed = _file_seed(ds) if seed is None else seed
        scale = float(ds.attrs["position_scale"]) if ds.observed else _file_scale(ds)
        sigma = (noise or 0.0) * scale
        picked = sample_sims(s)
        sample = add_noise(ds.read(picked, fields=(source,))[source], sigma, seed, picked)
        est = est.resolve(sample, ds.dt)
        kept = slice(est.edge, n - est.edge)
        shape = (s, kept.stop - kept.start, b, d)
        chunks = (min(s, 64), min(shape[1], 50), b, d)
        names = ("pos", "vel", "acc", "pos_observed") + (("acc_true",) if truth else ())
        with atomic_path(dst) as tmp:
            guard = SpaceGuard(tmp, len(names) * float(np.prod(shape)) * np.dtype(file_dtype).itemsize, dst)
            with hdf5_writing(dst), h5py.File(tmp, "w") as f:
                out = {k: f.create_dataset(k, shape=shape, dtype=file_dtype, chunks=chunks) for k in names}
                f.create_dataset("mass", data=ds.mass)
                f.create_dataset("charge", data=ds.charge)
                f.create_dataset("t", data=ds.t[kept])
                for s0, s1 in _blocks(s, n * b * d):
                    guard.check()
                    block = ds.read(slice(s0, s1), fields=(source,) + ((truth,) if truth else ()))
                    obs = add_noise(block[source], sigma, seed, range(s0, s1))
                    for k, v in zip(("pos", "vel", "acc"), _apply(est, obs, ds.dt)):
                        out[k][s0:s1] = v[:, kept]
                    out["pos_observed"][s0:s1] = obs[:, kept]
                    if truth:
                        out["acc_true"][s0:s1] = block[truth][:, kept]
                recorded = ds.attrs.get("noise") if noise is None and ds.observed else noise
                f.attrs.update({k: v for k, v in ds.attrs.items() if k not in OBSERVATION_ATTRS})
                f.attrs.update({"format": FORMAT, "version": __version__,
                                **observation_attrs(recorded, scale, est, estimate_noise(sample, ds.dt, est))})
    return dst


def _file_scale(ds) -> float:
    """:func:`position_scale` over a whole file, read in blocks."""
    total, count = 0.0, 0
    for s0, s1 in _blocks(ds.n_sims, ds.n_steps * ds.n_bodies * ds.dim):
        part = _centred_squares(ds.read(slice(s0, s1), fields=("pos",))["pos"])
        total, count = total + part[0], count + part[1]
    return float(np.sqrt(total / count))


def _blocks(n_sims: int, per_sim: int):
    step = max(1, BLOCK_VALUES // max(per_sim, 1))
    for s0 in range(0, n_sims, step):
        yield s0, min(s0 + step, n_sims)


__all__ = ["Estimator", "NoiseEstimate", "Observed", "as_estimator", "choose_window", "derive_file",
           "estimate_derivatives", "estimate_noise", "observe", "position_noise", "position_scale",
           "add_noise", "sample_sims"]
