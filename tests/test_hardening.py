"""Hardening (issue 12): each test is named for the property it protects. In-process CLI calls, fast.

Formula parsing has its own file (test_formula_parsing.py); generated cases are in test_fuzz.py and
kill -9 / full-disk faults in test_faults.py.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from symdistill import cli
from symdistill.errors import SymdistillError
from symdistill.io import atomic_path, remove_stale_temporaries
from symdistill.runfolder import LOCK, claim, folder_lock
from symdistill.simulate import SimulationConfig, simulate, simulate_to_file
from symdistill.train import RunConfig, train

TINY = ["--n-sims", "2", "--steps", "3", "--quiet"]


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    simulate_to_file(d / "train.h5", "spring", config=SimulationConfig(n_sims=20, n_steps=10, seed=0))
    return d / "train.h5"


def _quick(path, **over) -> RunConfig:
    base = {"data.path": str(path), "data.eval_graphs": 50, "model.hidden": 16, "model.layers": 2,
            "train.batch_size": 32, "train.epochs": 1, "train.steps_per_epoch": 2, "train.threads": 1}
    return RunConfig().replace(**{**base, **over})


# ---- sizes and seeds -------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, what", [
    (["--n-sims", "1000000000"], "would write"),
    (["--steps", "1000000000"], "would write"),
    (["--n-bodies", "1000000", "--n-sims", "1", "--steps", "2"], "of memory"),
])
def test_oversized_requests_are_refused_with_the_estimate_before_any_work(tmp_path, capsys, flags, what):
    code, _, err = _cli(capsys, "simulate", *flags, "--out", tmp_path / "x.h5", "--quiet")
    line = _one_error_line(err)
    assert code == 2 and what in line and "TiB" in line and ("is available" in line or "over the limit" in line)
    assert not (tmp_path / "x.h5").exists() and os.listdir(tmp_path) == []


def test_size_limit_is_a_flag_and_none_switches_it_off(tmp_path, capsys):
    code, _, err = _cli(capsys, "simulate", "--n-sims", "20", "--steps", "20", "--max-size", "10K",
                        "--out", tmp_path / "x.h5", "--quiet")
    assert code == 2 and "over the limit of 10.0 KiB" in _one_error_line(err)
    assert _cli(capsys, "simulate", "--n-sims", "20", "--steps", "20", "--max-size", "none",
                "--out", tmp_path / "x.h5", "--quiet")[0] == 0


@pytest.mark.parametrize("argv", [
    ["simulate", "--seed", "-1", *TINY], ["demo", "--seed", "-1", "--quiet"], ["run", "--seed", "-1"],
    ["train", "--data", "DATA", "--seed", "-1"],
])
def test_negative_seed_is_a_clean_error(tmp_path, capsys, data, argv):
    argv = [str(data) if a == "DATA" else a for a in argv] + ["--out", tmp_path / "o"]
    code, _, err = _cli(capsys, *argv)
    assert code == 2 and "must be an integer from 0" in _one_error_line(err)
    assert not (tmp_path / "o").exists()


# ---- output paths ----------------------------------------------------------------------------------

def test_output_paths_are_checked_before_any_work(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for out, says in ((Path("/proc/x.h5"), "Cannot write"), (tmp_path / "afile" / "x.h5", "is a file, not a folder"),
                      (tmp_path, "is a folder")):
        code, _, err = _cli(capsys, "simulate", "--n-sims", "2000", "--out", out, "--quiet")
        assert code == 2 and says in _one_error_line(err)
    code, _, err = _cli(capsys, "run", "--out", tmp_path / "afile")
    assert code == 2 and "is a file" in _one_error_line(err)


def test_a_file_that_is_not_a_dataset_is_never_replaced(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    code, _, err = _cli(capsys, "simulate", "--out", notes, *TINY)
    assert code == 2 and "will not be replaced" in _one_error_line(err)
    assert notes.read_text() == "my notes"
    code, _, err = _cli(capsys, "derive", "--data", notes, "--out", notes)
    assert code == 2 and notes.read_text() == "my notes"


def test_derive_never_replaces_its_input(tmp_path, capsys):
    src = tmp_path / "exact.h5"
    simulate_to_file(src, "spring", config=SimulationConfig(n_sims=2, n_steps=30))
    before = src.read_bytes()
    code, _, err = _cli(capsys, "derive", "--data", src, "--out", src, "--quiet")
    assert code == 2 and "is the input file" in _one_error_line(err) and src.read_bytes() == before


# ---- dataset files ---------------------------------------------------------------------------------

def _h5(path, *, pos=None, mass=None, attrs=None, extra=None):
    with h5py.File(path, "w") as f:
        if pos is not None:
            f["pos"] = pos
        if mass is not None:
            f["mass"] = mass
        for k, v in (attrs if attrs is not None else {"dim": 2, "n_bodies": 2, "dt": 0.1}).items():
            f.attrs[k] = v
        if extra:
            extra(f)
    return path


MALFORMED = {
    "no simulations": dict(pos=np.zeros((0, 3, 2, 2)), mass=np.ones((0, 2))),
    "string dt": dict(pos=np.zeros((2, 3, 2, 2)), mass=np.ones((2, 2)), attrs={"dim": 2, "n_bodies": 2, "dt": "abc"}),
    "string mass": dict(pos=np.zeros((2, 3, 2, 2)), mass=np.array([[b"a", b"b"]] * 2)),
    "string pos": dict(pos=np.array([[[[b"a"] * 2] * 2] * 3] * 2), mass=np.ones((2, 2))),
    "group for pos": dict(mass=np.ones((2, 2)), extra=lambda f: f.create_group("pos")),
    "dim 4": dict(pos=np.zeros((2, 3, 2, 4)), mass=np.ones((2, 2)), attrs={"dim": 4, "n_bodies": 2, "dt": 0.1}),
    "pos shape against attributes": dict(pos=np.zeros((2, 3, 5, 2)), mass=np.ones((2, 2))),
    "negative dt": dict(pos=np.zeros((2, 3, 2, 2)), mass=np.ones((2, 2)), attrs={"dim": 2, "n_bodies": 2, "dt": -1.0}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_dataset_files_give_one_line_in_every_command(tmp_path, capsys, data, case):
    bad = _h5(tmp_path / "bad.h5", **MALFORMED[case])
    run = train(_quick(data), tmp_path / "run", progress=False, log=lambda *a: None)
    for argv in (["info", bad], ["train", "--data", bad, "--out", tmp_path / "r2", "--epochs", "1"],
                 ["evaluate", "--run", run, "--data", bad], ["derive", "--data", bad, "--out", tmp_path / "d.h5"]):
        code, _, err = _cli(capsys, *argv)
        assert code == 2 and "not a valid symdistill dataset" in _one_error_line(err), (argv, err)
    assert not (tmp_path / "d.h5").exists()


def test_own_data_with_an_unknown_system_label_is_summarised(tmp_path, capsys):
    path = _h5(tmp_path / "own.h5", pos=np.zeros((2, 3, 2, 2)), mass=np.ones((2, 2)),
               attrs={"dim": 2, "n_bodies": 2, "dt": 0.1, "system": "wormhole"})
    code, out, _ = _cli(capsys, "info", path)
    assert code == 0 and "system: wormhole" in out and "no ground truth" in out


def test_a_simulation_that_overflows_writes_nothing(tmp_path):
    with pytest.raises(SymdistillError, match="overflowed|infinite"):
        simulate_to_file(tmp_path / "x.h5", potential="exp(1000*r)", config=SimulationConfig(n_sims=2, n_steps=5))
    assert os.listdir(tmp_path) == []
    with pytest.raises(SymdistillError, match="overflowed.*acc"):  # positions finite, accelerations not
        simulate(potential=lambda r, **_: -np.inf * r, n_sims=2, n_steps=3)


# ---- configs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("item, says", [
    ("model.l1_weight=abc", "`model.l1_weight` must be a number (got 'abc')"),
    ("train.epochs=1.5", "`train.epochs` must be an integer"), ("train.lr=inf", "must be a finite number"),
    ("data.max_sims=true", "`data.max_sims` must be an integer or none"),
])
def test_wrongly_typed_set_values_are_named(tmp_path, capsys, data, item, says):
    code, _, err = _cli(capsys, "train", "--data", data, "--out", tmp_path / "r", "--set", item)
    assert code == 2 and says in _one_error_line(err)
    assert not (tmp_path / "r").exists()


def test_corrupted_run_config_on_resume_is_one_line(tmp_path, capsys, data):
    run = train(_quick(data, **{"train.epochs": 2}), tmp_path / "run", progress=False, log=lambda *a: None, max_epochs=1)
    (run / "config.json").write_text("{not json")
    code, _, err = _cli(capsys, "train", "--out", run, "--resume")
    assert code == 2 and "is corrupt" in _one_error_line(err)
    (run / "config.json").write_text(json.dumps({"config": {"model": {"hidden": "x"}}}))
    code, _, err = _cli(capsys, "train", "--out", run, "--resume")
    assert code == 2 and "invalid config" in _one_error_line(err)


def test_a_run_that_trained_zero_steps_is_an_error_not_a_model(tmp_path, capsys, data):
    code, _, err = _cli(capsys, "train", "--data", data, "--out", tmp_path / "r", "--time-budget", "0.0001",
                        "--threads", "1", "--quiet")
    assert code == 2 and "No training step fitted in the time budget" in _one_error_line(err)
    assert not (tmp_path / "r" / "model.pt").exists()


# ---- run folders are records -----------------------------------------------------------------------

def test_second_writer_is_refused_while_the_first_holds_the_folder(tmp_path, capsys, data):
    folder = tmp_path / "run"
    folder.mkdir()
    with folder_lock(folder, "train", log=lambda *a: None):
        code, _, err = _cli(capsys, "train", "--data", data, "--out", folder, "--epochs", "1", "--quiet")
    line = _one_error_line(err)
    assert code == 2 and f"is in use by `symdistill train` (pid {os.getpid()}" in line
    assert not (folder / "model.pt").exists() and not (folder / "config.json").exists()


def test_stale_lock_of_a_killed_owner_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK).write_text(json.dumps({"pid": 99999999, "command": "train", "host": "h", "started": 0}))
    logs = []
    with claim(folder, "run", {"a": 1}, record="record.json", log=logs.append) as existing:
        assert existing is False
    assert any("taking over the lock" in m and "99999999" in m for m in logs)
    assert (folder / LOCK).read_text() == ""  # released cleanly: not stale for the next one


def test_other_config_into_a_folder_with_results_is_refused_with_the_difference(tmp_path, data):
    run = train(_quick(data), tmp_path / "run", progress=False, log=lambda *a: None)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(SymdistillError, match=r"another config \(model.hidden: 16 -> 24\)"):
        train(_quick(data, **{"model.hidden": 24}), run, progress=False, log=lambda *a: None)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_rerunning_run_into_an_aborted_folder_with_another_system_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["run", "--method", "library", "--n-sims", "60", "--out", out, "--quiet"]
    assert _cli(capsys, *base)[0] == 0
    (out / "result.json").unlink()  # an aborted run: its data is there, its result is not
    data = (out / "data" / "train.h5").read_bytes()
    code, _, err = _cli(capsys, *base, "--system", "r2")
    assert code == 2 and "another config (potential: None -> None" not in err
    assert "system: 'spring' -> 'r2'" in _one_error_line(err)
    assert (out / "data" / "train.h5").read_bytes() == data
    assert json.loads((out / "pipeline.json").read_text())["config"]["system"] == "spring"
    assert _cli(capsys, *base)[0] == 0 and (out / "result.json").exists()  # the same command finishes it


def test_a_failed_start_can_be_retried_with_a_corrected_config(tmp_path, capsys, data):
    folder = tmp_path / "r"
    code, _, _ = _cli(capsys, "train", "--data", tmp_path / "missing.h5", "--out", folder, "--epochs", "1")
    assert code == 2
    assert _cli(capsys, "train", "--data", data, "--out", folder, "--epochs", "1", "--threads", "1",
                "--quiet")[0] == 0


def test_stale_temporaries_are_removed_on_the_next_write(tmp_path):
    target = tmp_path / "x.h5"
    dead = tmp_path / ".x.h5.99999999.abcdef.tmp"
    live = tmp_path / f".x.h5.{os.getpid()}.abcdef.tmp"
    other = tmp_path / ".y.h5.99999999.abcdef.tmp"
    for p in (dead, live, other):
        p.write_bytes(b"partial")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert not dead.exists() and live.exists() and other.exists() and target.read_text() == "new"
    assert remove_stale_temporaries(tmp_path) == [other]


def test_distill_keeps_an_earlier_distillation_made_with_other_options(tmp_path, data):
    from dataclasses import asdict

    from symdistill.distill.session import DistillConfig, distill_run

    run = train(_quick(data), tmp_path / "run", progress=False, log=lambda *a: None)
    earlier = json.dumps({"config": asdict(DistillConfig(seed=5)), "formula": "F = earlier"})
    (run / "distill.json").write_text(earlier)
    with pytest.raises(SymdistillError, match=r"another config \(seed: 5 -> 0\): pass --replace"):
        distill_run(run, DistillConfig(), log=lambda *a: None)
    assert (run / "distill.json").read_text() == earlier


# ---- the error boundary ----------------------------------------------------------------------------

def test_a_formula_starting_with_minus_is_taken_as_the_value(tmp_path, capsys):
    code, _, err = _cli(capsys, "simulate", "--potential", "-m1*m2/r", "--out", tmp_path / "x.h5", *TINY)
    assert code == 0, err
    code, _, err = _cli(capsys, "simulate", "--dt", "-1e-3", "--out", tmp_path / "y.h5", *TINY)
    assert code == 2 and "`dt` must be > 0" in _one_error_line(err)


def test_environment_errors_are_one_line_and_bugs_show_a_traceback(monkeypatch, capsys, tmp_path):
    from symdistill.simulate import commands

    def denied(args):
        raise PermissionError(13, "Permission denied", "/some/file")

    monkeypatch.setattr(commands, "_info", denied)
    code, _, err = _cli(capsys, "info", "x.h5")
    assert code == 2 and _one_error_line(err) == (
        "error: Permission denied (/some/file) (choose a path you can write to, or fix its permissions)")

    def bug(args):
        return 1 / 0

    monkeypatch.setattr(commands, "_info", bug)
    code, _, err = _cli(capsys, "info", "x.h5")
    assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err and "a bug in symdistill" in err
    with pytest.raises(ZeroDivisionError):  # --debug: the exception itself
        cli.main(["--debug", "info", "x.h5"])


def test_warnings_are_never_printed_before_an_error(monkeypatch, capsys):
    from symdistill.simulate import commands

    def warns_then_fails(args):
        warnings.warn("something odd", RuntimeWarning)
        raise SymdistillError("the problem (the fix)")

    monkeypatch.setattr(commands, "_info", warns_then_fails)
    code, _, err = _cli(capsys, "info", "x.h5")
    assert code == 2 and err == "error: the problem (the fix)\n"

    def warns(args):
        warnings.warn("something odd", RuntimeWarning)
        return 0

    monkeypatch.setattr(commands, "_info", warns)
    code, _, err = _cli(capsys, "info", "x.h5")
    assert code == 0 and err == "warning: something odd\n"


def test_an_over_long_error_is_cut_to_one_short_line(monkeypatch, capsys):
    from symdistill.simulate import commands

    monkeypatch.setattr(commands, "_info", lambda args: (_ for _ in ()).throw(SymdistillError("x" * 100_000)))
    code, _, err = _cli(capsys, "info", "x.h5")
    assert code == 2 and len(_one_error_line(err)) < 500 and "(100000 characters)" in err
