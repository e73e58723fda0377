"""Retrain stage: the labeled snapshot of a cycle and the model fitted on it."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import make_pipeline

from loopwise.config import CampaignConfig
from loopwise.items import label_time_rows
from loopwise.model import build_model, evaluate_model, prediction_agreement
from loopwise.state import Stage
from storage.campaign import checkpoint
from storage.store import Store
from tasks import io_task, step_task

__all__ = ["evaluate", "fit", "label_time_records", "labeled_snapshot"]

log = logging.getLogger("loopwise.train")


def label_time_records(store: Store, last_cycle: int) -> dict[str, dict[str, Any]]:
    """Item id → the ``data`` it was sent with, from the batches selected up to ``last_cycle``
    and the stream records sent for a label (``stream/selected.jsonl``)."""
    out: dict[str, dict[str, Any]] = {}
    for k in range(last_cycle + 1):
        for b in (checkpoint(store, k, Stage.SELECTED) or {}).get("batch") or []:
            out.setdefault(b["item_id"], b.get("data") or {})
    for b in store.read_jsonl("stream/selected.jsonl"):
        out.setdefault(b["item_id"], b.get("data") or {})
    return out


@io_task
def labeled_snapshot(
    store: Store,
    cycle: int,
    pool: pd.DataFrame,
    labels: list[dict[str, Any]],
    records: dict[str, dict[str, Any]] | None = None,
    text_column: str | None = None,
) -> dict[str, Any]:
    """Every accepted label with the values its item was sent with (``records``; the pool
    row where none was kept); write the snapshot named by its content hash."""
    ledger = pd.DataFrame(labels, columns=["item_id", "label"])
    rows, missing = label_time_rows(ledger, records or {}, pool, text_column=text_column)
    if missing:
        log.warning(
            "cycle %d: %d labeled item(s) left out of training: no longer in the pool and sent "
            "before batches kept their values: %s%s",
            cycle,
            len(missing),
            ", ".join(missing[:5]),
            f" and {len(missing) - 5} more" if len(missing) > 5 else "",
        )
    key = store.write_snapshot(f"snapshots/{cycle:04d}", rows)
    return {"key": key, "uri": store.uri(key), "rows": len(rows), "missing": len(missing)}


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
