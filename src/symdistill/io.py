"""Files: atomic writes, stale temporary files, output paths checked before any work, JSON records read back.

A killed process never leaves a half-written file under the final name: every file is written to a
hidden temporary name beside it, ``.<name>.<pid>.<random>.tmp``, and renamed when complete. The pid
in the name tells a later run which temporary files are stale (their writer is gone): they are
removed the next time the same file is written (:func:`atomic_path`) or its run folder is opened
(:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from symdistill.errors import SymdistillError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Mode of the files written here: what ``open()`` would give (mkstemp alone makes them 0600).
FILE_MODE = 0o666 & ~_umask()
#: ``.<name>.<pid>.<random>[.<tag>].tmp``: a temporary file of this package, and its writer's pid.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+(?:\.[a-z]+)?\.tmp$")
#: HDF5's signature (the first 8 bytes of a file written by h5py at offset 0).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def temporary_path(path: Path, tag: str = "") -> Path:
    """A new, empty hidden temporary file beside ``path`` named with this process's pid."""
    suffix = f".{tag}.tmp" if tag else ".tmp"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=suffix)
    os.close(fd)
    return Path(tmp)


def remove_stale_temporaries(folder, *, name: str | None = None, recursive: bool = False) -> list[Path]:
    """Delete this package's temporary files in ``folder`` whose writer is no longer running
    (only those of the file ``name`` if given); returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    paths = folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp")
    removed = []
    for p in paths:
        m = _TEMPORARY.match(p.name)
        if not m or (name is not None and m["name"] != name) or pid_alive(int(m["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            p.unlink()
            removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, tag: str = ""):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    Stale temporary files of ``path`` (left by a killed writer) are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, name=path.name)
    tmp = temporary_path(path, tag)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path, what: str = "record") -> dict:
    """A JSON object written by this package; a missing, corrupt or foreign file is a one-line error."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SymdistillError(f"{path} is missing (the {what} of this folder)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SymdistillError(f"{path} is corrupt ({e.__class__.__name__}: {str(e)[:80]}): restore it, "
                              "or delete the folder and start again") from None
    if not isinstance(data, dict):
        raise SymdistillError(f"{path} is not a symdistill {what} (expected a JSON object): restore it, "
                              "or delete the folder and start again")
    return data


#: What h5py raises on a damaged or foreign file (caught where a file is opened, and said in one line).
H5_ERRORS = (RuntimeError, KeyError, ValueError, TypeError, OSError)


# ---- a full disk -------------------------------------------------------------------------------------

#: Free bytes kept in reserve while writing (metadata, the close).
DISK_MARGIN = 256 * 2**10
#: Set when an HDF5 write failed: the HDF5 library can then crash at interpreter exit, so the CLI
#: leaves with ``os._exit`` after printing its error line.
HDF5_WRITE_FAILED = False


class SpaceGuard:
    """Stops a writer that cannot recover from a full disk (HDF5) *before* the disk fills up.

    ``guard.check()`` before each block: an ``OSError(ENOSPC)`` if the free space cannot hold what is
    left of the ``total`` bytes expected in ``tmp`` (plus :data:`DISK_MARGIN`)."""

    def __init__(self, tmp, total: float, final=None):
        self.tmp, self.total, self.final = Path(tmp), float(total), Path(final or tmp)

    def check(self) -> None:
        written = self.tmp.stat().st_size if self.tmp.exists() else 0
        left = max(0.0, self.total - written)
        free = shutil.disk_usage(self.tmp.parent).free
        if free < left + DISK_MARGIN:
            raise OSError(errno.ENOSPC, "No space left on the disk for the rest of the file", str(self.final))


@contextlib.contextmanager
def hdf5_writing(path):
    """Around an h5py writer of ``path``: its errors (a full disk, an I/O error) as one ``OSError``
    with the errno from h5py's message; an ``OSError`` of ours (:class:`SpaceGuard`) passes as it is."""
    global HDF5_WRITE_FAILED
    try:
        yield
    except (RuntimeError, OSError) as e:
        if isinstance(e, OSError) and e.filename is not None:
            raise
        HDF5_WRITE_FAILED = True
        m = re.search(r"errno = (\d+)", str(e))
        code = int(m.group(1)) if m else (e.errno if isinstance(e, OSError) and e.errno else errno.EIO)
        raise OSError(code, os.strerror(code), str(path)) from None


# ---- output paths, checked before any work ------------------------------------------------------------

def _probe_folder(folder: Path, what: str) -> None:
    """Create ``folder`` (and its parents) and check a file can be written in it."""
    for parent in [folder, *folder.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise SymdistillError(f"Cannot write {what}: {parent} is a file, not a folder (choose another path)")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temporary_path(folder / ".write-probe")
        probe.unlink()
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise SymdistillError(f"Cannot write {what} in {folder}: {reason.lower()} "
                              "(choose a folder you can write to)") from None


def is_hdf5(path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


def check_output_file(path, *, what: str = "the output file", replace_hdf5: bool = True) -> Path:
    """Before any work: ``path`` can be written, and writing it loses nothing that is not ours to replace.

    An existing folder, or an existing file that is not HDF5 (a dataset of ours), is refused."""
    path = Path(path)
    if str(path).strip() == "":
        raise SymdistillError(f"Empty path for {what}: give a file name such as data.h5")
    if path.is_dir():
        raise SymdistillError(f"{path} is a folder: give a file name for {what}, such as {path / 'data.h5'}")
    if path.exists() and not (replace_hdf5 and is_hdf5(path)):
        raise SymdistillError(f"{path} exists and is not a dataset file: it will not be replaced "
                              "(remove it, or choose another --out)")
    _probe_folder(path.parent, what)
    return path


def check_output_folder(path, *, what: str = "the run folder") -> Path:
    """Before any work: ``path`` is a folder (created if missing) that can be written."""
    path = Path(path)
    if str(path).strip() == "":
        raise SymdistillError(f"Empty path for {what}: give a folder name")
    if path.exists() and not path.is_dir():
        raise SymdistillError(f"{path} is a file: give a folder for {what} (choose another --out)")
    _probe_folder(path, what)
    return path


def describe_os_error(e: OSError) -> str:
    """One line naming an operating-system error and what to do about it."""
    name = e.filename if e.filename is not None else ""
    where = f" ({name})" if name else ""
    reason = e.strerror or str(e) or e.__class__.__name__
    hints = {
        errno.ENOSPC: "free some space or choose another --out; earlier results are intact",
        errno.EDQUOT: "free some space or choose another --out; earlier results are intact",
        errno.EACCES: "choose a path you can write to, or fix its permissions",
        errno.EPERM: "choose a path you can write to, or fix its permissions",
        errno.EROFS: "choose a path on a writable disk",
        errno.ENOENT: "check the path",
        errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
        errno.EISDIR: "give a file, not a folder",
        errno.EMFILE: "too many open files: raise `ulimit -n`",
    }
    hint = hints.get(e.errno, "check the path, the disk and its permissions")
    return f"{reason}{where} ({hint})"
