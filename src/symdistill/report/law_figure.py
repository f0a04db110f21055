"""The law, drawn: the scalar force g(r) read off the messages, with the discovered and the true law.

The scale of the recorded g is arbitrary (the method cannot identify a constant factor), so each law
is drawn times the one factor that fits it best to the scattered g (least squares): the figure then
compares shapes, which is what the messages can tell. Curves run past the training data (to r = 6 or
beyond) to show how each law extrapolates; residuals (data minus discovered law) are drawn below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402

from symdistill.distill.sr import evaluate  # noqa: E402
from symdistill.names import PAIR_VARIABLES as VARIABLES  # noqa: E402
from symdistill.report.figures import save_figure  # noqa: E402


@dataclass
class LawCurves:
    """What :func:`law_figure` draws, in plotted units y = r**power * g / (m1 m2)**product_power.

    Attributes:
        power: the power of r the scalar is multiplied by (0, or the law's decay at large r).
        product_power: the power of m1 m2 it is divided by (0, or the law's, for mass-product laws).
        colour_by: "m1*m2" or "q1*q2": the pair product the points are coloured by.
        depends: whether either law depends on that product (otherwise one curve per law).
        levels: the product value of each drawn curve.
        r: the grid of the curves, [G]; r_data: (min, max) of the recorded r.
        discovered, truth: [len(levels), G] scaled curves (truth None when unknown).
        scales: least-squares factor of each law onto the scattered g.
        points: the finite samples (r, product, y); residual: y minus the scaled discovered law there.
    """

    power: int
    product_power: int
    colour_by: str
    depends: bool
    levels: list[float]
    r: np.ndarray
    r_data: tuple[float, float]
    discovered: np.ndarray
    truth: np.ndarray | None
    scales: dict[str, float]
    points: dict[str, np.ndarray]
    residual: np.ndarray


def _columns(samples: Mapping[str, np.ndarray], keep=None) -> dict[str, np.ndarray]:
    cols = {k: np.asarray(samples[k], dtype=float) for k in VARIABLES if k in samples}
    n = len(cols["r"])
    cols.update({k: np.zeros(n) for k in VARIABLES if k not in cols})  # charge-free records
    return cols if keep is None else {k: v[keep] for k, v in cols.items()}


def _at_level(r: np.ndarray, level: float, colour_by: str, medians: dict[str, float]) -> dict[str, np.ndarray]:
    """Columns on the grid ``r`` for a pair whose product is ``level``: the two factors equal in size
    (a law that is not a function of the product alone is drawn at that symmetric pair)."""
    cols = {k: np.full(len(r), medians[k]) for k in ("m1", "m2", "q1", "q2")}
    root = np.sqrt(abs(level))
    if colour_by == "q1*q2":
        cols["q1"], cols["q2"] = np.full(len(r), root), np.full(len(r), np.sign(level) * root)
    else:
        cols["m1"], cols["m2"] = np.full(len(r), root), np.full(len(r), root)
    return {"r": r, **cols}


def _decay_power(expr: sp.Expr, level: float, colour_by: str, medians: dict[str, float]) -> int:
    """The power p of a law that falls like r^-p at large r (p >= 1), else 0. Why: an r^-2 law spans
    four decades over the recorded r, so g itself shows a spike near r = 0 and a flat line elsewhere;
    r^p g is flat for a power law and keeps its shape readable. Laws that do not decay stay as g."""
    r = np.linspace(3.0, 6.0, 16)
    f = np.abs(evaluate(expr, _at_level(r, level, colour_by, medians)))
    if not np.all(np.isfinite(f)) or np.any(f <= 1e-12 * max(1.0, float(np.max(f, initial=0.0)))):
        return 0
    p = -np.polyfit(np.log(r), np.log(f), 1)[0]
    return int(min(3, round(p))) if p >= 0.75 else 0


def _product_power(expr: sp.Expr, medians: dict[str, float]) -> int:
    """The integer power a of a law proportional to (m1 m2)^a, else 0. Why: masses are continuous and
    span three decades, so g of a gravity-like law is a fan of curves, one per mass product; divided
    by (m1 m2)^a every point falls on one curve. (Charges of +-1 give two clear branches: kept.)"""
    r = np.full(2, 1.5)
    f = np.abs([evaluate(expr, _at_level(r, lv, "m1*m2", medians))[0] for lv in (0.5, 2.0)])
    if not np.all(np.isfinite(f)) or np.any(f <= 0):
        return 0
    a = float(np.log(f[1] / f[0]) / np.log(4.0))
    return int(round(a)) if round(a) >= 1 and abs(a - round(a)) < 0.05 else 0


def _levels(product: np.ndarray, colour_by: str) -> list[float]:
    values = np.unique(np.round(product, 6))
    if len(values) <= 3:  # e.g. charges of +-1: every product that occurs
        return [float(v) for v in values]
    qs = (0.1, 0.9) if colour_by == "q1*q2" else (0.1, 0.5, 0.9)
    return [float(v) for v in np.quantile(product, qs)]


def _fit_scale(y: np.ndarray, f: np.ndarray) -> float:
    ok = np.isfinite(f) & np.isfinite(y)
    denom = float(np.sum(f[ok] ** 2))
    return float(np.sum(y[ok] * f[ok]) / denom) if denom > 0 else float("nan")


def law_curves(samples: Mapping[str, np.ndarray], discovered: sp.Expr, truth: sp.Expr | None = None,
               *, r_max: float = 6.0, n_grid: int = 400) -> LawCurves:
    """The curves of :func:`law_figure` (see :class:`LawCurves`). ``samples``: 1-D arrays ``r``,
    ``m1``, ``m2`` (``q1``, ``q2``) and ``g`` of recorded edges; ``discovered`` and ``truth``: g as
    sympy expressions in r, m1, m2, q1, q2."""
    g = np.asarray(samples["g"], dtype=float)
    keep = np.isfinite(g) & np.isfinite(np.asarray(samples["r"], dtype=float))
    if not keep.any():
        raise ValueError("`samples['g']` has no finite value: the search found no map to read g from")
    cols, g = _columns(samples, keep), g[keep]
    laws = {"discovered": sp.sympify(discovered)} | ({} if truth is None else {"truth": sp.sympify(truth)})
    used = set().union(*({s.name for s in e.free_symbols} for e in laws.values()))
    colour_by = "q1*q2" if used & {"q1", "q2"} else "m1*m2"
    product = cols["q1"] * cols["q2"] if colour_by == "q1*q2" else cols["m1"] * cols["m2"]
    depends = bool(used & ({"q1", "q2"} if colour_by == "q1*q2" else {"m1", "m2"}))
    levels = _levels(product, colour_by) if depends else [float(np.median(product))]
    medians = {k: float(np.median(cols[k])) for k in ("m1", "m2", "q1", "q2")}
    ref = laws.get("truth", laws["discovered"])
    product_power = _product_power(ref, medians) if depends and colour_by == "m1*m2" else 0
    if product_power:
        levels, depends = [1.0], False  # one curve: the law at m1 m2 = 1 is the law divided by (m1 m2)^a
    power = _decay_power(ref, max(levels, key=abs), colour_by, medians)
    weight = cols["r"] ** power / product ** product_power
    y = weight * g
    grid = np.linspace(max(0.02, 0.9 * cols["r"].min()), max(r_max, 1.25 * cols["r"].max()), n_grid)
    scales, curves = {}, {}
    for name, expr in laws.items():
        scales[name] = _fit_scale(y, weight * evaluate(expr, cols))  # least squares in plotted units
        curves[name] = np.stack([scales[name] * grid ** power * evaluate(expr, _at_level(grid, lv, colour_by, medians))
                                 for lv in levels])
    residual = y - scales["discovered"] * weight * evaluate(laws["discovered"], cols)
    return LawCurves(power, product_power, colour_by, depends, levels, grid, (float(cols["r"].min()), float(cols["r"].max())),
                     curves["discovered"], curves.get("truth"), scales,
                     {"r": cols["r"], "product": product, "y": y}, residual)


def law_figure(samples: Mapping[str, np.ndarray], discovered: sp.Expr, truth: sp.Expr | None, path, *,
               threshold: float | None = None, max_points: int = 3000, r_max: float = 6.0) -> Path:
    """Scatter of the recorded g(r) coloured by the pair product, the two laws over r, residuals below."""
    with np.errstate(all="ignore"):  # a Piecewise evaluates every branch everywhere (log of < 0, 1/0)
        c = law_curves(samples, discovered, truth, r_max=r_max)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.2), sharex=True, layout="constrained",
                                      gridspec_kw={"height_ratios": [2.2, 1]})
    idx = np.random.default_rng(0).permutation(len(c.residual))[:max_points]
    norm, cmap = _colour_scale(c.points["product"], c.colour_by)
    sc = top.scatter(c.points["r"][idx], c.points["y"][idx], c=c.points["product"][idx], cmap=cmap, norm=norm,
                     s=6, alpha=0.6, lw=0, zorder=1)
    bottom.scatter(c.points["r"][idx], c.residual[idx], c=c.points["product"][idx], cmap=cmap, norm=norm,
                   s=4, alpha=0.5, lw=0)
    for k, level in enumerate(c.levels):
        colour = cmap(norm(level)) if c.depends else "C3"
        top.plot(c.r, c.discovered[k], color=colour, lw=1.3, zorder=3, path_effects=_outline())
        if c.truth is not None:
            top.plot(c.r, c.truth[k], color="k", lw=1.0, ls=(0, (4, 3)), zorder=4)
            bottom.plot(c.r, c.truth[k] - c.discovered[k], color=colour, lw=1.2, ls="--")
    _decorate(top, bottom, c, threshold)
    fig.colorbar(sc, ax=[top, bottom], label=c.colour_by, pad=0.01)
    return save_figure(fig, path, tight=False)


def _colour_scale(product: np.ndarray, colour_by: str):
    if colour_by == "q1*q2":
        top = float(np.max(np.abs(product), initial=1.0)) or 1.0
        return Normalize(-top, top), plt.get_cmap("coolwarm")
    lo, hi = np.quantile(product, [0.005, 0.995])
    return (LogNorm(lo, hi) if lo > 0 and hi > lo else Normalize(lo, hi)), plt.get_cmap("viridis")


def _outline():
    from matplotlib import patheffects
    return [patheffects.Stroke(linewidth=2.4, foreground="white"), patheffects.Normal()]


def _decorate(top, bottom, c: LawCurves, threshold: float | None) -> None:
    label = "g(r)" if c.power == 0 else ("r × g(r)" if c.power == 1 else f"r$^{c.power}$ × g(r)")
    if c.product_power:
        label += " / (m1 m2)" + ("" if c.product_power == 1 else f"$^{c.product_power}$")
    lo, hi = np.quantile(c.points["y"], [0.005, 0.995])
    # the curves from the smallest recorded r on (they may blow up below it), extrapolation included
    shown = np.concatenate([x[:, c.r >= c.r_data[0]] for x in (c.discovered, c.truth) if x is not None])
    lo, hi = min(lo, float(np.nanmin(shown))), max(hi, float(np.nanmax(shown)))
    pad = 0.12 * (hi - lo or 1.0)
    top.set_ylim(lo - pad, hi + pad)
    res = np.quantile(np.abs(c.residual), 0.99) or 1.0
    bottom.set_ylim(-1.6 * res, 1.6 * res)
    for ax in (top, bottom):
        ax.axvspan(c.r_data[1], c.r[-1], color="0.92", zorder=0)
        ax.axhline(0, color="0.5", lw=0.6, zorder=0)
        if threshold is not None:
            ax.axvline(threshold, color="C1", lw=1.2, ls=":", zorder=2)
    top.text(0.5 * (c.r_data[1] + c.r[-1]), 0.5 * (lo + hi), "beyond the training data", rotation=90,
             fontsize=8, ha="center", va="center", color="0.4")
    if threshold is not None:
        top.text(threshold, lo - 0.6 * pad, f" threshold r = {threshold:.4g}", color="C1", fontsize=8, va="bottom")
    handles = [plt.Line2D([], [], color="0.3" if c.depends else "C3", lw=1.3, label="discovered law (scaled)")]
    if c.truth is not None:
        handles.append(plt.Line2D([], [], color="k", lw=1.0, ls=(0, (4, 3)), label="true law (scaled)"))
    top.legend(handles=handles, fontsize=8, loc="best")
    top.set_ylabel(f"{label}, message units")
    bottom.set_ylabel("data − discovered" + ("\n(dashed: true − discovered)" if c.truth is not None else ""), fontsize=9)
    bottom.set_xlabel("r (softened distance)")
    bottom.set_xlim(c.r[0], c.r[-1])
