"""Reports: Markdown and a self-contained HTML page."""

import numpy as np

from symdistill.report import figures
from symdistill.report.page import Report


def test_html_report_embeds_its_figures(tmp_path):
    fig = figures.pareto_front([1, 3, 5, 9], [1.0, 0.3, 0.01, 0.009], 2, tmp_path / "p.png", title="t")
    rep = Report("demo")
    rep.heading("Pareto")
    rep.table(["a", "b"], [[1, 0.5], [True, "x"]])
    rep.figure(fig, "front")
    md, html = rep.write(tmp_path)
    page = html.read_text()
    assert "data:image/png;base64," in page and "src='p.png'" not in page
    assert "![front](p.png)" in md.read_text()
    assert "| yes | x |" in md.read_text()


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    msgs = rng.standard_normal((200, 2))
    out = [figures.training_curves({"epoch": [1, 2, 3], "train_loss": [1, 0.5, 0.2], "active": [9, 4, 2]},
                                   tmp_path / "t.png", sparsity_key="active"),
           figures.messages_vs_forces(msgs, msgs + 0.01, [0.99, 0.98], tmp_path / "m.png"),
           figures.error_comparison({"test": {"network": 0.1, "formula": 0.01}}, tmp_path / "e.png")]
    assert all(p.stat().st_size > 5000 for p in out)
