"""Thin Prefect tasks, one module per stage: data, validate, labelstudio (dispatch and
collect), qc, train, evaluate, decide, score, schedule, report.

Each task unpacks config, calls one ``loopwise`` function and does the I/O.

One rule for caching: no task uses Prefect's result cache (``NO_CACHE``). A re-run is
made safe by the campaign's checkpoints and ledgers (:mod:`storage.campaign`), not by a
cache key, which would hash every argument (the Label Studio token among them) and
replay a stale result after a crash. Tasks that talk to a server retry; the others don't.
"""

from __future__ import annotations

from functools import partial

from prefect import task
from prefect.cache_policies import NO_CACHE

__all__ = ["io_task", "step_task"]

#: A task that talks to a server or the store: never cached, retried twice.
io_task = partial(task, cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
#: A task that computes: never cached, not retried (the same input fails the same way).
step_task = partial(task, cache_policy=NO_CACHE)
