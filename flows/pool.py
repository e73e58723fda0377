"""The partition maps of a partitioned pool: every partition checked, then scored, where it
lives. On a Dask cluster (``dask_address``, or ``dask_cluster_class``: a temporary one per
map, through prefect-dask's ``DaskTaskRunner``) each map is a subflow whose task runs are the
partitions (a few per task run: ``partitions_per_task``); without one, the same tasks run in
the flow process, one after the other, so that the process never holds more than one
partition."""

from __future__ import annotations

import importlib
import itertools
from typing import Any

from prefect import flow, unmapped

from loopwise.config import CampaignConfig
from storage.partitions import PartitionRef
from storage.store import Store
from tasks.partitions import CheckRequest, check_group, score_group

__all__ = [
    "check_pool",
    "map_partitions",
    "partition_groups",
    "score_pool_partitions",
    "task_runner",
]


def task_runner(cfg: CampaignConfig) -> Any:
    """The campaign's Dask task runner, or None for the flow process."""
    if not (cfg.dask_address or cfg.dask_cluster_class):
        return None
    from prefect_dask import DaskTaskRunner

    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    module, _, name = cfg.dask_cluster_class.rpartition(".")
    cls = getattr(importlib.import_module(module), name)  # fails early, naming the class
    return DaskTaskRunner(cluster_class=cls, cluster_kwargs=dict(cfg.dask_cluster_kwargs))


@flow(name="check-pool")
def check_pool(
    cfg: CampaignConfig, store: Store, groups: list[list[PartitionRef]], ask: CheckRequest
) -> list[list[dict[str, Any]]]:
    """Every group of partitions checked (validated once per content), on the task runner."""
    futures = check_group.map(unmapped(cfg), unmapped(store), groups, unmapped(ask))
    return [f.result() for f in futures]


@flow(name="score-pool-partitions")
def score_pool_partitions(
    cfg: CampaignConfig,
    store: Store,
    groups: list[list[PartitionRef]],
    model: Any,
    dispatched: frozenset[str],
    scoring: dict[str, Any],
) -> list[list[dict[str, Any]]]:
    """Every group of partitions' best candidates and control draws, on the task runner."""
    futures = score_group.map(
        unmapped(cfg),
        unmapped(store),
        groups,
        unmapped(model),
        unmapped(dispatched),
        **{k: unmapped(v) for k, v in scoring.items()},
    )
    return [f.result() for f in futures]


def partition_groups(refs: list[PartitionRef], per_task: int, slots: int) -> list[list[Any]]:
    """The partitions in groups of at most about ``per_task``, as many groups as a multiple
    of the cluster's ``slots`` (threads) allows, of near-equal sizes: no thread waits on
    another's last group."""
    if not refs:
        return []
    n = -(-len(refs) // max(per_task, 1))
    n = min(len(refs), -(-n // max(slots, 1)) * max(slots, 1))
    bounds = [round(i * len(refs) / n) for i in range(n + 1)]
    return [refs[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _threads(cfg: CampaignConfig) -> int:
    """The worker threads of the campaign's running cluster (1 when not known: a cluster
    created per map has none yet)."""
    if not cfg.dask_address:
        return 1
    from distributed import Client

    try:
        with Client(cfg.dask_address, timeout=10) as client:
            return max(1, sum(client.nthreads().values()))
    except OSError:
        return 1  # the map itself then fails, naming the address


def map_partitions(cfg: CampaignConfig, which: str, *args: Any) -> list[dict[str, Any]]:
    """Run the ``which`` map (``"check"`` or ``"score"``) over the partitions, in groups of
    ``partitions_per_task`` per task run: on the campaign's Dask cluster as a subflow, or
    in the flow process one group after the other. One result per partition, in order."""
    store, refs, *rest = args
    runner = task_runner(cfg)
    groups = partition_groups(refs, cfg.partitions_per_task, _threads(cfg) if runner else 1)
    if runner is not None:
        sub = {"check": check_pool, "score": score_pool_partitions}[which]
        sub = sub.with_options(task_runner=runner, validate_parameters=False)
        out = sub(cfg, store, groups, *rest)
    elif which == "score":
        model, dispatched, scoring = rest
        out = [score_group(cfg, store, g, model, dispatched, **scoring) for g in groups]
    else:
        out = [check_group(cfg, store, g, *rest) for g in groups]
    return [r for group in out for r in group]
