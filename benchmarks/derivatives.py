"""Accelerations estimated from noisy positions: savgol (fixed windows, and the window chosen from the
data) against the GCV smoothing spline, on the development laws (spring, r2; 2D, 4 bodies, 100 saved
states, each law's dt). This measurement chose the default estimator (symdistill.simulate.observe).

    nice -n 19 .venv/bin/python benchmarks/derivatives.py            # ~4 min on 2 cores (spline: most)
    nice -n 19 .venv/bin/python benchmarks/derivatives.py --quick    # 50 simulations, ~2 min

Per estimator, on the states each keeps (``trim`` dropped at each end): ``med`` = median over bodies
and states of |a_est - a| / |a|; ``rms`` = sqrt(mean |a_est - a|^2 / mean |a|^2). For the ends:
``rms0`` keeps every state, ``rms/2`` drops window//2 at each end. For the chosen window: the noise
estimates from the data against the truth (sigma_hat / sigma injected; acc_noise_estimate against
the injected noise propagated through the filter, and against the measured rms error, which also
holds the smoothing bias).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.signal import savgol_filter

from symdistill.simulate import simulate
from symdistill.simulate.observe import Estimator, _operator, add_noise, observe, position_scale

FIXED = [(7, 4), (11, 4), (21, 4), (31, 4), (41, 4), (51, 4), (61, 4), (81, 4),
         (21, 3), (31, 3), (41, 3), (51, 3), (61, 3)]


def errors(a_est, a_true):
    e = np.linalg.norm(a_est - a_true, axis=-1)
    n = np.linalg.norm(a_true, axis=-1)
    return float(np.median(e / n)), float(np.sqrt((e**2).mean() / (n**2).mean()))


def fixed_rows(traj, noise, seed):
    """Fixed savgol windows: med/rms on w//4-trimmed states, plus rms on all and on w//2-trimmed."""
    seen = add_noise(traj.pos, noise * position_scale(traj.pos), seed)
    n = traj.pos.shape[1]
    for w, p in FIXED:
        a = savgol_filter(seen, w, p, deriv=2, delta=traj.dt, axis=1)
        cut = lambda k: (slice(None), slice(k, n - k))  # noqa: E731
        med, rms = errors(a[cut(w // 4)], traj.acc[cut(w // 4)])
        half = errors(a[cut(w // 2)], traj.acc[cut(w // 2)])[1]
        yield f"savgol w={w} p={p}", med, rms, errors(a, traj.acc)[1], half


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n_sims, spline_sims = (50, 16) if args.quick else (200, 32)
    for law in ("spring", "r2"):
        traj = simulate(law, n_sims=n_sims, n_bodies=4, dim=2, n_steps=100, seed=args.seed)
        sub = simulate(law, n_sims=spline_sims, n_bodies=4, dim=2, n_steps=100, seed=args.seed)
        scale = position_scale(traj.pos)
        print(f"\n== {law}: dt {traj.dt:g}, {n_sims} simulations x 100 states, position scale {scale:.3f}, "
              f"rms |a| {np.sqrt((traj.acc**2).sum(-1).mean()):.3g}")
        for noise in (0.0, 0.01, 0.05):
            print(f"-- noise {noise} (sigma = {noise * scale:.4g})")
            print(f"   {'estimator':<30}{'med':>9}{'rms':>9}{'rms0':>9}{'rms/2':>9}")
            for name, med, rms, rms0, rms2 in fixed_rows(traj, noise, args.seed + 1):
                print(f"   {name:<30}{med:9.3g}{rms:9.3g}{rms0:9.3g}{rms2:9.3g}")
            for p in (3, 4):
                t0 = time.perf_counter()
                o = observe(traj, noise, seed=args.seed + 1, method=Estimator(polyorder=p))
                med, rms = errors(o.acc, o.acc_true)
                w, a = o.attrs["estimator_window"], o.attrs
                kept = slice(a["estimator_trim"], 100 - a["estimator_trim"])
                gain = np.sqrt(np.mean((_operator(100, w, p, 2, traj.dt)[kept] ** 2).sum(1)))
                err = np.sqrt(np.mean((o.acc - o.acc_true) ** 2))
                print(f"   {f'savgol auto p={p} -> w={w}':<30}{med:9.3g}{rms:9.3g}{'':>18}"
                      f"  ({time.perf_counter() - t0:.1f} s)")
                if noise > 0:
                    print(f"   {'':<30}sigma_hat/sigma {a['pos_noise_estimate'] / (noise * scale):.3f}   "
                          f"acc_noise_estimate {a['acc_noise_estimate']:.3g} vs injected x gain "
                          f"{noise * scale * gain:.3g} ({a['acc_noise_estimate'] / (noise * scale * gain):.3f}); "
                          f"measured rms error {err:.3g}, acc_bias_estimate {a.get('acc_bias_estimate', 0):.3g}")
            t0 = time.perf_counter()
            o = observe(sub, noise, seed=args.seed + 1, method="spline")
            med, rms = errors(o.acc, o.acc_true)
            err = np.sqrt(np.mean((o.acc - o.acc_true) ** 2))
            print(f"   {f'spline GCV ({spline_sims} sims)':<30}{med:9.3g}{rms:9.3g}{'':>18}"
                  f"  ({time.perf_counter() - t0:.1f} s; acc_noise_estimate {o.attrs['acc_noise_estimate']:.3g},"
                  f" measured rms error {err:.3g})")


if __name__ == "__main__":
    main()
