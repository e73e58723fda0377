"""Label Studio stage: the campaign's project, batch dispatch and annotation polling.

Thin on purpose: the XML/JSON conversions and the checks of what annotators sent
are pure functions in :mod:`loopwise.labelstudio`; this module does the HTTP and
the ledger writes. Ledgers (under the storage root, append-only):

- ``dispatch/<project>.jsonl`` — ``{"event": "intent", "items": [...]}`` before an
  import, ``{"event": "sent", "item_id", "task_id", ...}`` after it. An item with a
  ``sent`` record is never imported again; an intent without one (a crash between
  the import and the receipt) is reconciled against the server before anything is
  re-sent, so a dispatch can be re-run any number of times without duplicates.
- ``annotations/<project>.jsonl`` — every annotation version ever seen, raw JSON
  kept whole, with its status (accepted / skipped / cancelled / rejected) and
  reason. Written before anything else reads them.
- ``collect/<project>.json`` — the polling checkpoint (atomic).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from label_studio_sdk import LabelStudio
from label_studio_sdk.data_manager import Column, Filters, Operator, Type
from prefect import task

from loopwise.labelstudio import (
    AnnotationRecord,
    default_to_name,
    label_config,
    labels_of_config,
    parse_task_annotations,
    task_payload,
)
from storage.store import Store

__all__ = [
    "ProjectMismatchError",
    "collect_annotations",
    "dispatch_batch",
    "ensure_project",
    "read_annotations",
    "user_ids",
]

log = logging.getLogger(__name__)
#: Tasks per import request (one malformed task rejects its whole request).
CHUNK = 1000
#: Poll a little before the checkpoint: clocks and commit order are not exact;
#: re-read annotations are recognised by (annotation id, updated_at) and skipped.
OVERLAP_SECONDS = 1
#: Tasks per page when polling changed tasks.
PAGE = 100


class ProjectMismatchError(RuntimeError):
    """A project with the campaign's title exists with another label set."""


def connect(url: str, api_key: str) -> LabelStudio:
    """An SDK client (legacy token or personal access token)."""
    return LabelStudio(base_url=url, api_key=api_key)


def user_ids(url: str, api_key: str, who: Sequence[str]) -> dict[str, str]:
    """Label Studio user id (as the ledgers write it) of each e-mail or id in ``who``.

    One that names no user yet is left out, with a warning: an expert may get an
    account after the campaign started.
    """
    if not who:
        return {}
    users = list(connect(url, api_key).users.list())
    by_key = {str(u.id): str(u.id) for u in users}
    by_key.update({str(u.email).lower(): str(u.id) for u in users if u.email})
    out = {}
    for w in who:
        ident = by_key.get(str(w).strip().lower())
        if ident is None:
            log.warning("reviewer %r is not a Label Studio user (yet): not counted as one", w)
        else:
            out[str(w)] = ident
    return out


def _dispatch_key(project_id: int) -> str:
    return f"dispatch/{project_id}.jsonl"


def _annotations_key(project_id: int) -> str:
    return f"annotations/{project_id}.jsonl"


@task(retries=2, retry_delay_seconds=2)
def ensure_project(
    url: str,
    api_key: str,
    title: str,
    labels: Sequence[str],
    data_kind: str = "text",
    overlap: int = 1,
    fields: Sequence[str] = (),
) -> int:
    """Find the campaign's project by title, or create it; refuse one with other labels."""
    client = connect(url, api_key)
    for project in client.projects.list(title=title):
        if project.title != title:
            continue
        full = client.projects.get(id=project.id)
        existing = labels_of_config(full.label_config)
        if list(existing) != list(labels):
            raise ProjectMismatchError(
                f"Label Studio project {project.id} {title!r} exists with labels {existing}, "
                f"but the campaign's labels are {list(labels)}; it was left untouched. "
                "Rename the campaign's project or fix its label set."
            )
        return int(project.id)
    created = client.projects.create(
        title=title,
        label_config=label_config(labels, data_kind, fields=fields),
        maximum_annotations=overlap,
        overlap_cohort_percentage=100,
        show_overlap_first=True,
        # Tasks are imported best first, so id order is the query strategy's order.
        sampling="Sequential sampling",
        description="Created by Loopwise: tasks are served most informative first.",
    )
    log.info("created Label Studio project %s %r (overlap %d)", created.id, title, overlap)
    return int(created.id)


def _server_item_ids(client: LabelStudio, project_id: int) -> dict[str, int]:
    """item_id → task id of every task in the project, read from the server."""
    out: dict[str, int] = {}
    for t in client.tasks.list(project=project_id, fields="task_only", page_size=1000):
        item = (t.data or {}).get("item_id")
        if item is not None:
            out.setdefault(str(item), int(t.id))
    return out


@task(retries=2, retry_delay_seconds=2)
def dispatch_batch(
    url: str,
    api_key: str,
    project_id: int,
    batch: Sequence[Mapping[str, Any]],
    *,
    store_root: str,
    cycle: int,
    model_version: str | None = None,
    data_kind: str = "text",
    labels: Sequence[str] | None = None,
    chunk_size: int = CHUNK,
) -> dict[str, Any]:
    """Import a batch (best first) into Label Studio, never an item twice.

    Each element of ``batch`` holds ``item_id``, ``data`` and optionally
    ``prediction_label``, ``prediction_score`` and ``query_score``. Returns a receipt:
    counts of created and already-present items and the item → task id map.
    """
    store = Store(store_root)
    client = connect(url, api_key)
    key = _dispatch_key(project_id)
    ledger = store.read_jsonl(key)
    sent = {r["item_id"]: r["task_id"] for r in ledger if r.get("event") == "sent"}
    intended = {i for r in ledger if r.get("event") == "intent" for i in r["items"]}
    project = client.projects.get(id=project_id)
    if intended - sent.keys() or (project.task_number or 0) > len(sent):
        # A crash after an import and before its receipt, or tasks created elsewhere:
        # ask the server which items it already has before sending anything.
        found = {i: t for i, t in _server_item_ids(client, project_id).items() if i not in sent}
        store.append_jsonl(
            key,
            [
                {"event": "sent", "item_id": i, "task_id": t, "cycle": cycle, "reconciled": True}
                for i, t in found.items()
            ],
        )
        sent.update(found)
        if found:
            log.warning(
                "project %s: %d item(s) were on the server without a receipt; recorded",
                project_id,
                len(found),
            )
    to_name = default_to_name(data_kind)
    todo, seen = [], set()
    for b in batch:
        item = str(b["item_id"])
        if item not in sent and item not in seen:
            seen.add(item)
            todo.append(b)
    created: dict[str, int] = {}
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        payload = [
            task_payload(
                str(b["item_id"]),
                b["data"],
                prediction_label=b.get("prediction_label"),
                prediction_score=b.get("prediction_score"),
                model_version=model_version,
                query_score=b.get("query_score"),
                labels=labels,
                to_name=to_name,
            )
            for b in chunk
        ]
        items = [str(b["item_id"]) for b in chunk]
        store.append_jsonl(key, [{"event": "intent", "items": items, "cycle": cycle}])
        response = client.projects.import_tasks(
            id=project_id, request=payload, return_task_ids=True
        )
        task_ids = list(response.task_ids or [])
        if len(task_ids) != len(items):
            raise RuntimeError(
                f"project {project_id}: imported {len(items)} tasks but the server returned "
                f"{len(task_ids)} task ids; the next run reconciles from the server"
            )
        store.append_jsonl(
            key,
            [
                {"event": "sent", "item_id": i, "task_id": int(t), "cycle": cycle}
                for i, t in zip(items, task_ids, strict=True)
            ],
        )
        created.update(zip(items, map(int, task_ids), strict=True))
    wanted = {str(b["item_id"]) for b in batch}
    return {
        "project_id": project_id,
        "cycle": cycle,
        "created": len(created),
        "already_dispatched": len(wanted) - len(created),
        "task_ids": {i: (created.get(i) or sent.get(i)) for i in sorted(wanted)},
    }


def _changed_tasks(client: LabelStudio, project_id: int, since: str) -> list[dict[str, Any]]:
    """Tasks (with annotations) updated after ``since`` minus the margin, paginated."""
    after = _parse_time(since) - dt.timedelta(seconds=OVERLAP_SECONDS)
    when = Filters.value(Filters.datetime(after.replace(tzinfo=None)))
    flt = Filters.create(
        Filters.AND, [Filters.item(Column.updated_at, Operator.GREATER, Type.Datetime, when)]
    )
    pager = client.tasks.list(
        project=project_id, fields="all", query=json.dumps({"filters": flt}), page_size=PAGE
    )
    return [t.model_dump(mode="json") for t in pager]


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _export(client: LabelStudio, project_id: int) -> list[dict[str, Any]]:
    """Every task of the project with its annotations, skipped ones included (one request)."""
    raw = b"".join(
        client.projects.exports.download_sync(
            project_id, export_type="JSON", download_all_tasks=True
        )
    )
    return json.loads(raw)


@task(retries=2, retry_delay_seconds=2)
def collect_annotations(
    url: str,
    api_key: str,
    project_id: int,
    labels: Sequence[str],
    *,
    store_root: str,
    control_name: str = "label",
) -> dict[str, Any]:
    """Append every new or changed annotation to the annotation ledger, then advance the checkpoint.

    Incremental: once a checkpoint exists, only tasks whose ``updated_at`` (server
    clock) is past it are read, in pages of ``PAGE``. A full read (one export) happens on the first poll and whenever the server counts more
    annotations than the ledger has ever seen. Returns counts per status.
    """
    store = Store(store_root)
    client = connect(url, api_key)
    checkpoint_key = f"collect/{project_id}.json"
    checkpoint = store.read_json(checkpoint_key, {})
    ledger = store.read_jsonl(_annotations_key(project_id))
    seen = {(r["annotation_id"], r["updated_at"]) for r in ledger}
    known = len({r["annotation_id"] for r in ledger})
    project = client.projects.get(id=project_id)
    on_server = (project.total_annotations_number or 0) + (project.skipped_annotations_number or 0)
    mode = "incremental" if checkpoint.get("updated_after") else "full"
    if mode == "incremental":
        tasks_json = _changed_tasks(client, project_id, checkpoint["updated_after"])
        new = _new_records(tasks_json, project_id, labels, control_name, set(seen))
        if on_server > known + len({r.annotation_id for r in new}):
            # The server holds annotations the ledger has never seen (committed just
            # behind an earlier checkpoint, say): read everything once.
            mode = "full"
    if mode == "full":
        tasks_json = _export(client, project_id)
        new = _new_records(tasks_json, project_id, labels, control_name, set(seen))
    for r in new:
        if r.status == "rejected":
            log.warning(
                "project %s task %s annotation %s rejected: %s",
                project_id,
                r.task_id,
                r.annotation_id,
                r.reason,
            )
    # The ledger first; only then may the checkpoint move past these annotations.
    store.append_jsonl(_annotations_key(project_id), (_record_row(r) for r in new))
    latest = max((t["updated_at"] for t in tasks_json if t.get("updated_at")), default=None)
    previous = checkpoint.get("updated_after")
    if latest is not None and (previous is None or _parse_time(latest) > _parse_time(previous)):
        previous = latest
    store.write_json(
        checkpoint_key, {"updated_after": previous, "tasks_read": len(tasks_json), "mode": mode}
    )
    counts = {
        s: sum(r.status == s for r in new) for s in ("accepted", "skipped", "cancelled", "rejected")
    }
    return {
        "project_id": project_id,
        "mode": mode,
        "tasks_read": len(tasks_json),
        "new": len(new),
        **counts,
    }


def _new_records(
    tasks_json: Sequence[Mapping[str, Any]],
    project_id: int,
    labels: Sequence[str],
    control_name: str,
    seen: set[tuple[Any, Any]],
) -> list[AnnotationRecord]:
    """Records of annotation versions not in ``seen`` (which is updated)."""
    new: list[AnnotationRecord] = []
    for t in tasks_json:
        if not (t.get("data") or {}).get("item_id"):
            log.warning(
                "project %s task %s has no data.item_id: not ours, ignored", project_id, t.get("id")
            )
            continue
        for record in parse_task_annotations(t, labels=labels, control_name=control_name):
            if (record.annotation_id, record.updated_at) not in seen:
                seen.add((record.annotation_id, record.updated_at))
                new.append(record)
    return new


def _record_row(r: AnnotationRecord) -> dict[str, Any]:
    row = asdict(r)
    row["collected_at"] = dt.datetime.now(dt.UTC).isoformat()
    return row


def read_annotations(
    store_root: str, project_id: int, statuses: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """The latest version of each annotation in the ledger (optionally of some statuses)."""
    latest: dict[Any, dict[str, Any]] = {}
    for row in Store(store_root).read_jsonl(_annotations_key(project_id)):
        latest[row["annotation_id"]] = row
    wanted = None if statuses is None else set(statuses)
    return [r for r in latest.values() if wanted is None or r["status"] in wanted]
