"""Evaluation stage: one MLflow run per cycle, the model registered, ``champion`` moved on improvement.

Re-running a cycle finds its run by the ``loopwise.cycle`` tag and reuses it, so a
crash after logging never leaves two runs for one cycle.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from loopwise.config import CampaignConfig
from loopwise.plots import campaign_curve_figure, confusion_figure
from tasks import io_task

__all__ = ["CHAMPION", "log_cycle", "log_decision", "model_name"]

CHAMPION = "champion"
_PIP = ["scikit-learn", "numpy", "scipy", "pandas"]


def model_name(cfg: CampaignConfig) -> str:
    """The registered model of the campaign."""
    return f"loopwise-{cfg.name}"


#: MLflow's own HTTP retries, bounded (its defaults back off for about four minutes a call,
#: and the task retries multiply that): a hanging server costs at most 3 task attempts x
#: (2 tries x 8 s + 1 s) + 2 x 2 s = 55 s; a setting of the environment wins.
_MLFLOW_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "8",
}


def _client(cfg: CampaignConfig):
    import mlflow

    for name, value in _MLFLOW_HTTP.items():
        os.environ.setdefault(name, value)

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    return mlflow, mlflow.MlflowClient(cfg.mlflow.tracking_uri)


def _experiment_id(cfg: CampaignConfig, client: Any) -> str:
    exp = client.get_experiment_by_name(cfg.experiment)
    if exp is not None:
        return exp.experiment_id
    location = cfg.mlflow.artifact_location
    if location is None and cfg.mlflow.tracking_uri.startswith("sqlite:"):
        location = (Path(".loopwise/mlartifacts") / cfg.name).resolve().as_uri()
    return client.create_experiment(cfg.experiment, artifact_location=location)


def _find_run(client: Any, experiment_id: str, cycle: int) -> Any:
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`loopwise.cycle` = '{cycle}'", max_results=1
    )
    return runs[0] if runs else None


def _params(cfg: CampaignConfig, cycle: int, snapshot_uri: str) -> dict[str, Any]:
    """The run's parameters: the campaign's choices (never a secret)."""
    return {
        "cycle": cycle,
        "strategy": cfg.strategy.name,
        "strategy_params": json.dumps(cfg.strategy.params, sort_keys=True),
        "batch_size": cfg.batch_size,
        "annotators_per_item": cfg.annotators_per_item,
        "agreement_threshold": cfg.agreement_threshold,
        "consensus": cfg.consensus,
        "estimator": cfg.model.estimator,
        "model_params": json.dumps(cfg.model.params, sort_keys=True),
        "budget_labels": cfg.budget.labels,
        "budget_currency": cfg.budget.currency,
        "cost_per_annotation": cfg.budget.cost_per_annotation,
        "snapshot": snapshot_uri,
    }


def _log_artifacts(
    mlflow: Any,
    cfg: CampaignConfig,
    cycle: int,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    snapshot: pd.DataFrame,
    snapshot_info: dict[str, Any],
    annotator_quality: dict[str, float],
) -> None:
    """The training set as a dataset input, the figures and the annotator table."""
    import matplotlib.pyplot as plt

    dataset = mlflow.data.from_pandas(
        snapshot,
        source=_as_uri(snapshot_info["uri"]),
        targets="label",
        name=f"{cfg.name}-cycle-{cycle:03d}",
        digest=Path(snapshot_info["key"]).stem[:36],
    )
    mlflow.log_input(dataset, context="training")
    for fig, file in (
        (campaign_curve_figure(history), "learning_curve.png"),
        (confusion_figure(metrics["confusion"], cfg.labels), "confusion_matrix.png"),
    ):
        mlflow.log_figure(fig, file)
        plt.close(fig)
    quality = pd.DataFrame(
        sorted(annotator_quality.items(), key=lambda kv: -kv[1]),
        columns=["annotator", "estimated_accuracy"],
    )
    mlflow.log_table(quality, "annotator_quality.json")


def _register(
    mlflow: Any, client: Any, cfg: CampaignConfig, run_id: str, model: Any, accuracy: float
):
    """Log the model and register one version per cycle run (a resumed run that registered
    one already reuses it); (version, whether it became champion)."""
    found = client.search_model_versions(f"name='{model_name(cfg)}' and run_id='{run_id}'")
    if found:
        version = str(min(int(v.version) for v in found))
        return version, _maybe_promote(client, cfg, version, accuracy)
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        registered_model_name=model_name(cfg),
        pip_requirements=_PIP,
        skops_trusted_types=None,
    )
    version = str(info.registered_model_version)
    return version, _maybe_promote(client, cfg, version, accuracy)


@io_task
def log_cycle(
    cfg: CampaignConfig,
    cycle: int,
    model: Any,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    snapshot: pd.DataFrame,
    snapshot_info: dict[str, Any],
    annotator_quality: dict[str, float],
) -> dict[str, Any]:
    """Log the cycle's run: params, metrics at step = labels, figures, dataset input, model.

    Once per cycle: a run of this cycle that finished logging is found by its tags and
    its result returned; one that died halfway is resumed."""
    mlflow, client = _client(cfg)
    experiment_id = _experiment_id(cfg, client)
    run = _find_run(client, experiment_id, cycle)
    if run is not None and run.data.tags.get("loopwise.logged") == "true":
        return json.loads(run.data.tags["loopwise.result"])
    labels_used, cost = history[-1]["labels"], history[-1]["cost"]
    with mlflow.start_run(
        run_id=run.info.run_id if run is not None else None,
        experiment_id=experiment_id,
        run_name=f"cycle-{cycle:03d}",
        tags={"loopwise.cycle": str(cycle), "loopwise.campaign": cfg.name},
    ) as active:
        run_id = active.info.run_id
        if run is None:
            mlflow.log_params(_params(cfg, cycle, snapshot_info["uri"]))
        scores = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
        mlflow.log_metrics(
            {
                **scores,
                "labels": labels_used,
                "cost_spent": cost,
                **per_class_metrics("f1", metrics["per_class_f1"]),
            },
            step=int(labels_used),
        )
        _log_artifacts(
            mlflow, cfg, cycle, metrics, history, snapshot, snapshot_info, annotator_quality
        )
        version, champion = _register(mlflow, client, cfg, run_id, model, metrics["accuracy"])
        result = {
            "run_id": run_id,
            "experiment_id": experiment_id,
            "model_version": version,
            "champion": champion,
            "run_url": _run_url(cfg, experiment_id, run_id),
        }
        mlflow.set_tags({"loopwise.result": json.dumps(result), "loopwise.logged": "true"})
    return result


_NAME_OK = re.compile(r"[^A-Za-z0-9_\-. :/]")
_SPELLED = {"<": "lt", ">": "gt", "=": "eq", "+": "plus", "%": "pct", "*": "star", "!": "not"}


def per_class_metrics(prefix: str, values: dict[str, float]) -> dict[str, float]:
    """``{prefix}.{label}`` metric names that MLflow accepts, distinct for distinct labels.

    MLflow allows letters, digits, ``_-. :/`` only: ``<=50K`` becomes ``lteq50K``; names
    that still collide get the label's position as a suffix.
    """
    out: dict[str, float] = {}
    for i, (label, v) in enumerate(values.items()):
        name = "".join(_SPELLED.get(ch, ch) for ch in str(label))
        name = f"{prefix}.{_NAME_OK.sub('_', name)}"
        if name in out:
            name = f"{name}_{i}"
        out[name] = v
    return out


def _as_uri(location: str) -> str:
    """A local path as a file:// URI (MLflow then knows which kind of source it is)."""
    return location if "://" in location else Path(location).resolve().as_uri()


def _run_url(cfg: CampaignConfig, experiment_id: str, run_id: str) -> str:
    base = os.environ.get("LOOPWISE_MLFLOW_UI", "http://127.0.0.1:5000")
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def _maybe_promote(client: Any, cfg: CampaignConfig, version: str, accuracy: float) -> bool:
    """Move ``champion`` to ``version`` only if it beats the current champion's accuracy."""
    name = model_name(cfg)
    client.set_model_version_tag(name, version, "holdout_accuracy", f"{accuracy:.6f}")
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except Exception:  # no champion yet (MLflow raises RestException)
        current = None
    if current is not None:
        best = float(current.tags.get("holdout_accuracy", "-inf"))
        if accuracy <= best:
            return False
    client.set_registered_model_alias(name, CHAMPION, version)
    return True


@io_task
def log_decision(
    cfg: CampaignConfig, run_id: str, decision: dict[str, Any], drift: dict | None
) -> None:
    """Attach the stopping decision (and drift report) to the cycle's run."""
    _, client = _client(cfg)
    client.set_tag(run_id, "loopwise.decision", decision["rule"])
    client.set_tag(run_id, "loopwise.decision_reason", decision["reason"][:4000])
    client.log_dict(run_id, decision, "decision.json")
    if drift is not None:
        client.log_dict(run_id, drift, "drift.json")
        client.log_metric(run_id, "drift_max_psi", float(drift.get("max_psi") or 0.0))
