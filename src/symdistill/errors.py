"""User-facing errors: one line that names the problem and the fix."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable


class SymdistillError(ValueError):
    """A user error (bad input, unknown name, malformed file). The CLI prints it as one line."""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> SymdistillError:
    """``Unknown system 'sprng'. Choose one of: a, b. Did you mean 'spring'?``"""
    choices = sorted(choices)
    listed = ", ".join(choices) if len(choices) <= 12 else ", ".join(choices[:8]) + f", ... ({len(choices)} in all)"
    msg = f"Unknown {kind} {str(name)[:60]!r}. Choose one of: {listed}."
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5)
    if close:
        msg += f" Did you mean {close[0]!r}?"
    return SymdistillError(msg)


def check_dim(dim: int) -> None:
    """One-line error unless ``dim`` is a supported spatial dimension (2 or 3)."""
    if dim not in (2, 3):
        raise SymdistillError(f"`dim` must be 2 or 3 (got {dim})")


def check_positive(name: str, value: float | None, *, allow_zero: bool = False, optional: bool = False) -> None:
    """One-line error unless ``value`` is a finite number > 0 (>= 0 with ``allow_zero``); ``optional``
    also accepts None."""
    if optional and value is None:
        return
    op = ">=" if allow_zero else ">"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SymdistillError(f"`{name}` must be a number {op} 0 (got {value!r})")
    if not math.isfinite(value):
        raise SymdistillError(f"`{name}` must be a finite number {op} 0 (got {value})")
    if not (value >= 0 if allow_zero else value > 0):
        raise SymdistillError(f"`{name}` must be {op} 0 (got {value})")


#: Seeds are non-negative and below 2**32 (what numpy and torch both accept; a seed + k stays valid).
MAX_SEED = 2**32 - 1024


def check_seed(name: str, value) -> None:
    """One-line error unless ``value`` is an integer seed in [0, MAX_SEED)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_SEED:
        raise SymdistillError(f"`{name}` must be an integer from 0 to {MAX_SEED - 1} (got {value!r})")
