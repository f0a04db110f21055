"""Sizes estimated before allocating or writing: a request too large is refused with the estimate and the limit.

Files: a dataset's bytes are known before it is simulated (its arrays' shapes); they must fit under
``max_size`` (default :data:`DEFAULT_MAX_SIZE`, ``--max-size`` on the command line) and in the free
space of the disk. Memory: the integrator's pairwise temporaries and the graphs loaded for training
must fit in the memory available now. ``max_size=None`` (``--max-size none``) skips the file checks.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from symdistill.errors import SymdistillError

#: Default cap on the bytes one command writes (``--max-size``).
DEFAULT_MAX_SIZE = 8 * 2**30
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def human(n: float) -> str:
    """``human(3.2e9) == '3.0 GiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover


def parse_size(text: str | int | None) -> int | None:
    """``"8G"`` -> bytes; ``"none"`` -> None (no limit). For ``--max-size``."""
    if text is None or isinstance(text, int):
        return text
    t = str(text).strip().lower()
    if t in ("none", "off", "unlimited"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?", t)
    if not m:
        raise SymdistillError(f"Invalid size {text!r}: write a number of bytes with a unit, e.g. 500M or 20G, or none")
    return int(float(m[1]) * _UNITS[m[2]])


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (Linux: MemAvailable; else total/2)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 8 * 2**30


def free_disk(path) -> int:
    """Free bytes on the disk that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def check_file_size(what: str, need: float, path, max_size: int | None, *, fix: str) -> None:
    """Refuse writing ``need`` bytes to ``path`` above ``max_size`` or the disk's free space."""
    if max_size is None:
        return
    if need > max_size:
        raise SymdistillError(f"{what} would write ~{human(need)}, over the limit of {human(max_size)} "
                              f"({fix}, or raise the limit with --max-size)")
    free = free_disk(path)
    if need > free:
        raise SymdistillError(f"{what} would write ~{human(need)}, but only {human(free)} is free on the disk of "
                              f"{path} (free some space, choose another --out, or {fix})")


def check_memory(what: str, need: float, *, fix: str) -> None:
    """Refuse allocating ``need`` bytes when less memory than that is available."""
    have = available_memory()
    if need > have:
        raise SymdistillError(f"{what} needs ~{human(need)} of memory, and {human(have)} is available ({fix})")
