"""Select the next batch: which strategy picks (a library decision: the campaign's, its
drift fallback, or the cold-start one), the pool scored partition by partition, the picks
plus the random control share. Once per cycle: the ``selected`` checkpoint holds it."""

from __future__ import annotations

import logging
from typing import Any

from flows.stages.context import CampaignRun, PoolData
from flows.stages.pool import compose_partitioned
from flows.stages.train import Trained
from loopwise.batch import BatchPlan, batch_records, compose_batch, plan_batch
from loopwise.features import model_inputs, text_space
from loopwise.partitions import draw_keys
from loopwise.state import Stage
from storage.campaign import checkpointed
from tasks.qc import plan_relabels
from tasks.score import select_batch, select_without_model

__all__ = ["select_cold_start", "select_next_batch"]

log = logging.getLogger("loopwise.cycle")


def select_next_batch(
    run: CampaignRun, data: PoolData, trained: Trained, decision: dict[str, Any]
) -> dict[str, Any]:
    """The next batch, sized by the decision (the remaining budget), from undispatched rows."""
    cfg = run.cfg

    def make() -> dict[str, Any]:
        n_total = int(decision["details"].get("next_batch_effective") or cfg.batch_size)
        plan = _plan(
            run,
            n_total,
            drifted=bool((decision.get("drift") or {}).get("drifted")),
            one_class=trained.one_class,
        )
        labeled = (trained.X_labeled, trained.snapshot["label"].to_numpy())
        selected = _compose(run, data, plan, trained.X_pool, trained.model, labeled)
        if cfg.overlap.relabel and plan.needs_model:
            selected |= plan_relabels(
                run.ledgers(),
                cfg.labels,
                selected["batch"],
                trained.model,
                trained.snapshot,
                trained.X_labeled,
                cfg.overlap_policy(),
                max_share=cfg.overlap.relabel_max_share,
                method=cfg.consensus,
                random_state=cfg.seed,
            )
        return selected

    return _once(run, make)


def select_cold_start(run: CampaignRun, data: PoolData) -> dict[str, Any]:
    """The first batch, chosen without a model, capped by the label budget."""
    cfg = run.cfg

    def make() -> dict[str, Any]:
        n = min(cfg.cold_start_size or cfg.batch_size, data.n_pool)
        if cfg.budget.labels is not None:
            n = min(n, cfg.budget.labels)
        pool = data
        if data.partitioned:  # clustered on a uniform sample of the pool, not on all of it
            pool = PoolData(data.sample_rows(cfg), data.holdout, data.quarantined)
        (X_pool,) = model_inputs(cfg, pool.pool)
        return _compose(run, pool, _plan(run, n, cold=True), X_pool, None, None)

    return _once(run, make)


def _once(run: CampaignRun, make: Any) -> dict[str, Any]:
    selected = checkpointed(run.store, run.state.cycle, Stage.SELECTED, make)
    run.save(stage=Stage.SELECTED)
    return selected


def _plan(run: CampaignRun, n_total: int, **situation: Any) -> BatchPlan:
    s = run.cfg.strategy
    plan = plan_batch(
        n_total,
        run.cfg.control_fraction,
        strategy=s.name,
        params=s.params,
        cold_start=s.cold_start,
        drift_fallback=s.drift_fallback,
        **situation,
    )
    if plan.reason:
        log.warning("cycle %d: %s", run.state.cycle, plan.reason)
    return plan


def _compose(
    run: CampaignRun,
    data: PoolData,
    plan: BatchPlan,
    X_pool: Any,
    model: Any,
    labeled: tuple[Any, Any] | None,
) -> dict[str, Any]:
    """Pick with the plan's strategy among undispatched rows, add the control share, and
    turn the rows into the records dispatch takes."""
    cfg, seed = run.cfg, run.cfg.seed + run.state.cycle
    if data.partitioned:
        dispatched = run.ledgers().dispatched_ids()
        batch = compose_partitioned(cfg, run.store, data, plan, model, labeled, dispatched, seed)
        return {"strategy": plan.strategy, "batch": batch}
    rows_idx = data.undispatched(run.ledgers().dispatched_ids())
    X_cand = X_pool[rows_idx]
    if plan.needs_model:
        picked, scores = _score_and_select(run, plan, model, X_cand, seed, labeled)
    else:
        if cfg.data.kind == "text":
            # No model to read the texts (none yet, or a constant one): cluster them in the
            # model's TF-IDF space (reduced), not as raw strings.
            X_cand = text_space(X_cand, random_state=cfg.seed)
        picked, scores = select_without_model(X_cand, plan.n_picked, plan.strategy, seed)
    keys = draw_keys(data.pool["item_id"].to_numpy()[rows_idx].tolist(), cfg.seed)
    rows, query_scores, control = compose_batch(picked, scores, plan.n_control, keys)
    pool_rows = [int(rows_idx[i]) for i in rows]
    X_rows = X_pool[pool_rows] if model is not None else None
    batch = batch_records(cfg, data.pool, pool_rows, query_scores, model, X_rows, control=control)
    return {"strategy": plan.strategy, "batch": batch}


def _score_and_select(
    run: CampaignRun,
    plan: BatchPlan,
    model: Any,
    X_cand: Any,
    seed: int,
    labeled: tuple[Any, Any] | None,
) -> tuple[list[int], list[float]]:
    """Score the candidates partition by partition (on Dask when configured), then select."""
    from flows.cycle import score_pool
    from flows.pool import task_runner

    cfg = run.cfg
    args = (model, X_cand, plan.n_picked, plan.strategy, plan.params, seed, cfg.score_partitions)
    runner = task_runner(cfg)
    if runner is not None:
        scored = score_pool.with_options(task_runner=runner)(*args)
    else:
        scored = score_pool.fn(*args)
    X_lab, y_lab = labeled if labeled is not None else (None, None)
    return select_batch(
        model, X_cand, scored, plan.n_picked, plan.strategy, plan.params, seed, X_lab, y_lab
    )
