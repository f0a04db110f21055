"""Trajectory plots of simulated systems."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from symdistill.io import atomic_path  # noqa: E402


def plot_trajectories(pos: np.ndarray, mass: np.ndarray, path, *, title: str = "", n_panels: int = 4) -> Path:
    """Paths of the bodies of the first ``n_panels`` simulations (x-y plane), dot size ~ mass.

    Shapes: pos [n_sims, n_steps, n_bodies, dim], mass [n_sims, n_bodies].
    """
    n = min(n_panels, pos.shape[0])
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.3), squeeze=False)
    for k, ax in enumerate(axes[0]):
        for b in range(pos.shape[2]):
            line, = ax.plot(pos[k, :, b, 0], pos[k, :, b, 1], lw=1)
            ax.scatter(pos[k, -1, b, 0], pos[k, -1, b, 1], s=12 + 25 * np.sqrt(mass[k, b]),
                       color=line.get_color(), zorder=3)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"simulation {k}", fontsize=9)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
