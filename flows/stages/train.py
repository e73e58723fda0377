"""Train and log: the labeled snapshot, the model fit on it, its holdout evaluation and the
cycle's MLflow run (once per cycle: the ``trained`` checkpoint holds the result)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from flows.stages.context import CampaignRun, PoolData
from loopwise.state import Stage
from storage.campaign import STOP_SET, checkpoint, checkpointed
from tasks.data import record_pool_edits
from tasks.evaluate import log_cycle
from tasks.train import evaluate, fit, label_time_records, labeled_snapshot

if TYPE_CHECKING:
    from flows.stages.pool import PartitionedData

__all__ = ["Trained", "train_and_log"]


@dataclass
class Trained:
    """The cycle's model and what the later stages read of its training."""

    cycle: int
    model: Any
    snapshot: pd.DataFrame
    X_labeled: Any
    X_pool: Any
    row: dict[str, Any]  # the cycle's learning-curve row
    logged: dict[str, Any]  # run id and url, model version, champion, gate decision

    @property
    def one_class(self) -> str | None:
        """The single class labeled so far, if only one is (the model is then a constant)."""
        labels = self.snapshot["label"]
        return str(labels.iloc[0]) if labels.nunique() < 2 else None


def train_and_log(
    run: CampaignRun, data: PoolData, annotator_accuracy: dict[str, float]
) -> Trained:
    """Fit the campaign's model on every accepted label; evaluate and log it once per cycle."""
    cfg, store, k = run.cfg, run.store, run.state.cycle
    # What each item was sent with: the training rows, and what pool edits are measured by.
    records = label_time_records(store, k)
    text = cfg.data.text_column
    sent = data.sent_rows()
    record_pool_edits(run.ledgers(), k, [sent, data.holdout], records, text)
    snap = (checkpoint(store, k, Stage.TRAINED) or {}).get("snapshot") or labeled_snapshot(
        store, k, sent, list(run.ledgers().current_labels().values()), records, text
    )
    snapshot = store.read_parquet(snap["key"])
    X_lab, X_hold, X_pool = data.inputs(cfg, snapshot)
    model = fit(cfg, X_lab, snapshot["label"].to_numpy())
    X_stop = data.stop_inputs(cfg, snapshot, X_pool, _stop_set(run, data))
    done = checkpointed(
        store,
        k,
        Stage.TRAINED,
        lambda: _evaluate_and_log(
            run, data, model, snap, snapshot, X_hold, X_stop, annotator_accuracy
        ),
    )
    run.save(stage=Stage.TRAINED, history=[*run.state.history_before(k), done["row"]])
    row, logged = done["row"], done["logged"]
    print(
        f"cycle {k}: {row['labels']} labels, cost {row['cost']:.2f}, holdout accuracy "
        f"{row['metric']:.4f} (model v{logged['model_version']}{_standing(logged)})"
    )
    return Trained(k, model, snapshot, X_lab, X_pool, row, logged)


def _standing(logged: dict[str, Any]) -> str:
    """What the champion gate made of the cycle's model, for the run's printout."""
    gate = logged.get("gate") or {}
    if gate.get("decision") == "challenger":
        return f", challenger: champion stays v{gate['champion_version']}"
    return ", new champion" if logged["champion"] else ""


def _evaluate_and_log(
    run: CampaignRun,
    data: PoolData,
    model: Any,
    snap: dict[str, Any],
    snapshot: pd.DataFrame,
    X_hold: Any,
    X_stop: Any,
    annotator_accuracy: dict[str, float],
) -> dict[str, Any]:
    """The ``trained`` checkpoint: holdout metrics, the learning-curve row, the MLflow run."""
    cfg, k = run.cfg, run.state.cycle
    previous = checkpoint(run.store, k - 1, Stage.TRAINED) or {}
    y_hold = data.holdout[cfg.data.label_column].astype(str).to_numpy()
    metrics = evaluate(cfg, model, X_hold, y_hold, X_stop, previous.get("stop_predictions"))
    annotations = run.ledgers().paid_annotations()
    row = {
        "cycle": k,
        "labels": int(snap["rows"]),
        "annotations": annotations,
        "cost": round(annotations * cfg.budget.cost_per_annotation, 6),
        "metric": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "kappa": metrics["kappa"],
    }
    history = [*run.state.history_before(k), row]
    logged = log_cycle(
        cfg,
        k,
        model,
        metrics,
        history,
        snapshot,
        snap,
        annotator_accuracy,
        X_holdout=X_hold,
        y_holdout=y_hold,
    )
    return {
        "snapshot": snap,
        "metrics": {m: v for m, v in metrics.items() if m != "stop_predictions"},
        "row": row,
        "logged": logged,
        "stop_predictions": metrics["stop_predictions"],
    }


def _stop_set(run: CampaignRun, data: PoolData | PartitionedData) -> list[str]:
    """A fixed sample of pool ids on which consecutive models are compared (chosen once)."""
    ids = run.store.read_json(STOP_SET)
    if ids is None:
        ids = data.choose_stop(run.cfg.stop_set_size, run.cfg.seed)
        run.store.write_json(STOP_SET, ids)
    return ids
