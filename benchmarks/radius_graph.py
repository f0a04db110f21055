"""Radius-graph benchmark: RadiusGraph in a periodic 3D box, with a brute-force O(N^2) baseline beside it.

    .venv/bin/python benchmarks/radius_graph.py          # 200,000 points, ~140 neighbours, float64 and float32
    .venv/bin/python benchmarks/radius_graph.py --points 50000 --baseline-points 5000   # a smoke run

Points are uniform in the periodic unit box; the radius r solves (N - 1) * 4/3 pi r^3 = neighbours. Targets for
the full build: <= 60 s and <= 4 GB (1 GB = 10^9 bytes) on 2 CPU cores.

Peak memory: each full build runs in a fresh spawned process. It reads its resident set size from
/proc/self/statm once the imports are done and the points made, builds, then reads its peak RSS from
getrusage(RUSAGE_SELF).ru_maxrss: the kernel's high-water mark, so no short spike is missed (a sampler can miss
one), and the process's own, so an earlier build does not leak into it (RUSAGE_CHILDREN is a max over all
children). Build peak = peak RSS - RSS before the build; it includes the returned Edges, part of the cost.

Baseline: the same density in a smaller periodic box (side (n / N)^(1/3)), hence the same radius and the same
neighbours per point, on ``--baseline-points`` points: brute force over all pairs in chunks of receivers
(minimum image per axis), giving edges receiver-major like ours, so the two edge lists must be identical; the
displacements must agree to 1e-12. Reported: the time per edge, ours / brute force.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time

import numpy as np

ROWS = 256  # receivers per brute-force chunk: [ROWS, n] float64 temporaries (~40 MB at n = 20,000)
TARGET_S, TARGET_GB = 60.0, 4.0


def radius_for(neighbours: float, n_points: int, volume: float = 1.0) -> float:
    return (3 * neighbours * volume / (4 * np.pi * (n_points - 1))) ** (1 / 3)


def uniform(n: int, side: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, side, size=(n, 3))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _build_child(queue, n_points, radius, dtype):
    import torch

    from symdistill.graphs.builders import RadiusGraph

    torch.set_num_threads(2)
    pos = uniform(n_points, 1.0).astype(dtype)
    before = _rss_bytes()
    t0 = time.perf_counter()
    edges = RadiusGraph(radius, box_size=1.0)(pos)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    out_bytes = sum(t.numel() * t.element_size() for t in (edges.edge_index, edges.displacement, edges.distance))
    queue.put(dict(seconds=seconds, edges=edges.edge_index.shape[1], before=before, peak=peak, out=out_bytes))


def build_in_fresh_process(n_points, radius, dtype) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_build_child, args=(queue, n_points, radius, dtype))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def brute_force(pos: np.ndarray, radius: float, side: float):
    """All pairs at distance < radius (minimum image), receiver-major: (edge_index [2, E], displacement [E, 3])."""
    n = len(pos)
    recv, send = [], []
    for start in range(0, n, ROWS):
        rows = slice(start, min(start + ROWS, n))
        sq = np.zeros((rows.stop - rows.start, n))
        for a in range(3):
            d = pos[rows, a, None] - pos[None, :, a]
            d -= side * np.round(d / side)
            sq += d * d
        hit = np.sqrt(sq) < radius
        hit[np.arange(rows.stop - rows.start), np.arange(rows.start, rows.stop)] = False
        i, j = np.nonzero(hit)
        recv.append(i + start)
        send.append(j)
    edge_index = np.stack([np.concatenate(send), np.concatenate(recv)])
    disp = pos[edge_index[1]] - pos[edge_index[0]]
    disp -= side * np.round(disp / side)
    return edge_index, disp


def baseline(n_sub: int, n_points: int, radius: float) -> dict:
    from symdistill.graphs.builders import RadiusGraph

    side = (n_sub / n_points) ** (1 / 3)  # same density as the unit box with n_points
    pos = uniform(n_sub, side, seed=1)
    t0 = time.perf_counter()
    ours = RadiusGraph(radius, box_size=side)(pos)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    edge_index, disp = brute_force(pos, radius, side)
    t_brute = time.perf_counter() - t0
    same = np.array_equal(ours.edge_index.numpy(), edge_index)
    err = float(np.abs(ours.displacement.numpy() - disp).max()) if same and len(disp) else float("nan")
    return dict(side=side, t_ours=t_ours, t_brute=t_brute, edges=edge_index.shape[1], same=same, err=err)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--neighbours", type=float, default=140.0)
    ap.add_argument("--baseline-points", type=int, default=20_000)
    ap.add_argument("--dtype", choices=["float64", "float32", "both"], default="both")
    a = ap.parse_args()
    dtypes = ["float64", "float32"] if a.dtype == "both" else [a.dtype]
    radius = radius_for(a.neighbours, a.points)
    print(f"radius graph, periodic 3D unit box: {a.points:,} uniform points, radius {radius:.5f} "
          f"({a.neighbours:g} expected neighbours); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    results = {}
    for dtype in dtypes:
        r = results[dtype] = build_in_fresh_process(a.points, radius, dtype)
        print(f"  ours {dtype}: {r['seconds']:.2f} s, {r['edges']:,} edges, {r['edges'] / a.points:.1f} neighbours "
              f"per point, build peak {(r['peak'] - r['before']) / 1e9:.2f} GB (process peak {r['peak'] / 1e9:.2f} GB, "
              f"of which the returned Edges {r['out'] / 1e9:.2f} GB)")
    b = baseline(a.baseline_points, a.points, radius)
    per_edge_brute = b["t_brute"] / b["edges"]
    print(f"baseline: brute force O(N^2) in chunks, float64, {a.baseline_points:,} points in a periodic box of side "
          f"{b['side']:.4f} (same density and radius)")
    print(f"  brute force: {b['t_brute']:.2f} s, {b['edges']:,} edges ({b['edges'] / a.baseline_points:.1f} per point; "
          f"at {a.points:,} points it would take ~{b['t_brute'] * (a.points / a.baseline_points) ** 2:,.0f} s, O(N^2))")
    print(f"  ours: {b['t_ours']:.3f} s; edge lists identical: {b['same']}; max displacement difference {b['err']:.1e}")
    print(f"  time per edge, ours / brute force: {b['t_ours'] / b['edges'] / per_edge_brute:.4f} at "
          f"{a.baseline_points:,} points (like for like)")
    for dtype, r in results.items():
        print(f"  time per edge, ours {dtype} at {a.points:,} points / brute force at {a.baseline_points:,}: "
              f"{r['seconds'] / r['edges'] / per_edge_brute:.4f}")
    print(f"targets at {a.points:,} points, {a.neighbours:g} neighbours: <= {TARGET_S:g} s and <= {TARGET_GB:g} GB")
    ok = b["same"]
    for dtype, r in results.items():
        gb = (r["peak"] - r["before"]) / 1e9
        met = r["seconds"] <= TARGET_S and gb <= TARGET_GB
        ok &= met
        print(f"  {dtype}: {r['seconds']:.2f} s, {gb:.2f} GB -> {'met' if met else 'NOT MET'}")
    print(f"summary: {'all targets met and the baseline agrees' if ok else 'FAILED (see above)'}; "
          f"load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
