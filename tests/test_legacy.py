"""Run folders written before the problem specs (fixtures/run-v0, made by commit 018a40d) still load,
predict what they predicted then, and a run folder without the options added since continues."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from symdistill.errors import SymdistillError
from symdistill.graphs import GraphBatch
from symdistill.simulate import SimulationConfig, simulate_to_file
from symdistill.train import RunConfig, load_run, train

FIXTURE = Path(__file__).parent / "fixtures" / "run-v0"


def test_a_run_folder_of_the_previous_version_loads_and_predicts_the_same():
    run = load_run(FIXTURE)
    state = torch.load(FIXTURE / "model.pt", weights_only=True)
    assert "acc_scale" in state["model"] and "aggregation" not in state["config"]["model"]  # truly the old format
    assert float(run.model.out_scale) == float(state["model"]["acc_scale"])
    e = np.load(FIXTURE / "expected.npz")
    b = GraphBatch.from_arrays(e["pos"], e["vel"], e["mass"], e["charge"])
    # The same weights and arithmetic; float32 kernels round differently on another CPU (the fixture was
    # written on an Intel host with AMX; on an AMD EPYC host the last bits differ, up to 2e-6), so the
    # comparison allows float32 rounding, and no more.
    np.testing.assert_allclose(run.model.predict(b).numpy(), e["acc"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run.model(b).messages.detach().numpy(), e["messages"], rtol=1e-5, atol=1e-5)


def test_an_old_folder_without_the_new_options_is_continued_by_the_same_command(tmp_path):
    data = simulate_to_file(tmp_path / "d.h5", "spring", config=SimulationConfig(n_sims=12, n_bodies=3, n_steps=10))
    cfg = RunConfig().replace(**{"data.path": str(data), "model.hidden": 8, "train.epochs": 1,
                                 "train.batch_size": 32, "train.threads": 1})
    run = tmp_path / "run"
    train(cfg, run, progress=False, log=lambda s: None)
    record = json.loads((run / "config.json").read_text())
    for section in ("config", "request"):  # as a folder written before the options existed
        del record[section]["model"]["aggregation"]
        del record[section]["train"]["device"]
    (run / "config.json").write_text(json.dumps(record))
    said = []
    train(cfg, run, progress=False, log=said.append)
    assert said == [f"{run} already holds this run, finished: nothing to do"]
    assert load_run(run).config.model.aggregation == "sum"


def test_a_folder_that_cannot_be_read_says_what_to_do(tmp_path):
    bad = tmp_path / "old"
    shutil.copytree(FIXTURE, bad)
    state = torch.load(bad / "model.pt", weights_only=True)
    state["model"].pop("edge_model.0.weight")
    torch.save(state, bad / "model.pt")
    with pytest.raises(SymdistillError, match="is not a model of this version of symdistill.*train the run again") as e:
        load_run(bad)
    assert "\n" not in str(e.value)
