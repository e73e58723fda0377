"""Cold start: the first batch, chosen before any model exists."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.utils import check_random_state

from loopwise._validation import num_rows
from loopwise.strategies._base import QueryStrategy, feature_space
from loopwise.strategies.diversity import cluster_representatives

__all__ = ["ColdStart", "representatives", "stratified_sample"]


def representatives(X: np.ndarray, n: int, random_state: Any = None) -> np.ndarray:
    """Rows nearest the centroids of ``n`` k-means++ clusters of standardized ``X``."""
    X = np.asarray(X, dtype=np.float32)
    std = X.std(axis=0)
    std[std == 0] = 1.0
    Z = (X - X.mean(axis=0)) / std
    idx, _ = cluster_representatives(Z, n, random_state=random_state)
    return idx


def stratified_sample(strata: npt.ArrayLike, n: int, random_state: Any = None) -> np.ndarray:
    """Draw ``n`` rows at random with every stratum represented in proportion to its size.

    Allocation uses the largest-remainder rule, so the counts add up to ``n``
    exactly; a stratum gets at least one row while ``n`` allows it.
    """
    rng = check_random_state(random_state)
    strata = np.asarray(strata)
    values, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    N = strata.shape[0]
    n = min(n, N)
    quota = counts * n / N
    alloc = np.floor(quota).astype(int)
    if n >= values.size:
        alloc = np.maximum(alloc, 1)
    while alloc.sum() > n:
        alloc[np.argmax(alloc - quota)] -= 1
    remainder = quota - alloc
    while alloc.sum() < n:
        open_ = alloc < counts
        k = np.flatnonzero(open_)[
            np.argmax(remainder[open_] + rng.random_sample(open_.sum()) * 1e-9)
        ]
        alloc[k] += 1
        remainder[k] = -np.inf
    chosen = [
        rng.choice(np.flatnonzero(inverse == k), size=a, replace=False)
        for k, a in enumerate(alloc)
        if a > 0
    ]
    idx = np.concatenate(chosen)
    return idx[rng.permutation(idx.size)]


class ColdStart(QueryStrategy):
    """The first batch when nothing is labeled and no model exists.

    Parameters
    ----------
    stratify : str or array-like of shape (N,), optional
        A column of the pool DataFrame, or one value per pool row. When given,
        the batch is a stratified random sample; otherwise it is the k-means++
        representatives of the (standardized) features.
    random_state : int, RandomState instance or None
    """

    name = "cold_start"
    needs_model = False

    def __init__(
        self, stratify: str | npt.ArrayLike | None = None, random_state: Any = None
    ) -> None:
        self.stratify = stratify
        self.random_state = random_state

    def _query(self, clf, X_pool, n, X_labeled, y_labeled, rng):
        if self.stratify is not None:
            strata = self._strata(X_pool)
            idx = stratified_sample(strata, n, rng)
            return idx, np.zeros(idx.size, dtype=np.float32)
        idx = representatives(feature_space(clf, X_pool), n, rng)
        return idx, np.zeros(idx.size, dtype=np.float32)

    def _strata(self, X_pool: Any) -> np.ndarray:
        if isinstance(self.stratify, str):
            if not hasattr(X_pool, "columns") or self.stratify not in X_pool.columns:
                cols = list(getattr(X_pool, "columns", []))
                raise ValueError(
                    f"stratify={self.stratify!r} names no column of X_pool (columns: {cols})"
                )
            return X_pool[self.stratify].to_numpy()
        strata = np.asarray(self.stratify)
        if strata.shape[0] != num_rows(X_pool):
            raise ValueError(
                f"stratify has {strata.shape[0]} values but X_pool has {num_rows(X_pool)} rows"
            )
        return strata
