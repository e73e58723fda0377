"""Cold start: nothing is labeled and no model exists yet; send the first batch."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from pydantic import Field

from flows.stages.context import CampaignRun, open_campaign
from flows.stages.dispatch import dispatch_and_schedule
from flows.stages.select import select_cold_start
from loopwise.state import Stage

__all__ = ["bootstrap"]


@flow(name="bootstrap", log_prints=True)
def bootstrap(
    campaign: str = "configs/demo.yaml",
    batch_size: Annotated[int, Field(gt=0, le=10_000)] | None = None,
) -> dict[str, Any]:
    """Select the first batch without a model (cold start) and send it to Label Studio."""
    run = open_campaign(campaign, {"batch_size": batch_size})
    with run.held() as busy:
        return busy or _cold_start(run)


def _cold_start(run: CampaignRun) -> dict[str, Any]:
    if not run.state.cold_start:
        print(
            f"campaign {run.cfg.name} is past its cold start (cycle {run.state.cycle}); nothing to do"
        )
        return {"status": "skipped", "cycle": run.state.cycle}
    run.save(cycle=0, stage=Stage.STARTED)
    data = run.load_data()
    selected = select_cold_start(run, data)
    summary = {"labels": 0, "quarantined": data.quarantined}
    return dispatch_and_schedule(run, selected, None, summary)
