"""Decide whether another batch is worth its price (the stopping rules and the drift check,
once per cycle), and stop the campaign: the final summary and report."""

from __future__ import annotations

from typing import Any

from flows.stages.context import CampaignRun, PoolData
from flows.stages.train import Trained
from loopwise.state import Stage
from storage.campaign import REPORT_JSON, checkpointed
from tasks.decide import check_drift, stopping_decision
from tasks.evaluate import log_decision
from tasks.report import publish_summary, write_report

__all__ = ["decide", "resume_stopped", "run_summary", "stop_campaign"]


def decide(run: CampaignRun, data: PoolData, trained: Trained) -> dict[str, Any]:
    """The stopping decision of this cycle, with its drift report; made again only when the
    campaign's rules changed (a manual run with a new budget)."""
    cfg, k = run.cfg, run.state.cycle
    rules = cfg.rules(run.state.history).model_dump()
    dispatched = run.ledgers().dispatched_ids()

    def make() -> dict[str, Any]:
        drift = check_drift(cfg, trained.snapshot, data.drift_rows(dispatched))
        decision = stopping_decision(
            cfg,
            run.state.history,
            data.n_undispatched(dispatched),
            judge_model=trained.one_class is None,
        )
        return {**decision, "drift": drift, "rules": rules}

    decision = checkpointed(
        run.store, k, Stage.DECIDED, make, valid=lambda d: d.get("rules") == rules
    )
    log_decision(cfg, trained.logged["run_id"], decision, decision.get("drift"))
    run.save(stage=Stage.DECIDED, decision=decision)
    print(f"cycle {k}: {'STOP' if decision['stop'] else 'go on'} — {decision['reason']}")
    return decision


def run_summary(
    run: CampaignRun, data: PoolData, trained: Trained, decision: dict[str, Any]
) -> dict[str, Any]:
    """What the cycle's summary artifact shows."""
    row = trained.row
    return {
        "cycle": trained.cycle,
        **{key: row[key] for key in ("labels", "annotations", "cost", "metric", "macro_f1")},
        "decision": decision,
        "run_url": trained.logged["run_url"],
        "project_id": run.ledgers().project_id,
        "quarantined": data.quarantined,
    }


def stop_campaign(
    run: CampaignRun, data: PoolData, trained: Trained, decision: dict[str, Any]
) -> dict[str, Any]:
    """Stop: no next run; the final summary and report."""
    run.save(stage=Stage.STOPPED, stopped=True)
    summary = run_summary(run, data, trained, decision)
    publish_summary(run.cfg, {**summary, "status": "campaign stopped", "next_run": "none"})
    write_report(run.cfg, run.store, data.sent_rows(), data.holdout, data.n_pool)
    return {"status": "stopped", "decision": decision, "cycle": trained.cycle}


def resume_stopped(run: CampaignRun, *, new_budget: bool) -> dict[str, Any] | None:
    """A stopped campaign stays stopped (its report is written if the stopping run died
    before it), unless a manual run brings a new budget: that re-opens the last decision
    (None: the cycle goes on from ``trained``)."""
    if new_budget:
        run.save(stopped=False, stage=Stage.TRAINED)
        return None
    decision = run.state.decision or {}
    print(f"campaign {run.cfg.name} stopped at cycle {run.state.cycle}: {decision.get('reason')}")
    if not (run.store.read_json(REPORT_JSON) or {}).get("stopped"):
        data = run.load_data()
        write_report(run.cfg, run.store, data.sent_rows(), data.holdout, data.n_pool)
    return {"status": "stopped", "decision": run.state.decision}
