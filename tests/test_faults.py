"""Fault tests: kill -9 at random points of simulate, train, distill and run, then the same command again.

The contract (issue 12): the re-run completes, its result equals an uninterrupted run's (bit-exact
where the seed allows: datasets and trained weights; the formulas of distill and run), no earlier
file is damaged and no temporary file is left. A full disk gives one clean line and leaves earlier
results intact. Kill points are drawn from a seeded generator over the uninterrupted run's duration.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "symdistill.cli"]
RNG = np.random.default_rng(12)


def _run(args, cwd, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _timed(args, cwd) -> float:
    t0 = time.perf_counter()
    proc = _run(args, cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return time.perf_counter() - t0


def _killed(args, cwd, after: float) -> int | None:
    """Start the command, SIGKILL its process group ``after`` seconds later; its exit code if it ended first."""
    proc = subprocess.Popen(CLI + args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        return proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def _kill_points(duration: float, n: int) -> list[float]:
    """``n`` seeded points in the run, past the interpreter's start-up (~2.5 s, a third of the shortest
    command) and before 75% of the reference: the reference runs first, on cold caches, and later runs
    of the same command took 75-85% of its time (measured: 9.7 s, then 8.1 and 7.4 s), so a point near
    its end often came after the command had finished."""
    return sorted(float(x) for x in RNG.uniform(0.35 * duration, 0.75 * duration, n))


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.tmp")]


def _datasets(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][...] for k in f}


def _same_arrays(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _differences(a: dict, b: dict) -> list[str]:
    """What differs between two files' datasets, for the failure message."""
    out = [f"datasets {sorted(a)} vs {sorted(b)}"] if a.keys() != b.keys() else []
    for k in sorted(a.keys() & b.keys()):
        if a[k].shape != b[k].shape:
            out.append(f"{k}: shape {a[k].shape} vs {b[k].shape}")
        elif not np.array_equal(a[k], b[k]):
            bad = np.argwhere(a[k] != b[k])
            out.append(f"{k}: {len(bad)} values differ, first at {bad[0].tolist()} "
                       f"({a[k][tuple(bad[0])]!r} vs {b[k][tuple(bad[0])]!r})")
    return out


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", map_location="cpu", weights_only=True)["model"]


@pytest.fixture
def earlier(tmp_path):
    """An earlier result in the workspace that no command below may touch."""
    folder = tmp_path / "earlier"
    folder.mkdir()
    (folder / "notes.txt").write_text("an earlier result\n")
    proc = _run(["simulate", "--n-sims", "2", "--steps", "5", "--out", str(folder / "old.h5"), "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    return folder, _hashes(folder)


def test_simulate_killed_then_rerun_writes_the_uninterrupted_file(tmp_path, earlier):
    args = ["simulate", "--system", "spring", "--n-sims", "64", "--steps", "400", "--quiet"]
    duration = _timed(args + ["--out", "ref.h5"], tmp_path)
    ref = _datasets(tmp_path / "ref.h5")
    killed = []
    for k, at in enumerate(_kill_points(duration, 3)):
        out = f"out{k}.h5"
        killed.append(_killed(args + ["--out", out], tmp_path, at))
        assert _run(args + ["--out", out], tmp_path).returncode == 0
        assert _same_arrays(_datasets(tmp_path / out), ref)
    assert None in killed  # at least one kill landed while the command ran
    assert _temporaries(tmp_path) == []  # the killed writers' temporaries were removed by the re-runs
    assert _hashes(earlier[0]) == earlier[1]


def test_train_killed_then_rerun_resumes_to_the_uninterrupted_weights(tmp_path, earlier):
    assert _run(["simulate", "--n-sims", "40", "--steps", "50", "--out", "data.h5", "--quiet"], tmp_path).returncode == 0
    data_hash = _hashes(tmp_path)["data.h5"]
    args = ["train", "--data", "data.h5", "--epochs", "8", "--threads", "1", "--set", "train.steps_per_epoch=25",
            "--set", "model.hidden=32", "--quiet"]
    duration = _timed(args + ["--out", "ref"], tmp_path)
    ref = _weights(tmp_path / "ref")
    killed = []
    for k, at in enumerate(_kill_points(duration, 3)):
        out = f"run{k}"
        killed.append(_killed(args + ["--out", out], tmp_path, at))
        proc = _run(args + ["--out", out], tmp_path)  # the same command: continues from the checkpoint
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = _weights(tmp_path / out)
        assert got.keys() == ref.keys() and all(torch.equal(got[n], ref[n]) for n in ref), f"kill at {at:.1f} s"
    assert _hashes(tmp_path)["data.h5"] == data_hash
    assert None in killed  # at least one kill landed while the command ran
    assert _temporaries(tmp_path) == []
    assert _hashes(earlier[0]) == earlier[1]


DISTILLED = ("edge_formulas", "node_formulas", "search", "symbolic_model", "recovered", "components")


def test_distill_killed_then_rerun_gives_the_uninterrupted_formulas(tmp_path, earlier):
    assert _run(["simulate", "--n-sims", "40", "--steps", "50", "--out", "data.h5", "--quiet"], tmp_path).returncode == 0
    train = ["train", "--data", "data.h5", "--epochs", "4", "--threads", "1", "--set", "train.steps_per_epoch=25",
             "--set", "model.hidden=32", "--quiet", "--out", "run"]
    assert _run(train, tmp_path).returncode == 0
    shutil.copytree(tmp_path / "run", tmp_path / "ref")
    args = ["distill", "--sr-evaluations", "3000", "--seed", "1", "--json"]
    duration = _timed(args + ["--run", "ref"], tmp_path)
    ref = json.loads((tmp_path / "ref" / "distill.json").read_text())
    model = _hashes(tmp_path / "run")["model.pt"]
    killed = []
    for at in _kill_points(duration, 2):
        killed.append(_killed(args + ["--run", "run"], tmp_path, at))
        assert _hashes(tmp_path / "run")["model.pt"] == model  # the trained model is never touched
        proc = _run(args + ["--run", "run"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = json.loads((tmp_path / "run" / "distill.json").read_text())
        assert {k: got[k] for k in DISTILLED} == {k: ref[k] for k in DISTILLED}, f"kill at {at:.1f} s"
    assert None in killed  # at least one kill landed while the command ran
    assert _temporaries(tmp_path) == []
    assert _hashes(earlier[0]) == earlier[1]


def test_run_killed_then_rerun_gives_the_uninterrupted_result(tmp_path, earlier):
    args = ["run", "--system", "spring", "--method", "library", "--n-sims", "200", "--json"]
    duration = _timed(args + ["--out", "ref"], tmp_path)
    ref = json.loads((tmp_path / "ref" / "result.json").read_text())
    keys = ("formula", "recovered", "found_by", "edge_formulas", "node_formulas", "search_formula")
    killed = []
    for k, at in enumerate(_kill_points(duration, 2)):
        out = f"run{k}"
        killed.append(_killed(args + ["--out", out], tmp_path, at))
        proc = _run(args + ["--out", out], tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = json.loads((tmp_path / out / "result.json").read_text())
        assert {k: got[k] for k in keys} == {k: ref[k] for k in keys}, f"kill at {at:.1f} s"
        got, want = _datasets(tmp_path / out / "data" / "train.h5"), _datasets(tmp_path / "ref" / "data" / "train.h5")
        assert _same_arrays(got, want), f"kill at {at:.1f} s: {_differences(got, want)}"
    assert None in killed  # at least one kill landed while the command ran
    assert _temporaries(tmp_path) == []
    assert _hashes(earlier[0]) == earlier[1]


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs (needs root, as CI here has; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_gives_one_clean_line_and_keeps_earlier_results(tmp_path, small_disk):
    assert _run(["simulate", "--n-sims", "4", "--steps", "20", "--out", str(small_disk / "earlier.h5"), "--quiet"],
                tmp_path).returncode == 0
    before = _hashes(small_disk)
    big = ["simulate", "--n-sims", "300", "--steps", "300", "--out", str(small_disk / "big.h5"), "--quiet"]
    # refused before any work: the estimate does not fit in the free space
    proc = _run(big, tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "is free on the disk" in proc.stderr
    # with the checks switched off the disk fills up while writing: still one line, nothing damaged
    proc = _run(big + ["--max-size", "none"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "space" in proc.stderr, proc.stderr
    assert "earlier results are intact" in proc.stderr
    assert _hashes(small_disk) == before and _temporaries(small_disk) == []
    # a run folder on the full disk: training stops with one line, the data it read is intact
    filler = small_disk / "filler"
    free = shutil.disk_usage(small_disk).free
    filler.write_bytes(b"\0" * max(0, free - 30_000))
    before = _hashes(small_disk)
    proc = _run(["train", "--data", str(small_disk / "earlier.h5"), "--out", str(small_disk / "run"), "--epochs", "2",
                 "--threads", "1", "--set", "train.steps_per_epoch=2", "--quiet"], tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    after = _hashes(small_disk)
    assert {k: v for k, v in after.items() if not k.startswith("run/")} == before
    assert _temporaries(small_disk) == []
