"""Consensus QC stage: collected annotations → accepted labels ledger, disputes → more annotations.

Ledgers (:class:`storage.campaign.Ledgers`, append-only):

- ``labels`` — one record per accepted item with its provenance (label, annotators,
  agreement, posterior confidence, task id, cycle, method);
- ``review`` — disputed items with the reason, each time an item is sent back for
  more annotations;
- ``closed`` — items still unresolved when their batch was closed
  (``schedule.batch_timeout_seconds``, or a manual run with ``close_batch``), with the
  answers they had; their tasks stay open and late answers are accepted as they come;
- the ``quality`` document — the latest per-annotator accuracy estimates (atomic).

Where an open batch stands (progress, deadline, review queue) is decided by pure
functions in :mod:`loopwise.batch`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pandas as pd

from loopwise import consensus, overlap
from loopwise.overlap import OverlapPolicy
from loopwise.state import now_iso
from storage.campaign import Ledgers
from tasks import io_task, step_task
from tasks.labelstudio import LabelStudioTarget

__all__ = [
    "close_open_batch",
    "consensus_qc",
    "plan_adaptive_overlap",
    "plan_relabels",
    "request_more_annotations",
]

_NOTHING = {
    "accepted_new": 0,
    "accepted_total": 0,
    "corrected_new": 0,
    "disputed": {},
    "annotator_accuracy": {},
}


def _crowd_consensus(
    crowd: pd.DataFrame, labels: Sequence[str], method: str, random_state: int, **accept: Any
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """(accepted items, disputed items with their reason, annotator accuracy) of the crowd."""
    if crowd.empty:
        return (
            pd.DataFrame(columns=["label", "agreement", "confidence"]),
            pd.DataFrame(columns=["reason"]),
            pd.Series(dtype=float),
        )
    table = crowd.rename(columns={"item_id": "item"})[["item", "annotator", "label"]]
    result = consensus.aggregate(table, method=method, labels=labels, random_state=random_state)
    agreed = consensus.lone_answers_stand(result.labels, table, result.annotator_accuracy)
    accepted, disputed = consensus.accept(agreed, **accept)
    return accepted, disputed, result.annotator_accuracy


def _adaptive_split(
    ledgers: Ledgers,
    crowd: pd.DataFrame,
    labels: Sequence[str],
    policy: OverlapPolicy,
    estimates: tuple[pd.Series, dict[Any, float], dict[Any, int]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accepted, disputed) by the adaptive policy: the posterior of each item's best label
    given its answers, each annotator's estimated accuracy and the model's guess at dispatch."""
    if crowd.empty:
        return pd.DataFrame(columns=["label", "agreement", "confidence", "n_annotations"]), (
            pd.DataFrame(columns=["reason"])
        )
    predictions = {
        r["item_id"]: (r.get("prediction_label"), r.get("prediction_score"))
        for r in ledgers.read("dispatch")
        if r.get("event") == "sent"
    }
    _, accuracies, calibrated = estimates
    answers = {
        item: list(zip(g["annotator"], g["label"], strict=True))
        for item, g in crowd.groupby("item_id", sort=True)
    }
    decisions = overlap.decide_items(
        policy, labels, answers, accuracies, predictions, calibrated=calibrated
    )
    ok = {i: d for i, d in decisions.items() if d.status == "accept"}
    accepted = pd.DataFrame(
        {
            "label": [d.label for d in ok.values()],
            "agreement": [
                sum(a == d.label for _, a in answers[i]) / d.n_answers for i, d in ok.items()
            ],
            "confidence": [d.confidence for d in ok.values()],
            "n_annotations": [d.n_answers for d in ok.values()],
        },
        index=pd.Index(list(ok), name="item"),
    )
    disputed = pd.DataFrame(
        {"reason": [d.reason for d in decisions.values() if d.status != "accept"]},
        index=pd.Index([i for i, d in decisions.items() if d.status != "accept"], name="item"),
    )
    return accepted, disputed


def _estimates(
    crowd: pd.DataFrame, labels: Sequence[str], method: str, random_state: int
) -> tuple[pd.Series, dict[Any, float], dict[Any, int]]:
    """(the consensus estimate of each annotator's accuracy on the items answered more
    than once, that estimate shrunk towards the default for the posterior, how many such
    answers each annotator has): single answers tell nothing of an annotator."""
    multi = overlap.overlapping(crowd)
    quality = _crowd_consensus(multi, labels, method, random_state)[2]
    checked = multi["annotator"].value_counts().to_dict() if not multi.empty else {}
    return quality, overlap.annotator_accuracies(quality.to_dict(), checked), checked


def _label_records(
    rows: pd.DataFrame,
    crowd: pd.DataFrame,
    decided: pd.Series,
    accepted: pd.DataFrame,
    current: Mapping[str, Mapping[str, Any]],
    *,
    cycle: int,
    method: str,
) -> list[dict[str, Any]]:
    """The labels ledger records this consensus adds: first labels of newly accepted items
    (experts' first, then the crowd's), and corrections of accepted ones.

    A correction is a new version of the item's record that ``supersedes`` the current
    one, with its ``reason``: an expert's answer that differs from the current label, or a
    crowd consensus that accepts another label on more answers than the current label
    rests on (new evidence, a relabel; a re-estimate of the same answers never flips a
    label). An expert's label is only ever corrected by an expert.
    """
    who = rows.groupby("item_id")["annotator"].agg(list)
    task_of = rows.groupby("item_id")["task_id"].first()
    now = now_iso()

    def record(item: str, label: str, agreement: float, confidence: float, how: str) -> dict:
        held = current.get(str(item))
        return {
            "item_id": str(item),
            "label": label,
            "annotators": who[item],
            "agreement": float(agreement),
            "confidence": float(confidence),
            "n_annotations": len(who[item]),
            # None: answered only by feedback from the production app (no task).
            "task_id": None if pd.isna(task_of[item]) else int(task_of[item]),
            "cycle": cycle,
            "method": how,
            "accepted_at": now,
            "version": 1 if held is None else int(held.get("version") or 1) + 1,
            "supersedes": None if held is None else int(held.get("version") or 1),
        }

    new = []
    for item, label in decided.items():
        held = current.get(str(item))
        if held is not None and held["label"] == label:
            continue
        answers = crowd.loc[crowd["item_id"] == item, "label"]
        agreement = float((answers == label).mean()) if len(answers) else 1.0
        rec = record(item, label, agreement, 1.0, "expert")
        if held is not None:
            rec["reason"] = f"expert answer {label!r} over {held['method']} {held['label']!r}"
        new.append(rec)
    for item, row in accepted.iterrows():
        if item in decided.index:
            continue
        held = current.get(str(item))
        if held is None:
            new.append(record(item, row["label"], row["agreement"], row["confidence"], method))
            continue
        more = int(row["n_annotations"]) > int(held.get("n_annotations") or 0)
        if held["method"] != "expert" and held["label"] != row["label"] and more:
            rec = record(item, row["label"], row["agreement"], row["confidence"], method)
            rec["reason"] = (
                f"consensus of {int(row['n_annotations'])} answers {row['label']!r} over "
                f"{held['label']!r} (of {held.get('n_annotations')})"
            )
            new.append(rec)
    return new


@step_task
def consensus_qc(
    ledgers: Ledgers,
    labels: Sequence[str],
    *,
    cycle: int,
    method: str = "dawid_skene",
    min_agreement: float = 0.66,
    min_confidence: float = 0.0,
    min_annotations: int = 1,
    random_state: int = 0,
    experts: Collection[str] = (),
    policy: OverlapPolicy | None = None,
) -> dict[str, Any]:
    """Aggregate every accepted annotation; append newly agreed items, and corrections, to
    the labels ledger.

    An answer by one of ``experts`` (Label Studio user ids) decides its item: the item is
    accepted with that label (``method: "expert"``, the latest expert answer if several),
    whatever the annotators said; an earlier label of the item is superseded. Expert
    answers stay out of the annotators' consensus and of their accuracy estimates.

    With an adaptive ``policy`` (:class:`loopwise.overlap.OverlapPolicy`) an item is
    accepted when the posterior of its best label reaches the policy's target; otherwise
    (fixed) by ``min_agreement``, ``min_confidence`` and ``min_annotations``.
    """
    if method not in consensus.METHODS:
        raise ValueError(f"method must be one of {consensus.METHODS}, got {method!r}")
    rows = pd.DataFrame(ledgers.annotations(["accepted"]))
    if rows.empty:
        return dict(_NOTHING)
    is_expert = rows["annotator"].astype(str).isin({str(e) for e in experts})
    crowd = rows.loc[~is_expert]
    decided = rows.loc[is_expert].sort_values("annotation_id").groupby("item_id")["label"].last()
    accepted, disputed, quality = _crowd_consensus(
        crowd,
        labels,
        method,
        random_state,
        min_agreement=min_agreement,
        min_confidence=min_confidence,
        min_annotations=min_annotations,
    )
    if policy is not None and policy.policy == "adaptive":
        # Most items have one answer: only those with more tell an annotator's accuracy.
        estimates = _estimates(crowd, labels, method, random_state)
        accepted, disputed = _adaptive_split(ledgers, crowd, labels, policy, estimates)
        quality = estimates[0]
    current = ledgers.current_labels()
    new = _label_records(rows, crowd, decided, accepted, current, cycle=cycle, method=method)
    ledgers.append("labels", new)
    ledgers.store.write_json(
        ledgers.document_key("quality"),
        {"cycle": cycle, "method": method, "annotator_accuracy": quality.to_dict()},
    )
    done = set(current) | {r["item_id"] for r in new}
    return {
        "accepted_new": sum(r["supersedes"] is None for r in new),
        "accepted_total": len(done),
        "corrected_new": sum(r["supersedes"] is not None for r in new),
        "disputed": {str(i): r for i, r in disputed["reason"].items() if str(i) not in done},
        "annotator_accuracy": {str(k): float(v) for k, v in quality.items()},
    }


@step_task
def plan_relabels(
    ledgers: Ledgers,
    labels: Sequence[str],
    batch: Sequence[Mapping[str, Any]],
    model: Any,
    snapshot: pd.DataFrame,
    X_labeled: Any,
    policy: OverlapPolicy,
    *,
    max_share: float = 0.5,
    method: str = "dawid_skene",
    random_state: int = 0,
) -> dict[str, Any]:
    """Relabel or new: which accepted labels get one more answer instead of the weakest new
    picks of ``batch`` (:func:`loopwise.overlap.relabel_or_new`).

    One scale: what one answer buys in clean labels, on an accepted label (its expected
    gain under the current model and annotator estimates) or on a new item. Returns
    ``{"batch": the batch without the new picks given up (control rows kept),
    "relabel": [{"item_id", "gain"}, ...]}``. Expert labels are never asked again.
    """
    current = {
        i: r["label"] for i, r in ledgers.current_labels().items() if r.get("method") != "expert"
    }
    rows = pd.DataFrame(ledgers.annotations(["accepted"]))
    if not current or rows.empty or model is None or len(snapshot) == 0:
        return {"batch": list(batch), "relabel": []}
    answers = {
        i: list(zip(g["annotator"], g["label"], strict=True)) for i, g in rows.groupby("item_id")
    }
    crowd = rows.loc[rows["item_id"].isin(set(current))]
    accuracies = _estimates(crowd, labels, method, random_state)[1]
    proba = model.predict_proba(X_labeled)
    classes = [str(c) for c in model.classes_]
    predictions = {
        str(item): (classes[int(p.argmax())], float(p.max()))
        for item, p in zip(snapshot["item_id"], proba, strict=True)
    }
    gains = overlap.accepted_gain(
        labels,
        current,
        answers,
        accuracies,
        predictions,
        model_weight=policy.model_weight,
        max_annotations=policy.max_annotations,
    )
    picks = [b for b in batch if not b.get("control")]
    new_value = overlap.new_item_value(overlap.pool_accuracy(accuracies), len(labels))
    n_new, relabel = overlap.relabel_or_new(
        [new_value] * len(picks), gains, len(picks), max_share=max_share
    )
    dropped = {str(b["item_id"]) for b in picks[n_new:]}
    return {
        "batch": [b for b in batch if str(b["item_id"]) not in dropped],
        "relabel": [{"item_id": str(i), "gain": round(gains[i], 4)} for i in relabel],
    }


def plan_adaptive_overlap(
    ledgers: Ledgers,
    predictions: Mapping[str, tuple[str, float]],
    policy: consensus.AdaptiveOverlap,
) -> list[str]:
    """Items whose annotations so far call for another one under ``policy``.

    ``predictions`` maps item id → (model label, model confidence). Only items
    with at least one accepted annotation are considered.
    """
    rows = pd.DataFrame(ledgers.annotations(["accepted"]))
    if rows.empty:
        return []
    out = []
    for item, answers in rows.groupby("item_id")["label"]:
        label, conf = predictions.get(item, (None, None))
        if policy.needs_more(label, conf, list(answers)):
            out.append(str(item))
    return sorted(out)


@io_task
def request_more_annotations(
    target: LabelStudioTarget,
    ledgers: Ledgers,
    items: Sequence[str],
    *,
    reasons: Mapping[str, str] | None = None,
    cycle: int,
    max_annotations: int = 5,
) -> dict[str, int]:
    """Raise the overlap of the items' tasks by one (up to ``max_annotations``) and log why."""
    counts = ledgers.answers_per_item()
    # Items with a Label Studio task (feedback from the production app has none).
    task_of = {
        r["item_id"]: r["task_id"] for r in ledgers.annotations() if r.get("task_id") is not None
    }
    client = target.client()
    raised = {}
    for item in items:
        if item not in task_of or counts[item] >= max_annotations:
            continue
        client.tasks.update(id=str(task_of[item]), overlap=counts[item] + 1)
        raised[item] = counts[item] + 1
    ledgers.append(
        "review",
        [
            {
                "item_id": i,
                "task_id": task_of[i],
                "overlap": n,
                "cycle": cycle,
                "reason": (reasons or {}).get(i, "adaptive overlap"),
            }
            for i, n in raised.items()
        ],
    )
    return raised


@step_task
def close_open_batch(
    ledgers: Ledgers, items: Sequence[str], cycle: int, waited_seconds: float
) -> list[str]:
    """Stop waiting for ``items``: record each once per cycle in the ``closed`` ledger
    with the answers it had. Nothing is withdrawn from Label Studio: an answer that comes
    later is collected and, with a consensus, accepted by a later cycle."""
    done = {r["item_id"] for r in ledgers.read("closed") if r["cycle"] == cycle}
    answers = ledgers.answers_per_item()
    now = now_iso()
    ledgers.append(
        "closed",
        [
            {
                "item_id": str(item),
                "cycle": cycle,
                "answers": answers.get(str(item), 0),
                "waited_seconds": round(waited_seconds, 1),
                "closed_at": now,
            }
            for item in items
            if str(item) not in done
        ],
    )
    return [str(i) for i in items]
