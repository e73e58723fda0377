"""Thin tasks of the stream path: read the inference log since the cursor, decide what to
ask about, dispatch, turn feedback into answers, measure drift, and ask for a retrain.

Store layout of a campaign's stream (beside its pool ledgers):

- ``stream/log/<writer>/<seq>.jsonl`` — the inference log (the gateway writes it);
- ``stream/feedback/<writer>/<seq>.jsonl`` — feedback from the production app;
- ``stream/state.json`` — the cursors, the selector's state and the drift window;
- ``stream/runs/<n>.json`` — what stream run ``n`` read and decided, created once: a
  re-run after a crash finds it and only finishes the dispatch;
- ``stream/served/<n>.parquet`` — the requests run ``n`` read (id, version, prediction,
  decision, inputs): what feedback is matched against;
- ``stream/selected.jsonl`` — every record sent for a label, with its request, served
  version and prediction (attribution; the training rows of stream labels);
- ``stream/windows.jsonl``, ``stream/triggers.jsonl``, ``stream/requested.jsonl``,
  ``stream/retrains.jsonl`` — the drift windows, every trigger that fired, every retrain
  run created (idempotency key, flow run), every retrain done and its gate decision;
- ``stream/reference/<holdout|w<window>>-v<version>.parquet`` — the reference inputs
  (the holdout; after a drift trigger, the window that fired it) with a served version's
  predictions on them: what a live window served by that version is compared with;
- ``stream/boost.json`` — the labeling-rate boost after drift (the gateway reads it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from loopwise.config import CampaignConfig
from storage.inference_log import DEFAULT_PREFIX as LOG_PREFIX
from storage.store import Store
from tasks import io_task

log = logging.getLogger(__name__)

__all__ = [
    "BOOST",
    "REQUESTED",
    "RETRAINS",
    "SELECTED",
    "STATE",
    "TRIGGERS",
    "WINDOWS",
    "log_source",
    "predict_missing",
    "predict_reference",
    "reference_key",
    "request_retrain",
    "run_key",
    "served_key",
    "window_key",
]

STATE = "stream/state.json"
SELECTED = "stream/selected.jsonl"
WINDOWS = "stream/windows.jsonl"
TRIGGERS = "stream/triggers.jsonl"
REQUESTED = "stream/requested.jsonl"
RETRAINS = "stream/retrains.jsonl"
BOOST = "stream/boost.json"
QUARANTINE = "quarantine/stream-log.jsonl"


def run_key(n: int) -> str:
    """The checkpoint of stream run ``n``."""
    return f"stream/runs/{n:06d}.json"


def window_key(w: int) -> str:
    """The inputs and predictions of drift window ``w``, as Parquet."""
    return f"stream/windows/{w:06d}.parquet"


def reference_key(version: str, window: int | None = None) -> str:
    """The reference inputs (the holdout, or drift window ``window``) with the predictions
    of model ``version``, as Parquet."""
    base = "holdout" if window is None else f"w{window:06d}"
    return f"stream/reference/{base}-v{version}.parquet"


def served_key(n: int) -> str:
    """The requests stream run ``n`` read, as Parquet."""
    return f"stream/served/{n:06d}.parquet"


def log_source(cfg: CampaignConfig, store: Store) -> tuple[Store | str, str]:
    """Where the inference log is, as :func:`storage.inference_log.read_new` takes it: the
    campaign store's ``stream/log`` (the gateway writes there), or the team's own folder /
    ``s3://`` prefix of JSONL or Parquet segments (``stream.log``)."""
    if cfg.stream.log is None:
        return store, LOG_PREFIX
    return cfg.stream.log, LOG_PREFIX


@io_task
def predict_missing(
    cfg: CampaignConfig, records: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """Give the champion's probabilities and prediction to records another app logged
    without them (their ``model_version`` becomes the champion's), as the gateway would;
    the records it cannot read come back with the reason (quarantined by the caller)."""
    from pydantic import ValidationError

    from serving.champion import ChampionWatcher
    from serving.inputs import InputSchema
    from tasks.data import pool_head

    if not records:
        return [], []
    schema = InputSchema.from_pool(cfg, pool_head(cfg))
    model, version = ChampionWatcher(cfg, start=False).current()
    check = schema.pydantic_model()
    good, bad = [], []
    for r in records:
        try:
            check.model_validate(r.get("inputs") or {})
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in ("inputs", *first["loc"]))
            bad.append((r, f"{where}: {first['msg']}"))
            continue
        good.append(r)
    if good:
        proba = model.predict_proba(schema.rows([r["inputs"] for r in good]))
        classes = [str(c) for c in model.classes_]
        for r, p in zip(good, proba, strict=True):
            r["proba"] = {c: float(v) for c, v in zip(classes, p, strict=True)}
            r["prediction"] = classes[int(p.argmax())]
            r["model_version"] = version
            r["predicted_by"] = "stream flow"
    return good, bad


@io_task
def predict_reference(cfg: CampaignConfig, version: str, frame: Any) -> list[str]:
    """The predictions of registered model ``version`` on ``frame`` (the holdout's rows, or
    a kept window's), its columns matched to the model's by name."""
    import mlflow.sklearn

    from serving.inputs import InputSchema
    from tasks.data import pool_head
    from tasks.evaluate import _client, model_name

    _client(cfg)  # the tracking URI and the bounded HTTP retries
    model = mlflow.sklearn.load_model(f"models:/{model_name(cfg)}/{version}")
    # The model's column order is the pool's (a kept window has its columns sorted).
    schema = InputSchema.from_pool(cfg, pool_head(cfg))
    rows = schema.rows(frame[list(schema.fields)].to_dict("records"))
    return [str(p) for p in model.predict(rows)]


@io_task
def request_retrain(
    deployment: str, parameters: Mapping[str, Any], idempotency_key: str, tags: Sequence[str]
) -> dict[str, Any]:
    """Create the retrain run now; the idempotency key makes a repeat create none extra."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        run = run_deployment(
            name=deployment,
            parameters=dict(parameters),
            timeout=0,
            as_subflow=False,
            idempotency_key=idempotency_key,
            tags=list(tags),
        )
    except ObjectNotFound:
        return {
            "created": False,
            "reason": f"no deployment {deployment!r}: run `loopwise retrain` by hand, or "
            "deploy the campaign (loopwise deploy)",
        }
    return {"created": True, "flow_run_id": str(run.id), "flow_run_name": run.name}
