"""The cosmology commands end to end on a tiny generated box: simulate -> info -> run (in and out of
distribution), the run folder as a record, and bad input as one-line errors."""

import json

import numpy as np
import pytest

from symdistill.cli import main
from symdistill.cosmology.halos import read_halos, write_halos
from symdistill.cosmology.pipeline import CosmologyConfig, splits

FAST = ["--epochs", "40", "--sr-evaluations", "20000", "--threads", "1"]


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("halos") / "tiny.h5"
    assert main(["cosmology", "simulate", "--size", "tiny", "--out", str(path), "--quiet"]) == 0
    return path


def test_simulate_and_info(tiny_file, capsys):
    cat = read_halos(tiny_file)
    assert 400 < len(cat) < 1000 and cat.has_delta
    assert main(["cosmology", "info", str(tiny_file), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_halos"] == len(cat) and info["box_size"] == 125.0


def test_splits_are_disjoint_and_ood_is_by_delta(tiny_file):
    cat = read_halos(tiny_file)
    sp = splits(cat, CosmologyConfig())
    r = sp["random"]
    assert not np.intersect1d(r["train"], r["test"]).size and len(r["train"]) + len(r["test"]) == len(cat)
    assert abs(len(r["test"]) / len(cat) - 0.2) < 0.01
    assert np.all(cat.delta[sp["ood"]["train"]] <= 1) and np.all(cat.delta[sp["ood"]["test"]] > 1)


@pytest.mark.slow
def test_run_end_to_end_on_a_tiny_box(tiny_file, tmp_path, capsys):
    out = tmp_path / "run"
    # train, distill, then run: each stage continues the folder the one before left
    common = ["--catalogue", str(tiny_file), "--out", str(out), "--json", *FAST]
    assert main(["cosmology", "train", *common]) == 0
    assert json.loads(capsys.readouterr().out)["test_mae"] < 0.4
    assert main(["cosmology", "distill", str(out), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert "ood" not in first and not (out / "network-ood").exists()
    args = ["cosmology", "run", *common]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["random"]["table"] == first["random"]["table"]  # kept, not redone
    for key in ("random", "ood"):
        rows = {r["model"].split(" ")[0]: r for r in result[key]["table"]}
        assert set(rows) == {"constant", "hand-designed", "paper's", "discovered", "graph"}
        assert all(np.isfinite(r["mae_test"]) for r in rows.values())
        # the formula found by the pipeline is a real fit: far better than a constant on held-out halos
        assert rows["discovered"]["mae_test"] < 0.6 * rows["constant"]["mae_test"]
        assert "e = sum_{j != i}" in result[key]["distillation"]["formula"]
    assert set(result["targets"]) == {"discovered_over_hand_designed", "constant_over_discovered",
                                      "ood_discovered_over_network"}
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / "network" / "model.pt").exists() and (out / "network-ood" / "model.pt").exists()
    # the same command again shows the finished result; another config is refused
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["random"]["table"] == result["random"]["table"]
    assert main([*args[:-len(FAST)], "--epochs", "3", "--sr-evaluations", "20000", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "another config" in err and len(err.splitlines()) == 1


def test_a_catalogue_without_delta_is_refused(tiny_file, tmp_path, capsys):
    cat = read_halos(tiny_file)
    cat.delta[:] = np.nan
    path = tmp_path / "nodelta.h5"
    write_halos(path, cat)
    assert main(["cosmology", "run", "--catalogue", str(path), "--out", str(tmp_path / "r"), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert "no overdensity" in err and len(err.splitlines()) == 1


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    assert main(["cosmology", "simulate", "--size", "huge", "--out", str(tmp_path / "x.h5")]) == 2
    assert "Unknown size 'huge'" in capsys.readouterr().err
    assert main(["cosmology", "run", "--size", "tiny", "--preset", "papr", "--out", str(tmp_path / "r")]) == 2
    assert "paper" in capsys.readouterr().err
    assert main(["cosmology"]) == 2
    assert "give a cosmology command" in capsys.readouterr().err
