"""Data stage: read the pool, give rows their ids, validate, split off the holdout."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from loopwise.config import CampaignConfig
from loopwise.items import assign_ids, split_by_hash
from storage.store import Store, quarantine_key
from storage.tables import read_table
from tasks import io_task, step_task

__all__ = ["load_pool", "quarantine_broken_lines", "split_holdout"]


@io_task
def load_pool(cfg: CampaignConfig) -> pd.DataFrame:
    """Read the campaign's data source and give every row its item id."""
    df = _read(cfg, cfg.data.source)
    bad = df.attrs.get("bad_lines") or []
    if cfg.data.max_rows is not None:
        df = df.iloc[: cfg.data.max_rows]
        bad = [b for b in bad if b["row"] <= cfg.data.max_rows + len(bad)]
    # Ids from the row numbers in the file, so a broken line shifts no other row's id.
    numbers = list(df.index) if bad else None
    out = assign_ids(df, cfg.data.id_column, numbers).reset_index(drop=True)
    out.attrs["bad_lines"] = bad
    return out


def _read(cfg: CampaignConfig, source: str) -> pd.DataFrame:
    """A table of the campaign, its label column read as strings (labels are compared as
    the strings the label set lists: ``'0'``, ``'True'``), in the campaign's encoding."""
    fmt = None if cfg.data.format == "auto" else cfg.data.format
    label = cfg.data.label_column
    return read_table(
        source, format=fmt, encoding=cfg.data.encoding, string_columns=[label] if label else []
    )


@step_task
def split_holdout(cfg: CampaignConfig, df: pd.DataFrame) -> dict[str, Any]:
    """Split the rows into pool and holdout (stable per item id); the holdout needs labels."""
    h = cfg.data.holdout
    if h.source is not None:
        holdout = assign_ids(_read(cfg, h.source), cfg.data.id_column)
        pool = df[~df["item_id"].isin(set(holdout["item_id"]))]
    else:
        label = cfg.data.label_column
        if label is None or label not in df.columns:
            raise ValueError(
                "the holdout needs known labels: set data.label_column to a column of "
                f"{cfg.data.source} or data.holdout.source to a labeled file"
            )
        pool, holdout = split_by_hash(df, label, cfg.labels, h.fraction, h.seed)
    label = cfg.data.label_column
    if label is None or label not in holdout.columns:
        raise ValueError(f"holdout file {h.source} has no label column {label!r}")
    holdout = holdout[holdout[label].astype(str).isin(set(cfg.labels))]
    if len(holdout) == 0:
        raise ValueError("the holdout is empty: no row has a label from the campaign's label set")
    return {
        "pool": pool.reset_index(drop=True),
        "holdout": holdout.reset_index(drop=True),
        "holdout_classes": int(np.unique(holdout[label].astype(str)).size),
    }


def quarantine_broken_lines(store: Store, source: str, df: pd.DataFrame, cycle: int | None) -> int:
    """Record the source's unreadable lines (``df.attrs["bad_lines"]``) in its quarantine, once."""
    seen = None
    keep = []
    for b in df.attrs.get("bad_lines") or []:
        reason = f"line {b['line']}: {b['fields']} fields where the header has {b['expected']}"
        if seen is None:
            seen = {
                (r.get("row"), r.get("reason")) for r in store.read_jsonl(quarantine_key(source))
            }
        if (b["row"] - 1, reason) not in seen:
            keep.append((b["row"] - 1, b["line"], b["text"], reason))
    if not keep:
        return 0
    frame = pd.DataFrame(
        {"line": [k[1] for k in keep], "text": [k[2] for k in keep]}, index=[k[0] for k in keep]
    )
    reasons = [k[3] for k in keep]
    logging.getLogger("loopwise.data").warning(
        "%s: %d broken line(s) quarantined: %s", source, len(keep), "; ".join(reasons[:5])
    )
    return store.quarantine(source, frame, reasons, cycle=cycle)
