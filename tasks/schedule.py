"""The next scheduled run: exactly one per go decision, none after a stop, and at most one
waiting per campaign (a new one replaces the others of the campaign's chain)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from tasks import io_task

__all__ = ["describe_next", "schedule_next_run", "waiting_next_runs"]


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
    replaced = _cancel_other_next_runs(run.deployment_id, run.id)
    return {
        "created": True,
        "replaced": replaced,
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


def waiting_next_runs(deployment_id: Any) -> list[Any]:
    """The deployment's next-cycle runs that wait to start (scheduled, tag ``next-cycle``)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    waiting = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
        tags=FlowRunFilterTags(all_=["next-cycle"]),
    )
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=waiting,
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        )


def _cancel_other_next_runs(deployment_id: Any, keep: Any) -> int:
    """Cancel the campaign's other scheduled next runs (a manual run beside the scheduled one
    would otherwise start a second chain of re-checks); runs people started are left alone."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    if deployment_id is None:
        return 0
    others = [r for r in waiting_next_runs(deployment_id) if r.id != keep]
    with get_client(sync_client=True) as client:
        for r in others:
            client.set_flow_run_state(
                r.id, Cancelled(message=f"replaced by the campaign's next run {keep}"), force=True
            )
    return len(others)
