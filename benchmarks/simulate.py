"""Simulator benchmark: ours vs a reference-style baseline on the paper's spring-2D dataset.

Baseline (mirrors the reference approach): one simulation at a time through scipy's adaptive RK45
at rtol = atol = 1.4e-8, run on a subset and extrapolated to 10,000 simulations. Accuracy of both
is measured on that subset against a high-accuracy DOP853 solution (rtol = atol = 1e-13): position
error after the last saved step and relative energy drift.

    .venv/bin/python benchmarks/simulate.py            # spring-2D, n=4, 10,000 x 500 (+ 3D n=8)
    .venv/bin/python benchmarks/simulate.py --quick    # smaller, for a smoke run

Each timed part runs in its own process so its peak memory (max RSS) is its own.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp

from symdistill.simulate import SimulationConfig, get_law, initial_conditions, simulate, simulate_to_file
from symdistill.simulate.integrate import Bodies, accelerations, total_energy

LAW = get_law("spring")


def _rhs_one(mass):
    """The reference's per-simulation right-hand side: numpy on one system of n bodies."""
    n = len(mass)
    m = torch.as_tensor(mass[None])
    bodies = Bodies(m, torch.zeros_like(m), LAW.damping_coefficients(n))

    def rhs(t, y):
        x = torch.as_tensor(y.reshape(2, 1, n, -1))
        a = accelerations(LAW, x[0], x[1], bodies)
        return np.concatenate([x[1].numpy().ravel(), a.numpy().ravel()])
    return rhs


def solve_one(pos, vel, mass, t, method, rtol):
    sol = solve_ivp(_rhs_one(mass), (t[0], t[-1]), np.concatenate([pos.ravel(), vel.ravel()]),
                    method=method, t_eval=t, rtol=rtol, atol=rtol)
    y = sol.y.T.reshape(len(t), 2, *pos.shape)
    return y[:, 0], y[:, 1]


def energy(pos, vel, mass):
    m = torch.as_tensor(mass)[None].expand(pos.shape[0], -1)
    bodies = Bodies(m, torch.zeros_like(m), LAW.damping_coefficients(m.shape[1]))
    return total_energy(LAW, torch.as_tensor(pos), torch.as_tensor(vel), bodies).numpy()


def _child(queue, fn, kwargs):
    torch.set_num_threads(2)
    out = fn(**kwargs)
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(out)


def in_process(fn, **kwargs):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, fn, kwargs))
    p.start()
    out = q.get()
    p.join()
    return out


def run_ours(n_sims, n_steps, n_bodies, dim, integrator="verlet", substeps=1):
    cfg = SimulationConfig(n_sims=n_sims, n_steps=n_steps, n_bodies=n_bodies, dim=dim,
                           integrator=integrator, substeps=substeps)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        simulate_to_file(Path(d) / "b.h5", LAW, config=cfg)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds}


def run_baseline(n_sub, n_steps, n_bodies, dim):
    pos0, vel0, mass, _ = initial_conditions(n_sub, n_bodies, dim, 0, LAW)
    t = np.arange(n_steps) * LAW.dt
    t0 = time.perf_counter()
    for k in range(n_sub):
        solve_one(pos0[k], vel0[k], mass[k], t, "RK45", 1.4e-8)
    return {"seconds": time.perf_counter() - t0}


def accuracy(n_sub, n_steps, n_bodies, dim, configs):
    pos0, vel0, mass, _ = initial_conditions(n_sub, n_bodies, dim, 0, LAW)
    t = np.arange(n_steps) * LAW.dt
    rows = {}
    ref, base = [], []
    for k in range(n_sub):
        ref.append(solve_one(pos0[k], vel0[k], mass[k], t, "DOP853", 1e-13))
        base.append(solve_one(pos0[k], vel0[k], mass[k], t, "RK45", 1.4e-8))

    def stats(pos_end, vel_end):
        err = [np.abs(pos_end[k] - ref[k][0][-1]).max() for k in range(n_sub)]
        e_ref0 = np.array([energy(ref[k][0][:1], ref[k][1][:1], mass[k])[0] for k in range(n_sub)])
        e_end = np.array([energy(pos_end[k][None], vel_end[k][None], mass[k])[0] for k in range(n_sub)])
        drift = np.abs(e_end - e_ref0) / np.abs(e_ref0)
        return np.median(err), np.max(err), np.median(drift), np.max(drift)

    rows["baseline RK45 (1.4e-8)"] = stats([b[0][-1] for b in base], [b[1][-1] for b in base])
    for name, kw in configs.items():
        tr = simulate(LAW, n_sims=n_sub, n_steps=n_steps, n_bodies=n_bodies, dim=dim, seed=0, **kw)
        rows[name] = stats(tr.pos[:, -1], tr.vel[:, -1])
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-3d", action="store_true")
    a = ap.parse_args()
    n_sims, n_steps, n_sub = (1000, 500, 5) if a.quick else (10_000, 500, 20)
    configs = {"ours verlet (default)": dict(),
               "ours rk4 x2 substeps": dict(integrator="rk4", substeps=2)}
    print(f"spring-2D, n=4, {n_sims} simulations x {n_steps} saved steps, dt={LAW.dt}")
    base = in_process(run_baseline, n_sub=n_sub, n_steps=n_steps, n_bodies=4, dim=2)
    base_total = base["seconds"] * n_sims / n_sub
    print(f"  baseline (per-simulation scipy RK45): {base['seconds']:.2f} s for {n_sub} sims "
          f"-> {base_total:.0f} s extrapolated, peak RSS {base['max_rss_mb']:.0f} MB")
    timings = {}
    for name, kw in configs.items():
        r = in_process(run_ours, n_sims=n_sims, n_steps=n_steps, n_bodies=4, dim=2, **kw)
        timings[name] = r["seconds"]
        print(f"  {name}: {r['seconds']:.1f} s, peak RSS {r['max_rss_mb']:.0f} MB, "
              f"throughput {base_total / r['seconds']:.0f}x the baseline")
    print(f"accuracy on {n_sub} simulations vs DOP853 (1e-13), after {n_steps} steps:")
    print(f"  {'method':28s} {'pos err median':>15s} {'pos err max':>12s} {'E drift median':>15s} {'E drift max':>12s}")
    for name, (em, ex, dm, dx) in accuracy(n_sub, n_steps, 4, 2, configs).items():
        print(f"  {name:28s} {em:15.2e} {ex:12.2e} {dm:15.2e} {dx:12.2e}")
    if not a.skip_3d:
        r = in_process(run_ours, n_sims=n_sims, n_steps=n_steps, n_bodies=8, dim=3)
        print(f"spring-3D, n=8, {n_sims} x {n_steps} (verlet, default): {r['seconds']:.1f} s, "
              f"peak RSS {r['max_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
