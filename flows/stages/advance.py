"""Advance the open batch: collect what annotators sent, run consensus, and either wait
(ask for more answers, publish progress, schedule a re-check) or open the next cycle."""

from __future__ import annotations

import logging
from typing import Any

from flows.stages.context import CampaignRun
from loopwise.batch import batch_deadline, batch_progress, review_queue
from loopwise.state import Stage, now_iso
from tasks.labelstudio import collect_annotations
from tasks.qc import close_open_batch, consensus_qc, request_more_annotations
from tasks.report import publish_review, publish_summary
from tasks.schedule import describe_next, schedule_next_run

__all__ = ["advance_open_batch", "collect_and_agree"]

log = logging.getLogger("loopwise.cycle")


def advance_open_batch(
    run: CampaignRun, *, close_batch: bool = False
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(consensus result, the run's result if it must wait for annotators, else None).

    When the open batch is resolved (or closed at its deadline, or by ``close_batch``)
    the next cycle is opened: the state moves to ``started`` at cycle + 1.
    """
    collected, qc = collect_and_agree(run)
    if run.state.stage != Stage.WAITING:
        return qc, None
    progress = _progress(run, qc)
    if qc.get("corrected_new"):
        print(f"cycle {run.state.cycle}: {qc['corrected_new']} accepted label(s) corrected")
    print(
        f"cycle {run.state.cycle}: batch {progress['done']}/{progress['total']} resolved "
        f"({len(progress['review'])} to expert review, {len(progress['more'])} sent back); "
        f"{collected.get('new', 0)} new annotation(s) collected"
    )
    progress = _close_if_due(run, progress, qc, forced=close_batch)
    if _must_wait(run, progress, qc):
        return qc, _wait(run, progress, qc)
    run.save(
        cycle=run.state.cycle + 1,
        stage=Stage.STARTED,
        rechecks=0,
        open_batch=None,
        waiting_since=None,
    )
    return qc, None


def collect_and_agree(run: CampaignRun) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what was collected, the consensus result): every new annotation read from Label
    Studio, then the consensus of the campaign's method and overlap policy over all of them
    (the cycle's open batch and the stream's items alike)."""
    cfg, ledgers = run.cfg, run.ledgers()
    collected = collect_annotations(run.target, ledgers, cfg.labels)
    qc = consensus_qc(
        ledgers,
        cfg.labels,
        cycle=run.state.cycle,
        method=cfg.consensus,
        min_agreement=cfg.agreement_threshold,
        min_annotations=cfg.annotators_per_item,
        random_state=cfg.seed,
        experts=run.experts(),
        policy=cfg.overlap_policy(),
    )
    return collected, qc


def _progress(run: CampaignRun, qc: dict[str, Any]) -> dict[str, Any]:
    """Where the open batch stands; disputed items get another annotator, and the review
    queue (disputes out of annotators) is published for the experts."""
    cfg, ledgers = run.cfg, run.ledgers()
    progress = batch_progress(
        run.state.open_batch or [],
        accepted=ledgers.labeled_ids(),
        answers=ledgers.answers_per_item(),
        annotators_per_item=cfg.overlap_policy().initial,
        max_annotations=cfg.max_annotations_per_item,
    )
    if progress["more"]:
        request_more_annotations(
            run.target,
            ledgers,
            progress["more"],
            reasons={i: qc["disputed"].get(i, "too few answers") for i in progress["more"]},
            cycle=run.state.cycle,
            max_annotations=cfg.max_annotations_per_item,
        )
    if progress["review"] or run.state.review_queue:
        queue = review_queue(
            ledgers.annotations(["accepted"]), ledgers.labeled_ids(), cfg.max_annotations_per_item
        )
        publish_review(cfg, ledgers.project_id, queue)
        run.save(review_queue=len(queue))
    return progress


def _close_if_due(
    run: CampaignRun, progress: dict[str, Any], qc: dict[str, Any], *, forced: bool
) -> dict[str, Any]:
    """Close the open batch past its deadline (or when ``forced``): its unresolved items are
    recorded, their tasks stay open, and the cycle goes on with what was accepted."""
    if run.state.waiting_since is None:  # a batch dispatched before the field existed
        run.save(waiting_since=now_iso())
    if not progress["pending"]:
        return progress
    k = run.state.cycle
    late = batch_deadline(
        run.state.waiting_since, run.cfg.schedule.batch_timeout_seconds, forced=forced
    )
    if late is not None and not qc["accepted_total"]:
        log.warning(
            "batch of cycle %d is past its deadline, but no label is accepted yet: still waiting",
            k,
        )
        return progress
    if late is None:
        return progress
    closed = close_open_batch(run.ledgers(), progress["pending"], k, late)
    print(
        f"cycle {k}: batch closed after {late:.0f} s with {len(closed)} item(s) "
        "unresolved (still open in Label Studio; late answers count)"
    )
    return {**progress, "pending": []}


def _must_wait(run: CampaignRun, progress: dict[str, Any], qc: dict[str, Any]) -> bool:
    if progress["pending"]:
        return True
    if not qc["accepted_total"]:
        # Every item resolved, but into the review queue: nothing to fit a model on.
        log.warning(
            "batch of cycle %d is resolved but no label is accepted: "
            "waiting for the reviewers (%d item(s) in the review queue)",
            run.state.cycle,
            len(progress["review"]),
        )
        return True
    return False


def _wait(run: CampaignRun, progress: dict[str, Any], qc: dict[str, Any]) -> dict[str, Any]:
    """Schedule the next re-check (once per re-check number) and publish the progress."""
    cfg, k = run.cfg, run.state.cycle
    key = f"{cfg.name}:c{k}:recheck:{run.state.rechecks}"
    nxt = schedule_next_run(cfg.deployment, run.params, cfg.schedule.recheck_seconds, key)
    run.save(rechecks=run.state.rechecks + 1)
    publish_summary(
        cfg,
        {
            "cycle": k,
            "status": "batch still being labeled",
            "batch_progress": f"{progress['done']}/{progress['total']} items resolved",
            "labels": qc["accepted_total"],
            "project_id": run.ledgers().project_id,
            "next_run": describe_next(nxt),
        },
    )
    return {"status": "waiting", "progress": progress, "next_run": nxt}
