"""Thin Prefect tasks, one module per stage: data, validate, labelstudio (dispatch and
collect), qc, train, evaluate, decide, score, schedule, report.

Each task unpacks config, calls one ``loopwise`` function and does the I/O.

One rule for caching: no task uses Prefect's result cache (``NO_CACHE``). A re-run is
made safe by the campaign's checkpoints and ledgers (:mod:`storage.campaign`), not by a
cache key, which would hash every argument (the Label Studio token among them) and
replay a stale result after a crash.

One rule for retries: tasks that talk to a server retry twice, 2 s apart, and only for
what retrying can fix (a connection refused, reset or timed out; HTTP 5xx or 429); the
others fail at once, as the same input fails the same way.
"""

from __future__ import annotations

from functools import partial

from prefect import task
from prefect.cache_policies import NO_CACHE

__all__ = ["io_task", "step_task", "transient"]

_TRANSIENT_NAMES = {  # client libraries' names for a network failure
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "RemoteProtocolError",
    "EndpointConnectionError",
    "ReadTimeoutError",
    "ConnectTimeoutError",
}
_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}  # MLflow's


def transient(err: BaseException | None) -> bool:
    """Whether retrying may fix ``err`` (or an error it was raised from)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, ConnectionError | TimeoutError):
            return True
        status = getattr(err, "status_code", None)
        status = status or getattr(getattr(err, "response", None), "status_code", None)
        if isinstance(status, int) and (status >= 500 or status == 429):
            return True
        if type(err).__name__ in _TRANSIENT_NAMES or getattr(err, "error_code", None) in (
            _TRANSIENT_CODES
        ):
            return True
        err = err.__cause__ or err.__context__
    return False


def _worth_retrying(task_: object, task_run: object, state: object) -> bool:
    """Prefect's retry condition: the failed state's exception is transient."""
    return transient(getattr(state, "data", None))


#: A task that talks to a server or the store: never cached, retried twice on transient errors.
io_task = partial(
    task,
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_worth_retrying,
)
#: A task that computes: never cached, not retried (the same input fails the same way).
step_task = partial(task, cache_policy=NO_CACHE)
