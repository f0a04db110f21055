"""Hostile-input sweep (issue 12): bad or hostile inputs to every command, each a real subprocess.

Every case runs ``python -m symdistill.cli ...`` in its own temporary workspace (a copy of the
fixtures: small datasets from ``symdistill simulate``, crafted HDF5 files, a trained run folder),
with a wall-clock timeout (the process group is killed after it), and is classified:

- ``ok``: exit 0, and the outputs the case names are present and finite;
- ``clean-error``: exit 2 and stderr holds exactly one non-empty line, starting ``error: ``
  (tqdm progress-bar fragments are ignored and reported as the flag ``progress``);
- ``traceback``: ``Traceback`` in stderr, or an exit status other than 0 and 2;
- ``multi-line``: exit 2 with more (or fewer) than one line (warnings before the error, help text);
- ``hang``: killed after the timeout, or by the sweep's file-size limit (a runaway write);
- ``data-lost``: a file that existed before a failing case changed or vanished, a file the case
  protects changed, or exit 0 with a wrong result (the case's check: non-finite arrays written, a
  0-step model, two concurrent writers both "done", an invalid option accepted, ...);
- ``executed``: a hostile string or pickle ran code (its marker file appeared). Must stay 0.

Flags (not classes): ``no-fix-hint`` (the error line has no parenthesised hint and none of the words
use/give/choose/remove/delete/lower/raise/set/try/run/write/check/expected/must, or
create/restore/install/add/drop/wait/ask/pick/rename), ``late`` (a command
that must fail before doing work did work first), ``should-succeed`` (own data that must be usable
was refused), ``echo`` (an error line over 300 characters), ``misleading`` (a message the issue names
as wrong), ``progress``. Each case's child gets RLIMIT_AS 6 GiB and RLIMIT_FSIZE 2 GiB, so a runaway
allocation or write cannot take the shared machine down (the sweep runs as root: "unwritable"
outputs are /proc, /sys, and paths whose parent is a regular file).

    nice -n 19 .venv/bin/python benchmarks/hostile.py --jobs 2 --out runs/hostile.md --json runs/hostile.json
    nice -n 19 .venv/bin/python benchmarks/hostile.py --only potential     # a subset (substring of name/command)
    nice -n 19 .venv/bin/python benchmarks/hostile.py --list               # the cases, without running them
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import os
import pickle
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

CLASSES = ("ok", "clean-error", "traceback", "multi-line", "hang", "data-lost", "executed")
BAD = ("traceback", "multi-line", "hang", "data-lost", "executed")
AS_LIMIT = 6 * 2**30
FSIZE_LIMIT = 2 * 2**30
ENV = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
MARKER = "PWNED"  # hostile payloads touch this file in the case's workspace
FIX_WORDS = re.compile(r"\b(use|give|choose|remove|delete|lower|raise|set|try|run|write|check|expected|must|create|"
                       r"restore|install|add|drop|wait|ask|pick|rename)",
                       re.IGNORECASE)
PROGRESS = re.compile(r"\d+%\|| \d+/\d+ \[|it/s\]|s/it\]|\?it/s")


# ---------------------------------------------------------------------------------------------
# Running one command


def _limits():  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def cli(args) -> list[str]:
    return [sys.executable, "-m", "symdistill.cli", *map(str, args)]


@dataclass
class Proc:
    """One spawned CLI process writing its stdout/stderr to files in the workspace."""

    popen: subprocess.Popen
    out: Path
    err: Path
    t0: float

    def finish(self, timeout: float) -> tuple[int | None, float, bool]:
        """(exit status, seconds, timed out); kills the process group after ``timeout`` seconds."""
        try:
            rc = self.popen.wait(timeout=max(0.1, timeout - (time.perf_counter() - self.t0)))
            timed_out = False
        except subprocess.TimeoutExpired:
            self.kill()
            rc, timed_out = None, True
        seconds = time.perf_counter() - self.t0
        _killpg(self.popen.pid)  # children left behind (a worker pool) go too
        return rc, seconds, timed_out

    def kill(self):
        _killpg(self.popen.pid)
        self.popen.wait()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> tuple[str, str]:
        return _tail(self.out), _tail(self.err)


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, limit: int = 1 << 20) -> str:
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - limit))
        return f.read().decode("utf-8", "replace")


def spawn(ws: Path, args, tag: str = "cmd") -> Proc:
    out, err = ws / f".{tag}.stdout", ws / f".{tag}.stderr"
    with open(out, "wb") as o, open(err, "wb") as e:
        p = subprocess.Popen(cli(args), cwd=ws, stdout=o, stderr=e, stdin=subprocess.DEVNULL, env=ENV,
                             start_new_session=True, preexec_fn=_limits)
    return Proc(p, out, err, time.perf_counter())


def sd(ws: Path, *args, timeout: float = 300) -> str:
    """Run a setup command to completion; raise if it fails (a broken fixture, not a finding)."""
    p = spawn(ws, args, tag="setup")
    rc, _, timed_out = p.finish(timeout)
    out, err = p.text()
    if rc != 0:
        raise RuntimeError(f"setup `symdistill {' '.join(map(str, args))}` failed ({rc}, timed out {timed_out}): "
                           f"{err.strip().splitlines()[-1:] if err.strip() else out[-300:]}")
    return out


def wait_until(pred: Callable[[], bool], proc: Proc, timeout: float, poll: float = 0.1) -> bool:
    """True once ``pred()`` holds; False if ``proc`` ended or ``timeout`` passed first."""
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        if pred():
            return True
        if not proc.alive():
            return pred()
        time.sleep(poll)
    return False


@dataclass
class Outcome:
    rc: int | None
    seconds: float
    stdout: str
    stderr: str
    timed_out: bool
    lost: list[str] = field(default_factory=list)   # data-lost / wrong-result reasons found by the runner
    notes: list[str] = field(default_factory=list)


def run_plain(case: "Case", ws: Path, timeout: float) -> Outcome:
    p = spawn(ws, case.args)
    rc, seconds, timed_out = p.finish(timeout)
    return Outcome(rc, seconds, *p.text(), timed_out)


# ---------------------------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    name: str                       # command/what, e.g. "simulate/n-sims-1e9"
    args: list                      # after `symdistill`
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path, Outcome], str | None] | None = None  # a wrong-result reason after exit 0
    protect: tuple[str, ...] = ()   # files that must be unchanged whatever the exit status
    outputs: tuple[str, ...] = ()   # HDF5 files that exit 0 must leave present and finite
    flag: Callable[[Path, Outcome], str | None] | None = None  # a message flag (late, misleading, ...)
    should_succeed: bool = False
    runner: Callable[["Case", Path, float], Outcome] | None = None
    timeout: float | None = None
    note: str = ""

    @property
    def command(self) -> str:
        return "symdistill " + " ".join(_quote(a) for a in self.display_args)

    @property
    def display_args(self) -> list[str]:
        return [a if len(str(a)) <= 60 else f"{str(a)[:40]}...({len(str(a))} chars)" for a in self.args]


def _quote(a) -> str:
    a = str(a)
    return a if a and re.fullmatch(r"[\w./=:,+-]+", a) else repr(a)


# ---- fixtures ------------------------------------------------------------------------------
#
# Built once in FIXTURES and copied into every case's workspace (cwd of the command):
#   good.h5     spring 2D, 4 sims x 20 steps (seed 0)      test.h5    the same, seed 1
#   good3d.h5   spring 3D, 4 sims x 20 steps               pos_only.h5  good.h5 without vel/acc
#   notes.txt   a user's text file (an "earlier result")    run/       `train --data good.h5
#               --test-data test.h5 --epochs 1 --set train.steps_per_epoch=2`
# and, copied only by the cases whose setup is ``finished_run``: done/, a finished `run` (library path).


def build_fixtures(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    small = ["--n-sims", 4, "--steps", 20, "--quiet"]
    sd(root, "simulate", *small, "--seed", 0, "--out", "good.h5")
    sd(root, "simulate", *small, "--seed", 1, "--out", "test.h5")
    sd(root, "simulate", *small, "--seed", 2, "--dim", 3, "--out", "good3d.h5")
    write_h5(root / "pos_only.h5", root / "good.h5", drop=("vel", "acc"))
    (root / "notes.txt").write_text("my lab notes: do not lose\n" * 20)
    sd(root, "train", "--data", "good.h5", "--test-data", "test.h5", "--out", "run", "--epochs", 1,
       "--set", "train.steps_per_epoch=2", "--quiet")
    extra = root.parent / "extra"
    extra.mkdir(exist_ok=True)
    sd(extra, "run", *RUN_SMALL, "--out", "done")  # a finished `run` (library path), for the cases that ask
    for p in [*root.rglob("*"), *extra.rglob("*")]:
        if p.is_file() and p.name.startswith(".setup."):
            p.unlink()


GROUP = object()  # replace a dataset by a group


def write_h5(path: Path, base: Path, *, drop=(), data=None, attrs=None, drop_attrs=()) -> None:
    """A copy of the dataset file ``base`` with datasets dropped or replaced and attributes changed."""
    with h5py.File(base, "r") as f:
        arrays = {k: f[k][...] for k in f}
        a = dict(f.attrs)
    for k in drop:
        arrays.pop(k, None)
    arrays.update(data or {})
    for k in drop_attrs:
        a.pop(k, None)
    a.update(attrs or {})
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            if v is GROUP:
                f.create_group(k).create_dataset("x", data=np.zeros(3))
            elif callable(v):
                v(f, k)
            else:
                f.create_dataset(k, data=v)
        for k, v in a.items():
            f.attrs[k] = v


def good_arrays(ws: Path) -> dict:
    with h5py.File(ws / "good.h5", "r") as f:
        return {k: f[k][...] for k in f}


def crafted(kind: str) -> Callable[[Path], None]:
    """Setup writing ``bad.h5``: good.h5 with one defect (``kind``, see ``_defect``)."""
    def setup(ws: Path) -> None:
        _defect(ws, kind, ws / "bad.h5")
    return setup


def _defect(ws: Path, kind: str, out: Path) -> None:
    g = good_arrays(ws)
    base = ws / "good.h5"
    pos, acc, mass = g["pos"], g["acc"], g["mass"]
    w = lambda **k: write_h5(out, base, **k)  # noqa: E731
    if kind == "zero-sims":
        w(data={k: v[:0] for k, v in g.items() if k != "t"})
    elif kind == "zero-steps":
        w(data={"pos": pos[:, :0], "vel": g["vel"][:, :0], "acc": acc[:, :0], "t": g["t"][:0]})
    elif kind == "dt-string":
        w(attrs={"dt": "abc"})
    elif kind == "dt-zero":
        w(attrs={"dt": 0.0})
    elif kind == "dt-nan":
        w(attrs={"dt": np.nan})
    elif kind == "dt-negative":
        w(attrs={"dt": -0.01})
    elif kind == "dim-string":
        w(attrs={"dim": "two"})
    elif kind == "mass-strings":
        w(data={"mass": np.array([[b"heavy"] * mass.shape[1]] * mass.shape[0])})
    elif kind == "pos-strings":
        w(data={"pos": np.full(pos.shape, b"x", dtype="S1")})
    elif kind == "acc-strings":
        w(data={"acc": np.full(acc.shape, b"x", dtype="S1")})
    elif kind == "pos-group":
        w(data={"pos": GROUP})
    elif kind == "mass-group":
        w(data={"mass": GROUP})
    elif kind == "acc-group":
        w(data={"acc": GROUP})
    elif kind == "acc-nan":
        w(data={"acc": np.full_like(acc, np.nan)})
    elif kind == "acc-inf":
        a = acc.copy()
        a[0, 3, 1, 0] = np.inf
        w(data={"acc": a})
    elif kind == "pos-nan":
        p = pos.copy()
        p[1, 5, 2, 1] = np.nan
        w(data={"pos": p})
    elif kind == "pos-inf":
        w(data={"pos": np.full_like(pos, np.inf)})
    elif kind == "mass-nan":
        m = mass.copy()
        m[0, 0] = np.nan
        w(data={"mass": m})
    elif kind == "mass-negative":
        w(data={"mass": -mass})
    elif kind == "mass-zero":
        w(data={"mass": np.zeros_like(mass)})
    elif kind == "charge-nan":
        w(data={"charge": np.full_like(g["charge"], np.nan)})
    elif kind == "pos-3d":
        w(data={"pos": pos[0]})
    elif kind == "mass-shape":
        w(data={"mass": mass[:, :2]})
    elif kind == "acc-shape":
        w(data={"acc": acc[:, :5]})
    elif kind == "t-shape":
        w(data={"t": g["t"][:3]})
    elif kind == "dim4":
        s = pos.shape[:3] + (4,)
        w(data={k: np.random.default_rng(0).normal(size=s) for k in ("pos", "vel", "acc")}, attrs={"dim": 4})
    elif kind == "n-bodies-1":
        w(data={**{k: g[k][:, :, :1] for k in ("pos", "vel", "acc")}, "mass": mass[:, :1],
                "charge": g["charge"][:, :1]}, attrs={"n_bodies": 1})
    elif kind == "n-bodies-mismatch":
        w(attrs={"n_bodies": 7})
    elif kind == "no-mass":
        w(drop=("mass",))
    elif kind == "no-pos":
        w(drop=("pos",))
    elif kind == "no-dt":
        w(drop_attrs=("dt",))
    elif kind == "no-attrs":
        w(drop_attrs=tuple(h5py.File(base, "r").attrs.keys()))
    elif kind == "one-sim":
        w(data={k: v[:1] for k, v in g.items() if k != "t"})
    elif kind == "system-wormhole":
        w(attrs={"system": "wormhole"})
    elif kind == "system-hang":
        w(attrs={"system": "r*9**9**9**9"})
    elif kind == "system-code":
        w(attrs={"system": f"__import__('os').system('touch {MARKER}')"})
    elif kind == "system-int":
        w(attrs={"system": 5})
    elif kind == "system-binary":
        w(attrs={"system": np.void(b"\xff\xfe\x00binary")})
    elif kind == "sparse-huge":  # claims 10^9 simulations; HDF5 stores none of it (fill value)
        def big(shape):
            return lambda f, k: f.create_dataset(k, shape=shape, dtype="f8", chunks=(1,) + shape[1:])
        n = 10**9
        w(data={"pos": big((n,) + pos.shape[1:]), "vel": big((n,) + pos.shape[1:]),
                "acc": big((n,) + pos.shape[1:]), "mass": big((n, mass.shape[1])),
                "charge": big((n, mass.shape[1]))})
    elif kind == "float16":
        w(data={k: g[k].astype(np.float16) for k in ("pos", "vel", "acc")})
    elif kind == "int-pos":
        w(data={k: (g[k] * 100).astype(np.int64) for k in ("pos", "vel", "acc")})
    elif kind == "truncated":
        data = base.read_bytes()
        out.write_bytes(data[: len(data) // 2])
    elif kind == "flipped":
        data = bytearray(base.read_bytes())
        rng = random.Random(12)
        for i in rng.sample(range(len(data) // 4, len(data)), 200):
            data[i] ^= 0xFF
        out.write_bytes(bytes(data))
    elif kind == "text":
        out.write_text("this is not HDF5\n")
    elif kind == "empty":
        out.write_bytes(b"")
    elif kind == "directory":
        out.mkdir()
    elif kind == "fifo":
        os.mkfifo(out)
    elif kind == "symlink-loop":
        os.symlink(out.name, out)
    elif kind == "dangling-symlink":
        os.symlink("nowhere.h5", out)
    else:
        raise KeyError(kind)


# ---- checks ----------------------------------------------------------------------------------


def finite_h5(path: Path) -> str | None:
    """None if ``path`` is an HDF5 file whose float datasets are all finite, else what is wrong."""
    if not path.exists():
        return f"{path.name} missing after exit 0"
    try:
        with h5py.File(path, "r") as f:
            for k in f:
                if isinstance(f[k], h5py.Dataset) and f[k].dtype.kind == "f":
                    if f[k].size * 8 > 2**31:
                        continue
                    a = f[k][...]
                    if not np.isfinite(a).all():
                        return f"{path.name}: {k!r} holds NaN/inf, written with exit 0"
    except OSError as e:
        return f"{path.name} unreadable after exit 0 ({e})"
    return None


def trained_steps(run: Path) -> int | None:
    p = run / "history.csv"
    if not p.exists():
        return None
    rows = p.read_text().strip().splitlines()
    if len(rows) < 2:
        return 0
    head = rows[0].split(",")
    try:
        return int(float(rows[-1].split(",")[head.index("step")]))
    except (ValueError, IndexError):
        return None


def check_train(out: str = "out") -> Callable:
    def check(ws: Path, o: Outcome) -> str | None:
        run = ws / out
        if not (run / "model.pt").exists():
            return f"exit 0 but no {out}/model.pt"
        steps = trained_steps(run)
        m = re.search(r"done: .*?(\d+) steps", o.stdout)
        if steps == 0 or (m and int(m.group(1)) == 0):
            return "exit 0 with an untrained 0-step model.pt"
        return None
    return check


def check_evaluate(ws: Path, o: Outcome) -> str | None:
    m = re.search(r"test MAE \(accelerations\): (\S+)", o.stdout) or re.search(r'"test_mae": ([^,\s]+)', o.stdout)
    if not m:
        return "exit 0 without a test MAE"
    try:
        if not np.isfinite(float(m.group(1))):
            return f"exit 0 with test MAE {m.group(1)}"
    except ValueError:
        return f"exit 0 with test MAE {m.group(1)!r}"
    return None


def check_file(rel: str) -> Callable:
    def check(ws: Path, o: Outcome) -> str | None:
        return None if (ws / rel).exists() else f"exit 0 but no {rel}"
    return check


def wrong_if_ok(reason: str) -> Callable:
    def check(ws: Path, o: Outcome) -> str | None:
        return reason
    return check


def accepted(what: str) -> Callable:
    """Flag ``accepted``: exit 0 for an input that deserved at least a warning or an error."""
    def flag(ws: Path, o: Outcome) -> str | None:
        return f"accepted: {what}" if o.rc == 0 else None
    return flag


#: Seconds the CLI takes to start (``symdistill run --help``), measured at the start of the sweep.
STARTUP = [5.0]


def slow_error(factor: float = 3.0) -> Callable:
    """Flag ``late``: an error that took over ``factor`` x the CLI's start-up (work done before refusing)."""
    def flag(ws: Path, o: Outcome) -> str | None:
        limit = factor * STARTUP[0]
        return f"late: the error took {o.seconds:.0f} s (> {limit:.0f} s)" if o.rc != 0 and o.seconds > limit else None
    return flag


def late_if_exists(rel: str) -> Callable:
    """Flag ``late``: the command did work (``rel`` appeared) before refusing its input."""
    def flag(ws: Path, o: Outcome) -> str | None:
        return f"late: {rel} was written before the error" if o.rc != 0 and (ws / rel).exists() else None
    return flag


def misleading_if(*phrases: str) -> Callable:
    def flag(ws: Path, o: Outcome) -> str | None:
        last = _error_lines(o.stderr)[0][-1:] or [""]
        hit = [p for p in phrases if p.lower() in last[0].lower()]
        return f"misleading: says {hit[0]!r}" if hit else None
    return flag


DEFAULT_CHECKS = {"train": check_train(), "evaluate": check_evaluate}


# ---- special runners -------------------------------------------------------------------------


CONCURRENT_TRAIN = ["train", "--data", "good.h5", "--out", "shared", "--epochs", 1, "--set",
                    "train.steps_per_epoch=3000", "--quiet"]


def concurrent_train(case: Case, ws: Path, timeout: float) -> Outcome:
    """Two `train` on the same --out: the second starts once the first has created the folder."""
    base = CONCURRENT_TRAIN
    p1 = spawn(ws, base + ["--seed", 1], tag="first")
    started = wait_until(lambda: (ws / "shared").exists(), p1, timeout / 2)
    p2 = spawn(ws, base + ["--seed", 2], tag="second")
    rc2, s2, t2 = p2.finish(timeout)
    overlap = p1.alive()
    rc1, s1, t1 = p1.finish(timeout)
    (o1, e1), (o2, e2) = p1.text(), p2.text()
    notes = [f"first: rc {rc1} in {s1:.1f} s; second: rc {rc2} in {s2:.1f} s"
             + ("" if started and overlap else " (overlap not certain: the first ended before the second)")]
    lost = ["both concurrent trains exited 0: one model overwrote the other"] if rc1 == 0 and rc2 == 0 else []
    # classify the process that should have refused (the one that did not exit 0)
    rc, out, err, sec, to = (rc2, o2, e2, s2, t2) if rc2 != 0 or rc1 == 0 else (rc1, o1, e1, s1, t1)
    return Outcome(rc, max(s1, s2), out, err, t1 or t2, lost, notes)


def kill_then_rerun(first: list, ready: Callable[[Path], bool], *, check_leftovers: bool = True) -> Callable:
    """Start ``first``, SIGKILL its process group once ``ready(ws)``, then run the case's command."""
    def runner(case: Case, ws: Path, timeout: float) -> Outcome:
        p = spawn(ws, first, tag="killed")
        ok = wait_until(lambda: ready(ws), p, timeout)
        time.sleep(0.5 if ok else 0)  # let it get into the middle of the work it was doing
        p.kill()
        notes = ["killed -9 at the ready point" if ok else "the first command ended before the kill point"]
        time.sleep(0.2)
        o = run_plain(case, ws, timeout)
        o.notes += notes
        if check_leftovers:
            stale = sorted(str(q.relative_to(ws)) for q in ws.rglob("*.tmp"))
            if stale:
                o.lost.append(f"stale temporary files left after the re-run: {', '.join(stale[:3])}"
                              + (f" (+{len(stale) - 3})" if len(stale) > 3 else ""))
        return o
    return runner


def tmp_exists(ws: Path) -> bool:
    return any(ws.rglob(".*.tmp"))


# ---- the case table --------------------------------------------------------------------------

SMALL = ["--n-sims", 4, "--steps", 20, "--quiet"]
PAYLOAD = f"__import__('os').system('touch {MARKER}')"
HUGE_FORMULA = "+".join(["r"] * 50_000)  # 100 kB


def sim(name, *extra, out="o.h5", **kw) -> Case:
    """A `simulate` case: the small defaults plus ``extra`` (later flags win in argparse)."""
    kw.setdefault("outputs", (out,) if out and not out.startswith("/") else ())
    return Case(f"simulate/{name}", ["simulate", *SMALL, *extra, "--out", out], **kw)


def pot(name, formula, **kw) -> Case:
    return sim(f"potential/{name}", "--potential", formula, **kw)


def tr(name, *extra, data="good.h5", out="out", **kw) -> Case:
    d = ["--data", data] if data else []
    return Case(f"train/{name}", ["train", *d, "--out", out, "--epochs", 1, "--set", "train.steps_per_epoch=2",
                                  "--quiet", *extra], **kw)


def ev(name, *extra, run="run", **kw) -> Case:
    return Case(f"evaluate/{name}", ["evaluate", "--run", run, *extra], **kw)


def di(name, *extra, run="run", **kw) -> Case:
    return Case(f"distill/{name}", ["distill", "--run", run, "--sr-budget", 2, *extra], **kw)


RUN_SMALL = ["--n-sims", 20, "--method", "library", "--quiet"]
KILLED_RUN = ["run", "--n-sims", 20, "--method", "network", "--train-steps", 400, "--sr-evaluations", 2000,
              "--sr-budget", 5, "--quiet", "--out", "K"]


def rn(name, *extra, out="R", **kw) -> Case:
    kw.setdefault("check", check_file(f"{out}/result.json") if not out.startswith("/") else None)
    return Case(f"run/{name}", ["run", *RUN_SMALL, *extra, "--out", out], **kw)


def files(content: dict[str, str]) -> Callable[[Path], None]:
    """Setup writing text files (relative path -> text)."""
    def setup(ws: Path) -> None:
        for rel, text in content.items():
            p = ws / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
    return setup


def mkdirs(*rels) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        for r in rels:
            (ws / r).mkdir(parents=True, exist_ok=True)
    return setup


def chain(*setups) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        for s in setups:
            s(ws)
    return setup


def finished_run(ws: Path) -> None:
    """Setup copying the finished `run` folder ``done`` (built once beside the fixtures)."""
    shutil.copytree(ws.parent.parent / "extra" / "done", ws / "done", symlinks=True)


def run_edit(fn: Callable[[Path], None]) -> Callable[[Path], None]:
    """Setup that changes the copied run folder ``run``."""
    return lambda ws: fn(ws / "run")


def _evil_pickle(ws: Path, name: str, *, torch_zip: bool) -> None:
    marker = ws / MARKER

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch '{marker}'",))

    target = ws / "run" / name
    if torch_zip:
        import torch
        torch.save({"model": Evil(), "config": {}}, target)
    else:
        target.write_bytes(pickle.dumps({"model": Evil()}))


def evil(name: str, *, torch_zip: bool, drop_model: bool = False) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        if drop_model:
            (ws / "run" / "model.pt").unlink()
        _evil_pickle(ws, name, torch_zip=torch_zip)
    return setup


def foreign_checkpoint(ws: Path) -> None:
    import torch
    torch.save({"weights": torch.zeros(3), "epoch": 1}, ws / "run" / "model.pt")


def config_edit(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        p = ws / "run" / "config.json"
        d = json.loads(p.read_text())
        fn(d)
        p.write_text(json.dumps(d))
    return setup


def _set(d: dict, dotted: str, value) -> None:
    section, key = dotted.split(".")
    d["config"][section][key] = value


def truncate(rel: str, keep: float = 0.5) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        p = ws / rel
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * keep)])
    return setup


def aborted_run(ws: Path) -> None:
    """A `run` of spring killed -9 while training: R holds pipeline.json, data/ and train/ but no result."""
    p = spawn(ws, ["run", "--system", "spring", "--n-sims", 20, "--method", "network", "--train-steps", 100000,
                   "--quiet", "--out", "R"], tag="aborted")
    ok = wait_until(lambda: (ws / "R" / "train" / "config.json").exists(), p, 120)
    time.sleep(0.5)
    p.kill()
    if not ok:
        raise RuntimeError("the run to abort never reached training")


def wrong_system_data(ws: Path, o: Outcome) -> str | None:
    with h5py.File(ws / "R" / "data" / "train.h5", "r") as f:
        system = str(f.attrs.get("system"))
    return None if system == "r2" else f"exit 0 for --system r2, but it trained on R/data/train.h5 of {system!r}"


def simulate_cases() -> list[Case]:
    """simulate: sizes and numbers, output paths, potentials (hostile formulas)."""
    c: list[Case] = []
    c += [
        sim("n-sims-1e9", "--n-sims", 1_000_000_000),
        sim("n-bodies-1e6", "--n-bodies", 1_000_000),
        sim("steps-1e9", "--steps", 1_000_000_000, note="issue: wrote 7.5 GB in 60 s"),
        sim("substeps-1e9", "--substeps", 1_000_000_000),
        sim("n-sims-0", "--n-sims", 0), sim("n-sims-negative", "--n-sims", -5),
        sim("n-sims-float", "--n-sims", "4.5"), sim("n-sims-text", "--n-sims", "abc"),
        sim("n-bodies-0", "--n-bodies", 0), sim("n-bodies-1", "--n-bodies", 1), sim("n-bodies-negative", "--n-bodies", -3),
        sim("dim-4", "--dim", 4), sim("dim-1", "--dim", 1), sim("dim-0", "--dim", 0),
        sim("steps-0", "--steps", 0), sim("steps-1", "--steps", 1), sim("steps-negative", "--steps", -1),
        sim("seed-negative", "--seed", -1), sim("seed-2**64", "--seed", 2**64),
        sim("dt-nan", "--dt", "nan"), sim("dt-inf", "--dt", "inf"), sim("dt-0", "--dt", 0),
        sim("dt-negative", "--dt", -0.01), sim("dt-1e300", "--dt", 1e300),
        sim("substeps-0", "--substeps", 0), sim("max-substeps-0", "--max-substeps", 0),
        sim("max-substeps-negative", "--max-substeps", -1),
        sim("tolerance-nan", "--tolerance", "nan"), sim("tolerance-0", "--tolerance", 0),
        sim("tolerance-negative", "--tolerance", -1),
        sim("integrator-unknown", "--integrator", "euler"), sim("integrator-empty", "--integrator", ""),
        sim("damping-negative", "--damping", -1), sim("damping-nan", "--damping", "nan"),
        sim("damping-inf", "--damping", "inf"),
        sim("system-unknown", "--system", "sprng"), sim("system-empty", "--system", "", flag=accepted("--system '' (an empty name)")),
        sim("system-and-potential", "--system", "spring", "--potential", "(r-1)**2"),
        sim("paper-quirks-with-potential", "--potential", "(r-1)**2", "--paper-quirks"),
        sim("file-dtype-unknown", "--file-dtype", "float16"),
        sim("noise-negative", "--noise", -1), sim("noise-nan", "--noise", "nan"), sim("noise-inf", "--noise", "inf"),
        sim("noise-huge", "--noise", 1e10),
        sim("window-2", "--noise", 0.01, "--window", 2), sim("window-0", "--noise", 0.01, "--window", 0),
        sim("window-negative", "--noise", 0.01, "--window", -3),
        sim("window-1e6", "--noise", 0.01, "--window", 1_000_000),
        sim("noise-with-steps-2", "--noise", 0.01, "--steps", 2),
        sim("estimator-unknown", "--noise", 0.01, "--estimator", "kalman"),
        sim("unknown-flag", "--bogus", 1), sim("misspelt-flag", "--nsims", 4),
        sim("flag-without-value", "--steps"),
    ]
    # output paths
    c += [
        sim("out-proc", out="/proc/x.h5"), sim("out-sys", out="/sys/x.h5"),
        sim("out-parent-is-file", out="notes.txt/x.h5", protect=("notes.txt",)),
        sim("out-existing-dir", setup=mkdirs("sub/dir"), out="sub/dir", outputs=()),
        sim("out-existing-text-file", out="notes.txt", protect=("notes.txt",), outputs=()),
        sim("out-empty", out="", outputs=()),
        sim("out-dot", out=".", outputs=()),
        sim("out-existing-h5-failing", "--n-sims", 0, out="good.h5", outputs=(),
            note="a failing simulate must leave the earlier good.h5 as it was"),
        sim("out-existing-dir-long-sim", "--n-sims", 3000, "--steps", 200, setup=mkdirs("big.h5"), out="big.h5",
            outputs=(), flag=lambda ws, o: "late: the error came after the simulation" if o.seconds > 30 else None),
        Case("simulate/kill-9-then-rerun", ["simulate", *SMALL, "--out", "big.h5"], outputs=("big.h5",),
             runner=kill_then_rerun(["simulate", "--n-sims", 2000, "--steps", 2000, "--quiet", "--out", "big.h5"],
                                    tmp_exists), timeout=120,
             note="kill -9 during a long simulate, then the same --out again: no .tmp may remain"),
    ]
    # potentials
    hint_minus = misleading_if("expected one argument")
    c += [
        pot("power-tower", "r**r**r**r**r", note="issue: integrates past 60 s"),
        pot("exponent-tower", "r*9**9**9**9", note="issue: hangs in sympy while parsing"),
        pot("exp-overflow", "exp(1000*r)", note="issue: acc all NaN/inf written with exit 0"),
        pot("leading-minus", "-m1*m2/r", flag=hint_minus, note="must work or be a clean error"),
        Case("simulate/potential/leading-minus-equals", ["simulate", *SMALL, "--potential=-m1*m2/r", "--out", "o.h5"],
             outputs=("o.h5",)),
        pot("100kB", HUGE_FORMULA),
        pot("sqrt-negative", "sqrt(-r)", flag=misleading_if("ImaginaryUnit")),
        pot("one-over-zero", "1/0", flag=misleading_if("does not depend on r")),
        pot("empty", "", flag=misleading_if("not both")),
        pot("python-conditional", "r if r else 1", check=wrong_if_ok("a Python conditional was accepted as a formula")),
        pot("import", "__import__('os')"), pot("import-payload", PAYLOAD),
        pot("lambda", "lambda r: r", check=wrong_if_ok("a lambda was accepted as a formula")),
        pot("attribute", "r.__class__"), pot("unknown-name", "x**2"), pot("unicode", "r\u00b2"),
        pot("newline", "r\n+1"), pot("relation", "r > 1"), pot("boolean", "True"), pot("tuple", "r, r"),
        pot("empty-call", "Min()"), pot("deep-parens", "(" * 990 + "r" + ")" * 990),
        pot("exponent-huge", "r**(10**10)"), pot("float-overflow", "r**1e400"), pot("r**-1000", "r**-1000"),
        pot("exp-tower", "exp(exp(exp(r)))"), pot("nan-times-r", "nan*r"), pot("oo-times-r", "oo*r"),
        pot("zoo", "zoo*r"), pot("imaginary", "I*r"), pot("heaviside", "Heaviside(r-1)"),
        pot("zero-times-r", "0*r"), pot("factorial", "factorial(r)"),
        pot("ok-log", "m1*m2*log(r)"), pot("ok-xor-power", "r^2"), pot("ok-abs", "abs(r-1)"),
    ]

    return c


def derive_cases() -> list[Case]:
    """derive: bad input files, windows, output paths."""
    c: list[Case] = []

    def d(name, *extra, data="bad.h5", out="d.h5", **kw) -> Case:
        kw.setdefault("outputs", (out,) if not out.startswith("/") and out != "notes.txt" else ())
        return Case(f"derive/{name}", ["derive", "--data", data, "--out", out, "--quiet", *extra], **kw)
    c += [
        d("ok-pos-only", data="pos_only.h5"),
        d("missing-file", data="missing.h5"),
        d("directory", setup=crafted("directory")), d("text-file", setup=crafted("text")),
        d("truncated", setup=crafted("truncated")), d("empty-file", setup=crafted("empty")),
        d("zero-sims", setup=crafted("zero-sims")), d("zero-steps", setup=crafted("zero-steps")),
        d("pos-strings", setup=crafted("pos-strings")), d("pos-group", setup=crafted("pos-group")),
        d("pos-nan", setup=crafted("pos-nan")), d("pos-inf", setup=crafted("pos-inf")),
        d("dt-string", setup=crafted("dt-string")), d("dt-zero", setup=crafted("dt-zero")),
        d("dim4", setup=crafted("dim4")), d("n-bodies-1", setup=crafted("n-bodies-1")),
        d("no-dt", setup=crafted("no-dt")), d("dt-negative", setup=crafted("dt-negative")),
        d("window-2", "--window", 2, data="pos_only.h5"), d("window-0", "--window", 0, data="pos_only.h5"),
        d("window-1e6", "--window", 1_000_000, data="pos_only.h5"),
        d("out-is-input", data="pos_only.h5", out="pos_only.h5", protect=("pos_only.h5",)),
        d("out-proc", data="pos_only.h5", out="/proc/x.h5"),
        d("out-parent-is-file", data="pos_only.h5", out="notes.txt/d.h5"),
        d("out-existing-text-file", data="pos_only.h5", out="notes.txt", protect=("notes.txt",)),
        Case("derive/no-out-flag", ["derive", "--data", "pos_only.h5"]),
    ]

    return c


def info_cases() -> list[Case]:
    """info: unreadable and malformed files, hostile attributes."""
    c: list[Case] = []

    def i(name, kind=None, file="bad.h5", **kw) -> Case:
        return Case(f"info/{name}", ["info", file], setup=crafted(kind) if kind else None, **kw)
    c += [
        Case("info/ok-json", ["info", "good.h5", "--json"]),
        i("missing-file", file="missing.h5"), Case("info/no-argument", ["info"]),
        i("directory", "directory"), i("text-file", "text"), i("truncated", "truncated"), i("empty-file", "empty"),
        i("flipped-bytes", "flipped"), i("fifo", "fifo"), i("symlink-loop", "symlink-loop"),
        i("dangling-symlink", "dangling-symlink"), i("dev-null", file="/dev/null"),
        i("zero-sims", "zero-sims"), i("zero-steps", "zero-steps"), i("dt-string", "dt-string"),
        i("dt-nan", "dt-nan"), i("dim-string", "dim-string"), i("mass-strings", "mass-strings"),
        i("pos-strings", "pos-strings"), i("pos-group", "pos-group"), i("mass-group", "mass-group"),
        i("mass-nan", "mass-nan"), i("mass-negative", "mass-negative"), i("mass-zero", "mass-zero"),
        i("charge-nan", "charge-nan"), i("pos-3d", "pos-3d"), i("mass-shape", "mass-shape"),
        i("t-shape", "t-shape"), i("n-bodies-mismatch", "n-bodies-mismatch"), i("no-attrs", "no-attrs"),
        i("dim4", "dim4"),
        i("system-wormhole", "system-wormhole", should_succeed=True, note="own data must be summarised"),
        Case("info/system-wormhole-json", ["info", "bad.h5", "--json"], setup=crafted("system-wormhole"),
             should_succeed=True),
        i("system-formula-hang", "system-hang"), i("system-formula-code", "system-code"),
        i("system-int", "system-int"), i("system-binary", "system-binary"),
        i("sparse-1e9-sims", "sparse-huge"), i("no-pos", "no-pos"), i("no-mass", "no-mass"),
    ]

    return c


def train_cases() -> list[Case]:
    """train: bad data, numbers, --set, output folders, resume, concurrency, kill -9."""
    c: list[Case] = []
    c += [
        tr("ok-control"),
        tr("missing-file", data="missing.h5"), tr("no-data", data=None),
        tr("directory", data="bad.h5", setup=crafted("directory")), tr("text-file", data="bad.h5", setup=crafted("text")),
        tr("truncated", data="bad.h5", setup=crafted("truncated")),
        tr("zero-sims", data="bad.h5", setup=crafted("zero-sims")),
        tr("one-sim", data="bad.h5", setup=crafted("one-sim")),
        tr("dt-string", data="bad.h5", setup=crafted("dt-string")),
        tr("mass-strings", data="bad.h5", setup=crafted("mass-strings")),
        tr("pos-strings", data="bad.h5", setup=crafted("pos-strings")),
        tr("acc-strings", data="bad.h5", setup=crafted("acc-strings")),
        tr("pos-group", data="bad.h5", setup=crafted("pos-group")),
        tr("acc-group", data="bad.h5", setup=crafted("acc-group")),
        tr("acc-nan", data="bad.h5", setup=crafted("acc-nan")), tr("acc-inf", data="bad.h5", setup=crafted("acc-inf")),
        tr("pos-inf", data="bad.h5", setup=crafted("pos-inf")),
        tr("mass-negative", data="bad.h5", setup=crafted("mass-negative")),
        tr("mass-zero", data="bad.h5", setup=crafted("mass-zero")),
        tr("no-acc", data="pos_only.h5"), tr("acc-shape", data="bad.h5", setup=crafted("acc-shape")),
        tr("data-is-fifo", data="bad.h5", setup=crafted("fifo")), tr("dim4", data="bad.h5", setup=crafted("dim4")),
        tr("n-bodies-1", data="bad.h5", setup=crafted("n-bodies-1")),
        tr("float16", data="bad.h5", setup=crafted("float16")), tr("int-pos", data="bad.h5", setup=crafted("int-pos")),
        tr("system-wormhole", data="bad.h5", setup=crafted("system-wormhole"), should_succeed=True),
        tr("system-formula-code", data="bad.h5", setup=crafted("system-code")),
        tr("sparse-1e9-sims", data="bad.h5", setup=crafted("sparse-huge")),
        tr("test-data-missing", "--test-data", "missing.h5",
           flag=lambda ws, o: accepted("a missing --test-data")(ws, o) or late_if_exists("out/model.pt")(ws, o)),
        tr("test-data-3d", "--test-data", "good3d.h5",
           flag=lambda ws, o: accepted("3D --test-data for 2D training")(ws, o) or late_if_exists("out/model.pt")(ws, o)),
        tr("lr-inf", "--lr", "inf"), tr("lr-nan", "--lr", "nan"), tr("lr-0", "--lr", 0), tr("lr-negative", "--lr", -1),
        tr("epochs-0", "--epochs", 0), tr("epochs-negative", "--epochs", -1),
        tr("batch-size-negative", "--batch-size", -5), tr("batch-size-0", "--batch-size", 0),
        tr("batch-size-1e9", "--batch-size", 10**9),
        tr("threads-0", "--threads", 0), tr("threads-negative", "--threads", -1), tr("threads-10000", "--threads", 10000,
                                                                               note="under the sweep's 6 GiB address-space limit"),
        tr("hidden-0", "--hidden", 0), tr("hidden-negative", "--hidden", -1), tr("hidden-1e7", "--hidden", 10**7),
        tr("layers-0", "--layers", 0), tr("layers-negative", "--layers", -1),
        tr("seed-negative", "--seed", -1), tr("seed-2**64", "--seed", 2**64),
        Case("train/time-budget-too-small", ["train", "--data", "good.h5", "--out", "out", "--time-budget", 1e-9,
                                             "--quiet"], note="issue: saves an untrained 0-step model, exit 0"),
        Case("train/time-budget-0", ["train", "--data", "good.h5", "--out", "out", "--time-budget", 0, "--quiet"]),
        Case("train/time-budget-nan", ["train", "--data", "good.h5", "--out", "out", "--time-budget", "nan", "--quiet"]),
        Case("train/epochs-and-time-budget", ["train", "--data", "good.h5", "--out", "out", "--epochs", 1,
                                              "--time-budget", 5]),
        tr("model-unknown", "--model", "nonsense"), tr("edge-inputs-unknown", "--edge-inputs", "nonsense"),
        tr("preset-unknown", "--preset", "nonsense"),
        tr("set-l1-weight-abc", "--set", "model.l1_weight=abc"), tr("set-unknown-key", "--set", "nosuch=1"),
        tr("set-unknown-option", "--set", "model.nosuch=1"), tr("set-unknown-section", "--set", "optim.lr=1"),
        tr("set-lr-negative", "--set", "train.lr=-1"), tr("set-lr-nan", "--set", "train.lr=nan"),
        tr("set-no-equals", "--set", "noequals"), tr("set-empty-key", "--set", "=5"),
        tr("set-val-fraction-1", "--set", "data.val_fraction=1"), tr("set-max-sims-0", "--set", "data.max_sims=0"),
        tr("set-steps-per-epoch-0", "--set", "train.steps_per_epoch=0"), tr("set-hidden-abc", "--set", "model.hidden=abc"),
        tr("set-loss-unknown", "--set", "train.loss=bogus"), tr("set-variant-none", "--set", "model.variant=none"),
        tr("set-batch-size-float", "--set", "train.batch_size=1.5"),
        tr("set-step-stride-1000", "--set", "data.step_stride=1000"),
        tr("set-precision-unknown", "--set", "train.precision=fp16"),
        tr("set-pct-start-nan", "--set", "train.pct_start=nan"),
        tr("unknown-flag", "--learning-rate", 0.1),
        tr("out-proc", out="/proc/run"), tr("out-is-file", out="notes.txt", protect=("notes.txt",)),
        tr("out-parent-is-file", out="notes.txt/run", protect=("notes.txt",)),
        tr("out-existing-run", out="run", protect=("run/model.pt",),
           note="a finished run given as --out without --resume: the earlier model must survive"),
        Case("train/resume-empty-folder", ["train", "--out", "empty", "--resume"], setup=mkdirs("empty")),
        Case("train/resume-missing-folder", ["train", "--out", "nowhere", "--resume"]),
        Case("train/resume-corrupt-config", ["train", "--out", "run", "--resume"],
             setup=chain(run_edit(lambda r: (r / "model.pt").unlink()), truncate("run/config.json", 0.4)),
             check=check_train("run")),
        Case("train/resume-config-list", ["train", "--out", "run", "--resume"],
             setup=chain(run_edit(lambda r: (r / "model.pt").unlink()), files({"run/config.json": "[]"})),
             check=check_train("run")),
        Case("train/resume-config-unknown-key", ["train", "--out", "run", "--resume"],
             setup=chain(run_edit(lambda r: (r / "model.pt").unlink()),
                         config_edit(lambda d: _set(d, "model.nosuch", 1))), check=check_train("run")),
        Case("train/resume-corrupt-checkpoint", ["train", "--out", "run", "--resume"],
             setup=chain(run_edit(lambda r: (r / "model.pt").unlink()), truncate("run/checkpoint.pt", 0.3)),
             check=check_train("run")),
        Case("train/resume-evil-checkpoint", ["train", "--out", "run", "--resume"],
             setup=evil("checkpoint.pt", torch_zip=True, drop_model=True), check=check_train("run")),
        Case("train/resume-with-lr", ["train", "--out", "run", "--resume", "--lr", 0.1]),
        Case("train/resume-finished", ["train", "--out", "run", "--resume", "--quiet"], protect=("run/model.pt",),
             check=lambda ws, o: None),
        Case("train/concurrent-same-out", [*CONCURRENT_TRAIN, "(twice at once: --seed 1, --seed 2)"],
             runner=concurrent_train, timeout=180, note="issue: both print done, the first model is lost"),
        Case("train/kill-9-then-resume", ["train", "--out", "k", "--resume", "--quiet"], check=check_train("k"),
             runner=kill_then_rerun(["train", "--data", "good.h5", "--out", "k", "--epochs", 3, "--set",
                                     "train.steps_per_epoch=400", "--quiet"],
                                    lambda ws: (ws / "k" / "checkpoint.pt").exists()), timeout=180),
    ]

    return c


def evaluate_cases() -> list[Case]:
    """evaluate: not-a-run folders, corrupt or hostile model files, bad test data."""
    c: list[Case] = []
    c += [
        ev("ok-control"), ev("ok-json", "--json"),
        ev("missing-run", run="nowhere"), ev("empty-folder", run="empty", setup=mkdirs("empty")),
        ev("run-is-file", run="good.h5"), ev("run-is-pipeline-folder", run="done", setup=finished_run),
        ev("data-missing", "--data", "missing.h5"), ev("data-text", "--data", "notes.txt"),
        ev("data-3d", "--data", "good3d.h5"), ev("data-zero-sims", "--data", "bad.h5", setup=crafted("zero-sims")),
        ev("data-acc-nan", "--data", "bad.h5", setup=crafted("acc-nan")),
        ev("data-pos-strings", "--data", "bad.h5", setup=crafted("pos-strings")),
        ev("data-pos-group", "--data", "bad.h5", setup=crafted("pos-group")),
        ev("data-dt-string", "--data", "bad.h5", setup=crafted("dt-string")),
        ev("data-no-acc", "--data", "pos_only.h5"), ev("data-n-bodies-1", "--data", "bad.h5", setup=crafted("n-bodies-1")),
        ev("data-wormhole", "--data", "bad.h5", setup=crafted("system-wormhole"), should_succeed=True),
        ev("data-sparse-1e9-sims", "--data", "bad.h5", setup=crafted("sparse-huge")),
        ev("model-truncated", setup=truncate("run/model.pt", 0.5)),
        ev("model-text", setup=files({"run/model.pt": "not a model\n"})),
        ev("model-empty", setup=files({"run/model.pt": ""})),
        ev("model-evil-pickle", setup=evil("model.pt", torch_zip=False)),
        ev("model-evil-torch-zip", setup=evil("model.pt", torch_zip=True)),
        ev("model-foreign-checkpoint", setup=foreign_checkpoint),
        ev("model-directory", setup=run_edit(lambda r: ((r / "model.pt").unlink(), (r / "model.pt").mkdir()))),
        ev("only-checkpoint", setup=run_edit(lambda r: (r / "model.pt").unlink())),
        ev("no-model-no-checkpoint", setup=run_edit(lambda r: [(r / n).unlink() for n in ("model.pt", "checkpoint.pt")])),
        ev("config-truncated", setup=truncate("run/config.json", 0.5)),
        ev("config-hidden-string", setup=config_edit(lambda d: _set(d, "model.hidden", "abc"))),
        ev("config-hidden-changed", setup=config_edit(lambda d: _set(d, "model.hidden", 8))),
        ev("history-corrupt", setup=files({"run/history.csv": "epoch,step,force_r2\n1,2,abc\n"})),
        ev("data-file-deleted", setup=lambda ws: [(ws / n).unlink() for n in ("good.h5", "test.h5")]),
    ]

    return c


def distill_cases() -> list[Case]:
    """distill: the same run corruptions, bad options."""
    c: list[Case] = []
    c += [
        di("ok-control", timeout=120, check=lambda ws, o: None if "discovered:" in o.stdout else "no formula printed"),
        di("missing-run", run="nowhere"), di("empty-folder", run="empty", setup=mkdirs("empty")),
        di("run-is-file", run="good.h5"), di("run-is-pipeline-folder", run="done", setup=finished_run),
        di("model-truncated", setup=truncate("run/model.pt", 0.5)),
        di("model-evil-pickle", setup=evil("model.pt", torch_zip=False)),
        di("model-evil-torch-zip", setup=evil("model.pt", torch_zip=True)),
        di("config-truncated", setup=truncate("run/config.json", 0.5)),
        di("history-corrupt", setup=files({"run/history.csv": "epoch,step,force_r2\n1,2,abc\n"})),
        di("data-file-deleted", setup=lambda ws: [(ws / n).unlink() for n in ("good.h5", "test.h5")]),
        di("backend-unknown", "--backend", "nosuch"), di("backend-pysr-missing", "--backend", "pysr"),
        di("backend-gplearn-missing", "--backend", "gplearn"),
        di("search-unknown", "--search", "nosuch"), di("select-unknown", "--select", "nosuch"),
        di("sr-budget-0", "--sr-budget", 0), di("sr-budget-negative", "--sr-budget", -1),
        di("sr-budget-nan", "--sr-budget", "nan"),
        di("trim-closest-1.5", "--trim-closest", 1.5), di("trim-closest-negative", "--trim-closest", -0.1),
        di("trim-closest-nan", "--trim-closest", "nan"), di("trim-largest-1", "--trim-largest", 1),
        di("seed-negative", "--seed", -1),
    ]

    return c


def run_cases() -> list[Case]:
    """run: options checked before simulating, hostile formulas, run folders as records."""
    c: list[Case] = []
    hint_minus = misleading_if("expected one argument")
    c += [
        rn("ok-control"),
        Case("run/model-unknown-default-sizes", ["run", "--model", "nonsense", "--quiet", "--out", "R"], timeout=120,
             check=wrong_if_ok("an unknown --model was accepted (exit 0)"),
             flag=lambda ws, o: late_if_exists("R/data/train.h5")(ws, o) or slow_error()(ws, o),
             note="must fail before simulating"),
        rn("model-unknown-network", "--method", "network", "--model", "nonsense", check=wrong_if_ok("--model nonsense accepted"),
           flag=late_if_exists("R/data/train.h5")),
        rn("edge-inputs-unknown", "--method", "network", "--edge-inputs", "nonsense",
           flag=late_if_exists("R/data/train.h5")),
        rn("system-unknown", "--system", "nosuch"), rn("method-unknown", "--method", "nosuch"),
        rn("dim-4", "--dim", 4), rn("dim-1", "--dim", 1), rn("n-bodies-1", "--n-bodies", 1),
        rn("n-bodies-0", "--n-bodies", 0), rn("n-sims-0", "--n-sims", 0), rn("n-sims-negative", "--n-sims", -1),
        rn("n-sims-1e9", "--n-sims", 1_000_000_000), rn("n-bodies-1e6", "--n-bodies", 1_000_000),
        rn("seed-negative", "--seed", -1), rn("time-budget-0", "--time-budget", 0),
        rn("time-budget-nan", "--time-budget", "nan"), rn("sr-budget-negative", "--sr-budget", -1),
        rn("train-steps-0", "--train-steps", 0), rn("sr-evaluations-0", "--sr-evaluations", 0),
        rn("sr-patience-0", "--sr-patience", 0), rn("noise-negative", "--noise", -1), rn("noise-nan", "--noise", "nan"),
        rn("library-term-100kB", "--library-term", HUGE_FORMULA),
        rn("library-term-payload", "--library-term", PAYLOAD), rn("library-term-conditional", "--library-term", "r if r else 1",
                                                                  check=wrong_if_ok("a Python conditional was accepted")),
        rn("library-term-empty", "--library-term", ""), rn("library-term-exponent-tower", "--library-term", "r*9**9**9**9"),
        rn("potential-exponent-tower", "--potential", "r*9**9**9**9"),
        rn("potential-leading-minus", "--potential", "-m1*m2/r", flag=hint_minus),
        rn("potential-import", "--potential", "__import__('os')"),
        rn("potential-exp-overflow", "--potential", "exp(1000*r)"),
        rn("out-proc", out="/proc/run"), rn("out-is-file", out="notes.txt", protect=("notes.txt",)),
        rn("out-parent-is-file", out="notes.txt/R", protect=("notes.txt",)),
        rn("out-holds-unrecorded-result", setup=files({"R/result.json": "{}\n"}), protect=("R/result.json",),
           check=lambda ws, o: None, note="a folder holding someone's result.json, no pipeline.json"),
        rn("rerun-finished-same", out="done", setup=finished_run, check=lambda ws, o: None,
           protect=("done/result.json", "done/pipeline.json", "done/data/train.h5")),
        rn("rerun-finished-other-seed", "--seed", 1, out="done", setup=finished_run, check=wrong_if_ok(
            "exit 0 for another --seed in a finished run folder"),
           protect=("done/result.json", "done/pipeline.json", "done/data/train.h5")),
        rn("out-is-train-run", out="run", protect=("run/model.pt", "run/config.json")),
        Case("run/rerun-aborted-other-system",
             ["run", "--system", "r2", "--n-sims", 20, "--method", "network", "--train-steps", 5, "--sr-evaluations",
              1000, "--sr-budget", 5, "--quiet", "--out", "R"], setup=aborted_run, timeout=180,
             protect=("R/data/train.h5", "R/pipeline.json"), check=wrong_system_data,
             note="issue: trains on the old data and rewrites pipeline.json to the new system"),
        Case("run/kill-9-then-rerun", KILLED_RUN, check=check_file("K/result.json"), timeout=240,
             runner=kill_then_rerun(KILLED_RUN, lambda ws: (ws / "K" / "train" / "checkpoint.pt").exists()),
             note="the same command again after kill -9 while training: it must finish, leaving no .tmp"),
    ]

    return c


def other_cases() -> list[Case]:
    """demo and the top level."""
    c: list[Case] = []
    c += [
        Case("demo/seed-negative", ["demo", "--seed", -1, "--quiet", "--out", "D"], check=check_file("D/demo.json")),
        Case("demo/seed-2**64", ["demo", "--seed", 2**64, "--quiet", "--out", "D"], check=check_file("D/demo.json")),
        Case("demo/seed-text", ["demo", "--seed", "abc", "--out", "D"]),
        Case("demo/out-proc", ["demo", "--quiet", "--out", "/proc/demo"]),
        Case("demo/out-is-file", ["demo", "--quiet", "--out", "notes.txt"], protect=("notes.txt",)),
        Case("demo/out-parent-is-file", ["demo", "--quiet", "--out", "notes.txt/D"], protect=("notes.txt",)),
        Case("demo/unknown-flag", ["demo", "--bogus"]),
        Case("cli/no-command", []), Case("cli/unknown-command", ["nosuch"]), Case("cli/version", ["--version"]),
        Case("cli/help-typo", ["simulat", "--help"]),
    ]
    return c


def cases() -> list[Case]:
    c = (simulate_cases() + derive_cases() + info_cases() + train_cases() + evaluate_cases() + distill_cases()
         + run_cases() + other_cases())
    names = [x.name for x in c]
    dup = [n for n, k in Counter(names).items() if k > 1]
    assert not dup, dup
    return c


# ---------------------------------------------------------------------------------------------
# Classification


def _error_lines(stderr: str) -> tuple[list[str], bool]:
    """The non-empty stderr lines without tqdm fragments, and whether fragments were dropped."""
    lines, progress = [], False
    for raw in stderr.replace("\r", "\n").split("\n"):
        s = raw.strip()
        if not s:
            continue
        if PROGRESS.search(s):
            progress = True
            continue
        lines.append(s)
    return lines, progress


def no_fix_hint(line: str) -> bool:
    text = line[len("error: "):] if line.startswith("error: ") else line
    hints = [h for h in re.findall(r"\(([^()]*)\)", text) if not re.match(r"\s*got\b", h) and re.search(r"[A-Za-z]{3}", h)]
    return not hints and not FIX_WORDS.search(text)


def snapshot(ws: Path) -> dict[str, str]:
    out = {}
    for p in ws.rglob("*"):
        rel = str(p.relative_to(ws))
        if (p.is_symlink() or not p.is_file() or p.name.endswith((".tmp", ".lock"))
                or p.name.startswith((".cmd.", ".setup.", ".killed.", ".first.", ".second.", ".aborted."))):
            continue
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out[rel] = h.hexdigest()
    return out


def classify(case: Case, ws: Path, o: Outcome, before: dict[str, str], marker_before: bool) -> dict:
    lines, progress = _error_lines(o.stderr)
    last = lines[-1] if lines else ""
    flags, reasons = [], list(o.lost)
    after = snapshot(ws)
    changed = [k for k, h in before.items() if after.get(k) != h]
    for rel in case.protect:
        if rel in changed:
            reasons.append(f"{rel} (an earlier result) was changed or removed")
    if o.rc not in (0, None) and not o.timed_out:
        others = [k for k in changed if k not in case.protect]
        if others:
            reasons.append(f"failed, and changed or removed earlier files: {', '.join(others[:3])}")
    if o.rc == 0:
        for rel in case.outputs:
            r = finite_h5(ws / rel)
            if r:
                reasons.append(r)
        chk = case.check if case.check is not None else DEFAULT_CHECKS.get(str(case.args[0]) if case.args else "")
        r = chk(ws, o) if chk else None
        if r:
            reasons.append(r)
    executed = (ws / MARKER).exists() and not marker_before
    xfsz = o.rc == -signal.SIGXFSZ
    if executed:
        cls = "executed"
    elif o.timed_out or xfsz:
        cls = "hang"
    elif reasons:
        cls = "data-lost"
    elif "Traceback" in o.stderr or o.rc not in (0, 2):
        cls = "traceback"
    elif o.rc == 0:
        cls = "ok"
    elif len(lines) == 1 and last.startswith("error: "):
        cls = "clean-error"
    else:
        cls = "multi-line"
    if xfsz:
        flags.append(f"runaway write: killed by the sweep's {FSIZE_LIMIT >> 30} GiB file-size limit")
    if o.rc == 2 and last and no_fix_hint(last):
        flags.append("no-fix-hint")
    if o.rc == 2 and len(last) > 300:
        flags.append(f"echo ({len(last)} chars)")
    if progress and o.rc == 2:
        flags.append("progress")
    if case.should_succeed and o.rc != 0:
        flags.append("should-succeed")
    if case.flag is not None and not o.timed_out:
        f = case.flag(ws, o)
        if f:
            flags.append(f)
    if "Traceback" in o.stderr:
        exc = [ln for ln in lines if re.match(r"^[A-Za-z_.]+(Error|Exception|Interrupt|Exit)\b", ln)]
        if exc:
            last = exc[-1]
    if o.rc == 2 and not lines:
        last = "(stderr empty)"
    if o.timed_out:
        last = f"(killed after {o.seconds:.0f} s) " + last
    if cls == "traceback" and o.rc not in (0, 2) and "Traceback" not in o.stderr:
        last = f"(exit {o.rc}) " + last
    return {"name": case.name, "command": case.command, "rc": o.rc, "seconds": round(o.seconds, 2), "class": cls,
            "last_line": last, "flags": flags, "reasons": reasons, "notes": o.notes + ([case.note] if case.note else []),
            "stderr_lines": len(lines)}


def run_case(case: Case, fixtures: Path, root: Path, index: int, timeout: float, keep: bool) -> dict:
    ws = root / f"{index:03d}-{re.sub(r'[^A-Za-z0-9.-]+', '_', case.name)}"
    shutil.copytree(fixtures, ws, symlinks=True)
    try:
        if case.setup:
            case.setup(ws)
        before = snapshot(ws)
        marker_before = (ws / MARKER).exists()
        o = (case.runner or run_plain)(case, ws, case.timeout or timeout)
        rec = classify(case, ws, o, before, marker_before)
    except Exception as e:  # the sweep's own fault: report it, never hide it as a class
        rec = {"name": case.name, "command": case.command, "rc": None, "seconds": 0.0, "class": "sweep-error",
               "last_line": f"{type(e).__name__}: {e}", "flags": [], "reasons": [], "notes": [], "stderr_lines": 0}
    finally:
        if not keep:
            shutil.rmtree(ws, ignore_errors=True)
    rec["index"] = index
    return rec


# ---------------------------------------------------------------------------------------------
# Report


def summarise(records: list[dict]) -> str:
    classes = list(CLASSES) + sorted({r["class"] for r in records} - set(CLASSES))
    per = defaultdict(Counter)
    for r in records:
        per[r["name"].split("/")[0]][r["class"]] += 1
    total = Counter(r["class"] for r in records)
    head = f"{'command':10s}" + "".join(f"{k:>13s}" for k in classes) + f"{'total':>8s}"
    rows = [head] + [f"{cmd:10s}" + "".join(f"{per[cmd][k]:13d}" for k in classes) + f"{sum(per[cmd].values()):8d}"
                     for cmd in sorted(per)]
    rows.append(f"{'all':10s}" + "".join(f"{total[k]:13d}" for k in classes) + f"{len(records):8d}")
    hints = sum("no-fix-hint" in r["flags"] for r in records)
    rows.append(f"flags: no-fix-hint {hints}, " + ", ".join(
        f"{k} {v}" for k, v in sorted(Counter(f.split(':')[0].split(' (')[0] for r in records for f in r["flags"]
                                              if f != "no-fix-hint").items())))
    return "\n".join(rows)


def _cell(text: str, n: int) -> str:
    text = str(text).replace("\n", " ")
    text = text if len(text) <= n else text[: n - 3] + "..."
    return text.replace("|", "\\|")


def markdown(records: list[dict], meta: dict) -> str:
    out = ["# Hostile-input sweep", "",
           f"{len(records)} cases, timeout {meta['timeout']} s per case, jobs {meta['jobs']}, "
           f"{meta['seconds']:.0f} s in all, CLI start-up ~{meta['startup']:.1f} s; `{meta['command']}`", "",
           "```", summarise(records), "```", "",
           "| # | case | command | class | s | flags / why | last stderr line |",
           "|---|---|---|---|---|---|---|"]
    for r in records:
        why = "; ".join(r["flags"] + r["reasons"])
        out.append(f"| {r['index']} | {_cell(r['name'], 50)} | `{_cell(r['command'], 80)}` | {r['class']} | "
                   f"{r['seconds']:.1f} | {_cell(why, 120)} | {_cell(r['last_line'], 120)} |")
    bad = [r for r in records if r["class"] in BAD or r["class"] == "sweep-error"]
    out += ["", f"## Not ok and not a clean error ({len(bad)})", ""]
    out += [f"- **{r['class']}** {r['name']}: `{_cell(r['command'], 100)}`: {_cell(r['last_line'], 160)}"
            + (f" ({'; '.join(r['reasons'])})" if r["reasons"] else "") for r in bad]
    hint = [r for r in records if "no-fix-hint" in r["flags"]]
    out += ["", f"## Error lines without a fix hint ({len(hint)})", ""]
    out += [f"- {r['name']}: `{_cell(r['command'], 100)}`: {_cell(r['last_line'], 160)}" for r in hint]
    other = [r for r in records if any(f != "no-fix-hint" for f in r["flags"])]
    out += ["", f"## Other flags ({len(other)})", ""]
    out += [f"- {r['name']}: `{_cell(r['command'], 100)}`: {'; '.join(f for f in r['flags'] if f != 'no-fix-hint')}: "
            f"{_cell(r['last_line'], 120)}" for r in other]
    return "\n".join(out) + "\n"


def startup_seconds() -> float:
    t0 = time.perf_counter()
    subprocess.run(cli(["run", "--help"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="write a Markdown table of every case and the summary")
    p.add_argument("--json", type=Path, help="write the raw records")
    p.add_argument("--only", action="append", help="run only cases whose name or command holds this (repeatable)")
    p.add_argument("--jobs", type=int, default=1, help="cases run in parallel (default 1)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it is a hang (default 60; "
                                                               "a few multi-process cases allow more)")
    p.add_argument("--keep", action="store_true", help="keep the workspaces (printed) for inspection")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    a = p.parse_args(argv)
    all_cases = cases()
    chosen = [(k, x) for k, x in enumerate(all_cases)
              if not a.only or any(s in x.name or s in x.command for s in a.only)]
    if a.list:
        for k, x in chosen:
            print(f"{k:3d} {x.name:45s} {_cell(x.command, 100)}")
        print(f"{len(chosen)} of {len(all_cases)} cases")
        return 0
    root = Path(tempfile.mkdtemp(prefix="symdistill-hostile-"))
    t0 = time.perf_counter()
    startup = STARTUP[0] = startup_seconds()
    print(f"{len(chosen)} of {len(all_cases)} cases, {a.jobs} at a time, timeout {a.timeout:g} s; CLI start-up "
          f"{startup:.1f} s; workspaces in {root}", flush=True)
    build_fixtures(root / "fixtures")
    print(f"fixtures built ({time.perf_counter() - t0:.0f} s)", flush=True)
    records = []
    with cf.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        futures = {pool.submit(run_case, x, root / "fixtures", root / "cases", k, a.timeout, a.keep): k
                   for k, x in chosen}
        for n, fut in enumerate(cf.as_completed(futures), 1):
            r = fut.result()
            records.append(r)
            print(f"[{n:3d}/{len(chosen)}] {r['class']:12s} {r['seconds']:6.1f}s  {r['name']}: "
                  f"{_cell(r['last_line'], 110)}", flush=True)
    records.sort(key=lambda r: r["index"])
    meta = {"timeout": a.timeout, "jobs": a.jobs, "seconds": time.perf_counter() - t0, "startup": startup,
            "command": "nice -n 19 .venv/bin/python benchmarks/hostile.py " + " ".join(argv or sys.argv[1:])}
    print()
    print(summarise(records))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(markdown(records, meta))
        print(f"wrote {a.out}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"meta": meta, "records": records}, indent=2) + "\n")
        print(f"wrote {a.json}")
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"workspaces kept in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
