"""The cosmology run's report: the tables as the paper's, predicted against true delta, the message
against the discovered formula, and the out-of-distribution errors (``report.html``, one page)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from symdistill.report.figures import error_comparison, plt, save_figure
from symdistill.report.page import Report

#: The paper's held-out errors (PAPER.md section 6), shown beside ours.
PAPER = {"constant": 0.421, "hand-designed": 0.121, "discovered": 0.0882,
         "ood network": 0.142, "ood formula": 0.0892}


def predicted_vs_true(data, path, title: str) -> Path:
    """One panel per predictor: predicted against true delta on the held-out halos."""
    keys = [("network", "graph network"), ("pred_discovered", "discovered formula"),
            ("pred_hand-designed", "hand-designed")]
    keys = [(k, label) for k, label in keys if k in data.files]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys), 3.3), sharey=True)
    axes = np.atleast_1d(axes)
    truth = data["delta"]
    lo, hi = np.percentile(truth, [0.5, 99.5])
    for ax, (k, label) in zip(axes, keys):
        pred = data[k]
        ax.scatter(truth, pred, s=3, alpha=0.4)
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set_xlabel("true delta")
        ax.set_title(f"{label}: MAE {np.mean(np.abs(pred - truth)):.3f}", fontsize=9)
    axes[0].set_ylabel("predicted delta")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def message_vs_formula(data, path) -> Path:
    """The network's top message on sampled edges against the discovered f (after the best affine map:
    a message is defined only up to one), and both against the distance."""
    msg, f, r, mj = data["message"], data["formula_edge"], data["r"], data["M_j"]
    ok = np.isfinite(f) & np.isfinite(msg)
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.4))
    if ok.sum() > 2 and np.ptp(f[ok]) > 0:
        A = np.stack([f[ok], np.ones(ok.sum())], 1)
        coef = np.linalg.lstsq(A, msg[ok], rcond=None)[0]
        fit = A @ coef
        r2 = 1 - np.sum((msg[ok] - fit) ** 2) / max(np.sum((msg[ok] - msg[ok].mean()) ** 2), 1e-300)
        a.scatter(fit, msg[ok], s=2, alpha=0.3)
        lims = [np.min(fit), np.max(fit)]
        a.plot(lims, lims, color="k", lw=0.8)
        a.set_title(f"message vs a + b f(M_j, r, M_i): R² {r2:.3f}", fontsize=9)
    a.set_xlabel("discovered f, affinely mapped")
    a.set_ylabel("top message component")
    sc = b.scatter(r, msg, c=np.log10(mj), s=2, alpha=0.4, cmap="viridis")
    fig.colorbar(sc, ax=b, label="log10 M_j [1e13 Msun/h]")
    b.set_xlabel("|r_ij| [Mpc/h]")
    b.set_ylabel("top message component")
    return save_figure(fig, path)


def _table(rep: Report, rows: list[dict], test_label: str) -> None:
    rep.table(["model", "formula", "constants", "MAE train", f"MAE {test_label}"],
              [[r["model"], r["formula"], r["n_constants"], f"{r['mae_train']:.4f}", f"{r['mae_test']:.4f}"]
               for r in rows])


def write_report(out: Path, result: dict) -> Path:
    out = Path(out)
    fig_dir = out / "figures"
    rep = Report("symdistill cosmology: a halo's overdensity from its neighbours")
    t = result.get("targets", {})
    rep.text(f"{result['n_halos']:,} halos, {result['n_edges']:,} directed edges within "
             f"{result['config']['radius']:g} Mpc/h; target: the matter overdensity smoothed with a Gaussian of "
             f"{(result.get('smoothing_radius') or float('nan')):.2f} Mpc/h at each halo centre.")
    ratio = t.get("discovered_over_hand_designed")
    if ratio is not None:
        tone = "good" if ratio <= 0.73 else "partial" if ratio < 1 else "bad"
        rep.verdict(f"discovered / hand-designed MAE on held-out halos: {ratio:.3f} (paper: 0.73); constant / "
                    f"discovered: {t['constant_over_discovered']:.2f} (target >= 3)", tone)
    for key, title, label in (("random", "Held-out halos (a random 20%)", "held out"),
                              ("ood", "Out of distribution: trained on delta < 1, scored on delta > 1", "delta > 1")):
        if key not in result:
            continue
        d = result[key]
        rep.heading(title)
        rep.text(f"{d['n_train']:,} training halos, {d['n_test']:,} scored; every formula and the network were "
                 "fitted on the training halos only.")
        _table(rep, d["table"], label)
        rep.code(f"discovered: {d['distillation']['formula']}")
        npz = out / f"predictions{'' if key == 'random' else '-ood'}.npz"
        if npz.exists():
            with np.load(npz, allow_pickle=False) as data:
                rep.figure(predicted_vs_true(data, fig_dir / f"predicted_{key}.png", title),
                           "Predicted against true delta on the scored halos.")
                rep.figure(message_vs_formula(data, fig_dir / f"message_{key}.png"),
                           "The network's top message against the discovered formula f.")
    if "ood" in result:
        groups = {k: {r["model"].split(" ")[0]: r[f"mae_{k}"] for r in result["ood"]["table"]}
                  for k in ("train", "test")}
        rep.figure(error_comparison({"delta < 1 (train)": groups["train"], "delta > 1 (held out)": groups["test"]},
                                    fig_dir / "ood.png"),
                   f"Out of distribution: discovered / network on delta > 1 = "
                   f"{t.get('ood_discovered_over_network', float('nan')):.3f} (paper: 0.0892 / 0.142 = 0.63).")
    rep.heading("The paper's numbers (Quijote, 1 Gpc/h, 215,854 halos)")
    rep.table(["model", "MAE"], [[k, v] for k, v in PAPER.items()])
    _, page = rep.write(out)
    return page
