"""The training loop as named steps: set up, plan the steps, restore a checkpoint, run epochs, save.

:func:`symdistill.train.train` opens the run folder and hands over to :meth:`Trainer.run`. The order
of every random draw is fixed (model init from ``torch.manual_seed(seed)``, then one generator for
batch order, augmentation and kl sampling), so a resumed run takes exactly the steps of an
uninterrupted one (on CPU, with the same thread count).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from symdistill.errors import SymdistillError
from symdistill.io import write_json, write_text
from symdistill.models import build_model
from symdistill.train import checkpoint as ckpt
from symdistill.train import steps as st
from symdistill.train.config import RunConfig
from symdistill.train.data import GraphData


class Trainer:
    """One call of training on ``data`` = (training graphs, validation graphs), writing into ``out``."""

    def __init__(self, config: RunConfig, request: dict, out: Path, data: tuple[GraphData, GraphData],
                 progress: bool, log):
        self.config, self.request, self.out, self.log, self.progress = config, request, Path(out), log, progress
        self.train_data, self.val_data = data
        self.history: list[dict] = []
        self.step_history: list[dict] = []
        self.window = [0.0, 0.0, 0]  # loss and penalty summed over the steps since the last step row, and their count
        self.step, self.epoch, self.elapsed0 = 0, 0, 0.0

    # ---- steps -----------------------------------------------------------------------------------
    def setup(self) -> None:
        """Threads, device, the model (initialised from the seed, scales measured), the optimiser."""
        t = self.config.train
        if t.threads:
            cores = os.cpu_count() or 1
            if t.threads > 4 * cores:
                raise SymdistillError(f"--threads {t.threads} is far more than the {cores} cores here: give at most {cores}")
            torch.set_num_threads(t.threads)
        st.check_model_size(self.config, self.train_data.dim)
        self.device = st.resolve_device(t.device)
        torch.manual_seed(t.seed)
        self.model = build_model(self.config.model, self.train_data.dim)
        self.gen = torch.Generator().manual_seed(t.seed + 1)
        n_scale = min(len(self.train_data), st.SCALE_GRAPHS)
        scale_idx = torch.randperm(len(self.train_data), generator=torch.Generator().manual_seed(t.seed + 2))[:n_scale]
        self.model.fit_scales(self.train_data.batch(scale_idx))
        self.model.to(self.device)
        self.optimizer = st.make_optimizer(self.model, t)
        self.batch_size = min(t.batch_size, len(self.train_data))
        self.steps_per_epoch = t.steps_per_epoch or max(1, len(self.train_data) // self.batch_size)

    def plan(self, t_start: float, fresh: bool) -> None:
        """The thread count (measured unless given) and, for a new run, the total steps (from the epochs,
        or from the measured step rate and the time budget); a new run's resolved config is saved."""
        t = self.config.train
        rate = None if t.threads else st.choose_threads(self.model, self.optimizer, self.train_data,
                                                        self.batch_size, t, self.log)
        if fresh:
            if t.time_budget:
                rate = rate or st.measure_step_rate(self.model, self.optimizer, self.train_data, self.batch_size, t)
                left = t.time_budget - (time.perf_counter() - t_start)
                total = max(10, int(0.85 * left * rate))  # margin: evaluation, checkpoints, a busy CPU
                if t.max_steps:
                    if total < t.max_steps:
                        self.log(f"at {rate:.0f} steps/s the time budget of {t.time_budget:g} s allows {total} of "
                                 f"{t.max_steps} steps: a busy or slow machine; the result may differ from a full run")
                    total = min(total, t.max_steps)
            else:
                total = t.epochs * self.steps_per_epoch
            self.config = replace(self.config, train=replace(t, total_steps=total, steps_per_epoch=self.steps_per_epoch))
            write_json(self.out / ckpt.CONFIG, {
                "config": self.config.to_dict(), "request": self.request, "seed": t.seed, "versions": ckpt.versions(),
                "n_train_graphs": len(self.train_data), "n_val_graphs": len(self.val_data)})
        t = self.config.train
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=t.lr, total_steps=t.total_steps, pct_start=t.pct_start,
            div_factor=t.div_factor, final_div_factor=t.final_div_factor)

    def restore(self, state: dict) -> None:
        """Weights, optimiser, schedule, generator and histories from a checkpoint."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.gen.set_state(state["generator"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise SymdistillError(f"{self.out / ckpt.CHECKPOINT} does not match the run's config ({e.__class__.__name__}): "
                                  "delete it to restart the run from its first step") from None
        self.step, self.epoch, self.elapsed0 = state["step"], state["epoch"], state["elapsed"]
        self.history = list(state["history"])
        self.step_history = list(state.get("step_history", []))  # absent from checkpoints before it was logged
        self.window = list(state.get("step_window", self.window))
        self.log(f"resuming {self.out} at epoch {self.epoch} (step {self.step} of {self.config.train.total_steps})")

    def run_epoch(self, bar, deadline: float | None, t_train: float) -> None:
        """One pass of ``steps_per_epoch`` steps (fewer at the end or at the deadline), then evaluation."""
        t, model, data = self.config.train, self.model, self.train_data
        model.train()
        perm = torch.randperm(len(data), generator=self.gen)
        n_steps = min(self.steps_per_epoch, t.total_steps - self.step)
        sums = torch.zeros(2, dtype=torch.float64)
        sample = model.variant.name == "kl"
        log_every = st.step_log_every(t.total_steps)
        for k in range(n_steps):
            lo = (k * self.batch_size) % max(1, len(data) - self.batch_size + 1)
            batch = model.problem.augment(data.batch(perm[lo: lo + self.batch_size]).to(self.device), self.gen,
                                          t.augment_shift)
            value, loss, penalty = st.train_step(model, self.optimizer, batch, t, sample=sample, generator=self.gen)
            if not math.isfinite(value):
                bar.close()
                kept = "the last good checkpoint is kept" if (self.out / ckpt.CHECKPOINT).exists() else "no checkpoint yet"
                raise SymdistillError(f"Training diverged at epoch {self.epoch + 1}, step {self.step} (loss {value}); "
                                      f"{kept} in {self.out}: lower --lr (now {t.lr:g})")
            self.scheduler.step()
            self.step += 1
            loss_value, penalty_value = loss.item(), penalty.item()
            sums += torch.tensor([loss_value, penalty_value], dtype=torch.float64)
            w = self.window
            self.window = w = [w[0] + loss_value, w[1] + penalty_value, w[2] + 1]
            if self.step % log_every == 0 or self.step == t.total_steps:
                self.step_history.append({"step": self.step, "seconds": self.elapsed0 + time.perf_counter() - t_train,
                                          "lr": self.scheduler.get_last_lr()[0], "train_loss": w[0] / w[2],
                                          "train_penalty": w[1] / w[2]})
                self.window = [0.0, 0.0, 0]
            bar.update(1)
            if k % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", pen=f"{penalty.item():.4f}")
            if deadline is not None and time.perf_counter() > deadline:
                n_steps = k + 1
                break
        self.epoch += 1
        row = {"epoch": self.epoch, "step": self.step, "seconds": self.elapsed0 + time.perf_counter() - t_train,
               "lr": self.scheduler.get_last_lr()[0], "train_loss": float(sums[0]) / n_steps,
               "train_penalty": float(sums[1]) / n_steps, **st.evaluate_epoch(model, self.val_data, t)}
        self.history.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", val=f"{row['val_loss']:.4f}", r2=st.fmt_r2(row["force_r2"]))

    def save_checkpoint(self) -> None:
        """The state after an epoch (atomic), and the two history files."""
        ckpt.save(self.out / ckpt.CHECKPOINT, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "generator": self.gen.get_state(), "step": self.step,
            "epoch": self.epoch, "elapsed": self.history[-1]["seconds"], "history": self.history,
            "step_history": self.step_history, "step_window": self.window, "config": self.config.to_dict(),
            "versions": ckpt.versions()})
        write_text(self.out / ckpt.HISTORY, st.history_csv(self.history))
        write_text(self.out / st.STEP_HISTORY, st.step_history_csv(self.step_history))

    def save_model(self, t_start: float) -> None:
        """The final model, once it has taken at least one step and its weights are finite."""
        t = self.config.train
        if self.step == 0:
            raise SymdistillError(f"No training step fitted in the time budget of {t.time_budget} s (loading and the "
                                  f"speed probe took {time.perf_counter() - t_start:.1f} s), so no model was saved: give "
                                  "a larger --time-budget, or --epochs")
        if not all(torch.isfinite(p).all() for p in self.model.state_dict().values() if p.is_floating_point()):
            raise SymdistillError(f"Training produced non-finite weights: no model was saved in {self.out}; lower --lr "
                                  f"(now {t.lr:g})")
        ckpt.save(self.out / ckpt.MODEL, {
            "model": self.model.state_dict(), "config": self.config.to_dict(), "dim": self.model.dim,
            "problem": self.model.problem.to_dict(), "versions": ckpt.versions(), "step": self.step,
            "epoch": self.epoch})
        if self.history:
            last = self.history[-1]
            self.log(f"done: {self.epoch} epochs, {self.step} steps in {last['seconds']:.0f} s; val MAE "
                     f"{last['val_mae']:.4g}, force R^2 {st.fmt_r2(last['force_r2'])}")

    # ---- the whole call --------------------------------------------------------------------------
    def run(self, state: dict | None, max_epochs: int | None, t_start: float | None = None) -> Path:
        """Train to the end (or for ``max_epochs`` epochs, or to the time budget) and save. ``t_start``:
        when the call began (loading the data counts against a time budget)."""
        t_start = time.perf_counter() if t_start is None else t_start
        self.setup()
        self.plan(t_start, fresh=state is None)
        if state is not None:
            self.restore(state)
        t = self.config.train
        deadline = None if t.time_budget is None else t_start + t.time_budget - self.elapsed0
        t_train = time.perf_counter()
        bar = tqdm(total=t.total_steps, initial=self.step, disable=None if self.progress else True, unit="step",
                   desc=f"train {self.config.model.variant}")
        epochs_this_call = 0
        while self.step < t.total_steps:
            if deadline is not None and time.perf_counter() > deadline:
                self.log(f"time budget of {t.time_budget:g} s reached at step {self.step} of {t.total_steps}")
                break
            self.run_epoch(bar, deadline, t_train)
            self.save_checkpoint()
            epochs_this_call += 1
            if max_epochs is not None and epochs_this_call >= max_epochs and self.step < t.total_steps:
                bar.close()
                return self.out
        bar.close()
        self.save_model(t_start)
        return self.out
