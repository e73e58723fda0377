"""The campaign report on demand (`loopwise report`); the cycle writes the same report with
the same task when the campaign stops, from the pool it has already loaded."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows._common import CampaignContext
from loopwise.config import load_campaign
from tasks.report import write_report
from tasks.state import campaign_store, read_state

__all__ = ["report"]


@flow(name="report", log_prints=True)
def report(campaign: str = "configs/demo.yaml") -> dict[str, Any]:
    """Write the campaign's HTML report to its store, MLflow and a Prefect artifact."""
    cfg = load_campaign(campaign)
    store = campaign_store(cfg.storage_root, cfg.name)
    root = f"{str(cfg.storage_root).rstrip('/')}/{cfg.name}"
    # The same validated pool and holdout as the cycle (no Label Studio token needed).
    data = CampaignContext(cfg, store, root, read_state(store), token="").load_data()
    out = write_report(cfg, store, data["pool"], data["holdout"])
    r = out["report"]
    print(
        f"report of {cfg.name}: {r['labels']} labels, {r['spent']:.2f} spent, "
        f"holdout accuracy {r['metric']}; written to {out['uri']}"
    )
    return out
