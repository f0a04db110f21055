"""End to end: `symdistill run` recovers the spring law from nothing but its name (slow, in CI)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_run_recovers_spring_2d_end_to_end(tmp_path):
    out = tmp_path / "run"
    # The defaults count training steps and SR evaluations instead of timing them: the outcome is
    # the same on any machine, however loaded (~1 min on 2 quiet cores).
    proc = subprocess.run(
        [sys.executable, "-m", "symdistill.cli", "run", "--system", "spring", "--dim", "2",
         "--method", "network", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert isinstance(result["formula"], str) and isinstance(result["truth"], str)
    assert isinstance(result["seconds"], float)
    assert result["found_by"] == "network" and result["library"] is None  # --method network: no library fit
    # the verdict is the strict one, on the printed (final) law, which is the spring's form
    assert result["recovered"] is True and result["fits"] is True, result
    assert result["formula"].startswith("F = -k (r - 1) r̂"), result["formula"]
    assert result["truth"] == "F = -k (r - 1) r̂,  k = 2"
    assert all(isinstance(e, str) for e in result["edge_formulas"])
    distilled = json.loads((out / "train" / "distill.json").read_text())
    assert distilled["verification"]["exact"] is True
    assert "verification" in distilled["search"] and distilled["search"]["formula"]  # the pre-refit law is kept
    assert "test file only for the final comparison" in distilled["data_use"]
    # the refitted formula generalises: more bodies than trained on, heavier masses
    for name, row in result["comparison"].items():
        assert row["formula"] < row["network"], (name, row)
    assert (out / "train" / "report.html").stat().st_size > 20_000
    # the formula was chosen among the Pareto candidates by refitted error on held-out raw data
    sel = distilled["selection"]
    assert sel["rule"] == "refit" and len(sel["candidates"]) > 1
    maes = [c["held_out_mae"] for c in sel["candidates"] if c["held_out_mae"] is not None]
    assert sel["candidates"][sel["chosen"]]["held_out_mae"] <= 1.1 * min(maes)
    assert "held-out MAE" in (out / "train" / "report.md").read_text()
    assert (out / "train" / "equations.md").exists() and (out / "result.json").exists()
    # the folder is a record: another command into it is refused with the difference, nothing overwritten;
    # the same command again shows the finished result without redoing anything
    saved = (out / "result.json").read_bytes()
    again = subprocess.run([sys.executable, "-m", "symdistill.cli", "run", "--out", str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "another config (method: 'network' -> 'auto')" in again.stderr
    same = subprocess.run([sys.executable, "-m", "symdistill.cli", "run", "--system", "spring", "--dim", "2",
                           "--method", "network", "--out", str(out), "--json"], capture_output=True, text=True)
    assert same.returncode == 0 and json.loads(same.stdout)["formula"] == result["formula"]
    assert (out / "result.json").read_bytes() == saved
