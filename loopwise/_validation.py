"""Checks shared by the public entry points of the library."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp

from loopwise.exceptions import EmptyPoolError


def check_n(n: Any, name: str = "n") -> int:
    """Return ``n`` as an int, or raise if it is not a positive integer."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {n!r} of type {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n}")
    return int(n)


def num_rows(X: Any) -> int:
    """Number of rows of an array-like, a sparse matrix, a DataFrame or a list."""
    if hasattr(X, "shape") and len(X.shape) >= 1:
        return int(X.shape[0])
    return len(X)


def check_pool(X_pool: Any) -> int:
    """Return the number of rows of the pool, or raise if there is none."""
    if X_pool is None:
        raise TypeError("X_pool must be an array-like of candidates, got None")
    n_rows = num_rows(X_pool)
    if n_rows == 0:
        raise EmptyPoolError("X_pool holds no candidate (0 rows): nothing to query")
    return n_rows


def take_rows(X: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of an array-like, keeping its type (DataFrame, sparse, ndarray, list)."""
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    if sp.issparse(X) or isinstance(X, np.ndarray):
        return X[idx]
    return [X[i] for i in idx]


def check_fitted_proba(clf: Any) -> None:
    """Raise if ``clf`` cannot give class probabilities."""
    if clf is None or not hasattr(clf, "predict_proba"):
        raise TypeError(
            f"clf must be a fitted scikit-learn classifier with predict_proba, got {type(clf).__name__}"
        )
