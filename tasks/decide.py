"""Decide stage: the stopping rules on the campaign history, and the drift check."""

from __future__ import annotations

from typing import Any

import pandas as pd

from loopwise.config import CampaignConfig
from loopwise.drift import drift_report
from loopwise.stopping import decide, history_records
from tasks import step_task

__all__ = ["check_drift", "stopping_decision"]


@step_task
def stopping_decision(
    cfg: CampaignConfig,
    history: list[dict[str, Any]],
    pool_remaining: int,
    judge_model: bool = True,
) -> dict[str, Any]:
    """Apply the campaign's stopping rules to its history; the decision with reason and numbers.

    ``judge_model`` is False while a single class is labeled: only the pool and the
    budgets can stop the campaign then."""
    decision = decide(
        history_records(history),
        cfg.rules(history),
        pool_remaining=pool_remaining,
        next_batch=cfg.batch_size,
        judge_model=judge_model,
    )
    return decision.to_dict()


@step_task
def check_drift(
    cfg: CampaignConfig, labeled: pd.DataFrame, pool: pd.DataFrame
) -> dict[str, Any] | None:
    """PSI and KS per numeric feature between the labeled snapshot and the current pool (a
    vector column compared dimension by dimension, as a single-file pool spreads it)."""
    if cfg.data.text_column is not None or len(labeled) < 20:
        return None
    from loopwise.infer import expand_vectors

    labeled, pool = expand_vectors(labeled), expand_vectors(pool)
    skip = {c for c in (cfg.data.id_column, cfg.data.label_column, "item_id", "label") if c}
    cols = cfg.data.feature_columns or [c for c in pool.columns if c not in skip]
    cols = [c for c in cols if c in labeled.columns]
    report = drift_report(
        labeled[cols], pool[cols], psi_threshold=cfg.drift_psi_threshold, random_state=cfg.seed
    )
    return report.to_dict()
