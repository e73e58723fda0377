"""Chaos: randomized fault scenarios against the real servers, counting invariant violations.

Each scenario runs a small synthetic campaign (a real Label Studio, Prefect's test harness,
MLflow on SQLite, a local store) from its cold start until it stops or ``--runs`` runs
have passed, with simulated annotators answering between runs, and injects one fault,
drawn at random, at a random run:

- ``crash``: a stage's task raises right after its side effect (as a worker killed
  there would leave things), then the campaign goes on with the next run;
- ``concurrent``: two runs of the campaign are triggered at the same moment (threads);
- ``labelstudio-down``: Label Studio is stopped before a run and started again after it;
- ``truncated-state``: ``state.json`` is cut short before a run; ``loopwise doctor
  --repair`` mends it when the command exists, else the scenario ends there;
- ``pool-edit``: a tenth of the pool file's rows, labeled ones among them, are deleted.

After every scenario the invariants are checked on the store, Label Studio, MLflow and
Prefect:

1. no item has two Label Studio tasks;
2. no ledger record twice: annotations by (id, version), labels by item, receipts by item;
3. every label belongs to an item that was sent, and is one of its annotators' answers
   (nothing attached to another item);
4. at most one waiting next run of the campaign;
5. one MLflow run per trained cycle and one model version per run;
6. the history's cycles are distinct and increasing.

    python bench/chaos.py --scenarios 50          # writes bench/results/chaos.{json,md}
    python bench/chaos.py --scenarios 5 --out /tmp/chaos

Slow (about a minute a scenario on 2 shared cores); not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KINDS = ("crash", "concurrent", "labelstudio-down", "truncated-state", "pool-edit")
LABELS = ["ant", "bee", "cat", "dog"]
CRASH_POINTS = [
    ("flows.stages.dispatch", "dispatch_batch"),
    ("flows.stages.advance", "collect_annotations"),
    ("flows.stages.advance", "consensus_qc"),
    ("flows.stages.train", "log_cycle"),
    ("flows.stages.decide", "stopping_decision"),
    ("flows.stages.select", "select_batch"),
    ("flows.stages.dispatch", "schedule_next_run"),
]
TOKEN_ENV = "LOOPWISE_CHAOS_LS_TOKEN"


class Injected(RuntimeError):
    """The fault a scenario injects."""


def write_campaign(tmp: Path, url: str, name: str, seed: int) -> Path:
    """A 4-class pool of 400 rows with an id column; batches of 10, 60 labels at most."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=400, n_features=5, n_informative=4, n_redundant=0, n_classes=4,
        n_clusters_per_class=1, class_sep=1.8, random_state=seed,
    )  # fmt: skip
    df = pd.DataFrame(X.round(4), columns=[f"f{i}" for i in range(5)])
    df.insert(0, "uid", [f"u{i:04d}" for i in range(len(df))])
    df["truth"] = np.asarray(LABELS)[y]
    tmp.mkdir(parents=True, exist_ok=True)
    df.to_csv(tmp / "pool.csv", index=False)
    cfg = {
        "name": name,
        "data": {
            "source": str(tmp / "pool.csv"),
            "id_column": "uid",
            "label_column": "truth",
            "holdout": {"fraction": 0.25},
        },
        "labels": LABELS,
        "batch_size": 10,
        "cold_start_size": 12,
        "annotators_per_item": 2,
        "max_annotations_per_item": 3,
        "budget": {"labels": 60, "cost_per_annotation": 0.1},
        "storage_root": str(tmp / "store"),
        "labelstudio": {"url": url, "token_env": TOKEN_ENV},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}"},
        "schedule": {"deployment": f"cycle/{name}", "recheck_seconds": 600},
        "seed": seed,
    }
    path = tmp / "campaign.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def create_deployment(name: str) -> Any:
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
        )


def run_once(path: Path) -> dict[str, Any] | str:
    """One cycle run; its result, or the error it ended with."""
    from flows.cycle import cycle

    try:
        return cycle(campaign=str(path))
    except Exception as err:  # a fault may end any run; the invariants judge the outcome
        return f"{type(err).__name__}: {str(err)[:200]}"


def annotate(path: Path, token: str, seed: int) -> None:
    from devstack.annotators import load_profiles
    from devstack.campaign import annotate_campaign, campaign_project_id, ground_truth
    from loopwise.config import load_campaign

    cfg = load_campaign(path)
    pid = campaign_project_id(cfg, token)
    if pid is not None:
        profiles = load_profiles(REPO / "configs" / "annotators.yaml")
        annotate_campaign(cfg, token, pid, ground_truth(cfg), profiles, seed)


def inject(kind: str, path: Path, rng: np.random.Generator, ls: dict[str, Any]) -> list:
    """Run the faulty run of a scenario; the results of the runs it made."""
    import pytest

    if kind == "crash":
        module_name, name = CRASH_POINTS[rng.integers(len(CRASH_POINTS))]
        module = __import__(module_name, fromlist=[name])
        real = getattr(module, name)

        def crashing(*args: Any, **kwargs: Any) -> Any:
            real(*args, **kwargs)
            raise Injected(f"killed after {module_name}.{name}")

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(module, name, crashing)
            return [run_once(path)]
    if kind == "concurrent":
        out: list = []
        threads = [threading.Thread(target=lambda: out.append(run_once(path))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out
    if kind == "labelstudio-down":
        from devstack import labelstudio_server as lss

        lss.stop(ls["info"])
        try:
            return [run_once(path)]
        finally:
            ls["info"] = lss.start(ls["work_dir"], ls["info"].port, **ls["paths"])
            os.environ[TOKEN_ENV] = ls["info"].token
    if kind == "truncated-state":
        return _truncated_state(path)
    return _pool_edit(path, rng)


def _truncated_state(path: Path) -> list:
    from loopwise.config import load_campaign

    cfg = load_campaign(path)
    state = Path(cfg.storage_root) / cfg.name / "state.json"
    if state.exists():
        state.write_bytes(state.read_bytes()[: max(1, state.stat().st_size // 2)])
    from typer.testing import CliRunner

    from flows.cli import app

    out: list = [run_once(path)]
    repaired = CliRunner().invoke(app, ["doctor", str(path), "--repair"])
    if "No such command" not in repaired.output:  # `loopwise doctor` mends the state
        out.append(f"doctor --repair exit {repaired.exit_code}")
    return out


def _pool_edit(path: Path, rng: np.random.Generator) -> list:
    from loopwise.config import load_campaign

    source = Path(load_campaign(path).data.source)
    df = pd.read_csv(source)
    keep = rng.random(len(df)) >= 0.1
    df[keep].to_csv(source, index=False)
    return [run_once(path)]


def check(path: Path, deployment_id: Any, token: str) -> list[str]:
    """The violations of the invariants, one sentence each."""
    from loopwise.config import load_campaign
    from storage.campaign import Ledgers, campaign_store
    from tasks.labelstudio import connect

    cfg = load_campaign(path)
    store = campaign_store(cfg.storage_root, cfg.name)
    found: list[str] = []
    client = connect(cfg.labelstudio.url, token)
    projects = [p for p in client.projects.list(title=cfg.project_title)]
    if not projects:
        return found
    pid = int(projects[0].id)
    tasks = client.tasks.list(project=pid, fields="task_only", page_size=1000)
    per_item = Counter(str((t.data or {}).get("item_id")) for t in tasks)
    found += [f"item {i} has {n} tasks" for i, n in per_item.items() if n > 1]
    led = Ledgers(store, pid)
    found += _ledger_violations(led)
    found += _next_run_violations(deployment_id)
    found += _mlflow_violations(cfg)
    try:
        state = store.read_json("state.json", {}) or {}
    except ValueError as err:  # cut short and not repaired: the campaign waits for a repair
        return [*found, f"state.json unreadable after the scenario ({err})"]
    history = [h["cycle"] for h in state.get("history", [])]
    if history != sorted(set(history)):
        found.append(f"history cycles {history} repeat or go back")
    return found


def _ledger_violations(led: Any) -> list[str]:
    found = []
    ann = led.read("annotations")
    dup = [
        k for k, n in Counter((r["annotation_id"], r["updated_at"]) for r in ann).items() if n > 1
    ]
    found += [f"annotation {k} recorded more than once" for k in dup]
    labels = led.read("labels")
    versions = Counter((r["item_id"], r.get("version") or 1) for r in labels)
    found += [f"item {i} labeled twice as version {v}" for (i, v), n in versions.items() if n > 1]
    sent = Counter(r["item_id"] for r in led.read("dispatch") if r.get("event") == "sent")
    found += [f"item {i} has {n} receipts" for i, n in sent.items() if n > 1]
    answers: dict[str, set] = {}
    for r in led.annotations(["accepted"]):
        answers.setdefault(r["item_id"], set()).add(r["label"])
    for r in labels:
        if r["item_id"] not in sent:
            found.append(f"label of item {r['item_id']} that was never sent")
        elif r["label"] not in answers.get(r["item_id"], set()):
            found.append(f"label {r['label']!r} of item {r['item_id']} is none of its answers")
    return found


def _next_run_violations(deployment_id: Any) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
    waiting = [r for r in runs if r.state.type == StateType.SCHEDULED and "next-cycle" in r.tags]
    return [f"{len(waiting)} next runs waiting"] if len(waiting) > 1 else []


def _mlflow_violations(cfg: Any) -> list[str]:
    import mlflow

    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    exp = client.get_experiment_by_name(cfg.experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id])
    per_cycle = Counter(r.data.tags.get("loopwise.cycle") for r in runs)
    found = [f"cycle {c} has {n} MLflow runs" for c, n in per_cycle.items() if n > 1]
    try:
        versions = client.search_model_versions(f"name='loopwise-{cfg.name}'")
    except Exception:  # no registered model yet
        versions = []
    per_run = Counter(v.run_id for v in versions)
    return found + [f"MLflow run {r} has {n} model versions" for r, n in per_run.items() if n > 1]


def scenario(i: int, kind: str, rng: np.random.Generator, ls: dict, work: Path, runs: int) -> dict:
    """One campaign with one fault; what happened and the violations found."""
    name = f"chaos-{i:03d}-{kind}"
    path = write_campaign(work / name, ls["info"].url, name, seed=i)
    deployment_id = create_deployment(name)
    fault_at = int(rng.integers(1, 4))
    outcomes, t0 = [], time.monotonic()
    for r in range(runs):
        results = inject(kind, path, rng, ls) if r == fault_at else [run_once(path)]
        outcomes.append([o if isinstance(o, str | int) else o.get("status") for o in results])
        if any(isinstance(o, dict) and o.get("status") == "stopped" for o in results):
            break
        annotate(path, ls["info"].token, seed=i * 100 + r)
    violations = check(path, deployment_id, ls["info"].token)
    return {
        "scenario": i,
        "kind": kind,
        "fault_at_run": fault_at,
        "outcomes": outcomes,
        "violations": violations,
        "seconds": round(time.monotonic() - t0, 1),
    }


def report(results: list[dict], seconds: float) -> str:
    by_kind = Counter(r["kind"] for r in results)
    bad = [r for r in results if r["violations"]]
    lines = [
        "# Chaos: randomized faults against the real servers",
        "",
        f"{len(results)} scenarios in {seconds / 60:.1f} min; "
        f"**{sum(len(r['violations']) for r in results)} invariant violations** "
        f"in {len(bad)} scenario(s).",
        "",
        "| fault | scenarios | with a violation |",
        "|---|---|---|",
        *(
            f"| {k} | {n} | {sum(1 for r in bad if r['kind'] == k)} |"
            for k, n in sorted(by_kind.items())
        ),
        "",
        "Command: `python bench/chaos.py --scenarios N` (see the module docstring for the "
        "faults and the invariants).",
    ]
    for r in bad:
        lines.append(f"- scenario {r['scenario']} ({r['kind']}): {'; '.join(r['violations'][:5])}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", type=int, default=50)
    parser.add_argument("--runs", type=int, default=8, help="runs per scenario at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness

    from devstack import labelstudio_server as lss

    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="loopwise-chaos-"))
    paths = {"data_dir": work / "ls-data", "state_file": work / "ls.json"}
    ls = {"work_dir": lss.DEFAULT_WORK_DIR, "paths": paths}
    ls["info"] = lss.start(ls["work_dir"], **paths)
    os.environ[TOKEN_ENV] = ls["info"].token
    results, t0 = [], time.monotonic()
    try:
        with prefect_test_harness(server_startup_timeout=120):
            for i in range(args.scenarios):
                kind = KINDS[i % len(KINDS)]  # every fault as often as the others
                results.append(scenario(i, kind, rng, ls, work, args.runs))
                r = results[-1]
                print(f"scenario {i} {kind}: {len(r['violations'])} violation(s), {r['seconds']} s")
                write(args.out, results, time.monotonic() - t0)  # a stopped bench keeps its part
    finally:
        lss.stop(ls["info"])
    write(args.out, results, time.monotonic() - t0)
    print(report(results, time.monotonic() - t0))


def write(out: Path, results: list[dict], seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "chaos.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "chaos.md").write_text(report(results, seconds))


if __name__ == "__main__":
    main()
