"""The active-learning cycle as a Prefect flow.

collect → consensus → retrain → evaluate → decide → score → select → dispatch → next run

Each run moves the campaign forward from where ``state.json`` says it stands.
While a batch is out with annotators, a run only collects, reports progress and
schedules a re-check. Every stage leaves a checkpoint before the state moves on,
so a run that died anywhere is simply run again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from prefect import flow, get_run_logger, unmapped
from pydantic import Field

from flows._common import (
    campaign_context,
    dispatch_and_wait,
    next_run_parameters,
    paid_annotations,
    stop_set_ids,
)
from loopwise import strategies
from loopwise.batch import batch_records, control_count, draw_control
from loopwise.features import model_inputs
from tasks.decide import check_drift, stopping_decision
from tasks.evaluate import log_cycle, log_decision
from tasks.labelstudio import collect_annotations
from tasks.qc import (
    batch_deadline,
    batch_progress,
    close_open_batch,
    consensus_qc,
    request_more_annotations,
    review_queue,
)
from tasks.report import publish_review, publish_summary, write_report
from tasks.schedule import schedule_next_run
from tasks.score import partitions, score_partition, select_batch, select_without_model
from tasks.state import checkpoint, now_iso, save_checkpoint, write_state
from tasks.train import evaluate, fit, labeled_snapshot

__all__ = ["cycle", "score_pool"]

StrategyName = Literal[tuple(strategies.names())]  # type: ignore[valid-type]
BatchSize = Annotated[int, Field(gt=0, le=10_000)]
LabelBudget = Annotated[int, Field(gt=0)]
Money = Annotated[float, Field(gt=0)]


@flow(name="cycle", log_prints=True)
def cycle(
    campaign: str = "configs/demo.yaml",
    batch_size: BatchSize | None = None,
    strategy: StrategyName | None = None,
    budget_labels: LabelBudget | None = None,
    budget_currency: Money | None = None,
    close_batch: bool = False,
) -> dict[str, Any]:
    """Run the campaign's next step: collect, and when its batch is in, one full cycle.

    ``close_batch`` (a manual run) stops waiting for the open batch now, as its
    ``schedule.batch_timeout_seconds`` would: the cycle retrains on what was accepted,
    and late answers to the unresolved items still count. Next runs never inherit it.
    """
    log = get_run_logger()
    overrides = {
        "batch_size": batch_size,
        "strategy": strategy,
        "budget_labels": budget_labels,
        "budget_currency": budget_currency,
    }
    ctx = campaign_context(campaign, overrides)
    cfg, store, state = ctx.cfg, ctx.store, ctx.state
    params = next_run_parameters(campaign, overrides)

    if state["stopped"]:
        if budget_labels is None and budget_currency is None:
            print(
                f"campaign {cfg.name} stopped at cycle {state['cycle']}: {state['decision']['reason']}"
            )
            if not (store.read_json("reports/report.json") or {}).get("stopped"):
                # The run that stopped it died before its final report: write it now.
                data = ctx.load_data()
                write_report(cfg, store, data["pool"], data["holdout"])
            return {"status": "stopped", "decision": state["decision"]}
        # A manual run with a new budget re-opens the decision of the last cycle.
        state = write_state(store, state, stopped=False, stage="trained")
    if state["cycle"] <= 0 and state["stage"] in ("new", "started", "selected"):
        from flows.bootstrap import bootstrap

        return bootstrap(campaign=campaign, batch_size=batch_size)

    data = ctx.load_data()
    pool, holdout = data["pool"], data["holdout"]
    project_id = ctx.project()
    if state.get("project_id") != project_id:
        state = write_state(store, state, project_id=project_id)
    collected = collect_annotations(
        cfg.labelstudio.url, ctx.token, project_id, cfg.labels, store_root=ctx.root
    )
    qc = consensus_qc(
        ctx.root,
        project_id,
        cfg.labels,
        cycle=state["cycle"],
        method=cfg.consensus,
        min_agreement=cfg.agreement_threshold,
        min_annotations=cfg.annotators_per_item,
        random_state=cfg.seed,
        experts=set(ctx.reviewers().values()),
    )
    k = state["cycle"]
    if state["stage"] == "waiting":
        progress = batch_progress(
            ctx.root,
            project_id,
            state["open_batch"],
            disputed=qc["disputed"],
            annotators_per_item=cfg.annotators_per_item,
            max_annotations=cfg.max_annotations_per_item,
        )
        if progress["more"]:
            request_more_annotations(
                cfg.labelstudio.url,
                ctx.token,
                ctx.root,
                project_id,
                progress["more"],
                reasons={i: qc["disputed"].get(i, "too few answers") for i in progress["more"]},
                cycle=k,
                max_annotations=cfg.max_annotations_per_item,
            )
        if progress["review"] or state.get("review_queue"):
            queue = review_queue(ctx.root, project_id, cfg.max_annotations_per_item)
            publish_review(cfg, project_id, queue)
            state = write_state(store, state, review_queue=len(queue))
        print(
            f"cycle {k}: batch {progress['done']}/{progress['total']} resolved "
            f"({len(progress['review'])} to expert review, {len(progress['more'])} sent back); "
            f"{collected.get('new', 0)} new annotation(s) collected"
        )
        if "waiting_since" not in state:  # a batch dispatched before the field existed
            state = write_state(store, state, waiting_since=now_iso())
        if progress["pending"]:
            late = batch_deadline(
                state["waiting_since"], cfg.schedule.batch_timeout_seconds, forced=close_batch
            )
            if late is not None and not qc["accepted_total"]:
                log.warning(
                    "batch of cycle %d is past its deadline, but no label is accepted yet: "
                    "still waiting",
                    k,
                )
                late = None
            if late is not None:
                closed = close_open_batch(ctx.root, project_id, progress["pending"], k, late)
                print(
                    f"cycle {k}: batch closed after {late:.0f} s with {len(closed)} item(s) "
                    "unresolved (still open in Label Studio; late answers count)"
                )
                progress = {**progress, "pending": []}
        wait = bool(progress["pending"])
        if not wait and not qc["accepted_total"]:
            # Every item resolved, but into the review queue: nothing to fit a model on.
            log.warning(
                "batch of cycle %d is resolved but no label is accepted: "
                "waiting for the reviewers (%d item(s) in the review queue)",
                k,
                len(progress["review"]),
            )
            wait = True
        if wait:
            key = f"{cfg.name}:c{k}:recheck:{state.get('rechecks', 0)}"
            nxt = schedule_next_run(cfg.deployment, params, cfg.schedule.recheck_seconds, key)
            state = write_state(store, state, rechecks=state.get("rechecks", 0) + 1)
            publish_summary(
                cfg,
                {
                    "cycle": k,
                    "status": "batch still being labeled",
                    "batch_progress": f"{progress['done']}/{progress['total']} items resolved",
                    "labels": qc["accepted_total"],
                    "project_id": project_id,
                    "next_run": _describe_next(nxt),
                },
            )
            return {"status": "waiting", "progress": progress, "next_run": nxt}
        k += 1
        state = write_state(
            store, state, cycle=k, stage="started", rechecks=0, open_batch=None, waiting_since=None
        )

    # Retrain on every accepted label, evaluate, log: once per cycle.
    trained = checkpoint(store, k, "trained")
    if trained is None:
        snap = labeled_snapshot(store, k, pool, store.read_jsonl(f"labels/{project_id}.jsonl"))
    else:
        snap = trained["snapshot"]
    snapshot = store.read_parquet(snap["key"])
    X_lab, X_hold, X_pool = model_inputs(cfg, snapshot, holdout, pool)
    model = fit(cfg, X_lab, snapshot["label"].to_numpy())
    if trained is None:
        in_stop = pool["item_id"].isin(stop_set_ids(store, pool, cfg)).to_numpy()
        previous = checkpoint(store, k - 1, "trained") or {}
        metrics = evaluate(
            cfg,
            model,
            X_hold,
            holdout[cfg.data.label_column].astype(str).to_numpy(),
            X_pool[in_stop],
            previous.get("stop_predictions"),
        )
        annotations = paid_annotations(ctx.root, project_id)
        row = {
            "cycle": k,
            "labels": int(snap["rows"]),
            "annotations": annotations,
            "cost": round(annotations * cfg.budget.cost_per_annotation, 6),
            "metric": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "kappa": metrics["kappa"],
        }
        history = [h for h in state["history"] if h["cycle"] < k] + [row]
        logged = log_cycle(
            cfg, k, model, metrics, history, snapshot, snap, qc["annotator_accuracy"]
        )
        trained = save_checkpoint(
            store,
            k,
            "trained",
            {
                "snapshot": snap,
                "metrics": {k_: v for k_, v in metrics.items() if k_ != "stop_predictions"},
                "row": row,
                "logged": logged,
                "stop_predictions": metrics["stop_predictions"],
            },
        )
    history = [h for h in state["history"] if h["cycle"] < k] + [trained["row"]]
    state = write_state(store, state, stage="trained", history=history)
    row, logged = trained["row"], trained["logged"]
    print(
        f"cycle {k}: {row['labels']} labels, cost {row['cost']:.2f}, holdout accuracy "
        f"{row['metric']:.4f} (model v{logged['model_version']}"
        f"{', new champion' if logged['champion'] else ''})"
    )

    # Decide whether another batch is worth its price.
    dispatched = set(ctx.dispatched_items(project_id))
    unlabeled = ~pool["item_id"].isin(dispatched).to_numpy()
    # A single class labeled (a rare class the cold start missed): the model is a constant,
    # only the budgets and the pool may stop the campaign, and the next batch is chosen
    # as at the cold start until a second class turns up.
    one_class = snapshot["label"].nunique() < 2
    decision = checkpoint(store, k, "decided")
    if decision is None or decision.get("rules") != _rules(cfg):
        drift = check_drift(cfg, snapshot, pool[unlabeled])
        decision = stopping_decision(cfg, history, int(unlabeled.sum()), judge_model=not one_class)
        decision = save_checkpoint(
            store, k, "decided", {**decision, "drift": drift, "rules": _rules(cfg)}
        )
    log_decision(cfg, logged["run_id"], decision, decision.get("drift"))
    state = write_state(store, state, stage="decided", decision=decision)
    summary = {
        "cycle": k,
        "labels": row["labels"],
        "annotations": row["annotations"],
        "cost": row["cost"],
        "metric": row["metric"],
        "macro_f1": row["macro_f1"],
        "decision": decision,
        "run_url": logged["run_url"],
        "project_id": project_id,
        "quarantined": data["quarantined"],
    }
    print(f"cycle {k}: {'STOP' if decision['stop'] else 'go on'} — {decision['reason']}")
    if decision["stop"]:
        state = write_state(store, state, stage="stopped", stopped=True)
        publish_summary(cfg, {**summary, "status": "campaign stopped", "next_run": "none"})
        write_report(cfg, store, pool, holdout)  # the pool and holdout already in hand
        return {"status": "stopped", "decision": decision, "cycle": k}

    # Score the pool partition by partition, select the batch, dispatch it.
    selected = checkpoint(store, k, "selected")
    if selected is None:
        rows_idx = np.flatnonzero(unlabeled)
        X_cand = X_pool[rows_idx]
        name = cfg.strategy.name
        params_ = dict(cfg.strategy.params)
        drift = decision.get("drift") or {}
        if drift.get("drifted"):
            log.warning(
                "pool drifted (max PSI %.3f): this batch uses %s",
                drift["max_psi"],
                cfg.strategy.drift_fallback,
            )
            name, params_ = cfg.strategy.drift_fallback, {}
        n_total = int(decision["details"].get("next_batch_effective") or cfg.batch_size)
        n_control = control_count(n_total, cfg.control_fraction)
        n = n_total - n_control
        if one_class:
            name = cfg.strategy.cold_start
            log.warning(
                "only %r is labeled so far: this batch is chosen by %s, as at the cold start",
                str(snapshot["label"].iloc[0]),
                name,
            )
            picked, scores = select_without_model(X_cand, n, name, cfg.seed + k)
        else:
            if cfg.dask_address:
                from prefect_dask import DaskTaskRunner

                runner = DaskTaskRunner(address=cfg.dask_address)
                scored = score_pool.with_options(task_runner=runner)(
                    model, X_cand, n, name, params_, cfg.seed + k, cfg.score_partitions
                )
            else:
                scored = score_pool.fn(
                    model, X_cand, n, name, params_, cfg.seed + k, cfg.score_partitions
                )
            picked, scores = select_batch(
                model,
                X_cand,
                scored,
                n,
                name,
                params_,
                cfg.seed + k,
                X_lab,
                snapshot["label"].to_numpy(),
            )
        # The control share: drawn at random from what the strategy did not pick.
        control = draw_control(len(rows_idx), picked, n_control, cfg.seed + k)
        pool_rows = [int(rows_idx[i]) for i in [*picked, *control]]
        batch = batch_records(
            cfg,
            pool,
            pool_rows,
            [*scores, *[None] * len(control)],
            model,
            X_pool[pool_rows],
            control=[False] * len(picked) + [True] * len(control),
        )
        selected = save_checkpoint(store, k, "selected", {"strategy": name, "batch": batch})
    state = write_state(store, state, stage="selected")
    return dispatch_and_wait(ctx, state, k, selected, logged["model_version"], params, summary)


@flow(name="score-pool")
def score_pool(
    model: Any, X: Any, n: int, strategy: str, params: dict, seed: int, n_partitions: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each pool partition's best candidates, scored in parallel by the task runner.

    The cycle calls it inline (its own thread runner), or as a subflow on a Dask cluster
    when the campaign sets ``dask_address``.
    """
    parts = partitions(X, n_partitions)
    futures = score_partition.map(
        unmapped(model),
        [p for p, _ in parts],
        [o for _, o in parts],
        unmapped(n),
        unmapped(strategy),
        unmapped(params),
        unmapped(seed),
    )
    return [f.result() for f in futures]


def _rules(cfg: Any) -> dict[str, Any]:
    return cfg.rules().model_dump()


def _describe_next(nxt: dict[str, Any]) -> str:
    if nxt.get("created"):
        return f"{nxt['flow_run_name']} at {nxt['scheduled_time']}"
    return nxt.get("reason", "not scheduled")
