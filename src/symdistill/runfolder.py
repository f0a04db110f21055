"""Run folders are records: one writer at a time, the config stored on creation, later commands checked against it.

``with claim(folder, "train", request, log=...) as record:`` takes the folder's lock (``.lock``, an
``fcntl`` lock on a file that names its owner's pid and command: a second writer is refused with the
owner named; a lock whose owner died, e.g. by kill -9, is released by the kernel, and the next claim
says it took it over), removes temporary files left by killed writers, and compares ``request`` (the
command's config, a JSON-able dict) with the one stored when the folder was created: a different one
is refused with the differences in the message; the same one continues the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from symdistill.errors import SymdistillError
from symdistill.io import check_output_folder, read_json, remove_stale_temporaries, write_json

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locking, the rest works
    fcntl = None

LOCK = ".lock"


def _owner(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        owner = json.loads(raw) if raw.strip() else {}
    except ValueError:
        owner = None
    return owner if isinstance(owner, dict) else {"pid": "?"}


@contextlib.contextmanager
def folder_lock(folder, command: str, *, log: Callable = print) -> Iterator[None]:
    """Hold ``folder``'s lock for the duration; refused with the owner named while another holds it.
    Once held, temporary files left in the folder by killed writers are removed (no writer of ours is
    left to own them)."""
    folder = Path(folder)
    path = folder / LOCK
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise SymdistillError(f"{path} is not a lock file of symdistill (a link or a folder): remove it")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                o = _owner(fd)
                since = time.strftime("%H:%M:%S", time.localtime(o["started"])) if "started" in o else "?"
                raise SymdistillError(
                    f"{folder} is in use by `symdistill {o.get('command', '?')}` (pid {o.get('pid', '?')} on "
                    f"{o.get('host', '?')}, since {since}): wait for it to finish, or choose another --out") from None
        stale = _owner(fd)
        if stale.get("pid") not in (None, os.getpid()):
            log(f"{folder}: taking over the lock of `symdistill {stale.get('command', '?')}` "
                f"(pid {stale.get('pid')}), which stopped without releasing it")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                                 "started": time.time()}).encode())
        os.fsync(fd)
        remove_stale_temporaries(folder, recursive=True)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # released cleanly: an empty lock file is not stale
        os.close(fd)  # closing releases the flock


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``["train.lr: 0.01 -> 0.001", ...]`` between two nested dicts."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k, "(unset)"), new.get(k, "(unset)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{k}.")
        elif a != b and not (_as_list(a) == _as_list(b)):
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else x


def check_same(folder: Path, record: str, key: str, request: dict, command: str, *, results: bool = True,
               upgrade: Callable[[dict], dict] | None = None) -> bool:
    """True if ``folder/record`` exists and its ``key`` equals ``request``; absent: False; different: an
    error, unless the folder holds no ``results`` yet (a start that failed early: nothing to lose), then False.
    ``upgrade`` turns a saved request of an older version into today's form (options it predates get the
    values they had then) before the comparison."""
    path = folder / record
    if not path.exists():
        return False
    saved = read_json(path, f"{command} record")
    if key not in saved:
        raise SymdistillError(f"{path} has no {key!r}: it was not written by `symdistill {command}` of this "
                              "version (choose another --out)")
    old = json.loads(json.dumps(saved[key], default=str))
    if upgrade is not None:
        try:
            old = json.loads(json.dumps(upgrade(old), default=str))
        except SymdistillError:
            pass  # not readable as today's config: compared as saved, and reported as different
    new = json.loads(json.dumps(request, default=str))
    diff = differences(old, new)
    if diff and not results:
        return False
    if diff:
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise SymdistillError(f"{folder} holds a run with another config ({shown}): choose another --out, "
                              "or repeat the original command to continue it")
    return True


@contextlib.contextmanager
def claim(folder, command: str, request: dict, *, record: str, key: str = "request",
          extra: dict | None = None, results: Callable[[Path], bool] = lambda folder: True,
          log: Callable = print, upgrade: Callable[[dict], dict] | None = None) -> Iterator[bool]:
    """Open ``folder`` for ``command``: lock it (which cleans stale temporaries), check or store ``request``.

    Yields True if the folder already held this run (the command continues it), False if it was new
    (``{key: request, **extra}`` was then written to ``record`` before any work). ``results(folder)``
    says whether the folder holds results of its recorded run (if not, another config may replace it)."""
    folder = check_output_folder(folder)
    with folder_lock(folder, command, log=log):
        existing = check_same(folder, record, key, request, command, results=results(folder), upgrade=upgrade)
        if not existing and not (folder / record).exists():
            foreign = sorted(p.name for p in folder.iterdir() if p.name != LOCK)
            if foreign:
                raise SymdistillError(f"{folder} holds files that are not a symdistill run ({', '.join(foreign[:3])}"
                                      f"{', ...' if len(foreign) > 3 else ''}): choose an empty or new --out")
        if not existing:
            write_json(folder / record, {key: request, **(extra or {})})
        yield existing
