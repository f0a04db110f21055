"""Data-parallel training of the halo GN (PyTorch DDP) over shards of each global batch's receivers.

    torchrun --nproc_per_node 2 --master_port 29511 -m symdistill.cosmology.ddp --catalogue halos.npz \\
        --out run/ --set epochs=10 --set batch_size=256

(give a free ``--master_port``: torchrun 2.13 with ``--master_port 0`` hung here; without torchrun the
module trains in one process.)

Every rank draws the same global batch (same seed, same generator) and takes receivers
``rank::world`` of it with all their edges. Each rank's loss is its share of the *global* batch's
loss (sum of |error| over its receivers / the global receiver count, plus l1 x the sum of its
messages' L1 norms / the global edge count, all-reduced), times ``world`` to undo DDP's averaging of
gradients: the gradient is then that of one process on the whole global batch, up to the order of
floating-point sums (tests/test_cosmology_train.py checks 2 ranks against 1 process). gloo on CPUs,
nccl on GPUs (rank r on cuda:LOCAL_RANK). Rank 0 writes the run folder; every rank resumes from it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from symdistill.cosmology.catalogue import HaloCatalogue
from symdistill.cosmology.graph import toy_catalogue
from symdistill.cosmology.train import HaloTrainConfig, fit, load_model, train_halo_gn
from symdistill.errors import SymdistillError
from symdistill.train import checkpoint as ckpt


def train_halo_gn_ddp(cat_or_graph, *, config: HaloTrainConfig, train_index=None, val_index=None, out=None,
                      progress: bool = True, max_epochs=None, time_budget=None, log=print):
    """:func:`~symdistill.cosmology.train.train_halo_gn` as this rank of the initialised process group."""
    if not dist.is_initialized():
        raise SymdistillError("No process group: start with `torchrun --nproc_per_node N -m symdistill.cosmology.ddp`, "
                              "or call launch_local(...)")
    device = None
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", dist.get_rank() % torch.cuda.device_count())))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")  # gloo: CPU tensors
    return fit(cat_or_graph, config=config, train_index=train_index, val_index=val_index, out=out, progress=progress,
               max_epochs=max_epochs, time_budget=time_budget, log=log, rank=dist.get_rank(),
               world=dist.get_world_size(), device=device)


def launch_local(cat: HaloCatalogue, *, config: HaloTrainConfig, out, train_index=None, val_index=None,
                 nprocs: int = 2, threads: int = 1, backend: str = "gloo", max_epochs=None):
    """Train with ``nprocs`` processes on this machine (spawned, ``threads`` torch threads each, a free
    localhost port); returns (model, history) of the run folder ``out`` that rank 0 wrote."""
    if nprocs < 1:
        raise SymdistillError(f"`nprocs` must be >= 1 (got {nprocs})")
    out = Path(out)
    args = (nprocs, _free_port(), backend, threads, cat, config.to_dict(), train_index, val_index, str(out), max_epochs)
    torch.multiprocessing.spawn(_worker, args=args, nprocs=nprocs, join=True)
    name = ckpt.MODEL if (out / ckpt.MODEL).exists() else ckpt.CHECKPOINT
    model, _, history = load_model(out / name)
    return model, history


def _worker(rank, world, port, backend, threads, cat, config, train_index, val_index, out, max_epochs):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        train_halo_gn_ddp(cat, config=HaloTrainConfig.from_dict(config), train_index=train_index, val_index=val_index,
                          out=out, progress=False, max_epochs=max_epochs, log=lambda *a: None)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_npz(path) -> HaloCatalogue:
    """A catalogue from an ``.npz`` with pos, vel, mass, delta, box_size (and optionally redshift)."""
    try:
        with np.load(path) as f:
            return HaloCatalogue(f["pos"], f["vel"], f["mass"], float(f["box_size"]), delta=f["delta"],
                                 redshift=float(f["redshift"]) if "redshift" in f else 0.0)
    except (OSError, KeyError, ValueError) as e:
        raise SymdistillError(f"Cannot read {path} as a halo catalogue ({e.__class__.__name__}: {str(e)[:80]}); give "
                              "an .npz with pos, vel, mass, delta and box_size") from None


def _load(path) -> HaloCatalogue:
    if str(path).endswith(".npz"):
        return load_npz(path)
    from symdistill.cosmology.halos import load_catalogue
    return load_catalogue(path)


def _parse(argv):
    ap = argparse.ArgumentParser(prog="python -m symdistill.cosmology.ddp", description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--catalogue", help="a halo file (.h5 from `symdistill cosmology simulate`), or an .npz with "
                                         "pos, vel, mass, delta, box_size")
    src.add_argument("--toy", type=int, metavar="N", help="a toy catalogue of N halos (symdistill.cosmology.graph)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="default", help="default or paper")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config option (JSON value)")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--max-epochs", type=int)
    ap.add_argument("--time-budget", type=float)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    try:
        overrides = {}
        for item in args.set:
            key, _, value = item.partition("=")
            try:
                overrides[key] = json.loads(value)
            except json.JSONDecodeError:
                overrides[key] = value
        config = HaloTrainConfig.preset(args.preset, **overrides)
        cat = _load(args.catalogue) if args.catalogue else toy_catalogue(args.toy, seed=args.split_seed,
                                                                            box_size=200 * (args.toy / 300) ** (1 / 3))
        if not 0 <= args.val_fraction < 1:
            raise SymdistillError(f"`--val-fraction` must be in [0, 1) (got {args.val_fraction})")
        order = np.random.default_rng(args.split_seed).permutation(len(cat))
        n_val = int(round(args.val_fraction * len(cat)))
        split = dict(train_index=np.sort(order[n_val:]), val_index=np.sort(order[:n_val]), out=args.out,
                     max_epochs=args.max_epochs, time_budget=args.time_budget)
        if "RANK" not in os.environ:  # not started by torchrun: one process
            train_halo_gn(cat, config=config, **split)
            return 0
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        try:
            train_halo_gn_ddp(cat, config=config, **split)
        finally:
            dist.destroy_process_group()
    except SymdistillError as e:
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
