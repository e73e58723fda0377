"""``loopwise doctor``: read a campaign's store and the services it drives, check the
invariants of :mod:`loopwise.invariants`, and repair what can be rebuilt.

Every service is optional: one that is not configured is noted as not checked, one that
does not answer is a finding, never a crash. A repair only appends to a ledger, replaces
``state.json`` atomically (the damaged file kept aside under ``doctor/``), releases a
lapsed lease, or cancels surplus scheduled runs; it holds the campaign's lease while it
works, so it never races a run.

These are plain functions, not Prefect tasks: the command runs outside any flow and
must work with no Prefect server at all.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopwise import invariants as inv
from loopwise.config import CampaignConfig
from loopwise.invariants import Finding
from loopwise.state import CampaignState
from storage.campaign import (
    LEASES,
    STATE,
    Ledgers,
    acquire_lease,
    read_state,
    write_state,
)
from storage.store import Store
from tasks.labelstudio import LabelStudioTarget
from tasks.preflight import answers
from tasks.schedule import waiting_next_runs

__all__ = ["Examination", "examine", "repair"]

_CHECKPOINT_KEY = re.compile(r"^cycles/(\d+)/([a-z_]+)\.json$")
_TIMEOUT = 5.0


@dataclass
class Examination:
    """What ``doctor`` found, what it could not check, and what a repair needs."""

    findings: list[Finding] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    state: CampaignState | None = None
    checkpoints: dict[int, dict[str, Any]] = field(default_factory=dict)
    project_id: int | None = None
    receipts: list[dict[str, Any]] = field(default_factory=list)  # missing ``sent`` records
    lease: tuple[str, dict[str, Any]] | None = None  # (key, record) of a lapsed lease
    stale_runs: list[str] = field(default_factory=list)  # next-cycle runs to cancel

    def found(self, code: str) -> bool:
        """Whether a finding of ``code`` was made."""
        return any(f.code == code for f in self.findings)


def _answers(url: str) -> str | None:
    """None if ``url`` answers below HTTP 500 within the timeout, else why not."""
    return answers(url, _TIMEOUT)


def _down(service: str, where: str, why: Any) -> Finding:
    return Finding("service-down", f"{service} at {where} could not be checked: {why}", (service,))


# ---------------------------------------------------------------- the store


def _read_state(store: Store, exam: Examination) -> None:
    """The state's text checked; the state read when it is sound."""
    try:
        raw = store.read_bytes(STATE)
    except FileNotFoundError:
        raw = None
    found = inv.parse_state(raw, store.uri(STATE))
    exam.findings += found
    exam.state = None if found else read_state(store)


def _read_checkpoints(store: Store, exam: Examination) -> None:
    for key in store.list("cycles"):
        m = _CHECKPOINT_KEY.match(key)
        if m is None:
            continue
        try:
            value = store.read_json(key)
        except ValueError as err:
            exam.findings.append(Finding("checkpoint-unreadable", str(err), (key,)))
            continue
        exam.checkpoints.setdefault(int(m.group(1)), {})[m.group(2)] = value


def _ledger_project(store: Store, state: CampaignState | None) -> int | None:
    """The project the ledgers belong to: the state's, else the newest in the store."""
    if state is not None and state.project_id is not None:
        return int(state.project_id)
    ids = [
        int(k.rsplit("/", 1)[-1].split(".")[0])
        for k in store.list("dispatch")
        if k.endswith(".jsonl")
    ]
    return max(ids) if ids else None


def _check_ledgers(ledgers: Ledgers, exam: Examination) -> dict[str, list[dict[str, Any]]]:
    """The ledgers' own invariants; the rows read (empty for an unreadable ledger)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for name in ("dispatch", "labels", "annotations"):
        try:
            rows[name] = ledgers.read(name)
        except ValueError as err:
            exam.findings.append(Finding("ledger-unreadable", str(err), (ledgers.key(name),)))
            rows[name] = []
    exam.findings += inv.labels_outside_dispatch(rows["labels"], rows["dispatch"])
    exam.findings += inv.receipt_conflicts(rows["dispatch"])
    return rows


def _latest_lease(store: Store, exam: Examination) -> None:
    keys = sorted(k for k in store.list(LEASES) if k.endswith(".json"))
    if not keys:
        return
    try:
        record = store.read_json(keys[-1])
    except ValueError as err:
        exam.findings.append(Finding("lease-unreadable", str(err), (keys[-1],)))
        return
    found = inv.lapsed_lease(keys[-1], record, dt.datetime.now(dt.UTC))
    exam.findings += found
    if found:
        exam.lease = (keys[-1], record)


def _check_store(store: Store, exam: Examination) -> dict[str, list[dict[str, Any]]]:
    _read_state(store, exam)
    _read_checkpoints(store, exam)
    if exam.state is not None:
        names = {k: set(v) for k, v in exam.checkpoints.items()}
        exam.findings += inv.state_vs_checkpoints(exam.state, names)
    _latest_lease(store, exam)
    exam.project_id = _ledger_project(store, exam.state)
    if exam.project_id is None:
        return {"dispatch": [], "labels": [], "annotations": []}
    return _check_ledgers(Ledgers(store, exam.project_id), exam)


# ---------------------------------------------------------------- the services


def _check_labelstudio(
    cfg: CampaignConfig, target: LabelStudioTarget, rows: dict[str, list], exam: Examination
) -> None:
    """Receipts against the project's tasks; the annotation ledger against the server's count."""
    if not target.token:
        exam.unchecked.append(f"Label Studio (no token in ${cfg.labelstudio.token_env})")
        return
    if exam.project_id is None:
        exam.unchecked.append("Label Studio (the campaign has no project yet)")
        return
    url = target.url.rstrip("/")
    if (why := _answers(f"{url}/health")) is not None:
        exam.findings.append(_down("Label Studio", url, why))
        return
    try:
        client = target.client()
        tasks = [
            {"id": int(t.id), "item_id": (t.data or {}).get("item_id")}
            for t in client.tasks.list(project=exam.project_id, fields="task_only", page_size=1000)
        ]
        project = client.projects.get(id=exam.project_id)
    except Exception as err:  # an SDK or HTTP error: the service's problem, reported as one
        exam.findings.append(_down("Label Studio", url, f"{type(err).__name__}: {err}"))
        return
    exam.findings += inv.receipts_vs_tasks(rows["dispatch"], tasks)
    cycle = max(exam.state.cycle if exam.state else max(exam.checkpoints, default=0), 0)
    exam.receipts = inv.missing_receipts(rows["dispatch"], tasks, cycle)
    count = (project.total_annotations_number or 0) + (project.skipped_annotations_number or 0)
    exam.findings += inv.annotations_behind(rows["annotations"], count)


def _sqlite_missing(uri: str) -> bool:
    return uri.startswith("sqlite:") and not Path(uri.removeprefix("sqlite:///")).exists()


def _mlflow_records(cfg: CampaignConfig) -> tuple[list[dict], list[dict], str | None]:
    """(runs, model versions, champion version) of the campaign, read through the client."""
    import mlflow
    from mlflow.exceptions import MlflowException

    for name, value in (
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),
    ):
        os.environ.setdefault(name, value)
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    exp = client.get_experiment_by_name(cfg.experiment)
    found = client.search_runs([exp.experiment_id], max_results=10_000) if exp else []
    runs = [{"run_id": r.info.run_id, "cycle": r.data.tags.get("loopwise.cycle")} for r in found]
    model = f"loopwise-{cfg.name}"
    versions = [
        {"version": str(v.version), "run_id": v.run_id}
        for v in client.search_model_versions(f"name='{model}'")
    ]
    try:
        champion = str(client.get_model_version_by_alias(model, "champion").version)
    except MlflowException:
        champion = None
    return runs, versions, champion


def _check_mlflow(cfg: CampaignConfig, exam: Examination) -> None:
    uri = cfg.mlflow.tracking_uri
    logged = {
        k: c["trained"]["logged"]["run_id"]
        for k, c in exam.checkpoints.items()
        if ((c.get("trained") or {}).get("logged") or {}).get("run_id")
    }
    if _sqlite_missing(uri):
        exam.findings += inv.mlflow_findings([], [], None, logged)
        return
    if uri.startswith(("http://", "https://")) and (why := _answers(f"{uri.rstrip('/')}/health")):
        exam.findings.append(_down("MLflow", uri, why))
        return
    try:
        runs, versions, champion = _mlflow_records(cfg)
    except Exception as err:  # the tracking store's problem, reported as one
        exam.findings.append(_down("MLflow", uri, f"{type(err).__name__}: {err}"))
        return
    exam.findings += inv.mlflow_findings(runs, versions, champion, logged)


@contextmanager
def _prefect_api() -> Iterator[str | None]:
    """The Prefect API to read: ``PREFECT_API_URL``, else the local server if it answers
    (never started here), else None."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    from devstack.prefect_server import HOST, default_port

    local = f"http://{HOST}:{default_port()}/api"
    if _answers(f"{local}/health") is not None:
        yield None
        return
    with temporary_settings(updates={PREFECT_API_URL: local}):
        yield local


def _waiting_runs(deployment: str) -> list[dict[str, Any]] | None:
    """The scheduled next-cycle runs of ``deployment`` (None: no such deployment)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            dep = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return None
    runs = waiting_next_runs(dep.id)
    return [{"id": str(r.id), "name": r.name, "created": r.created.isoformat()} for r in runs]


def _check_prefect(cfg: CampaignConfig, exam: Examination) -> None:
    with _prefect_api() as api:
        if api is None:
            exam.unchecked.append("Prefect (no PREFECT_API_URL and no local server running)")
            return
        if (why := _answers(f"{api.rstrip('/')}/health")) is not None:
            exam.findings.append(_down("Prefect", api, why))
            return
        try:
            runs = _waiting_runs(cfg.deployment)
        except Exception as err:  # the server's problem, reported as one
            exam.findings.append(_down("Prefect", api, f"{type(err).__name__}: {err}"))
            return
    if runs is None:
        exam.unchecked.append(f"Prefect runs (no deployment {cfg.deployment})")
        return
    found = inv.waiting_next_runs(runs)
    exam.findings += found
    exam.stale_runs = [i for f in found for i in f.ids]


def examine(cfg: CampaignConfig, store: Store, token: str = "") -> Examination:
    """Every check on the campaign: its store, then Label Studio, MLflow and Prefect."""
    exam = Examination()
    try:
        store.probe(_TIMEOUT)
    except OSError as err:
        exam.findings.append(_down("the store", store.uri(""), err))
        return exam
    rows = _check_store(store, exam)
    _check_labelstudio(cfg, LabelStudioTarget(cfg.labelstudio.url, token), rows, exam)
    _check_mlflow(cfg, exam)
    _check_prefect(cfg, exam)
    return exam


# ---------------------------------------------------------------- repairs


def _release(store: Store, key: str, record: dict[str, Any]) -> str:
    now = dt.datetime.now(dt.UTC).isoformat()
    store.write_json(
        key, {**record, "released": True, "released_at": now, "released_by": "loopwise doctor"}
    )
    return f"released the lapsed lease {key} of {record.get('holder')}"


def _rebuild_state(store: Store, exam: Examination) -> str:
    """Keep the damaged state.json aside, then replace it by the one the checkpoints imply."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    aside = f"doctor/state-{stamp}.json.bad"
    store.write_bytes(aside, store.read_bytes(STATE))
    state = inv.rebuild_state(exam.checkpoints, project_id=exam.project_id)
    write_state(store, state)
    return (
        f"rebuilt state.json (cycle {state.cycle}, {state.stage.value}); the damaged one is {aside}"
    )


def _cancel(run_ids: list[str]) -> str:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with _prefect_api(), get_client(sync_client=True) as client:
        for rid in run_ids:
            client.set_flow_run_state(
                rid,
                Cancelled(message="cancelled by loopwise doctor: a newer next run waits"),
                force=True,
            )
    return f"cancelled {len(run_ids)} surplus next-cycle run(s)"


def _store_repairs(cfg: CampaignConfig, store: Store, exam: Examination, token: str) -> list[str]:
    done = []
    if exam.found("state-unreadable") or exam.found("state-invalid"):
        done.append(_rebuild_state(store, exam))
    if exam.receipts and exam.project_id is not None:
        n = Ledgers(store, exam.project_id).append("dispatch", exam.receipts)
        done.append(f"recorded {n} missing receipt(s) in the dispatch ledger")
    if exam.found("annotations-not-collected") and exam.project_id is not None:
        from tasks.labelstudio import collect_annotations

        target = LabelStudioTarget(cfg.labelstudio.url, token, exam.project_id)
        got = collect_annotations.fn(target, Ledgers(store, exam.project_id), cfg.labels)
        done.append(f"collected {got['new']} annotation(s) into the annotations ledger")
    return done


def repair(cfg: CampaignConfig, store: Store, exam: Examination, token: str = "") -> list[str]:
    """Repair what ``exam`` found that can be repaired, holding the campaign's lease; one
    line per thing done. A campaign held by a running run is left alone (CampaignBusy)."""
    done = []
    if exam.lease is not None:
        done.append(_release(store, *exam.lease))
    holder = f"loopwise doctor (process {os.getpid()} on {socket.gethostname()})"
    lease = acquire_lease(store, holder, cfg.schedule.lease_seconds)
    try:
        done += _store_repairs(cfg, store, exam, token)
        if exam.stale_runs:
            done.append(_cancel(exam.stale_runs))
    finally:
        lease.release()
    return done
