"""The invariants of a campaign's store and of the services it drives, as pure checks.

Each check takes plain records — the state, the checkpoints, ledger rows, the Label
Studio task list, MLflow runs and model versions, Prefect flow runs — and returns a list
of :class:`Finding`; an empty list means the invariant holds. Reading the records and
repairing what can be repaired is :mod:`flows.cli.doctor_checks`'s job; this module is pure.

Checkpoints are given as ``{cycle: {stage name: checkpoint}}``, the stage names being
those of ``cycles/<n>/<stage>.json`` (:data:`CHECKPOINTS`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from loopwise.state import CampaignState, Stage, now_iso

__all__ = [
    "CHECKPOINTS",
    "Finding",
    "annotations_behind",
    "labels_outside_dispatch",
    "lapsed_lease",
    "missing_receipts",
    "mlflow_findings",
    "parse_state",
    "rebuild_state",
    "receipt_conflicts",
    "receipts_vs_tasks",
    "state_vs_checkpoints",
    "waiting_next_runs",
]

#: The checkpoints a cycle writes, in the order it writes them.
CHECKPOINTS = ("trained", "decided", "selected", "dispatched")

#: The checkpoints of the current cycle a stage cannot be reached without (cycle > 0;
#: a cold start, cycle 0, has no ``trained`` or ``decided``).
_NEEDED: Mapping[Stage, tuple[str, ...]] = {
    Stage.NEW: (),
    Stage.STARTED: (),
    Stage.TRAINED: ("trained",),
    Stage.DECIDED: ("trained", "decided"),
    Stage.SELECTED: ("trained", "decided", "selected"),
    Stage.WAITING: ("trained", "decided", "selected", "dispatched"),
    Stage.STOPPED: ("trained", "decided"),
}


@dataclass(frozen=True)
class Finding:
    """A broken invariant: a short ``code``, one sentence, the affected ids, and what
    ``loopwise doctor --repair`` does about it (None: it cannot repair it)."""

    code: str
    message: str
    ids: tuple[str, ...] = ()
    repair: str | None = None


def _ids(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(sorted({str(v) for v in values}))


def parse_state(raw: str | bytes | None, where: str = "state.json") -> list[Finding]:
    """Findings about the text of ``state.json`` (None: there is none, which is fine)."""
    if raw is None:
        return []
    fix = "rebuild it from the checkpoints (the damaged file is kept aside)"
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return [Finding("state-unreadable", f"{where} is not valid JSON ({err})", (), fix)]
    try:
        CampaignState.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        return [Finding("state-invalid", f"{where} is not a campaign state ({problems})", (), fix)]
    return []


def rebuild_state(
    checkpoints: Mapping[int, Mapping[str, Any]], *, project_id: int | None = None
) -> CampaignState:
    """The state the checkpoints imply: the highest cycle with a checkpoint at its last
    stage, the history from the ``trained`` checkpoints' rows, the decision and the open
    batch of that cycle. A campaign with no checkpoint is new."""
    done = {int(k): v for k, v in checkpoints.items() if v}
    if not done:
        return CampaignState(project_id=project_id)
    k = max(done)
    last = done[k]
    history = [
        done[c]["trained"]["row"] for c in sorted(done) if "row" in (done[c].get("trained") or {})
    ]
    fields: dict[str, Any] = {"cycle": k, "history": history, "project_id": project_id}
    decided = last.get("decided")
    if decided:
        fields["decision"] = dict(decided)
    if "dispatched" in last:
        batch = (last.get("selected") or {}).get("batch") or []
        items = [str(b["item_id"]) for b in batch] or sorted(last["dispatched"].get("task_ids", {}))
        fields.update(stage=Stage.WAITING, open_batch=items)
    elif "selected" in last:
        fields["stage"] = Stage.SELECTED
    elif decided:
        stop = bool(decided.get("stop"))
        fields.update(stage=Stage.STOPPED if stop else Stage.DECIDED, stopped=stop)
    else:
        fields["stage"] = Stage.TRAINED
    return CampaignState.model_validate({**fields, "updated_at": now_iso()})


def state_vs_checkpoints(
    state: CampaignState, checkpoints: Mapping[int, Iterable[str]]
) -> list[Finding]:
    """The stage the state claims needs the cycle's checkpoints; each cycle in the
    history needs its ``trained`` checkpoint."""
    k = state.cycle
    have = {int(c): set(names) for c, names in checkpoints.items()}
    needed = _NEEDED[state.stage]
    if k <= 0:  # the cold start trains nothing and decides nothing
        needed = tuple(n for n in needed if n not in ("trained", "decided"))
    missing = [n for n in needed if n not in have.get(k, set())]
    out = []
    if missing:
        out.append(
            Finding(
                "state-without-checkpoint",
                f"state.json says cycle {k} is {state.stage.value}, but cycles/{k:04d}/ "
                f"has no {', '.join(f'{n}.json' for n in missing)}",
                tuple(f"cycles/{k:04d}/{n}.json" for n in missing),
            )
        )
    untrained = [h["cycle"] for h in state.history if "trained" not in have.get(h["cycle"], set())]
    if untrained:
        out.append(
            Finding(
                "history-without-checkpoint",
                f"the history has {len(untrained)} cycle(s) with no trained checkpoint",
                _ids(f"cycles/{c:04d}/trained.json" for c in untrained),
            )
        )
    return out


def _sent(dispatch: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in dispatch if r.get("event") == "sent"]


def labels_outside_dispatch(
    labels: Iterable[Mapping[str, Any]], dispatch: Iterable[Mapping[str, Any]]
) -> list[Finding]:
    """Every labeled item was sent to Label Studio (has a ``sent`` receipt)."""
    sent = {str(r["item_id"]) for r in _sent(dispatch)}
    extra = _ids(str(r["item_id"]) for r in labels if str(r["item_id"]) not in sent)
    if not extra:
        return []
    return [
        Finding(
            "label-not-dispatched",
            f"{len(extra)} labeled item(s) were never dispatched (no sent receipt)",
            extra,
        )
    ]


def receipt_conflicts(dispatch: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """No item has ``sent`` receipts for two tasks, and no task receipts two items."""
    tasks_of: dict[str, set[int]] = defaultdict(set)
    items_of: dict[int, set[str]] = defaultdict(set)
    for r in _sent(dispatch):
        tasks_of[str(r["item_id"])].add(int(r["task_id"]))
        items_of[int(r["task_id"])].add(str(r["item_id"]))
    out = []
    twice = _ids(i for i, t in tasks_of.items() if len(t) > 1)
    if twice:
        out.append(
            Finding("item-sent-twice", f"{len(twice)} item(s) have receipts for two tasks", twice)
        )
    shared = _ids(t for t, i in items_of.items() if len(i) > 1)
    if shared:
        out.append(
            Finding("task-two-items", f"{len(shared)} task(s) are receipted for two items", shared)
        )
    return out


def receipts_vs_tasks(
    dispatch: Iterable[Mapping[str, Any]], tasks: Sequence[Mapping[str, Any]]
) -> list[Finding]:
    """Every ``sent`` receipt's task exists in the project, every task of the project
    (with a ``data.item_id``: tasks without one are not Loopwise's) has a receipt, and no
    item is on the server twice. ``tasks``: ``{"id", "item_id"}`` per task."""
    sent = {str(r["item_id"]): int(r["task_id"]) for r in _sent(dispatch)}
    on_server = {int(t["id"]) for t in tasks}
    per_item: dict[str, list[int]] = defaultdict(list)
    for t in tasks:
        if t.get("item_id") is not None:
            per_item[str(t["item_id"])].append(int(t["id"]))
    out = []
    gone = _ids(f"{i}→{t}" for i, t in sent.items() if t not in on_server)
    if gone:
        out.append(
            Finding(
                "receipt-without-task",
                f"{len(gone)} receipt(s) name a task the project does not have",
                gone,
            )
        )
    unreceipted = _ids(i for i in per_item if i not in sent)
    if unreceipted:
        out.append(
            Finding(
                "task-without-receipt",
                f"{len(unreceipted)} task(s) of the project have no receipt in the dispatch ledger",
                unreceipted,
                "record their receipts (appended to the dispatch ledger)",
            )
        )
    doubled = _ids(i for i, ts in per_item.items() if len(ts) > 1)
    if doubled:
        out.append(
            Finding(
                "item-on-server-twice",
                f"{len(doubled)} item(s) have two tasks in the project",
                doubled,
            )
        )
    return out


def missing_receipts(
    dispatch: Iterable[Mapping[str, Any]], tasks: Sequence[Mapping[str, Any]], cycle: int
) -> list[dict[str, Any]]:
    """The ``sent`` records that receipt the project's unreceipted tasks (the lowest task
    id of an item that is there twice), as a dispatch reconciles them."""
    sent = {str(r["item_id"]) for r in _sent(dispatch)}
    found: dict[str, int] = {}
    for t in tasks:
        item = t.get("item_id")
        if item is not None and str(item) not in sent:
            found[str(item)] = min(int(t["id"]), found.get(str(item), int(t["id"])))
    return [
        {
            "event": "sent",
            "item_id": i,
            "task_id": t,
            "cycle": cycle,
            "reconciled": True,
            "by": "doctor",
        }
        for i, t in sorted(found.items())
    ]


def annotations_behind(
    annotations: Iterable[Mapping[str, Any]], server_count: int
) -> list[Finding]:
    """The annotations ledger holds at least as many annotations as Label Studio counts."""
    known = len({r["annotation_id"] for r in annotations})
    if server_count <= known:
        return []
    return [
        Finding(
            "annotations-not-collected",
            f"Label Studio counts {server_count} annotation(s), the ledger holds {known}",
            (),
            "collect them (appended to the annotations ledger)",
        )
    ]


def mlflow_findings(
    runs: Sequence[Mapping[str, Any]],
    versions: Sequence[Mapping[str, Any]],
    champion: str | None,
    logged: Mapping[int, str],
) -> list[Finding]:
    """At most one MLflow run per cycle, one model version per run, the champion alias set
    (once a version exists) on one of them, and the run of every ``trained`` checkpoint.

    ``runs``: ``{"run_id", "cycle"}``; ``versions``: ``{"version", "run_id"}``;
    ``logged``: cycle → the run id its ``trained`` checkpoint names."""
    per_cycle, per_run = defaultdict(list), defaultdict(list)
    for r in runs:
        per_cycle[r["cycle"]].append(r["run_id"])
    for v in versions:
        per_run[v["run_id"]].append(str(v["version"]))
    out = []
    for code, groups, what in (
        ("mlflow-runs-per-cycle", per_cycle, "cycle(s) have more than one MLflow run"),
        ("mlflow-versions-per-run", per_run, "run(s) registered more than one model version"),
    ):
        many = {k: v for k, v in groups.items() if len(v) > 1}
        if many:
            out.append(
                Finding(code, f"{len(many)} {what}", _ids(x for v in many.values() for x in v))
            )
    known = {str(v["version"]) for v in versions}
    if known and champion not in known:
        out.append(
            Finding("champion-missing", "no registered model version has the champion alias")
        )
    run_ids = {r["run_id"] for r in runs}
    lost = _ids(f"cycle {c}: {rid}" for c, rid in logged.items() if rid not in run_ids)
    if lost:
        out.append(
            Finding(
                "mlflow-run-missing",
                f"{len(lost)} trained cycle(s) name a run MLflow does not have",
                lost,
            )
        )
    return out


def lapsed_lease(key: str, record: Mapping[str, Any] | None, now: dt.datetime) -> list[Finding]:
    """The campaign's latest lease is released or still running, not lapsed (a run died
    holding it)."""
    if not record or record.get("released"):
        return []
    expires = dt.datetime.fromisoformat(record["expires_at"])
    if expires > now:
        return []
    return [
        Finding(
            "lease-lapsed",
            f"{key}, taken by {record.get('holder')} at {record.get('acquired_at')}, lapsed at "
            f"{record['expires_at']} and was never released (its run died)",
            (key,),
            "release it",
        )
    ]


def waiting_next_runs(runs: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """At most one scheduled ``next-cycle`` run of the campaign's deployment waits.

    ``runs``: ``{"id", "name", "created"}`` (ISO time) of each waiting run; the finding's
    ids are the runs other than the newest."""
    if len(runs) <= 1:
        return []
    ordered = sorted(runs, key=lambda r: (str(r["created"]), str(r["id"])))
    newest = ordered[-1]
    return [
        Finding(
            "next-runs-waiting",
            f"{len(runs)} next-cycle runs of the campaign wait; only one should",
            tuple(str(r["id"]) for r in ordered[:-1]),
            f"cancel all but the newest ({newest.get('name') or newest['id']})",
        )
    ]
