"""The partition maps of a partitioned pool: every partition checked, then scored, where it
lives. On a Dask cluster (``dask_address``, or ``dask_cluster_class``: one per flow run,
through prefect-dask's ``DaskTaskRunner``) each map is a subflow whose task runs are the
partitions; without one, the same tasks run in the flow process, one partition at a time,
so that the process never holds more than one partition."""

from __future__ import annotations

import importlib
from typing import Any

from prefect import flow, unmapped

from loopwise.config import CampaignConfig
from storage.partitions import PartitionRef
from storage.store import Store
from tasks.partitions import CheckRequest, check_partition, score_partition_file

__all__ = ["check_pool", "map_partitions", "score_partitions", "task_runner"]


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
    cfg: CampaignConfig, store: Store, refs: list[PartitionRef], ask: CheckRequest
) -> list[dict[str, Any]]:
    """Every partition's check (validated once per content), on the flow's task runner."""
    futures = check_partition.map(unmapped(cfg), unmapped(store), refs, unmapped(ask))
    return [f.result() for f in futures]


@flow(name="score-partitions")
def score_partitions(
    cfg: CampaignConfig,
    store: Store,
    refs: list[PartitionRef],
    model: Any,
    dispatched: frozenset[str],
    scoring: dict[str, Any],
) -> list[dict[str, Any]]:
    """Every partition's best candidates and control draws, on the flow's task runner."""
    futures = score_partition_file.map(
        unmapped(cfg),
        unmapped(store),
        refs,
        unmapped(model),
        unmapped(dispatched),
        **{k: unmapped(v) for k, v in scoring.items()},
    )
    return [f.result() for f in futures]


def map_partitions(cfg: CampaignConfig, which: str, *args: Any) -> list[dict[str, Any]]:
    """Run the ``which`` map (``"check"`` or ``"score"``) on the campaign's Dask cluster as
    a subflow, or in the flow process one partition at a time."""
    sub = {"check": check_pool, "score": score_partitions}[which]
    runner = task_runner(cfg)
    if runner is not None:
        return sub.with_options(task_runner=runner, validate_parameters=False)(cfg, *args)
    store, refs, *rest = args
    task = {"check": check_partition, "score": score_partition_file}[which]
    if which == "score":
        model, dispatched, scoring = rest
        return [task(cfg, store, ref, model, dispatched, **scoring) for ref in refs]
    return [task(cfg, store, ref, *rest) for ref in refs]
