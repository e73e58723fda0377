"""Consensus QC stage: collected annotations → accepted labels ledger, disputes → more annotations.

Ledgers under the storage root (append-only):

- ``labels/<project>.jsonl`` — one record per accepted item with its provenance
  (label, annotators, agreement, posterior confidence, task id, cycle, method);
- ``review/<project>.jsonl`` — disputed items with the reason, each time an item
  is sent back for more annotations;
- ``quality/<project>.json`` — the latest per-annotator accuracy estimates (atomic);
- ``closed/<project>.jsonl`` — items still unresolved when their batch was closed
  (``schedule.batch_timeout_seconds``, or a manual run with ``close_batch``), with the
  answers they had; their tasks stay open and late answers are accepted as they come.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pandas as pd
from prefect import task

from loopwise import consensus
from storage.store import Store
from tasks.labelstudio import connect, read_annotations

__all__ = [
    "batch_deadline",
    "batch_progress",
    "close_open_batch",
    "consensus_qc",
    "plan_adaptive_overlap",
    "request_more_annotations",
    "review_queue",
]


def _labels_key(project_id: int) -> str:
    return f"labels/{project_id}.jsonl"


def _answers_per_item(store_root: str, project_id: int) -> Counter[str]:
    """How many annotations (of any status) each item has in the ledger."""
    return Counter(r["item_id"] for r in read_annotations(store_root, project_id))


@task
def consensus_qc(
    store_root: str,
    project_id: int,
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
    if method not in ("dawid_skene", "majority"):
        raise ValueError(f"method must be 'dawid_skene' or 'majority', got {method!r}")
    store = Store(store_root)
    rows = pd.DataFrame(read_annotations(store_root, project_id, ["accepted"]))
    if rows.empty:
        return {"accepted_new": 0, "accepted_total": 0, "disputed": {}, "annotator_accuracy": {}}
    is_expert = rows["annotator"].astype(str).isin({str(e) for e in experts})
    crowd = rows.loc[~is_expert]
    decided = rows.loc[is_expert].sort_values("annotation_id").groupby("item_id")["label"].last()
    per_item = pd.DataFrame(columns=["label", "agreement", "confidence", "n_annotations"])
    quality = pd.Series(dtype=float)
    disputed = pd.DataFrame(columns=["reason"])
    accepted = per_item
    if not crowd.empty:
        table = crowd.rename(columns={"item_id": "item"})[["item", "annotator", "label"]]
        if method == "dawid_skene":
            result = consensus.dawid_skene(table, labels=labels, random_state=random_state)
            per_item, quality = result.labels, result.annotator_accuracy
        else:
            per_item = consensus.majority_vote(table, labels=labels, random_state=random_state)
        accepted, disputed = consensus.accept(
            per_item,
            min_agreement=min_agreement,
            min_confidence=min_confidence,
            min_annotations=min_annotations,
        )
    already = {r["item_id"] for r in store.read_jsonl(_labels_key(project_id))}
    who = rows.groupby("item_id")["annotator"].agg(list)
    task_of = rows.groupby("item_id")["task_id"].first()
    now = dt.datetime.now(dt.UTC).isoformat()

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
    store.append_jsonl(_labels_key(project_id), new)
    store.write_json(
        f"quality/{project_id}.json",
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
    store_root: str,
    project_id: int,
    predictions: Mapping[str, tuple[str, float]],
    policy: consensus.AdaptiveOverlap,
) -> list[str]:
    """Items whose annotations so far call for another one under ``policy``.

    ``predictions`` maps item id → (model label, model confidence). Only items
    with at least one accepted annotation are considered.
    """
    rows = pd.DataFrame(read_annotations(store_root, project_id, ["accepted"]))
    if rows.empty:
        return []
    out = []
    for item, labels in rows.groupby("item_id")["label"]:
        label, conf = predictions.get(item, (None, None))
        if policy.needs_more(label, conf, list(labels)):
            out.append(str(item))
    return sorted(out)


@task(retries=2, retry_delay_seconds=2)
def request_more_annotations(
    url: str,
    api_key: str,
    store_root: str,
    project_id: int,
    items: Sequence[str],
    *,
    reasons: Mapping[str, str] | None = None,
    cycle: int,
    max_annotations: int = 5,
) -> dict[str, int]:
    """Raise the overlap of the items' tasks by one (up to ``max_annotations``) and log why."""
    store = Store(store_root)
    rows = read_annotations(store_root, project_id)
    counts: dict[str, int] = {}
    task_of: dict[str, int] = {}
    for r in rows:
        counts[r["item_id"]] = counts.get(r["item_id"], 0) + 1
        task_of[r["item_id"]] = r["task_id"]
    client = connect(url, api_key)
    raised = {}
    for item in items:
        if item not in task_of or counts[item] >= max_annotations:
            continue
        client.tasks.update(id=str(task_of[item]), overlap=counts[item] + 1)
        raised[item] = counts[item] + 1
    store.append_jsonl(
        f"review/{project_id}.jsonl",
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


def batch_progress(
    store_root: str,
    project_id: int,
    items: Sequence[str],
    *,
    disputed: Mapping[str, str],
    annotators_per_item: int,
    max_annotations: int,
) -> dict[str, Any]:
    """Where each item of an open batch stands.

    ``done`` counts items accepted into the labels ledger or sent to expert review
    (no consensus with ``max_annotations`` answers already); ``more`` lists items whose
    expected answers are all in without a consensus (disputed, or too many skips) and
    that may get another; ``pending`` holds those and the items still being answered.
    ``disputed`` (item → reason) is kept for the caller's log.
    """
    accepted = {r["item_id"] for r in Store(store_root).read_jsonl(_labels_key(project_id))}
    answers = _answers_per_item(store_root, project_id)
    review, more, pending = [], [], []
    for item in map(str, items):
        n = answers.get(item, 0)
        if item in accepted:
            continue
        if n >= max_annotations:
            review.append(item)
        elif n >= annotators_per_item:  # every expected answer is in, and no consensus yet
            more.append(item)
            pending.append(item)
        else:
            pending.append(item)
    total = len(items)
    return {
        "total": total,
        "done": total - len(pending),
        "pending": pending,
        "review": review,
        "more": more,
        "accepted": sum(str(i) in accepted for i in items),
    }


def batch_deadline(
    waiting_since: str,
    timeout_seconds: float | None,
    *,
    forced: bool = False,
    now: dt.datetime | None = None,
) -> float | None:
    """Seconds the open batch has waited, if it is to be closed now; else None.

    It is closed when ``forced`` or when it has waited ``timeout_seconds`` (None: never).
    """
    now = now or dt.datetime.now(dt.UTC)
    waited = max(0.0, (now - dt.datetime.fromisoformat(waiting_since)).total_seconds())
    if forced or (timeout_seconds is not None and waited >= timeout_seconds):
        return waited
    return None


@task
def close_open_batch(
    store_root: str, project_id: int, items: Sequence[str], cycle: int, waited_seconds: float
) -> list[str]:
    """Stop waiting for ``items``: record each once per cycle in ``closed/<project>.jsonl``
    with the answers it had. Nothing is withdrawn from Label Studio: an answer that comes
    later is collected and, with a consensus, accepted by a later cycle."""
    store = Store(store_root)
    key = f"closed/{project_id}.jsonl"
    done = {r["item_id"] for r in store.read_jsonl(key) if r["cycle"] == cycle}
    answers = _answers_per_item(store_root, project_id)
    now = dt.datetime.now(dt.UTC).isoformat()
    store.append_jsonl(
        key,
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


def review_queue(store_root: str, project_id: int, max_annotations: int) -> list[dict[str, Any]]:
    """Disputes that reached ``max_annotations`` answers without a consensus: the items an
    expert (``labelstudio.reviewers``) has to decide, oldest task first."""
    accepted = {r["item_id"] for r in Store(store_root).read_jsonl(_labels_key(project_id))}
    by_item: dict[str, list[dict[str, Any]]] = {}
    for r in read_annotations(store_root, project_id, ["accepted"]):
        by_item.setdefault(r["item_id"], []).append(r)
    queue = [
        {
            "item_id": item,
            "task_id": int(rows[0]["task_id"]),
            "answers": len(rows),
            "labels": ", ".join(sorted(str(r["label"]) for r in rows)),
        }
        for item, rows in by_item.items()
        if item not in accepted and len(rows) >= max_annotations
    ]
    return sorted(queue, key=lambda q: q["task_id"])
