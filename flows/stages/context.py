"""The campaign a run works on: its config with the run's overrides, store, state, Label
Studio target and ledgers, and the validated pool."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopwise.config import CampaignConfig, ConfigError, load_campaign
from loopwise.features import model_inputs
from loopwise.state import CampaignState
from storage.campaign import (
    CampaignBusy,
    Lease,
    Ledgers,
    acquire_lease,
    campaign_store,
    read_state,
    write_state,
)
from storage.store import Store
from tasks.data import load_pool, quarantine_broken_lines, split_holdout
from tasks.labelstudio import LabelStudioTarget, ensure_project, user_ids
from tasks.preflight import check_services

if TYPE_CHECKING:
    from flows.stages.pool import PartitionedData

__all__ = ["CampaignRun", "PoolData", "open_campaign"]


@dataclass
class PoolData:
    """The validated pool and holdout of this run, and how many rows were quarantined."""

    pool: pd.DataFrame
    holdout: pd.DataFrame
    quarantined: int
    partitioned: bool = field(default=False, init=False)

    def undispatched(self, dispatched: list[str]) -> np.ndarray:
        """Row indices of the pool items never sent to Label Studio."""
        return np.flatnonzero(~self.pool["item_id"].isin(set(dispatched)).to_numpy())

    # What the stages ask of any pool (a partitioned one answers from its partitions).

    @property
    def n_pool(self) -> int:
        return len(self.pool)

    def sent_rows(self) -> pd.DataFrame:
        """The pool rows of the items sent to annotators (here: the whole pool)."""
        return self.pool

    def n_undispatched(self, dispatched: list[str]) -> int:
        return len(self.undispatched(dispatched))

    def drift_rows(self, dispatched: list[str]) -> pd.DataFrame:
        """The undispatched pool rows, which the drift check compares with the labeled."""
        return self.pool.iloc[self.undispatched(dispatched)]

    def inputs(
        self, cfg: CampaignConfig, snapshot: pd.DataFrame, *, with_pool: bool = True
    ) -> list[Any]:
        """The model inputs of the labeled snapshot, the holdout and the pool (None without
        ``with_pool``), encoded together."""
        if not with_pool:
            return [*model_inputs(cfg, snapshot, self.holdout), None]
        return model_inputs(cfg, snapshot, self.holdout, self.pool)

    def stop_inputs(
        self, cfg: CampaignConfig, snapshot: pd.DataFrame, X_pool: Any, ids: list[str]
    ) -> Any:
        """The model inputs of the stop set's rows, in pool order."""
        return X_pool[self.pool["item_id"].isin(set(ids)).to_numpy()]

    def choose_stop(self, n: int, seed: int) -> list[str]:
        """``n`` pool items drawn at random, once per campaign (the stop set)."""
        rng = np.random.RandomState(seed)
        n = min(n, len(self.pool))
        return sorted(
            self.pool["item_id"].to_numpy()[rng.choice(len(self.pool), n, replace=False)].tolist()
        )


@dataclass
class CampaignRun:
    """One run's view of its campaign; ``state`` moves only through :meth:`save`."""

    cfg: CampaignConfig
    store: Store
    state: CampaignState
    target: LabelStudioTarget
    params: dict[str, Any]  # what the next scheduled run gets
    _ledgers: Ledgers | None = field(default=None, repr=False)
    _experts: set[str] | None = field(default=None, repr=False)
    _lease: Lease | None = field(default=None, repr=False)

    def save(self, **changes: Any) -> CampaignState:
        """Move the state (``state.json`` replaced atomically), renewing the run's lease first:
        a run that lost the campaign to another (its lease lapsed) stops here."""
        if self._lease is not None:
            self._lease.renew_if_due()
        self.state = write_state(self.store, self.state, **changes)
        return self.state

    @contextmanager
    def held(self) -> Iterator[dict[str, Any] | None]:
        """Hold the campaign for this run: yields None, or the result of a run that must do
        nothing because another run holds the campaign (one line says which). Every external
        service is checked first: one that is down fails the run at once, naming it."""
        check_services(self.cfg, self.store, labelstudio=bool(self.target.token))
        try:
            self._lease = acquire_lease(self.store, _holder(), self.cfg.schedule.lease_seconds)
        except CampaignBusy as busy:
            print(f"campaign {self.cfg.name} is {busy}: this run does nothing")
            yield {"status": "busy", "holder": busy.holder}
            return
        self.state = read_state(self.store)  # as the previous holder left it
        try:
            yield None
        finally:
            self._lease.release()
            self._lease = None

    def ledgers(self) -> Ledgers:
        """The project's ledgers (the project found or created on first use)."""
        if self._ledgers is None:
            cfg = self.cfg
            pid = ensure_project(
                self.target,
                cfg.project_title,
                cfg.labels,
                data_kind=cfg.data.kind,
                overlap=cfg.overlap_policy().initial,
            )
            self.target = self.target.for_project(pid)
            self._ledgers = Ledgers(self.store, pid)
            if self.state.project_id != pid:
                self.save(project_id=pid)
        return self._ledgers

    def use_project(self, project_id: int) -> None:
        """Work on a known Label Studio project without asking the server (benches, tools)."""
        self._ledgers = Ledgers(self.store, project_id)
        self.target = self.target.for_project(project_id)

    def experts(self) -> set[str]:
        """Label Studio user ids of ``labelstudio.reviewers`` (those who have an account)."""
        if self._experts is None:
            self._experts = set(user_ids(self.target, self.cfg.labelstudio.reviewers).values())
        return self._experts

    def load_data(self) -> PoolData | PartitionedData:
        """Pool and holdout, after validation (bad rows quarantined); of a partitioned pool,
        what the run needs of it (:mod:`flows.stages.pool`)."""
        cfg = self.cfg
        if cfg.data.is_partitioned:
            from flows.stages.pool import load_partitioned

            pid = self.state.project_id
            sent = Ledgers(self.store, pid).dispatched_ids() if pid is not None else []
            return load_partitioned(cfg, self.store, sent, self.state.cycle)
        df = load_pool(cfg)
        quarantined = quarantine_broken_lines(self.store, cfg.data.source, df, self.state.cycle)
        if cfg.data.validation_suite:
            from tasks.validate import validate_pool

            before = len(df)
            df, _ = validate_pool(
                df,
                cfg.data.validation_suite,
                id_column="item_id",
                store=self.store,
                source=cfg.data.source,
                min_valid_fraction=cfg.data.min_valid_fraction,
                cycle=self.state.cycle,
            )
            quarantined += before - len(df)
        split = split_holdout(cfg, df)
        return PoolData(split["pool"], split["holdout"], quarantined)


def open_campaign(
    campaign: str, overrides: dict[str, Any], *, need_token: bool = True
) -> CampaignRun:
    """Load and validate the campaign file with the run's overrides; read the token and state.

    ``need_token=False`` for what only reads the store (the report)."""
    cfg = load_campaign(campaign).with_overrides(**overrides)
    token = os.environ.get(cfg.labelstudio.token_env, "")
    if need_token and not token:
        raise ConfigError(
            f"environment variable {cfg.labelstudio.token_env} is not set: it must hold the "
            f"Label Studio API token (labelstudio.token_env in {campaign})"
        )
    store = campaign_store(cfg.storage_root, cfg.name)
    params = {"campaign": campaign, **{k: v for k, v in overrides.items() if v is not None}}
    target = LabelStudioTarget(cfg.labelstudio.url, token)
    return CampaignRun(cfg, store, read_state(store), target, params)


def _holder() -> str:
    """Who holds a lease: the root flow run (a subflow shares its parent's lease), else the
    process."""
    from prefect.runtime import flow_run

    if flow_run.get_id():
        return f"flow run {flow_run.root_flow_run_id}"
    return f"process {os.getpid()} on {socket.gethostname()}"
