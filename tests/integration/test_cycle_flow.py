"""The cycle flow end to end: a real Label Studio, Prefect's test harness, MLflow on SQLite.

A small synthetic campaign runs from its cold start to a stop decision while
simulated annotators answer in Label Studio between runs. Crashes are injected
after the side effect of each stage, then the run is repeated: no task is sent
twice, no annotation is lost, no cycle is logged twice, and no extra next run is
created.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_classification

from devstack.annotators import AnnotatorProfile, simulate_annotators
from storage.store import Store

pytestmark = pytest.mark.integration

LABELS = ["ant", "bee", "cat", "dog"]
PROFILES = [
    AnnotatorProfile(name="ann", accuracy=0.97, latency=1.0),
    AnnotatorProfile(name="bob", accuracy=0.93, latency=1.0),
    AnnotatorProfile(name="cyd", accuracy=0.6, latency=1.0),
]
_names = itertools.count()


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


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


class _Crash(RuntimeError):
    pass


def _crash_after(monkeypatch, module, name: str) -> None:
    """Make ``module.name`` do its work, then die (the hardest place for a crash)."""
    real = getattr(module, name)

    def crashing(*args, **kwargs):
        real(*args, **kwargs)
        raise _Crash(f"injected crash after {name}")

    monkeypatch.setattr(module, name, crashing)


def _fail_instead(monkeypatch, module, name: str) -> None:
    """Make ``module.name`` fail without doing its work."""

    def failing(*args, **kwargs):
        raise _Crash(f"injected failure of {name}")

    monkeypatch.setattr(module, name, failing)


def test_campaign_runs_to_a_stop_through_crashes_without_duplicates_or_loss(
    harness, label_studio, ls_client, tmp_path, monkeypatch
):
    import mlflow

    from flows.cycle import cycle
    from flows.stages import advance, decide, dispatch, select, train
    from loopwise.config import load_campaign

    monkeypatch.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
    name = f"flowtest-{next(_names)}"
    campaign = _write_campaign(tmp_path, label_studio, name=name)
    cfg = load_campaign(campaign)
    deployment_id = _create_deployment(name)
    store = Store(f"{cfg.storage_root}/{name}")

    # A crash point per stage, in the order runs reach them. A crash stays armed
    # until a run reaches its point; the run after a crash is the rerun.
    pending = [
        (dispatch, "dispatch_batch"),  # cold start: tasks imported, receipt not kept
        (advance, "consensus_qc"),
        (train, "log_cycle"),  # the MLflow run exists, the checkpoint does not
        (decide, "stopping_decision"),
        (select, "select_batch"),
        (dispatch, "dispatch_batch"),
        (dispatch, "schedule_next_run"),  # the next run exists, the state does not know
        (decide, "write_report", "instead"),  # stopped, and the final report failed
    ]
    results, annotated_ids, crashed = [], set(), 0
    for _ in range(40):
        with monkeypatch.context() as mp:
            if pending:
                inject = _fail_instead if len(pending[0]) == 3 else _crash_after
                inject(mp, *pending[0][:2])
            try:
                out = cycle(campaign=str(campaign))
            except _Crash:
                pending.pop(0)
                crashed += 1
                continue
        results.append(out)
        items = _server_items(ls_client, cfg.project_title)
        assert len(items) == len(set(items)), "an item was sent to Label Studio twice"
        ledger = store.read_jsonl(f"annotations/{_pid(ls_client, cfg)}.jsonl")
        ids = {r["annotation_id"] for r in ledger}
        assert annotated_ids <= ids, "an annotation disappeared from the ledger"
        annotated_ids = ids
        if out["status"] == "stopped":
            break
        _annotate(label_studio, campaign, seed=len(results))
    else:
        pytest.fail(f"no stop decision after 40 runs: {results[-3:]}")
    assert crashed == 8 and not pending, f"crash points never reached: {pending}"

    # The planted bad rows were quarantined (once each, with a reason) and never sent.
    quarantined = store.read_jsonl("quarantine/pool.jsonl")
    assert sorted(r["id"] for r in quarantined) == ["bad-missing", "bad-range", "bad-text"]
    assert all(r["reason"] for r in quarantined)
    assert not {"bad-missing", "bad-range", "bad-text"} & set(
        _server_items(ls_client, cfg.project_title)
    )
    state = store.read_json("state.json")
    trained = [h["cycle"] for h in state["history"]]
    assert len(trained) >= 3 and trained == sorted(set(trained))
    assert state["stopped"] and state["decision"]["stop"]
    assert state["decision"]["rule"] in (
        "label_budget",
        "plateau",
        "marginal_gain",
        "pool_exhausted",
    )
    # Labels: each accepted item once, all of them sent items.
    labels = store.read_jsonl(f"labels/{_pid(ls_client, cfg)}.jsonl")
    assert len({r["item_id"] for r in labels}) == len(labels)
    assert {r["item_id"] for r in labels} <= set(_server_items(ls_client, cfg.project_title))
    # MLflow: exactly one run per trained cycle; the champion is the best holdout accuracy.
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    exp = client.get_experiment_by_name(cfg.experiment)
    runs = client.search_runs([exp.experiment_id])
    assert sorted(int(r.data.tags["loopwise.cycle"]) for r in runs) == trained
    champion = client.get_model_version_by_alias(f"loopwise-{name}", "champion")
    best = max(r.data.metrics["accuracy"] for r in runs)
    assert float(champion.tags["holdout_accuracy"]) == pytest.approx(best)
    # Next runs: one per go decision (dispatch or re-check), none after the stop.
    flow_runs = _next_runs(deployment_id)
    keys = [r.idempotency_key for r in flow_runs]
    assert len(keys) == len(set(keys))
    go_runs = sum(r["status"] in ("dispatched", "waiting") for r in results)
    assert len(flow_runs) == go_runs, (sorted(keys), [r["status"] for r in results])

    # The control share: a tenth of every batch, drawn at random, marked, never scored.
    from loopwise.batch import control_count

    batches = {
        k: store.read_json(f"cycles/{k:04d}/selected.json")["batch"]
        for k in range(state["cycle"] + 1)
        if store.exists(f"cycles/{k:04d}/selected.json")
    }
    for k, batch in batches.items():
        control = [b for b in batch if b["control"]]
        assert len(control) == control_count(len(batch), 0.1)
        assert (len(control) >= 1) == (len(batch) >= 2), k
        assert all(b["query_score"] is None for b in control)
        assert all(b["query_score"] is not None for b in batch if not b["control"])

    # The final report, written when the campaign stopped: its numbers are the ledger's.
    report = store.read_json("reports/report.json")
    annotations = {}
    for row in store.read_jsonl(f"annotations/{_pid(ls_client, cfg)}.jsonl"):
        annotations[row["annotation_id"]] = row  # the latest version of each
    paid = sum(a["status"] in ("accepted", "rejected") for a in annotations.values())
    assert report["labels"] == len(labels)
    assert report["annotations"] == paid
    assert report["spent"] == pytest.approx(paid * 0.1)
    assert report["history"] == state["history"]
    assert report["metric"] == state["history"][-1]["metric"]
    # Annotators by name (the Label Studio users the simulator created), with their ids.
    answered_by = {a["annotator"] for a in annotations.values()}
    assert {a["annotator"] for a in report["annotators"]} == answered_by
    assert {a["name"] for a in report["annotators"]} == {p.name for p in PROFILES}
    truth = {r["item_id"]: r["label"] for r in labels}
    expected = []
    for k, batch in sorted(batches.items()):
        pairs = [
            (b["prediction_label"], truth[b["item_id"]])
            for b in batch
            if b["control"] and b["prediction_label"] and b["item_id"] in truth
        ]
        if pairs:
            expected.append((k, len(pairs), sum(p == t for p, t in pairs)))
    assert [(e["cycle"], e["n"], e["correct"]) for e in report["control_estimates"]] == expected
    assert expected, "no control item of a trained model was labeled"
    assert [d["cycle"] for d in report["decisions"]] == trained
    assert report["decisions"][-1]["reason"] == state["decision"]["reason"]
    n_control_labels = [p["labels"] for p in report["random_curve"]]
    assert n_control_labels == sorted(n_control_labels) and n_control_labels
    assert max(n_control_labels) <= sum(b["control"] for bt in batches.values() for b in bt)
    page = store.path("reports/report.html").read_text()
    assert f"{report['labels']:,}" in page and f"{report['spent']:,.2f}" in page
    assert page.count("data:image/png;base64,") == 2 and "<script" not in page
    assert all(f"{a['name']} (#{a['annotator']})" in page for a in report["annotators"])
    last_run = max(runs, key=lambda r: int(r.data.tags["loopwise.cycle"]))
    assert "report/report.html" in [
        a.path for a in client.list_artifacts(last_run.info.run_id, "report")
    ]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as pc:
        found = pc.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{name}-report"]))
        )
    assert found and f"{report['labels']:,}" in found[-1].data

    # The command line reads the same campaign: status from the store, report on demand.
    from typer.testing import CliRunner

    from flows.cli import app

    cli = CliRunner()
    res = cli.invoke(app, ["status", str(campaign)])
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line for line in res.output.splitlines() if line.strip()}
    assert rows["labels"].split()[-1] == str(len(labels))
    assert "STOP" in res.output and f"{paid * 0.1:,.2f}" in res.output
    res = cli.invoke(app, ["report", str(campaign), "--output", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert f"{len(labels):,} labels" in res.output
    assert (tmp_path / "r.html").read_text().count("data:image/png;base64,") == 2


def _pid(ls_client, cfg) -> int:
    (project,) = [
        p for p in ls_client.projects.list(title=cfg.project_title) if p.title == cfg.project_title
    ]
    return int(project.id)


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
    profiles.write_text(yaml.safe_dump({"annotators": [p.model_dump() for p in PROFILES]}))
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


def test_a_stalled_batch_closes_at_its_deadline_and_late_answers_still_count(
    harness, label_studio, ls_client, tmp_path, monkeypatch
):
    """Four items of the cold start are never answered: the campaign waits for them while
    the batch has no deadline, closes it once one is set, goes on, and the answers that
    come after the close are collected and accepted by a later cycle."""
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.cycle import cycle
    from loopwise.config import load_campaign

    monkeypatch.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
    name = f"closetest-{next(_names)}"
    schedule = {"recheck_seconds": 3600, "batch_timeout_seconds": None}
    campaign = _write_campaign(tmp_path, label_studio, name=name, schedule=schedule)
    cfg = load_campaign(campaign)
    store = Store(f"{cfg.storage_root}/{name}")
    assert cycle(campaign=str(campaign))["status"] == "dispatched"  # the cold start
    batch = store.read_json("state.json")["open_batch"]
    late, answered = batch[:4], batch[4:]
    pid = _pid(ls_client, cfg)

    # The answered items are resolved (disputes answered again); the four stay pending.
    for seed in range(1, 6):
        _annotate(label_studio, campaign, seed=seed, items=answered)
        out = cycle(campaign=str(campaign))
        assert out["status"] == "waiting", out
        if set(out["progress"]["pending"]) == set(late):
            break
    else:
        pytest.fail(f"the answered items never resolved: {out['progress']}")
    assert not store.read_jsonl(f"closed/{pid}.jsonl")

    # A deadline is set (a day would do; a second has passed): the batch closes.
    _write_campaign(
        tmp_path, label_studio, name=name, schedule={**schedule, "batch_timeout_seconds": 1}
    )
    out = cycle(campaign=str(campaign))
    assert out["status"] == "dispatched" and out["cycle"] == 1, out
    closed = store.read_jsonl(f"closed/{pid}.jsonl")
    assert sorted(r["item_id"] for r in closed) == sorted(late)
    assert all(r["answers"] == 0 and r["cycle"] == 0 for r in closed)
    assert set(late) <= set(_server_items(ls_client, cfg.project_title)), "a task was withdrawn"
    state = store.read_json("state.json")
    assert state["history"][-1]["cycle"] == 1
    assert state["history"][-1]["labels"] == len(store.read_jsonl(f"labels/{pid}.jsonl"))

    # The late answers come in while cycle 1's batch is out: nothing is dropped, the agreed
    # ones are accepted, and `loopwise run --close-batch` moves on with them in the snapshot.
    res = CliRunner().invoke(app, ["status", str(campaign)])
    assert res.exit_code == 0 and "batch closes" in res.output, res.output
    _annotate(label_studio, campaign, seed=9, items=late)
    res = CliRunner().invoke(app, ["run", str(campaign), "--close-batch"])
    assert res.exit_code == 0 and f"{name}: dispatched" in res.output, res.output
    answers = store.read_jsonl(f"annotations/{pid}.jsonl")
    late_answers = [r for r in answers if r["item_id"] in late]
    assert len(late_answers) >= 2 * len(late)
    agreed = {
        i
        for i in late
        if len({r["label"] for r in late_answers if r["item_id"] == i and r.get("label")}) == 1
    }
    labels = {r["item_id"]: r for r in store.read_jsonl(f"labels/{pid}.jsonl")}
    assert agreed and agreed <= set(labels), (agreed, sorted(labels))
    assert all(labels[i]["cycle"] == 1 for i in agreed)
    state = store.read_json("state.json")
    assert state["cycle"] == 2 and state["history"][-1]["labels"] == len(labels)
    # Cycle 1's batch was closed with nothing answered: each item once, 0 answers.
    closed = [r for r in store.read_jsonl(f"closed/{pid}.jsonl") if r["cycle"] == 1]
    assert len(closed) == len({r["item_id"] for r in closed}) == 20


def test_disputes_go_to_the_review_queue_and_a_reviewer_decides_them(
    harness, label_studio, ls_client, tmp_path, monkeypatch
):
    """Two annotators who never agree, and no third answer: the cold start's disputes go
    to the review queue (a Prefect table with a link to each task). With nothing to train
    on, the campaign waits for the expert named in ``labelstudio.reviewers``; the expert's
    answers decide, the annotators' answers are kept, and the campaign goes on."""
    from typer.testing import CliRunner

    from devstack.annotators import EMAIL_DOMAIN
    from flows.cli import app
    from flows.cycle import cycle
    from loopwise.config import load_campaign

    monkeypatch.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
    name = f"reviewtest-{next(_names)}"
    campaign = _write_campaign(
        tmp_path,
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
    assert cycle(campaign=str(campaign))["status"] == "dispatched"
    pid = _pid(ls_client, cfg)
    simulate_annotators(
        label_studio.url, label_studio.token, pid, truth, crowd, labels=LABELS,
        data_kind="tabular", random_state=3,
    )  # fmt: skip
    out = cycle(campaign=str(campaign))
    assert out["status"] == "waiting" and not out["progress"]["pending"], out
    assert not store.read_jsonl(f"labels/{pid}.jsonl")  # nothing to train on: why it waits
    rows = _review_artifact(name)
    queue = {r["item_id"] for r in rows}
    answers = pd.DataFrame(store.read_jsonl(f"annotations/{pid}.jsonl"))
    disputed = {i for i, n in answers.groupby("item_id")["label"].nunique().items() if n > 1}
    assert queue and queue == disputed, (queue, disputed)
    assert all(r["open"].endswith(f"/projects/{pid}/data?task={r['task_id']}") for r in rows)
    assert not queue & {r["item_id"] for r in store.read_jsonl(f"labels/{pid}.jsonl")}
    assert store.read_json("state.json")["review_queue"] == len(queue)
    res = CliRunner().invoke(app, ["status", str(campaign)])
    assert f"{len(queue)} dispute(s)" in res.output and f"{name}-review" in res.output, res.output

    # The reviewer answers the queue: the batch is complete, cycle 1 trains and dispatches.
    simulate_annotators(
        label_studio.url, label_studio.token, pid, truth, rex, labels=LABELS,
        data_kind="tabular", items=sorted(queue), overlap=3, random_state=4,
    )  # fmt: skip
    out = cycle(campaign=str(campaign))
    assert out["status"] == "dispatched" and out["cycle"] == 1, out
    labels = {r["item_id"]: r for r in store.read_jsonl(f"labels/{pid}.jsonl")}
    assert queue <= set(labels)
    for item in queue:
        rec = labels[item]
        assert rec["method"] == "expert" and rec["label"] == truth[item] and rec["cycle"] == 0
        assert rec["n_annotations"] == 3 and rec["agreement"] == 0.5
    answers = pd.DataFrame(store.read_jsonl(f"annotations/{pid}.jsonl"))
    assert (answers[answers["item_id"].isin(queue)].groupby("item_id").size() == 3).all()
    users = {u.email: str(u.id) for u in ls_client.users.list()}
    quality = store.read_json(f"quality/{pid}.json")["annotator_accuracy"]
    assert users[f"rex@{EMAIL_DOMAIN}"] not in quality and users[f"ann@{EMAIL_DOMAIN}"] in quality
    assert store.read_json("state.json")["review_queue"] == 0
    assert [r["item_id"] for r in _review_artifact(name)] == ["—"]  # the queue is empty
    assert store.read_json("state.json")["history"][-1]["labels"] == len(labels)


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
