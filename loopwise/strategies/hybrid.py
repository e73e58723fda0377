"""Batch mode that balances informativeness and diversity: cluster-margin."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from loopwise._validation import take_rows
from loopwise.strategies._base import QueryStrategy, feature_space, score_pool, top_n
from loopwise.strategies.diversity import cluster_representatives
from loopwise.strategies.uncertainty import margin_scores

__all__ = ["ClusterMargin", "typicality"]

#: Pool rows sampled as the reference of the typicality estimate.
_TYPICALITY_REFERENCE = 20_000


def typicality(X: np.ndarray, reference: np.ndarray, k: int = 20) -> np.ndarray:
    """Inverse mean distance of each row of ``X`` to its ``k`` nearest rows of ``reference``.

    High in dense regions (typical records), low for outliers; O(len(X) · len(reference)).
    """
    X = np.asarray(X, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    k = min(k, reference.shape[0])
    d = (X**2).sum(1)[:, None] - 2.0 * X @ reference.T + (reference**2).sum(1)[None, :]
    np.maximum(d, 0.0, out=d)
    nearest = np.partition(d, k - 1, axis=1)[:, :k]
    return 1.0 / (np.sqrt(nearest).mean(axis=1) + 1e-12)


class ClusterMargin(QueryStrategy):
    """The ``candidate_factor · n`` smallest-margin candidates, diversified by k-means.

    Margin alone fills a batch with near-copies of the same confusion; clustering
    the shortlist into ``n`` groups and taking one row of each keeps the batch
    informative *and* spread out. Only the shortlist is embedded and clustered, so
    the cost over the pool is that of margin sampling.

    Which row of a cluster: the least certain one (``"uncertain"``) or the most
    typical one — the highest inverse mean distance to its 20 nearest pool rows
    (``"typical"``, as TypiClust). ``"auto"`` takes the typical row while the
    labeled set holds fewer than ``low_budget_per_class`` labels per class, where
    uncertainty estimates are still poor, and the uncertain row after that.

    Parameters
    ----------
    candidate_factor : float >= 1
        Shortlist size as a multiple of the batch size (1 is plain margin sampling).
    representative : {"auto", "uncertain", "typical"}
    low_budget_per_class : int
        Labels per class below which ``"auto"`` picks typical rows.
    random_state : int, RandomState instance or None
    """

    name = "cluster_margin"

    def __init__(
        self,
        candidate_factor: float = 10.0,
        representative: str = "auto",
        low_budget_per_class: int = 10,
        random_state: Any = None,
    ) -> None:
        self.candidate_factor = candidate_factor
        self.representative = representative
        self.low_budget_per_class = low_budget_per_class
        self.random_state = random_state

    def _representative(self, clf: Any, y_labeled: Any) -> str:
        if self.representative != "auto":
            return self.representative
        if y_labeled is None:
            return "uncertain"
        n_classes = max(2, len(getattr(clf, "classes_", ())))
        # Few labels per class: the model's uncertainty is still unreliable, and
        # typical records buy more than borderline ones (the low-budget regime).
        return "typical" if len(y_labeled) < self.low_budget_per_class * n_classes else "uncertain"

    def _query(self, clf, X_pool, n, X_labeled, y_labeled, rng):
        factor = self.candidate_factor
        if not (isinstance(factor, int | float) and math.isfinite(factor) and factor >= 1):
            raise ValueError(f"candidate_factor must be a number >= 1, got {factor!r}")
        unc = score_pool(clf, X_pool, margin_scores)
        m = min(unc.size, max(n, math.ceil(factor * n)))
        shortlist = top_n(unc, m, rng)
        if m == n:
            return shortlist, unc[shortlist]
        if self.representative not in ("auto", "uncertain", "typical"):
            raise ValueError(
                "representative must be 'auto', 'uncertain' or 'typical', "
                f"got {self.representative!r}"
            )
        self.representative_ = self._representative(clf, y_labeled)
        X_short = feature_space(clf, take_rows(X_pool, shortlist))
        if self.representative_ == "typical":
            ref_rows = np.sort(
                rng.choice(unc.size, size=min(unc.size, _TYPICALITY_REFERENCE), replace=False)
            )
            reference = feature_space(clf, take_rows(X_pool, ref_rows))
            pick_by = typicality(X_short, reference)
        else:
            pick_by = unc[shortlist]
        local, _ = cluster_representatives(X_short, n, random_state=rng, score=pick_by)
        picked = shortlist[local]
        order = np.argsort(-unc[picked], kind="stable")
        return picked[order], unc[picked][order]
