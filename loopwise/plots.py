"""Figures: learning curves. matplotlib is imported lazily, with a file-only backend."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["campaign_curve_figure", "confusion_figure", "plot_learning_curves"]


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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def campaign_curve_figure(history: list[dict], metric: str = "accuracy"):
    """Holdout metric against labels and against money spent, one point per cycle.

    ``history`` rows hold ``labels``, ``cost`` and ``metric``. Returns a matplotlib Figure.
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    labels = [h["labels"] for h in history]
    cost = [h["cost"] for h in history]
    value = [h["metric"] for h in history]
    left.plot(labels, value, "o-")
    left.set_xlabel("labels")
    right.plot(cost, value, "o-", color="tab:green")
    right.set_xlabel("cost spent")
    for ax in (left, right):
        ax.set_ylabel(f"holdout {metric}")
        ax.grid(alpha=0.3)
    fig.suptitle("learning curve")
    fig.tight_layout()
    return fig


def confusion_figure(confusion: list[list[int]], labels: list[str]):
    """The holdout confusion matrix (rows: true label, columns: predicted). Returns a Figure."""
    plt = _pyplot()
    size = min(12, 3 + 0.35 * len(labels))
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= 12:
        for i, row in enumerate(confusion):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    fig.tight_layout()
    return fig
