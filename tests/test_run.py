"""End to end: `symdistill run` recovers the spring law from nothing but its name (slow, in CI)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_run_recovers_spring_2d_end_to_end(tmp_path):
    out = tmp_path / "run"
    # Fixed training steps and SR evaluations instead of time budgets: the outcome is the same on
    # any machine, however loaded (measured: ~2 min on 2 quiet cores, ~10 min on a busy one).
    proc = subprocess.run(
        [sys.executable, "-m", "symdistill.cli", "run", "--system", "spring", "--dim", "2",
         "--train-steps", "3500", "--sr-evaluations", "100000", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert isinstance(result["formula"], str) and isinstance(result["truth"], str)
    assert isinstance(result["seconds"], float)
    assert result["recovered"] is True, result
    assert result["recovered"] == bool(result["recovered_by_search"] or result["recovered_after_refit"])
    assert all(isinstance(e, str) for e in result["refitted_edge_formulas"])
    # the refitted formula generalises: more bodies than trained on, heavier masses
    for name, row in result["comparison"].items():
        assert row["formula"] < row["network"], (name, row)
    assert (out / "train" / "report.html").stat().st_size > 20_000
    # the formula was chosen among the Pareto candidates by refitted error on held-out raw data
    sel = json.loads((out / "train" / "distill.json").read_text())["selection"]
    assert sel["rule"] == "refit" and len(sel["candidates"]) > 1
    maes = [c["held_out_mae"] for c in sel["candidates"] if c["held_out_mae"] is not None]
    assert sel["candidates"][sel["chosen"]]["held_out_mae"] <= 1.1 * min(maes)
    assert "held-out MAE" in (out / "train" / "report.md").read_text()
    assert (out / "train" / "equations.md").exists() and (out / "result.json").exists()
    # a second run into the same folder is refused instead of overwriting it
    again = subprocess.run([sys.executable, "-m", "symdistill.cli", "run", "--out", str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "already holds a finished run" in again.stderr
