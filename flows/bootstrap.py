"""Cold start: nothing is labeled and no model exists yet; send the first batch."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from pydantic import Field

from flows._common import campaign_context, dispatch_and_wait, next_run_parameters
from loopwise.batch import batch_records, control_count, draw_control
from loopwise.features import model_inputs
from tasks.score import select_without_model
from tasks.state import checkpoint, save_checkpoint, write_state

__all__ = ["bootstrap"]


@flow(name="bootstrap", log_prints=True)
def bootstrap(
    campaign: str = "configs/demo.yaml",
    batch_size: Annotated[int, Field(gt=0, le=10_000)] | None = None,
) -> dict[str, Any]:
    """Select the first batch without a model (cold start) and send it to Label Studio."""
    overrides = {"batch_size": batch_size}
    ctx = campaign_context(campaign, overrides)
    cfg, store, state = ctx.cfg, ctx.store, ctx.state
    if state["stage"] not in ("new", "started", "selected") or state["cycle"] > 0:
        print(f"campaign {cfg.name} is past its cold start (cycle {state['cycle']}); nothing to do")
        return {"status": "skipped", "cycle": state["cycle"]}
    state = write_state(store, state, cycle=0, stage="started")
    data = ctx.load_data()
    pool = data["pool"]
    selected = checkpoint(store, 0, "selected")
    if selected is None:
        (X_pool,) = model_inputs(cfg, pool)
        n = min(cfg.cold_start_size or cfg.batch_size, len(pool))
        if cfg.budget.labels is not None:
            n = min(n, cfg.budget.labels)
        n_control = control_count(n, cfg.control_fraction)
        picked, scores = select_without_model(
            X_pool, n - n_control, cfg.strategy.cold_start, cfg.seed
        )
        # The control share: drawn at random from what the cold-start strategy did not pick.
        control = draw_control(len(pool), picked, n_control, cfg.seed)
        batch = batch_records(
            cfg,
            pool,
            [*picked, *control],
            [*scores, *[None] * len(control)],
            control=[False] * len(picked) + [True] * len(control),
        )
        selected = save_checkpoint(
            store, 0, "selected", {"strategy": cfg.strategy.cold_start, "batch": batch}
        )
    state = write_state(store, state, stage="selected")
    summary = {"labels": 0, "quarantined": data["quarantined"]}
    return dispatch_and_wait(
        ctx, state, 0, selected, None, next_run_parameters(campaign, overrides), summary
    )
