"""N-body dataset files (HDF5).

Layout: datasets ``pos``, ``vel``, ``acc`` [n_sims, n_steps, n_bodies, dim]; ``mass``, ``charge``
[n_sims, n_bodies]; ``t`` [n_steps]. Attributes: ``system`` (a built-in name, or the potential
string), ``dim``, ``n_bodies``, ``dt``, ``seed``, ``version``, plus ``format``, ``integrator``,
``substeps``, ``damping``, ``paper_quirks``, ``potential`` (the pair energy, for reading).
A file needs ``pos`` and ``mass`` (and ``dim``, ``n_bodies``, ``dt``) to open; training needs ``vel``
and ``acc``, which ``symdistill derive`` estimates from ``pos`` (:mod:`symdistill.simulate.observe`).

Positions-only observations (``simulate --noise``, ``derive``) hold the *estimated* ``pos``
(smoothed), ``vel`` and ``acc`` on the states kept (``estimator_trim`` dropped at each end, so ``t``
starts later), ``pos_observed`` (the positions as observed) and, when the exact accelerations are
known, ``acc_true``: for benchmarks only, nothing in training reads it. Their attributes add
``observed = "positions"``, ``noise`` (relative to ``position_scale``; absent when unknown),
``position_scale``, ``estimator``, ``estimator_window``, ``estimator_polyorder``, ``estimator_trim``,
``pos_noise_estimate``, ``acc_noise_estimate`` (per coordinate, in acceleration units: the noise a
formula that explains the data leaves) and ``acc_bias_estimate`` (rough rms smoothing bias).

Files are written block by block (never the whole array in memory) to a temporary name and renamed
when complete, and read lazily: :class:`NBodyDataset` keeps h5py handles and reads only the slices
asked for.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from symdistill import __version__
from symdistill.errors import SymdistillError
from symdistill.io import atomic_path
from symdistill.simulate.potentials import BUILTIN, Law, get_law
from symdistill.simulate.simulate import SimulationConfig, initial_conditions, integrate_chunks

FORMAT = "symdistill.nbody/1"
STATE = ("pos", "vel", "acc")
OBSERVATION = ("pos_observed", "acc_true")  # positions-only files; never read by training


def simulate_to_file(path, system=None, *, potential=None, config: SimulationConfig,
                     paper_quirks: bool = False, damping: float | None = None,
                     progress: bool = False, file_dtype: str = "float64",
                     noise: float | None = None, estimator=None) -> Path:
    """Simulate and stream the result to an HDF5 file (atomically: complete or absent).

    ``noise`` None: the exact states. A number >= 0: positions only are observed, with Gaussian noise
    of ``noise`` x the position scale, and vel/acc estimated from them by ``estimator`` ("savgol",
    "spline" or an :class:`~symdistill.simulate.observe.Estimator`; default savgol); the noise is
    seeded by ``config.seed`` (see :func:`symdistill.simulate.observe.observe`).
    """
    law = get_law(system, potential=potential, paper_quirks=paper_quirks, damping=damping)
    if callable(system) or callable(potential):
        if not law.has_truth:
            raise SymdistillError("A law from an opaque callable cannot be saved to a file: give it as a string")
    path = Path(path)
    if noise is None:
        with atomic_path(path) as tmp:
            _write_simulation(tmp, law, config, progress, file_dtype)
        return path
    from symdistill.simulate.observe import as_estimator, check_noise, derive_file
    check_noise(noise)
    est = as_estimator(estimator)
    est.check_steps(config.n_steps)  # before simulating
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, exact = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".exact.tmp")
    os.close(fd)
    try:
        _write_simulation(exact, law, config, progress, "float64")
        return derive_file(exact, path, noise=noise, seed=config.seed, estimator=est, file_dtype=file_dtype)
    finally:
        os.unlink(exact)


def _write_simulation(file, law: Law, c: SimulationConfig, progress: bool, file_dtype: str) -> None:
    shape = (c.n_sims, c.n_steps, c.n_bodies, c.dim)
    chunk_steps = min(c.n_steps, 50)
    chunks = (min(c.n_sims, 64), chunk_steps, c.n_bodies, c.dim)
    _, _, mass, charge = initial_conditions(c.n_sims, c.n_bodies, c.dim, c.seed, law)
    dt = c.resolved_dt(law)
    with h5py.File(file, "w") as f:
        ds = {n: f.create_dataset(n, shape=shape, dtype=file_dtype, chunks=chunks) for n in STATE}
        f.create_dataset("mass", data=mass)
        f.create_dataset("charge", data=charge)
        f.create_dataset("t", data=np.arange(c.n_steps) * dt)
        for sims, steps, block in integrate_chunks(law, c, chunk_steps=chunk_steps, progress=progress):
            for n in STATE:
                ds[n][sims, steps] = block[n]
        f.attrs.update({
            "format": FORMAT, "version": __version__, "system": law.name,
            "potential": str(law.energy), "dim": c.dim, "n_bodies": c.n_bodies, "dt": dt,
            "seed": c.seed, "integrator": c.integrator, "substeps": c.substeps,
            "max_substeps": c.max_substeps, "tolerance": c.tolerance,
            "damping": law.damping, "paper_quirks": law.paper_quirks,
        })


class NBodyDataset:
    """A lazily read dataset file. Use as a context manager, or call :meth:`close`.

    ``ds.pos`` etc. are h5py datasets (slicing reads from disk); :meth:`read` loads a selection.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise SymdistillError(
                f"File not found: {self.path}. Create one with `symdistill simulate --out {self.path}`"
            )
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as e:
            raise SymdistillError(
                f"{self.path} is not a readable HDF5 file ({e.__class__.__name__}: {str(e).split(';')[0]}). "
                "Expected a dataset written by `symdistill simulate`"
            ) from None
        try:
            self._validate()
        except Exception:
            self._f.close()
            raise

    # ---- validation ------------------------------------------------------------------------
    def _fail(self, what: str) -> SymdistillError:
        return SymdistillError(
            f"{self.path} is not a valid symdistill dataset: {what}. "
            "Write datasets pos (vel, acc) [n_sims, n_steps, n_bodies, dim], mass and charge "
            "[n_sims, n_bodies], t [n_steps], or create one with `symdistill simulate`"
        )

    def _validate(self) -> None:
        f = self._f
        for name in ("pos", "mass"):  # vel and acc can be estimated from pos: `symdistill derive`
            if name not in f:
                raise self._fail(f"missing dataset {name!r}")
        for a in ("dim", "n_bodies", "dt"):
            if a not in f.attrs:
                raise self._fail(f"missing attribute {a!r}")
        self.dim, self.n_bodies, self.dt = int(f.attrs["dim"]), int(f.attrs["n_bodies"]), float(f.attrs["dt"])
        if f["pos"].ndim != 4:
            raise self._fail(f"'pos' has shape {f['pos'].shape}, expected [n_sims, n_steps, n_bodies, dim]")
        self.n_sims, self.n_steps = f["pos"].shape[:2]
        shape = (self.n_sims, self.n_steps, self.n_bodies, self.dim)
        for name in STATE + OBSERVATION:
            if name in f and f[name].shape != shape:
                raise self._fail(f"{name!r} has shape {f[name].shape}, expected {shape}")
        if "charge" not in f:
            pass  # charge-free data: read() returns zeros
        for name in ("mass", "charge"):
            if name in f and f[name].shape != shape[:1] + shape[2:3]:
                raise self._fail(f"{name!r} has shape {f[name].shape}, expected {(self.n_sims, self.n_bodies)}")
        self.mass = np.asarray(f["mass"][...], dtype=np.float64)
        self.charge = (np.asarray(f["charge"][...], dtype=np.float64) if "charge" in f
                       else np.zeros_like(self.mass))
        if not np.isfinite(self.mass).all() or (self.mass <= 0).any():
            raise self._fail("'mass' must be finite and > 0")
        if not np.isfinite(self.charge).all():
            raise self._fail("'charge' contains NaN or inf")
        self.t = np.asarray(f["t"][...]) if "t" in f else np.arange(self.n_steps) * self.dt

    # ---- metadata --------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in self._f.attrs.items()}

    @property
    def system(self) -> str | None:
        s = self._f.attrs.get("system")
        return None if s is None else str(s)

    @property
    def has_acc(self) -> bool:
        return "acc" in self._f

    @property
    def has_vel(self) -> bool:
        return "vel" in self._f

    @property
    def observed(self) -> bool:
        """True for positions-only observations (vel and acc estimated from noisy positions)."""
        return self._f.attrs.get("observed") == "positions"

    def law(self) -> Law | None:
        """The law that generated the file (None for foreign data without a ``system`` attribute)."""
        if self.system is None:
            return None
        a = self.attrs
        kwargs = dict(dt=self.dt, damping=float(a.get("damping", 0.0)))
        if self.system in BUILTIN:
            return get_law(self.system, paper_quirks=bool(a.get("paper_quirks", False)), **kwargs)
        return get_law(potential=self.system, **kwargs)

    def __getattr__(self, name):
        if name in STATE:
            if name not in self._f:
                what = {"vel": "velocities", "acc": "accelerations"}[name]
                raise SymdistillError(
                    f"{self.path} has no {what} ({name!r}): estimate them from its positions with "
                    f"`symdistill derive --data {self.path} --out OUT.h5`"
                )
            return self._f[name]
        if name in OBSERVATION:
            if name not in self._f:
                raise SymdistillError(f"{self.path} has no {name!r}: only positions-only files "
                                      "(`symdistill simulate --noise`, `symdistill derive`) hold it")
            return self._f[name]
        raise AttributeError(name)

    # ---- reading ---------------------------------------------------------------------------
    def read(self, sims=None, steps=None, fields=("pos", "vel", "acc")) -> dict[str, np.ndarray]:
        """Load ``fields`` for the given simulations (indices or slice) and steps into memory.

        Returns arrays [len(sims), len(steps), n_bodies, dim] plus ``mass`` and ``charge``
        [len(sims), n_bodies]. Raises if the selection holds NaN or inf.
        """
        sims = slice(None) if sims is None else sims
        steps = slice(None) if steps is None else steps
        if not isinstance(sims, slice):
            sims = np.asarray(sims)
            order = np.argsort(sims)  # h5py wants increasing indices
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
        out = {}
        for name in fields:
            dset = getattr(self, name)
            if isinstance(sims, slice):
                a = dset[sims, steps]
            else:
                a = _read_sorted(dset, sims[order], steps)[inverse]
            a = np.asarray(a, dtype=np.float64)
            if not np.isfinite(a).all():
                raise SymdistillError(f"{self.path}: dataset {name!r} contains NaN or inf in the selection read")
            out[name] = a
        out["mass"] = self.mass[sims]
        out["charge"] = self.charge[sims]
        return out

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Train / validation simulation indices (a split by simulation, never within one).

        The test set is a separate file simulated with a different seed.
        """
        return split_indices(self.n_sims, val_fraction, seed)

    def summary(self) -> str:
        a = self.attrs
        law = self.law()
        lines = [
            f"{self.path}: {self.n_sims} simulations x {self.n_steps} steps, {self.n_bodies} bodies, {self.dim}D",
            f"  system: {self.system or '(unknown)'}" + (f"   U(r) = {law.energy}" if law and law.energy is not None else ""),
            f"  dt: {self.dt:g}   t: {self.t[0]:g} .. {self.t[-1]:g}   seed: {a.get('seed', '?')}   "
            f"integrator: {a.get('integrator', '?')} x{a.get('substeps', '?')}..{a.get('max_substeps', '?')}   version: {a.get('version', '?')}",
            f"  mass: {self.mass.min():.3g} .. {self.mass.max():.3g}   charge: {np.unique(np.round(self.charge, 3))[:5]}",
            f"  datasets: {', '.join(k for k in self._f.keys())}   size: {os.path.getsize(self.path) / 2**20:.1f} MiB",
        ]
        if self.observed:
            lines += self._observation_lines(a)
        missing = [n for n in ("vel", "acc") if n not in self._f]
        if missing and not self.observed:
            lines.append(f"  no {' or '.join(missing)}: estimate them from pos with "
                         f"`symdistill derive --data {self.path} --out OUT.h5`")
        return "\n".join(lines)

    def _observation_lines(self, a: dict) -> list[str]:
        noise = (f"with Gaussian noise {a['noise']:g} x position scale {a['position_scale']:.3g}" if "noise" in a
                 else f"noise unknown, position scale {a['position_scale']:.3g}")
        how = a["estimator"] + (f"(window={a['estimator_window']}, polyorder={a['estimator_polyorder']})"
                                if "estimator_window" in a else "")
        acc_rms = float(np.sqrt(np.mean(self._f["acc"][: min(self.n_sims, 64)] ** 2)))
        ratio = a["acc_noise_estimate"] / max(acc_rms, 1e-300)
        lines = [f"  observed: positions only, {noise}; pos (smoothed), vel, acc estimated by {how}, "
                 f"{a['estimator_trim']} states dropped at each end",
                 f"  noise estimated from the data: positions {a['pos_noise_estimate']:.3g}, accelerations "
                 f"{a['acc_noise_estimate']:.3g} per coordinate ({ratio:.2g} x their rms)"
                 + (f", smoothing bias ~{a['acc_bias_estimate']:.3g}" if "acc_bias_estimate" in a else "")]
        if ratio > 0.5:
            lines.append("  warning: the accelerations are mostly noise: lower the noise or save longer "
                         "trajectories (more --steps or a larger --dt)")
        return lines

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_sorted(dset, idx: np.ndarray, steps):
    # h5py fancy indexing needs unique increasing indices
    uniq, inv = np.unique(idx, return_inverse=True)
    return dset[uniq, steps][inv]


def split_indices(n_sims: int, val_fraction: float = 0.1, seed: int = 0):
    if not 0 <= val_fraction < 1:
        raise SymdistillError(f"`val_fraction` must be in [0, 1) (got {val_fraction})")
    perm = np.random.default_rng(seed).permutation(n_sims)
    n_val = int(round(n_sims * val_fraction))
    if n_val == 0 and val_fraction > 0 and n_sims > 1:
        n_val = 1
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def open_dataset(path) -> NBodyDataset:
    return NBodyDataset(path)
