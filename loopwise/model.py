"""The campaign's model: the pipeline it trains (TF-IDF for text, scaling for tables), its
holdout evaluation, and the agreement of two models on the stop set."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import cohen_kappa_score, confusion_matrix, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = [
    "build_model",
    "evaluate_model",
    "prediction_agreement",
]


def build_model(estimator: Any, *, kind: str, scale: bool = True) -> Any:
    """The pipeline the campaign trains: TF-IDF for text, optional scaling for tables."""
    if kind == "text":
        return make_pipeline(TfidfVectorizer(sublinear_tf=True, min_df=1), estimator)
    return make_pipeline(StandardScaler(), estimator) if scale else make_pipeline(estimator)


def evaluate_model(model: Any, X: Any, y: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Holdout accuracy, macro-F1, per-class F1 and the confusion matrix (label order)."""
    y = np.asarray(y, dtype=object).astype(str)
    pred = np.asarray(model.predict(X)).astype(str)
    labels = [str(label) for label in labels]
    per_class = f1_score(y, pred, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": float(np.mean(pred == y)),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "per_class_f1": {label: float(v) for label, v in zip(labels, per_class, strict=True)},
        "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
        "n": int(y.size),
    }


def prediction_agreement(previous: Sequence[str] | None, current: Sequence[str]) -> float | None:
    """Cohen's kappa between two models' predictions on the stop set (None without a previous)."""
    if previous is None or len(previous) != len(current) or len(current) == 0:
        return None
    a, b = np.asarray(previous).astype(str), np.asarray(current).astype(str)
    if (a == b).all():
        return 1.0
    kappa = cohen_kappa_score(a, b)
    return float(kappa) if math.isfinite(kappa) else None
