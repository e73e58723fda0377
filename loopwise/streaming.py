"""The stream path's bookkeeping, pure: what a logged request becomes on its way to a label.

- :func:`batch_record` — a selected log record as the record dispatch takes (the same
  shape as a pool batch's, :func:`loopwise.batch.batch_records`), pre-annotated with the
  served prediction and the model version that served it;
- :func:`feedback_annotation` — a production app's feedback as an annotation of its own
  annotator (``feedback:<user>``), weighed by consensus like any other answer;
- :func:`next_retrain` — which fired trigger asks for the next retrain, one at a time;
- :func:`attribution` — every stream label joined to its request, the served version and
  its prediction;
- :func:`stream_summary` — traffic, labeling rate, online accuracy per served version
  (from control labels only), drift windows, triggers and retrains, for the report.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from loopwise.inference_log import stream_item_id
from loopwise.triggers import online_accuracy

__all__ = [
    "FEEDBACK_ANNOTATOR",
    "STREAM_ITEM_PREFIX",
    "attribution",
    "batch_record",
    "feedback_annotation",
    "is_stream_item",
    "next_retrain",
    "stream_summary",
]

#: How the item id of a stream record begins (:func:`loopwise.inference_log.stream_item_id`).
STREAM_ITEM_PREFIX = "s-"
#: The annotator id of a production app's feedback: ``feedback:<user>``.
FEEDBACK_ANNOTATOR = "feedback:"


def is_stream_item(item_id: str) -> bool:
    """Whether an item id names a stream record (``s-<request id>``)."""
    return str(item_id).startswith(STREAM_ITEM_PREFIX)


def batch_record(
    record: Mapping[str, Any], *, text_column: str | None = None, control: bool | None = None
) -> dict[str, Any]:
    """A validated log record as dispatch takes it: ``item_id`` (``s-<request id>``), the
    ``data`` shown to annotators (``{"text": …}`` for a text campaign, else ``{"record":
    inputs}``), the served prediction with its probability and ``model_version``, the
    utility as ``query_score``, and whether it is a control draw."""
    inputs = dict(record.get("inputs") or {})
    if text_column is not None:
        data: dict[str, Any] = {"text": str(inputs.get(text_column, ""))}
    else:
        data = {"record": inputs}
    proba = record.get("proba") or {}
    prediction = record.get("prediction")
    score = proba.get(prediction) if prediction is not None else None
    return {
        "item_id": stream_item_id(record["request_id"]),
        "request_id": record["request_id"],
        "data": data,
        "prediction_label": prediction,
        "prediction_score": None if score is None else float(score),
        "model_version": record.get("model_version"),
        "query_score": record.get("score"),
        "control": (record.get("decision") == "control") if control is None else control,
        "decision": record.get("decision"),
        "time": record.get("time"),
    }


def feedback_annotation(
    feedback: Mapping[str, Any], served_prediction: str | None, labels: Sequence[str]
) -> dict[str, Any]:
    """One feedback record as a row of the annotations ledger.

    ``{"label": x}`` is the user's answer ``x``; ``{"correct": true}`` confirms the served
    prediction (the answer is that prediction); ``{"correct": false}`` without a label
    says only what the item is not: it is kept as a skipped answer (no label, no price).
    The annotation id is ``feedback:<feedback id>``, so a replay appends nothing new."""
    label = feedback.get("label")
    status, reason = "accepted", None
    if label is None and feedback.get("correct") is True:
        label = served_prediction
        if label is None:
            status, reason = "skipped", "rated correct, but the served prediction is unknown"
    elif label is None:
        status, reason = "skipped", "rated incorrect without a correction"
    if label is not None and str(label) not in {str(x) for x in labels}:
        status, reason, label = "rejected", f"label {label!r} is not in the label set", None
    user = str(feedback.get("user") or "app")
    return {
        "item_id": stream_item_id(feedback["request_id"]),
        "task_id": None,
        "annotation_id": f"feedback:{feedback_id(feedback)}",
        "annotator": f"{FEEDBACK_ANNOTATOR}{user}",
        "label": None if label is None else str(label),
        "status": status,
        "reason": reason,
        "lead_time": None,
        "created_at": feedback.get("time"),
        "updated_at": feedback.get("time"),
        "raw": dict(feedback),
        "source": "feedback",
    }


def feedback_id(feedback: Mapping[str, Any]) -> str:
    """The feedback's own id, or a digest of its content (the same feedback, the same id)."""
    given = feedback.get("feedback_id")
    if given:
        return str(given)
    keys = ("request_id", "label", "correct", "user", "time")
    text = "|".join(str(feedback.get(k)) for k in keys)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def next_retrain(
    triggers: Sequence[Mapping[str, Any]],
    requested: Sequence[Mapping[str, Any]],
    retrains: Sequence[Mapping[str, Any]],
) -> tuple[str | None, Mapping[str, Any] | None]:
    """(the key of a retrain requested and not done yet, the trigger to request one for).

    One retrain at a time: while a created run has not finished, nothing is requested
    (the first element names it). Otherwise the first trigger that fired after the last
    request, and was never requested, asks for the next one: a retrain trains on every
    label there is when it starts, so the triggers that fired before its request are
    answered by it. Times are ISO-8601 strings in UTC (they sort as times)."""
    done = {r["key"] for r in retrains}
    pending = [r["key"] for r in requested if r.get("created") and r["key"] not in done]
    if pending:
        return pending[-1], None
    since = max((str(r["time"]) for r in requested), default="")
    asked = {r["key"] for r in requested}
    waiting = [t for t in triggers if str(t["time"]) > since and t["key"] not in asked]
    return None, (waiting[0] if waiting else None)


def attribution(
    selected: Iterable[Mapping[str, Any]], labels: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Every labeled stream record with its request, served version, served prediction,
    how it was chosen (query, control or feedback) and whether the prediction was right."""
    out = []
    for s in selected:
        lab = labels.get(s["item_id"])
        if lab is None:
            continue
        out.append(
            {
                "item_id": s["item_id"],
                "request_id": s.get("request_id"),
                "model_version": s.get("model_version"),
                "prediction": s.get("prediction_label"),
                "decision": s.get("decision"),
                "label": lab.get("label"),
                "correct": s.get("prediction_label") == lab.get("label"),
                "label_source": lab.get("source"),
            }
        )
    return out


def stream_summary(
    runs: Sequence[Mapping[str, Any]],
    attributed: Sequence[Mapping[str, Any]],
    windows: Sequence[Mapping[str, Any]],
    triggers: Sequence[Mapping[str, Any]],
    retrains: Sequence[Mapping[str, Any]],
    requested: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """What the report shows of the stream.

    ``runs`` are the stream runs' checkpoints (records read, decisions), ``attributed``
    the output of :func:`attribution`. Online accuracy per served version is measured on
    the control draws only: a uniform sample of the traffic, so the estimate is unbiased
    (the queried records are the model's hardest and would understate it)."""
    decisions: Counter[str] = Counter()
    for r in runs:
        decisions.update(r.get("decisions") or {})
    records = sum(int(r.get("records") or 0) for r in runs)
    asked = decisions.get("query", 0) + decisions.get("control", 0)
    return {
        "records": records,
        "quarantined": sum(int(r.get("quarantined") or 0) for r in runs),
        "decisions": dict(decisions),
        "labeling_rate": asked / records if records else None,
        "labels": len(attributed),
        "labels_by_decision": dict(Counter(str(a.get("decision")) for a in attributed)),
        "online_accuracy": online_accuracy(attributed),
        "windows": [dict(w) for w in windows],
        "triggers": [
            {**t, "request": next((r for r in requested if r["key"] == t["key"]), None)}
            for t in triggers
        ],
        "retrains": [dict(r) for r in retrains],
    }
