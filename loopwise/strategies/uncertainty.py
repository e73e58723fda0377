"""Uncertainty sampling: least confidence, margin and entropy.

Each strategy is a pure utility over class probabilities (the ``*_scores``
functions, usable on their own) composed with the shared top-n selector.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from loopwise.strategies._base import ScoreStrategy

__all__ = [
    "Entropy",
    "LeastConfidence",
    "Margin",
    "entropy_scores",
    "least_confidence_scores",
    "margin_scores",
]


def _as_proba(proba: npt.ArrayLike) -> np.ndarray:
    proba = np.asarray(proba)
    if proba.ndim != 2:
        raise ValueError(f"proba must have shape (n_samples, n_classes), got {proba.shape}")
    return proba


def least_confidence_scores(proba: npt.ArrayLike) -> np.ndarray:
    """``1 - max_k p_k`` per row: high when the top class is unsure.

    Parameters
    ----------
    proba : array-like of shape (N, C)

    Returns
    -------
    scores : ndarray of shape (N,), in [0, 1 - 1/C]
    """
    proba = _as_proba(proba)
    return 1.0 - proba.max(axis=1)


def margin_scores(proba: npt.ArrayLike) -> np.ndarray:
    """``1 - (p_(1) - p_(2))`` per row: high when the two top classes are close.

    Parameters
    ----------
    proba : array-like of shape (N, C)

    Returns
    -------
    scores : ndarray of shape (N,), in [0, 1]; 0 for a one-column ``proba``.
    """
    proba = _as_proba(proba)
    n_classes = proba.shape[1]
    if n_classes == 1:
        return np.zeros(proba.shape[0], dtype=proba.dtype)
    if n_classes == 2:
        return 1.0 - np.abs(proba[:, 0] - proba[:, 1])
    # A running top-2 over the class columns (contiguous after one transpose):
    # half the time of a per-row np.partition for the usual handful of classes.
    cols = np.ascontiguousarray(proba.T)
    first = np.maximum(cols[0], cols[1])
    second = np.minimum(cols[0], cols[1])
    tmp = np.empty_like(first)
    for col in cols[2:]:
        np.minimum(first, col, out=tmp)
        np.maximum(second, tmp, out=second)
        np.maximum(first, col, out=first)
    return 1.0 - (first - second)


def entropy_scores(proba: npt.ArrayLike) -> np.ndarray:
    """Shannon entropy ``-sum_k p_k log p_k`` per row, in nats (0 log 0 = 0).

    Parameters
    ----------
    proba : array-like of shape (N, C)

    Returns
    -------
    scores : ndarray of shape (N,), in [0, log C]
    """
    proba = _as_proba(proba)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log(proba)
    logp[proba <= 0] = 0.0
    return -np.einsum("ij,ij->i", proba, logp)


class LeastConfidence(ScoreStrategy):
    """Query where the model's most likely class has the lowest probability."""

    name = "least_confidence"
    utility = staticmethod(least_confidence_scores)


class Margin(ScoreStrategy):
    """Query where the two most likely classes are closest (smallest margin)."""

    name = "margin"
    utility = staticmethod(margin_scores)


class Entropy(ScoreStrategy):
    """Query where the predicted class distribution has the highest entropy."""

    name = "entropy"
    utility = staticmethod(entropy_scores)
