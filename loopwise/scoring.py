"""Scoring a pool in partitions that can run anywhere (threads, a Dask worker), then selecting
the batch from the union of the partitions' best candidates."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from loopwise import strategies
from loopwise._validation import take_rows
from loopwise.strategies._base import ScoreStrategy, score_pool
from loopwise.strategies.uncertainty import margin_scores

__all__ = [
    "PREFILTER_FACTOR",
    "partition_bounds",
    "partition_scores",
    "select_from_candidates",
    "strategy_for",
]

#: Strategies that are not a per-row score see the union of the partitions' most
#: uncertain rows, this many times the batch (and the whole pool when it is smaller).
PREFILTER_FACTOR = 50


def partition_bounds(n_rows: int, n_partitions: int) -> list[tuple[int, int]]:
    """``[start, stop)`` row ranges of at most ``n_partitions`` near-equal partitions."""
    k = max(1, min(n_partitions, n_rows))
    edges = np.linspace(0, n_rows, k + 1).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def _is_score_strategy(strategy: Any) -> bool:
    return isinstance(strategy, ScoreStrategy)


def partition_scores(
    clf: Any, X_part: Any, offset: int, n: int, strategy: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The best candidates of one partition: (global row indices, scores), best first.

    For a per-row score strategy this is its own score, and the union of the
    partitions' top ``n`` holds the global top ``n`` exactly. For any other
    strategy it is the margin score, keeping ``PREFILTER_FACTOR · n`` rows.
    """
    if _is_score_strategy(strategy):
        scores = score_pool(clf, X_part, strategy.utility)
        keep = n
    else:
        scores = score_pool(clf, X_part, margin_scores)
        keep = PREFILTER_FACTOR * n
    keep = min(keep, scores.size)
    idx = np.argsort(-scores, kind="stable")[:keep]
    return idx + offset, scores[idx]


def select_from_candidates(
    clf: Any,
    X_pool: Any,
    candidates: np.ndarray,
    n: int,
    strategy: Any,
    *,
    X_labeled: Any = None,
    y_labeled: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``strategy`` on the candidate rows; return (pool row indices, scores), best first."""
    candidates = np.sort(np.asarray(candidates, dtype=np.int64))
    X_cand = take_rows(X_pool, candidates)
    local, scores = strategy.query(
        clf, X_cand, n, X_labeled=X_labeled, y_labeled=y_labeled, return_scores=True
    )
    return candidates[local], np.asarray(scores, dtype=np.float64)


def strategy_for(name: str, params: dict[str, Any], seed: int) -> Any:
    """The named strategy, seeded."""
    return strategies.get(name, random_state=seed, **params)
