"""Rollouts: learned or symbolic dynamics integrated from held-out initial states, against the truth.

A *dynamics* is any object with the method

    accelerations(pos, vel, mass, charge) -> [B, N, D]

(torch float64 in and out, its own damping included) and, optionally, an ``energy(pos, vel, mass,
charge) -> [B]`` method: the model's own total energy. A dynamics without one has no ``energy``
attribute, or ``energy = None`` (:func:`own_energy` reads either). The integrators of
:mod:`symdistill.simulate.integrate` drive a dynamics exactly as they drive a law, so a rollout uses
the data's own integrator, step and adaptive sub-steps.

- :class:`LawDynamics`: the truth; :class:`NetworkDynamics`: a trained network's predictions.
- :func:`rollout`: one dynamics from initial states; a simulation that goes non-finite stops there.
- :func:`compare_rollouts`: the truth and every model, as JSON-safe curves; :func:`plot_rollouts`.
- :func:`initial_states`: the first saved states of a (held-out) dataset file, with its settings.

Shapes: pos, vel [B, N, D]; mass, charge [B, N]; trajectories [B, T, N, D] (T saved states, the
first the initial state); energies [B].
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from symdistill.errors import SymdistillError, check_positive
from symdistill.graphs.batch import GraphBatch
from symdistill.io import atomic_path
from symdistill.simulate.dataset import open_dataset
from symdistill.simulate.integrate import Bodies, accelerations, advance, get_integrator, potential_energy, total_energy
from symdistill.simulate.potentials import Law
from symdistill.simulate.simulate import SimulationConfig

F64 = torch.float64
#: How the energy drifts are normalised (the value is in each comparison's ``energy_scale``).
ENERGY_SCALE = "median over simulations of K(0) + |U(0)| under the true law"
#: A state or acceleration this large has blown up: squared pair differences of larger numbers can
#: overflow, and the adaptive step's pair timescale (inf / inf) then turns NaN and stalls the step count.
BLOW_UP = 1e100


def own_energy(dynamics):
    """The dynamics' own energy function ``(pos, vel, mass, charge) -> [B]``, or None if it has none."""
    fn = getattr(dynamics, "energy", None)
    return fn if callable(fn) else None


class LawDynamics:
    """The truth: a :class:`Law`'s accelerations (damping included) and its total energy K + U."""

    def __init__(self, law: Law):
        if not isinstance(law, Law):
            raise SymdistillError(f"Expected a Law (from get_law or a dataset's law()) (got {type(law).__name__})")
        self.law = law

    def damping_coefficients(self, n_bodies: int, dtype=F64, device=None) -> torch.Tensor:
        return self.law.damping_coefficients(n_bodies, dtype=dtype, device=device)

    def _bodies(self, pos, mass, charge) -> Bodies:
        return Bodies(mass, charge, self.damping_coefficients(pos.shape[1], pos.dtype, pos.device))

    def accelerations(self, pos, vel, mass, charge) -> torch.Tensor:
        return accelerations(self.law, pos, vel, self._bodies(pos, mass, charge))

    def energy(self, pos, vel, mass, charge) -> torch.Tensor:
        return total_energy(self.law, pos, vel, self._bodies(pos, mass, charge))


class NetworkDynamics:
    """A trained network as dynamics: ``model.predict(GraphBatch) -> [V, D]`` accelerations in data units.

    The state enters the model as a float32 :meth:`GraphBatch.from_arrays` batch (the model's
    precision); the accelerations come back float64. ``energy`` is the model's ``total_energy(batch)
    -> [G]`` (a Hamiltonian network's, in data units) when the model has that method, else None.
    """

    def __init__(self, model):
        if not callable(getattr(model, "predict", None)):
            raise SymdistillError(f"NetworkDynamics needs a model with predict(batch) -> accelerations [V, D] "
                                  f"(got {type(model).__name__})")
        self.model = model
        self.energy = self._energy if callable(getattr(model, "total_energy", None)) else None

    def accelerations(self, pos, vel, mass, charge) -> torch.Tensor:
        acc = self.model.predict(GraphBatch.from_arrays(pos, vel, mass, charge))
        b, n, d = pos.shape
        if tuple(acc.shape) != (b * n, d):
            raise SymdistillError(f"Expected the model's predict to give accelerations [V, D] = [{b * n}, {d}] "
                                  f"(got {list(acc.shape)}): roll out a model of the N-body accelerations")
        return acc.detach().to(pos.device, F64).reshape(b, n, d)

    def _energy(self, pos, vel, mass, charge) -> torch.Tensor:
        batch = GraphBatch.from_arrays(pos, vel, mass, charge)
        device = getattr(self.model, "device", None)
        energy = self.model.total_energy(batch if device is None else batch.to(device))
        return energy.detach().to(pos.device, F64).reshape(pos.shape[0])


# ---- one rollout --------------------------------------------------------------------------------------

def rollout(dynamics, pos0, vel0, mass, charge, *, dt: float, n_steps: int, substeps: int = 1,
            max_substeps: int = 64, tolerance: float = 0.05, integrator: str = "verlet",
            damping=None) -> dict[str, np.ndarray]:
    """Integrate ``dynamics`` from (pos0, vel0) with :func:`~symdistill.simulate.integrate.advance`,
    the data's integrator: ``n_steps`` saved states ``dt`` apart, ``substeps`` to ``max_substeps``
    adaptive steps between them (see :class:`~symdistill.simulate.SimulationConfig`).

    A simulation whose state or acceleration goes non-finite (or past :data:`BLOW_UP`) holds NaN
    from that saved step on; the others go on (a blown-up model costs at most ``max_substeps``
    steps per saved step). ``damping`` (coefficients [N] or one number) only tells Verlet that the
    forces depend on velocity (it then re-evaluates the acceleration at the final velocity, as for
    the data): the dynamics carries its own damping. None: the dynamics'
    ``damping_coefficients(n_bodies)`` if it has that method (LawDynamics does), else 0.

    Shapes:
        pos0, vel0: [B, N, D]; mass, charge: [B, N] (numpy or torch)
        -> pos, vel: [B, T, N, D] float64 (T = n_steps); blow_up_step: [B] int, the first saved step
           holding NaN (-1: none); t: [T]
    """
    pos, vel, mass, charge = _states(pos0, vel0, mass, charge)
    _check_options(dt, n_steps, substeps, max_substeps, tolerance)
    step, (b, n, d) = get_integrator(integrator), pos.shape
    bodies = Bodies(mass, charge, _damping(dynamics, damping, n))
    out = {k: torch.full((b, n_steps, n, d), torch.nan, dtype=F64) for k in ("pos", "vel")}
    out["pos"][:, 0], out["vel"][:, 0] = pos, vel
    blow_up = torch.full((b,), -1, dtype=torch.long)
    a = accelerations(dynamics, pos, vel, bodies)
    bad = ~(_finite(pos) & _finite(vel) & _finite(a))
    idx, p, v, a, sub = _drop(bad, torch.arange(b), pos, vel, a, bodies, blow_up, 1 if n_steps > 1 else -1)
    for t in range(1, n_steps):
        if idx.numel() == 0:
            break
        p, v, a = advance(step, dynamics, p, v, a, sub, dt, substeps, max_substeps, tolerance)
        bad = ~(_finite(p) & _finite(v) & _finite(a))
        out["pos"][idx[~bad], t], out["vel"][idx[~bad], t] = p[~bad], v[~bad]
        if bad.any():
            idx, p, v, a, sub = _drop(bad, idx, p, v, a, sub, blow_up, t)
    return {"pos": out["pos"].numpy(), "vel": out["vel"].numpy(), "blow_up_step": blow_up.numpy(),
            "t": np.arange(n_steps) * float(dt)}


def _drop(bad, idx, p, v, a, sub: Bodies, blow_up, t: int):
    """Stop stepping the simulations ``bad`` (compacted rows): record ``t`` as their blow-up step."""
    if not bad.any():
        return idx, p, v, a, sub
    blow_up[idx[bad]] = t
    keep = ~bad
    return idx[keep], p[keep], v[keep], a[keep], Bodies(sub.mass[keep], sub.charge[keep], sub.damping)


def _finite(x: torch.Tensor) -> torch.Tensor:
    """[B]: every entry of the simulation's row is finite and below :data:`BLOW_UP` in size."""
    return (x.abs() < BLOW_UP).flatten(1).all(1)  # NaN compares False


def _as64(a) -> torch.Tensor:
    t = a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a, dtype=np.float64))
    return t.detach().to("cpu", F64)


def _states(pos0, vel0, mass, charge):
    pos, vel, mass, charge = (_as64(x) for x in (pos0, vel0, mass, charge))
    if pos.ndim != 3:
        raise SymdistillError(f"Expected pos0 of shape [B, N, D] (got {list(pos.shape)})")
    for name, x, shape in (("vel0", vel, pos.shape), ("mass", mass, pos.shape[:2]), ("charge", charge, pos.shape[:2])):
        if x.shape != shape:
            raise SymdistillError(f"Expected {name} of shape {list(shape)} (got {list(x.shape)})")
    if not (torch.isfinite(pos).all() and torch.isfinite(vel).all()):
        raise SymdistillError("The initial states contain NaN or inf: start from finite positions and velocities")
    return pos, vel, mass, charge


def _check_options(dt, n_steps, substeps, max_substeps, tolerance) -> None:
    check_positive("dt", dt)
    check_positive("tolerance", tolerance)
    for name, value in (("n_steps", n_steps), ("substeps", substeps), ("max_substeps", max_substeps)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise SymdistillError(f"`{name}` must be an integer >= 1 (got {value!r})")


def _damping(dynamics, damping, n: int) -> torch.Tensor:
    if damping is None:
        fn = getattr(dynamics, "damping_coefficients", None)
        return fn(n).to(F64) if callable(fn) else torch.zeros(n, dtype=F64)
    c = _as64(damping).reshape(-1).expand(n).clone() if np.ndim(damping) == 0 else _as64(damping)
    if c.shape != (n,):
        raise SymdistillError(f"Expected `damping` of shape [{n}] or one number (got {list(c.shape)})")
    return c


# ---- the truth against every model -------------------------------------------------------------------

def compare_rollouts(models: dict, law: Law, pos0, vel0, mass, charge, *, dt: float, n_steps: int = 500,
                     substeps: int = 1, max_substeps: int = 64, tolerance: float = 0.05,
                     integrator: str = "verlet", max_points: int = 101) -> dict:
    """Roll out the truth (``law``) and every model from the same states; JSON-safe curves.

    ``models``: name -> dynamics, or a :class:`Law` (a distilled formula's, say). For each, and for
    ``"truth"`` (the law itself), per saved step, the median over simulations of:
    ``position_error`` (RMS over bodies of |x_model - x_true|); ``own_energy_drift`` (|E(t) - E(0)|
    of the model's own energy; None without one) and ``true_energy_drift`` (the true energy along the
    model's trajectory), both divided by ``energy_scale`` (:data:`ENERGY_SCALE`: unlike |E(0)|,
    cancellation between K and U cannot make it small). A blown-up simulation counts as an infinite
    error in the medians, so blow-ups are never hidden: an infinite point is null in the JSON. Also
    ``final_position_error``, ``max_own_energy_drift``, ``max_true_energy_drift`` (on the full
    curves), ``blow_ups``, ``blow_up_steps`` and ``seconds``. Curves keep <= ``max_points`` points,
    at the saved steps ``steps``.

    Shapes: pos0, vel0 [B, N, D]; mass, charge [B, N].
    """
    if "truth" in models:
        raise SymdistillError("The model name 'truth' is reserved for the true law: rename that model")
    if not isinstance(law, Law):
        raise SymdistillError(f"compare_rollouts needs the true law (a Law) (got {type(law).__name__}): "
                              "a dataset file without a known law has no truth to compare with")
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
        raise SymdistillError(f"`max_points` must be an integer >= 2 (got {max_points!r})")
    pos, vel, mass, charge = _states(pos0, vel0, mass, charge)
    truth = LawDynamics(law)
    options = dict(dt=dt, n_steps=n_steps, substeps=substeps, max_substeps=max_substeps, tolerance=tolerance,
                   integrator=integrator, damping=truth.damping_coefficients(pos.shape[1]))
    dynamics = {"truth": truth, **{k: LawDynamics(m) if isinstance(m, Law) else m for k, m in models.items()}}
    runs = {}
    for name, model in dynamics.items():
        start = time.perf_counter()
        runs[name] = rollout(model, pos, vel, mass, charge, **options)
        runs[name]["seconds"] = time.perf_counter() - start
    scale = _energy_scale(law, pos, vel, mass, charge)
    keep = np.unique(np.round(np.linspace(0, n_steps - 1, min(n_steps, max_points))).astype(int))
    entries = {name: _summary(runs[name], runs["truth"], model, truth, mass, charge, scale, keep)
               for name, model in dynamics.items()}
    return {"law": law.name, "n_sims": int(pos.shape[0]), "n_steps": int(n_steps), "dt": float(dt),
            "substeps": int(substeps), "max_substeps": int(max_substeps), "tolerance": float(tolerance),
            "integrator": str(integrator), "energy_scale": scale, "energy_scale_definition": ENERGY_SCALE,
            "steps": keep.tolist(), "models": entries}


def _summary(run, ref, dynamics, truth, mass, charge, scale, keep) -> dict:
    failed = np.isnan(run["pos"]).any((2, 3))  # [B, T]
    lost = np.isnan(ref["pos"]).any((2, 3))    # the truth itself blew up: nothing to compare with
    err = np.sqrt(((run["pos"] - ref["pos"]) ** 2).sum(-1).mean(-1))
    position = _median(np.where(lost, np.nan, err), failed & ~lost)
    own_fn = own_energy(dynamics)
    own, true = (None if fn is None else _drift(fn, run, mass, charge, scale) for fn in (own_fn, truth.energy))
    # a non-finite energy of a finite state fails too
    own, true = (None if e is None else _median(e, failed | ~np.isfinite(e)) for e in (own, true))
    steps = run["blow_up_step"]
    return {"position_error": list(map(_number, position[keep])), "final_position_error": _number(position[-1]),
            "own_energy_drift": None if own is None else list(map(_number, own[keep])),
            "max_own_energy_drift": None if own is None else _number(_max(own)),
            "true_energy_drift": list(map(_number, true[keep])), "max_true_energy_drift": _number(_max(true)),
            "blow_ups": int((steps >= 0).sum()), "blow_up_steps": sorted(int(s) for s in steps[steps >= 0]),
            "seconds": float(run["seconds"])}


def _drift(energy_fn, run, mass, charge, scale, chunk: int = 4096) -> np.ndarray:
    """|E(t) - E(0)| / scale [B, T] along a trajectory (NaN where the state is NaN)."""
    b, t, n, d = run["pos"].shape
    pos, vel = (torch.from_numpy(run[k]).reshape(b * t, n, d) for k in ("pos", "vel"))
    m, q = (x[:, None, :].expand(b, t, n).reshape(b * t, n) for x in (mass, charge))
    energy = torch.full((b * t,), torch.nan, dtype=F64)
    rows = torch.nonzero(_finite(pos) & _finite(vel)).squeeze(1)
    for s in range(0, rows.numel(), chunk):
        r = rows[s:s + chunk]
        energy[r] = energy_fn(pos[r], vel[r], m[r], q[r]).to(F64)
    e = energy.reshape(b, t).numpy()
    return np.abs(e - e[:, :1]) / scale


def _median(values: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """Median over simulations [T] of values [B, T], a failed one counting as +inf; NaN: left out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column with nothing to compare
        return np.nanmedian(np.where(failed, np.inf, values), axis=0)


def _max(curve: np.ndarray) -> float:
    return float("nan") if np.isnan(curve).all() else float(np.nanmax(curve))


def _energy_scale(law: Law, pos, vel, mass, charge) -> float:
    bodies = Bodies(mass, charge, law.damping_coefficients(pos.shape[1]))
    kinetic = 0.5 * (mass[..., None] * vel * vel).sum((1, 2))
    size = kinetic + potential_energy(law, pos, bodies).abs()
    scale = float(torch.median(size))
    return scale if np.isfinite(scale) and scale > 0 else 1.0  # bodies at rest at zero energy: unnormalised


def _number(x) -> float | None:
    return float(x) if np.isfinite(x) else None


# ---- held-out initial states and the figure ----------------------------------------------------------

@dataclass
class InitialStates:
    """The first saved states of some simulations of a dataset file, and how the file was integrated
    (``config``: its dt, substeps, max_substeps, tolerance, integrator, n_steps; ``law``: None for a
    file without a known law). Unpacks as (pos0, vel0, mass, charge, config, law).

    Shapes: pos0, vel0 [B, N, D]; mass, charge [B, N]; sims [B] (the simulations' indices in the file).
    """

    pos0: np.ndarray
    vel0: np.ndarray
    mass: np.ndarray
    charge: np.ndarray
    config: SimulationConfig
    law: Law | None
    sims: np.ndarray

    def __iter__(self):
        return iter((self.pos0, self.vel0, self.mass, self.charge, self.config, self.law))

    def states(self) -> tuple:  # the first four arguments of rollout and compare_rollouts
        return self.pos0, self.vel0, self.mass, self.charge

    def options(self) -> dict:
        """The keyword options of :func:`rollout` and :func:`compare_rollouts` the data was made with."""
        c = self.config
        return dict(dt=c.dt, n_steps=c.n_steps, substeps=c.substeps, max_substeps=c.max_substeps,
                    tolerance=c.tolerance, integrator=c.integrator)


def initial_states(path, n: int, seed: int = 0) -> InitialStates:
    """The first saved state of ``n`` simulations (drawn with ``seed``; all of them if the file holds
    fewer) of a dataset file, e.g. a held-out test file, with the file's settings and law.

    A file written before adaptive sub-steps (no ``max_substeps`` attribute) was integrated with fixed
    steps: its ``max_substeps`` is its ``substeps``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SymdistillError(f"`n` must be an integer >= 1 (got {n!r})")
    with open_dataset(path) as ds:
        k = min(int(n), ds.n_sims)
        sims = np.sort(np.random.default_rng(seed).choice(ds.n_sims, k, replace=False))
        data = ds.read(sims, slice(0, 1), fields=("pos", "vel"))
        a, law = ds.attrs, ds.law()
        try:
            substeps = int(a.get("substeps", 1))
            config = SimulationConfig(
                n_sims=k, n_bodies=ds.n_bodies, dim=ds.dim, n_steps=ds.n_steps, dt=ds.dt, substeps=substeps,
                max_substeps=int(a.get("max_substeps", substeps)),
                tolerance=float(a.get("tolerance", SimulationConfig.tolerance)),
                integrator=str(a.get("integrator", SimulationConfig.integrator)), seed=int(a.get("seed", 0)))
        except (TypeError, ValueError) as e:
            raise SymdistillError(f"{ds.path}: its integration attributes cannot be read ({str(e)[:80]}): "
                                  "re-create the file with `symdistill simulate`") from None
    return InitialStates(data["pos"][:, 0], data["vel"][:, 0], data["mass"], data["charge"], config, law, sims)


def plot_rollouts(result: dict, path) -> Path:
    """Two panels against the saved step: position error (log y), and the own (solid) and true
    (dashed) energy drifts, one colour per model; written as a PNG atomically."""
    import matplotlib
    matplotlib.use("Agg")  # files only; imported here so that rollouts alone do not load matplotlib
    import matplotlib.pyplot as plt

    steps = np.asarray(result["steps"], dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for k, (name, entry) in enumerate(result["models"].items()):
        colour = "k" if name == "truth" else f"C{k - 1}"
        label = name + (f" ({entry['blow_ups']} blew up)" if entry["blow_ups"] else "")
        if name != "truth":
            axes[0].plot(steps, _positive(entry["position_error"]), color=colour, lw=1.2, label=label)
        own = entry["own_energy_drift"]
        if own is not None:
            axes[1].plot(steps, _positive(own), color=colour, lw=1.2, label=f"{name}: own energy")
        if name != "truth":  # the truth's own energy is the true energy
            axes[1].plot(steps, _positive(entry["true_energy_drift"]), color=colour, lw=1.0, ls="--",
                         label=f"{name}: true energy")
    titles = ("median RMS position error", f"median |E(t) - E(0)| / {result['energy_scale']:.3g}")
    for ax, title in zip(axes, titles):
        if any(np.isfinite(line.get_ydata()).any() for line in ax.get_lines()):
            ax.set_yscale("log")
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"saved step (dt = {result['dt']:g})", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"rollouts of {result['law']}: {result['n_sims']} simulations", fontsize=10)
    fig.tight_layout()
    with atomic_path(path := Path(path)) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _positive(values) -> np.ndarray:
    """A JSON curve for a log axis: nulls and values <= 0 left out (NaN)."""
    a = np.array([np.nan if v is None else v for v in values], dtype=float)
    return np.where(a > 0, a, np.nan)
