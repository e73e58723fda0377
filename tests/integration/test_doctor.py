"""``loopwise doctor`` against the real services: a real Label Studio, Prefect's test
harness, MLflow on SQLite. A campaign's cold start runs; then the store and the services
are damaged four ways (a truncated state.json, a task imported into the project without a
receipt, a lease that lapsed unreleased, a second waiting next-cycle run); doctor finds
each, ``doctor --repair`` fixes each, and the campaign's next cycle runs on the repaired
store, after which doctor finds nothing (MLflow included)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_classification
from typer.testing import CliRunner

from devstack.annotators import AnnotatorProfile, simulate_annotators
from storage.store import Store

pytestmark = pytest.mark.integration

LABELS = ["ant", "bee", "cat", "dog"]
PROFILES = [
    AnnotatorProfile(name="ann", accuracy=0.97, latency=1.0),
    AnnotatorProfile(name="bob", accuracy=0.93, latency=1.0),
    AnnotatorProfile(name="cyd", accuracy=0.9, latency=1.0),
]
STRAY = "u0800"  # a pool item that reaches the project without a receipt


def _write_campaign(tmp: Path, label_studio, name: str) -> Path:
    X, y = make_classification(
        n_samples=900, n_features=6, n_informative=5, n_redundant=0, n_classes=4,
        n_clusters_per_class=1, class_sep=1.6, random_state=7,
    )  # fmt: skip
    df = pd.DataFrame(X.round(4), columns=[f"f{i}" for i in range(6)])
    df.insert(0, "uid", [f"u{i:04d}" for i in range(len(df))])
    df["truth"] = np.asarray(LABELS)[y]
    df.to_csv(tmp / "pool.csv", index=False)
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
        "cold_start_size": 16,
        "annotators_per_item": 2,
        "max_annotations_per_item": 3,
        "budget": {"labels": 96, "cost_per_annotation": 0.1},
        "labelstudio": {"url": label_studio.url, "token_env": "LOOPWISE_TEST_LS_TOKEN"},
        "storage_root": str(tmp / "store"),
        "mlflow": {
            "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
            "artifact_location": (tmp / "mlartifacts").as_uri(),
        },
        "schedule": {"recheck_seconds": 3600},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


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


def _waiting_next_runs(deployment_id) -> dict[str, str]:
    """flow run id → state type of the deployment's next-cycle runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
    return {str(r.id): r.state.type.value for r in runs if "next-cycle" in r.tags}


def _damage(store: Store, ls_client, pid: int, deployment_id, pool: pd.DataFrame) -> str:
    """The four kinds of damage; returns the id of the extra next-cycle run."""
    from prefect.client.orchestration import get_client

    from loopwise.labelstudio import default_to_name, task_payload

    store.path("state.json").write_text('{"cycle": 0, "stage": "wai')
    row = pool.set_index("uid").loc[STRAY, [f"f{i}" for i in range(6)]].to_dict()
    payload = task_payload(
        STRAY, {"record": row}, labels=LABELS, to_name=default_to_name("tabular")
    )
    ls_client.projects.import_tasks(id=pid, request=[payload])
    seqs = [int(k.rsplit("/", 1)[-1].split(".")[0]) for k in store.list("lease")]
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    store.write_json(
        f"lease/{max(seqs) + 1:012d}.json",
        {"holder": "flow run that died", "acquired_at": long_ago.isoformat(),
         "renewed_at": long_ago.isoformat(),
         "expires_at": (long_ago + dt.timedelta(minutes=10)).isoformat(), "released": False},
    )  # fmt: skip
    with get_client(sync_client=True) as client:
        extra = client.create_flow_run_from_deployment(
            deployment_id,
            parameters={"campaign": "elsewhere.yaml"},
            tags=["loopwise", "next-cycle"],
        )
    return str(extra.id)


@pytest.fixture(scope="module")
def doctored(harness, label_studio, ls_client, tmp_path_factory):
    """The cold start, doctor on it, the damage, doctor, doctor --repair, doctor, the
    next cycle, doctor: every output kept."""
    from flows.cli import app
    from flows.cycle import cycle
    from loopwise.config import load_campaign

    tmp = tmp_path_factory.mktemp("doctor")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
        name = "doctortest"
        path = _write_campaign(tmp, label_studio, name)
        cfg = load_campaign(path)
        deployment_id = _create_deployment(name)
        store = Store(f"{cfg.storage_root}/{name}")
        cli = CliRunner()
        out = {"cold": cycle(campaign=str(path))}
        out["healthy"] = cli.invoke(app, ["doctor", str(path)])
        pid = int(store.read_json("state.json")["project_id"])
        pool = pd.read_csv(cfg.data.source)
        out["extra_run"] = _damage(store, ls_client, pid, deployment_id, pool)
        out["runs_before"] = _waiting_next_runs(deployment_id)
        out["damaged"] = cli.invoke(app, ["doctor", str(path)])
        out["repair"] = cli.invoke(app, ["doctor", str(path), "--repair"])
        out["runs_after"] = _waiting_next_runs(deployment_id)
        out["state"] = store.read_json("state.json")
        out["dispatch"] = store.read_jsonl(f"dispatch/{pid}.jsonl")
        out["leases"] = {k: store.read_json(k) for k in store.list("lease")}
        out["again"] = cli.invoke(app, ["doctor", str(path)])
        truth = dict(zip(pool["uid"], pool["truth"], strict=True))
        nxt = {"status": "waiting"}
        for seed in range(1, 5):
            simulate_annotators(
                label_studio.url, label_studio.token, pid, truth, PROFILES, labels=LABELS,
                data_kind="tabular", random_state=seed,
            )  # fmt: skip
            nxt = cycle(campaign=str(path))
            if nxt["status"] != "waiting":
                break
        out["next"] = nxt
        out["after_cycle"] = cli.invoke(app, ["doctor", str(path)])
        yield out


def test_doctor_finds_nothing_after_the_cold_start(doctored):
    assert doctored["cold"]["status"] == "dispatched"
    res = doctored["healthy"]
    assert res.exit_code == 0 and "no problem found" in res.output, res.output


@pytest.mark.parametrize(
    "code", ["state-unreadable", "task-without-receipt", "lease-lapsed", "next-runs-waiting"]
)
def test_doctor_finds_each_damage(doctored, code):
    res = doctored["damaged"]
    assert res.exit_code == 1 and code in res.output, res.output
    assert "Traceback" not in res.output


def test_the_damage_left_two_waiting_next_runs(doctored):
    assert list(doctored["runs_before"].values()).count("SCHEDULED") == 2, doctored["runs_before"]


def test_doctor_repair_fixes_everything_it_found(doctored):
    res = doctored["repair"]
    assert res.exit_code == 0 and "after the repair: no problem found" in res.output, res.output


def test_the_state_is_rebuilt_as_the_cold_start_left_it(doctored):
    state = doctored["state"]
    assert (state["cycle"], state["stage"], len(state["open_batch"])) == (0, "waiting", 16)


def test_the_stray_task_gets_a_reconciled_receipt(doctored):
    (receipt,) = [r for r in doctored["dispatch"] if r.get("item_id") == STRAY]
    assert receipt["event"] == "sent" and receipt["reconciled"] is True


def test_the_lapsed_lease_is_released(doctored):
    held = [k for k, r in doctored["leases"].items() if not r["released"]]
    assert not held, held


def test_only_the_newest_next_run_waits(doctored):
    runs = doctored["runs_after"]
    assert list(runs.values()).count("SCHEDULED") == 1, runs
    assert runs[doctored["extra_run"]] == "SCHEDULED", "the newest one is kept"


def test_doctor_after_the_repair_exits_0(doctored):
    assert doctored["again"].exit_code == 0, doctored["again"].output


def test_the_next_cycle_runs_on_the_repaired_store(doctored):
    assert doctored["next"]["status"] == "dispatched" and doctored["next"]["cycle"] == 1


def test_doctor_finds_nothing_after_the_next_cycle_mlflow_included(doctored):
    res = doctored["after_cycle"]
    assert res.exit_code == 0 and "no problem found" in res.output, res.output
