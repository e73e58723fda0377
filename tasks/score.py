"""Score and select stages: the pool scored partition by partition, then the batch chosen."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from loopwise.config import CampaignConfig
from loopwise.pool import partition_bounds, partition_scores, select_from_candidates, strategy_for

__all__ = ["batch_records", "score_partition", "select_batch"]


@task(cache_policy=NO_CACHE)
def score_partition(
    model: Any, X_part: Any, offset: int, n: int, strategy: str, params: dict, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best candidates of one pool partition (global row indices and scores)."""
    return partition_scores(model, X_part, offset, n, strategy_for(strategy, params, seed))


def partitions(X: Any, k: int) -> list[tuple[Any, int]]:
    """(rows, offset) of each partition of ``X``."""
    return [(X[a:b], a) for a, b in partition_bounds(X.shape[0], k)]


@task(cache_policy=NO_CACHE)
def select_batch(
    model: Any,
    X_pool: Any,
    scored: list[tuple[np.ndarray, np.ndarray]],
    n: int,
    strategy: str,
    params: dict,
    seed: int,
    X_labeled: Any = None,
    y_labeled: Any = None,
) -> tuple[list[int], list[float]]:
    """Choose the batch from the partitions' candidates with the campaign's strategy."""
    candidates = np.unique(np.concatenate([idx for idx, _ in scored]))
    s = strategy_for(strategy, params, seed)
    rows, scores = select_from_candidates(
        model, X_pool, candidates, n, s, X_labeled=X_labeled, y_labeled=y_labeled
    )
    return [int(r) for r in rows], [float(v) for v in scores]


def batch_records(
    cfg: CampaignConfig,
    pool: pd.DataFrame,
    rows: list[int],
    scores: list[float],
    model: Any = None,
    X_rows: Any = None,
) -> list[dict[str, Any]]:
    """The batch as Label Studio dispatch takes it: item id, data, model guess, query score."""
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
        }
        for item, d, g, s in zip(picked["item_id"], data, guess, scores, strict=True)
    ]
