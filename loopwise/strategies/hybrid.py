"""Batch mode that balances informativeness and diversity: cluster-margin."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from loopwise._validation import take_rows
from loopwise.strategies._base import QueryStrategy, feature_space, score_pool, top_n
from loopwise.strategies.diversity import cluster_representatives
from loopwise.strategies.uncertainty import margin_scores

__all__ = ["ClusterMargin"]


class ClusterMargin(QueryStrategy):
    """The ``candidate_factor · n`` smallest-margin candidates, diversified by k-means.

    Margin alone fills a batch with near-copies of the same confusion; clustering
    the shortlist into ``n`` groups and taking the least certain row of each keeps
    the batch informative *and* spread out. Only the shortlist is embedded and
    clustered, so the cost over the pool is that of margin sampling.

    Parameters
    ----------
    candidate_factor : float >= 1
        Shortlist size as a multiple of the batch size (1 is plain margin sampling).
    random_state : int, RandomState instance or None
    """

    name = "cluster_margin"

    def __init__(self, candidate_factor: float = 10.0, random_state: Any = None) -> None:
        self.candidate_factor = candidate_factor
        self.random_state = random_state

    def _query(self, clf, X_pool, n, X_labeled, y_labeled, rng):
        factor = self.candidate_factor
        if not (isinstance(factor, int | float) and math.isfinite(factor) and factor >= 1):
            raise ValueError(f"candidate_factor must be a number >= 1, got {factor!r}")
        unc = score_pool(clf, X_pool, margin_scores)
        m = min(unc.size, max(n, math.ceil(factor * n)))
        shortlist = top_n(unc, m, rng)
        if m == n:
            return shortlist, unc[shortlist]
        X_short = feature_space(clf, take_rows(X_pool, shortlist))
        local, _ = cluster_representatives(X_short, n, random_state=rng, score=unc[shortlist])
        picked = shortlist[local]
        order = np.argsort(-unc[picked], kind="stable")
        return picked[order], unc[picked][order]
