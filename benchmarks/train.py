"""Training throughput: symdistill's graph network against a reference-style PyTorch Geometric baseline,
and our achieved FLOP/s against a plain matrix multiply, all timed in one run.

    python benchmarks/train.py                    # spring-2D, n=4, paper sizes (3 x 300, message 100)
    python benchmarks/train.py --threads 1 --seconds 15 --json bench.json
    python benchmarks/train.py --bf16             # also ours with bfloat16 autocast (train.precision=bf16)

Both sides train the same network for the same task: the paper's architecture (edge model on
[x_i, x_j] raw node features, 3 hidden layers of 300 ReLU, message dim 100, sum aggregation, node
model on [x_i, sum of messages]), `standard` variant (no penalty, so both do exactly the same
arithmetic), per-node L1 loss, Adam, the same batch size.

- baseline: like the reference code: a `torch_geometric.nn.MessagePassing` subclass fed by PyG's
  `DataLoader` collating one `Data` object per graph.
- ours: `symdistill.models.GraphNetwork` fed by `symdistill.train.GraphData.batch` (a gather plus a
  constant edge pattern with offsets).
- FLOP/s: 3 x the forward matmul FLOPs per step (backward ~ 2 x forward) over the measured step time,
  against `A @ W` with A [edges per batch, 300] and W [300, 300] (the dominant layer shape), for
  both sides. "fp32 ceiling" = matmul FLOP/s / baseline FLOP/s: the most any float32 implementation
  of the same arithmetic could gain over the baseline (its matmuls at the plain matmul's rate, all
  else free).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from symdistill.models import GraphNetwork, ModelConfig
from symdistill.simulate import simulate
from symdistill.train.data import GraphData
from symdistill.train.config import TrainConfig
from symdistill.train.loop import make_optimizer, train_step

MAE = TrainConfig(loss="mae")  # the reference's loss, as the baseline computes it
MAE_BF16 = TrainConfig(loss="mae", precision="bf16")  # the same, forward pass under bfloat16 autocast


def paper_model(dim: int, hidden: int, layers: int) -> GraphNetwork:
    cfg = ModelConfig(variant="standard", edge_inputs="paper", hidden=hidden, layers=layers, message_dim=100,
                      node_messages="sum", node_model="mlp", inverse_mass=False)
    return GraphNetwork(cfg, dim)


def time_ours(data: GraphData, batch_size: int, seconds: float, hidden: int, layers: int,
              train_config: TrainConfig = MAE) -> dict:
    torch.manual_seed(0)
    model = paper_model(data.dim, hidden, layers)
    model.fit_scales(data.batch(slice(0, 2048)))
    opt = make_optimizer(model, train_config)  # what `symdistill train` uses (fused Adam)
    g = torch.Generator().manual_seed(0)

    def epoch():
        perm = torch.randperm(len(data), generator=g)
        for i in range(0, len(data) - batch_size + 1, batch_size):
            yield data.batch(perm[i: i + batch_size])

    def step(batch):
        train_step(model, opt, batch, train_config)

    steps, graphs, elapsed = _run(epoch, step, batch_size, seconds)
    return {"graphs_per_s": graphs / elapsed, "steps": steps, "seconds": elapsed,
            "gflops": _step_flops(data, batch_size, hidden, layers) * steps / elapsed / 1e9}


def _step_flops(data: GraphData, batch_size: int, hidden: int, layers: int) -> int:
    """Matmul FLOPs of one training step of the paper's network (the baseline computes the same)."""
    n, e = batch_size * data.n_bodies, batch_size * data.n_bodies * (data.n_bodies - 1)
    return 3 * paper_model(data.dim, hidden, layers).matmul_flops(n, e)


def time_baseline(data: GraphData, batch_size: int, seconds: float, hidden: int, layers: int) -> dict:
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader
    from torch_geometric.nn import MessagePassing

    def mlp(n_in, n_out):
        mods, w = [], n_in
        for _ in range(layers):
            mods += [nn.Linear(w, hidden), nn.ReLU()]
            w = hidden
        return nn.Sequential(*mods, nn.Linear(w, n_out))

    class RefGN(MessagePassing):  # built like the reference code's OGN
        def __init__(self, n_f, msg_dim, ndim):
            super().__init__(aggr="add")
            self.msg_fnc, self.node_fnc = mlp(2 * n_f, msg_dim), mlp(msg_dim + n_f, ndim)

        def forward(self, x, edge_index):
            return self.propagate(edge_index, size=(x.size(0), x.size(0)), x=x)

        def message(self, x_i, x_j):
            return self.msg_fnc(torch.cat([x_i, x_j], dim=1))

        def update(self, aggr_out, x=None):
            return self.node_fnc(torch.cat([x, aggr_out], dim=1))

    n = data.n_bodies
    ei = torch.tensor([[j, i] for i in range(n) for j in range(n) if i != j]).T.contiguous()
    x = torch.cat([data.pos, data.vel, data.charge[..., None], data.mass[..., None]], dim=2)
    graphs = [Data(x=x[k], edge_index=ei, y=data.acc[k]) for k in range(len(data))]
    torch.manual_seed(0)
    model = RefGN(x.shape[2], 100, data.dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loader = DataLoader(graphs, batch_size=batch_size, shuffle=True, drop_last=True)

    def epoch():
        return iter(loader)

    def step(batch):
        pred = model(batch.x, batch.edge_index)
        loss = (pred - batch.y).abs().sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    steps, n_graphs, elapsed = _run(epoch, step, batch_size, seconds)
    return {"graphs_per_s": n_graphs / elapsed, "steps": steps, "seconds": elapsed,
            "gflops": _step_flops(data, batch_size, hidden, layers) * steps / elapsed / 1e9}


def _run(epoch, step, batch_size, seconds, warmup=3):
    """Time whole steps, data preparation included, for ``seconds`` after ``warmup`` steps."""
    it, done = epoch(), 0
    t0 = None
    steps = 0
    while True:
        try:
            batch = next(it)
        except StopIteration:
            it = epoch()
            continue
        step(batch)
        done += 1
        if done == warmup:
            t0, steps = time.perf_counter(), 0
        elif t0 is not None:
            steps += 1
            if time.perf_counter() - t0 >= seconds:
                return steps, steps * batch_size, time.perf_counter() - t0


def time_matmul(rows: int, width: int, seconds: float) -> float:
    a, w = torch.randn(rows, width), torch.randn(width, width)
    for _ in range(5):
        a @ w
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ w
        n += 1
    return 2 * rows * width * width * n / (time.perf_counter() - t0) / 1e9


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="timed seconds per measurement")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 512])
    p.add_argument("--hidden", type=int, default=300)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--sims", type=int, default=100, help="spring-2D simulations x 100 states")
    p.add_argument("--bf16", action="store_true", help="also time ours with train.precision=bf16")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = GraphData.from_trajectory(simulate("spring", n_sims=args.sims, n_bodies=4, dim=2, n_steps=100))
    results = {"threads": torch.get_num_threads(), "graphs": len(data), "hidden": args.hidden,
               "layers": args.layers, "rows": []}
    print(f"spring-2D n=4, {len(data)} graphs, MLPs {args.layers} x {args.hidden}, message 100, "
          f"{torch.get_num_threads()} torch thread(s), {args.seconds:g} s per measurement")
    print(f"{'batch':>6} {'baseline g/s':>13} {'ours g/s':>10} {'speed-up':>9} {'ours GFLOP/s':>13} "
          f"{'matmul GFLOP/s':>15} {'of matmul':>10} {'baseline of matmul':>19} {'fp32 ceiling':>13}")
    for bs in args.batch_sizes:
        base = time_baseline(data, bs, args.seconds, args.hidden, args.layers)
        ours = time_ours(data, bs, args.seconds, args.hidden, args.layers)
        mm = time_matmul(bs * data.n_bodies * (data.n_bodies - 1), args.hidden, args.seconds / 2)
        row = {"batch_size": bs, "baseline_graphs_per_s": base["graphs_per_s"],
               "ours_graphs_per_s": ours["graphs_per_s"], "speedup": ours["graphs_per_s"] / base["graphs_per_s"],
               "ours_gflops": ours["gflops"], "matmul_gflops": mm, "fraction_of_matmul": ours["gflops"] / mm,
               "baseline_gflops": base["gflops"], "baseline_fraction_of_matmul": base["gflops"] / mm,
               # the speed-up a float32 implementation doing the same matmuls at the plain matmul's rate
               # (and nothing else) would have: the baseline is compute-bound, not collation-bound
               "fp32_ceiling": mm / base["gflops"]}
        line = (f"{bs:>6} {row['baseline_graphs_per_s']:>13.0f} {row['ours_graphs_per_s']:>10.0f} "
                f"{row['speedup']:>8.2f}x {row['ours_gflops']:>13.1f} {mm:>15.1f} {row['fraction_of_matmul']:>9.0%} "
                f"{row['baseline_fraction_of_matmul']:>18.0%} {row['fp32_ceiling']:>12.2f}x")
        if args.bf16:  # same steps with the forward pass under bfloat16 autocast (`train.precision=bf16`)
            fast = time_ours(data, bs, args.seconds, args.hidden, args.layers, MAE_BF16)
            row.update(ours_bf16_graphs_per_s=fast["graphs_per_s"],
                       speedup_bf16=fast["graphs_per_s"] / base["graphs_per_s"])
            line += f"   bf16: {fast['graphs_per_s']:.0f} g/s, {row['speedup_bf16']:.2f}x"
        results["rows"].append(row)
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
