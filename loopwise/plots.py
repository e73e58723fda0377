"""Figures: learning curves. matplotlib is imported lazily, with a file-only backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["campaign_curve_figure", "confusion_figure", "plot_learning_curves", "report_figures"]


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


def report_figures(report: dict) -> dict[str, bytes]:
    """The report's two figures as PNG bytes: accuracy against labels and against money.

    Each shows the campaign's holdout accuracy, the control estimate (95 % interval) and
    the random-labeling counterfactual: models trained on the control labels alone, with
    the inverse power law fitted to them.
    """
    import io

    plt = _pyplot()
    hist = report.get("history") or []
    est = {e["cycle"]: e for e in report.get("control_estimates") or []}
    rand = report.get("random_curve") or []
    fit = (report.get("random_needed") or {}).get("random_fit")
    per_label = report.get("cost_per_label") or 0.0
    out = {}
    for name, money in (("accuracy_vs_labels", False), ("accuracy_vs_money", True)):
        fig, ax = plt.subplots(figsize=(8, 4.2), dpi=100)
        scale = per_label if money else 1.0
        x = [h["cost"] if money else h["labels"] for h in hist]
        ax.plot(x, [h["metric"] for h in hist], "o-", color="tab:blue", label="campaign (holdout)")
        pts = [(h, est[h["cycle"]]) for h in hist if h["cycle"] in est]
        if pts:
            xs = [h["cost"] if money else h["labels"] for h, _ in pts]
            ys = [e["accuracy"] for _, e in pts]
            err = [
                [e["accuracy"] - e["ci_low"] for _, e in pts],
                [e["ci_high"] - e["accuracy"] for _, e in pts],
            ]
            ax.errorbar(
                xs,
                ys,
                yerr=err,
                fmt="s",
                color="tab:orange",
                alpha=0.7,
                capsize=3,
                label="control estimate (pool, 95 %)",
            )
        if rand:
            ax.plot(
                [p["labels"] * scale for p in rand],
                [p["accuracy"] for p in rand],
                "^",
                color="tab:gray",
                label="random labeling (control labels only)",
            )
        if fit and rand:  # over the measured range only: no extrapolation is drawn
            n = np.linspace(min(p["labels"] for p in rand), max(p["labels"] for p in rand), 100)
            y = fit["a"] - fit["b"] * n ** (-fit["c"])
            ax.plot(n * scale, y, "--", color="tab:gray", label="random labeling, fitted")
        ax.set_xlabel("money spent" if money else "labels accepted")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title("accuracy against money" if money else "accuracy against labels")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        out[name] = buf.getvalue()
    return out
