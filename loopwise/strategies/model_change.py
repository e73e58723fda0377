"""Expected model change: expected gradient length (EGL)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline

from loopwise._validation import num_rows
from loopwise.strategies._base import QueryStrategy, feature_space, iter_chunks, top_n

__all__ = ["ExpectedGradientLength", "expected_gradient_length_scores", "is_linear_softmax"]


def expected_gradient_length_scores(proba: npt.ArrayLike, features: npt.ArrayLike) -> np.ndarray:
    """Expected norm of the log-loss gradient of a linear softmax model.

    For a model with weights ``W`` (C × d) and intercepts, the gradient of the
    log loss of ``(x, y)`` is ``(p - e_y) ⊗ [x, 1]``, whose norm factorises into
    ``||p - e_y|| · ||[x, 1]||``. Its expectation over the model's own belief
    ``y ~ p`` is ``||[x, 1]|| · sum_y p_y sqrt(sum_k p_k^2 - 2 p_y + 1)``.

    For a binary model stored with one weight row the same derivation gives
    ``2 p (1 - p) ||[x, 1]||``, which is what the formula above yields up to the
    constant ``sqrt(2)`` — the ranking is identical.

    Parameters
    ----------
    proba : array-like of shape (N, C)
    features : array-like of shape (N, d)
        The inputs of the linear layer.

    Returns
    -------
    scores : ndarray of shape (N,)
    """
    proba = np.asarray(proba, dtype=np.float64)
    features = np.asarray(features)
    sq = np.einsum("ij,ij->i", proba, proba)[:, None]
    residual_norm = np.sqrt(np.maximum(sq - 2.0 * proba + 1.0, 0.0))
    expected = np.einsum("ij,ij->i", proba, residual_norm)
    x_norm = np.sqrt(np.einsum("ij,ij->i", features, features, dtype=np.float64) + 1.0)
    return expected * x_norm


def is_linear_softmax(clf: Any) -> bool:
    """True when the model's last step is a multinomial/binary logistic model."""
    last = clf[-1] if isinstance(clf, Pipeline) else clf
    if isinstance(last, LogisticRegression):
        return True
    return isinstance(last, SGDClassifier) and last.loss == "log_loss"


class ExpectedGradientLength(QueryStrategy):
    """Query the points whose label would change the model most (expected gradient length).

    Exact for linear softmax models (``LogisticRegression``, ``SGDClassifier``
    with ``loss="log_loss"``, alone or as the last step of a pipeline): the
    gradient is taken in the space the last step sees. For any other classifier
    it is an approximation: the gradient of a linear softmax *surrogate* with the
    classifier's probabilities on the same features, which keeps the two factors
    that matter — how unsure the model is and how far the point lies from the
    origin of the feature space. ``is_exact_`` records which case applied.
    """

    name = "expected_gradient_length"

    def _query(self, clf, X_pool, n, X_labeled, y_labeled, rng):
        self.is_exact_ = is_linear_softmax(clf)
        n_rows = num_rows(X_pool)
        scores = np.empty(n_rows, dtype=np.float32)
        for sl in iter_chunks(n_rows):
            rows = X_pool.iloc[sl] if hasattr(X_pool, "iloc") else X_pool[sl]
            scores[sl] = expected_gradient_length_scores(
                clf.predict_proba(rows), feature_space(clf, rows)
            )
        idx = top_n(scores, n, rng)
        return idx, scores[idx]
