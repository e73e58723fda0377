"""Label Studio stage: the campaign's project, batch dispatch and annotation polling.

Thin on purpose: the XML/JSON conversions and the checks of what annotators sent
are pure functions in :mod:`loopwise.labelstudio`; this module does the HTTP and
the ledger writes (:class:`storage.campaign.Ledgers`):

- ``dispatch`` — ``{"event": "intent", "items": [...]}`` before an import,
  ``{"event": "sent", "item_id", "task_id", ...}`` after it. An item with a ``sent``
  record is never imported again; an intent without one (a crash between the import
  and the receipt) is reconciled against the server before anything is re-sent, so a
  dispatch can be re-run any number of times without duplicates.
- ``annotations`` — every annotation version ever seen, raw JSON kept whole, with its
  status (accepted / skipped / cancelled / rejected) and reason. Written before
  anything else reads them; the ``collect`` document is the polling checkpoint.

Every task takes the server as one :class:`LabelStudioTarget` (its token is never
shown in a repr, a log or a cache key: tasks are never cached, see :mod:`tasks`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from label_studio_sdk import LabelStudio
from label_studio_sdk.data_manager import Column, Filters, Operator, Type

from loopwise.labelstudio import (
    AnnotationRecord,
    default_to_name,
    label_config,
    labels_of_config,
    parse_task_annotations,
    task_payload,
)
from loopwise.state import now_iso
from storage.campaign import Ledgers
from tasks import io_task

__all__ = [
    "LabelStudioTarget",
    "ProjectMismatchError",
    "collect_annotations",
    "connect",
    "dispatch_batch",
    "ensure_project",
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


@dataclass(frozen=True)
class LabelStudioTarget:
    """A Label Studio server, the token to reach it and (once known) the campaign's project."""

    url: str
    token: str = field(repr=False)
    project_id: int | None = None

    def client(self) -> LabelStudio:
        """An SDK client for the server."""
        return connect(self.url, self.token)

    def for_project(self, project_id: int) -> LabelStudioTarget:
        """The same server, pointed at ``project_id``."""
        return replace(self, project_id=int(project_id))

    @property
    def project(self) -> int:
        """The project id; an error if it is not known yet."""
        if self.project_id is None:
            raise ValueError(f"no Label Studio project chosen on {self.url}")
        return self.project_id


class ProjectMismatchError(RuntimeError):
    """A project with the campaign's title exists with another label set."""


def connect(url: str, api_key: str) -> LabelStudio:
    """An SDK client (legacy token or personal access token)."""
    return LabelStudio(base_url=url, api_key=api_key)


def user_ids(target: LabelStudioTarget, who: Sequence[str]) -> dict[str, str]:
    """Label Studio user id (as the ledgers write it) of each e-mail or id in ``who``.

    One that names no user yet is left out, with a warning: an expert may get an
    account after the campaign started.
    """
    if not who:
        return {}
    users = list(target.client().users.list())
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


@io_task
def ensure_project(
    target: LabelStudioTarget,
    title: str,
    labels: Sequence[str],
    data_kind: str = "text",
    overlap: int = 1,
    fields: Sequence[str] = (),
) -> int:
    """Find the campaign's project by title, or create it; refuse one with other labels."""
    client = target.client()
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


def _reconciled_receipts(client: LabelStudio, ledgers: Ledgers, cycle: int) -> dict[str, int]:
    """item → task id of every item sent, after recording the ones the server has without
    a receipt (a crash between an import and its receipt, or tasks created elsewhere)."""
    ledger = ledgers.read("dispatch")
    sent = {r["item_id"]: r["task_id"] for r in ledger if r.get("event") == "sent"}
    intended = {i for r in ledger if r.get("event") == "intent" for i in r["items"]}
    project = client.projects.get(id=ledgers.project_id)
    if not (intended - sent.keys() or (project.task_number or 0) > len(sent)):
        return sent
    found = {i: t for i, t in _server_item_ids(client, ledgers.project_id).items() if i not in sent}
    ledgers.append(
        "dispatch",
        [
            {"event": "sent", "item_id": i, "task_id": t, "cycle": cycle, "reconciled": True}
            for i, t in found.items()
        ],
    )
    if found:
        log.warning(
            "project %s: %d item(s) were on the server without a receipt; recorded",
            ledgers.project_id,
            len(found),
        )
    return {**sent, **found}


def _import_chunk(
    client: LabelStudio,
    ledgers: Ledgers,
    payload: list[dict[str, Any]],
    chunk: Sequence[Mapping[str, Any]],
    cycle: int,
) -> dict[str, int]:
    """Import one chunk of tasks between an ``intent`` and its ``sent`` receipts.

    A receipt keeps what the item was sent with: the model's guess and its probability
    (the prior of the adaptive overlap policy, :mod:`loopwise.overlap`)."""
    pid = ledgers.project_id
    items = [str(b["item_id"]) for b in chunk]
    ledgers.append("dispatch", [{"event": "intent", "items": items, "cycle": cycle}])
    response = client.projects.import_tasks(id=pid, request=payload, return_task_ids=True)
    task_ids = [int(t) for t in (response.task_ids or [])]
    if len(task_ids) != len(items):
        raise RuntimeError(
            f"project {pid}: imported {len(items)} tasks but the server returned "
            f"{len(task_ids)} task ids; the next run reconciles from the server"
        )
    ledgers.append(
        "dispatch",
        [
            {
                "event": "sent",
                "item_id": i,
                "task_id": t,
                "cycle": cycle,
                "prediction_label": b.get("prediction_label"),
                "prediction_score": b.get("prediction_score"),
            }
            for i, t, b in zip(items, task_ids, chunk, strict=True)
        ],
    )
    return dict(zip(items, task_ids, strict=True))


def _set_overlap(
    client: LabelStudio, ledgers: Ledgers, task_ids: Mapping[str, int], overlap: int
) -> int:
    """Give the new tasks ``overlap`` where the project's own setting differs (an import
    takes the project's ``maximum_annotations``); an item whose overlap was raised since
    keeps it. Returns the number of tasks updated."""
    project = client.projects.get(id=ledgers.project_id)
    if not task_ids or (project.maximum_annotations or 1) == overlap:
        return 0
    raised = {r["item_id"] for r in ledgers.read("review")}
    n = 0
    for item, task in task_ids.items():
        if item not in raised:
            client.tasks.update(id=str(task), overlap=overlap)
            n += 1
    return n


def _payload(
    b: Mapping[str, Any], model_version: str | None, labels: Sequence[str] | None, to_name: str
) -> dict[str, Any]:
    return task_payload(
        str(b["item_id"]),
        b["data"],
        prediction_label=b.get("prediction_label"),
        prediction_score=b.get("prediction_score"),
        model_version=b.get("model_version") or model_version,
        query_score=b.get("query_score"),
        labels=labels,
        to_name=to_name,
    )


def _first_of_each_unsent(
    batch: Sequence[Mapping[str, Any]], sent: Mapping[str, int]
) -> list[Mapping[str, Any]]:
    todo, seen = [], set()
    for b in batch:
        item = str(b["item_id"])
        if item not in sent and item not in seen:
            seen.add(item)
            todo.append(b)
    return todo


@io_task
def dispatch_batch(
    target: LabelStudioTarget,
    ledgers: Ledgers,
    batch: Sequence[Mapping[str, Any]],
    *,
    cycle: int,
    model_version: str | None = None,
    data_kind: str = "text",
    labels: Sequence[str] | None = None,
    chunk_size: int = CHUNK,
    overlap: int | None = None,
) -> dict[str, Any]:
    """Import a batch (best first) into Label Studio, never an item twice.

    Each element of ``batch`` holds ``item_id``, ``data`` and optionally
    ``prediction_label``, ``prediction_score`` and ``query_score``. ``overlap`` (the
    overlap policy's initial number of annotators) is set on the batch's tasks where the
    project asks for another number. Returns a receipt: counts of created and
    already-present items and the item → task id map.
    """
    client = target.client()
    sent = _reconciled_receipts(client, ledgers, cycle)
    todo = _first_of_each_unsent(batch, sent)
    to_name = default_to_name(data_kind)
    created: dict[str, int] = {}
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        payload = [_payload(b, model_version, labels, to_name) for b in chunk]
        created.update(_import_chunk(client, ledgers, payload, chunk, cycle))
    wanted = {str(b["item_id"]) for b in batch}
    if overlap is not None:
        # Every task of the batch, so that a re-run after a crash between the import and
        # this update finishes it (setting the same overlap twice is harmless).
        tasks = {i: t for i, t in {**sent, **created}.items() if i in wanted}
        _set_overlap(client, ledgers, tasks, overlap)
    return {
        "project_id": ledgers.project_id,
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


def _fetch_new(
    client: LabelStudio,
    ledgers: Ledgers,
    labels: Sequence[str],
    control_name: str,
    since: str | None,
) -> tuple[str, list[dict[str, Any]], list[AnnotationRecord]]:
    """(mode, tasks read, annotation versions the ledger has not seen)."""
    pid = ledgers.project_id
    ledger = ledgers.read("annotations")
    seen = {(r["annotation_id"], r["updated_at"]) for r in ledger}
    if since:
        tasks_json = _changed_tasks(client, pid, since)
        new = _new_records(tasks_json, pid, labels, control_name, set(seen))
        project = client.projects.get(id=pid)
        on_server = (project.total_annotations_number or 0) + (
            project.skipped_annotations_number or 0
        )
        known = len({r["annotation_id"] for r in ledger})
        if on_server <= known + len({r.annotation_id for r in new}):
            return "incremental", tasks_json, new
        # The server holds annotations the ledger has never seen (committed just behind
        # an earlier checkpoint, say): read everything once.
    tasks_json = _export(client, pid)
    return "full", tasks_json, _new_records(tasks_json, pid, labels, control_name, set(seen))


@io_task
def collect_annotations(
    target: LabelStudioTarget,
    ledgers: Ledgers,
    labels: Sequence[str],
    *,
    control_name: str = "label",
) -> dict[str, Any]:
    """Append every new or changed annotation to the annotation ledger, then advance the checkpoint.

    Incremental: once a checkpoint exists, only tasks whose ``updated_at`` (server clock)
    is past it are read, in pages of ``PAGE``. A full read (one export) happens on the
    first poll and whenever the server counts more annotations than the ledger has ever
    seen. Returns counts per status.
    """
    key = ledgers.document_key("collect")
    previous = ledgers.store.read_json(key, {}).get("updated_after")
    mode, tasks_json, new = _fetch_new(target.client(), ledgers, labels, control_name, previous)
    for r in new:
        if r.status == "rejected":
            log.warning(
                "project %s task %s annotation %s rejected: %s",
                ledgers.project_id,
                r.task_id,
                r.annotation_id,
                r.reason,
            )
    # The ledger first; only then may the checkpoint move past these annotations.
    ledgers.append("annotations", (_record_row(r) for r in new))
    latest = max((t["updated_at"] for t in tasks_json if t.get("updated_at")), default=None)
    if latest is not None and (previous is None or _parse_time(latest) > _parse_time(previous)):
        previous = latest
    ledgers.store.write_json(
        key, {"updated_after": previous, "tasks_read": len(tasks_json), "mode": mode}
    )
    counts = {
        s: sum(r.status == s for r in new) for s in ("accepted", "skipped", "cancelled", "rejected")
    }
    return {
        "project_id": ledgers.project_id,
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
    return {**asdict(r), "collected_at": now_iso()}
