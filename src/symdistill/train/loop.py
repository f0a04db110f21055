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

import time
from pathlib import Path

import numpy as np
import torch

from symdistill.errors import SymdistillError
from symdistill.io import read_json
from symdistill.runfolder import claim, folder_lock
from symdistill.simulate.dataset import open_dataset
from symdistill.train import checkpoint as ckpt
from symdistill.train.config import RunConfig
from symdistill.train.data import GraphData, load_graphs, split_sims
# The steps, importable from here as before the loop was split (symdistill.train.steps).
from symdistill.train.steps import (  # noqa: F401
    HISTORY_FIELDS, SCALE_GRAPHS, STEP_HISTORY, STEP_HISTORY_FIELDS, check_model_size, choose_threads,
    evaluate_epoch, history_csv, loss_fn, make_optimizer, prediction_loss, resolve_device, step_history_csv,
    step_log_every, train_step,
)


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
    resolve_device(config.train.device)  # a GPU asked for and absent: said before the folder is created
    request = config.to_dict()
    extra = {"config": request, "seed": config.train.seed, "versions": ckpt.versions()}
    has_results = lambda folder: (folder / ckpt.CHECKPOINT).exists() or (folder / ckpt.MODEL).exists()  # noqa: E731
    # a folder of an older version: its request is read as today's config before the comparison
    upgrade = lambda saved: RunConfig.from_saved(saved).to_dict()  # noqa: E731
    with claim(out, "train", request, record=ckpt.CONFIG, extra=extra, results=has_results, log=log,
               upgrade=upgrade) as existing:
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
    """Before a run folder is created: the training and test files open, hold accelerations and match;
    a Hamiltonian model gets a conservative law, a smooth activation and float32."""
    if config.model.variant == "hamiltonian":
        from symdistill.models.hamiltonian import check_hamiltonian_config
        check_hamiltonian_config(config.model)
        if config.train.precision == "bf16":
            raise SymdistillError("The hamiltonian model differentiates its energy twice, which bfloat16 is too coarse "
                                  "for: use --set train.precision=fp32")
    paths = [config.data.path] + ([config.data.test_path] if config.data.test_path else [])
    dims = []
    for path in paths:
        with open_dataset(path) as ds:
            if not ds.has_acc:
                raise SymdistillError(f"{path} has no accelerations ('acc'); training needs them: estimate them from "
                                      f"its positions with `symdistill derive --data {path} --out OUT.h5`")
            dims.append(ds.dim)
            law = ds.law()
            if config.model.variant == "hamiltonian" and law is not None and law.damping > 0:
                raise SymdistillError(not_hamiltonian(law.name, path))
    if len(set(dims)) > 1:
        raise SymdistillError(f"--test-data {paths[1]} is {dims[1]}D but --data {paths[0]} is {dims[0]}D: give test "
                              "data of the same system and dimension")


def not_hamiltonian(name: str, where) -> str:
    return (f"{where}: the {name} law is damped, so it has no Hamiltonian (the force -c v has no potential): "
            "learn it with a message model (--model l1)")


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


def _train(config: RunConfig, request: dict, out: Path, state: dict | None, progress: bool,
           max_epochs: int | None, log) -> Path:
    from symdistill.train.trainer import Trainer
    t_start = time.perf_counter()
    return Trainer(config, request, out, _load(config), progress, log).run(state, max_epochs, t_start)


def _load(config: RunConfig) -> tuple[GraphData, GraphData]:
    d = config.data
    train_sims, val_sims = split_sims(d)
    if len(val_sims) == 0:
        val_sims = train_sims[-1:]  # no validation split asked for: monitor on one training simulation
    train_data = load_graphs(d.path, train_sims, step_stride=d.step_stride)
    val_data = load_graphs(d.path, val_sims, step_stride=d.step_stride)
    if len(val_data) > d.eval_graphs:  # a fixed, evenly spread subset: cheap and identical every epoch
        val_data = val_data.subset(torch.as_tensor(np.linspace(0, len(val_data) - 1, d.eval_graphs).astype(np.int64)))
    return train_data, val_data



#: What a training checkpoint must hold to be resumed.
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "generator", "step", "epoch", "elapsed", "history")


