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
    "shortlist",
    "shortlist_size",
    "strategy_for",
]

#: Strategies that are not a per-row score choose among the pool's most uncertain rows
#: (by margin), this many times the batch (the whole pool when it is smaller): the same
#: rows however the pool is cut into partitions. (Until issue 16 each of the default 4
#: partitions kept 50 times the batch: at most as many rows, which ones depending on
#: the cut.)
PREFILTER_FACTOR = 200


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

    For a per-row score strategy this is its own score, keeping ``n`` rows; for any
    other strategy it is the margin score, keeping ``PREFILTER_FACTOR · n`` rows. Either
    way the union of the partitions' rows holds the pool's best (:func:`shortlist`).
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


def shortlist_size(n: int, score_strategy: bool) -> int:
    """How many of the pool's best rows the strategy chooses from."""
    return n if score_strategy else PREFILTER_FACTOR * n


def shortlist(scored: list[tuple[np.ndarray, np.ndarray]], n: int, strategy: Any) -> np.ndarray:
    """The pool's best rows from the partitions' (:func:`partition_scores`): the global top
    :func:`shortlist_size` by score, ties to the smaller row; sorted by row."""
    idx = np.concatenate([i for i, _ in scored]) if scored else np.zeros(0, dtype=np.int64)
    val = np.concatenate([s for _, s in scored]) if scored else np.zeros(0)
    keep = shortlist_size(n, _is_score_strategy(strategy))
    order = np.lexsort((idx, -val))[:keep]
    return np.sort(idx[order]).astype(np.int64)


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
