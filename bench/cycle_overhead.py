"""Cycle overhead: Prefect, MLflow logging and storage against the same steps as plain calls.

Target (issue): "Orchestration overhead (Prefect, MLflow logging, storage) at most 15 % of
a cycle's wall time on a 100,000-row pool, measured against the same steps called as
plain functions."

Setup (not timed): a synthetic table of ``--rows`` rows (sklearn ``make_classification``,
20 float32 features, 10 classes, a ``label`` column of ground truth) written as Parquet to
a temporary folder and used as the campaign's ``data.source``; the holdout is the
campaign's hashed 20 % split of it; ``--labeled`` pool rows (500) are labeled (label
ledger and dispatch ledger written to a local :class:`storage.store.Store`), four
earlier cycles sit in ``state.json`` so that the stopping rules fit a learning curve,
and the previous cycle's stop-set predictions are checkpointed. MLflow logs to SQLite
in the temporary folder (artifacts there too).

One cycle's compute, timed two ways in one process, interleaved, median of
``--repeats`` after one untimed warm-up of each:

(a) plain — the pure functions: ``pandas.read_parquet``, ``loopwise.items.assign_ids`` /
    ``holdout_mask``, the label join, ``tasks.data.features``, ``build_model(...).fit``,
    ``evaluate_model``, stop-set predictions and kappa, ``loopwise.stopping.decide``,
    ``partition_scores`` over ``score_partitions`` (4) partitions,
    ``select_from_candidates`` with the default strategy (cluster_margin),
    ``batch_records``. No Prefect, no MLflow, no Store.
(b) orchestrated — the same steps the way ``flows/cycle.py`` runs them, in a ``@flow``:
    the tasks ``load_pool``, ``split_holdout``, ``labeled_snapshot`` (Parquet snapshot
    in the Store), ``fit``, ``evaluate``, ``log_cycle`` (MLflow run, figures, dataset,
    registered model, champion alias), ``stopping_decision``, ``log_decision``,
    ``score_pool`` (the cycle's ``score_partition.map``), ``select_batch``; ledgers, the stop
    set, checkpoints and ``state.json`` through ``tasks.state`` / the Store. Label
    Studio (collect, consensus, dispatch, schedule) is left out: its I/O has its own
    benchmark (bench/labelstudio_io.py). The drift check is left out of both paths.

The flow runs against the Prefect API server of
``prefect.testing.utilities.prefect_test_harness()`` (a temporary SQLite database and a
local API server in a subprocess, the same kind of server as ``prefect server start``).
The server start-up is not timed: a trivial flow and one whole cycle run before the
measured ones. The orchestrated wall is the whole flow call (flow-run creation, state
changes, task runs and their events and logs included).

Overhead = (orchestrated − plain) / orchestrated; target ≤ 15 %. Afterwards, to show
where the overhead goes: one more orchestrated cycle under cProfile (main thread); the
same pairs again with Prefect's flow-run heartbeats off (a diagnostic: the heartbeat
thread, joined at the end of every flow run, sleeps in 1 s ticks); and ``--cold-repeats``
cycles of each path in a fresh interpreter each, as a process work pool runs a flow run,
with a bytecode cache (in the temp dir) and without one (``PYTHONDONTWRITEBYTECODE=1``).

    python bench/cycle_overhead.py                        # 100,000 rows (~5 min on 2 shared cores)
    python bench/cycle_overhead.py --rows 20000 --repeats 3 --cold-repeats 0
    python bench/cycle_overhead.py --no-profile

Set PREFECT_HOME (e.g. .loopwise/prefect), PREFECT_SERVER_ANALYTICS_ENABLED=false,
DO_NOT_TRACK=1 and one BLAS thread (OMP_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1) first,
as the Makefile does. Writes bench/results/cycle_overhead.json and cycle_overhead.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# Only what the plain path needs at module level: Prefect, MLflow and ``tasks`` (which
# imports Prefect) are imported by the orchestrated path, so that a fresh process
# running the plain cycle pays for none of them.
from loopwise.batch import batch_records  # noqa: E402
from loopwise.config import CampaignConfig, load_campaign  # noqa: E402
from loopwise.features import model_inputs  # noqa: E402
from loopwise.items import assign_ids, split_by_hash  # noqa: E402
from loopwise.model import build_model, evaluate_model, prediction_agreement  # noqa: E402
from loopwise.scoring import (  # noqa: E402
    partition_bounds,
    partition_scores,
    select_from_candidates,
    strategy_for,
)
from loopwise.stopping import decide, history_records  # noqa: E402

RESULTS = HERE / "results"
TARGET = 0.15
N_FEATURES = 20
N_CLASSES = 10
LABELS = [f"c{i}" for i in range(N_CLASSES)]
PROJECT = 1
#: Cycles 1..4 are history; the warm-up is cycle 5, measured repeats 6, 7, ...
PRIOR = [(1, 100, 0.52), (2, 200, 0.60), (3, 300, 0.645), (4, 400, 0.67)]
FIRST_CYCLE = 5
BATCH = 50

# Wall time of each step of the running cycle, filled by ``_step``.
_STEPS: dict[str, float] = {}


@contextlib.contextmanager
def _step(name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _STEPS[name] = _STEPS.get(name, 0.0) + time.perf_counter() - t0


# ----------------------------------------------------------------------------- setup


def make_campaign(tmp: Path, rows: int, labeled: int, seed: int = 0) -> dict[str, Any]:
    """Write the pool, the campaign file and the store's earlier state; return what the runs need.

    The returned dict is plain JSON (it is also handed to the fresh-process runs).
    """
    import yaml
    from sklearn.datasets import make_classification

    from flows._common import stop_set_ids
    from tasks.state import campaign_store, read_state, write_state

    X, y = make_classification(
        n_samples=rows,
        n_features=N_FEATURES,
        n_informative=12,
        n_redundant=4,
        n_classes=N_CLASSES,
        n_clusters_per_class=1,
        class_sep=1.0,
        random_state=seed,
    )
    df = pd.DataFrame(X.astype(np.float32), columns=[f"f{i:02d}" for i in range(N_FEATURES)])
    df["label"] = np.asarray(LABELS)[y]
    source = tmp / "pool.parquet"
    df.to_parquet(source, engine="pyarrow", index=False)

    cfg_dict = {
        "name": "overhead",
        "data": {"source": str(source), "label_column": "label", "holdout": {"fraction": 0.2}},
        "labels": LABELS,
        "batch_size": BATCH,
        "annotators_per_item": 2,
        "budget": {"cost_per_annotation": 0.08, "value_per_point": 4.0},
        "stopping": {"kappa_threshold": 0.98},
        "stop_set_size": 1000,
        "score_partitions": 4,
        "storage_root": str(tmp / "store"),
        "mlflow": {
            "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
            "artifact_location": (tmp / "mlartifacts").as_uri(),
        },
        "seed": seed,
    }
    campaign = tmp / "overhead.yaml"
    campaign.write_text(yaml.safe_dump(cfg_dict))
    cfg = load_campaign(campaign)

    # The pool as the campaign sees it, to choose the labeled rows and the stop set.
    full = assign_ids(df, None)
    pool, holdout = split_by_hash(
        full, cfg.data.label_column, cfg.labels, cfg.data.holdout.fraction, cfg.data.holdout.seed
    )
    rng = np.random.RandomState(seed)
    lab_rows = np.sort(rng.choice(len(pool), labeled, replace=False))
    ledger = [
        {"item_id": i, "label": lbl}
        for i, lbl in zip(pool["item_id"].iloc[lab_rows], pool["label"].iloc[lab_rows], strict=True)
    ]
    store = campaign_store(cfg.storage_root, cfg.name)
    store.append_jsonl(f"labels/{PROJECT}.jsonl", ledger)
    store.append_jsonl(
        f"dispatch/{PROJECT}.jsonl", [{"item_id": r["item_id"], "event": "sent"} for r in ledger]
    )
    stop_ids = stop_set_ids(store, pool, cfg)  # written to stop_set.json
    prev_pred = [LABELS[int(v)] for v in rng.randint(N_CLASSES, size=len(stop_ids))]
    history = [
        {
            "cycle": c,
            "labels": n,
            "annotations": 2 * n,
            "cost": round(n * cfg.cost_per_item, 6),
            "metric": m,
            "macro_f1": m,
            "kappa": None if c == 1 else 0.8,
        }
        for c, n, m in PRIOR
    ]
    write_state(store, read_state(store), cycle=FIRST_CYCLE - 1, stage="trained", history=history)
    # The previous cycle's trained checkpoint (its stop-set predictions), as a real cycle leaves it.
    save_prev = {"stop_predictions": prev_pred}
    store.write_json(f"cycles/{FIRST_CYCLE - 1:04d}/trained.json", save_prev)
    return {
        "campaign": str(campaign),
        "ledger": ledger,
        "stop_ids": stop_ids,
        "prev_pred": prev_pred,
        "history": history,
        "pool_rows": len(pool),
        "holdout_rows": len(holdout),
    }


def _row(k: int, labels: int, cfg: CampaignConfig, metrics: dict, kappa: float | None) -> dict:
    return {
        "cycle": k,
        "labels": labels,
        "annotations": labels * cfg.annotators_per_item,
        "cost": round(labels * cfg.cost_per_item, 6),
        "metric": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "kappa": kappa,
    }


# ----------------------------------------------------------------------------- plain


def plain_cycle(setup: dict[str, Any], k: int) -> dict[str, Any]:
    """One cycle's compute as plain function calls: no Prefect, no MLflow, no Store."""
    with _step("config"):
        cfg = load_campaign(setup["campaign"])
    label = cfg.data.label_column
    with _step("load + split"):
        df = pd.read_parquet(cfg.data.source, engine="pyarrow")
        df = assign_ids(df.reset_index(drop=True), cfg.data.id_column)
        pool, holdout = split_by_hash(
            df, label, cfg.labels, cfg.data.holdout.fraction, cfg.data.holdout.seed
        )
    with _step("labeled rows"):
        ledger = pd.DataFrame(setup["ledger"], columns=["item_id", "label"]).drop_duplicates(
            "item_id"
        )
        snapshot = pool.drop(columns=["label"]).merge(
            ledger, on="item_id", how="inner", validate="one_to_one"
        )
        snapshot = snapshot.sort_values("item_id", kind="stable").reset_index(drop=True)
        in_stop = pool["item_id"].isin(setup["stop_ids"]).to_numpy()
        unlabeled = ~pool["item_id"].isin(set(ledger["item_id"])).to_numpy()
    with _step("features"):
        X_lab, X_hold, X_pool = model_inputs(cfg, snapshot, holdout, pool)
    y_lab = snapshot["label"].to_numpy()
    with _step("fit"):
        model = build_model(cfg.model.build(), kind=cfg.data.kind, scale=cfg.model.scale)
        model.fit(X_lab, np.asarray(y_lab).astype(str))
    with _step("evaluate + stop set"):
        metrics = evaluate_model(model, X_hold, holdout[label].astype(str).to_numpy(), cfg.labels)
        stop_pred = [str(p) for p in model.predict(X_pool[in_stop])]
        kappa = prediction_agreement(setup["prev_pred"], stop_pred)
    row = _row(k, len(snapshot), cfg, metrics, kappa)
    history = [*setup["history"], row]
    with _step("decide"):
        records = history_records(history)
        decision = decide(
            records, cfg.rules(), pool_remaining=int(unlabeled.sum()), next_batch=cfg.batch_size
        ).to_dict()
    rows_idx = np.flatnonzero(unlabeled)
    X_cand = X_pool[rows_idx]
    n = int(decision["details"].get("next_batch_effective") or cfg.batch_size)
    name, params = cfg.strategy.name, dict(cfg.strategy.params)
    with _step("score"):
        scored = [
            partition_scores(model, X_cand[a:b], a, n, strategy_for(name, params, cfg.seed + k))
            for a, b in partition_bounds(X_cand.shape[0], cfg.score_partitions)
        ]
    with _step("select"):
        candidates = np.unique(np.concatenate([idx for idx, _ in scored]))
        picked, scores = select_from_candidates(
            model,
            X_cand,
            candidates,
            n,
            strategy_for(name, params, cfg.seed + k),
            X_labeled=X_lab,
            y_labeled=y_lab,
        )
    with _step("batch records"):
        pool_rows = [int(rows_idx[i]) for i in picked]
        batch = batch_records(
            cfg, pool, pool_rows, [float(v) for v in scores], model, X_pool[pool_rows]
        )
    return {
        "accuracy": metrics["accuracy"],
        "batch": [b["item_id"] for b in batch],
        "stop": decision["stop"],
        "records": batch,
    }


# ----------------------------------------------------------------------------- orchestrated

_FLOWS: dict[str, Any] = {}


def flows() -> dict[str, Any]:
    """The warm-up flow and the orchestrated cycle (Prefect, MLflow and tasks imported here)."""
    if _FLOWS:
        return _FLOWS
    from prefect import flow

    from flows._common import stop_set_ids
    from flows.cycle import score_pool
    from tasks.data import load_pool, split_holdout
    from tasks.decide import stopping_decision
    from tasks.evaluate import log_cycle, log_decision
    from tasks.score import select_batch
    from tasks.state import campaign_store, checkpoint, read_state, save_checkpoint, write_state
    from tasks.train import evaluate, fit, labeled_snapshot

    @flow(name="warmup")
    def warmup_flow() -> int:
        return 1

    @flow(name="cycle-overhead", log_prints=True)
    def orchestrated_cycle(campaign: str, k: int) -> dict[str, Any]:
        """``flows/cycle.py`` from "retrain" to "select", without Label Studio and drift."""
        with _step("config"):
            cfg = load_campaign(campaign)
            store = campaign_store(cfg.storage_root, cfg.name)
            state = read_state(store)
        label = cfg.data.label_column
        with _step("load + split"):
            df = load_pool(cfg)
            data = split_holdout(cfg, df)
            pool, holdout = data["pool"], data["holdout"]
        with _step("labeled rows"):
            snap = labeled_snapshot(store, k, pool, store.read_jsonl(f"labels/{PROJECT}.jsonl"))
            snapshot = store.read_parquet(snap["key"])
            stop_ids = stop_set_ids(store, pool, cfg)
            in_stop = pool["item_id"].isin(stop_ids).to_numpy()
            dispatched = {
                r["item_id"]
                for r in store.read_jsonl(f"dispatch/{PROJECT}.jsonl")
                if r.get("event") == "sent"
            }
            unlabeled = ~pool["item_id"].isin(dispatched).to_numpy()
        with _step("features"):
            X_lab, X_hold, X_pool = model_inputs(cfg, snapshot, holdout, pool)
        y_lab = snapshot["label"].to_numpy()
        with _step("fit"):
            model = fit(cfg, X_lab, y_lab)
        with _step("evaluate + stop set"):
            previous = checkpoint(store, k - 1, "trained") or {}
            metrics = evaluate(
                cfg,
                model,
                X_hold,
                holdout[label].astype(str).to_numpy(),
                X_pool[in_stop],
                previous.get("stop_predictions"),
            )
            stop_pred, kappa = metrics["stop_predictions"], metrics["kappa"]
        row = _row(k, int(snap["rows"]), cfg, metrics, kappa)
        history = [h for h in state["history"] if h["cycle"] < FIRST_CYCLE] + [row]
        with _step("MLflow log_cycle"):
            logged = log_cycle(
                cfg, k, model, metrics, history, snapshot, snap, {"ann": 0.95, "bob": 0.9}
            )
        with _step("checkpoints + state"):
            save_checkpoint(
                store,
                k,
                "trained",
                {
                    "snapshot": snap,
                    "metrics": metrics,
                    "row": row,
                    "logged": logged,
                    "stop_predictions": stop_pred,
                },
            )
            state = write_state(store, state, cycle=k, stage="trained", history=history)
        with _step("decide"):
            decision = stopping_decision(cfg, history, int(unlabeled.sum()))
        with _step("checkpoints + state"):
            decision = save_checkpoint(store, k, "decided", {**decision, "drift": None})
        with _step("MLflow log_decision"):
            log_decision(cfg, logged["run_id"], decision, None)
        with _step("checkpoints + state"):
            state = write_state(store, state, stage="decided", decision=decision)
        rows_idx = np.flatnonzero(unlabeled)
        X_cand = X_pool[rows_idx]
        n = int(decision["details"].get("next_batch_effective") or cfg.batch_size)
        name, params_ = cfg.strategy.name, dict(cfg.strategy.params)
        with _step("score"):
            scored = score_pool.fn(
                model, X_cand, n, name, params_, cfg.seed + k, cfg.score_partitions
            )
        with _step("select"):
            picked, scores = select_batch(
                model, X_cand, scored, n, name, params_, cfg.seed + k, X_lab, y_lab
            )
        with _step("batch records"):
            pool_rows = [int(rows_idx[i]) for i in picked]
            batch = batch_records(cfg, pool, pool_rows, scores, model, X_pool[pool_rows])
        with _step("checkpoints + state"):
            save_checkpoint(store, k, "selected", {"strategy": name, "batch": batch})
            write_state(store, state, stage="selected")
        return {
            "accuracy": metrics["accuracy"],
            "batch": [b["item_id"] for b in batch],
            "stop": decision["stop"],
            "records": batch,
        }

    _FLOWS.update(warmup=warmup_flow, cycle=orchestrated_cycle)
    return _FLOWS


def orchestrated(setup: dict[str, Any], k: int) -> dict[str, Any]:
    """Call the orchestrated cycle flow (the whole flow call is what is timed)."""
    return flows()["cycle"](campaign=setup["campaign"], k=k)


# ----------------------------------------------------------------------------- measuring


def _timed(fn, *args: Any) -> tuple[float, dict[str, float], Any]:
    _STEPS.clear()
    t0 = time.perf_counter()
    out = fn(*args)
    wall = time.perf_counter() - t0
    return wall, dict(_STEPS), out


#: Functions whose cumulative time the profile reports (module fragment, function name).
PROFILE_KEYS = [
    ("prefect", "run_flow_sync", "Prefect: the whole flow run"),
    ("tasks/evaluate.py", "log_cycle", "MLflow: log_cycle (task body)"),
    ("mlflow/sklearn", "log_model", "MLflow: sklearn.log_model (+ registry)"),
    ("mlflow/tracking/fluent.py", "log_figure", "MLflow: log_figure ×2"),
    ("matplotlib/figure.py", "savefig", "matplotlib: savefig (PNG rendering, inside log_figure)"),
    ("loopwise/plots.py", "campaign_curve_figure", "matplotlib: learning-curve figure"),
    ("loopwise/plots.py", "confusion_figure", "matplotlib: confusion figure"),
    ("mlflow/tracking/fluent.py", "log_input", "MLflow: log_input (dataset)"),
    ("mlflow/data", "from_pandas", "MLflow: data.from_pandas"),
    ("mlflow/tracking/fluent.py", "log_table", "MLflow: log_table"),
    ("tasks/evaluate.py", "_maybe_promote", "MLflow: champion alias"),
    ("tasks/evaluate.py", "_find_run", "MLflow: search_runs for the cycle"),
    ("tasks/evaluate.py", "_experiment_id", "MLflow: get experiment"),
    ("tasks/evaluate.py", "_client", "MLflow: set_tracking_uri + MlflowClient"),
    ("mlflow/tracking/fluent.py", "set_tags", "MLflow: set_tags"),
    ("mlflow/tracking/fluent.py", "start_run", "MLflow: start_run"),
    ("mlflow/tracking/fluent.py", "end_run", "MLflow: end_run"),
    ("mlflow/tracking/fluent.py", "log_params", "MLflow: log_params"),
    ("mlflow/tracking/fluent.py", "log_metrics", "MLflow: log_metrics"),
    ("tasks/evaluate.py", "log_decision", "MLflow: log_decision (task body)"),
    ("tasks/train.py", "labeled_snapshot", "storage: labeled_snapshot (task body)"),
    ("storage/store.py", "write_snapshot", "storage: write_snapshot"),
    ("storage/store.py", "read_parquet", "storage: read_parquet"),
    ("storage/store.py", "read_jsonl", "storage: read_jsonl (ledgers)"),
    ("storage/store.py", "write_json", "storage: write_json (state, checkpoints)"),
    ("tasks/data.py", "load_pool", "load_pool (task body)"),
    ("loopwise/{items,features,model,scoring,batch}.py", "holdout_mask", "holdout_mask"),
    ("prefect/task_engine.py", "run_task_sync", "Prefect: task runs, whole (incl. bodies)"),
    ("prefect/task_engine.py", "call_task_fn", "Prefect: task bodies"),
    ("prefect/task_engine.py", "begin_run", "Prefect: task begin_run"),
    ("prefect/task_engine.py", "set_state", "Prefect: task set_state"),
    ("prefect/task_engine.py", "handle_success", "Prefect: task handle_success"),
    ("prefect/utilities/collections.py", "visit_collection", "Prefect: visit_collection"),
    ("prefect/utilities/engine.py", "collect_task_run_inputs_sync", "Prefect: collect task inputs"),
    ("prefect/utilities/engine.py", "resolve_inputs_sync", "Prefect: resolve task inputs"),
    ("prefect/flow_engine.py", "begin_run", "Prefect: flow begin_run"),
    ("prefect/flow_engine.py", "create_flow_run", "Prefect: create flow run (API)"),
    ("prefect/flow_engine.py", "set_state", "Prefect: flow set_state (API)"),
]


def profile_once(setup: dict[str, Any], k: int, top: int = 30) -> dict[str, Any]:
    """One orchestrated cycle under cProfile: named functions' cumulative time, and the top list."""
    prof = cProfile.Profile()
    _STEPS.clear()
    t0 = time.perf_counter()
    prof.enable()
    orchestrated(setup, k)
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    entries = stats.stats  # (file, line, func) -> (cc, nc, tt, ct, callers)
    named = []
    for frag, func, label in PROFILE_KEYS:
        hits = [
            (key, v)
            for key, v in entries.items()
            if key[2] == func and frag in key[0].replace(os.sep, "/")
        ]
        if not hits:
            continue
        # the outermost of recursive or same-named functions: the largest cumulative time
        (file, line, _), v = max(hits, key=lambda h: h[1][3])
        named.append(
            {
                "what": label,
                "function": f"{func} ({Path(file).name}:{line})",
                "calls": int(v[1]),
                "cumulative_s": round(v[3], 4),
            }
        )
    rows = sorted(entries.items(), key=lambda kv: -kv[1][3])
    top_rows = []
    for (file, line, func), v in rows:
        f = file.replace(os.sep, "/")
        if not any(
            s in f
            for s in (
                "/prefect/",
                "/mlflow/",
                "/tasks/",
                "/loopwise/",
                "/sqlalchemy/",
                "/matplotlib/",
            )
        ):
            continue
        top_rows.append(
            {
                "function": f"{func} ({'/'.join(Path(file).parts[-2:])}:{line})",
                "calls": int(v[1]),
                "cumulative_s": round(v[3], 4),
            }
        )
        if len(top_rows) >= top:
            break
    return {"wall_s": wall, "steps": dict(_STEPS), "named": named, "top": top_rows}


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ----------------------------------------------------------------------------- report


def _ms(s: float) -> str:
    return f"{1000 * s:,.0f}"


def report(res: dict[str, Any]) -> str:
    p, o = res["plain"], res["orchestrated"]
    ov = res["overhead"]
    verdict = "met" if ov <= TARGET else "MISSED"
    steps = list(dict.fromkeys([*o["steps_median"], *p["steps_median"]]))
    lines = [
        "# Cycle overhead: orchestration vs plain function calls",
        "",
        f"Pool: {res['rows']:,} synthetic rows ({N_FEATURES} float32 features, {N_CLASSES} classes, "
        f"Parquet); the campaign's hashed 20 % holdout ({res['holdout_rows']:,} rows) leaves "
        f"{res['pool_rows']:,} pool rows, {res['labeled']} of them labeled; batch {BATCH}, "
        f"strategy {res['strategy']}, {res['score_partitions']} score partitions; StandardScaler + "
        f"LogisticRegression. Median of {res['repeats']} interleaved repeats after one warm-up "
        f"each, one process, one BLAS thread. Prefect {res['versions']['prefect']} against the "
        "API server of `prefect_test_harness()` (temporary SQLite database, server in a "
        "subprocess; its start-up not timed); MLflow "
        f"{res['versions']['mlflow']} on SQLite in a temporary folder. Label Studio (collect, "
        "consensus, dispatch, schedule), pool validation and the drift check are left out of both "
        "paths. Both paths select the same batch with the same accuracy: "
        f"{'yes' if res['same_output'] else 'NO'}. Produced by `python bench/cycle_overhead.py`.",
        "",
        f"Machine: {res['cpus']} CPUs, shared; load average (1, 5, 15 min) {res['load_start']} at "
        f"the start, {res['load_end']} at the end (another benchmark was running).",
        "",
        "## One cycle in a long-lived process",
        "",
        "| | median wall (s) | min – max (s) |",
        "|---|---:|---:|",
        f"| (a) plain functions | {p['wall_median']:.3f} | {min(p['walls']):.3f} – {max(p['walls']):.3f} |",
        f"| (b) orchestrated (Prefect flow + tasks, MLflow, Store) | {o['wall_median']:.3f} | "
        f"{min(o['walls']):.3f} – {max(o['walls']):.3f} |",
        "",
        f"**Overhead (b − a) / b = {100 * ov:.1f} %** (target ≤ {100 * TARGET:.0f} %) — {verdict}. "
        f"Per repeat: {', '.join(f'{100 * v:.1f} %' for v in res['overhead_per_repeat'])}. "
        f"The first cycle of the process (imports, MLflow database created) took "
        f"{res['warmup_s']['orchestrated']:.1f} s orchestrated, {res['warmup_s']['plain']:.2f} s plain.",
        "",
        "Per step (median ms; orchestrated = the wall the flow sees around the task call):",
        "",
        "| step | plain | orchestrated | difference |",
        "|---|---:|---:|---:|",
    ]
    for s in steps:
        a, b = p["steps_median"].get(s, 0.0), o["steps_median"].get(s, 0.0)
        lines.append(f"| {s} | {_ms(a)} | {_ms(b)} | {_ms(b - a)} |")
    sb = sum(o["steps_median"].values())
    lines.append(
        f"| flow engine (wall − sum of steps) | – | {_ms(o['wall_median'] - sb)} | "
        f"{_ms(o['wall_median'] - sb)} |"
    )
    lines.append(
        f"| **cycle** | {_ms(p['wall_median'])} | {_ms(o['wall_median'])} | "
        f"{_ms(o['wall_median'] - p['wall_median'])} |"
    )
    lines += ["", "Where the overhead goes:", ""]
    total = o["wall_median"]
    for k, v in res["attribution"].items():
        lines.append(f"- {k}: {_ms(v)} ms = {100 * v / total:.1f} % of the orchestrated cycle")
    lines.append(
        f"- without the two MLflow steps the overhead would still be "
        f"{100 * res['overhead_without_mlflow']:.1f} %"
    )
    hb = res.get("heartbeats_off")
    if hb:
        lines += [
            "",
            "Diagnostic — the same pairs with flow-run heartbeats off "
            "(`PREFECT_FLOWS_HEARTBEAT_FREQUENCY=None`; Prefect's default is 180 s, and its "
            "heartbeat thread sleeps in 1 s ticks that the flow run joins on exit, so every "
            f"flow run ends on a whole second of its run time): plain {hb['plain_median']:.3f} s, "
            f"orchestrated {hb['orchestrated_median']:.3f} s (flow engine "
            f"{_ms(hb['engine_s'])} ms), overhead **{100 * hb['overhead']:.1f} %**.",
        ]
    cold = res.get("fresh_process")
    if cold:
        n = len(next(iter(cold.values()))["runs"]["plain"])
        lines += [
            "",
            "## One cycle per fresh process (how a process work pool runs each flow run)",
            "",
            f"Median of {n}; wall from spawning the interpreter to its exit (start-up and imports "
            "included), against the same running Prefect server and MLflow database. With a "
            "bytecode cache (`PYTHONPYCACHEPREFIX` in the temporary folder, filled by one untimed "
            "run), and without one, as this environment runs: `PYTHONDONTWRITEBYTECODE=1` (also "
            f"exported by the Makefile) and a virtualenv without `.pyc` files "
            f"({'true here' if not res.get('venv_has_bytecode') else 'not the case here'}), so "
            "every process compiles every module it imports from source.",
            "",
            "| bytecode | path | process wall (s) | of which the cycle (s) | start-up + imports (s) "
            "| overhead |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for mode, c in cold.items():
            lines.append(
                f"| {mode} | (a) plain | {c['plain_process_s']:.2f} | {c['plain_cycle_s']:.2f} | "
                f"{c['plain_process_s'] - c['plain_cycle_s']:.2f} | |"
            )
            lines.append(
                f"| {mode} | (b) orchestrated | {c['orchestrated_process_s']:.2f} | "
                f"{c['orchestrated_cycle_s']:.2f} | "
                f"{c['orchestrated_process_s'] - c['orchestrated_cycle_s']:.2f} | "
                f"**{100 * c['overhead']:.1f} %** |"
            )
        lines += [
            "",
            "First cycle in a fresh process, orchestrated, median ms per step: "
            + "; ".join(
                f"{mode}: "
                + ", ".join(
                    f"{k} {_ms(v)}" for k, v in c["orchestrated_steps_median"].items() if v >= 0.05
                )
                for mode, c in cold.items()
            )
            + ". A real worker also loads the deployment and runs its pull steps; not counted.",
        ]
    prof = res.get("profile")
    if prof:
        lines += [
            "",
            "## Profile",
            "",
            f"cProfile of one more orchestrated cycle (main thread; profiled wall "
            f"{prof['wall_s']:.2f} s, inflated by the profiler — read the times as shares):",
            "",
            "| what | function | calls | cumulative (s) |",
            "|---|---|---:|---:|",
        ]
        for r in prof["named"]:
            lines.append(
                f"| {r['what']} | `{r['function']}` | {r['calls']} | {r['cumulative_s']:.3f} |"
            )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- fresh processes


def run_child(which: str, setup_path: Path, k: int) -> None:
    """``--child``: one cycle in this fresh process; print a JSON line with its timings."""
    setup = json.loads(setup_path.read_text())
    t0 = time.perf_counter()
    if which == "orchestrated":
        flows()  # Prefect, MLflow's tasks and the tasks package
        fn = orchestrated
    else:
        fn = plain_cycle
    imports = time.perf_counter() - t0
    wall, steps, out = _timed(fn, setup, k)
    print(
        json.dumps(
            {"cycle_s": wall, "late_imports_s": imports, "steps": steps, "batch": out["batch"]}
        ),
        flush=True,
    )


def spawn(which: str, setup_path: Path, k: int, env: dict[str, str]) -> dict[str, Any]:
    """Run one cycle in a fresh interpreter; its wall from spawn to exit, and the child's timings."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        which,
        "--setup",
        str(setup_path),
        "--k",
        str(k),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{which} child failed (rc {proc.returncode}): {tail}")
    return {"process_s": wall, **json.loads(lines[-1])}


# ----------------------------------------------------------------------------- driver


def med_steps(runs: list[dict[str, float]]) -> dict[str, float]:
    names = list(dict.fromkeys(s for st in runs for s in st))
    return {s: statistics.median(st.get(s, 0.0) for st in runs) for s in names}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=100_000, help="rows of the synthetic table")
    ap.add_argument("--labeled", type=int, default=500, help="labeled rows")
    ap.add_argument("--repeats", type=int, default=5, help="measured cycles per path, in process")
    ap.add_argument(
        "--cold-repeats",
        type=int,
        default=3,
        help="cycles per path in a fresh process each (0: skip)",
    )
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    ap.add_argument("--out", type=Path, default=RESULTS, help="output directory")
    ap.add_argument("--child", choices=["plain", "orchestrated"], help=argparse.SUPPRESS)
    ap.add_argument("--setup", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args.child, args.setup, args.k)
        return
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")

    import mlflow
    import prefect
    import sklearn
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    load_start = loadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="loopwise-overhead-") as tmpdir:
        tmp = Path(tmpdir)
        t0 = time.perf_counter()
        setup = make_campaign(tmp, args.rows, args.labeled)
        setup_path = tmp / "setup.json"
        setup_path.write_text(json.dumps(setup))
        cfg = load_campaign(setup["campaign"])
        print(
            f"setup {time.perf_counter() - t0:.1f} s: {args.rows:,} rows, pool "
            f"{setup['pool_rows']:,}, holdout {setup['holdout_rows']:,}",
            flush=True,
        )
        t0 = time.perf_counter()
        with prefect_test_harness(server_startup_timeout=120):
            api_url = PREFECT_API_URL.value()
            print(
                f"Prefect test server at {api_url} up in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
            flows()["warmup"]()
            k = FIRST_CYCLE
            w_plain = _timed(plain_cycle, setup, k)[0]
            w_orch = _timed(orchestrated, setup, k)[0]
            print(
                f"warm-up (first cycle in this process, MLflow database created): plain "
                f"{w_plain:.2f} s, orchestrated {w_orch:.2f} s",
                flush=True,
            )
            plain: list[tuple[float, dict[str, float]]] = []
            orch: list[tuple[float, dict[str, float]]] = []
            agree = []
            for r in range(args.repeats):
                k += 1
                outs = {}
                for which in ("plain", "orch") if r % 2 == 0 else ("orch", "plain"):
                    fn = plain_cycle if which == "plain" else orchestrated
                    wall, steps, outs[which] = _timed(fn, setup, k)
                    (plain if which == "plain" else orch).append((wall, steps))
                same = (
                    outs["plain"]["records"] == outs["orch"]["records"]
                    and outs["plain"]["accuracy"] == outs["orch"]["accuracy"]
                )
                agree.append(same)
                print(
                    f"repeat {r + 1}: plain {plain[-1][0]:.3f} s, orchestrated {orch[-1][0]:.3f} s, "
                    f"overhead {100 * (orch[-1][0] - plain[-1][0]) / orch[-1][0]:.1f} %, "
                    f"same batch and accuracy: {same}",
                    flush=True,
                )
            profile = None
            if not args.no_profile:
                k += 1
                profile = profile_once(setup, k)
                print(f"profiled cycle: {profile['wall_s']:.2f} s", flush=True)
            # Diagnostic: the same pairs with flow-run heartbeats off. Prefect's heartbeat
            # thread sleeps in 1 s ticks and the flow run joins it on exit, so with the
            # default (180 s) every flow run ends on the next whole second of its run time.
            nohb: dict[str, list[float]] = {"plain": [], "orchestrated": []}
            nohb_steps: list[dict[str, float]] = []
            with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                for r in range(args.repeats):
                    k += 1
                    for which in ("plain", "orch") if r % 2 == 0 else ("orch", "plain"):
                        fn = plain_cycle if which == "plain" else orchestrated
                        wall, steps, _ = _timed(fn, setup, k)
                        nohb["plain" if which == "plain" else "orchestrated"].append(wall)
                        if which == "orch":
                            nohb_steps.append(steps)
                    print(
                        f"heartbeats off, repeat {r + 1}: plain {nohb['plain'][-1]:.3f} s, "
                        f"orchestrated {nohb['orchestrated'][-1]:.3f} s",
                        flush=True,
                    )
            cold = {}
            if args.cold_repeats:
                base = {**os.environ, "PREFECT_API_URL": str(api_url)}
                cached = {**base, "PYTHONPYCACHEPREFIX": str(tmp / "pycache")}
                cached.pop("PYTHONDONTWRITEBYTECODE", None)
                modes = {
                    "bytecode cache": cached,
                    "no bytecode cache": {**base, "PYTHONDONTWRITEBYTECODE": "1"},
                }
                for mode, env in modes.items():
                    if mode == "bytecode cache":  # fill the cache (in the temp dir), untimed
                        k += 1
                        for which in ("plain", "orchestrated"):
                            spawn(which, setup_path, k, env)
                    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "orchestrated": []}
                    for r in range(args.cold_repeats):
                        k += 1
                        order = (
                            ("plain", "orchestrated") if r % 2 == 0 else ("orchestrated", "plain")
                        )
                        for which in order:
                            runs[which].append(spawn(which, setup_path, k, env))
                        p_, o_ = runs["plain"][-1], runs["orchestrated"][-1]
                        print(
                            f"fresh process, {mode}, {r + 1}: plain {p_['process_s']:.2f} s (cycle "
                            f"{p_['cycle_s']:.2f}), orchestrated {o_['process_s']:.2f} s (cycle "
                            f"{o_['cycle_s']:.2f}); same batch: {p_['batch'] == o_['batch']}",
                            flush=True,
                        )
                    cold[mode] = runs
    load_end = loadavg()

    p_walls, o_walls = [w for w, _ in plain], [w for w, _ in orch]
    p_med, o_med = statistics.median(p_walls), statistics.median(o_walls)
    p_steps, o_steps = med_steps([st for _, st in plain]), med_steps([st for _, st in orch])
    mlflow_s = o_steps.get("MLflow log_cycle", 0.0) + o_steps.get("MLflow log_decision", 0.0)
    storage_s = o_steps.get("checkpoints + state", 0.0) + max(
        0.0, o_steps.get("labeled rows", 0.0) - p_steps.get("labeled rows", 0.0)
    )
    compute_steps = [s for s in p_steps if s != "labeled rows"]
    prefect_tasks_s = sum(o_steps.get(s, 0.0) - p_steps.get(s, 0.0) for s in compute_steps)
    engine_s = o_med - sum(o_steps.values())
    attribution = {
        "MLflow (log_cycle + log_decision tasks)": mlflow_s,
        "storage (snapshot write + read, ledgers, stop set, checkpoints, state; with its task)": storage_s,
        "Prefect task calls (orchestrated − plain wall of the other steps)": prefect_tasks_s,
        "Prefect flow engine (flow-run creation, states, and the wait for the heartbeat "
        "thread's 1 s tick at exit: wall − sum of steps)": engine_s,
    }
    hp, ho = statistics.median(nohb["plain"]), statistics.median(nohb["orchestrated"])
    heartbeat_off = {
        "plain_walls": nohb["plain"],
        "orchestrated_walls": nohb["orchestrated"],
        "plain_median": hp,
        "orchestrated_median": ho,
        "orchestrated_steps_median": med_steps(nohb_steps),
        "engine_s": ho - sum(med_steps(nohb_steps).values()),
        "overhead": (ho - hp) / ho,
    }
    cold_summary = {}
    for mode, runs in cold.items():
        cp = statistics.median(c["process_s"] for c in runs["plain"])
        co = statistics.median(c["process_s"] for c in runs["orchestrated"])
        cold_summary[mode] = {
            "plain_process_s": cp,
            "orchestrated_process_s": co,
            "plain_cycle_s": statistics.median(c["cycle_s"] for c in runs["plain"]),
            "orchestrated_cycle_s": statistics.median(c["cycle_s"] for c in runs["orchestrated"]),
            "orchestrated_steps_median": med_steps([c["steps"] for c in runs["orchestrated"]]),
            "plain_steps_median": med_steps([c["steps"] for c in runs["plain"]]),
            "overhead": (co - cp) / co,
            "runs": runs,
        }
    res = {
        "rows": args.rows,
        "pool_rows": setup["pool_rows"],
        "holdout_rows": setup["holdout_rows"],
        "labeled": args.labeled,
        "batch_size": BATCH,
        "strategy": cfg.strategy.name,
        "score_partitions": cfg.score_partitions,
        "repeats": args.repeats,
        "server": "prefect.testing.utilities.prefect_test_harness: temporary SQLite database, "
        "API server in a subprocess; start-up not timed",
        "warmup_s": {"plain": w_plain, "orchestrated": w_orch},
        "plain": {
            "walls": p_walls,
            "wall_median": p_med,
            "steps_median": p_steps,
            "steps": [st for _, st in plain],
        },
        "orchestrated": {
            "walls": o_walls,
            "wall_median": o_med,
            "steps_median": o_steps,
            "steps": [st for _, st in orch],
        },
        "same_output": all(agree),
        "overhead": (o_med - p_med) / o_med,
        "overhead_per_repeat": [(o - p) / o for p, o in zip(p_walls, o_walls, strict=True)],
        "target": TARGET,
        "met": (o_med - p_med) / o_med <= TARGET,
        "attribution": attribution,
        "overhead_without_mlflow": (o_med - mlflow_s - p_med) / (o_med - mlflow_s),
        "heartbeats_off": heartbeat_off,
        "fresh_process": cold_summary,
        "venv_has_bytecode": (Path(prefect.__file__).parent / "__pycache__").is_dir(),
        "profile": profile,
        "load_start": load_start,
        "load_end": load_end,
        "cpus": os.cpu_count(),
        "bench_wall_s": time.perf_counter() - started,
        "threads_env": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "versions": {
            "python": platform.python_version(),
            "prefect": prefect.__version__,
            "mlflow": mlflow.__version__,
            "scikit-learn": sklearn.__version__,
            "pandas": pd.__version__,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cycle_overhead.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "cycle_overhead.md").write_text(report(res))
    print(report(res))
    print(f"wrote {args.out / 'cycle_overhead.json'} and {args.out / 'cycle_overhead.md'}")


if __name__ == "__main__":
    main()
