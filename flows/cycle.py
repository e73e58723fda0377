"""The active-learning cycle as a Prefect flow, one named stage after another:

advance the open batch → train and log → decide → select → dispatch and schedule

Each run moves the campaign forward from where ``state.json`` says it stands. While a
batch is out with annotators, a run only collects, reports progress and schedules a
re-check. Every stage leaves a checkpoint before the state moves on, so a run that died
anywhere is simply run again. The stages live in :mod:`flows.stages`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from prefect import flow, unmapped
from pydantic import Field

from flows.stages.advance import advance_open_batch
from flows.stages.context import CampaignRun, open_campaign
from flows.stages.decide import decide, resume_stopped, run_summary, stop_campaign
from flows.stages.dispatch import dispatch_and_schedule
from flows.stages.select import select_next_batch
from flows.stages.train import train_and_log
from loopwise import strategies
from tasks.score import partitions, score_partition

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
    overlap_policy: Literal["fixed", "adaptive"] | None = None,
    close_batch: bool = False,
) -> dict[str, Any]:
    """Run the campaign's next step: collect, and when its batch is in, one full cycle.

    ``close_batch`` (a manual run) stops waiting for the open batch now, as its
    ``schedule.batch_timeout_seconds`` would: the cycle retrains on what was accepted,
    and late answers to the unresolved items still count. Next runs never inherit it.
    ``overlap_policy`` overrides the campaign's ``overlap.policy`` for this run and the
    runs it schedules (items already out keep the overlap they were sent with).
    """
    overrides = {"batch_size": batch_size, "strategy": strategy, "overlap_policy": overlap_policy}
    overrides |= {"budget_labels": budget_labels, "budget_currency": budget_currency}
    run = open_campaign(campaign, overrides)
    with run.held() as busy:
        return busy or _next_step(run, close_batch=close_batch)


def _next_step(run: CampaignRun, *, close_batch: bool) -> dict[str, Any]:
    """The stages, in order, from where the state says the campaign stands."""
    new_budget = any(run.params.get(b) is not None for b in ("budget_labels", "budget_currency"))
    if run.state.stopped and (done := resume_stopped(run, new_budget=new_budget)):
        return done
    if run.state.cold_start:
        from flows.bootstrap import bootstrap

        return bootstrap(campaign=run.params["campaign"], batch_size=run.params.get("batch_size"))
    data = run.load_data()
    qc, waiting = advance_open_batch(run, close_batch=close_batch)
    if waiting is not None:
        return waiting
    trained = train_and_log(run, data, qc["annotator_accuracy"])
    decision = decide(run, data, trained)
    if decision["stop"]:
        return stop_campaign(run, data, trained, decision)
    selected = select_next_batch(run, data, trained, decision)
    summary = run_summary(run, data, trained, decision)
    return dispatch_and_schedule(run, selected, trained.logged["model_version"], summary)


@flow(name="score-pool")
def score_pool(
    model: Any, X: Any, n: int, strategy: str, params: dict, seed: int, n_partitions: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each pool partition's best candidates, scored in parallel by the task runner.

    The select stage calls it inline (its own thread runner), or as a subflow on a Dask
    cluster when the campaign sets ``dask_address``.
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
