"""Score and select stages: the pool scored partition by partition, then the batch chosen."""

from __future__ import annotations

from typing import Any

import numpy as np

from loopwise.scoring import (
    partition_bounds,
    partition_scores,
    select_from_candidates,
    shortlist,
    strategy_for,
)
from tasks import step_task

__all__ = ["partitions", "score_partition", "select_batch", "select_without_model"]


@step_task
def score_partition(
    model: Any, X_part: Any, offset: int, n: int, strategy: str, params: dict, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best candidates of one pool partition (global row indices and scores)."""
    return partition_scores(model, X_part, offset, n, strategy_for(strategy, params, seed))


def partitions(X: Any, k: int) -> list[tuple[Any, int]]:
    """(rows, offset) of each partition of ``X``."""
    return [(X[a:b], a) for a, b in partition_bounds(X.shape[0], k)]


@step_task
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
    s = strategy_for(strategy, params, seed)
    candidates = shortlist(scored, n, s)
    rows, scores = select_from_candidates(
        model, X_pool, candidates, n, s, X_labeled=X_labeled, y_labeled=y_labeled
    )
    return [int(r) for r in rows], [float(v) for v in scores]


@step_task
def select_without_model(X: Any, n: int, strategy: str, seed: int) -> tuple[list[int], list[float]]:
    """Choose ``n`` rows of ``X`` with a cold-start strategy, which needs no model."""
    picked, scores = strategy_for(strategy, {}, seed).query(None, X, n, return_scores=True)
    return [int(i) for i in picked], [float(v) for v in np.asarray(scores)]
