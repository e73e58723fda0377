"""Dispatch and schedule: send the selected batch to Label Studio (once), schedule the first
re-check, and only then say the campaign is waiting."""

from __future__ import annotations

from typing import Any

from flows.stages.context import CampaignRun
from loopwise.state import Stage, now_iso
from storage.campaign import checkpointed
from tasks.labelstudio import dispatch_batch
from tasks.qc import request_more_annotations
from tasks.report import publish_batch, publish_summary
from tasks.schedule import schedule_next_run

__all__ = ["dispatch_and_schedule"]


def dispatch_and_schedule(
    run: CampaignRun,
    selected: dict[str, Any],
    model_version: str | None,
    summary: dict[str, Any],
) -> dict[str, Any]:
    """Send the selected batch to Label Studio (once), then schedule the first re-check."""
    cfg, k, ledgers = run.cfg, run.state.cycle, run.ledgers()
    sent: list[dict[str, Any]] = []  # what this run sent (nothing on a re-run)

    def send() -> dict[str, Any]:
        receipt = dispatch_batch(
            run.target,
            ledgers,
            selected["batch"],
            cycle=k,
            model_version=model_version,
            data_kind=cfg.data.kind,
            labels=cfg.labels,
            overlap=cfg.overlap_policy().initial,
        )
        relabel = selected.get("relabel") or []
        if relabel:
            asked = request_more_annotations(
                run.target,
                ledgers,
                [r["item_id"] for r in relabel],
                reasons={
                    r["item_id"]: f"relabel: an answer adds {r['gain']} of a label" for r in relabel
                },
                cycle=k,
                max_annotations=cfg.max_annotations_per_item,
            )
            receipt = {**receipt, "relabeled": len(asked)}
        publish_batch(cfg, k, selected["batch"])
        sent.append(receipt)
        return receipt

    receipt = checkpointed(run.store, k, "dispatched", send)
    items = [b["item_id"] for b in selected["batch"]]
    if sent:
        print(
            f"cycle {k}: dispatched {receipt['created']} new task(s) "
            f"({receipt['already_dispatched']} already there) with {selected['strategy']}"
            + (
                f"; {receipt['relabeled']} accepted label(s) asked again"
                if receipt.get("relabeled")
                else ""
            )
        )
    else:  # a re-run: this run sent nothing
        print(f"cycle {k}: the batch of {len(items)} was already dispatched; nothing sent")
    # Schedule before the state says "waiting": a crash in between is re-run from the
    # dispatch checkpoint and meets the same idempotency key, so no second run appears.
    key = f"{cfg.name}:c{k}:dispatched"
    nxt = schedule_next_run(cfg.deployment, run.params, cfg.schedule.recheck_seconds, key)
    run.save(
        stage=Stage.WAITING, open_batch=items, rechecks=0, next_run=nxt, waiting_since=now_iso()
    )
    publish_summary(
        cfg,
        {
            **summary,
            "cycle": k,
            "status": f"batch of {len(items)} sent to Label Studio",
            "project_id": ledgers.project_id,
            "next_run": nxt.get("flow_run_name") or nxt.get("reason"),
        },
    )
    return {"status": "dispatched", "cycle": k, "receipt": receipt, "next_run": nxt}
