"""Retrain stage: the labeled snapshot of a cycle and the model fitted on it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import make_pipeline

from loopwise.config import CampaignConfig
from loopwise.model import build_model, evaluate_model, prediction_agreement
from storage.store import Store
from tasks import io_task, step_task

__all__ = ["evaluate", "fit", "labeled_snapshot"]


@io_task
def labeled_snapshot(
    store: Store, cycle: int, pool: pd.DataFrame, labels: list[dict[str, Any]]
) -> dict[str, Any]:
    """Join the accepted labels to their pool rows; write the snapshot named by its content hash."""
    ledger = pd.DataFrame(labels, columns=["item_id", "label"]).drop_duplicates("item_id")
    rows = pool.drop(columns=[c for c in ("label",) if c in pool.columns]).merge(
        ledger, on="item_id", how="inner", validate="one_to_one"
    )
    rows = rows.sort_values("item_id", kind="stable").reset_index(drop=True)
    key = store.write_snapshot(f"snapshots/{cycle:04d}", rows)
    return {"key": key, "uri": store.uri(key), "rows": len(rows)}


@step_task
def fit(cfg: CampaignConfig, X: Any, y: np.ndarray) -> Any:
    """Fit the campaign's model on the labeled snapshot.

    With a single class labeled (a rare class the cold start missed), no classifier can
    be fitted: the model predicts that class until the labels hold a second one."""
    y = np.asarray(y).astype(str)
    if np.unique(y).size < 2:
        return make_pipeline(DummyClassifier(strategy="most_frequent")).fit(X, y)
    model = build_model(cfg.model.build(), kind=cfg.data.kind, scale=cfg.model.scale)
    return model.fit(X, y)


@step_task
def evaluate(
    cfg: CampaignConfig,
    model: Any,
    X: Any,
    y: np.ndarray,
    X_stop: Any,
    previous_stop_predictions: list[str] | None,
) -> dict[str, Any]:
    """Holdout metrics (accuracy, macro-F1, per-class F1, confusion matrix), the predictions
    on the stop set and their agreement (kappa) with the previous model's."""
    metrics = evaluate_model(model, X, y, cfg.labels)
    stop = [str(p) for p in model.predict(X_stop)]
    return {
        **metrics,
        "stop_predictions": stop,
        "kappa": prediction_agreement(previous_stop_predictions, stop),
    }
