"""One streaming training epoch of the halo GN at the paper's scale (2e5 halos, ~3e7 directed edges):
time and peak memory, against baselines run beside it in the same process.

    nice -n 19 .venv/bin/python benchmarks/cosmology_scale.py                    # full size: long on 2 cores
    nice -n 19 .venv/bin/python benchmarks/cosmology_scale.py --halos 20000 --max-receivers 2000   # ~1 min
    nice -n 19 .venv/bin/python benchmarks/cosmology_scale.py --paper            # also the paper's preset

Catalogue: uniform positions in a box sized so the expected directed edge count is ``--edges`` x
(halos / 2e5) (the paper's mean degree, ~150 at 3e7 edges: a 887 Mpc/h box for 2e5 halos), masses from
dN/dM ~ M^-1.9 above 1.3e13 Msun/h (capped at 1e16), a lognormal ``delta`` (timing does not depend on
the target). Measured, in order:

1. ``edges``: one streaming pass building every edge of the epoch's receivers (cKDTree queries only);
2. ``epoch``: one training epoch over those receivers, edges built per batch (``train_halo_gn``);
3. ``dense``: the same number of steps of the two MLPs, forward + backward + Adam, on random inputs of
   each batch's shapes (no tree, no gathers, no scatter): the floor the epoch is compared to;
4. with ``--materialise`` (default when the graph has < 5e6 edges): the epoch on a :class:`HaloGraph`.

Peak memory is the process's maximum RSS (``ru_maxrss``) after each phase: a running maximum, so the
phases run from the least to the most memory expected; the materialised graph comes last.
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import numpy as np
import torch

from symdistill.cosmology.catalogue import HaloCatalogue
from symdistill.cosmology.graph import HaloGraph, StreamingGraph
from symdistill.cosmology.train import HaloTrainConfig, train_halo_gn
from symdistill.models.mlp import MLP


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def catalogue(n: int, edges: float, radius: float, seed: int) -> HaloCatalogue:
    rng = np.random.default_rng(seed)
    degree = edges / 2e5
    box = (n * 4 / 3 * math.pi * radius ** 3 / degree) ** (1 / 3)
    mass = np.minimum(1.3e13 * rng.uniform(size=n) ** (-1 / 0.9), 1e16)  # dN/dM ~ M^-1.9
    return HaloCatalogue(rng.uniform(0, box, (n, 3)), rng.normal(0, 300, (n, 3)), mass, box,
                         delta=np.exp(rng.normal(-0.5, 0.6, n)) - 0.3, meta={"source": "benchmark"})


def edge_pass(graph, receivers, chunk_edges: int) -> tuple[float, int]:
    t = time.perf_counter()
    n = sum(b.n_edges for b in graph.chunks(receivers, chunk_edges=chunk_edges))
    return time.perf_counter() - t, n


def epoch(source, config: HaloTrainConfig, receivers) -> tuple[float, list]:
    t = time.perf_counter()
    _, history = train_halo_gn(source, config=config, train_index=receivers, progress=False, log=lambda *a: None)
    return time.perf_counter() - t, history


def dense(config: HaloTrainConfig, n_steps: int, edges_per_step: float, seed: int) -> float:
    """The two MLPs' forward + backward + Adam on random [E, 3] and [B, 1 + msg] inputs, n_steps times."""
    torch.manual_seed(seed)
    phi = MLP(3, config.msg_dim, config.hidden, config.layers, config.activation)
    psi = MLP(1 + config.msg_dim, 1, config.node_hidden or config.hidden, config.layers, config.activation)
    opt = torch.optim.Adam([*phi.parameters(), *psi.parameters()], lr=1e-4)
    e, b = int(edges_per_step), config.batch_size
    x, y = torch.rand(e, 3), torch.rand(b, 1)
    t = time.perf_counter()
    for _ in range(n_steps):
        m = phi(x)
        s = m.view(b, -1, config.msg_dim).sum(1)  # the aggregate's shape (the gathers and scatter left out)
        loss = (psi(torch.cat([y, s], 1)) - y).abs().mean() + 1e-2 * m.abs().sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def measure(name: str, cat, graph, receivers, config, args, rows) -> None:
    t_edges, n_edges = edge_pass(graph, receivers, config.chunk_edges)
    t_epoch, history = epoch(graph, config, receivers)
    steps = history[-1]["step"]
    per_step = config.batch_size * n_edges / len(receivers)
    edges_per_step = max(1, round(per_step / config.batch_size)) * config.batch_size
    t_dense = dense(config, steps, edges_per_step, args.seed)
    rows.append((name, len(receivers), n_edges, steps, t_edges, t_epoch, t_dense, rss_mb()))
    print(f"{name}: {len(receivers):,} receivers, {n_edges:,} edges, {steps} steps of {config.batch_size}: "
          f"edges {t_edges:.1f} s, epoch {t_epoch:.1f} s ({n_edges / t_epoch / 1e3:.0f}k edges/s), dense MLPs "
          f"{t_dense:.1f} s; epoch / dense = {t_epoch / t_dense:.2f}; peak RSS {rss_mb():.0f} MB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--halos", type=int, default=200_000)
    ap.add_argument("--edges", type=float, default=3e7, help="directed edges at 2e5 halos (sets the density)")
    ap.add_argument("--max-receivers", type=int, help="train on the first N receivers only (a quick epoch)")
    ap.add_argument("--radius", type=float, default=50.0)
    ap.add_argument("--batch-size", type=int, default=HaloTrainConfig.batch_size)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--paper", action="store_true", help="also the paper's preset (2 x 500)")
    ap.add_argument("--materialise", action="store_true", default=None, help="also the materialised HaloGraph")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    cat = catalogue(args.halos, args.edges, args.radius, args.seed)
    print(f"catalogue: {len(cat):,} halos in a {cat.box_size:.0f} Mpc/h box ({time.perf_counter() - t:.1f} s); "
          f"{args.threads} threads; RSS {rss_mb():.0f} MB", flush=True)
    t = time.perf_counter()
    stream = StreamingGraph(cat, args.radius)
    print(f"tree: {time.perf_counter() - t:.1f} s; expected mean degree {stream.mean_degree_estimate():.0f}, "
          f"~{stream.mean_degree_estimate() * len(cat):.3g} edges in all", flush=True)
    n_recv = min(args.max_receivers or len(cat), len(cat))
    receivers = np.sort(np.random.default_rng(args.seed).permutation(len(cat))[:n_recv])
    configs = [("default", HaloTrainConfig(epochs=1, batch_size=args.batch_size, radius=args.radius, threads=args.threads))]
    if args.paper:
        configs.append(("paper", HaloTrainConfig.preset("paper", epochs=1, batch_size=args.batch_size,
                                                        radius=args.radius, threads=args.threads)))
    rows = []
    for _, config in configs:  # warm-up, untimed: torch's first backward and Adam step cost seconds
        epoch(stream, config, receivers[: config.batch_size])
    for name, config in configs:
        measure(f"streaming {name}", cat, stream, receivers, config, args, rows)
    materialise = args.materialise if args.materialise is not None else stream.mean_degree_estimate() * len(cat) < 5e6
    if materialise:
        t = time.perf_counter()
        graph = HaloGraph.build(cat, args.radius)
        print(f"materialised graph: {graph.n_edges:,} edges, {graph.nbytes / 2**20:.0f} MB "
              f"({graph.nbytes / graph.n_edges:.1f} bytes per edge) in {time.perf_counter() - t:.1f} s; "
              f"peak RSS {rss_mb():.0f} MB", flush=True)
        measure("materialised default", cat, graph, receivers, configs[0][1], args, rows)
        print(f"streaming / materialised epoch time: {rows[0][5] / rows[-1][5]:.2f}")
    print("\nname                  receivers      edges  steps  edges_s  epoch_s  dense_s  epoch/dense  peak_MB")
    for name, nr, ne, steps, te, tp, td, mb in rows:
        print(f"{name:20s} {nr:10,d} {ne:10,d} {steps:6d} {te:8.1f} {tp:8.1f} {td:8.1f} {tp / td:12.2f} {mb:8.0f}")


if __name__ == "__main__":
    main()
