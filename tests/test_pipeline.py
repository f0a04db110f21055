"""The main job (`make demo`)."""

import json

from symdistill.cli import main


def test_demo_writes_dataset_plot_and_record(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    run = tmp_path / "run"
    assert (run / "trajectories.png").stat().st_size > 10_000
    record = json.loads((run / "demo.json").read_text())
    assert record["config"]["seed"] == 0 and record["versions"]["torch"]
    assert "200 simulations x 500 steps" in capsys.readouterr().out
