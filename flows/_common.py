"""Orchestration shared by the cycle and bootstrap flows: the campaign's context and the
dispatch-then-schedule tail. Only calls tasks and reads state; no computation here."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopwise.config import CampaignConfig, ConfigError, load_campaign
from storage.store import Store
from tasks.data import load_pool, quarantine_broken_lines, split_holdout
from tasks.labelstudio import ensure_project, read_annotations
from tasks.report import publish_batch, publish_summary
from tasks.schedule import schedule_next_run
from tasks.state import (
    campaign_store,
    checkpoint,
    now_iso,
    read_state,
    save_checkpoint,
    write_state,
)

__all__ = [
    "CampaignContext",
    "campaign_context",
    "dispatch_and_wait",
    "next_run_parameters",
    "paid_annotations",
    "stop_set_ids",
]


@dataclass
class CampaignContext:
    """The validated config, its store and state, and the Label Studio token (never logged)."""

    cfg: CampaignConfig
    store: Store
    root: str
    state: dict[str, Any]
    token: str = field(repr=False)
    _project_id: int | None = None
    _reviewers: dict[str, str] | None = None

    def load_data(self) -> dict[str, Any]:
        """Pool and holdout, after validation (bad rows quarantined)."""
        df = load_pool(self.cfg)
        quarantined = quarantine_broken_lines(
            self.store, self.cfg.data.source, df, self.state["cycle"]
        )
        if self.cfg.data.validation_suite:
            from tasks.validate import validate_pool

            before = len(df)
            df, _ = validate_pool(
                df,
                self.cfg.data.validation_suite,
                id_column="item_id",
                store_root=self.root,
                source=self.cfg.data.source,
                min_valid_fraction=self.cfg.data.min_valid_fraction,
                cycle=self.state["cycle"],
            )
            quarantined += before - len(df)
        out = split_holdout(self.cfg, df)
        out["quarantined"] = quarantined
        return out

    def project(self) -> int:
        """The campaign's Label Studio project id (found or created)."""
        if self._project_id is None:
            cfg = self.cfg
            self._project_id = ensure_project(
                cfg.labelstudio.url,
                self.token,
                cfg.project_title,
                cfg.labels,
                data_kind=cfg.data.kind,
                overlap=cfg.annotators_per_item,
            )
        return self._project_id

    def reviewers(self) -> dict[str, str]:
        """``labelstudio.reviewers`` → their Label Studio user ids (those who have one)."""
        if self._reviewers is None:
            from tasks.labelstudio import user_ids

            self._reviewers = user_ids(
                self.cfg.labelstudio.url, self.token, self.cfg.labelstudio.reviewers
            )
        return self._reviewers

    def dispatched_items(self, project_id: int) -> list[str]:
        """Every item ever sent to the project (from the dispatch ledger)."""
        rows = self.store.read_jsonl(f"dispatch/{project_id}.jsonl")
        return [r["item_id"] for r in rows if r.get("event") == "sent"]


def campaign_context(campaign: str, overrides: dict[str, Any]) -> CampaignContext:
    """Load and validate the campaign file with the run's overrides; read the token."""
    cfg = load_campaign(campaign).with_overrides(**overrides)
    token = os.environ.get(cfg.labelstudio.token_env)
    if not token:
        raise ConfigError(
            f"environment variable {cfg.labelstudio.token_env} is not set: it must hold the "
            f"Label Studio API token (labelstudio.token_env in {campaign})"
        )
    root = f"{str(cfg.storage_root).rstrip('/')}/{cfg.name}"
    store = campaign_store(cfg.storage_root, cfg.name)
    return CampaignContext(cfg, store, root, read_state(store), token)


def next_run_parameters(campaign: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The parameters the next run gets: the campaign and this run's overrides."""
    return {"campaign": campaign, **{k: v for k, v in overrides.items() if v is not None}}


def paid_annotations(root: str, project_id: int) -> int:
    """Annotations that cost money: every submitted one (skips and cancellations are free)."""
    return len(read_annotations(root, project_id, ["accepted", "rejected"]))


def stop_set_ids(store: Store, pool: pd.DataFrame, cfg: CampaignConfig) -> list[str]:
    """A fixed sample of pool ids on which consecutive models are compared (chosen once)."""
    ids = store.read_json("stop_set.json")
    if ids is None:
        rng = np.random.RandomState(cfg.seed)
        n = min(cfg.stop_set_size, len(pool))
        ids = sorted(pool["item_id"].to_numpy()[rng.choice(len(pool), n, replace=False)].tolist())
        store.write_json("stop_set.json", ids)
    return ids


def dispatch_and_wait(
    ctx: CampaignContext,
    state: dict[str, Any],
    k: int,
    selected: dict[str, Any],
    model_version: str | None,
    params: dict[str, Any],
    summary: dict[str, Any],
) -> dict[str, Any]:
    """Send the selected batch to Label Studio (once), then schedule the first re-check."""
    from tasks.labelstudio import dispatch_batch

    cfg, store = ctx.cfg, ctx.store
    project_id = ctx.project()
    receipt = checkpoint(store, k, "dispatched")
    if receipt is None:
        receipt = dispatch_batch(
            cfg.labelstudio.url,
            ctx.token,
            project_id,
            selected["batch"],
            store_root=ctx.root,
            cycle=k,
            model_version=model_version,
            data_kind=cfg.data.kind,
            labels=cfg.labels,
        )
        receipt = save_checkpoint(store, k, "dispatched", receipt)
        publish_batch(cfg, k, selected["batch"])
    items = [b["item_id"] for b in selected["batch"]]
    print(
        f"cycle {k}: dispatched {receipt['created']} new task(s) "
        f"({receipt['already_dispatched']} already there) with {selected['strategy']}"
    )
    # Schedule before the state says "waiting": a crash in between is re-run from the
    # dispatch checkpoint and meets the same idempotency key, so no second run appears.
    nxt = schedule_next_run(
        cfg.deployment, params, cfg.schedule.recheck_seconds, f"{cfg.name}:c{k}:dispatched"
    )
    state = write_state(
        store,
        state,
        stage="waiting",
        open_batch=items,
        rechecks=0,
        next_run=nxt,
        waiting_since=now_iso(),
    )
    publish_summary(
        cfg,
        {
            **summary,
            "cycle": k,
            "status": f"batch of {len(items)} sent to Label Studio",
            "project_id": project_id,
            "next_run": nxt.get("flow_run_name") or nxt.get("reason"),
        },
    )
    return {"status": "dispatched", "cycle": k, "receipt": receipt, "next_run": nxt}
