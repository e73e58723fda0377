"""The cycle flow end to end: a real Label Studio, Prefect's test harness, MLflow on SQLite.

A small synthetic campaign runs from its cold start to a stop decision while
simulated annotators answer in Label Studio between runs. Crashes are injected
after the side effect of each stage, then the run is repeated: no task is sent
twice, no annotation is lost, no cycle is logged twice, and no extra next run is
created. The campaign runs once (the ``campaign`` fixture); each test checks one
claim on what it left behind. Shorter scenarios follow it.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_classification

from devstack.annotators import AnnotatorProfile, simulate_annotators
from storage.campaign import Ledgers
from storage.store import Store

pytestmark = pytest.mark.integration

LABELS = ["ant", "bee", "cat", "dog"]
PROFILES = [
    AnnotatorProfile(name="ann", accuracy=0.97, latency=1.0),
    AnnotatorProfile(name="bob", accuracy=0.93, latency=1.0),
    AnnotatorProfile(name="cyd", accuracy=0.6, latency=1.0),
]
_names = itertools.count()


def _write_campaign(tmp: Path, label_studio, *, name: str, **extra) -> Path:
    X, y = make_classification(
        n_samples=900,
        n_features=6,
        n_informative=5,
        n_redundant=0,
        n_classes=4,
        n_clusters_per_class=1,
        class_sep=1.6,
        random_state=7,
    )
    df = pd.DataFrame(X.round(4), columns=[f"f{i}" for i in range(6)])
    df.insert(0, "uid", [f"u{i:04d}" for i in range(len(df))])
    df["truth"] = np.asarray(LABELS)[y]
    bad = df.iloc[:3].copy()  # planted bad rows: out of range, missing, not a number
    bad["uid"] = ["bad-range", "bad-missing", "bad-text"]
    bad = bad.astype({"f2": object})
    bad.loc[bad.index[0], "f1"] = 999.0
    bad.loc[bad.index[1], "f3"] = None
    bad.loc[bad.index[2], "f2"] = "oops"
    pd.concat([df, bad]).to_csv(tmp / "pool.csv", index=False)
    suite = {
        "name": "synthetic_pool",
        "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "item_id"}},
            *(
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": f"f{i}"}}
                for i in range(6)
            ),
            *(
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": f"f{i}", "min_value": -50, "max_value": 50},
                }
                for i in range(6)
            ),
        ],
    }
    (tmp / "suite.json").write_text(json.dumps(suite))
    cfg = {
        "name": name,
        "data": {
            "source": str(tmp / "pool.csv"),
            "id_column": "uid",
            "label_column": "truth",
            "holdout": {"fraction": 0.3},
            "validation_suite": str(tmp / "suite.json"),
        },
        "labels": LABELS,
        "batch_size": 20,
        "cold_start_size": 16,
        "annotators_per_item": 2,
        "max_annotations_per_item": 3,
        "budget": {"labels": 96, "cost_per_annotation": 0.1},
        "stopping": {"kappa_threshold": None, "plateau_epsilon": 0.0001, "plateau_window": 5},
        "stop_set_size": 200,
        "labelstudio": {"url": label_studio.url, "token_env": "LOOPWISE_TEST_LS_TOKEN"},
        "storage_root": str(tmp / "store"),
        "mlflow": {
            "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
            "artifact_location": (tmp / "mlartifacts").as_uri(),
        },
        "schedule": {"recheck_seconds": 3600},
        **extra,
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _annotate(label_studio, campaign: Path, seed: int, items: list[str] | None = None) -> None:
    from loopwise.config import load_campaign
    from tasks.labelstudio import connect

    cfg = load_campaign(campaign)
    pool = pd.read_csv(cfg.data.source)
    truth = dict(zip(pool["uid"].astype(str), pool["truth"], strict=True))
    client = connect(label_studio.url, label_studio.token)
    (project,) = [
        p for p in client.projects.list(title=cfg.project_title) if p.title == cfg.project_title
    ]
    simulate_annotators(
        label_studio.url,
        label_studio.token,
        int(project.id),
        truth,
        PROFILES,
        labels=LABELS,
        data_kind="tabular",
        items=items,
        random_state=seed,
    )


def _server_items(ls_client, title: str) -> list[str]:
    (project,) = [p for p in ls_client.projects.list(title=title) if p.title == title]
    tasks = ls_client.tasks.list(project=project.id, fields="task_only", page_size=1000)
    return [t.data["item_id"] for t in tasks]


def _next_runs(deployment_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


def _create_deployment(name: str):
    from prefect.client.orchestration import get_client
    from prefect.utilities.callables import parameter_schema

    from flows.cycle import cycle

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("cycle")
        return client.create_deployment(
            flow_id=flow_id,
            name=name,
            entrypoint="flows/cycle.py:cycle",
            parameter_openapi_schema=parameter_schema(cycle).model_dump_for_openapi(),
            enforce_parameter_schema=True,
        )


# ---------------------------------------------------------------------------------------------
# The campaign: cold start → a crash injected at each stage, each followed by a rerun → stop.
# It runs once (module fixture); the tests below each check one claim on what it left behind.

# A crash point per stage, in the order runs reach them: (module, attribute, how). "after"
# lets the call do its work and then dies (the hardest place for a crash); "instead" fails
# without doing the work. A crash stays armed until a run reaches it; the run after a crash
# is the rerun.
CRASH_POINTS = [
    # cold start: tasks imported, receipt not kept
    ("flows.stages.dispatch", "dispatch_batch", "after"),
    ("flows.stages.advance", "consensus_qc", "after"),
    ("flows.stages.train", "log_cycle", "after"),  # the MLflow run exists, no checkpoint
    ("flows.stages.decide", "stopping_decision", "after"),
    ("flows.stages.select", "select_batch", "after"),
    ("flows.stages.dispatch", "dispatch_batch", "after"),
    # the next run exists, the state does not know
    ("flows.stages.dispatch", "schedule_next_run", "after"),
    ("flows.stages.decide", "write_report", "instead"),  # stopped, and the final report failed
]
MAX_RUNS = 40
PLANTED = ["bad-missing", "bad-range", "bad-text"]
COST_PER_ANNOTATION = 0.1  # budget.cost_per_annotation in _write_campaign
STOP_RULES = ("label_budget", "plateau", "marginal_gain", "pool_exhausted")


@dataclass
class RunRecord:
    """One run of the cycle flow and what the servers and the store held right after it."""

    crash: str | None  # "module.attribute" of the injected crash it died of, else None
    out: dict[str, Any] | None  # what the flow returned (None when it crashed)
    items: list[str]  # data.item_id of every task of the project in Label Studio
    annotation_ids: set[int]  # annotation ids in the campaign's annotation ledger


@dataclass
class Campaign:
    """Everything the campaign left behind, read once after its last run."""

    name: str
    path: Path
    runs: list[RunRecord]
    unreached: list[str]  # crash points no run reached
    state: dict[str, Any]
    quarantined: list[dict[str, Any]]
    items: list[str]  # the project's tasks in Label Studio at the end
    labels: list[dict[str, Any]]  # the labels ledger
    annotations: dict[int, dict[str, Any]]  # annotation id → its latest ledger row
    batches: dict[int, list[dict[str, Any]]]  # cycle → the selected batch
    report: dict[str, Any] | None
    page: str | None  # reports/report.html
    mlflow_runs: list[Any]
    champion: Any  # the model version with the "champion" alias, or None
    last_run_artifacts: list[str]  # artifact paths under report/ of the last cycle's run
    next_runs: list[Any]  # flow runs created for the campaign's deployment
    report_artifacts: list[Any]  # Prefect artifacts with key <name>-report
    cli_status: Any
    cli_report: Any
    cli_report_page: str | None
    log_lines: list[str]  # what the flow and task runs printed or logged

    @property
    def results(self) -> list[dict[str, Any]]:
        """The outputs of the runs that did not crash, in order."""
        return [r.out for r in self.runs if r.out is not None]

    @property
    def trained(self) -> list[int]:
        """The cycles in the campaign's history."""
        return [h["cycle"] for h in self.state["history"]]

    @property
    def paid(self) -> int:
        """Annotations that cost money: the submitted ones, each counted once."""
        return sum(a["status"] in ("accepted", "rejected") for a in self.annotations.values())

    def expected_control_estimates(self) -> list[tuple[int, int, int]]:
        """(cycle, n, correct) of the labeled control items that a trained model guessed."""
        truth = {r["item_id"]: r["label"] for r in self.labels}
        expected = []
        for k, batch in sorted(self.batches.items()):
            pairs = [
                (b["prediction_label"], truth[b["item_id"]])
                for b in batch
                if b["control"] and b["prediction_label"] and b["item_id"] in truth
            ]
            if pairs:
                expected.append((k, len(pairs), sum(p == t for p, t in pairs)))
        return expected


class _Crash(RuntimeError):
    pass


def _arm(mp: pytest.MonkeyPatch, point: tuple[str, str, str]) -> None:
    """Replace ``module.attribute`` by a version that crashes after (or instead of) its work."""
    module_name, name, how = point
    module = importlib.import_module(module_name)
    real = getattr(module, name)

    def crash_after(*args, **kwargs):
        real(*args, **kwargs)
        raise _Crash(f"injected crash after {name}")

    def fail_instead(*args, **kwargs):
        raise _Crash(f"injected failure of {name}")

    mp.setattr(module, name, crash_after if how == "after" else fail_instead)


class _Lines(logging.Handler):
    """Keeps the messages of the Prefect run loggers (the flows print through them)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _project_id(ls_client, title: str) -> int | None:
    found = [p for p in ls_client.projects.list(title=title) if p.title == title]
    return int(found[0].id) if found else None


def _observe(ls_client, store: Store, title: str, crash: str | None, out) -> RunRecord:
    pid = _project_id(ls_client, title)
    if pid is None:
        return RunRecord(crash, out, [], set())
    ledger = store.read_jsonl(f"annotations/{pid}.jsonl")
    return RunRecord(
        crash, out, _server_items(ls_client, title), {r["annotation_id"] for r in ledger}
    )


def _run_through_crashes(
    label_studio, ls_client, path: Path, store: Store
) -> tuple[list[RunRecord], list[str], list[str]]:
    """Run the cycle until it stops, arming each crash point in turn; annotate between runs.

    Returns the runs, the crash points no run reached, and the run loggers' messages.
    """
    from flows.cycle import cycle
    from loopwise.config import load_campaign

    title = load_campaign(path).project_title
    pending = list(CRASH_POINTS)
    runs: list[RunRecord] = []
    lines = _Lines()
    run_loggers = [logging.getLogger(n) for n in ("prefect.flow_runs", "prefect.task_runs")]
    for lg in run_loggers:
        lg.addHandler(lines)
    try:
        for _ in range(MAX_RUNS):
            point = pending[0] if pending else None
            with pytest.MonkeyPatch.context() as inject:
                if point:
                    _arm(inject, point)
                try:
                    out = cycle(campaign=str(path))
                except _Crash:
                    out = None
            crash = ".".join(pending.pop(0)[:2]) if out is None else None
            runs.append(_observe(ls_client, store, title, crash, out))
            if out is None:
                continue
            if out["status"] == "stopped":
                break
            _annotate(label_studio, path, seed=sum(r.out is not None for r in runs))
    finally:
        for lg in run_loggers:
            lg.removeHandler(lines)
    return runs, [".".join(p[:2]) for p in pending], lines.lines


@pytest.fixture(scope="module")
def campaign(harness, label_studio, ls_client, tmp_path_factory) -> Iterator[Campaign]:
    """Runs the campaign once to its stop, through every crash point; returns what it left."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from typer.testing import CliRunner

    from flows.cli import app
    from loopwise.config import load_campaign

    tmp = tmp_path_factory.mktemp("campaign")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
        name = f"flowtest-{next(_names)}"
        path = _write_campaign(tmp, label_studio, name=name)
        cfg = load_campaign(path)
        deployment_id = _create_deployment(name)
        store = Store(f"{cfg.storage_root}/{name}")
        title = cfg.project_title

        runs, unreached, log_lines = _run_through_crashes(label_studio, ls_client, path, store)
        state = store.read_json("state.json")
        pid = _project_id(ls_client, title)
        annotations: dict[int, dict[str, Any]] = {}
        for row in store.read_jsonl(f"annotations/{pid}.jsonl"):
            annotations[row["annotation_id"]] = row  # the latest version of each
        batches = {
            k: store.read_json(f"cycles/{k:04d}/selected.json")["batch"]
            for k in range(state["cycle"] + 1)
            if store.exists(f"cycles/{k:04d}/selected.json")
        }
        page_path = store.path("reports/report.html")
        report = store.read_json("reports/report.json")
        quarantined = store.read_jsonl("quarantine/pool.jsonl")
        labels = store.read_jsonl(f"labels/{pid}.jsonl")
        page = page_path.read_text() if page_path.exists() else None
        items = _server_items(ls_client, title) if pid is not None else []

        client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
        exp = client.get_experiment_by_name(cfg.experiment)
        mlflow_runs = client.search_runs([exp.experiment_id]) if exp else []
        try:
            champion = client.get_model_version_by_alias(f"loopwise-{name}", "champion")
        except MlflowException:
            champion = None
        last_run_artifacts = []
        if mlflow_runs:
            last = max(mlflow_runs, key=lambda r: int(r.data.tags["loopwise.cycle"]))
            last_run_artifacts = [a.path for a in client.list_artifacts(last.info.run_id, "report")]
        with get_client(sync_client=True) as pc:
            report_artifacts = pc.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{name}-report"]))
            )

        next_runs = _next_runs(deployment_id)

        # The command line reads the same campaign: status from the store, report on demand
        # (`loopwise report` writes the report again: everything above was read before it).
        cli = CliRunner()
        cli_status = cli.invoke(app, ["status", str(path)])
        cli_report = cli.invoke(app, ["report", str(path), "--output", str(tmp / "r.html")])
        yield Campaign(
            name=name,
            path=path,
            runs=runs,
            unreached=unreached,
            state=state,
            quarantined=quarantined,
            items=items,
            labels=labels,
            annotations=annotations,
            batches=batches,
            report=report,
            page=page,
            mlflow_runs=mlflow_runs,
            champion=champion,
            last_run_artifacts=last_run_artifacts,
            next_runs=next_runs,
            report_artifacts=report_artifacts,
            cli_status=cli_status,
            cli_report=cli_report,
            cli_report_page=(tmp / "r.html").read_text() if (tmp / "r.html").exists() else None,
            log_lines=log_lines,
        )


# --- the runs: crashes, reruns, the stop ------------------------------------------------------


def test_the_campaign_reaches_a_stop_decision(campaign):
    assert campaign.results and campaign.results[-1]["status"] == "stopped", (
        f"no stop decision after {MAX_RUNS} runs: {campaign.results[-3:]}"
    )


def test_every_injected_crash_point_is_reached(campaign):
    crashed = [r.crash for r in campaign.runs if r.crash]
    assert len(crashed) == len(CRASH_POINTS) and not campaign.unreached, (
        f"crash points never reached: {campaign.unreached}"
    )


def test_no_item_is_sent_to_label_studio_twice(campaign):
    twice = [
        (i, r.crash, sorted({x for x in r.items if r.items.count(x) > 1}))
        for i, r in enumerate(campaign.runs)
        if len(r.items) != len(set(r.items))
    ]
    assert not twice, f"items sent twice (run, crash, items): {twice}"


def test_no_annotation_disappears_from_the_ledger(campaign):
    lost = [
        (i, sorted(before.annotation_ids - after.annotation_ids))
        for i, (before, after) in enumerate(itertools.pairwise(campaign.runs), start=1)
        if not before.annotation_ids <= after.annotation_ids
    ]
    assert not lost, f"annotations gone from the ledger after run (run, ids): {lost}"


def test_the_rerun_after_a_crash_after_dispatch_creates_no_task(campaign):
    runs = campaign.runs
    crashed = [i for i, r in enumerate(runs) if r.crash == "flows.stages.dispatch.dispatch_batch"]
    assert len(crashed) == 2, [r.crash for r in runs]
    for i in crashed:
        rerun = next((r for r in runs[i + 1 :] if r.out is not None), None)
        assert rerun is not None, f"no run completed after the crash of run {i}"
        assert sorted(rerun.items) == sorted(runs[i].items), "the rerun created tasks"
        receipt = rerun.out["receipt"]
        assert receipt["created"] == 0 and receipt["already_dispatched"] > 0, receipt


def test_the_stop_is_announced_once_with_its_reason(campaign):
    k, reason = campaign.state["cycle"], campaign.state["decision"]["reason"]
    announced = [line for line in campaign.log_lines if line.startswith(f"cycle {k}: STOP")]
    assert announced == [f"cycle {k}: STOP — {reason}"], announced


def test_a_rerun_past_its_dispatch_says_it_sent_nothing(campaign):
    # the crash after schedule_next_run leaves the dispatch checkpoint: the rerun sends nothing
    said = [line for line in campaign.log_lines if "already dispatched; nothing sent" in line]
    sent = [line for line in campaign.log_lines if "dispatched" in line and "new task" in line]
    assert said, [line for line in campaign.log_lines if "dispatch" in line]
    assert all(" 0 new task" not in line or "already there" in line for line in sent), sent


# --- the campaign state -----------------------------------------------------------------------


def test_the_state_records_the_stop_decision(campaign):
    assert campaign.state["stopped"] and campaign.state["decision"]["stop"]


def test_the_stop_is_made_by_a_known_rule(campaign):
    assert campaign.state["decision"]["rule"] in STOP_RULES


def test_the_history_has_each_trained_cycle_once_in_order(campaign):
    assert campaign.trained == sorted(set(campaign.trained))


def test_at_least_three_cycles_are_trained_before_the_stop(campaign):
    assert len(campaign.trained) >= 3, campaign.trained


# --- data validation --------------------------------------------------------------------------


def test_the_planted_bad_rows_are_quarantined_once_each(campaign):
    assert sorted(r["id"] for r in campaign.quarantined) == PLANTED


def test_every_quarantined_row_has_a_reason(campaign):
    assert all(r["reason"] for r in campaign.quarantined), campaign.quarantined


def test_the_planted_bad_rows_are_never_sent_to_label_studio(campaign):
    assert not set(PLANTED) & set(campaign.items)


# --- labels -----------------------------------------------------------------------------------


def test_each_accepted_item_is_labeled_once(campaign):
    ids = [r["item_id"] for r in campaign.labels]
    assert len(set(ids)) == len(ids)


def test_every_label_is_for_an_item_sent_to_label_studio(campaign):
    assert {r["item_id"] for r in campaign.labels} <= set(campaign.items)


# --- MLflow -----------------------------------------------------------------------------------


def test_exactly_one_mlflow_run_per_trained_cycle(campaign):
    cycles = sorted(int(r.data.tags["loopwise.cycle"]) for r in campaign.mlflow_runs)
    assert cycles == campaign.trained


def test_the_champion_is_the_last_version_the_gate_promoted(campaign):
    assert campaign.champion is not None, "no model version has the champion alias"
    runs = sorted(campaign.mlflow_runs, key=lambda r: int(r.data.tags["loopwise.cycle"]))
    gates = [r.data.tags.get("loopwise.gate") for r in runs]
    assert gates[0] == "first" and set(gates[1:]) <= {"promoted", "challenger"}, gates
    promoted = [r for r, g in zip(runs, gates, strict=True) if g in ("first", "promoted")]
    assert campaign.champion.run_id == promoted[-1].info.run_id
    for r in runs[1:]:  # every comparison logged its numbers (no fallback in this campaign)
        assert "gate_p_value" in r.data.metrics and r.data.tags["loopwise.gate_reason"]


def test_the_report_is_logged_to_the_last_cycle_run(campaign):
    assert "report/report.html" in campaign.last_run_artifacts


# --- next runs --------------------------------------------------------------------------------


def test_next_runs_have_distinct_idempotency_keys(campaign):
    keys = [r.idempotency_key for r in campaign.next_runs]
    assert len(keys) == len(set(keys)), sorted(keys)


def test_one_next_run_per_go_decision_and_none_after_the_stop(campaign):
    go_runs = sum(r["status"] in ("dispatched", "waiting") for r in campaign.results)
    assert len(campaign.next_runs) == go_runs, (
        sorted(r.idempotency_key for r in campaign.next_runs),
        [r["status"] for r in campaign.results],
    )


def test_no_next_run_is_scheduled_for_the_stopped_cycle(campaign):
    k = campaign.state["cycle"]
    after_stop = [r.idempotency_key for r in campaign.next_runs if f":c{k}:" in r.idempotency_key]
    assert not after_stop, after_stop


def test_at_most_one_next_run_of_the_campaign_waits_and_the_others_were_replaced(campaign):
    from prefect.client.schemas.objects import StateType

    kinds = [r.state.type for r in campaign.next_runs]
    assert kinds.count(StateType.SCHEDULED) == 1, kinds
    assert kinds.count(StateType.CANCELLED) == len(kinds) - 1, kinds


def test_next_runs_run_the_same_campaign(campaign):
    params = [r.parameters for r in campaign.next_runs]
    assert params and all(p == {"campaign": str(campaign.path)} for p in params), params


# --- the control share: a tenth of every batch, drawn at random, marked, never scored ---------


def test_each_batch_holds_its_control_share(campaign):
    from loopwise.batch import control_count

    assert campaign.batches, "no selected batch in the store"
    wrong = {
        k: (sum(b["control"] for b in batch), len(batch))
        for k, batch in campaign.batches.items()
        if sum(b["control"] for b in batch) != control_count(len(batch), 0.1)
    }
    assert not wrong, f"cycle: (control items, batch size) {wrong}"


def test_a_batch_of_two_or_more_has_a_control_item_and_a_smaller_one_none(campaign):
    wrong = [
        k
        for k, batch in campaign.batches.items()
        if any(b["control"] for b in batch) != (len(batch) >= 2)
    ]
    assert not wrong, wrong


def test_control_items_are_never_scored(campaign):
    scored = [
        (k, b["item_id"])
        for k, batch in campaign.batches.items()
        for b in batch
        if b["control"] and b["query_score"] is not None
    ]
    assert not scored, scored


def test_items_the_strategy_picked_carry_their_query_score(campaign):
    unscored = [
        (k, b["item_id"])
        for k, batch in campaign.batches.items()
        for b in batch
        if not b["control"] and b["query_score"] is None
    ]
    assert not unscored, unscored


# --- the final report: its numbers are the ledger's -------------------------------------------


@pytest.fixture
def report(campaign) -> dict[str, Any]:
    assert campaign.report is not None, "reports/report.json was not written"
    return campaign.report


@pytest.fixture
def page(campaign) -> str:
    assert campaign.page is not None, "reports/report.html was not written"
    return campaign.page


def test_the_final_report_is_written_for_the_stopped_campaign(report, page):
    assert report["stopped"] is True


def test_the_report_counts_the_accepted_labels(campaign, report):
    assert report["labels"] == len(campaign.labels)


def test_the_report_counts_each_submitted_annotation_once_as_paid(campaign, report):
    assert report["annotations"] == campaign.paid


def test_the_report_spent_is_the_paid_annotations_at_their_price(campaign, report):
    assert report["spent"] == pytest.approx(campaign.paid * COST_PER_ANNOTATION)


def test_the_report_history_is_the_state_history(campaign, report):
    assert report["history"] == campaign.state["history"]


def test_the_report_metric_is_the_last_cycle_holdout_accuracy(campaign, report):
    assert report["metric"] == campaign.state["history"][-1]["metric"]


def test_the_report_lists_every_annotator_who_answered(campaign, report):
    answered_by = {a["annotator"] for a in campaign.annotations.values()}
    assert {a["annotator"] for a in report["annotators"]} == answered_by


def test_the_report_names_annotators_as_their_label_studio_users(report):
    assert {a["name"] for a in report["annotators"]} == {p.name for p in PROFILES}


def test_some_control_item_of_a_trained_model_was_labeled(campaign):
    assert campaign.expected_control_estimates(), "no control item of a trained model was labeled"


def test_the_report_control_estimates_are_the_labeled_control_items(campaign, report):
    got = [(e["cycle"], e["n"], e["correct"]) for e in report["control_estimates"]]
    assert got == campaign.expected_control_estimates()


def test_the_report_has_one_decision_per_trained_cycle(campaign, report):
    assert [d["cycle"] for d in report["decisions"]] == campaign.trained


def test_the_report_last_decision_gives_the_stop_reason(campaign, report):
    assert report["decisions"][-1]["reason"] == campaign.state["decision"]["reason"]


def test_the_report_random_curve_grows_with_the_control_labels(report):
    n_control_labels = [p["labels"] for p in report["random_curve"]]
    assert n_control_labels and n_control_labels == sorted(n_control_labels), n_control_labels


def test_the_report_random_curve_uses_no_more_labels_than_control_items(campaign, report):
    n_control = sum(b["control"] for batch in campaign.batches.values() for b in batch)
    assert max(p["labels"] for p in report["random_curve"]) <= n_control


def test_the_report_page_shows_the_labels_and_the_money_spent(report, page):
    assert f"{report['labels']:,}" in page
    assert f"{report['spent']:,.2f}" in page


def test_the_report_page_is_self_contained_two_charts_no_script(page):
    assert page.count("data:image/png;base64,") == 2
    assert "<script" not in page


def test_the_report_page_names_each_annotator_with_their_id(report, page):
    missing = [a for a in report["annotators"] if f"{a['name']} (#{a['annotator']})" not in page]
    assert not missing, missing


def test_the_report_is_published_as_a_prefect_artifact(campaign, report):
    assert campaign.report_artifacts, f"no {campaign.name}-report artifact"
    assert f"{report['labels']:,}" in campaign.report_artifacts[-1].data


# --- the command line reads the same campaign -------------------------------------------------


def test_loopwise_status_counts_the_accepted_labels(campaign):
    res = campaign.cli_status
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line for line in res.output.splitlines() if line.strip()}
    assert rows["labels"].split()[-1] == str(len(campaign.labels)), res.output


def test_loopwise_status_shows_the_stop_and_the_money_spent(campaign):
    res = campaign.cli_status
    assert res.exit_code == 0, res.output
    assert "STOP" in res.output
    assert f"{campaign.paid * COST_PER_ANNOTATION:,.2f}" in res.output, res.output


def test_loopwise_report_says_how_many_labels(campaign):
    res = campaign.cli_report
    assert res.exit_code == 0, res.output
    assert f"{len(campaign.labels):,} labels" in res.output, res.output


def test_loopwise_report_writes_a_page_with_two_charts(campaign):
    assert campaign.cli_report.exit_code == 0, campaign.cli_report.output
    assert campaign.cli_report_page is not None
    assert campaign.cli_report_page.count("data:image/png;base64,") == 2


def _pid(ls_client, cfg) -> int:
    (project,) = [
        p for p in ls_client.projects.list(title=cfg.project_title) if p.title == cfg.project_title
    ]
    return int(project.id)


def test_a_new_next_run_replaces_the_chain_s_waiting_run_but_not_a_run_people_started(harness):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    from tasks.schedule import schedule_next_run

    name = f"chain-{next(_names)}"
    deployment_id = _create_deployment(name)
    params = {"campaign": "configs/x.yaml"}
    first = schedule_next_run.fn(f"cycle/{name}", params, 600, "x:c1:dispatched")
    with get_client(sync_client=True) as client:
        manual = client.create_flow_run_from_deployment(deployment_id, parameters=params)
    second = schedule_next_run.fn(f"cycle/{name}", params, 600, "x:c1:recheck:0")
    retry = schedule_next_run.fn(f"cycle/{name}", params, 600, "x:c1:recheck:0")
    assert (first["replaced"], second["replaced"], retry["replaced"]) == (0, 1, 0)
    assert retry["flow_run_id"] == second["flow_run_id"], "a retry creates no second run"
    states = {str(r.id): r.state.type for r in _next_runs(deployment_id)}
    assert states == {
        first["flow_run_id"]: StateType.CANCELLED,
        second["flow_run_id"]: StateType.SCHEDULED,
        str(manual.id): StateType.SCHEDULED,
    }


def test_a_second_run_of_a_held_campaign_does_nothing_and_schedules_nothing(
    harness, label_studio, ls_client, tmp_path, monkeypatch, caplog
):
    from flows.cycle import cycle
    from loopwise.config import load_campaign
    from storage.campaign import acquire_lease

    monkeypatch.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
    name = f"busy-{next(_names)}"
    path = _write_campaign(tmp_path, label_studio, name=name)
    cfg = load_campaign(path)
    deployment_id = _create_deployment(name)
    store = Store(f"{cfg.storage_root}/{name}")
    acquire_lease(store, "flow run of the scheduled chain", 600)
    out = cycle(campaign=str(path))
    assert out["status"] == "busy"
    assert out["holder"]["holder"] == "flow run of the scheduled chain"
    assert f"campaign {name} is held by flow run of the scheduled chain since" in caplog.text
    assert not store.exists("state.json"), "the state did not move"
    assert _next_runs(deployment_id) == [], "nothing was scheduled"
    assert _project_id(ls_client, cfg.project_title) is None, "nothing reached Label Studio"


def test_a_bad_manual_parameter_is_refused_before_the_run(harness):
    from prefect.client.orchestration import get_client

    deployment_id = _create_deployment(f"params-{next(_names)}")
    with get_client(sync_client=True) as client:
        for bad in ({"batch_size": 0}, {"strategy": "no-such-strategy"}, {"budget_labels": -3}):
            with pytest.raises(Exception, match=r"(?i)validat|schema|parameter"):
                client.create_flow_run_from_deployment(deployment_id, parameters=bad)
        ok = client.create_flow_run_from_deployment(
            deployment_id, parameters={"batch_size": 30, "strategy": "margin"}
        )
        assert ok.parameters["batch_size"] == 30


def test_a_campaign_on_s3_storage_keeps_its_state_ledgers_and_snapshots_in_the_bucket(
    harness, label_studio, ls_client, s3_server, tmp_path, monkeypatch
):
    import boto3

    from flows.cycle import cycle

    monkeypatch.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
    name = f"s3test-{next(_names)}"
    root = f"s3://{s3_server['bucket']}/campaigns"
    campaign = _write_campaign(tmp_path, label_studio, name=name, storage_root=root)
    from typer.testing import CliRunner

    from flows.cli import app

    res = CliRunner().invoke(app, ["run", str(campaign)])  # cold start, from the command line
    assert res.exit_code == 0 and f"{name}: dispatched" in res.output, res.output
    profiles = tmp_path / "annotators.yaml"
    profiles.write_text(yaml.safe_dump({"annotators": [dataclasses.asdict(p) for p in PROFILES]}))
    res = CliRunner().invoke(app, ["annotate", str(campaign), "--profiles", str(profiles)])
    assert res.exit_code == 0 and f"{name}: 32 answers posted" in res.output, res.output
    out = cycle(campaign=str(campaign))
    while out["status"] == "waiting":  # disputes sent back for another answer
        _annotate(label_studio, campaign, seed=2)
        out = cycle(campaign=str(campaign))
    assert out["status"] == "dispatched" and out["cycle"] == 1

    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint_url"])
    listing = s3.list_objects_v2(Bucket=s3_server["bucket"], Prefix=f"campaigns/{name}/")
    keys = [o["Key"].removeprefix(f"campaigns/{name}/") for o in listing.get("Contents", [])]
    assert "state.json" in keys
    assert any(k.startswith("snapshots/0001/") and k.endswith(".parquet") for k in keys)
    assert any(k.startswith("labels/") and ".jsonl.d/" in k for k in keys)
    assert any(k.startswith("annotations/") for k in keys)
    assert not (tmp_path / "store").exists()  # nothing went to the local disk
    store = Store(f"{root}/{name}")
    state = store.read_json("state.json")
    assert state["cycle"] == 1 and state["stage"] == "waiting"
    assert len(_server_items(ls_client, f"Loopwise {name}")) == 16 + 20


def test_loopwise_deploy_registers_the_campaign_deployment(harness, label_studio, tmp_path):
    from prefect.client.orchestration import get_client
    from typer.testing import CliRunner

    from flows.cli import app

    name = f"deploytest-{next(_names)}"
    campaign = _write_campaign(tmp_path, label_studio, name=name)
    res = CliRunner().invoke(app, ["deploy", str(campaign), "--pool", "loopwise-test"])
    assert res.exit_code == 0, res.output
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(f"cycle/{name}")
        pool = client.read_work_pool("loopwise-test")
    assert dep.parameters == {"campaign": str(campaign.resolve())}
    assert dep.work_pool_name == "loopwise-test" and pool.type == "process"
    assert dep.entrypoint == "flows/cycle.py:cycle" and dep.enforce_parameter_schema
    # Deploying again updates the same deployment.
    assert (
        CliRunner().invoke(app, ["deploy", str(campaign), "--pool", "loopwise-test"]).exit_code == 0
    )
    with get_client(sync_client=True) as client:
        assert client.read_deployment_by_name(f"cycle/{name}").id == dep.id


def test_pool_scoring_on_a_dask_cluster_matches_local_threads(harness):
    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner
    from sklearn.linear_model import LogisticRegression

    from flows.cycle import score_pool

    X, y = make_classification(
        n_samples=3000, n_features=8, n_classes=3, n_informative=5, random_state=1
    )
    model = LogisticRegression(max_iter=500).fit(X[:200], y[:200])
    pool = X[200:]

    @flow_for_test
    def local() -> list:
        return score_pool.fn(model, pool, 25, "margin", {}, 0, 4)

    expected = local()
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        on_dask = score_pool.with_options(
            task_runner=DaskTaskRunner(address=cluster.scheduler_address)
        )
        got = on_dask(model, pool, 25, "margin", {}, 0, 4)
    assert len(got) == len(expected) == 4
    for (gi, gs), (ei, es) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(gi, ei)
        np.testing.assert_allclose(gs, es)


def flow_for_test(fn):
    from prefect import flow

    return flow(name="local-scoring")(fn)


# --- a stalled batch: closed at its deadline, late answers still count ------------------------


@dataclass
class StalledBatch:
    """Four items of the cold start are never answered: the campaign waits for them while
    the batch has no deadline, closes it once one is set, goes on, and the answers that
    come after the close are collected and accepted by a later cycle."""

    name: str
    late: list[str]  # the four cold-start items nobody answers before the close
    waiting: list[dict[str, Any]]  # the runs while the batch had no deadline
    closed_before_deadline: list[dict[str, Any]]
    at_deadline: dict[str, Any]  # the run once a deadline is set (and passed)
    closed: list[dict[str, Any]]  # the closed-items ledger after it
    items: list[str]  # the project's tasks after it
    state_after_close: dict[str, Any]
    labels_after_close: list[dict[str, Any]]
    status: Any  # `loopwise status` while cycle 1's batch is out
    close_batch: Any  # `loopwise run --close-batch` after the late answers came in
    late_answers: list[dict[str, Any]]
    labels: dict[str, dict[str, Any]]  # item → label record at the end
    state: dict[str, Any]
    closed_in_cycle_1: list[dict[str, Any]]

    @property
    def agreed(self) -> set[str]:
        """Late items whose late answers all give the same label."""
        return {
            i
            for i in self.late
            if len({r["label"] for r in self.late_answers if r["item_id"] == i and r.get("label")})
            == 1
        }


@pytest.fixture(scope="module")
def stalled(harness, label_studio, ls_client, tmp_path_factory) -> Iterator[StalledBatch]:
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.cycle import cycle
    from loopwise.config import load_campaign

    tmp = tmp_path_factory.mktemp("stalled")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
        name = f"closetest-{next(_names)}"
        schedule = {"recheck_seconds": 3600, "batch_timeout_seconds": None}
        campaign = _write_campaign(tmp, label_studio, name=name, schedule=schedule)
        cfg = load_campaign(campaign)
        store = Store(f"{cfg.storage_root}/{name}")
        cold = cycle(campaign=str(campaign))
        assert cold["status"] == "dispatched", cold  # the cold start; nothing to test without it
        batch = store.read_json("state.json")["open_batch"]
        late, answered = batch[:4], batch[4:]
        pid = _pid(ls_client, cfg)

        # The answered items are resolved (disputes answered again); the four stay pending.
        waiting = []
        for seed in range(1, 6):
            _annotate(label_studio, campaign, seed=seed, items=answered)
            waiting.append(cycle(campaign=str(campaign)))
            if set(waiting[-1].get("progress", {}).get("pending", ())) == set(late):
                break
        closed_before_deadline = store.read_jsonl(f"closed/{pid}.jsonl")

        # A deadline is set (a day would do; a second has passed): the batch closes.
        _write_campaign(
            tmp, label_studio, name=name, schedule={**schedule, "batch_timeout_seconds": 1}
        )
        at_deadline = cycle(campaign=str(campaign))
        closed = store.read_jsonl(f"closed/{pid}.jsonl")
        items = _server_items(ls_client, cfg.project_title)
        state_after_close = store.read_json("state.json")
        labels_after_close = store.read_jsonl(f"labels/{pid}.jsonl")

        # The late answers come in while cycle 1's batch is out; `loopwise run --close-batch`
        # moves on with them in the snapshot.
        status = CliRunner().invoke(app, ["status", str(campaign)])
        _annotate(label_studio, campaign, seed=9, items=late)
        close_batch = CliRunner().invoke(app, ["run", str(campaign), "--close-batch"])
        answers = store.read_jsonl(f"annotations/{pid}.jsonl")
        yield StalledBatch(
            name=name,
            late=late,
            waiting=waiting,
            closed_before_deadline=closed_before_deadline,
            at_deadline=at_deadline,
            closed=closed,
            items=items,
            state_after_close=state_after_close,
            labels_after_close=labels_after_close,
            status=status,
            close_batch=close_batch,
            late_answers=[r for r in answers if r["item_id"] in late],
            labels={r["item_id"]: r for r in store.read_jsonl(f"labels/{pid}.jsonl")},
            state=store.read_json("state.json"),
            closed_in_cycle_1=[
                r for r in store.read_jsonl(f"closed/{pid}.jsonl") if r["cycle"] == 1
            ],
        )


def test_without_a_deadline_the_batch_waits_for_its_unanswered_items(stalled):
    assert all(out["status"] == "waiting" for out in stalled.waiting), stalled.waiting
    pending = stalled.waiting[-1]["progress"]["pending"]
    assert set(pending) == set(stalled.late), f"the answered items never resolved: {pending}"


def test_without_a_deadline_no_item_is_closed(stalled):
    assert not stalled.closed_before_deadline


def test_past_its_deadline_the_batch_closes_and_the_next_cycle_is_dispatched(stalled):
    out = stalled.at_deadline
    assert out["status"] == "dispatched" and out["cycle"] == 1, out


def test_the_closed_items_are_the_unanswered_ones_with_no_answer(stalled):
    assert sorted(r["item_id"] for r in stalled.closed) == sorted(stalled.late)
    assert all(r["answers"] == 0 and r["cycle"] == 0 for r in stalled.closed), stalled.closed


def test_closing_a_batch_withdraws_no_task(stalled):
    assert set(stalled.late) <= set(stalled.items), "a task was withdrawn"


def test_the_cycle_after_the_close_trains_on_every_accepted_label(stalled):
    last = stalled.state_after_close["history"][-1]
    assert last["cycle"] == 1
    assert last["labels"] == len(stalled.labels_after_close)


def test_loopwise_status_says_when_the_open_batch_closes(stalled):
    res = stalled.status
    assert res.exit_code == 0 and "batch closes" in res.output, res.output


def test_loopwise_run_close_batch_dispatches_the_next_batch(stalled):
    res = stalled.close_batch
    assert res.exit_code == 0 and f"{stalled.name}: dispatched" in res.output, res.output


def test_answers_after_the_close_are_collected(stalled):
    assert len(stalled.late_answers) >= 2 * len(stalled.late), stalled.late_answers


def test_late_answers_that_agree_are_accepted_by_the_next_cycle(stalled):
    agreed = stalled.agreed
    assert agreed and agreed <= set(stalled.labels), (agreed, sorted(stalled.labels))
    assert all(stalled.labels[i]["cycle"] == 1 for i in agreed)


def test_closing_by_hand_moves_on_with_every_label_in_the_snapshot(stalled):
    state = stalled.state
    assert state["cycle"] == 2 and state["history"][-1]["labels"] == len(stalled.labels)


def test_a_batch_closed_by_hand_with_nothing_answered_lists_each_item_once(stalled):
    closed = stalled.closed_in_cycle_1
    assert len(closed) == len({r["item_id"] for r in closed}) == 20


# --- disputes: the review queue and the reviewer's decisions ----------------------------------


@dataclass
class Review:
    """Two annotators who never agree, and no third answer: the cold start's disputes go
    to the review queue (a Prefect table with a link to each task). With nothing to train
    on, the campaign waits for the expert named in ``labelstudio.reviewers``; the expert's
    answers decide, the annotators' answers are kept, and the campaign goes on."""

    name: str
    project_id: int
    truth: dict[str, str]
    waiting: dict[str, Any]  # the run after the crowd answered
    labels_before: list[dict[str, Any]]
    queue_rows: list[dict[str, Any]]  # the review artifact's rows then
    disputed: set[str]  # items whose answers disagree, from the annotation ledger
    review_queue_in_state: int | None
    status: Any  # `loopwise status` then
    after_review: dict[str, Any]  # the run after the reviewer answered
    labels: dict[str, dict[str, Any]]  # item → label record after it
    answers_per_item: dict[str, int]  # item → answers in the ledger after it
    users: dict[str, str]  # Label Studio user email → id
    quality: dict[str, float]  # annotator id → estimated accuracy
    state: dict[str, Any]
    queue_rows_after: list[dict[str, Any]]

    @property
    def queue(self) -> set[str]:
        return {r["item_id"] for r in self.queue_rows}


@pytest.fixture(scope="module")
def review(harness, label_studio, ls_client, tmp_path_factory) -> Iterator[Review]:
    from typer.testing import CliRunner

    from devstack.annotators import EMAIL_DOMAIN
    from flows.cli import app
    from flows.cycle import cycle
    from loopwise.config import load_campaign

    tmp = tmp_path_factory.mktemp("review")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
        name = f"reviewtest-{next(_names)}"
        campaign = _write_campaign(
            tmp,
            label_studio,
            name=name,
            max_annotations_per_item=2,
            labelstudio={
                "url": label_studio.url,
                "token_env": "LOOPWISE_TEST_LS_TOKEN",
                "reviewers": [f"rex@{EMAIL_DOMAIN}"],
            },
        )
        cfg = load_campaign(campaign)
        store = Store(f"{cfg.storage_root}/{name}")
        truth = dict(zip(*pd.read_csv(cfg.data.source)[["uid", "truth"]].T.to_numpy(), strict=True))
        crowd = [
            AnnotatorProfile(name="ann", accuracy=1.0, latency=1.0),
            AnnotatorProfile(name="wes", accuracy=0.0, latency=1.0),
        ]
        rex = [AnnotatorProfile(name="rex", accuracy=1.0, latency=1.0)]
        cold = cycle(campaign=str(campaign))
        assert cold["status"] == "dispatched", cold  # the cold start; nothing to test without it
        pid = _pid(ls_client, cfg)
        simulate_annotators(
            label_studio.url, label_studio.token, pid, truth, crowd, labels=LABELS,
            data_kind="tabular", random_state=3,
        )  # fmt: skip
        waiting = cycle(campaign=str(campaign))
        queue_rows = _review_artifact(name)
        answers = pd.DataFrame(store.read_jsonl(f"annotations/{pid}.jsonl"))
        disputed = {i for i, n in answers.groupby("item_id")["label"].nunique().items() if n > 1}
        review_queue_in_state = store.read_json("state.json").get("review_queue")
        labels_before = store.read_jsonl(f"labels/{pid}.jsonl")
        status = CliRunner().invoke(app, ["status", str(campaign)])

        # The reviewer answers the queue: the batch is complete, cycle 1 trains and dispatches.
        queue = sorted({r["item_id"] for r in queue_rows})
        simulate_annotators(
            label_studio.url, label_studio.token, pid, truth, rex, labels=LABELS,
            data_kind="tabular", items=queue, overlap=3, random_state=4,
        )  # fmt: skip
        after_review = cycle(campaign=str(campaign))
        answers = pd.DataFrame(store.read_jsonl(f"annotations/{pid}.jsonl"))
        yield Review(
            name=name,
            project_id=pid,
            truth=truth,
            waiting=waiting,
            labels_before=labels_before,
            queue_rows=queue_rows,
            disputed=disputed,
            review_queue_in_state=review_queue_in_state,
            status=status,
            after_review=after_review,
            labels={r["item_id"]: r for r in store.read_jsonl(f"labels/{pid}.jsonl")},
            answers_per_item=answers.groupby("item_id").size().to_dict(),
            users={u.email: str(u.id) for u in ls_client.users.list()},
            quality=store.read_json(f"quality/{pid}.json")["annotator_accuracy"],
            state=store.read_json("state.json"),
            queue_rows_after=_review_artifact(name),
        )


def test_with_every_item_disputed_the_campaign_waits_with_nothing_pending(review):
    out = review.waiting
    assert out["status"] == "waiting" and not out["progress"]["pending"], out


def test_with_every_item_disputed_nothing_is_labeled(review):
    assert not review.labels_before  # nothing to train on: why it waits


def test_the_review_queue_holds_exactly_the_disputed_items(review):
    assert review.queue and review.queue == review.disputed, (review.queue, review.disputed)


def test_each_review_row_links_to_its_label_studio_task(review):
    pid = review.project_id
    bad = [
        r
        for r in review.queue_rows
        if not r["open"].endswith(f"/projects/{pid}/data?task={r['task_id']}")
    ]
    assert not bad, bad


def test_an_item_in_review_is_not_labeled(review):
    assert not review.queue & {r["item_id"] for r in review.labels_before}


def test_the_state_counts_the_review_queue(review):
    assert review.review_queue_in_state == len(review.queue)


def test_loopwise_status_points_to_the_review_queue(review):
    out = review.status.output
    assert f"{len(review.queue)} dispute(s)" in out and f"{review.name}-review" in out, out


def test_once_reviewed_the_next_cycle_is_dispatched(review):
    out = review.after_review
    assert out["status"] == "dispatched" and out["cycle"] == 1, out


def test_the_reviewer_decides_each_disputed_item(review):
    assert review.queue <= set(review.labels)
    decided = {i: review.labels[i] for i in review.queue}
    wrong = {
        i: rec
        for i, rec in decided.items()
        if (rec["method"], rec["label"], rec["cycle"]) != ("expert", review.truth[i], 0)
    }
    assert not wrong, wrong


def test_the_annotators_answers_are_kept_beside_the_reviewers(review):
    kept = {i: review.labels.get(i, {}) for i in review.queue}
    wrong = {
        i: (rec.get("n_annotations"), rec.get("agreement"))
        for i, rec in kept.items()
        if (rec.get("n_annotations"), rec.get("agreement")) != (3, 0.5)
    }
    assert not wrong, wrong
    assert all(review.answers_per_item[i] == 3 for i in review.queue), review.answers_per_item


def test_the_reviewer_is_not_scored_as_an_annotator(review):
    from devstack.annotators import EMAIL_DOMAIN

    assert review.users[f"rex@{EMAIL_DOMAIN}"] not in review.quality
    assert review.users[f"ann@{EMAIL_DOMAIN}"] in review.quality


def test_the_review_queue_is_empty_after_the_review(review):
    assert review.state["review_queue"] == 0
    assert [r["item_id"] for r in review.queue_rows_after] == ["—"]  # the queue table is empty


def test_the_cycle_after_the_review_trains_on_every_label(review):
    assert review.state["history"][-1]["labels"] == len(review.labels)


def test_a_cold_start_that_found_one_class_goes_on_as_a_cold_start(
    harness, label_studio, ls_client, tmp_path, monkeypatch
):
    """Every cold-start item turns out to be the same class (a rare class missed): no
    classifier can be fitted. The cycle trains a constant model, lets only the budgets and
    the pool stop the campaign (the target accuracy 0.01 is reached by the constant and
    ignored), and picks the next batch with the cold-start strategy; once a second class
    is labeled, the real model and strategy take over and the target stops it."""
    from flows.cycle import cycle
    from loopwise.config import load_campaign

    monkeypatch.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
    name = f"oneclass-{next(_names)}"
    campaign = _write_campaign(
        tmp_path,
        label_studio,
        name=name,
        stopping={"target_metric": 0.01, "kappa_threshold": None, "plateau_window": 5},
    )
    cfg = load_campaign(campaign)
    store = Store(f"{cfg.storage_root}/{name}")
    truth = dict(zip(*pd.read_csv(cfg.data.source)[["uid", "truth"]].T.to_numpy(), strict=True))
    sure = [AnnotatorProfile(name=n, accuracy=1.0, latency=1.0) for n in ("ann", "bob")]
    assert cycle(campaign=str(campaign))["status"] == "dispatched"
    pid = _pid(ls_client, cfg)
    cold = store.read_json("state.json")["open_batch"]
    simulate_annotators(
        label_studio.url, label_studio.token, pid, dict.fromkeys(cold, "ant"), sure,
        labels=LABELS, data_kind="tabular", random_state=1,
    )  # fmt: skip
    out = cycle(campaign=str(campaign))
    assert out["status"] == "dispatched" and out["cycle"] == 1, out
    state = store.read_json("state.json")
    decided = store.read_json("cycles/0001/decided.json")
    assert not decided["stop"] and decided["rule"] == "continue"
    assert "not judged" in decided["details"]["checks"]["target_metric"]["reason"]
    assert state["history"][-1]["metric"] > 0.01  # the constant model beat the target
    selected = store.read_json("cycles/0001/selected.json")
    assert selected["strategy"] == cfg.strategy.cold_start
    batch1 = state["open_batch"]
    assert len(batch1) == 20 and not set(batch1) & set(cold)

    simulate_annotators(
        label_studio.url, label_studio.token, pid, truth, sure, labels=LABELS,
        data_kind="tabular", items=batch1, random_state=2,
    )  # fmt: skip
    assert len({truth[i] for i in batch1}) > 1  # the second batch brings other classes
    out = cycle(campaign=str(campaign))
    assert out["status"] == "stopped" and out["cycle"] == 2, out
    assert store.read_json("state.json")["decision"]["rule"] == "target_metric"


def _review_artifact(name: str) -> list[dict]:
    """The rows of the latest version of the campaign's review-queue table artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as pc:
        arts = pc.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{name}-review"]))
        )
    assert arts, f"no {name}-review artifact"
    data = max(arts, key=lambda a: a.created).data
    return json.loads(data) if isinstance(data, str) else data


# ---------------------------------------------------------------------------------------------
# The adaptive overlap policy with relabels, through the cycle flow: one annotator per item to
# start, another only where the label is in doubt, doubtful accepted labels asked again.


@pytest.fixture(scope="module")
def adaptive(harness, label_studio, ls_client, tmp_path_factory) -> Iterator[dict[str, Any]]:
    from flows.cycle import cycle
    from loopwise.config import load_campaign

    tmp = tmp_path_factory.mktemp("adaptive")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
        name = f"adaptivetest-{next(_names)}"
        campaign = _write_campaign(
            tmp,
            label_studio,
            name=name,
            max_annotations_per_item=3,
            overlap={"policy": "adaptive", "relabel": True, "relabel_max_share": 0.5},
            budget={"labels": 80, "cost_per_annotation": 0.1},
        )
        cfg = load_campaign(campaign)
        store = Store(f"{cfg.storage_root}/{name}")
        statuses = [cycle(campaign=str(campaign))["status"]]
        pid = _pid(ls_client, cfg)
        for seed in range(10):
            _annotate(label_studio, campaign, seed)
            statuses.append(cycle(campaign=str(campaign))["status"])
            if statuses[-1] == "stopped":
                break
        tasks = list(ls_client.tasks.list(project=pid, fields="all", page_size=1000))
        yield {
            "cfg": cfg,
            "statuses": statuses,
            "project": ls_client.projects.get(id=pid),
            "tasks": {t.data["item_id"]: t for t in tasks},
            "n_tasks": len(tasks),
            "labels": store.read_jsonl(f"labels/{pid}.jsonl"),
            "annotations": Ledgers(store, pid).annotations(["accepted"]),
            "review": store.read_jsonl(f"review/{pid}.jsonl"),
            "selected": [
                store.read_json(f"cycles/{k:04d}/selected.json")
                for k in range(20)
                if store.exists(f"cycles/{k:04d}/selected.json")
            ],
        }


def test_adaptive_campaign_runs_several_cycles(adaptive):
    assert adaptive["statuses"].count("dispatched") >= 3, adaptive["statuses"]


def test_adaptive_project_asks_one_annotator_per_task(adaptive):
    assert adaptive["project"].maximum_annotations == 1


def test_adaptive_never_sends_an_item_twice(adaptive):
    assert adaptive["n_tasks"] == len(adaptive["tasks"])


def test_adaptive_raises_the_overlap_only_of_tasks_it_logged_a_reason_for(adaptive):
    raised = {r["item_id"] for r in adaptive["review"]}
    above_one = {i for i, t in adaptive["tasks"].items() if int(t.overlap) > 1}
    assert above_one == raised
    assert all(int(t.overlap) <= 3 for t in adaptive["tasks"].values())


def test_adaptive_pays_fewer_answers_per_label_than_two_annotators_would(adaptive):
    current = {r["item_id"] for r in adaptive["labels"]}
    assert len(current) >= 40
    answered = pd.Series([a["item_id"] for a in adaptive["annotations"]])
    per_item = answered.value_counts()
    assert (per_item == 1).sum() > 0 and (per_item >= 2).sum() > 0
    assert len(answered) / len(current) < 2.0


def test_adaptive_labels_are_answers_someone_gave(adaptive):
    given: dict[str, set] = {}
    for a in adaptive["annotations"]:
        given.setdefault(a["item_id"], set()).add(a["label"])
    assert all(r["label"] in given[r["item_id"]] for r in adaptive["labels"])


def test_relabels_ask_accepted_items_again_and_shrink_the_new_picks(adaptive):
    for sel in adaptive["selected"]:
        relabel = {r["item_id"] for r in sel.get("relabel") or []}
        assert not relabel & {b["item_id"] for b in sel["batch"]}
        for r in sel.get("relabel") or []:
            assert 0.0 < r["gain"] <= 1.0
    asked = {r["item_id"] for r in adaptive["review"] if r["reason"].startswith("relabel")}
    labeled = {r["item_id"] for r in adaptive["labels"]}
    assert asked <= labeled
