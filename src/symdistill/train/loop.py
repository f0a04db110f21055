"""The training loop: Adam + OneCycle, seeded, checkpointed every epoch, resumable after SIGKILL.

Determinism: the model is initialised from ``torch.manual_seed(seed)``; every later random draw
(batch order, translation augmentation, kl sampling) comes from one ``torch.Generator`` whose state
is checkpointed with the model, optimiser and schedule, so a resumed run takes exactly the steps the
uninterrupted one would (on CPU, with the same thread count).

Loss: per-node L1 error on normalised accelerations summed over dims, averaged over nodes (the
paper's, ``loss="mae"``), or by default that error divided by (the target's per-node L1 norm +
``loss_floor``) (``"relative"``): on r^-2 the MAE spends the network on the 1% of nodes near a
collision and leaves the rest no better than predicting zero. Plus the variant's penalty.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from symdistill.errors import SymdistillError
from symdistill.io import read_json, write_json, write_text
from symdistill.limits import check_memory
from symdistill.models.network import GraphNetwork
from symdistill.runfolder import claim, folder_lock
from symdistill.simulate.dataset import open_dataset
from symdistill.train import checkpoint as ckpt
from symdistill.train.config import RunConfig, TrainConfig
from symdistill.train.data import GraphData, load_graphs
from symdistill.train.metrics import active_components, force_r2, record_messages, test_mae, top_components

HISTORY_FIELDS = ("epoch", "step", "seconds", "lr", "train_loss", "train_penalty", "val_loss", "val_penalty",
                  "val_mae", "active_components", "force_r2")
#: Training loss and penalty every few steps, beside the per-epoch ``history.csv``: a short run has few
#: epochs, and the report draws its curves from these rows (means over the steps since the last row).
STEP_HISTORY = "history_steps.csv"
STEP_HISTORY_FIELDS = ("step", "seconds", "lr", "train_loss", "train_penalty")
SCALE_GRAPHS = 8192  # training graphs used to measure the normalisation scales


def prediction_loss(pred: torch.Tensor, target: torch.Tensor, t: TrainConfig) -> torch.Tensor:
    """Scalar loss of normalised predictions against normalised targets, both [V, D] (see module doc)."""
    err = (pred - target).abs().sum(1)
    if t.loss == "relative":
        err = err / (target.abs().sum(1) + t.loss_floor)
    return err.mean()


def loss_fn(model: GraphNetwork, batch, t: TrainConfig, *, sample: bool = False, generator=None):
    """(prediction loss, penalty) for one batch, both scalars (the forward pass in ``t.precision``)."""
    device = batch.pos.device.type
    with torch.autocast(device, dtype=torch.bfloat16, enabled=t.precision == "bf16"):
        out = model(batch, sample=sample, generator=generator)
    return prediction_loss(out.acc.float(), batch.acc / model.acc_scale, t), out.penalty.float()


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


def train(config: RunConfig | None, out, *, resume: bool = False, progress: bool = True,
          max_epochs: int | None = None, log=print) -> Path:
    """Train a graph network and write the run folder ``out``; returns its path.

    The folder is a record (:mod:`symdistill.runfolder`): it stores the requested config on creation,
    holds a lock while training, and a later call with the same config continues the run from its
    last checkpoint (or returns at once if it finished), while another config is refused.
    ``resume=True`` continues the run in ``out`` whatever ``config`` is (its saved config wins).
    ``max_epochs`` stops this call after that many epochs (the run stays resumable).
    """
    out = Path(out)
    if resume:
        if not (out / ckpt.CONFIG).exists():
            raise SymdistillError(f"Nothing to resume in {out}: no {ckpt.CONFIG} (start a run with --data)")
        with folder_lock(out, "train --resume", log=log):
            saved = read_json(out / ckpt.CONFIG, "run config")
            config = saved_config(saved, out / ckpt.CONFIG)
            if _finished(out):
                log(f"{out} holds a finished run: nothing to resume")
                return out
            return _train(config, saved.get("request", config.to_dict()), out, _checkpoint(out),
                          progress, max_epochs, log)
    if not config.data.path:
        raise SymdistillError("No training data: give --data FILE (from `symdistill simulate`)")
    if (out / ckpt.CONFIG).exists() and "request" not in read_json(out / ckpt.CONFIG, "run config"):
        raise SymdistillError(f"{out} already holds a run: continue it with --resume, or choose another --out")
    check_data(config)
    request = config.to_dict()
    extra = {"config": request, "seed": config.train.seed, "versions": ckpt.versions()}
    has_results = lambda folder: (folder / ckpt.CHECKPOINT).exists() or (folder / ckpt.MODEL).exists()  # noqa: E731
    with claim(out, "train", request, record=ckpt.CONFIG, extra=extra, results=has_results, log=log) as existing:
        state = None
        if existing:
            if _finished(out):
                log(f"{out} already holds this run, finished: nothing to do")
                return out
            config = saved_config(read_json(out / ckpt.CONFIG, "run config"), out / ckpt.CONFIG)
            state = _checkpoint(out)
            log(f"{out} holds this run, unfinished: continuing it")
        return _train(config, request, out, state, progress, max_epochs, log)


def check_data(config: RunConfig) -> None:
    """Before a run folder is created: the training and test files open, hold accelerations and match."""
    paths = [config.data.path] + ([config.data.test_path] if config.data.test_path else [])
    dims = []
    for path in paths:
        with open_dataset(path) as ds:
            if not ds.has_acc:
                raise SymdistillError(f"{path} has no accelerations ('acc'); training needs them: estimate them from "
                                      f"its positions with `symdistill derive --data {path} --out OUT.h5`")
            dims.append(ds.dim)
    if len(set(dims)) > 1:
        raise SymdistillError(f"--test-data {paths[1]} is {dims[1]}D but --data {paths[0]} is {dims[0]}D: give test "
                              "data of the same system and dimension")


def saved_config(saved: dict, path) -> RunConfig:
    """The RunConfig of a run folder's ``config.json``; a malformed one is a one-line error."""
    try:
        return RunConfig.from_saved(saved["config"])
    except SymdistillError as e:
        raise SymdistillError(f"{path} holds an invalid config ({e})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SymdistillError(f"{path} is not a symdistill run config ({e.__class__.__name__}: {e}): "
                              "restore it, or start a new run with another --out") from None


def _finished(out: Path) -> bool:
    """Whether the run in ``out`` finished: its final model exists and loads."""
    if not (out / ckpt.MODEL).exists():
        return False
    try:
        state = ckpt.load(out / ckpt.MODEL)
        if "model" not in state:
            raise SymdistillError("no weights")
    except SymdistillError:
        raise SymdistillError(f"{out / ckpt.MODEL} is damaged: delete it, and the same command trains the run "
                              "again from its last checkpoint") from None
    return True


def _checkpoint(out: Path) -> dict | None:
    if not (out / ckpt.CHECKPOINT).exists():
        return None
    state = ckpt.load(out / ckpt.CHECKPOINT)
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise SymdistillError(f"{out / ckpt.CHECKPOINT} is not a training checkpoint (no {missing[0]!r}): delete it "
                              "to restart the run from its first step")
    return state


#: What a training checkpoint must hold to be resumed.
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "generator", "step", "epoch", "elapsed", "history")


def _train(config: RunConfig, request: dict, out: Path, state: dict | None, progress: bool,
           max_epochs: int | None, log) -> Path:
    t = config.train
    if t.threads:
        cores = os.cpu_count() or 1
        if t.threads > 4 * cores:
            raise SymdistillError(f"--threads {t.threads} is far more than the {cores} cores here: give at most {cores}")
        torch.set_num_threads(t.threads)
    t_start = time.perf_counter()

    train_data, val_data = _load(config)
    check_model_size(config, train_data.dim)
    torch.manual_seed(t.seed)
    model = GraphNetwork(config.model, train_data.dim)
    gen = torch.Generator().manual_seed(t.seed + 1)
    n_scale = min(len(train_data), SCALE_GRAPHS)
    scale_idx = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(t.seed + 2))[:n_scale]
    model.fit_scales(train_data.batch(scale_idx))
    optimizer = make_optimizer(model, t)

    batch_size = min(t.batch_size, len(train_data))
    steps_per_epoch = t.steps_per_epoch or max(1, len(train_data) // batch_size)
    rate = None
    if not t.threads:
        rate = choose_threads(model, optimizer, train_data, batch_size, t, log)
    if state is None:
        if t.time_budget:
            rate = rate or _measure_step_rate(model, optimizer, train_data, batch_size, t)
            left = t.time_budget - (time.perf_counter() - t_start)
            total = max(10, int(0.85 * left * rate))  # margin: evaluation, checkpoints, a busy CPU
            if t.max_steps:
                if total < t.max_steps:
                    log(f"at {rate:.0f} steps/s the time budget of {t.time_budget:g} s allows {total} of "
                        f"{t.max_steps} steps: a busy or slow machine; the result may differ from a full run")
                total = min(total, t.max_steps)
        else:
            total = t.epochs * steps_per_epoch
        config = replace(config, train=replace(t, total_steps=total, steps_per_epoch=steps_per_epoch))
        t = config.train
        write_json(out / ckpt.CONFIG, {"config": config.to_dict(), "request": request, "seed": t.seed,
                                       "versions": ckpt.versions(), "n_train_graphs": len(train_data),
                                       "n_val_graphs": len(val_data)})
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=t.lr, total_steps=t.total_steps, pct_start=t.pct_start,
        div_factor=t.div_factor, final_div_factor=t.final_div_factor)
    history: list[dict] = []
    step_history: list[dict] = []
    window = [0.0, 0.0, 0]  # loss and penalty summed over the steps since the last step row, and their count
    step, epoch, elapsed0 = 0, 0, 0.0
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise SymdistillError(f"{out / ckpt.CHECKPOINT} does not match the run's config ({e.__class__.__name__}): "
                                  "delete it to restart the run from its first step") from None
        step, epoch, elapsed0, history = state["step"], state["epoch"], state["elapsed"], list(state["history"])
        step_history = list(state.get("step_history", []))  # absent from checkpoints before it was logged
        window = list(state.get("step_window", window))
        log(f"resuming {out} at epoch {epoch} (step {step} of {t.total_steps})")

    deadline = None if t.time_budget is None else t_start + t.time_budget - elapsed0
    t_train = time.perf_counter()
    log_every = step_log_every(t.total_steps)
    bar = tqdm(total=t.total_steps, initial=step, disable=None if progress else True, unit="step", desc=f"train {config.model.variant}")
    epochs_this_call = 0
    augment = config.model.edge_inputs == "paper" and t.augment_shift > 0
    sample = model.variant.name == "kl"
    while step < t.total_steps:
        if deadline is not None and time.perf_counter() > deadline:
            log(f"time budget of {t.time_budget:g} s reached at step {step} of {t.total_steps}")
            break
        model.train()
        perm = torch.randperm(len(train_data), generator=gen)
        n_steps = min(steps_per_epoch, t.total_steps - step)
        sums = torch.zeros(2, dtype=torch.float64)
        for k in range(n_steps):
            lo = (k * batch_size) % max(1, len(train_data) - batch_size + 1)
            batch = train_data.batch(perm[lo: lo + batch_size])
            if augment:  # the paper's only translation invariance: one random shift per batch
                batch.pos = batch.pos + t.augment_shift * torch.randn(batch.dim, generator=gen)
            value, loss, penalty = train_step(model, optimizer, batch, t, sample=sample, generator=gen)
            if not math.isfinite(value):
                bar.close()
                kept = "the last good checkpoint is kept" if (out / ckpt.CHECKPOINT).exists() else "no checkpoint yet"
                raise SymdistillError(f"Training diverged at epoch {epoch + 1}, step {step} (loss {value}); "
                                      f"{kept} in {out}: lower --lr (now {t.lr:g})")
            scheduler.step()
            step += 1
            loss_value, penalty_value = loss.item(), penalty.item()
            sums += torch.tensor([loss_value, penalty_value], dtype=torch.float64)
            window = [window[0] + loss_value, window[1] + penalty_value, window[2] + 1]
            if step % log_every == 0 or step == t.total_steps:
                step_history.append({"step": step, "seconds": elapsed0 + time.perf_counter() - t_train,
                                     "lr": scheduler.get_last_lr()[0], "train_loss": window[0] / window[2],
                                     "train_penalty": window[1] / window[2]})
                window = [0.0, 0.0, 0]
            bar.update(1)
            if k % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", pen=f"{penalty.item():.4f}")
            if deadline is not None and time.perf_counter() > deadline:
                n_steps = k + 1
                break
        epoch += 1
        row = {"epoch": epoch, "step": step, "seconds": elapsed0 + time.perf_counter() - t_train,
               "lr": scheduler.get_last_lr()[0], "train_loss": float(sums[0]) / n_steps,
               "train_penalty": float(sums[1]) / n_steps, **evaluate_epoch(model, val_data, t)}
        history.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", val=f"{row['val_loss']:.4f}",
                        r2=_fmt_r2(row["force_r2"]))
        ckpt.save(out / ckpt.CHECKPOINT, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "generator": gen.get_state(), "step": step, "epoch": epoch,
            "elapsed": row["seconds"], "history": history, "step_history": step_history, "step_window": window,
            "config": config.to_dict(), "versions": ckpt.versions()})
        write_text(out / ckpt.HISTORY, history_csv(history))
        write_text(out / STEP_HISTORY, step_history_csv(step_history))
        epochs_this_call += 1
        if max_epochs is not None and epochs_this_call >= max_epochs and step < t.total_steps:
            bar.close()
            return out
    bar.close()
    if step == 0:
        raise SymdistillError(f"No training step fitted in the time budget of {t.time_budget} s (loading and the "
                              f"speed probe took {time.perf_counter() - t_start:.1f} s), so no model was saved: give "
                              "a larger --time-budget, or --epochs")
    if not all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point()):
        raise SymdistillError(f"Training produced non-finite weights: no model was saved in {out}; lower --lr "
                              f"(now {t.lr:g})")
    ckpt.save(out / ckpt.MODEL, {"model": model.state_dict(), "config": config.to_dict(), "dim": model.dim,
                                 "versions": ckpt.versions(), "step": step, "epoch": epoch})
    if history:
        last = history[-1]
        log(f"done: {epoch} epochs, {step} steps in {last['seconds']:.0f} s; val MAE {last['val_mae']:.4g}, "
            f"force R^2 {_fmt_r2(last['force_r2'])}")
    return out


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
    batch = val.batch()
    out = model(batch)
    loss = float(prediction_loss(out.acc, batch.acc / model.acc_scale, t))
    rec = record_messages(model, batch, law=val.law)
    r2 = force_r2(rec) if rec.forces is not None else [float("nan")] * len(top_components(rec))
    return {"val_loss": loss, "val_penalty": float(out.penalty), "val_mae": test_mae(model, batch),
            "active_components": active_components(rec), "force_r2": [round(x, 6) for x in r2]}


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


def _fmt_r2(r2) -> str:
    return "/".join(f"{x:.3f}" for x in r2)


def _load(config: RunConfig) -> tuple[GraphData, GraphData]:
    d = config.data
    with open_dataset(d.path) as ds:
        n_sims = ds.n_sims if d.max_sims is None else min(d.max_sims, ds.n_sims)
    from symdistill.simulate.dataset import split_indices
    train_sims, val_sims = split_indices(n_sims, d.val_fraction, d.split_seed)
    if len(val_sims) == 0:
        val_sims = train_sims[-1:]  # no validation split asked for: monitor on one training simulation
    train_data = load_graphs(d.path, train_sims, step_stride=d.step_stride)
    val_data = load_graphs(d.path, val_sims, step_stride=d.step_stride)
    if len(val_data) > d.eval_graphs:  # a fixed, evenly spread subset: cheap and identical every epoch
        val_data = val_data.subset(torch.as_tensor(np.linspace(0, len(val_data) - 1, d.eval_graphs).astype(np.int64)))
    return train_data, val_data


def choose_threads(model, optimizer, data: GraphData, batch_size: int, t: TrainConfig, log=print) -> float:
    """Set torch's thread count to the faster of one thread and all of them, measured now, and return
    its step rate. Why: beside another busy process two threads fight for one free core and run slower
    than one (measured, spring-2D: 275 against 463 steps in 25 s); on a quiet machine two are faster."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    most = max(1, cores)
    if most == 1:
        return _measure_step_rate(model, optimizer, data, batch_size, t)
    rates = {}
    for n in (most, 1):
        torch.set_num_threads(n)
        rates[n] = _measure_step_rate(model, optimizer, data, batch_size, t)
    best = max(rates, key=rates.get)
    torch.set_num_threads(best)
    log(f"training on {best} thread{'s' if best > 1 else ''} (steps/s: "
        + ", ".join(f"{n} thread{'s' if n > 1 else ''} {r:.0f}" for n, r in rates.items()) + ")")
    return rates[best]


def _measure_step_rate(model, optimizer, data: GraphData, batch_size: int, t: TrainConfig, steps: int = 8) -> float:
    """Training steps per second, timed on throwaway copies (the run's RNG and weights are untouched)."""
    m, opt = copy.deepcopy(model), copy.deepcopy(optimizer)
    g = torch.Generator().manual_seed(12345)
    times = []
    for _ in range(steps + 2):
        batch = data.batch(torch.randint(len(data), (batch_size,), generator=g))
        t0 = time.perf_counter()
        train_step(m, opt, batch, t, sample=m.variant.name == "kl", generator=g)
        times.append(time.perf_counter() - t0)
    return 1.0 / float(np.median(times[2:]))
