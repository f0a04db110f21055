"""Checkpoints: atomic ``torch.save`` of plain state dicts plus the full resolved config.

Everything inside is tensors, numbers, strings, lists and dicts, so ``torch.load(...,
weights_only=True)`` reads it (no pickled code is executed).
"""

from __future__ import annotations

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
        torch.save(state, tmp)


def load(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise SymdistillError(f"No checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a foreign or corrupt file: say which
        raise SymdistillError(f"{path} is not a readable symdistill checkpoint ({e.__class__.__name__})") from None
