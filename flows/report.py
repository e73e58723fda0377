"""The campaign report on demand (`loopwise report`); the cycle writes the same report with
the same task when the campaign stops, from the pool it has already loaded."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.stages.context import open_campaign
from tasks.report import write_report

__all__ = ["report"]


@flow(name="report", log_prints=True)
def report(campaign: str = "configs/demo.yaml") -> dict[str, Any]:
    """Write the campaign's HTML report to its store, MLflow and a Prefect artifact."""
    # The same validated pool and holdout as the cycle (no Label Studio token needed).
    run = open_campaign(campaign, {}, need_token=False)
    data = run.load_data()
    out = write_report(run.cfg, run.store, data.sent_rows(), data.holdout, data.n_pool)
    r = out["report"]
    print(
        f"report of {run.cfg.name}: {r['labels']} labels, {r['spent']:.2f} spent, "
        f"holdout accuracy {r['metric']}; written to {out['uri']}"
    )
    return out
