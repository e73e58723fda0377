"""The next scheduled run: exactly one per go decision, none after a stop."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from tasks import io_task

__all__ = ["describe_next", "schedule_next_run"]


@io_task
def schedule_next_run(
    deployment: str, parameters: dict[str, Any], delay_seconds: float, idempotency_key: str
) -> dict[str, Any]:
    """Create the deployment's next flow run; the idempotency key makes a retry create none extra."""
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay_seconds)
    try:
        run = run_deployment(
            name=deployment,
            parameters=parameters,
            scheduled_time=when,
            timeout=0,
            as_subflow=False,
            idempotency_key=idempotency_key,
            tags=["loopwise", "next-cycle"],
        )
    except ObjectNotFound:
        return {
            "created": False,
            "reason": f"no deployment {deployment!r}: the next run must be started by hand "
            "(loopwise run, or deploy with prefect.yaml)",
        }
    return {
        "created": True,
        "flow_run_id": str(run.id),
        "flow_run_name": run.name,
        "scheduled_time": when.isoformat(),
        "idempotency_key": idempotency_key,
    }


def describe_next(nxt: dict[str, Any]) -> str:
    """The next run in one line, for the run summary."""
    if nxt.get("created"):
        return f"{nxt['flow_run_name']} at {nxt['scheduled_time']}"
    return nxt.get("reason", "not scheduled")
