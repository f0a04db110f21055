"""Training: determinism, checkpoints and resume, divergence, CLI errors, evaluation."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch

from symdistill.cli import main
from symdistill.errors import SymdistillError
from symdistill.simulate import SimulationConfig, simulate_to_file
from symdistill.train import RunConfig, load_graphs, load_run, train
from symdistill.train import steps as steps_module
from symdistill.train.steps import loss_fn


@pytest.fixture(scope="module")
def spring_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    simulate_to_file(d / "spring.h5", "spring", config=SimulationConfig(n_sims=40, n_steps=20, seed=0))
    simulate_to_file(d / "test.h5", "spring", config=SimulationConfig(n_sims=10, n_steps=20, seed=1))
    return d / "spring.h5"


def _config(path, **over) -> RunConfig:
    base = {"data.path": str(path), "data.eval_graphs": 100, "model.hidden": 32, "model.layers": 2,
            "train.batch_size": 64, "train.epochs": 3, "train.steps_per_epoch": 6, "train.threads": 1,
            "train.lr": 3e-3}
    return RunConfig().replace(**{**base, **over})


def _params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_tiny_run_lowers_the_loss(spring_file, tmp_path):
    cfg = _config(spring_file, **{"train.epochs": 4, "train.steps_per_epoch": 15})
    run_dir = train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    torch.manual_seed(cfg.train.seed)
    run = load_run(run_dir)
    fresh = type(run.model)(cfg.model, 2)
    fresh.load_state_dict({k: v for k, v in run.model.state_dict().items() if "scale" in k}, strict=False)
    val = load_graphs(spring_file, range(36, 40)).batch()
    with torch.no_grad():
        before, _ = loss_fn(fresh.eval(), val, cfg.train)
        after, _ = loss_fn(run.model, val, cfg.train)
    assert float(after) < 0.7 * float(before)
    rows = run.history
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
    assert set(rows[0]) >= {"train_loss", "val_loss", "train_penalty", "active_components", "force_r2"}


def test_relative_loss_divides_each_node_error_by_its_target_plus_the_floor():
    from symdistill.problems import NBodyForces
    target = torch.tensor([[3.0, -4.0], [0.0, 0.0], [100.0, 0.0]])
    pred = torch.tensor([[3.0, -3.0], [1.0, 0.0], [90.0, 0.0]])
    loss = NBodyForces(2).loss  # the problem owns its loss
    assert float(loss(pred, target, "mae")) == pytest.approx((1 + 1 + 10) / 3)
    assert float(loss(pred, target, "relative", 1.0)) == pytest.approx((1 / 8 + 1 / 1 + 10 / 101) / 3)


def test_bf16_forward_gives_the_fp32_loss_to_bfloat16_precision(spring_file):
    from symdistill.models import GraphNetwork
    from symdistill.train.config import TrainConfig
    cfg = _config(spring_file)
    torch.manual_seed(0)
    model = GraphNetwork(cfg.model, 2)
    batch = load_graphs(spring_file, range(8)).batch()
    model.fit_scales(batch)
    with torch.no_grad():
        full, _ = loss_fn(model, batch, TrainConfig())
        half, pen = loss_fn(model, batch, TrainConfig(precision="bf16"))
    assert half.dtype == torch.float32 and pen.dtype == torch.float32
    assert float(half) == pytest.approx(float(full), rel=0.03) and float(half) != float(full)
    with pytest.raises(SymdistillError, match="Unknown precision 'fp16'"):
        TrainConfig(precision="fp16")


def test_runs_saved_before_the_additive_node_model_load_as_they_were(spring_file, tmp_path):
    cfg = _config(spring_file, **{"train.epochs": 1, "model.node_model": "mlp", "model.target_scale": "rms",
                                  "train.loss": "mae"})
    run_dir = train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    for name in ("model.pt", "checkpoint.pt"):  # strip the options, as an older version wrote them
        state = torch.load(run_dir / name, weights_only=True)
        for section, keys in (("model", ("node_model", "target_scale")), ("train", ("loss", "loss_floor"))):
            for k in keys:
                del state["config"][section][k]
        torch.save(state, run_dir / name)
    saved = json.loads((run_dir / "config.json").read_text())
    del saved["config"]["model"]["node_model"]
    (run_dir / "config.json").write_text(json.dumps(saved))
    run = load_run(run_dir)
    assert (run.config.model.node_model, run.config.model.target_scale, run.config.train.loss) == ("mlp", "rms", "mae")
    b = load_graphs(spring_file, [0]).batch()
    assert torch.isfinite(run.model.predict(b)).all()
    assert RunConfig().model.node_model == "additive" and RunConfig().train.loss == "relative"


def test_checkpoint_round_trip(spring_file, tmp_path):
    run_dir = train(_config(spring_file, **{"train.epochs": 1}), tmp_path / "run", progress=False, log=lambda s: None)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    run = load_run(run_dir)
    assert run.finished and run.config == RunConfig.from_dict(state["config"])
    assert run.data_path == str(spring_file)
    for k, v in state["model"].items():
        assert torch.equal(run.model.state_dict()[k], v)
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["seed"] == 0 and "torch" in saved["versions"] and saved["config"]["train"]["total_steps"] == 6
    b = load_graphs(spring_file, [0]).batch()
    again = load_run(run_dir).model
    assert torch.equal(run.model.predict(b), again.predict(b))


def test_resumed_training_equals_uninterrupted_training(spring_file, tmp_path):
    cfg = _config(spring_file, **{"model.variant": "kl"})  # kl: sampling RNG must resume too
    whole = train(cfg, tmp_path / "whole", progress=False, log=lambda s: None)
    part = train(cfg, tmp_path / "part", progress=False, max_epochs=1, log=lambda s: None)
    assert not (part / "model.pt").exists() and load_run(part).history[-1]["epoch"] == "1"
    train(None, part, resume=True, progress=False, log=lambda s: None)
    assert torch.equal(_params(load_run(whole).model), _params(load_run(part).model))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(load_run(whole).history) == strip(load_run(part).history)


def test_killed_training_resumes_from_checkpoint(spring_file, tmp_path):
    over = {"train.epochs": 8, "train.steps_per_epoch": 20, "model.variant": "l1",
            "model.edge_inputs": "paper"}  # paper: the augmentation RNG must resume too
    cfg = _config(spring_file, **over)
    killed = tmp_path / "killed"
    args = ["--data", str(spring_file), "--out", str(killed), "--quiet", "--epochs", "8", "--edge-inputs", "paper",
            "--hidden", "32", "--layers", "2", "--batch-size", "64", "--threads", "1", "--lr", "3e-3",
            "--set", "train.steps_per_epoch=20", "--set", "data.eval_graphs=100"]
    proc = subprocess.Popen([sys.executable, "-m", "symdistill.cli", "train", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while not (killed / "history.csv").exists() and proc.poll() is None and time.monotonic() - t0 < 60:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if (killed / "model.pt").exists():
        pytest.skip("the run finished before it could be killed")
    assert load_run(killed).history  # the checkpoint of a killed run loads (history.csv follows checkpoint.pt)
    assert main(["train", "--resume", "--out", str(killed), "--quiet"]) == 0
    whole = train(cfg, tmp_path / "whole", progress=False, log=lambda s: None)
    assert torch.equal(_params(load_run(whole).model), _params(load_run(killed).model))
    assert len(load_run(killed).history) == 8


def test_divergence_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(spring_file, tmp_path, monkeypatch):
    calls = {"n": 0}

    def exploding(model, batch, t, **kw):
        loss, pen = loss_fn(model, batch, t, **kw)
        calls["n"] += 1
        return (loss * float("nan"), pen) if calls["n"] > 8 else (loss, pen)

    monkeypatch.setattr(steps_module, "loss_fn", exploding)
    with pytest.raises(SymdistillError, match=r"Training diverged at epoch 2, step 8 \(loss nan\); the last good checkpoint is kept"):
        train(_config(spring_file), tmp_path / "run", progress=False, log=lambda s: None)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_file_without_accelerations_gives_a_one_line_error(spring_file, tmp_path, capsys):
    bare = tmp_path / "noacc.h5"
    with h5py.File(spring_file) as src, h5py.File(bare, "w") as dst:
        for k in ("pos", "vel", "mass", "charge", "t"):
            src.copy(k, dst)
        dst.attrs.update(src.attrs)
    assert main(["train", "--data", str(bare), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no accelerations ('acc')" in err


def test_unknown_model_name_gives_a_one_line_error(spring_file, tmp_path, capsys):
    assert main(["train", "--data", str(spring_file), "--model", "l2", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == "error: Unknown model 'l2'. Choose one of: bottleneck, hamiltonian, kl, l1, standard. Did you mean 'l1'?\n"
    assert main(["train", "--data", str(spring_file), "--set", "train.lr=-1", "--out", str(tmp_path / "r")]) == 2
    assert "`train.lr` must be > 0 (got -1)" in capsys.readouterr().err
    assert main(["train", "--data", str(spring_file), "--set", "model.hiden=3", "--out", str(tmp_path / "r")]) == 2
    assert "Did you mean 'hidden'?" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_existing_run_is_never_overwritten(spring_file, tmp_path):
    cfg = _config(spring_file, **{"train.epochs": 1})
    run = train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    model = (run / "model.pt").read_bytes()
    logs = []
    train(cfg, run, progress=False, log=logs.append)  # the same command again: nothing to do
    assert "finished: nothing to do" in logs[-1] and (run / "model.pt").read_bytes() == model
    with pytest.raises(SymdistillError, match=r"another config \(train.lr: 0.003 -> 0.001\)"):
        train(cfg.replace(**{"train.lr": 1e-3}), run, progress=False, log=lambda s: None)
    assert (run / "model.pt").read_bytes() == model


def test_evaluate_json_reports_test_mae_and_one_force_r2_per_component(spring_file, tmp_path, capsys):
    test_file = Path(spring_file).parent / "test.h5"
    run_dir = train(_config(spring_file, **{"train.epochs": 1, "data.test_path": str(test_file)}),
                    tmp_path / "run", progress=False, log=lambda s: None)
    assert main(["evaluate", "--run", str(run_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert isinstance(result["test_mae"], float) and result["test_mae"] > 0
    assert len(result["force_r2"]) == 2 and all(isinstance(x, float) for x in result["force_r2"])
    assert len(result["force_r2_bulk"]) == 2 and all(x <= 1 for x in result["force_r2_bulk"])
    assert result["data"] == str(test_file)
    assert main(["evaluate", "--run", str(tmp_path / "nope")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_a_step_count_with_a_generous_time_budget_runs_exactly_that_many_steps(spring_file, tmp_path):
    # the pipeline's default: steps decide, the budget only caps (results independent of load)
    cfg = _config(spring_file, **{"train.time_budget": 600.0, "train.max_steps": 17, "train.steps_per_epoch": 5})
    run_dir = train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    saved = json.loads((run_dir / "config.json").read_text())["config"]["train"]
    assert saved["total_steps"] == 17
    assert int(load_run(run_dir).history[-1]["step"]) == 17


def test_threads_are_chosen_by_measured_speed_when_not_given(spring_file, tmp_path):
    said = []
    cfg = _config(spring_file, **{"train.threads": None, "train.epochs": 1, "train.steps_per_epoch": 3})
    try:
        train(cfg, tmp_path / "run", progress=False, log=said.append)
    finally:
        torch.set_num_threads(1)
    cores = len(os.sched_getaffinity(0))
    if cores > 1:
        line = next(s for s in said if s.startswith("training on"))
        assert "1 thread" in line and f"{cores} threads" in line
    assert torch.get_num_threads() >= 1


def test_device_option_auto_picks_cuda_only_when_present(monkeypatch, tmp_path, spring_file):
    from symdistill.train.steps import resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(SymdistillError, match="sees no CUDA GPU here; use --device cpu"):
        train(_config(spring_file).replace(**{"train.device": "cuda"}), tmp_path / "gpu", progress=False)
    assert not (tmp_path / "gpu").exists()  # refused before the run folder was created
    with pytest.raises(SymdistillError, match="must be cpu, cuda, cuda:N or auto"):
        RunConfig().replace(**{"train.device": "tpu"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
