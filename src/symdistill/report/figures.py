"""Figures of a distillation run: training curves, messages vs forces, Pareto fronts, OOD errors
(the law itself: :mod:`symdistill.report.law_figure`).

Every function takes plain arrays and writes one PNG atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from symdistill.io import atomic_path  # noqa: E402


def save_figure(fig, path, *, tight: bool = True) -> Path:
    """Write ``fig`` as a PNG atomically and close it."""
    path = Path(path)
    if tight:
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def training_curves(epochs: Mapping[str, Sequence], path, *, steps: Mapping[str, Sequence] | None = None) -> Path:
    """Three panels against the training step: losses (per logged step when ``steps`` is given, validation
    per epoch), active message components, and 1 - R² of each top message against the true forces.

    ``epochs``: columns of ``history.csv`` (``force_r2`` as one list per epoch); ``steps``: columns of
    ``history_steps.csv`` (step, train_loss, train_penalty)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    x = np.asarray(epochs.get("step", epochs.get("epoch", [])), dtype=float)
    ax = axes[0]
    source = steps if steps and len(steps.get("step", [])) > 1 else epochs
    xs = np.asarray(source.get("step", x), dtype=float)
    for key, colour in (("train_loss", "C0"), ("train_penalty", "C2")):
        v = np.asarray(source.get(key, []), dtype=float)
        if len(v) and np.all(np.isfinite(v)) and np.any(v > 0):
            ax.plot(xs, np.where(v > 0, v, np.nan), color=colour, lw=1.2, label=key.replace("_", " "))
    v = np.asarray(epochs.get("val_loss", []), dtype=float)
    if len(v) and np.all(v > 0):
        ax.plot(x, v, "o-", color="C1", ms=3, lw=0.8, label="validation loss")
    ax.set_yscale("log")
    ax.set_title("loss" + (" (train: every few steps)" if source is steps else ""), fontsize=9)
    ax.legend(fontsize=8)
    if "active_components" in epochs:
        axes[1].plot(x, np.asarray(epochs["active_components"], dtype=float), "o-", color="C3", ms=3)
    axes[1].set_title("active message components", fontsize=9)
    active = np.asarray(epochs.get("active_components", [0]), dtype=float)
    axes[1].set_ylim(0, np.nanmax(active, initial=0) + 1)
    axes[1].yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    r2 = [list(row) for row in epochs.get("force_r2", [])]
    if r2 and all(len(row) == len(r2[0]) for row in r2):
        miss = 1 - np.asarray(r2, dtype=float)
        for k in range(miss.shape[1]):
            axes[2].plot(x, np.clip(miss[:, k], 1e-6, None), "o-", ms=3, label=f"message {k}")
        axes[2].set_yscale("log")
        axes[2].legend(fontsize=8)
    axes[2].set_title("1 − R² of messages vs true forces", fontsize=9)
    for ax in axes:
        ax.set_xlabel("training step")
    return save_figure(fig, path)


def messages_vs_forces(messages: np.ndarray, fitted: np.ndarray, r2: Sequence[float], path,
                       *, max_points: int = 3000) -> Path:
    """Each top message component against its best affine combination of the true forces (Fig. 5)."""
    d = messages.shape[1]
    fig, axes = plt.subplots(1, d, figsize=(3.4 * d, 3.3), squeeze=False)
    idx = np.random.default_rng(0).permutation(len(messages))[:max_points]
    for k, ax in enumerate(axes[0]):
        x, y = fitted[idx, k], messages[idx, k]
        ax.scatter(x, y, s=2, alpha=0.4)
        lo, hi = np.quantile(np.concatenate([x, y]), [0.005, 0.995])
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("affine fit of true forces")
        ax.set_ylabel(f"message component {k}")
        ax.set_title(f"R² = {r2[k]:.4f}", fontsize=9)
    return save_figure(fig, path)


def pareto_front(complexity: Sequence[int], loss: Sequence[float], selected: int | None, path,
                 *, title: str = "", chosen: int | None = None) -> Path:
    """Loss against complexity of the Pareto front: the paper's selection (``selected``) circled, and
    the candidate finally chosen (``chosen``, e.g. by refitted error) starred."""
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    ax.step(complexity, loss, where="post", marker="o", ms=3)
    if selected is not None:
        ax.scatter([complexity[selected]], [loss[selected]], s=90, facecolors="none", edgecolors="r",
                   label="paper's rule", zorder=3)
    if chosen is not None:
        ax.scatter([complexity[chosen]], [loss[chosen]], s=70, marker="*", color="C2", label="chosen", zorder=4)
    if selected is not None or chosen is not None:
        ax.legend(fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("complexity")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def error_comparison(groups: Mapping[str, Mapping[str, float]], path, *, ylabel: str = "MAE") -> Path:
    """Grouped bars: ``{"test": {"network": 0.1, "formula": 0.05}, "n=8": {...}}``."""
    names = list(groups)
    series = sorted({s for g in groups.values() for s in g})
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(names), 3.4))
    w = 0.8 / max(1, len(series))
    for i, s in enumerate(series):
        vals = [groups[n].get(s, np.nan) for n in names]
        ax.bar(np.arange(len(names)) + i * w, vals, w, label=s)
    ax.set_xticks(np.arange(len(names)) + w * (len(series) - 1) / 2)
    ax.set_xticklabels(names, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, ncol=len(series), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return save_figure(fig, path)
