"""Evaluation stage: one MLflow run per cycle, the model registered, ``champion`` moved on an
evidenced improvement.

Re-running a cycle finds its run by the ``loopwise.cycle`` tag and reuses it, so a
crash after logging never leaves two runs for one cycle.

The new version takes the ``champion`` alias only when a paired test on the holdout
(:func:`loopwise.gating.gate`, ``champion:`` in the campaign file) says it is better than
the current champion; otherwise it gets the ``challenger`` alias. The decision is kept
as a tag of the version (``loopwise.gate``) before any alias moves, so a re-run applies
the same decision instead of testing the version against itself.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopwise.config import CampaignConfig
from loopwise.gating import accuracy_rule, gate
from loopwise.plots import campaign_curve_figure, confusion_figure
from tasks import io_task

__all__ = ["CHALLENGER", "CHAMPION", "log_cycle", "log_decision", "model_name"]

log = logging.getLogger("loopwise.evaluate")

CHAMPION = "champion"
CHALLENGER = "challenger"
#: The version tag that keeps a version's gate decision (JSON).
GATE_TAG = "loopwise.gate"
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


def _find_run(client: Any, experiment_id: str, cycle: int, retrain: str | None = None) -> Any:
    """The run of a cycle (tag ``loopwise.cycle``), or of a stream retrain (``loopwise.retrain``)."""
    tag, value = ("loopwise.retrain", retrain) if retrain else ("loopwise.cycle", str(cycle))
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{tag}` = '{value}'", max_results=1
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
        "champion_test": cfg.champion.test,
        "champion_alpha": cfg.champion.alpha,
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


def _register(mlflow: Any, client: Any, cfg: CampaignConfig, run_id: str, model: Any) -> str:
    """Log the model and register one version per cycle run (a resumed run that registered
    one already reuses it); the version."""
    found = client.search_model_versions(f"name='{model_name(cfg)}' and run_id='{run_id}'")
    if found:
        return str(min(int(v.version) for v in found))
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        registered_model_name=model_name(cfg),
        pip_requirements=_PIP,
        skops_trusted_types=None,
    )
    return str(info.registered_model_version)


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
    *,
    X_holdout: Any,
    y_holdout: Any,
    retrain: str | None = None,
    trigger: str | None = None,
) -> dict[str, Any]:
    """Log the cycle's run: params, metrics at step = labels, figures, dataset input, model,
    and the champion gate (the new model against the champion on ``X_holdout, y_holdout``).

    Once per cycle: a run of this cycle that finished logging is found by its tags and
    its result returned; one that died halfway is resumed. A stream retrain passes its
    idempotency key as ``retrain`` (and the rule's sentence as ``trigger``): its run is
    found by that key instead, named ``retrain-…``, and gated the same way."""
    mlflow, client = _client(cfg)
    experiment_id = _experiment_id(cfg, client)
    run = _find_run(client, experiment_id, cycle, retrain)
    if run is not None and run.data.tags.get("loopwise.logged") == "true":
        return json.loads(run.data.tags["loopwise.result"])
    labels_used, cost = history[-1]["labels"], history[-1]["cost"]
    with mlflow.start_run(
        run_id=run.info.run_id if run is not None else None,
        experiment_id=experiment_id,
        run_name=f"retrain-{retrain}" if retrain else f"cycle-{cycle:03d}",
        tags=(
            {"loopwise.retrain": retrain, "loopwise.trigger": (trigger or "")[:4000]}
            if retrain
            else {"loopwise.cycle": str(cycle)}
        )
        | {"loopwise.campaign": cfg.name},
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
        version = _register(mlflow, client, cfg, run_id, model)
        decision = _gate(
            mlflow, client, cfg, version, model, metrics["accuracy"], X_holdout, y_holdout
        )
        mlflow.log_metrics(gate_metrics(decision), step=int(labels_used))
        mlflow.set_tags(
            {
                "loopwise.gate": decision["decision"],
                "loopwise.gate_reason": decision["reason"][:4000],
            }
        )
        result = {
            "run_id": run_id,
            "experiment_id": experiment_id,
            "model_version": version,
            "champion": decision["decision"] in ("first", "promoted"),
            "gate": decision,
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


def gate_metrics(decision: dict[str, Any]) -> dict[str, float]:
    """The gate's numbers as run metrics (those the decision has)."""
    interval = decision.get("interval") or [None, None]
    named = {
        "gate_p_value": decision.get("p_value"),
        "gate_accuracy_delta": decision.get("accuracy_delta"),
        "gate_delta_low": interval[0],
        "gate_delta_high": interval[1],
    }
    return {k: float(v) for k, v in named.items() if v is not None}


def _gate(
    mlflow: Any,
    client: Any,
    cfg: CampaignConfig,
    version: str,
    model: Any,
    accuracy: float,
    X_holdout: Any,
    y_holdout: Any,
) -> dict[str, Any]:
    """Decide once whether ``version`` takes ``champion`` (the decision kept as its
    ``loopwise.gate`` tag, reused by a re-run) and set the aliases it says."""
    name = model_name(cfg)
    client.set_model_version_tag(name, version, "holdout_accuracy", f"{accuracy:.6f}")
    kept = client.get_model_version(name, version).tags.get(GATE_TAG)
    if kept:
        decision = json.loads(kept)
    else:
        decision = _decide(mlflow, client, cfg, version, model, accuracy, X_holdout, y_holdout)
        client.set_model_version_tag(name, version, GATE_TAG, json.dumps(decision))
    _set_aliases(client, name, version, decision["decision"])
    return decision


def _decide(
    mlflow: Any,
    client: Any,
    cfg: CampaignConfig,
    version: str,
    model: Any,
    accuracy: float,
    X_holdout: Any,
    y_holdout: Any,
) -> dict[str, Any]:
    """The gate decision of a new version: ``first``, ``promoted`` or ``challenger``."""
    name = model_name(cfg)
    current = _aliases(client, name).get(CHAMPION)
    if current is None or current == version:  # the latter: promoted before decisions were kept
        return {
            "decision": "first" if current is None else "promoted",
            "version": version,
            "champion_version": version,
            "challenger_version": None,
            "previous_champion": None,
            "fallback": False,
            "reason": f"v{version} is the first version of the model: it becomes the champion."
            if current is None
            else f"v{version} already holds the champion alias.",
        }
    y = np.asarray(y_holdout).astype(str)
    try:
        champion = mlflow.sklearn.load_model(f"models:/{name}@{CHAMPION}")
        champion_pred = np.asarray(champion.predict(X_holdout)).astype(str)
    except Exception as exc:  # artifact gone, unreadable, or the holdout's columns changed
        log.warning(
            "champion v%s of %s could not be loaded or could not predict the holdout (%s): "
            "the gate falls back to comparing the recorded holdout accuracies",
            current,
            name,
            _quiet(exc),
        )
        recorded = client.get_model_version(name, current).tags.get("holdout_accuracy")
        test = accuracy_rule(accuracy, None if recorded is None else float(recorded))
        test["reason"] = (
            f"The champion v{current} could not be loaded ({type(exc).__name__}), so no "
            f"paired test: {test['reason']}"
        )
        fallback = True
    else:
        new_pred = np.asarray(model.predict(X_holdout)).astype(str)
        test = gate(
            champion_pred == y,
            new_pred == y,
            test=cfg.champion.test,
            alpha=cfg.champion.alpha,
            random_state=cfg.seed,
        )
        fallback = False
    promote = test.pop("promote")
    head = (
        f"v{version} becomes the champion over v{current}."
        if promote
        else f"v{version} is the challenger; v{current} stays the champion."
    )
    return {
        "decision": "promoted" if promote else "challenger",
        "version": version,
        "champion_version": version if promote else current,
        "challenger_version": None if promote else version,
        "previous_champion": current,
        "fallback": fallback,
        **test,
        "reason": f"{head} {test['reason']}",
    }


def _aliases(client: Any, name: str) -> dict[str, str]:
    """Alias → version of the registered model."""
    return {a: str(v) for a, v in (client.get_registered_model(name).aliases or {}).items()}


def _set_aliases(client: Any, name: str, version: str, decision: str) -> None:
    """Point the aliases as ``decision`` says, moving only what is not there yet: a promoted
    version also retires an older ``challenger`` (it never faced the new champion)."""
    aliases = _aliases(client, name)
    if decision == "challenger":
        if aliases.get(CHALLENGER) != version:
            client.set_registered_model_alias(name, CHALLENGER, version)
        return
    if aliases.get(CHAMPION) != version:
        client.set_registered_model_alias(name, CHAMPION, version)
    older = aliases.get(CHALLENGER)
    if older is not None and int(older) < int(version):
        client.delete_registered_model_alias(name, CHALLENGER)


_CREDENTIALS = re.compile(r"(?<=//)[^/@\s]+@")


def _quiet(exc: BaseException) -> str:
    """An error for the log: its type and first 300 characters, any ``user:pass@`` of a URL
    masked (a tracking URI may carry them)."""
    return f"{type(exc).__name__}: {_CREDENTIALS.sub('***@', str(exc))[:300]}"


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
