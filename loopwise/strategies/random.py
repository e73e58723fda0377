"""Random sampling: the control arm every comparison includes."""

from __future__ import annotations

import numpy as np

from loopwise._validation import num_rows
from loopwise.strategies._base import QueryStrategy

__all__ = ["RandomSampling"]


class RandomSampling(QueryStrategy):
    """Uniform draw without replacement; needs no model. Every score is 0."""

    name = "random"
    needs_model = False

    def _query(self, clf, X_pool, n, X_labeled, y_labeled, rng):
        idx = rng.choice(num_rows(X_pool), size=n, replace=False)
        return idx, np.zeros(n, dtype=np.float32)
