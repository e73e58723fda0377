"""The stream path as Prefect flows: ``stream`` (on a short schedule) and ``retrain`` (what
a trigger creates).

stream: new log records since the cursor ─► decide (records no gateway decided) ─►
        Label Studio in small batches ─► feedback as answers ─► collect ─► consensus ─►
        drift windows ─► triggers ─► at most one retrain run (idempotency key)

A stream run first writes what it read and decided (``stream/runs/<n>.json``, created
once), then dispatches, then moves the cursor: a run that died anywhere is run again and
finds its checkpoint, so every record is decided once and dispatched once. The retrain
fits on every accepted label (pool and stream), logs to MLflow and goes through the same
champion gate as a cycle; the gateway serves the new champion when the alias moves.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.stages.advance import collect_and_agree
from flows.stages.context import CampaignRun, open_campaign
from flows.stages.stream import (
    evaluate_and_request,
    ingest_feedback,
    read_and_decide,
    record_and_dispatch,
    retrain_now,
)

__all__ = ["retrain", "stream"]


@flow(name="stream", log_prints=True)
def stream(campaign: str = "configs/demo-stream.yaml") -> dict[str, Any]:
    """Read the inference log since the cursor, ask people about the records worth it,
    collect their answers, and ask for a retrain when a trigger says so."""
    run = open_campaign(campaign, {})
    with run.held() as busy:
        return busy or _stream_step(run)


def _stream_step(run: CampaignRun) -> dict[str, Any]:
    decided = read_and_decide(run)
    dispatched = record_and_dispatch(run, decided)
    feedback = ingest_feedback(run)
    collect_and_agree(run)
    triggered = evaluate_and_request(run, decided)
    print(
        f"stream run {decided['run']}: {decided['records']} record(s) read "
        f"({decided['quarantined']} quarantined), {decided['decisions']}; "
        f"{dispatched['created']} task(s) created; {feedback['new']} feedback answer(s); "
        + (
            f"retrain {triggered['key']} requested"
            if triggered.get("created") is not None
            else f"a retrain is pending ({triggered['pending']})"
            if triggered.get("pending")
            else "no retrain"
        )
    )
    return {
        "status": "streamed",
        **decided,
        "dispatched": dispatched,
        "feedback": feedback,
        "trigger": triggered,
    }


@flow(name="retrain", log_prints=True)
def retrain(
    campaign: str = "configs/demo-stream.yaml", key: str = "manual", reason: str = "started by hand"
) -> dict[str, Any]:
    """Fit on every accepted label, log to MLflow, and let the champion gate decide.

    ``key`` is the trigger's idempotency key: a second run with the same key returns the
    first one's result and trains nothing."""
    run = open_campaign(campaign, {})
    with run.held() as busy:
        return busy or retrain_now(run, key, reason)
