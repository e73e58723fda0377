"""Figures: learning curves. matplotlib is imported lazily, with a file-only backend."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["plot_learning_curves"]


def plot_learning_curves(
    mean_curves: pd.DataFrame, path: str | Path, title: str = "", highlight: str | None = None
) -> Path:
    """Write accuracy against labels for each arm (mean ± std over seeds) to ``path`` (PNG).

    ``mean_curves`` has the columns ``arm, n_labels, mean, std`` of
    :meth:`loopwise.simulate.SimulationResult.mean_curves`.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for arm, curve in mean_curves.groupby("arm", sort=False):
        width = 2.6 if arm == highlight else 1.2
        style = "--" if arm == "random" else "-"
        color = "black" if arm == "random" else None
        ax.plot(curve["n_labels"], curve["mean"], style, lw=width, label=arm, color=color)
        std = curve["std"].fillna(0.0)
        ax.fill_between(
            curve["n_labels"], curve["mean"] - std, curve["mean"] + std, alpha=0.12, color=color
        )
    ax.set_xlabel("labels")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
