"""The stream path end to end: the gateway serves the champion a pool cycle registered, the
stream flow reads its log, dispatches to a real Label Studio, collects, takes feedback,
watches drift and asks for exactly one retrain, which goes through the champion gate.

Prefect's test harness, MLflow on SQLite, a real Label Studio. The scenario runs once
(``scenario`` fixture); each test checks one claim on what it left behind.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_classification

from devstack.annotators import AnnotatorProfile, simulate_annotators
from storage.store import Store

pytestmark = pytest.mark.integration

LABELS = ["ant", "bee", "cat", "dog"]
FEATURES = [f"f{i}" for i in range(6)]
PROFILES = [
    AnnotatorProfile(name="ann", accuracy=0.97, latency=1.0),
    AnnotatorProfile(name="bob", accuracy=0.93, latency=1.0),
]
WINDOW = 200
_names = itertools.count()


def _data() -> pd.DataFrame:
    X, y = make_classification(
        n_samples=3000,
        n_features=6,
        n_informative=5,
        n_redundant=0,
        n_classes=4,
        n_clusters_per_class=1,
        class_sep=1.6,
        random_state=11,
    )
    df = pd.DataFrame(X.round(4), columns=FEATURES)
    df.insert(0, "uid", [f"u{i:04d}" for i in range(len(df))])
    df["truth"] = np.asarray(LABELS)[y]
    return df


def _write_campaign(tmp: Path, label_studio, name: str, pool: pd.DataFrame) -> Path:
    pool.to_csv(tmp / "pool.csv", index=False)
    cfg = {
        "name": name,
        "data": {
            "source": str(tmp / "pool.csv"),
            "id_column": "uid",
            "label_column": "truth",
            "holdout": {"fraction": 0.3},
        },
        "labels": LABELS,
        "batch_size": 20,
        "cold_start_size": 24,
        "annotators_per_item": 1,
        "budget": {"cost_per_annotation": 0.1},
        "stop_set_size": 100,
        "labelstudio": {"url": label_studio.url, "token_env": "LOOPWISE_TEST_LS_TOKEN"},
        "storage_root": str(tmp / "store"),
        "mlflow": {
            "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
            "artifact_location": (tmp / "mlartifacts").as_uri(),
        },
        "schedule": {"recheck_seconds": 3600},
        "stream": {
            "target_rate": 0.15,
            "control_share": 0.4,
            "dispatch_batch": 7,
            "retrain_deployment": f"retrain/retrain-{name}",
            "triggers": {"drift_window": WINDOW, "min_new_labels": 10_000, "min_control": 1000},
        },
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _create_deployment(flow_name: str, name: str, entrypoint: str, fn) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.utilities.callables import parameter_schema

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(flow_name)
        return client.create_deployment(
            flow_id=flow_id,
            name=name,
            entrypoint=entrypoint,
            parameter_openapi_schema=parameter_schema(fn).model_dump_for_openapi(),
        )


def _flow_runs(deployment_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


def _project(ls_client, title: str):
    (project,) = [p for p in ls_client.projects.list(title=title) if p.title == title]
    return project


def _tasks(ls_client, title: str) -> list[dict[str, Any]]:
    pid = _project(ls_client, title).id
    return [
        t.model_dump(mode="json")
        for t in ls_client.tasks.list(project=pid, fields="all", page_size=1000)
    ]


def _annotate(label_studio, ls_client, title: str, truth: dict[str, str], seed: int) -> None:
    simulate_annotators(
        label_studio.url,
        label_studio.token,
        int(_project(ls_client, title).id),
        truth,
        PROFILES,
        labels=LABELS,
        data_kind="tabular",
        random_state=seed,
    )


class _Crash(RuntimeError):
    pass


@dataclass
class Scenario:
    name: str
    path: Path
    store: Store
    truth: dict[str, str]  # stream item id → true label
    first_run: dict[str, Any] | None = None
    crashed_selected: list[str] = field(default_factory=list)  # run 1's selected items
    tasks_after_rerun: list[dict[str, Any]] = field(default_factory=list)
    rerun: dict[str, Any] | None = None
    feedback_run: dict[str, Any] | None = None
    labeled_run: dict[str, Any] | None = None
    drift_runs: list[dict[str, Any]] = field(default_factory=list)
    retrain_runs: list[Any] = field(default_factory=list)
    retrained: dict[str, Any] | None = None
    retrained_again: dict[str, Any] | None = None
    versions_before: int = 0
    versions_after: int = 0
    bad_rejected: int = 0
    report: dict[str, Any] | None = None
    busy: dict[str, Any] | None = None
    busy_wrote: bool = True
    cli_status: Any = None


def _send(client, rows: pd.DataFrame, prefix: str) -> list[str]:
    """Requests for ``rows`` through the gateway (one batch, then singles); their ids."""
    ids = [f"{prefix}-{u}" for u in rows["uid"]]
    recs = [
        {"request_id": i, "inputs": {f: float(v) for f, v in zip(FEATURES, r, strict=True)}}
        for i, r in zip(ids, rows[FEATURES].to_numpy(), strict=True)
    ]
    half = len(recs) // 2
    resp = client.post("/predict", json={"records": recs[:half]})
    assert resp.status_code == 200, resp.text
    for r in recs[half:]:
        assert client.post("/predict", json=r).status_code == 200
    return ids


@pytest.fixture(scope="module")
def scenario(harness, label_studio, ls_client, tmp_path_factory) -> Iterator[Scenario]:
    import mlflow
    from fastapi.testclient import TestClient

    from flows.cycle import cycle
    from flows.stream import retrain, stream
    from loopwise.config import load_campaign
    from serving.gateway import create_app
    from tasks.report import campaign_records

    tmp = tmp_path_factory.mktemp("stream")
    data = _data()
    pool, live = data.iloc[:2000], data.iloc[2000:].reset_index(drop=True)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
        name = f"streamtest-{next(_names)}"
        path = _write_campaign(tmp, label_studio, name, pool)
        cfg = load_campaign(path)
        store = Store(f"{cfg.storage_root}/{name}")
        truth_pool = dict(zip(pool["uid"], pool["truth"], strict=True))
        # A champion from the pool path: cold start, answers, one cycle.
        cycle(campaign=str(path))
        _annotate(label_studio, ls_client, cfg.project_title, truth_pool, seed=1)
        cycle(campaign=str(path), close_batch=True)
        dep = _create_deployment("retrain", f"retrain-{name}", "flows/stream.py:retrain", retrain)
        sc = Scenario(name, path, store, {})

        with TestClient(create_app(cfg)) as gw:
            # Pre-drift traffic: two windows; one malformed record a foreign writer logged.
            calm = live.iloc[: 2 * WINDOW]
            ids = _send(gw, calm, "calm")
            sc.truth |= {f"s-{i}": t for i, t in zip(ids, calm["truth"], strict=True)}
            # Another app's records: one without a time, one without probabilities or a
            # decision (the flow predicts and decides it), one missing an input.
            row = {f: float(v) for f, v in zip(FEATURES, live.iloc[-1][FEATURES], strict=True)}
            when = "2026-12-01T00:00:00Z"
            store.append_jsonl(
                "stream/log/other-app/000000.jsonl",
                [
                    {"request_id": "broken-1", "model_name": "m", "inputs": {"f0": 1.0}},
                    {
                        "request_id": "ext-1",
                        "time": when,
                        "model_name": "m",
                        "model_version": None,
                        "inputs": row,
                    },
                    {
                        "request_id": "ext-2",
                        "time": when,
                        "model_name": "m",
                        "model_version": None,
                        "inputs": {"f0": 1.0},
                    },
                ],
            )
            sc.bad_rejected = gw.post("/predict", json={"inputs": {"f0": "x"}}).status_code

            # Stream run 1 dies after its first Label Studio import; the rerun finishes it.
            import flows.stages.stream as stages

            real = stages.dispatch_batch
            calls = itertools.count()

            def crash_after_first(*args, **kwargs):
                out = real(*args, **kwargs)
                if next(calls) == 0:
                    raise _Crash("injected crash after the first import")
                return out

            with pytest.MonkeyPatch.context() as inject:
                inject.setattr(stages, "dispatch_batch", crash_after_first)
                with pytest.raises(_Crash):
                    stream(campaign=str(path))
            sc.crashed_selected = [
                s["item_id"] for s in store.read_json("stream/runs/000001.json")["selected"]
            ]
            sc.rerun = stream(campaign=str(path))
            sc.tasks_after_rerun = _tasks(ls_client, cfg.project_title)

            # Feedback from the production app: a correction and a confirmation.
            fb_ids = ids[:2]
            gw.post(
                "/feedback", json={"request_id": fb_ids[0], "label": sc.truth[f"s-{fb_ids[0]}"]}
            )
            gw.post("/feedback", json={"request_id": fb_ids[1], "correct": True, "user": "u7"})
            sc.feedback_run = stream(campaign=str(path))

            # Annotators answer the stream tasks; the next run collects and accepts them.
            _annotate(label_studio, ls_client, cfg.project_title, sc.truth, seed=2)
            sc.labeled_run = stream(campaign=str(path))

            # Drift: two windows from two classes only, with two features moved.
            shifted = live.iloc[2 * WINDOW :]
            shifted = shifted[shifted["truth"].isin(["ant", "bee"])]
            shifted = pd.concat([shifted] * 3).iloc[: 2 * WINDOW].copy()
            shifted["uid"] = [f"{u}-{k}" for k, u in enumerate(shifted["uid"])]
            shifted[["f0", "f1"]] += 2.5
            ids = _send(gw, shifted, "drift")
            sc.truth |= {f"s-{i}": t for i, t in zip(ids, shifted["truth"], strict=True)}
            sc.drift_runs.append(stream(campaign=str(path)))
            sc.drift_runs.append(stream(campaign=str(path)))
            sc.retrain_runs = _flow_runs(dep)

            # The retrain the trigger asked for, as a worker would run it; then once more.
            client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
            model = f"loopwise-{name}"
            sc.versions_before = len(client.search_model_versions(f"name='{model}'"))
            (run,) = sc.retrain_runs or [None]
            params = run.parameters if run else {"campaign": str(path), "key": "k"}
            sc.retrained = retrain(**params)
            sc.retrained_again = retrain(**params)
            sc.versions_after = len(client.search_model_versions(f"name='{model}'"))
        # A second stream run while another holds the campaign does nothing.
        from storage.campaign import acquire_lease

        held = acquire_lease(store, "another stream run", 60)
        try:
            runs_before = store.list("stream/runs")
            sc.busy = stream(campaign=str(path))
            sc.busy_wrote = store.list("stream/runs") != runs_before
        finally:
            held.release()
        sc.report = campaign_records(store)
        from typer.testing import CliRunner

        from flows.cli import app

        sc.cli_status = CliRunner().invoke(app, ["status", str(path)])
        yield sc


def test_a_crashed_stream_run_is_rerun_without_a_duplicate_or_a_gap(scenario):
    stream_tasks = [t["data"]["item_id"] for t in scenario.tasks_after_rerun]
    stream_tasks = [i for i in stream_tasks if i.startswith("s-")]
    assert scenario.crashed_selected, "the first stream run selected records"
    assert sorted(stream_tasks) == sorted(scenario.crashed_selected)
    assert len(stream_tasks) == len(set(stream_tasks))
    sent = [
        r["item_id"]
        for k in scenario.store.list("dispatch")
        for r in scenario.store.read_jsonl(k)
        if r.get("event") == "sent" and r["item_id"].startswith("s-")
    ]
    first = set(scenario.crashed_selected)
    assert Counter(i for i in sent if i in first) == Counter(scenario.crashed_selected)


def test_stream_tasks_carry_the_served_prediction_and_its_model_version(scenario):
    runs = scenario.store.read_json("stream/runs/000001.json")
    by_item = {s["item_id"]: s for s in runs["selected"]}
    seen = 0
    for t in scenario.tasks_after_rerun:
        item = t["data"]["item_id"]
        if item not in by_item:
            continue
        (pred,) = t["predictions"]
        assert pred["model_version"] == str(by_item[item]["model_version"])
        choice = pred["result"][0]["value"]["choices"][0]
        assert choice == by_item[item]["prediction_label"]
        seen += 1
    assert seen == len(by_item)


def test_every_logged_request_is_read_once_and_bad_ones_are_quarantined(scenario):
    runs = [scenario.store.read_json(k) for k in scenario.store.list("stream/runs")]
    # A run that found nothing new leaves no checkpoint (the scenario has three such).
    assert all(r["records"] > 0 for r in runs) and len(runs) == 2
    valid = sum(r["valid"] for r in runs)
    assert valid == 4 * WINDOW + 1  # calm and drifted traffic, each request once; ext-1
    assert runs[0]["decided_here"] == 1, "the record logged without a decision"
    bad = scenario.store.read_jsonl("quarantine/stream-log.jsonl")
    assert [b["values"]["request_id"] for b in bad] == ["broken-1", "ext-2"]
    assert bad[0]["reason"].startswith("time")
    assert bad[1]["reason"].startswith("inputs.f1")
    assert scenario.bad_rejected == 422


def test_feedback_becomes_answers_of_its_own_annotator(scenario):
    pid = scenario.store.read_json("state.json")["project_id"]
    answers = [
        r
        for r in scenario.store.read_jsonl(f"annotations/{pid}.jsonl")
        if str(r.get("annotator", "")).startswith("feedback:")
    ]
    assert {a["annotator"] for a in answers} == {"feedback:app", "feedback:u7"}
    assert all(a["status"] == "accepted" and a["label"] in LABELS for a in answers)
    assert scenario.feedback_run["feedback"]["new"] == 2


def test_stream_labels_link_back_to_request_version_and_prediction(scenario):
    from loopwise.streaming import attribution

    pid = scenario.store.read_json("state.json")["project_id"]
    labels = {r["item_id"]: r for r in scenario.store.read_jsonl(f"labels/{pid}.jsonl")}
    rows = attribution(scenario.store.read_jsonl("stream/selected.jsonl"), labels)
    assert len(rows) >= 10
    for r in rows:
        assert r["request_id"] and r["item_id"] == f"s-{r['request_id']}"
        assert r["model_version"] is not None and r["prediction"] in LABELS


def test_drift_fires_exactly_one_retrain(scenario):
    triggers = scenario.store.read_jsonl("stream/triggers.jsonl")
    # The drifted window fires its input rule (and, its class mix moved, the prediction
    # rule): one window, one retrain run, asked for by the first rule that fired.
    assert triggers and all(t["rule"] in ("input_drift", "prediction_drift") for t in triggers)
    assert len({t["numbers"]["window_index"] for t in triggers}) == 1
    (requested,) = scenario.store.read_jsonl("stream/requested.jsonl")
    assert requested["created"] is True and requested["key"] == triggers[0]["key"]
    assert len(scenario.retrain_runs) == 1
    assert scenario.retrain_runs[0].idempotency_key == requested["key"]
    boost = scenario.store.read_json("stream/boost.json")
    assert boost["factor"] > 1


def test_the_retrain_is_gated_once_and_logged(scenario):
    assert scenario.retrained["status"] == "retrained"
    assert scenario.retrained["stream_labels"] > 0
    assert scenario.retrained_again["status"] == "done before"
    assert scenario.versions_after == scenario.versions_before + 1
    assert scenario.retrained["gate"] in ("promoted", "challenger")


def test_the_report_has_a_stream_section(scenario):
    st = scenario.report["stream"]
    assert st["records"] == 4 * WINDOW + 3
    assert st["quarantined"] == 2
    assert st["labels"] >= 10
    assert len(st["windows"]) == 4
    assert st["triggers"][0]["request"]["created"] is True
    assert len(st["retrains"]) == 1
    assert st["online_accuracy"], "control labels give an online accuracy per version"


def test_a_second_stream_run_while_the_campaign_is_held_does_nothing(scenario):
    assert scenario.busy["status"] == "busy"
    assert scenario.busy["holder"]["holder"] == "another stream run"
    assert not scenario.busy_wrote


def test_loopwise_status_shows_the_stream(scenario):
    out = scenario.cli_status
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert f"{4 * WINDOW + 3:,} request(s) read (2 quarantined)" in text
    assert "last trigger input_drift" in text or "last trigger prediction_drift" in text
