"""Checkpoints: atomic ``torch.save`` of plain state dicts plus the full resolved config.

Everything inside is tensors, numbers, strings, lists and dicts, so ``torch.load(...,
weights_only=True)`` reads it (no pickled code is executed).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import torch

from symdistill.errors import SymdistillError
from symdistill.io import atomic_path
from symdistill.versions import versions  # noqa: F401  (saved in run folders and checkpoints)

CHECKPOINT = "checkpoint.pt"  # the last completed epoch (model, optimiser, schedule, RNG, history)
MODEL = "model.pt"            # the final model of a finished run
CONFIG = "config.json"
HISTORY = "history.csv"


def save(path, state: dict) -> None:
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as e:  # torch's writer reports a full disk or an I/O error as RuntimeError
            full = "space" in str(e).lower() or "errno 28" in str(e).lower()
            raise OSError(errno.ENOSPC if full else errno.EIO, os.strerror(errno.ENOSPC if full else errno.EIO),
                          str(path)) from None


def load(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise SymdistillError(f"No checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a foreign or corrupt file: say which
        raise SymdistillError(f"{path} is not a readable symdistill checkpoint ({e.__class__.__name__})") from None
