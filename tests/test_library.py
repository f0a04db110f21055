"""The library path: exact laws in seconds when the library holds them, an honest 'no' when not."""

import json

import pytest

from symdistill.errors import SymdistillError
from symdistill.library import LibraryConfig, fit_library, write_library_run
from symdistill.pipeline import PipelineConfig, run_pipeline
from symdistill.simulate import SimulationConfig, get_law, open_dataset, simulate_to_file

SMALL = dict(n_sims=60, n_steps=40, n_bodies=4)


def files(tmp_path, law, dim=2, **sizes):
    sim = {**SMALL, **sizes, "dim": dim}
    train = simulate_to_file(tmp_path / "train.h5", law, config=SimulationConfig(seed=0, **sim))
    test = simulate_to_file(tmp_path / "test.h5", law, config=SimulationConfig(seed=1, **sim))
    return train, test


def test_spring_is_explained_and_printed_in_textbook_form(tmp_path):
    law = get_law("spring")
    result = fit_library(*files(tmp_path, law), law=law)
    assert result.explains and result.stable and result.residual < 1e-8, result.reason
    assert result.formula == "F = -k (r - 1) r̂,  k = 2"
    assert result.recovered is True
    saved, png = write_library_run(tmp_path / "lib", result, law=law)
    assert json.loads(saved.read_text())["explains"] is True and png.stat().st_size > 10_000


def test_damping_is_a_node_term_and_the_pair_law_exact(tmp_path):
    law = get_law("damped")
    result = fit_library(*files(tmp_path, law), law=law)
    assert result.explains and result.recovered, result.reason
    assert result.node_terms == {"v": pytest.approx(-0.5, rel=1e-6)}


def test_a_law_outside_the_library_is_not_explained(tmp_path):
    law = get_law("discontinuous")
    result = fit_library(*files(tmp_path, law), law=law)
    assert not result.explains and "residual" in result.reason
    assert result.residual > 0.05 and result.recovered is False


def test_user_terms_extend_the_library_to_a_screened_law(tmp_path):
    law = get_law(potential="q1*q2*exp(-r)/r")  # force q1 q2 exp(-r) (1/r + 1/r^2)
    train, test = files(tmp_path, law)
    plain = fit_library(train, test, law=law)
    assert plain.recovered is False  # not in the built-in library: whatever it fits is not the law
    assert not plain.explains and "residual" in plain.reason  # ...and it says so without the truth
    config = LibraryConfig(terms=("q1*q2*exp(-r)/r", "q1*q2*exp(-r)/r^2"))
    result = fit_library(train, test, config, law=law)
    assert result.explains and result.recovered, (result.formula, result.reason)
    assert "exp(-r)" in result.formula


@pytest.mark.parametrize("term, message", [
    ("exp(-r)*__import__", "Invalid library term"),
    ("x*r", "Unknown name 'x'"),
    ("", "Empty library term"),
])
def test_bad_user_terms_are_one_line_errors(term, message):
    with pytest.raises(SymdistillError, match=message):
        LibraryConfig(terms=(term,))
    with pytest.raises(SymdistillError, match=message):
        PipelineConfig(library_terms=(term,))


def test_run_stops_at_the_library_when_it_explains_the_data(tmp_path):
    config = PipelineConfig(system="spring", n_sims=60, test_sims=20, n_steps=40)
    result = run_pipeline(tmp_path / "run", config, progress=False, log=lambda *a, **k: None)
    assert result["found_by"] == "library" and result["recovered"] is True
    assert result["formula"] == result["truth"] == "F = -k (r - 1) r̂,  k = 2"
    assert not (tmp_path / "run" / "train").exists()  # no network was trained
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["library"]["explains"] is True and saved["method"] == "auto"


def test_method_library_reports_a_law_it_cannot_explain_without_claiming_it(tmp_path):
    config = PipelineConfig(system="discontinuous", n_sims=60, test_sims=20, n_steps=40, method="library")
    result = run_pipeline(tmp_path / "run", config, progress=False, log=lambda *a, **k: None)
    assert result["found_by"] is None and result["recovered"] is False
    assert not (tmp_path / "run" / "train").exists()


def test_auto_falls_back_to_the_network_and_reports_both(tmp_path):
    config = PipelineConfig(system="discontinuous", n_sims=60, test_sims=20, n_steps=40, train_steps=20,
                            sr_evaluations=2000)
    result = run_pipeline(tmp_path / "run", config, progress=False, log=lambda *a, **k: None)
    assert result["found_by"] == "network" and result["library"]["explains"] is False
    assert (tmp_path / "run" / "train" / "model.pt").exists()


def test_on_noisy_positions_the_form_is_chosen_by_held_out_residual(tmp_path):
    law = get_law("spring")
    sim = {**SMALL, "n_sims": 400, "n_steps": 100}
    train = simulate_to_file(tmp_path / "train.h5", law, config=SimulationConfig(seed=0, **sim), noise=0.01)
    test = simulate_to_file(tmp_path / "test.h5", law, config=SimulationConfig(seed=1, **sim), noise=0.01)
    result = fit_library(train, test, law=law)
    assert result.noise_residual > 0 and result.flexible_residual > 0
    assert result.explains and result.recovered, (result.formula, result.reason)
    assert result.formula.startswith("F = -k (r - 1) r̂")  # rest length snapped; k is noisy


def test_unknown_method_is_refused_before_any_work(tmp_path):
    with pytest.raises(SymdistillError, match="Unknown method 'fast'"):
        PipelineConfig(method="fast")


def test_cli_runs_the_library_path_on_noisy_positions(tmp_path, capsys):
    from symdistill.cli import main

    out = tmp_path / "run"
    assert main(["run", "--system", "spring", "--n-sims", "60", "--noise", "0.01", "--method", "library",
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "discovered:" in printed and ("found by:   the library path" in printed or "library:" in printed)
    with open_dataset(out / "data" / "train.h5") as ds:
        assert ds.attrs["observed"] == "positions" and ds.attrs["acc_noise_estimate"] > 0
    assert main(["run", "--system", "spring", "--noise", "-1", "--out", str(tmp_path / "bad")]) == 2
    assert "`noise` must be >= 0" in capsys.readouterr().err
