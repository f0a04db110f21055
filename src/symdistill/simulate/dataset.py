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
from pathlib import Path

import h5py
import numpy as np

from symdistill import __version__
from symdistill.errors import SymdistillError
from symdistill.io import (
    H5_ERRORS, SpaceGuard, atomic_path, check_output_file, hdf5_writing, remove_stale_temporaries, temporary_path,
)
from symdistill.limits import DEFAULT_MAX_SIZE, check_file_size, check_memory
from symdistill.simulate.potentials import BUILTIN, Law, get_law
from symdistill.simulate.simulate import SimulationConfig, initial_conditions, integrate_chunks

FORMAT = "symdistill.nbody/1"
#: What h5py raises on a damaged file (besides a clean OSError on opening).
STATE = ("pos", "vel", "acc")
OBSERVATION = ("pos_observed", "acc_true")  # positions-only files; never read by training


def simulate_to_file(path, system=None, *, potential=None, config: SimulationConfig,
                     paper_quirks: bool = False, damping: float | None = None,
                     progress: bool = False, file_dtype: str = "float64",
                     noise: float | None = None, estimator=None, max_size: int | None = DEFAULT_MAX_SIZE) -> Path:
    """Simulate and stream the result to an HDF5 file (atomically: complete or absent).

    ``noise`` None: the exact states. A number >= 0: positions only are observed, with Gaussian noise
    of ``noise`` x the position scale, and vel/acc estimated from them by ``estimator`` ("savgol",
    "spline" or an :class:`~symdistill.simulate.observe.Estimator`; default savgol); the noise is
    seeded by ``config.seed`` (see :func:`symdistill.simulate.observe.observe`).

    Before any work: ``path`` must be writable and not an existing file other than a dataset; the
    bytes written must fit under ``max_size`` (None: no limit) and on the disk, and the integration
    in memory (:mod:`symdistill.limits`). A simulation that overflows (NaN or inf) writes nothing.
    """
    law = get_law(system, potential=potential, paper_quirks=paper_quirks, damping=damping)
    if callable(system) or callable(potential):
        if not law.has_truth:
            raise SymdistillError("A law from an opaque callable cannot be saved to a file: give it as a string")
    if file_dtype not in FILE_DTYPES:
        raise SymdistillError(f"`file_dtype` must be one of {', '.join(FILE_DTYPES)} (got {file_dtype!r})")
    path = check_output_file(path, what="the dataset")
    check_simulation_size(config, path, file_dtype=file_dtype, observed=noise is not None, max_size=max_size)
    if noise is None:
        with atomic_path(path) as tmp:
            _write_simulation(tmp, law, config, progress, file_dtype, final=path)
        return path
    from symdistill.simulate.observe import as_estimator, check_noise, derive_file
    check_noise(noise)
    est = as_estimator(estimator)
    est.check_steps(config.n_steps)  # before simulating
    remove_stale_temporaries(path.parent, name=path.name)
    exact = temporary_path(path, "exact")
    try:
        _write_simulation(exact, law, config, progress, "float64", final=path)
        return derive_file(exact, path, noise=noise, seed=config.seed, estimator=est, file_dtype=file_dtype,
                           max_size=None)  # already counted above
    finally:
        os.unlink(exact)


FILE_DTYPES = ("float64", "float32")
#: Integrator calls (batches x saved steps x the minimum substeps) above which a simulation is refused
#: before it starts: each call costs at least ~20 us, so 1e7 is minutes to hours.
MAX_INTEGRATION_STEPS = 10_000_000


def check_simulation_size(c: SimulationConfig, path, *, file_dtype: str = "float64", observed: bool = False,
                          max_size: int | None = DEFAULT_MAX_SIZE) -> None:
    """Refuse, before simulating, a dataset whose file or whose integration would not fit (module doc)."""
    states = float(c.n_sims) * c.n_steps * c.n_bodies * c.dim
    item = np.dtype(file_dtype).itemsize
    need = 3 * states * item + 2 * c.n_sims * c.n_bodies * 8 + c.n_steps * 8
    if observed:  # the exact simulation (a temporary file), then pos, vel, acc, pos_observed, acc_true
        need = 3 * states * 8 + 5 * states * item
    fix = "ask for fewer --n-sims, --steps or --n-bodies"
    check_file_size(f"{c.n_sims} simulations x {c.n_steps} steps x {c.n_bodies} bodies", need, path, max_size, fix=fix)
    if max_size is not None:
        calls = -(-c.n_sims // c.auto_batch()) * max(0, c.n_steps - 1) * c.substeps
        if calls > MAX_INTEGRATION_STEPS:
            raise SymdistillError(
                f"{c.n_sims} simulations x {c.n_steps} steps x {c.substeps} substeps would take at least {calls:.3g} "
                f"integration steps, over the limit of {MAX_INTEGRATION_STEPS:.0e} (hours of work): ask for fewer "
                "--substeps, --steps or --n-sims, or pass --max-size none to skip the up-front checks")
        pair = 40.0 * c.n_bodies**2 * c.dim * 8  # the integrator's temporaries for one simulation
        batch = c.auto_batch()
        memory = batch * pair + batch * min(c.n_steps, 50) * c.n_bodies * c.dim * 8 * 3 + 5 * c.n_sims * c.n_bodies * c.dim * 8
        check_memory(f"Integrating {c.n_bodies} bodies (pairwise forces: memory grows as n_bodies^2)", memory,
                     fix="ask for fewer --n-bodies or --n-sims")


def _write_simulation(file, law: Law, c: SimulationConfig, progress: bool, file_dtype: str, final=None) -> None:
    shape = (c.n_sims, c.n_steps, c.n_bodies, c.dim)
    chunk_steps = min(c.n_steps, 50)
    chunks = (min(c.n_sims, 64), chunk_steps, c.n_bodies, c.dim)
    _, _, mass, charge = initial_conditions(c.n_sims, c.n_bodies, c.dim, c.seed, law)
    dt = c.resolved_dt(law)
    guard = SpaceGuard(file, 3.0 * np.prod(shape, dtype=np.float64) * np.dtype(file_dtype).itemsize, final)
    with hdf5_writing(final or file), h5py.File(file, "w") as f:
        ds = {n: f.create_dataset(n, shape=shape, dtype=file_dtype, chunks=chunks) for n in STATE}
        f.create_dataset("mass", data=mass)
        f.create_dataset("charge", data=charge)
        f.create_dataset("t", data=np.arange(c.n_steps) * dt)
        for sims, steps, block in integrate_chunks(law, c, chunk_steps=chunk_steps, progress=progress):
            guard.check()
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
        if not self.path.is_file():  # a folder, a pipe or a device: h5py would fail or block on it
            kind = "a folder" if self.path.is_dir() else "not a regular file"
            raise SymdistillError(f"{self.path} is {kind}: give a dataset file (.h5 from `symdistill simulate`)")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as e:
            raise SymdistillError(
                f"{self.path} is not a readable HDF5 file ({e.__class__.__name__}: {str(e).split(';')[0]}). "
                "Expected a dataset written by `symdistill simulate`"
            ) from None
        try:
            self._validate()
        except SymdistillError:
            self._f.close()
            raise
        except H5_ERRORS as e:  # h5py on a damaged file
            self._f.close()
            raise self._fail(f"it cannot be read ({e.__class__.__name__}: {str(e)[:80]}; a damaged file?)") from None

    # ---- validation ------------------------------------------------------------------------
    def _fail(self, what: str) -> SymdistillError:
        return SymdistillError(f"{self.path} is not a valid symdistill dataset: {what} (write it in the layout "
                               "of `symdistill derive --help`, or create one with `symdistill simulate`)")

    def _validate(self) -> None:
        pos = self._dataset("pos")  # vel and acc can be estimated from pos: `symdistill derive`
        mass = self._dataset("mass")
        self.dim = self._attr("dim", int)
        self.n_bodies = self._attr("n_bodies", int)
        self.dt = self._attr("dt", float)
        if self.dim not in (2, 3):
            raise self._fail(f"attribute 'dim' is {self.dim}, expected 2 or 3")
        if self.n_bodies < 2:
            raise self._fail(f"attribute 'n_bodies' is {self.n_bodies}, expected at least 2 (a pair law)")
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise self._fail(f"attribute 'dt' is {self.dt}, expected a finite number > 0")
        if pos.ndim != 4 or pos.shape[2:] != (self.n_bodies, self.dim):
            raise self._fail(f"'pos' has shape {pos.shape}, expected [n_sims, n_steps, {self.n_bodies}, {self.dim}] "
                             "(n_bodies and dim from the attributes)")
        self.n_sims, self.n_steps = pos.shape[:2]
        if self.n_sims == 0 or self.n_steps == 0:
            raise self._fail(f"'pos' holds {self.n_sims} simulations of {self.n_steps} steps, expected at least 1 of 1")
        shape = (self.n_sims, self.n_steps, self.n_bodies, self.dim)
        for name in STATE + OBSERVATION:
            d = self._dataset(name, required=False)
            if d is not None and d.shape != shape:
                raise self._fail(f"{name!r} has shape {d.shape}, expected {shape}")
        charge = self._dataset("charge", required=False)  # absent: charge-free data, read() gives zeros
        for name, d in (("mass", mass), ("charge", charge)):
            if d is not None and d.shape != shape[:1] + shape[2:3]:
                raise self._fail(f"{name!r} has shape {d.shape}, expected {(self.n_sims, self.n_bodies)}")
        self.mass = self._load(mass)
        self.charge = self._load(charge) if charge is not None else np.zeros_like(self.mass)
        if not np.isfinite(self.mass).all() or (self.mass <= 0).any():
            raise self._fail("'mass' must be finite and > 0")
        if not np.isfinite(self.charge).all():
            raise self._fail("'charge' contains NaN or inf")
        t = self._dataset("t", required=False)
        if t is not None and t.shape != (self.n_steps,):
            raise self._fail(f"'t' has shape {t.shape}, expected ({self.n_steps},)")
        self.t = self._load(t) if t is not None else np.arange(self.n_steps) * self.dt
        if not np.isfinite(self.t).all():
            raise self._fail("'t' contains NaN or inf")

    def _dataset(self, name: str, *, required: bool = True):
        """The numeric dataset ``name`` (None if absent and not required)."""
        try:
            d = self._f.get(name)
        except (KeyError, OSError, RuntimeError):  # a broken link or a damaged object
            raise self._fail(f"{name!r} cannot be read (a damaged file?)") from None
        if d is None:
            if required:
                raise self._fail(f"missing dataset {name!r}")
            return None
        if not isinstance(d, h5py.Dataset):
            raise self._fail(f"{name!r} is a {type(d).__name__.lower()}, expected a dataset")
        if d.dtype.kind not in "fiu":
            raise self._fail(f"{name!r} holds {d.dtype} values, expected numbers")
        return d

    def _attr(self, name: str, kind: type):
        if name not in self._f.attrs:
            raise self._fail(f"missing attribute {name!r}")
        value = np.asarray(self._f.attrs[name])
        if value.size != 1 or value.dtype.kind not in "fiu" or (kind is int and value.dtype.kind == "f" and not (
                np.isfinite(value.item()) and value.item() == int(value.item()))):
            raise self._fail(f"attribute {name!r} is {_short(repr(self._f.attrs[name]))}, expected one "
                             f"{'integer' if kind is int else 'number'}")
        return kind(value.item())

    def _load(self, d) -> np.ndarray:
        try:
            return np.asarray(d[...], dtype=np.float64)
        except (OSError, RuntimeError) as e:
            raise self._fail(f"{d.name.lstrip('/')!r} cannot be read ({str(e)[:60]}; a damaged file?)") from None

    # ---- metadata --------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        try:
            return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in self._f.attrs.items()}
        except H5_ERRORS as e:  # h5py on a damaged file
            raise self._fail(f"its attributes cannot be read ({e.__class__.__name__}; a damaged file?)") from None

    @property
    def system(self) -> str | None:
        s = self._f.attrs.get("system")
        if isinstance(s, bytes):
            s = s.decode("utf-8", "replace")
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
        value = self._f.attrs.get("observed")
        return isinstance(value, (str, bytes)) and value in ("positions", b"positions")

    def law(self) -> Law | None:
        """The law that generated the file: None for foreign data without a ``system`` attribute, or
        with one that is neither a built-in system nor a potential (a label such as "wormhole": the
        data is used, without a ground truth)."""
        if self.system is None:
            return None
        a = self.attrs
        try:
            damping = float(a.get("damping", 0.0))
        except (TypeError, ValueError):
            damping = 0.0
        damping = damping if np.isfinite(damping) and damping >= 0 else 0.0
        quirks = np.asarray(a.get("paper_quirks", False))
        if quirks.size != 1 or quirks.dtype.kind not in "biu":  # unreadable: which law made it is unknown
            return None
        try:
            if self.system in BUILTIN:
                return get_law(self.system, paper_quirks=bool(quirks.item()), dt=self.dt, damping=damping)
            return get_law(potential=self.system, dt=self.dt, damping=damping)
        except SymdistillError:
            return None

    def __getattr__(self, name):
        if name in STATE + OBSERVATION:
            try:
                return self._lookup(name)
            except SymdistillError:
                raise
            except H5_ERRORS as e:  # h5py on a damaged file
                raise self._fail(f"{name!r} cannot be read ({e.__class__.__name__}; a damaged file?)") from None
        raise AttributeError(name)

    def _lookup(self, name):
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
            try:
                a = dset[sims, steps] if isinstance(sims, slice) else _read_sorted(dset, sims[order], steps)[inverse]
            except (RuntimeError, KeyError, OSError) as e:  # h5py on a damaged file
                raise self._fail(f"{name!r} cannot be read ({e.__class__.__name__}: {str(e)[:60]}; a damaged "
                                 "file?)") from None
            a = np.asarray(a, dtype=np.float64)
            if not np.isfinite(a).all():
                raise SymdistillError(f"{self.path}: dataset {name!r} contains NaN or inf in the simulations read "
                                      "(re-create the file, or leave those simulations out)")
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
            f"  system: {_short(self.system, 80) if self.system else '(unknown)'}"
            + (f"   U(r) = {law.energy}" if law and law.energy is not None
               else "   (not a built-in system or a potential, or an unreadable paper_quirks: "
                    "no ground truth)" if self.system else ""),
            f"  dt: {self.dt:g}   t: {self.t[0]:g} .. {self.t[-1]:g}   seed: {_short(a.get('seed', '?'))}   "
            f"integrator: {_short(a.get('integrator', '?'))} x{_short(a.get('substeps', '?'))}.."
            f"{_short(a.get('max_substeps', '?'))}   version: {_short(a.get('version', '?'))}",
            f"  mass: {self.mass.min():.3g} .. {self.mass.max():.3g}   charge: {np.unique(np.round(self.charge, 3))[:5]}",
            f"  datasets: {', '.join(k for k in self._f.keys())}   size: {os.path.getsize(self.path) / 2**20:.1f} MiB",
        ]
        if self.observed:
            try:
                lines += self._observation_lines(a)
            except (KeyError, TypeError, ValueError):
                lines.append("  observed: positions only (its estimator attributes are incomplete)")
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


def _short(value, n: int = 40) -> str:
    """``value`` as text, cut to ``n`` characters (attributes of foreign files can be anything)."""
    text = str(value)
    return text if len(text) <= n else text[:n] + "..."


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
