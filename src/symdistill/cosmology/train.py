"""Training the halo GN: Adam + OneCycle over mini-batches of receivers, each with all its edges.

A batch is a set of receivers with their full neighbourhoods (an exact sub-problem: one message step,
no global block), read from a :class:`~symdistill.cosmology.graph.HaloGraph` (materialised) or built on
the fly by a :class:`~symdistill.cosmology.graph.StreamingGraph` (a catalogue given). Both give the same
batches, so the same run trains the same model either way.

Determinism: weights from ``torch.manual_seed(seed)``; the batch order from one ``torch.Generator``
whose state is checkpointed (with the model, Adam, the schedule, and the epoch's order and position),
so a killed or time-limited run resumes to exactly the weights of an uninterrupted one (on CPU, with
the same thread count). Data-parallel runs (:mod:`symdistill.cosmology.ddp`) go through the same loop
with ``rank``/``world``: each rank takes receivers ``rank::world`` of every global batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from symdistill.cosmology.catalogue import HaloCatalogue
from symdistill.cosmology.graph import CHUNK_EDGES, HaloGraph, StreamingGraph, _Source
from symdistill.cosmology.model import DEFAULT_PRESET, PRESETS, VELOCITY, HaloGN
from symdistill.errors import SymdistillError, check_positive, check_seed, unknown_name
from symdistill.io import write_json
from symdistill.train import checkpoint as ckpt

SCHEDULES = ("onecycle", "constant")
#: Options that may change when a run resumes (where it runs, not what it computes).
RUN_SETTINGS = ("device", "threads", "chunk_edges")
DEGREE_SAMPLE = 512  # training receivers whose edges are counted to set the model's degree unit


@dataclass(frozen=True)
class HaloTrainConfig:
    """Model, graph and optimisation of one halo GN run. ``batch_size``: receivers per step (global)."""

    hidden: int = DEFAULT_PRESET["hidden"]
    layers: int = DEFAULT_PRESET["layers"]
    msg_dim: int = DEFAULT_PRESET["msg_dim"]
    node_hidden: int | None = DEFAULT_PRESET["node_hidden"]   # None: hidden
    l1: float = DEFAULT_PRESET["l1"]
    activation: str = DEFAULT_PRESET["activation"]
    use_velocity: bool | str = False
    radius: float = 50.0             # Mpc/h
    batch_size: int = 64
    epochs: int = 20
    lr: float = 1e-3                 # OneCycle maximum
    schedule: str = "onecycle"
    weight_decay: float = 1e-8
    seed: int = 0
    threads: int | None = None       # torch threads (None: leave as is); fix it for reproducible runs
    device: str = "auto"             # auto: cuda when PyTorch sees a GPU, else cpu
    eval_receivers: int = 4096       # validation receivers scored after each epoch (a fixed subset)
    chunk_edges: int = CHUNK_EDGES   # edges per evaluation chunk

    def __post_init__(self):
        for name in ("hidden", "layers", "msg_dim", "batch_size", "epochs", "eval_receivers", "chunk_edges"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SymdistillError(f"`{name}` must be an integer >= 1 (got {v!r})")
        check_positive("node_hidden", self.node_hidden, optional=True)
        check_positive("threads", self.threads, optional=True)
        for name in ("radius", "lr"):
            check_positive(name, getattr(self, name))
        check_positive("l1", self.l1, allow_zero=True)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_seed("seed", self.seed)
        if self.schedule not in SCHEDULES:
            raise unknown_name("schedule", self.schedule, SCHEDULES)
        if self.use_velocity not in VELOCITY:
            raise SymdistillError(f"`use_velocity` must be false, true, 'speed' or 'vector' (got {self.use_velocity!r})")
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise SymdistillError(f"Unknown device {self.device!r}: use cpu, cuda, cuda:N or auto")

    @classmethod
    def preset(cls, name: str = "default", **overrides) -> "HaloTrainConfig":
        """``preset("paper", epochs=5)``: the paper's network (2 x 500, msg 100, L1 1e-2) or our default."""
        if name not in PRESETS:
            raise unknown_name("halo GN preset", name, PRESETS)
        return cls.from_dict({**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HaloTrainConfig":
        known = {f.name for f in fields(cls)}
        for key in d:
            if key not in known:
                raise unknown_name("halo training option", key, known)
        return cls(**d)

    def model_kwargs(self) -> dict:
        return {"hidden": self.hidden, "layers": self.layers, "msg_dim": self.msg_dim, "node_hidden": self.node_hidden,
                "l1": self.l1, "activation": self.activation, "use_velocity": self.use_velocity,
                "distance_unit": self.radius}


def train_halo_gn(cat_or_graph, *, config: HaloTrainConfig | None = None, train_index=None, val_index=None,
                  out=None, seed: int | None = None, progress: bool = True, max_epochs: int | None = None,
                  time_budget: float | None = None, log=print) -> tuple[HaloGN, list[dict]]:
    """Train a :class:`HaloGN` on the receivers ``train_index`` (default: every halo); returns (model, history).

    ``cat_or_graph``: a :class:`HaloCatalogue` (streaming: edges built per batch) or a :class:`HaloGraph`
    (materialised; its radius must be the config's). Senders are every halo of the catalogue, whichever
    split the receiver is in. ``val_index``: receivers scored after each epoch (None: none). ``seed``
    overrides ``config.seed``. ``out``: a folder for ``config.json`` and ``checkpoint.pt`` (every epoch,
    atomic) and ``model.pt`` at the end; a run already there with the same config and data resumes.
    ``max_epochs``: stop after that many epochs in this call; ``time_budget`` (s): stop when it is spent,
    mid-epoch (both leave a resumable checkpoint). History rows: epoch, step, seconds, lr, train_loss,
    train_mae, train_penalty, val_mae.
    """
    return fit(cat_or_graph, config=config, train_index=train_index, val_index=val_index, out=out, seed=seed,
               progress=progress, max_epochs=max_epochs, time_budget=time_budget, log=log)


def fit(cat_or_graph, *, config=None, train_index=None, val_index=None, out=None, seed=None, progress=True,
        max_epochs=None, time_budget=None, log=print, rank: int = 0, world: int = 1, device=None):
    """:func:`train_halo_gn` as rank ``rank`` of ``world`` (inside a process group when world > 1)."""
    config = config or HaloTrainConfig()
    if seed is not None:
        config = replace(config, seed=seed)
    check_positive("max_epochs", max_epochs, optional=True)
    check_positive("time_budget", time_budget, optional=True)
    run = _Run(_source(cat_or_graph, config.radius), config, train_index, val_index, out, log, rank, world, device)
    return run.train(progress, max_epochs, time_budget)


def load_model(path) -> tuple[HaloGN, HaloTrainConfig, list[dict]]:
    """(model on the CPU, its config, its history) from a ``model.pt`` or ``checkpoint.pt``."""
    state = ckpt.load(path)
    try:
        config = HaloTrainConfig.from_dict(state["config"])
        model = HaloGN(**config.model_kwargs())
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError, TypeError) as e:
        raise SymdistillError(f"{path} is not a halo GN checkpoint ({e.__class__.__name__}): give the model.pt "
                              "of a `cosmology train` run") from None
    return model, config, list(state.get("history", []))


def _source(obj, radius: float) -> _Source:
    if isinstance(obj, HaloCatalogue):
        return StreamingGraph(obj, radius)
    if isinstance(obj, (HaloGraph, StreamingGraph)):
        if obj.radius != radius:
            raise SymdistillError(f"The graph was built with radius {obj.radius:g} but the config has radius "
                                  f"{radius:g}: rebuild the graph with radius={radius:g}, or set the config's radius")
        return obj
    raise SymdistillError(f"Expected a HaloCatalogue or a HaloGraph (got {type(obj).__name__})")


def _indices(index, n: int, name: str, default_all: bool) -> np.ndarray:
    if index is None:
        return np.arange(n, dtype=np.int64) if default_all else np.zeros(0, np.int64)
    idx = np.asarray(index).reshape(-1)
    if idx.dtype == bool:
        if len(idx) != n:
            raise SymdistillError(f"`{name}` as a mask needs {n} entries, one per halo (got {len(idx)})")
        idx = np.flatnonzero(idx)
    if idx.dtype.kind not in "iu" or (len(idx) and (idx.min() < 0 or idx.max() >= n)):
        raise SymdistillError(f"`{name}` must hold halo indices in [0, {n}) or be a boolean mask")
    return idx.astype(np.int64)


class _Run:
    """One call of training: set up, restore, epochs of steps, checkpoints."""

    def __init__(self, source, config, train_index, val_index, out, log, rank, world, device):
        self.source, self.config, self.log, self.rank, self.world = source, config, log, rank, world
        n = len(source.catalogue)
        self.train_idx = _indices(train_index, n, "train_index", True)
        self.val_idx = _indices(val_index, n, "val_index", False)
        if len(self.train_idx) == 0:
            raise SymdistillError("`train_index` is empty: give at least one training halo")
        if len(self.val_idx) > config.eval_receivers:  # a fixed spread subset, the same every epoch
            pick = np.random.default_rng(config.seed + 2).choice(len(self.val_idx), config.eval_receivers, replace=False)
            self.val_idx = self.val_idx[np.sort(pick)]
        self.out = None if out is None else Path(out)
        self.device = torch.device(device) if device is not None else _device(config.device)
        self.steps_per_epoch = math.ceil(len(self.train_idx) / config.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.fingerprint = {"n_halos": n, "n_train": len(self.train_idx), "n_val": len(self.val_idx),
                            "train_sum": int(self.train_idx.sum()), "val_sum": int(self.val_idx.sum())}

    # ---- set up and restore -----------------------------------------------------------------------
    def setup(self) -> None:
        c = self.config
        if c.threads:
            torch.set_num_threads(c.threads)
        torch.manual_seed(c.seed)
        self.model = HaloGN(**c.model_kwargs())
        sample = self.train_idx[np.random.default_rng(c.seed + 3).permutation(len(self.train_idx))[:DEGREE_SAMPLE]]
        self.model.init_scales(self.source.catalogue.delta[self.train_idx],
                              self.source.batch(np.sort(sample)).n_edges / len(sample))
        if len(self.val_idx) and not np.isfinite(self.source.catalogue.delta[self.val_idx]).all():
            raise SymdistillError("Validation needs a finite `delta` for every validation halo (found NaN)")
        self.model.to(self.device)
        self.net = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        if c.schedule == "onecycle":
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=c.lr,
                                                                 total_steps=self.total_steps, final_div_factor=1e5)
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0)
        self.gen = torch.Generator().manual_seed(c.seed + 1)
        self.step, self.epoch, self.elapsed, self.history = 0, 0, 0.0, []
        self.perm, self.pos, self.sums = None, 0, [0.0, 0.0, 0.0]

    def restore(self) -> bool:
        """Continue from ``out``'s checkpoint if there is one; True if the run there is finished."""
        if self.out is None or not (self.out / ckpt.CHECKPOINT).exists():
            return False
        state = ckpt.load(self.out / ckpt.CHECKPOINT)
        same_run = {k: v for k, v in self.config.to_dict().items() if k not in RUN_SETTINGS}
        for key, want in (("config", same_run), ("data", self.fingerprint)):
            saved = state.get(key, {})
            diff = next((k for k in want if saved.get(k) != want[k]), None)
            if diff is not None:
                raise SymdistillError(f"{self.out} holds another run ({key} `{diff}`: {saved.get(diff)!r} there, "
                                      f"{want[diff]!r} now): choose another `out`, or delete its {ckpt.CHECKPOINT}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.gen.set_state(state["generator"])
        self.step, self.epoch, self.elapsed = state["step"], state["epoch"], state["elapsed"]
        self.history, self.perm, self.pos = list(state["history"]), state["perm"], state["pos"]
        self.sums = list(state["sums"])
        if self.step < self.total_steps:
            self._log(f"resuming {self.out} at epoch {self.epoch}, step {self.step} of {self.total_steps}")
        return self.step >= self.total_steps

    # ---- the loop --------------------------------------------------------------------------------
    def train(self, progress: bool, max_epochs, time_budget) -> tuple[HaloGN, list[dict]]:
        self.setup()
        if self.restore():
            if not (self.out / ckpt.MODEL).exists():  # killed between the last checkpoint and the model
                self.save(ckpt.MODEL, time.perf_counter())
            self._log(f"{self.out} holds this run, finished: nothing to do")
            return self.model, self.history
        if self.out is not None and self.rank == 0:
            write_json(self.out / ckpt.CONFIG, {"config": self.config.to_dict(), "data": self.fingerprint,
                                                "world": self.world, "versions": ckpt.versions()})
        t0, deadline = time.perf_counter(), None if time_budget is None else time.perf_counter() + time_budget
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", desc="train halo GN",
                   disable=True if (not progress or self.rank) else None)
        epochs = 0
        while self.step < self.total_steps:
            done = self.run_epoch(bar, t0, deadline)
            if done:
                epochs += 1
            self.save(ckpt.CHECKPOINT, t0)
            if not done:
                self._log(f"time budget of {time_budget:g} s spent at step {self.step} of {self.total_steps}: "
                          "the checkpoint resumes it")
                break
            if max_epochs is not None and epochs >= max_epochs:
                break
        bar.close()
        if self.step >= self.total_steps:
            self.save(ckpt.MODEL, t0)
        if self.world > 1:
            torch.distributed.barrier()
        return self.model, self.history

    def run_epoch(self, bar, t0: float, deadline) -> bool:
        """Steps to the end of the epoch (True), or to the deadline (False)."""
        if self.perm is None:
            self.perm, self.pos, self.sums = torch.randperm(len(self.train_idx), generator=self.gen), 0, [0.0] * 3
        self.model.train()
        bs = self.config.batch_size
        while self.pos < self.steps_per_epoch:
            idx = self.train_idx[self.perm[self.pos * bs: (self.pos + 1) * bs].numpy()]
            loss, mae, pen = self.train_step(idx)
            self.sums = [s + v for s, v in zip(self.sums, (loss, mae, pen))]
            self.pos, self.step = self.pos + 1, self.step + 1
            bar.update(1)
            if self.pos % 10 == 0:
                bar.set_postfix(mae=f"{mae:.4f}", pen=f"{pen:.3g}")
            if deadline is not None and self.pos < self.steps_per_epoch and self._past(deadline):
                return False
        self.epoch += 1
        n = self.steps_per_epoch
        row = {"epoch": self.epoch, "step": self.step, "seconds": self.elapsed + time.perf_counter() - t0,
               "lr": self.scheduler.get_last_lr()[0], "train_loss": self.sums[0] / n, "train_mae": self.sums[1] / n,
               "train_penalty": self.sums[2] / n, "val_mae": self.evaluate()}
        self.history.append(row)
        self.perm = None
        bar.set_postfix(mae=f"{row['train_mae']:.4f}", val=f"{row['val_mae']:.4f}")
        self._log(f"epoch {self.epoch}/{self.config.epochs}: train MAE {row['train_mae']:.4f}, penalty "
                  f"{row['train_penalty']:.3g}, val MAE {row['val_mae']:.4f}")
        return True

    def train_step(self, idx: np.ndarray) -> tuple[float, float, float]:
        """One Adam step on the global batch ``idx``; this rank computes its shard ``idx[rank::world]``."""
        batch = self.source.batch(idx[self.rank::self.world]).to(self.device)
        n_edges = self._all_sum(torch.tensor([float(batch.n_edges)]))[0].item()
        delta_hat, messages = self.net(batch)
        mae, pen = self.model.loss_terms(delta_hat, messages, batch.delta, len(idx), int(n_edges))
        loss = mae + self.model.l1 * pen
        self.optimizer.zero_grad(set_to_none=True)
        (loss * self.world).backward()  # DDP averages gradients over ranks: the global batch's gradient
        self.optimizer.step()
        self.scheduler.step()
        values = self._all_sum(torch.stack([loss, mae, pen]).detach().double().cpu())
        if not torch.isfinite(values).all():
            raise SymdistillError(f"Training diverged at step {self.step} (loss {values[0].item()}): lower `lr` "
                                  f"(now {self.config.lr:g})")
        return tuple(float(v) for v in values)

    @torch.no_grad()
    def evaluate(self) -> float:
        """MAE over the validation receivers (NaN without them); each rank scores its share."""
        if len(self.val_idx) == 0:
            return float("nan")
        self.model.eval()
        total = torch.zeros(1, dtype=torch.float64)
        for b in self.source.chunks(self.val_idx[self.rank::self.world], chunk_edges=self.config.chunk_edges):
            total += (self.model.predict(b).cpu().double() - b.delta.double()).abs().sum()
        self.model.train()
        return float(self._all_sum(total)[0]) / len(self.val_idx)

    def save(self, name: str, t0: float) -> None:
        if self.out is None or self.rank != 0:
            return
        ckpt.save(self.out / name, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "generator": self.gen.get_state(), "step": self.step,
            "epoch": self.epoch, "elapsed": self.elapsed + time.perf_counter() - t0, "history": self.history,
            "perm": self.perm, "pos": self.pos, "sums": self.sums, "config": self.config.to_dict(),
            "data": self.fingerprint, "versions": ckpt.versions()})

    def _all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return t
        t = t.to(self.device)  # nccl reduces GPU tensors only
        torch.distributed.all_reduce(t)
        return t.cpu()

    def _past(self, deadline: float) -> bool:
        """Whether any rank is past the deadline (all ranks stop at the same step, or the others would hang)."""
        late = torch.tensor([float(time.perf_counter() > deadline)], dtype=torch.float64)
        return bool(self._all_sum(late)[0] > 0)

    def _log(self, msg: str) -> None:
        if self.rank == 0:
            self.log(msg)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SymdistillError(f"device {name!r}: PyTorch sees no CUDA GPU here; use device 'cpu' (or 'auto')")
    return torch.device(name)
