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

from loopwise import consensus
from loopwise.state import now_iso
from storage.campaign import Ledgers
from tasks import io_task, step_task
from tasks.labelstudio import LabelStudioTarget

__all__ = [
    "close_open_batch",
    "consensus_qc",
    "plan_adaptive_overlap",
    "request_more_annotations",
]

_NOTHING = {"accepted_new": 0, "accepted_total": 0, "disputed": {}, "annotator_accuracy": {}}


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
    accepted, disputed = consensus.accept(result.labels, **accept)
    return accepted, disputed, result.annotator_accuracy


def _label_records(
    rows: pd.DataFrame,
    crowd: pd.DataFrame,
    decided: pd.Series,
    accepted: pd.DataFrame,
    already: Collection[str],
    *,
    cycle: int,
    method: str,
) -> list[dict[str, Any]]:
    """The labels ledger records of the newly accepted items: experts' first, then the crowd's."""
    who = rows.groupby("item_id")["annotator"].agg(list)
    task_of = rows.groupby("item_id")["task_id"].first()
    now = now_iso()

    def record(item: str, label: str, agreement: float, confidence: float, how: str) -> dict:
        return {
            "item_id": str(item),
            "label": label,
            "annotators": who[item],
            "agreement": float(agreement),
            "confidence": float(confidence),
            "n_annotations": len(who[item]),
            "task_id": int(task_of[item]),
            "cycle": cycle,
            "method": how,
            "accepted_at": now,
        }

    new = []
    for item, label in decided.items():
        if str(item) not in already:
            answers = crowd.loc[crowd["item_id"] == item, "label"]
            agreement = float((answers == label).mean()) if len(answers) else 1.0
            new.append(record(item, label, agreement, 1.0, "expert"))
    for item, row in accepted.iterrows():
        if str(item) not in already and item not in decided.index:
            new.append(record(item, row["label"], row["agreement"], row["confidence"], method))
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
) -> dict[str, Any]:
    """Aggregate every accepted annotation; append newly agreed items to the labels ledger.

    An answer by one of ``experts`` (Label Studio user ids) decides its item: the item is
    accepted with that label (``method: "expert"``, the latest expert answer if several),
    whatever the annotators said. Expert answers stay out of the annotators' consensus and
    of their accuracy estimates. An item already in the ledger is never relabeled.
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
    already = ledgers.labeled_ids()
    new = _label_records(rows, crowd, decided, accepted, already, cycle=cycle, method=method)
    ledgers.append("labels", new)
    ledgers.store.write_json(
        ledgers.document_key("quality"),
        {"cycle": cycle, "method": method, "annotator_accuracy": quality.to_dict()},
    )
    done = already | {r["item_id"] for r in new}
    return {
        "accepted_new": len(new),
        "accepted_total": len(done),
        "disputed": {str(i): r for i, r in disputed["reason"].items() if str(i) not in done},
        "annotator_accuracy": {str(k): float(v) for k, v in quality.items()},
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
    task_of = {r["item_id"]: r["task_id"] for r in ledgers.annotations()}
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
