"""Figures of a distillation run: training curves, messages vs forces, Pareto fronts, OOD errors.

Every function takes plain arrays and writes one PNG atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from symdistill.io import atomic_path  # noqa: E402


def _save(fig, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def training_curves(history: Mapping[str, Sequence[float]], path, *, sparsity_key: str | None = None) -> Path:
    """Losses per epoch (log scale) and, if given, the number of active message components."""
    epochs = np.asarray(history.get("epoch", np.arange(len(next(iter(history.values()))))))
    panels = 2 if sparsity_key and sparsity_key in history else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.4), squeeze=False)
    ax = axes[0, 0]
    for key, values in history.items():
        if "loss" in key or key in ("penalty", "val_mae", "train_mae"):
            v = np.asarray(values, dtype=float)
            if np.all(np.isfinite(v)) and np.all(v > 0):
                ax.plot(epochs, v, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title("training")
    ax.legend(fontsize=8)
    if panels == 2:
        ax = axes[0, 1]
        ax.plot(epochs, np.asarray(history[sparsity_key], dtype=float), color="C3")
        ax.set_xlabel("epoch")
        ax.set_title("active message components")
    return _save(fig, path)


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
    return _save(fig, path)


def pareto_front(complexity: Sequence[int], loss: Sequence[float], selected: int | None, path,
                 *, title: str = "") -> Path:
    """Loss against complexity of the Pareto front, the selected equation marked."""
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    ax.step(complexity, loss, where="post", marker="o", ms=3)
    if selected is not None:
        ax.scatter([complexity[selected]], [loss[selected]], s=80, facecolors="none", edgecolors="r",
                   label="selected", zorder=3)
        ax.legend(fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("complexity")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


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
    ax.legend(fontsize=8)
    return _save(fig, path)
