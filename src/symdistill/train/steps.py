"""The steps of training, each its own function: the loss, one optimisation step, the optimiser, the
evaluation after an epoch, the history files, the thread and device choices, the size check.

:class:`symdistill.train.trainer.Trainer` strings them together; :func:`symdistill.train.train` is the
entry point.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
import time

import numpy as np
import torch

from symdistill.errors import SymdistillError
from symdistill.limits import check_memory
from symdistill.models.network import GraphNetwork
from symdistill.train.config import RunConfig, TrainConfig
from symdistill.train.data import GraphData
from symdistill.train.energy_metrics import energy_r2, record_energies
from symdistill.train.metrics import active_components, force_r2, record_messages, test_mae, top_components

HISTORY_FIELDS = ("epoch", "step", "seconds", "lr", "train_loss", "train_penalty", "val_loss", "val_penalty",
                  "val_mae", "active_components", "force_r2")
#: Training loss and penalty every few steps, beside the per-epoch ``history.csv``: a short run has few
#: epochs, and the report draws its curves from these rows (means over the steps since the last row).
STEP_HISTORY = "history_steps.csv"
STEP_HISTORY_FIELDS = ("step", "seconds", "lr", "train_loss", "train_penalty")
SCALE_GRAPHS = 8192  # training graphs used to measure the normalisation scales


def prediction_loss(model: GraphNetwork, pred: torch.Tensor, batch, t: TrainConfig) -> torch.Tensor:
    """The problem's loss of normalised predictions [V or G, K] against the batch's target (see module doc)."""
    return model.problem.loss(pred, model.problem.target_values(batch) / model.out_scale, t.loss, t.loss_floor)


def loss_fn(model: GraphNetwork, batch, t: TrainConfig, *, sample: bool = False, generator=None):
    """(prediction loss, penalty) for one batch, both scalars (the forward pass in ``t.precision``)."""
    with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16"):
        out = model(batch, sample=sample, generator=generator)
    return prediction_loss(model, out.pred.float(), batch, t), out.penalty.float()


def make_optimizer(model: GraphNetwork, t: TrainConfig) -> torch.optim.Adam:
    """Adam at OneCycle's starting rate; the fused kernel (one pass over all parameters, +15% steps/s at
    batch 64 on 2 CPU cores, docs/benchmarks.md) where PyTorch has it for the model's device."""
    device = next(model.parameters()).device.type
    return torch.optim.Adam(model.parameters(), lr=t.lr / t.div_factor, weight_decay=t.weight_decay,
                            fused=device in ("cpu", "cuda"))


def train_step(model: GraphNetwork, optimizer, batch, t: TrainConfig, *, sample: bool = False,
               generator=None) -> tuple[float, torch.Tensor, torch.Tensor]:
    """One optimisation step: (loss + penalty as a float, loss, penalty). A non-finite total leaves the
    weights untouched (the caller stops the run)."""
    loss, penalty = loss_fn(model, batch, t, sample=sample, generator=generator)
    total = loss + penalty
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    value = total.item()
    if math.isfinite(value):
        optimizer.step()
    return value, loss.detach(), penalty.detach()


def step_log_every(total_steps: int) -> int:
    """Steps between two rows of ``history_steps.csv``: 25, or fewer so a short run still has ~50 rows."""
    return max(1, min(25, total_steps // 50))


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``/``cuda:N``, or ``auto`` (CUDA when PyTorch sees a GPU, else the CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SymdistillError(f"--device {name}: PyTorch sees no CUDA GPU here; use --device cpu (or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SymdistillError(f"Unknown device {name!r}: use cpu, cuda, cuda:N or auto") from None


def check_model_size(config: RunConfig, dim: int) -> None:
    """Refuse, before allocating it, a network (weights, gradients, Adam's two moments) that does not fit."""
    m = config.model
    width = max(m.hidden, m.message_dim, 16)
    weights = 2 * (m.layers + 1) * float(width) ** 2  # edge and node MLPs, a bound
    check_memory(f"A network of {m.layers} layers x {m.hidden} units", 4 * 4 * weights,
                 fix="ask for a smaller --hidden or --layers")


@torch.no_grad()
def evaluate_epoch(model: GraphNetwork, val: GraphData, t: TrainConfig) -> dict:
    """Validation loss (same as training), penalty, MAE, active components and force R^2."""
    model.eval()
    batch = val.batch().to(model.device)
    out = model(batch)
    loss = float(prediction_loss(model, out.pred, batch, t))
    if getattr(model, "kind", None) == "hamiltonian":  # bulk R^2 of the gauge-fixed pair energy (one "component")
        active, r2 = 1, [energy_r2(record_energies(model, batch, law=val.law, max_graphs=500), bulk=True)[0]]
    else:
        rec = record_messages(model, batch, law=val.law)
        r2 = force_r2(rec) if rec.forces is not None else [float("nan")] * len(top_components(rec))
        active = active_components(rec)
    return {"val_loss": loss, "val_penalty": float(out.penalty), "val_mae": test_mae(model, batch),
            "active_components": active, "force_r2": [round(x, 6) for x in r2]}


def history_csv(history: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({**row, "force_r2": " ".join(f"{x:.6f}" for x in row["force_r2"])})
    return buf.getvalue()


def step_history_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=STEP_HISTORY_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def fmt_r2(r2) -> str:
    return "/".join(f"{x:.3f}" for x in r2)


def choose_threads(model, optimizer, data: GraphData, batch_size: int, t: TrainConfig, log=print) -> float:
    """Set torch's thread count to the faster of one thread and all of them, measured now, and return
    its step rate. Why: beside another busy process two threads fight for one free core and run slower
    than one (measured, spring-2D: 275 against 463 steps in 25 s); on a quiet machine two are faster."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    most = max(1, cores)
    if most == 1:
        return measure_step_rate(model, optimizer, data, batch_size, t)
    rates = {}
    for n in (most, 1):
        torch.set_num_threads(n)
        rates[n] = measure_step_rate(model, optimizer, data, batch_size, t)
    best = max(rates, key=rates.get)
    torch.set_num_threads(best)
    log(f"training on {best} thread{'s' if best > 1 else ''} (steps/s: "
        + ", ".join(f"{n} thread{'s' if n > 1 else ''} {r:.0f}" for n, r in rates.items()) + ")")
    return rates[best]


def measure_step_rate(model, optimizer, data: GraphData, batch_size: int, t: TrainConfig, steps: int = 8) -> float:
    """Training steps per second, timed on throwaway copies (the run's RNG and weights are untouched)."""
    m, opt = copy.deepcopy(model), copy.deepcopy(optimizer)
    g = torch.Generator().manual_seed(12345)
    times = []
    for _ in range(steps + 2):
        batch = data.batch(torch.randint(len(data), (batch_size,), generator=g)).to(m.device)
        t0 = time.perf_counter()
        train_step(m, opt, batch, t, sample=m.variant.name == "kl", generator=g)
        times.append(time.perf_counter() - t0)
    return 1.0 / float(np.median(times[2:]))
