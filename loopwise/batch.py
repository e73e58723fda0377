"""A batch as it goes to annotators: the strategy's picks plus the random control share,
as records Label Studio dispatch takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from loopwise.config import CampaignConfig

__all__ = [
    "batch_records",
    "control_count",
    "draw_control",
]


def batch_records(
    cfg: CampaignConfig,
    pool: pd.DataFrame,
    rows: list[int],
    scores: list[float],
    model: Any = None,
    X_rows: Any = None,
    control: Sequence[bool] | None = None,
) -> list[dict[str, Any]]:
    """The batch as Label Studio dispatch takes it: item id, data, model guess, query score.

    ``control`` marks the rows drawn at random (the control share); annotators never see it.
    """
    picked = pool.iloc[rows]
    guess: list[tuple[str | None, float | None]] = [(None, None)] * len(rows)
    if model is not None and len(rows):
        proba = model.predict_proba(X_rows)
        classes = [str(c) for c in model.classes_]
        guess = [(classes[int(p.argmax())], float(p.max())) for p in proba]
    if cfg.data.text_column:
        data = [{"text": str(t)} for t in picked[cfg.data.text_column]]
    else:
        shown = [c for c in picked.columns if c not in {cfg.data.label_column, "item_id"}]
        data = [{"record": rec} for rec in picked[shown].to_dict("records")]
    return [
        {
            "item_id": item,
            "data": d,
            "prediction_label": g[0],
            "prediction_score": g[1],
            "query_score": s,
            "control": c,
        }
        for item, d, g, s, c in zip(
            picked["item_id"],
            data,
            guess,
            scores,
            [False] * len(rows) if control is None else [bool(c) for c in control],
            strict=True,
        )
    ]


def control_count(n: int, fraction: float) -> int:
    """How many of a batch of ``n`` are drawn at random: at least one when the share is set."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(n * fraction)))


def draw_control(n_rows: int, exclude: Sequence[int], k: int, seed: int) -> list[int]:
    """``k`` rows drawn uniformly from ``range(n_rows)`` minus ``exclude`` (reproducible)."""
    free = np.setdiff1d(np.arange(n_rows), np.asarray(list(exclude), dtype=int))
    k = min(k, free.size)
    if k <= 0:
        return []
    rng = np.random.default_rng([seed, 0xC0])
    return sorted(int(i) for i in rng.choice(free, size=k, replace=False))
