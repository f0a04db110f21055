"""The harness of tests/test_fuzz.py: one CLI case, in-process, under the contract.

The contract (issue 12, item 5): a command exits 0 with finite, valid outputs, or exits 2 with
exactly one line on stderr starting with ``error: ``; never an escaping exception (a traceback),
never a hang, never a changed earlier file. :func:`run_case` runs ``symdistill.cli.main(argv)`` in
this process (a subprocess costs seconds of imports per case), in a fresh workspace that is the
current directory, with

- stdout and stderr captured both at the Python level (``sys.stdout``/``sys.stderr``, where tqdm,
  ``print`` and ``warnings`` write) and at the file-descriptor level (C libraries such as HDF5 write
  to fd 2 directly); warnings are shown as a plain interpreter would show them (pytest's own
  recording would hide the "warning before the one-line error" kind of violation);
- a per-case timeout (``signal.setitimer`` raising :class:`CaseTimeout`, a BaseException so a broad
  ``except Exception`` in the product cannot swallow it), plus an elapsed-time check;
- resource guards, so that a request the product fails to refuse (``--n-sims 1000000000``) fails
  inside the case instead of exhausting the shared machine: an address-space limit (allocations
  fail with MemoryError) and a file-size limit (writes fail with EFBIG; SIGXFSZ is ignored);
- every file under the workspace (and any extra root) hashed before and after: a file that existed
  before may change only if it is one of the case's declared outputs, and a changed or new output
  must validate.

A violation raises a :class:`ContractViolation` subclass named after its kind and place (see
:func:`violation_class`), so hypothesis treats distinct violations as distinct bugs and minimises
each. Every case and every violation seen (also those hypothesis does not end up reporting) is
recorded in :data:`CASES` and :data:`SEEN`; tests/conftest.py prints them at the end of the session.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import resource
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

#: Seconds one case may take (generous: the slowest legitimate case here takes well under 2 s).
CASE_TIMEOUT = float(os.environ.get("SYMDISTILL_FUZZ_TIMEOUT", "10"))
#: Seconds a case that must fail before doing any work (``run``/``distill``/``demo`` with an invalid
#: value) may take: a clean refusal takes milliseconds; a command that starts the real work first
#: (simulating 200 test simulations, a search) is caught here instead of running for minutes.
FAIL_FAST_TIMEOUT = float(os.environ.get("SYMDISTILL_FUZZ_FAIL_FAST_TIMEOUT", "6"))
#: Address space a case may add to this process, and the largest file it may write.
MEMORY_HEADROOM = 3 * 2**30
FILE_SIZE_LIMIT = 256 * 2**20
#: SYMDISTILL_FUZZ_SURVEY=1: record violations (terminal summary) without failing, so every case runs
#: and nothing is shrunk: a survey of everything that is broken, and the suite's time once it passes.
SURVEY = os.environ.get("SYMDISTILL_FUZZ_SURVEY", "") not in ("", "0")
#: A file that a hostile string or pickle would create if it were ever executed.
MARKER = "PWNED_MARKER"

#: Cases executed, per generator.
CASES: collections.Counter = collections.Counter()
#: Seconds spent in the cases (command and checks), per generator.
SECONDS: collections.Counter = collections.Counter()
#: How the cases ended: (generator, command, "exit 0" | "exit 2" | ...) -> count.
ENDINGS: collections.Counter = collections.Counter()
#: Violations seen, by signature: [count, shortest report].
SEEN: dict[str, list] = {}
#: Fuzz tests that ran to the end (pass or fail), for the final count check.
FINISHED: set[str] = set()


class CaseTimeout(BaseException):
    """Raised in the main thread by the per-case alarm."""


class ContractViolation(AssertionError):
    """A case broke the CLI contract (subclassed per signature by :func:`violation_class`)."""


_VIOLATION_CLASSES: dict[str, type] = {}


def violation_class(signature: str) -> type:
    """An AssertionError subclass per signature: hypothesis tells bugs apart by exception type and
    place, and all violations are raised at one place, so the type carries the signature."""
    if signature not in _VIOLATION_CLASSES:
        name = "Violation_" + re.sub(r"\W+", "_", signature)[:120]
        _VIOLATION_CLASSES[signature] = type(name, (ContractViolation,), {"__module__": __name__})
    return _VIOLATION_CLASSES[signature]


# --------------------------------------------------------------------------------------------
# Running one command
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Outcome:
    argv: list[str]
    rc: int | None = None          # None: no exit code (an exception escaped, or a timeout)
    stdout: str = ""
    stderr: str = ""               # Python-level and fd-level stderr together
    exception: BaseException | None = None
    traceback: str = ""
    timed_out: bool = False
    seconds: float = 0.0

    @property
    def stderr_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]


def _on_alarm(signum, frame):
    raise CaseTimeout()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    # What the interpreter's default hook does, to the *current* sys.stderr (our capture).
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _interpreter_warning_filters() -> None:
    """The filters a plain ``python`` process starts with (pytest installs its own)."""
    warnings.resetwarnings()
    warnings.simplefilter("default")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", category)


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def _resource_guards():
    saved = {}
    for which, limit in ((resource.RLIMIT_AS, _vm_size() + MEMORY_HEADROOM),
                         (resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT)):
        soft, hard = resource.getrlimit(which)
        saved[which] = (soft, hard)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (limit, hard))
    old_xfsz = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        yield
    finally:
        for which, limits in saved.items():
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(which, limits)
        signal.signal(signal.SIGXFSZ, old_xfsz)


@contextlib.contextmanager
def _fd2_captured():
    """Point fd 2 at a temporary file for the duration; yields a callable returning what was written."""
    sys.stderr.flush()
    saved = os.dup(2)
    tmp = tempfile.TemporaryFile()
    os.dup2(tmp.fileno(), 2)
    text = []
    try:
        yield lambda: "".join(text)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        tmp.seek(0)
        text.append(tmp.read().decode("utf-8", "replace"))
        tmp.close()


def _torch_state():
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    return torch.get_num_threads(), torch.get_default_dtype()


def _restore_torch(state) -> None:
    torch = sys.modules.get("torch")
    if torch is None or state is None:
        return
    threads, dtype = state
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if torch.get_default_dtype() != dtype:
        torch.set_default_dtype(dtype)


def run_cli(argv, cwd, *, timeout: float = CASE_TIMEOUT) -> Outcome:
    """``symdistill.cli.main(argv)`` in ``cwd``, captured and bounded (module docstring)."""
    from symdistill.cli import main

    outcome = Outcome(list(argv))
    out, err = io.StringIO(), io.StringIO()
    old_cwd = os.getcwd()
    torch_state = _torch_state()
    old_alarm = signal.signal(signal.SIGALRM, _on_alarm)
    fd_text = lambda: ""  # noqa: E731
    t0 = time.monotonic()
    try:
        os.chdir(cwd)
        with _fd2_captured() as fd_text, _resource_guards(), warnings.catch_warnings():
            _interpreter_warning_filters()
            warnings.showwarning = _show_warning
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    try:
                        outcome.rc = main(list(argv))
                    except SystemExit as e:  # argparse, --help, --version: an exit code like any other
                        code = e.code
                        if code is None or isinstance(code, int):
                            outcome.rc = 0 if code is None else code
                        else:  # what the interpreter does with sys.exit("text")
                            print(code, file=sys.stderr)
                            outcome.rc = 1
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
    except CaseTimeout:
        outcome.timed_out = True
    except BaseException as e:  # noqa: BLE001 - an escaping exception is what we look for
        outcome.exception = e
        outcome.traceback = traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alarm)
        os.chdir(old_cwd)
        _restore_torch(torch_state)
    outcome.seconds = time.monotonic() - t0
    if outcome.seconds > timeout:
        outcome.timed_out = True
    outcome.stdout = out.getvalue()
    outcome.stderr = err.getvalue() + fd_text()
    return outcome


# --------------------------------------------------------------------------------------------
# Files before and after
# --------------------------------------------------------------------------------------------

def snapshot(*roots) -> dict[str, tuple]:
    """path -> ("file", sha256) | ("dir",) | ("link", target) for everything under ``roots``."""
    state: dict[str, tuple] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                if os.path.islink(p):
                    state[p] = ("link", os.readlink(p))
                elif os.path.isdir(p):
                    state[p] = ("dir",)
                else:
                    h = hashlib.sha256()
                    try:
                        with open(p, "rb") as f:
                            for block in iter(lambda: f.read(1 << 20), b""):
                                h.update(block)
                        state[p] = ("file", h.hexdigest())
                    except OSError as e:
                        state[p] = ("unreadable", str(e))
    return state


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# --------------------------------------------------------------------------------------------
# Outputs: what a case may write, and how it is validated
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Output:
    """A path the case's command is meant to write.

    kind "h5": one dataset file; it may be created, or replaced if it was an HDF5 file before (a
    file that is not HDF5, or a directory, must be left alone); a new or replaced one must be a
    valid dataset with finite pos/vel/acc. kind "folder": a folder (a run, a demo); new files may
    appear in it; of its earlier files only ``mutable`` ones (names relative to it) may change;
    ``validate`` (called on exit 0) checks it.
    """

    path: str
    kind: str = "h5"
    mutable: tuple[str, ...] = ()
    validate: object = None  # callable(path) -> list of problems


def hdf5_signature(path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def dataset_problems(path) -> list[str]:
    """Why ``path`` is not a valid dataset file with finite states (empty list: it is)."""
    import h5py

    problems = []
    try:
        with h5py.File(path, "r") as f:
            shapes = set()
            for name in ("pos", "vel", "acc"):
                if name not in f or not isinstance(f[name], h5py.Dataset):
                    problems.append(f"no dataset {name!r}")
                    continue
                a = f[name][()]
                if not np.issubdtype(a.dtype, np.floating) or a.ndim != 4:
                    problems.append(f"{name!r} has dtype {a.dtype} and shape {a.shape}")
                    continue
                shapes.add(a.shape)
                if not np.isfinite(a).all():
                    problems.append(f"{name!r} holds {int((~np.isfinite(a)).sum())} non-finite values")
            if len(shapes) > 1:
                problems.append(f"pos/vel/acc shapes differ: {sorted(shapes)}")
            if "mass" in f and isinstance(f["mass"], h5py.Dataset):
                m = f["mass"][()]
                if not (np.issubdtype(m.dtype, np.number) and np.isfinite(m).all() and (m > 0).all()):
                    problems.append("'mass' is not finite and > 0")
            else:
                problems.append("no dataset 'mass'")
    except Exception as e:  # noqa: BLE001
        problems.append(f"not readable with h5py ({type(e).__name__}: {e})")
    if not problems:  # the product must read its own output back
        from symdistill.simulate.dataset import open_dataset
        try:
            with open_dataset(path) as ds:
                ds.read(slice(0, 1))
        except Exception as e:  # noqa: BLE001
            problems.append(f"open_dataset cannot read it back ({type(e).__name__}: {e})")
    return problems


def run_folder_problems(path, *, need_model: bool = True) -> list[str]:
    """Why ``path`` is not a usable run folder (config.json, a loadable model with finite weights)."""
    import torch

    path = Path(path)
    problems = []
    try:
        json.loads((path / "config.json").read_text(), parse_constant=_reject_constant)
    except Exception as e:  # noqa: BLE001
        problems.append(f"config.json unreadable ({type(e).__name__}: {e})")
    model = path / "model.pt"
    if not model.exists():
        if need_model:
            problems.append("no model.pt")
        return problems
    try:
        state = torch.load(model, map_location="cpu", weights_only=True)
        weights = state["model"]
        bad = [k for k, v in weights.items() if torch.is_tensor(v) and v.is_floating_point()
               and not torch.isfinite(v).all()]
        if bad:
            problems.append(f"model.pt has non-finite weights in {bad[:3]}")
        if not weights:
            problems.append("model.pt has no weights")
    except Exception as e:  # noqa: BLE001
        problems.append(f"model.pt is not a loadable model ({type(e).__name__}: {str(e)[:120]})")
    return problems


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def strict_json(text: str):
    """JSON as RFC 8259 defines it (Python's json also accepts NaN and Infinity, which no other
    reader does)."""
    return json.loads(text, parse_constant=_reject_constant)


def json_nonfinite(obj) -> list[str]:
    out = []
    if isinstance(obj, float) and not math.isfinite(obj):
        out.append(repr(obj))
    elif isinstance(obj, dict):
        for v in obj.values():
            out += json_nonfinite(v)
    elif isinstance(obj, list):
        for v in obj:
            out += json_nonfinite(v)
    return out


_NONFINITE_WORD = re.compile(r"(?<![\w.])[-+]?(nan|inf|infinity)(?![\w.])", re.IGNORECASE)


def nonfinite_words(text: str) -> list[str]:
    return sorted({m.group(0) for m in _NONFINITE_WORD.finditer(text)})


# --------------------------------------------------------------------------------------------
# One case under the contract
# --------------------------------------------------------------------------------------------

def _product_frame(tb_text: str) -> str:
    """'file.py:123 in func' of the innermost traceback frame inside the symdistill package."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', tb_text)
    inside = [f for f in frames if "/symdistill/" in f[0] and "/tests/" not in f[0]]
    f = (inside or frames or [("?", "0", "?")])[-1]
    return f"{Path(f[0]).parent.name}/{Path(f[0]).name}:{f[1]} in {f[2]}"


def _printed_traceback(stderr: str) -> str:
    """'ExcType at file.py:123 in func' of the last traceback printed on stderr ('' if none)."""
    if "Traceback (most recent call last):" not in stderr:
        return ""
    block = stderr.rsplit("Traceback (most recent call last):", 1)[1]
    exc = next((ln.split(":")[0] for ln in block.splitlines()[1:] if ln.strip() and not ln.startswith(" ")), "?")
    return f"{exc} at {_product_frame(block)}"


def _argv_text(argv) -> str:
    text = shlex.join(argv)
    return text if len(text) <= 400 else text[:300] + f" ...[{len(text)} chars]... " + text[-60:]


def _short(text: str, n: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= n else text[:n] + f"...[{len(text)} chars]"


def run_case(generator: str, argv, workspace, *, outputs=(), extra_roots=(), expect_error: str | None = None,
             check_stdout=None, timeout: float | None = None, label: str | None = None,
             context: str = "") -> Outcome:
    """Run one case and assert the contract; ``generator`` names the counter it is counted under.

    ``outputs``: the :class:`Output` paths the command is meant to write (relative to ``workspace``
    or absolute). ``expect_error``: the case holds this invalid value and must be refused (exit 2).
    ``check_stdout(stdout) -> problems``: validates what an exit-0 case printed. ``label``: the
    command as named in violation signatures (default: the first word of argv). ``context``: how
    the inputs were made (the mutations), for the report.
    """
    workspace = str(Path(workspace).resolve())
    roots = [workspace, *map(str, extra_roots)]
    timeout = timeout or (FAIL_FAST_TIMEOUT if expect_error else CASE_TIMEOUT)
    outs = [dataclasses.replace(o, path=str(Path(workspace, o.path).resolve()) if not os.path.isabs(o.path)
                                else o.path) for o in outputs]
    replaceable = {o.path for o in outs if o.kind == "h5" and os.path.isfile(o.path)
                   and not os.path.islink(o.path) and hdf5_signature(o.path)}
    t_case = time.monotonic()
    before = snapshot(*roots)
    outcome = run_cli(argv, workspace, timeout=timeout)
    after = snapshot(*roots)
    CASES[generator] += 1
    ENDINGS[generator, label or next((a for a in argv if not a.startswith("-")), "(none)"),
            "timeout" if outcome.timed_out else "exception" if outcome.exception is not None
            else f"exit {outcome.rc}"] += 1
    command = label or next((a for a in argv if not a.startswith("-")), "(none)")
    problems: list[tuple[str, str]] = []  # (signature kind, detail)

    # 1. How it ended
    if outcome.timed_out:
        problems.append(("hang", f"no result within {timeout:g} s"))
    elif outcome.exception is not None:
        e = outcome.exception
        where = _product_frame(outcome.traceback)
        problems.append((f"traceback {type(e).__name__} at {where}",
                         f"{type(e).__name__}: {_short(str(e), 400)}\n{_short(outcome.traceback, 3000)}"))
    elif outcome.rc == 2:
        lines = outcome.stderr_lines
        if len(lines) != 1 or not lines[0].startswith("error: "):
            kind = ("exit 2 without a message" if not lines else
                    "exit 2 with several stderr lines" if len(lines) > 1 else "exit 2, line not 'error: ...'")
            problems.append((kind, "stderr was:\n" + _short("\n".join(lines), 1500)))
        elif len(lines[0]) > 2000:
            problems.append(("error line over 2000 characters", _short(lines[0], 300)))
    elif outcome.rc != 0:
        printed = _printed_traceback(outcome.stderr)
        kind = f"exit {outcome.rc} with a traceback {printed}" if printed else f"exit code {outcome.rc}"
        problems.append((kind, "stderr was:\n" + _short(outcome.stderr, 3000)))
    if expect_error and outcome.rc == 0 and not outcome.timed_out:
        problems.append(("accepted an invalid value", f"exit 0 although {expect_error}"))

    # 2. Files: nothing earlier changed but declared outputs; new or changed outputs valid
    if os.path.exists(os.path.join(workspace, MARKER)):
        problems.append(("hostile input executed", f"{MARKER} was created"))
    for path, old in before.items():
        new = after.get(path)
        if new == old:
            continue
        rel = os.path.relpath(path, workspace)
        out = next((o for o in outs if _under(path, o.path)), None)
        allowed = False
        if out is not None and new is not None:
            if out.kind == "h5" and path == out.path:
                allowed = old[0] == "file" and new[0] == "file" and path in replaceable
            elif out.kind == "folder" and path != out.path:
                allowed = os.path.relpath(path, out.path) in out.mutable
        if not allowed:
            what = "deleted" if new is None else f"changed ({old[0]} -> {new[0]})"
            problems.append(("earlier file changed", f"{rel} {what}"))
    added = [p for p in after if p not in before]
    for path in added:
        rel = os.path.relpath(path, workspace)
        if MARKER in path:
            continue
        if not any(_under(path, o.path) if o.kind == "folder" else path == o.path for o in outs):
            if not (after[path][0] == "dir" and any(_under(o.path, path) for o in outs)):  # a parent made for it
                problems.append(("new file outside the outputs", rel))
        elif re.search(r"\.tmp$|\.tmp\W", os.path.basename(path)):
            problems.append(("temporary file left behind", rel))
    for o in outs:
        if o.kind == "h5":
            state = after.get(o.path)
            if state is not None and state != before.get(o.path):
                bad = dataset_problems(o.path) if state[0] == "file" else [f"a {state[0]}, not a file"]
                if bad:
                    problems.append(("output file invalid", f"{os.path.relpath(o.path, workspace)}: {'; '.join(bad)}"))
            elif outcome.rc == 0 and state is None and not expect_error:
                problems.append(("exit 0 without its output", f"{os.path.relpath(o.path, workspace)} missing"))
        elif o.kind == "folder" and outcome.rc == 0 and o.validate is not None:
            bad = o.validate(o.path)
            if bad:
                problems.append(("output folder invalid", f"{os.path.relpath(o.path, workspace)}: {'; '.join(bad)}"))

    # 3. What it printed
    if outcome.rc == 0 and not problems and check_stdout is not None:
        bad = check_stdout(outcome.stdout)
        if bad:
            problems.append(("stdout invalid", "; ".join(bad) + "\nstdout was:\n" + _short(outcome.stdout, 800)))

    SECONDS[generator] += time.monotonic() - t_case
    if problems:
        _fail(generator, command, argv, outcome, problems, context)
    return outcome


def _fail(generator, command, argv, outcome, problems, context: str = "") -> None:
    kinds = sorted({k for k, _ in problems})
    signature = f"{command}: {' + '.join(kinds)}"
    ended = ("timed out" if outcome.timed_out else f"exception {type(outcome.exception).__name__}"
             if outcome.exception is not None else f"exit {outcome.rc}")
    report = (f"[{generator}] symdistill {_argv_text(argv)}\n"
              + (f"  inputs: {_short(context, 600)}\n" if context else "")
              + f"  ended: {ended} after {outcome.seconds:.2f} s\n"
              + "\n".join(f"  - {k}: {d}" for k, d in problems))
    seen = SEEN.setdefault(signature, [0, report])
    seen[0] += 1
    if len(report) < len(seen[1]):
        seen[1] = report
    if not SURVEY:
        raise violation_class(signature)(report)


# --------------------------------------------------------------------------------------------
# Workspaces
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def workspace(prefix="case-"):
    """A fresh directory for one case (removed afterwards; the current directory during the case)."""
    path = tempfile.mkdtemp(prefix=f"symdistill-fuzz-{prefix}")
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def precious_files(ws: Path) -> None:
    """Files a case must never touch: a note that is not HDF5, an empty folder."""
    (ws / "notes.txt").write_text("my notes: not a dataset\n")
    (ws / "empty_dir").mkdir(exist_ok=True)


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------

def write_dataset(path, *, n_sims: int = 4, n_steps: int = 12, n_bodies: int = 3, dim: int = 2,
                  seed: int = 0, full: bool = True, system: str = "spring") -> Path:
    """A tiny valid dataset in the documented layout (symdistill.simulate.dataset), written with h5py:
    bodies on circles (smooth, so vel and acc are the exact derivatives and ``derive`` can estimate them)."""
    import h5py

    try:
        from symdistill.simulate.dataset import FORMAT
    except ImportError:  # pragma: no cover
        FORMAT = "symdistill.nbody/1"
    from symdistill import __version__

    rng = np.random.default_rng(seed)
    dt = 0.05
    t = np.arange(n_steps) * dt
    centre = rng.normal(size=(n_sims, 1, n_bodies, dim))
    radius = rng.uniform(0.5, 1.5, size=(n_sims, 1, n_bodies, 1))
    omega = rng.uniform(0.5, 2.0, size=(n_sims, 1, n_bodies, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n_sims, 1, n_bodies, 1))
    angle = omega * t[None, :, None, None] + phase
    ring = np.zeros((n_sims, n_steps, n_bodies, dim))
    ring[..., 0], ring[..., 1] = np.cos(angle[..., 0]), np.sin(angle[..., 0])
    dring = np.zeros_like(ring)
    dring[..., 0], dring[..., 1] = -np.sin(angle[..., 0]), np.cos(angle[..., 0])
    pos = centre + radius * ring
    vel = radius * omega * dring
    acc = -radius * omega**2 * ring
    with h5py.File(path, "w") as f:
        f.create_dataset("pos", data=pos)
        if full:
            f.create_dataset("vel", data=vel)
            f.create_dataset("acc", data=acc)
        f.create_dataset("mass", data=rng.uniform(0.5, 2.0, size=(n_sims, n_bodies)))
        f.create_dataset("charge", data=rng.choice([-1.0, 1.0], size=(n_sims, n_bodies)))
        f.create_dataset("t", data=t)
        f.attrs.update({"format": FORMAT, "version": __version__, "system": system,
                        "potential": "(r - 1)**2", "dim": dim, "n_bodies": n_bodies, "dt": dt, "seed": seed,
                        "integrator": "verlet", "substeps": 1, "max_substeps": 1, "tolerance": 0.05,
                        "damping": 0.0, "paper_quirks": False})
    return Path(path)


class Pickled:
    """An object whose unpickling would run ``touch MARKER`` (it must never be unpickled)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


# --------------------------------------------------------------------------------------------
# Dataset mutations: (op, target, k), k choosing a variant (0 is the simplest, so shrinking goes there)
# --------------------------------------------------------------------------------------------

DATASETS = ("pos", "vel", "acc", "mass", "charge", "t", "pos_observed", "acc_true")
ATTRS = ("dim", "n_bodies", "dt", "system", "potential", "seed", "damping", "paper_quirks", "format",
         "version", "integrator", "substeps", "max_substeps", "tolerance", "observed", "noise",
         "position_scale", "estimator", "estimator_window", "estimator_polyorder", "estimator_trim",
         "pos_noise_estimate", "acc_noise_estimate", "acc_bias_estimate")
DATASET_OPS = ("drop", "string", "group", "scalar", "shape", "dtype", "values", "empty", "link")
FILE_OPS = ("zero_sims", "zero_steps", "one_step", "zero_bodies", "truncate", "flip_bytes", "random_bytes",
            "empty_file", "directory", "text", "foreign_hdf5")

HOSTILE_FORMULAS = (
    f"__import__('os').system('touch {MARKER}')",
    f"open('{MARKER}', 'w')",
    "().__class__.__base__.__subclasses__()",
    "r.__class__",
    "lambda: 0",
    "r if r else 1",
    "9**9**9**9",
    "r*9**9**9",
    "r**r**r**r**r",
    f"exec(\"open('{MARKER}','w')\")",
    "[r for r in (1,)]",
    "Symbol('r')",
)


def _attr_values():
    import h5py

    return (
        "wormhole", "", "spring", "positions", "nan", "x" * 100_000, "2", "(r - 1)**2", "-m1*m2/r",
        *HOSTILE_FORMULAS, b"\xff\xfe\x00", "\u00e9\u4e2d\u0000",
        0, -1, 1, 2, 3, 4, 1000, 2**31, 2**62, -2**62, 10**18, np.uint64(2**64 - 1), np.int8(-128),
        0.0, -0.5, 2.5, 1e-300, 5e-324, 1e308, -1e308, float("nan"), float("inf"), float("-inf"),
        True, False, 1 + 2j, np.array([2, 3]), np.array([], dtype=float), np.array([[1.0, 2.0]]),
        np.array(["a", "b"], dtype=h5py.string_dtype()), h5py.Empty("f8"), np.float16(3.0),
    )


_ATTR_VALUES = None


def _label(v) -> str:
    text = repr(v) if not isinstance(v, np.ndarray) else f"array({v.tolist()!r}, {v.dtype})"
    if isinstance(v, str) and len(v) > 40:
        text = f"{v[:20]!r}...({len(v)} chars)"
    return f"{type(v).__name__}:{text}"


def attr_labels() -> list[str]:
    """Labels of the attribute values (what hypothesis draws and prints)."""
    global _ATTR_VALUES
    if _ATTR_VALUES is None:
        _ATTR_VALUES = {_label(v): v for v in _attr_values()}
    return list(_ATTR_VALUES)


def attr_value(label: str):
    attr_labels()
    return _ATTR_VALUES[label]


#: Variant labels of each dataset, file and run-folder operation: hypothesis draws (op, target,
#: label), so a minimised example says what it did; the label's index selects the variant.
VARIANTS = {
    "drop": ["-"], "string": ["scalar '1.0'", "array of '1.0'"], "group": ["empty group", "group holding it"],
    "scalar": ["1.0", "0.0", "nan", "-1.0"],
    "shape": ["one axis fewer", "one axis more", "one more simulation", "one step fewer", "dim + 1",
              "first and last axes swapped", "flattened", "zero length 1-D"],
    "dtype": ["bool", "complex128", "int64", "float16", "uint8", "compound (re, im)", "strings", "opaque V8"],
    "values": ["one NaN", "one inf", "one -inf", "all NaN", "all negative", "all zero", "all 1e308",
               "all 5e-324", "times 1e300"],
    "empty": ["null dataspace", "zero length"],
    "link": ["dangling soft link", "external link to a missing file", "soft link to another dataset",
             "soft link to itself"],
    "zero_sims": ["-"], "zero_steps": ["-"], "one_step": ["-"], "zero_bodies": ["-"],
    "truncate": ["to 0%", "to 10%", "to 50%", "to 90%", "to 99%", "to 99.9%"],
    "flip_bytes": [f"{n} bytes (seeded)" for n in (1, 2, 4, 8, 16, 32)],
    "random_bytes": ["all random", "random after the HDF5 signature"],
    "empty_file": ["-"], "directory": ["-"], "text": ["-"], "foreign_hdf5": ["-"],
}
_JSON_JUNK = ("abc", -1, 0, None, [], {}, 1e308, float("nan"), True, "notes.txt", MARKER, 10**30, -0.5, "",
              "x" * 10_000, [1, 2], {"a": 1})

RUN_VARIANTS = {
    "delete": ["-"], "truncate": ["to 0%", "to 10%", "to 50%", "to 90%", "to 99%"],
    "flip_bytes": [f"{n} bytes (seeded)" for n in (1, 2, 3, 8, 16)],
    "random_bytes": [f"seed {k}" for k in range(3)], "empty": ["-"],
    "invalid_json": ['{"config": ', "{not json", "[1, 2", "null", "\\x00\\x01", '{"config": {}}'],
    "json_edit": [f"seed {k}: {'delete' if k % 5 == 0 else 'junk in'} a random leaf (a file that is not JSON "
                  f"becomes {_JSON_JUNK[k]!r})" for k in range(10)],
    "directory": ["-"],
    "malicious_torch": ["torch.save({'model': payload})", "torch.save(payload)", "torch.save([payload])"],
    "malicious_pickle": ["protocol 2", "protocol 4", "protocol 5"],
    "foreign_torch": ["{'model': 5}", "{}", "[1, 2]", "{'model': {'w': zeros(3)}}", "zeros(2)",
                      "{'config': 'x', 'model': {}}", "{'model': {}, 'config': {'model': {'hidden': -1}}}"],
    "nonfinite_weights": [f"{'nan' if k % 2 == 0 else 'inf'} in weight tensor #{k}" for k in range(6)],
    "csv_garbage": ["a,b / 1,2", "empty", "header only", "force_r2 'nan x'", "binary garbage", "one column"],
    "symlink": ["to notes.txt (outside the folder)"],
}


def variant_index(table: dict, op: str, variant) -> int:
    return variant if isinstance(variant, int) else table[op].index(variant)


def _reference(f):
    import h5py

    if "pos" in f and isinstance(f["pos"], h5py.Dataset) and f["pos"].ndim == 4 and f["pos"].dtype.kind == "f":
        return f["pos"][()]
    return np.random.default_rng(0).normal(size=(4, 12, 3, 2))


def _current(f, name):
    import h5py

    obj = f.get(name) if name in f else None
    if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fiub" and obj.shape is not None:
        return np.asarray(obj[()], dtype=float)
    ref = _reference(f)
    return {"mass": np.ones(ref.shape[:1] + ref.shape[2:3]), "charge": np.ones(ref.shape[:1] + ref.shape[2:3]),
            "t": np.arange(ref.shape[1]) * 0.05}.get(name, ref)


def _replace(f, name, **create):
    if name in f:
        del f[name]
    f.create_dataset(name, **create)


def _mutate_dataset(f, op, name, k):
    import h5py

    a = _current(f, name)
    if op == "drop":
        if name in f:
            del f[name]
    elif op == "string":
        if k % 2 == 0:
            _replace(f, name, data="1.0", dtype=h5py.string_dtype())
        else:
            _replace(f, name, data=np.full(a.shape, "1.0", dtype=object), dtype=h5py.string_dtype())
    elif op == "group":
        if name in f:
            del f[name]
        g = f.create_group(name)
        if k % 2:
            g.create_dataset(name, data=a)
    elif op == "scalar":
        _replace(f, name, data=(1.0, 0.0, float("nan"), -1.0)[k % 4])
    elif op == "shape":
        variants = [
            lambda x: x[..., 0] if x.ndim > 1 else x[:0],           # one axis fewer
            lambda x: x[..., None],                                  # one axis more
            lambda x: np.concatenate([x, x[:1]]) if x.ndim else x,   # one more simulation
            lambda x: x[:, :-1] if x.ndim > 1 else x[:-1],           # one step (or body) fewer
            lambda x: np.concatenate([x, x[..., :1]], axis=-1) if x.ndim else x,  # dim + 1
            lambda x: np.swapaxes(x, 0, -1) if x.ndim > 1 else x[::-1],
            lambda x: x.reshape(-1),
            lambda x: np.zeros((0,)),
        ]
        _replace(f, name, data=variants[k % len(variants)](a))
    elif op == "dtype":
        variants = [
            lambda x: x.astype(bool), lambda x: x.astype(np.complex128), lambda x: x.astype(np.int64),
            lambda x: x.astype(np.float16), lambda x: (x * 100).astype(np.uint8),
            lambda x: np.rec.fromarrays([x, x], names="re,im"),
            lambda x: np.array([str(v) for v in x.reshape(-1)], dtype=object).reshape(x.shape),
            lambda x: np.frombuffer(x.astype(np.float64).tobytes(), dtype="V8").reshape(x.shape),
        ]
        data = variants[k % len(variants)](a)
        if data.dtype == object:
            _replace(f, name, data=data, dtype=h5py.string_dtype())
        else:
            _replace(f, name, data=data)
    elif op == "values":
        v = a.copy()
        flat = v.reshape(-1)
        variants = [
            lambda: flat.__setitem__(flat.size // 2, np.nan) if flat.size else None,
            lambda: flat.__setitem__(0, np.inf) if flat.size else None,
            lambda: flat.__setitem__(-1, -np.inf) if flat.size else None,
            lambda: flat.__setitem__(slice(None), np.nan),
            lambda: flat.__setitem__(slice(None), -np.abs(flat) - 1),
            lambda: flat.__setitem__(slice(None), 0.0),
            lambda: flat.__setitem__(slice(None), 1e308),
            lambda: flat.__setitem__(slice(None), 5e-324),
            lambda: flat.__setitem__(slice(None), flat * 1e300),
        ]
        variants[k % len(variants)]()
        _replace(f, name, data=v)
    elif op == "empty":
        if k % 2 == 0:
            _replace(f, name, data=h5py.Empty("f8"))
        else:
            _replace(f, name, data=a[:0] if a.ndim else np.zeros(0))
    elif op == "link":
        if name in f:
            del f[name]
        variants = [h5py.SoftLink("/nowhere"), h5py.ExternalLink("missing.h5", "/pos"),
                    h5py.SoftLink("/mass" if name != "mass" else "/pos"), h5py.SoftLink(f"/{name}")]
        f[name] = variants[k % len(variants)]


def _mutate_file(path: Path, op, k, rng):
    import h5py

    states = ("pos", "vel", "acc", "pos_observed", "acc_true")
    if op in ("zero_sims", "zero_steps", "one_step", "zero_bodies"):
        with h5py.File(path, "r+") as f:
            for name in list(f):
                obj = f[name]
                if not isinstance(obj, h5py.Dataset) or obj.shape is None or not obj.ndim:
                    continue
                a = obj[()]
                if op == "zero_sims" and name in states + ("mass", "charge"):
                    a = a[:0]
                elif op in ("zero_steps", "one_step") and name in states and a.ndim > 1:
                    a = a[:, : (0 if op == "zero_steps" else 1)]
                elif op in ("zero_steps", "one_step") and name == "t":
                    a = a[: (0 if op == "zero_steps" else 1)]
                elif op == "zero_bodies" and name in states and a.ndim > 2:
                    a = a[:, :, :0]
                elif op == "zero_bodies" and name in ("mass", "charge") and a.ndim > 1:
                    a = a[:, :0]
                else:
                    continue
                del f[name]
                f.create_dataset(name, data=a)
            if op == "zero_bodies":
                f.attrs["n_bodies"] = 0
        return
    if op == "directory":
        path.unlink()
        path.mkdir()
        (path / "pos").write_text("x")
        return
    data = path.read_bytes()
    if op == "truncate":
        data = data[: int(len(data) * (0.0, 0.1, 0.5, 0.9, 0.99, 0.999)[k % 6])]
    elif op == "flip_bytes":
        b = bytearray(data)
        for i in rng.integers(0, len(b), size=(1, 2, 4, 8, 16, 32)[k % 6]):
            b[i] ^= 0xFF
        data = bytes(b)
    elif op == "random_bytes":
        body = rng.bytes(len(data))
        data = (data[:8] + body[8:]) if k % 2 else body  # keep the HDF5 signature half of the time
    elif op == "empty_file":
        data = b""
    elif op == "text":
        data = b"pos,vel,acc\n1,2,3\n"
    elif op == "foreign_hdf5":
        with h5py.File(path, "w") as f:
            f.create_dataset("foo", data=np.arange(3))
            f.attrs["bar"] = "baz"
        return
    path.write_bytes(data)


def mutate_dataset(path, mutations, seed: int = 0) -> None:
    """Apply ``mutations`` [(op, target, k)] to the dataset file ``path`` in order. A mutation that
    no longer applies (its target already broken by an earlier one) is skipped."""
    import h5py

    path = Path(path)
    rng = np.random.default_rng(seed)
    for op, target, variant in mutations:
        if not path.is_file():
            return
        k = 0 if op == "attr_set" else variant_index(VARIANTS, op, variant) if op in VARIANTS else 0
        try:
            if op in FILE_OPS:
                _mutate_file(path, op, k, rng)
            elif op in ("attr_drop", "attr_set"):
                with h5py.File(path, "r+") as f:
                    if op == "attr_drop":
                        if target in f.attrs:
                            del f.attrs[target]
                    else:
                        f.attrs[target] = attr_value(variant)
            else:
                with h5py.File(path, "r+") as f:
                    _mutate_dataset(f, op, target, k)
        except (OSError, ValueError, TypeError, KeyError, RuntimeError):
            continue  # e.g. an earlier byte-level corruption: h5py can no longer open the file


# --------------------------------------------------------------------------------------------
# Run-folder corruptions: (op, k)
# --------------------------------------------------------------------------------------------

RUN_OPS = ("delete", "truncate", "flip_bytes", "random_bytes", "empty", "invalid_json", "json_edit",
           "directory", "malicious_torch", "malicious_pickle", "foreign_torch", "nonfinite_weights",
           "csv_garbage", "symlink")


def _json_leaves(obj, prefix=()):
    if isinstance(obj, dict) and obj:
        for key in sorted(obj, key=str):
            yield from _json_leaves(obj[key], prefix + (key,))
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            yield from _json_leaves(v, prefix + (i,))
    if prefix:
        yield prefix


def corrupt_file(path: Path, op: str, variant, marker: Path, link_target: Path) -> None:
    """Corrupt ``path`` (a file of a run folder, or its data) by ``op`` (a label of RUN_VARIANTS)."""
    import pickle

    import torch

    k = variant_index(RUN_VARIANTS, op, variant)
    if op == "flip_bytes":
        k = (1, 2, 3, 8, 16)[k] - 1

    rng = np.random.default_rng(k)
    data = path.read_bytes() if path.is_file() else b""
    if op == "delete":
        path.unlink()
    elif op == "truncate":
        path.write_bytes(data[: int(len(data) * (0.0, 0.1, 0.5, 0.9, 0.99)[k % 5])])
    elif op == "flip_bytes":
        b = bytearray(data)
        for i in rng.integers(0, max(1, len(b)), size=1 + k % 16) if b else ():
            b[i] ^= 0xFF
        path.write_bytes(bytes(b))
    elif op == "random_bytes":
        path.write_bytes(rng.bytes(max(16, len(data))))
    elif op == "empty":
        path.write_bytes(b"")
    elif op == "invalid_json":
        path.write_text(('{"config": ', "{not json", "[1, 2", "null", "\x00\x01", '{"config": {}}')[k % 6])
    elif op == "json_edit":
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        leaves = list(_json_leaves(obj)) if isinstance(obj, (dict, list)) else []
        if not leaves:
            path.write_text(json.dumps(_JSON_JUNK[k % len(_JSON_JUNK)]))
            return
        where = leaves[int(rng.integers(len(leaves)))]
        parent = obj
        for key in where[:-1]:
            parent = parent[key]
        if k % 5 == 0 and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = _JSON_JUNK[int(rng.integers(len(_JSON_JUNK)))]
        path.write_text(json.dumps(obj))
    elif op == "directory":
        path.unlink()
        path.mkdir()
    elif op == "malicious_torch":
        payload = Pickled(str(marker))
        torch.save(({"model": payload, "config": {}}, payload, [payload])[k % 3], path)
    elif op == "malicious_pickle":
        path.write_bytes(pickle.dumps(Pickled(str(marker)), protocol=(2, 4, 5)[k % 3]))
    elif op == "foreign_torch":
        torch.save(({"model": 5}, {}, [1, 2], {"model": {"w": torch.zeros(3)}}, torch.zeros(2),
                    {"config": "x", "model": {}}, {"model": {}, "config": {"model": {"hidden": -1}}})[k % 7], path)
    elif op == "nonfinite_weights":
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            tensors = [n for n, v in state["model"].items() if torch.is_tensor(v) and v.is_floating_point()]
            name = tensors[k % len(tensors)]
            state["model"][name] = torch.full_like(state["model"][name], (float("nan"), float("inf"))[k % 2])
            torch.save(state, path)
        except Exception:  # noqa: BLE001 - not a checkpoint: garbage instead
            path.write_bytes(rng.bytes(64))
    elif op == "csv_garbage":
        path.write_text(("a,b\n1,2\n", "", "epoch,step,force_r2\n", "epoch,step,force_r2\n1,2,nan x\n",
                         "\xff\xfe\x00garbage", "epoch\n" + "1\n" * 5)[k % 6])
    elif op == "symlink":
        path.unlink()
        path.symlink_to(link_target)
