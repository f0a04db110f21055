"""Reports as a user sees them: a self-contained page that parses, a title and verdict that say what
was found, the law drawn against the truth, training curves from per-step history."""

import csv
import importlib.util
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from symdistill.expr import parse_formula
from symdistill.io import write_json
from symdistill.report import figures
from symdistill.report.header import verdict
from symdistill.report.law_figure import law_curves
from symdistill.report.page import Report
from symdistill.report.run_report import write_report
from symdistill.simulate import SimulationConfig, simulate_to_file
from symdistill.versions import versions

VARIABLES = ["r", "m1", "m2", "q1", "q2"]
ROOT = Path(__file__).resolve().parents[1]
VOID = {"meta", "img", "br", "hr", "link", "input", "source", "col", "area", "base", "wbr"}


def _g(text):
    return parse_formula(text, VARIABLES)


def _pairs(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    return {"r": 0.05 + rng.gamma(2.0, 0.7, n), "m1": np.exp(rng.standard_normal(n)),
            "m2": np.exp(rng.standard_normal(n)), "q1": rng.choice([-1.0, 1.0], n), "q2": rng.choice([-1.0, 1.0], n)}


def _checks(failing=()):
    names = ["variables", "finite", "fit", "receiver_factor", "span"]
    exact = ["law_variables", "finite_wide", "ratio", "common_map", "span_wide", "symbolic"]
    row = lambda n: {"name": n, "passed": n not in failing, "value": 0.03 if n in failing else 0.0,  # noqa: E731
                     "threshold": 0.005, "detail": "worst: component 0" if n in failing else ""}
    return [row(n) for n in names], [row(n) for n in exact]


def _distill_record(**over):
    checks, exact = _checks()
    return {"formula": "F = -k (r - 1) r̂,  k = 2", "truth": "F = -k (r - 1) r̂,  k = 2", "recovered": True,
            "fits": True, "model": "bottleneck", "dim": 2, "threshold": None, "force_r2": [0.999, 0.998],
            "verification": {"checks": checks, "exact_checks": exact, "ratio_spread": 3e-14,
                             "summary": "exact: discovered / true is constant within 3e-14"},
            "search": {"formula": "(1.9 - 1.9*r) * (dx, dy)/(r - 0.01)", "scalar": "1.9 - 1.9*r"},
            "final": {"scalar": "r - 1", "k": -2.0},
            "stage_seconds": {"edge search": 17.9, "load and record": 0.8},
            "comparison": {"test": {"network": 0.02, "formula": 3e-6}, "n=8 bodies": {"network": 0.05, "formula": 1e-5}},
            "pareto": [[{"complexity": 1, "loss": 1.0, "equation": "-0.67", "selected": False},
                        {"complexity": 5, "loss": 0.008, "equation": "1.9 - 1.9*r", "selected": True}]],
            "selection": {"chosen": 1, "tolerance": 1.1, "candidates": [
                {"complexity": 1, "scalar": "-0.67", "held_out_mae": 2.4, "paper_rule": False},
                {"complexity": 5, "scalar": "1.9 - 1.9*r", "held_out_mae": 2e-4, "paper_rule": True}]},
            "edge_formulas": ["dx*(r - 1)", "dy*(r - 1)"], "node_formulas": ["s0/m", "s1/m"],
            "data_use": "messages on training graphs; the test file only for the final comparison", **over}


@pytest.fixture(scope="module")
def spring_run(tmp_path_factory):
    """A run folder as the pipeline writes it (data file, config, history, messages, distill.json),
    with messages made from the true spring law instead of a trained network."""
    run = tmp_path_factory.mktemp("spring") / "train"
    data = simulate_to_file(run.parent / "train.h5", "spring", config=SimulationConfig(n_sims=4, n_steps=5))
    write_json(run / "config.json", {"config": {"data": {"path": str(data)}, "model": {"variant": "bottleneck"},
                                                "train": {"total_steps": 100}}, "seed": 0, "versions": versions()})
    _write_csv(run / "history.csv", [{"epoch": e, "step": 10 * e, "seconds": e, "train_loss": 1 / e, "val_loss": 1.2 / e,
                                      "active_components": 2, "force_r2": f"{1 - 0.1 / e:.6f} {1 - 0.2 / e:.6f}"}
                                     for e in range(1, 11)])
    _write_csv(run / "history_steps.csv", [{"step": s, "seconds": s / 10, "lr": 1e-3, "train_loss": 1 / s,
                                            "train_penalty": 0.0} for s in range(2, 101, 2)])
    pairs = _pairs()
    g = 0.4 * -2 * (pairs["r"] - 1) + 0.01 * np.random.default_rng(1).standard_normal(len(pairs["r"]))
    forces = np.column_stack([g, g])
    np.savez(run / "messages.npz", messages=forces + 0.1, forces=forces, g=g, **pairs)
    write_json(run / "distill.json", _distill_record())
    return run


def _write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


class _Tags(HTMLParser):
    """Open tags must close in order; collects every src and href."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("src", "href")]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_report_page_is_self_contained_and_its_tags_balance(spring_run, tmp_path):
    _, page = write_report(spring_run, tmp_path / "out")
    text = page.read_text()
    tags = _Tags()
    tags.feed(text)
    tags.close()
    assert tags.errors == [] and tags.stack == []
    assert len(tags.links) >= 5 and all(s.startswith("data:image/png;base64,") for s in tags.links)
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "<details><summary>Evidence: 11 of 11 checks passed" in text


def test_title_names_system_dimension_model_law_and_verdict(spring_run, tmp_path):
    md, page = write_report(spring_run, tmp_path / "out")
    title = "spring 2D, bottleneck: F = -k (r - 1) r̂ — exact"
    assert md.read_text().startswith(f"# {title}\n")
    assert f"<title>{title}</title>" in page.read_text()
    for fact in ("| bodies | 4 |", "| seed | 0 |", "edge search 18 s", "torch "):
        assert fact in md.read_text()
    figs = {p.name for p in (tmp_path / "out" / "figures").iterdir()}
    assert figs == {"law.png", "training.png", "messages_vs_forces.png", "pareto_0.png", "network_vs_formula.png"}


def test_verdict_follows_the_strict_checks_not_a_stale_summary():
    checks, exact = _checks(failing=("ratio",))
    record = _distill_record(recovered=False, fits=True, verification={
        "checks": checks, "exact_checks": exact, "summary": "exact: discovered / true is constant"})
    word, tone, reason = verdict(record)
    assert (word, tone) == ("fits, not exact", "partial")
    assert "`ratio` failed" in reason and "constant" not in reason
    checks, exact = _checks(failing=("fit", "ratio"))
    record = _distill_record(recovered=False, fits=False, verification={"checks": checks, "exact_checks": exact})
    assert verdict(record)[:2] == ("not recovered", "bad") and "`ratio`" in verdict(record)[2]
    assert verdict(_distill_record(recovered=None, fits=None, verification=None))[0] == "no ground truth"


def test_each_law_gets_one_least_squares_scale_onto_the_recorded_g():
    pairs = _pairs()
    true = _g("2 - 2*r")
    g = 0.37 * (2 - 2 * pairs["r"])
    c = law_curves({**pairs, "g": g}, _g("1.1*r - 1.1"), true)
    assert c.power == 0 and c.product_power == 0 and not c.depends
    assert c.scales["truth"] == pytest.approx(0.37)
    assert c.scales["discovered"] == pytest.approx(-0.37 * 2 / 1.1)
    assert np.abs(c.residual).max() < 1e-9
    assert c.r[-1] >= 6 and c.r[-1] > c.r_data[1]  # drawn past the training data
    np.testing.assert_allclose(c.discovered, c.truth, atol=1e-9)


def test_inverse_square_laws_are_drawn_flat_and_collapsed_over_the_mass_product():
    pairs = _pairs()
    c = law_curves({**pairs, "g": -0.6 * pairs["m1"] * pairs["m2"] / pairs["r"] ** 2}, _g("-m1*m2/r^2"), _g("-m1*m2/r^2"))
    assert (c.power, c.product_power, c.colour_by) == (2, 1, "m1*m2")
    np.testing.assert_allclose(c.points["y"], -0.6, rtol=1e-9)
    charge = law_curves({**pairs, "g": 0.6 * pairs["q1"] * pairs["q2"] / pairs["r"] ** 2}, _g("q1*q2/r^2"), _g("q1*q2/r^2"))
    assert (charge.power, charge.colour_by, charge.levels) == (2, "q1*q2", [-1.0, 1.0])


def test_a_wrong_exponent_leaves_residuals_and_a_gap_beyond_the_data():
    pairs = _pairs()
    g = -pairs["m1"] * pairs["m2"] / pairs["r"] ** 2
    right = law_curves({**pairs, "g": g}, _g("-m1*m2/r^2"), _g("-m1*m2/r^2"))
    wrong = law_curves({**pairs, "g": g}, _g("-m1*m2/r^1.8"), _g("-m1*m2/r^2"))
    assert np.abs(wrong.residual).mean() > 100 * (np.abs(right.residual).mean() + 1e-12)
    assert np.abs(wrong.truth - wrong.discovered)[:, -1].max() > 0.1 * np.abs(wrong.truth).max()


def test_report_without_a_recorded_g_says_how_to_get_the_figure(spring_run, tmp_path):
    run = tmp_path / "train"
    run.mkdir()
    for name in ("config.json", "history.csv", "distill.json"):
        (run / name).write_bytes((spring_run / name).read_bytes())
    with np.load(spring_run / "messages.npz") as z:
        np.savez(run / "messages.npz", messages=z["messages"], forces=z["forces"])  # an older record
    md, _ = write_report(run)
    assert "No figure of g(r)" in md.read_text() and "symdistill distill --run" in md.read_text()
    assert not (run / "figures" / "law.png").exists()


def test_piecewise_law_is_drawn_with_its_threshold(spring_run, tmp_path):
    run = tmp_path / "train"
    run.mkdir()
    for name in ("config.json", "history.csv"):
        (run / name).write_bytes((spring_run / name).read_bytes())
    pairs = _pairs()
    g = np.where(pairs["r"] < 2, 0.0, 2 - 2 * pairs["r"])
    np.savez(run / "messages.npz", messages=np.column_stack([g, g]), g=g, **pairs)
    scalar = "Piecewise((0, r < 1.998), (r - 1, True))"
    write_json(run / "distill.json", _distill_record(threshold=1.998, final={"scalar": scalar, "k": None}))
    md, _ = write_report(run)
    assert "| threshold found on r | 1.998 |" in md.read_text()
    assert (run / "figures" / "law.png").stat().st_size > 20_000


def test_page_blocks_render_in_markdown_and_html(tmp_path):
    fig = figures.pareto_front([1, 3, 5, 9], [1.0, 0.3, 0.01, 0.009], 2, tmp_path / "p.png", title="t", chosen=3)
    rep = Report("demo")
    rep.verdict("Final law x: exact.", "good")
    rep.details("Evidence", [("checks", ["check", "passed"], [["fit", True], ["ratio", False]])])
    rep.table(["a", "b"], [[1, 0.5], [True, "x|y"]])
    rep.figure(fig, "front")
    md, page = rep.write(tmp_path)
    assert "data:image/png;base64," in page.read_text() and "src='p.png'" not in page.read_text()
    assert "<p class='verdict good'>" in page.read_text() and "<td class='fail'>no</td>" in page.read_text()
    text = md.read_text()
    assert "![front](p.png)" in text and "| yes | x\\|y |" in text and "| ratio | no |" in text


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    msgs = rng.standard_normal((200, 2))
    epochs = {"epoch": [1, 2, 3], "step": [10, 20, 30], "train_loss": [1, 0.5, 0.2], "val_loss": [1.1, 0.6, 0.3],
              "active_components": [9, 4, 2], "force_r2": [[0.9, 0.8], [0.99, 0.98], [0.999, 0.998]]}
    steps = {"step": list(range(1, 31)), "train_loss": list(np.linspace(1, 0.2, 30)), "train_penalty": [0.01] * 30}
    out = [figures.training_curves(epochs, tmp_path / "t.png", steps=steps),
           figures.messages_vs_forces(msgs, msgs + 0.01, [0.99, 0.98], tmp_path / "m.png"),
           figures.error_comparison({"test": {"network": 0.1, "formula": 0.01}}, tmp_path / "e.png")]
    assert all(p.stat().st_size > 5000 for p in out)


def _render_script():
    spec = importlib.util.spec_from_file_location("render_report", ROOT / "benchmarks" / "render_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_render_script_rebuilds_the_page_and_skips_screenshots_without_chromium(spring_run, tmp_path, monkeypatch,
                                                                               capsys):
    render = _render_script()
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-browser"))
    assert render.main([str(spring_run), "--out", str(tmp_path / "shots")]) == 0
    out = capsys.readouterr().out
    assert "Chromium not found" in out and "screenshot skipped" in out
    assert (tmp_path / "shots" / spring_run.parent.name / "report.html").exists()
    assert not list((tmp_path / "shots").glob("*.png"))
    assert render.main([str(tmp_path / "nothing-here")]) == 2


def test_step_history_is_logged_every_few_steps_and_resumes_exactly(tmp_path):
    from symdistill.train import RunConfig, train
    from symdistill.train.loop import STEP_HISTORY, step_log_every
    data = simulate_to_file(tmp_path / "s.h5", "spring", config=SimulationConfig(n_sims=12, n_steps=10))
    cfg = RunConfig().replace(**{"data.path": str(data), "data.eval_graphs": 40, "model.hidden": 16,
                                 "model.layers": 2, "train.batch_size": 32, "train.epochs": 2,
                                 "train.steps_per_epoch": 5, "train.threads": 1})
    quiet = dict(progress=False, log=lambda s: None)
    whole = train(cfg, tmp_path / "whole", **quiet)
    part = train(cfg, tmp_path / "part", max_epochs=1, **quiet)
    train(None, part, resume=True, **quiet)
    read = lambda run: list(csv.DictReader((run / STEP_HISTORY).open()))  # noqa: E731
    assert step_log_every(10) == 1 and step_log_every(1500) == 25 and step_log_every(600) == 12
    assert [int(r["step"]) for r in read(whole)] == list(range(1, 11))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read(part)) == strip(read(whole))
    assert json.loads((whole / "config.json").read_text())["config"]["train"]["total_steps"] == 10


def test_wall_time_includes_the_simulation_when_the_pipeline_recorded_it(spring_run, tmp_path):
    record = spring_run.parent / "pipeline.json"
    write_json(record, {"config": {}, "stage_seconds": {"simulate": 2.4}})
    try:
        md, _ = write_report(spring_run, tmp_path / "out")
    finally:
        record.unlink()
    line = next(x for x in md.read_text().splitlines() if x.startswith("| wall time per stage"))
    assert line.split("|")[2].strip().startswith("simulate 2 s, train 10 s") and "not counting" not in line
