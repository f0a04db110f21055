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


def test_training_steps_default_per_dimension_and_the_budget_is_a_cap():
    from symdistill.pipeline import TRAIN_CAP_SECONDS, TRAIN_STEPS, PipelineConfig
    assert PipelineConfig(dim=2).steps == TRAIN_STEPS[2] and PipelineConfig(dim=3).steps == TRAIN_STEPS[3]
    assert PipelineConfig(dim=3, train_steps=100).steps == 100
    assert PipelineConfig(dim=2).train_seconds == TRAIN_CAP_SECONDS[2]
    assert PipelineConfig(dim=3, time_budget=30).train_seconds == 30
