"""Shared fixtures: small seeded datasets and a fake estimator with fixed probabilities."""

from __future__ import annotations

import os
from pathlib import Path

# Prefect keeps its profile under PREFECT_HOME (default ~/.prefect): tests write
# nothing to the home directory. Set before any test module imports prefect.
_WORK = Path(__file__).resolve().parents[1] / ".loopwise"
os.environ.setdefault("PREFECT_HOME", str(_WORK / "prefect"))
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect only makes the leaf
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


class FixedProba(ClassifierMixin, BaseEstimator):
    """A 'fitted' classifier whose probabilities are a fixed table indexed by row id.

    Row ``i`` of X must carry its id in column 0; ``predict_proba`` looks it up.
    """

    def __init__(self, table=None):
        self.table = table

    def fit(self, X, y=None):
        self.classes_ = np.arange(np.asarray(self.table).shape[1])
        return self

    def predict_proba(self, X):
        ids = np.asarray(X)[:, 0].astype(int)
        return np.asarray(self.table, dtype=np.float64)[ids]


def fixed(table) -> FixedProba:
    """A FixedProba already 'fitted' on its table."""
    return FixedProba(np.asarray(table, dtype=float)).fit(None)


def id_pool(n: int, extra_features: np.ndarray | None = None) -> np.ndarray:
    """A pool whose column 0 is the row id (for FixedProba), plus optional features."""
    ids = np.arange(n, dtype=np.float64).reshape(-1, 1)
    return ids if extra_features is None else np.hstack([ids, extra_features])


@pytest.fixture
def blobs():
    """A 4-class problem: 24 labeled rows (6 per class), a 300-row pool."""
    X, y = make_blobs(n_samples=324, centers=4, n_features=5, cluster_std=2.5, random_state=3)
    order = np.argsort(y, kind="stable")
    labeled = np.concatenate([order[y[order] == c][:6] for c in range(4)])
    pool = np.setdiff1d(np.arange(len(y)), labeled)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    clf.fit(X[labeled], y[labeled])
    return clf, X[pool], X[labeled], y[labeled], y[pool]
