"""Partition tasks: what runs where a partition lives (a Dask worker, or the flow process one
partition at a time). Each reads its partition itself and returns only what the flow
needs: counts, the few rows it asked for, the best candidates.

``check_partition`` validates a partition once per content (the check file in the campaign
store, named by the content hash) and returns its holdout rows, the rows of items the
campaign already sent, and the draws (stop set, sample); ``score_partition_file`` scores
its undispatched pool rows with the cycle's model and returns its best candidates and its
random-control draws.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopwise.config import CampaignConfig
from loopwise.features import is_vector_column, model_inputs
from loopwise.infer import as_strings, expand_vectors
from loopwise.items import content_ids
from loopwise.partitions import draw_keys, holdout_cut, holdout_hashes, smallest
from loopwise.scoring import partition_scores, strategy_for
from storage.partitions import CHECKED, PartitionRef, content_hash, read_partition
from storage.store import Store
from tasks import io_task

__all__ = [
    "CheckRequest",
    "check_group",
    "check_partition",
    "checked_rows",
    "score_group",
    "score_partition_file",
]

log = logging.getLogger("loopwise.partitions")


@dataclass(frozen=True)
class CheckRequest:
    """What the flow asks of every partition's check (picklable, a few ids at most)."""

    dispatched: frozenset[str]  # items sent to annotators: their rows come back
    stop_ids: frozenset[str]  # the stop set, once chosen: its rows come back
    eval_cut: int | None  # holdout rows with a hash below it come back (None: counts only)
    stop_size: int  # when the stop set is not chosen yet: the draw of this many rows
    sample_below: int  # undispatched pool rows whose draw key is below it come back (the
    # sample for drift and the cold start: a uniform share of the pool, 0 for none)
    cycle: int | None


def _check_key(cfg: CampaignConfig, digest: str) -> str:
    """The check file of a partition content under this campaign's validation settings."""
    d = cfg.data
    suite = d.validation_suite
    suite_text = (
        Path(suite).read_bytes() if suite and Path(suite).is_file() else str(suite).encode()
    )
    settings = json.dumps(
        [d.id_column, d.label_column, d.holdout.seed, cfg.seed, cfg.labels], default=str
    ).encode()
    h = hashlib.blake2b(digest_size=12)
    for part in (digest.encode(), settings, suite_text):
        h.update(part)
    return f"{CHECKED}/{h.hexdigest()}.parquet"


def _frame(cfg: CampaignConfig, table: Any) -> pd.DataFrame:
    """The partition as the campaign reads a table: the label column as strings."""
    import pyarrow as pa

    df = table.to_pandas()
    label = cfg.data.label_column
    if label and label in df.columns and not pa.types.is_string(table.schema.field(label).type):
        df[label] = as_strings(df[label])
    return df


def _build_check(
    cfg: CampaignConfig, store: Store, ref: PartitionRef, df: pd.DataFrame, cycle: int | None
) -> pd.DataFrame:
    """Item ids, validity (by the campaign's suite; failures quarantined under the
    partition's own name), holdout hash and draw key of every row of ``df``."""
    d = cfg.data
    spread = expand_vectors(df)  # validated, and fingerprinted, as a single-file pool is
    if d.id_column:
        if d.id_column not in df.columns:
            raise ValueError(f"{ref.uri}: id column {d.id_column!r} not in the partition")
        ids = df[d.id_column].astype(str).where(df[d.id_column].notna(), None)
    else:
        ids = pd.Series(content_ids(spread, exclude=[d.label_column] if d.label_column else []))
    valid = np.ones(len(df), dtype=bool)
    if d.validation_suite:
        from tasks.validate import validate_pool

        checked = spread.assign(item_id=ids.to_numpy())
        good, _ = validate_pool.fn(
            checked,
            d.validation_suite,
            id_column="item_id",
            store=store,
            source=ref.uri,
            min_valid_fraction=0.0,
            cycle=cycle,
        )
        valid[:] = False
        valid[good.index.to_numpy()] = True
    valid &= ids.notna().to_numpy()
    id_list = ids.fillna("").astype(str).tolist()
    return pd.DataFrame(
        {
            "item_id": id_list,
            "valid": valid,
            "h": holdout_hashes(id_list, d.holdout.seed),
            "key": draw_keys(id_list, cfg.seed),
        }
    )


def checked_rows(
    cfg: CampaignConfig, store: Store, ref: PartitionRef, cycle: int | None
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, dict[str, Any]]:
    """(the partition's rows with ``item_id``, its check file, facts) — validated only when
    this content was never checked; (None, None, facts with ``error``) when unreadable, the
    partition then quarantined with its path."""
    facts: dict[str, Any] = {"partition": ref.uri, "validated": False}
    try:
        data = ref.read_bytes()
        table = read_partition(data, ref.uri)
    except (ValueError, OSError) as err:
        facts |= {"error": str(err), "rows": None, "valid": 0}
        _quarantine_unreadable(store, ref, str(err), cycle)
        return None, None, facts
    df = _frame(cfg, table)
    key = _check_key(cfg, content_hash(data))
    if store.exists(key):
        check = store.read_parquet(key)
    else:
        started = time.perf_counter()
        check = _build_check(cfg, store, ref, df, cycle)
        buf = io.BytesIO()
        check.to_parquet(buf, engine="pyarrow", index=False)
        store.write_bytes(key, buf.getvalue())
        facts |= {"validated": True, "check_seconds": time.perf_counter() - started}
    if len(check) != len(df):  # a check file of other content: never trust it
        raise ValueError(f"{store.uri(key)}: {len(check)} rows where {ref.uri} has {len(df)}")
    df = _numbers_again(cfg, df.assign(item_id=check["item_id"].to_numpy()), check["valid"])
    facts |= {"rows": len(df), "valid": int(check["valid"].sum())}
    return df, check, facts


def _numbers_again(cfg: CampaignConfig, df: pd.DataFrame, valid: pd.Series) -> pd.DataFrame:
    """Feature columns read as text only because of invalid rows (a CSV chunk's bad cell)
    become numbers, the bad cells missing: every row the partition hands out is valid."""
    d = cfg.data
    skip = {c for c in (d.id_column, d.label_column, d.text_column, "item_id") if c}
    ok = valid.to_numpy(bool)
    for c in d.feature_columns or [c for c in df.columns if c not in skip]:
        s = df[c]
        if pd.api.types.is_numeric_dtype(s) or is_vector_column(s):
            continue
        num = pd.to_numeric(s, errors="coerce")
        if not (num.isna() & s.notna()).to_numpy()[ok].any():
            df[c] = num
    return df


def _quarantine_unreadable(store: Store, ref: PartitionRef, reason: str, cycle: int | None) -> None:
    """One quarantine record for a partition that cannot be read (once per reason)."""
    from storage.store import quarantine_key

    seen = {r.get("reason") for r in store.read_jsonl(quarantine_key(ref.uri))}
    why = f"unreadable partition: {reason}"
    if why in seen:
        return
    log.warning("%s: %s; the cycle goes on without it", ref.uri, why)
    frame = pd.DataFrame({"partition": [ref.uri]})
    store.quarantine(ref.uri, frame, [why], cycle=cycle)


def _sides(cfg: CampaignConfig, df: pd.DataFrame, check: pd.DataFrame) -> tuple[Any, Any]:
    """(holdout, pool) masks over the partition's valid rows: the holdout side is a known
    label from the label set hashing below the holdout fraction."""
    label = cfg.data.label_column
    valid = check["valid"].to_numpy(bool)
    if label and label in df.columns:
        known = df[label].isin(set(cfg.labels)).fillna(False).to_numpy(bool)
    else:
        known = np.zeros(len(df), dtype=bool)
    if cfg.data.holdout.source is not None:
        known[:] = False  # the holdout is its own file
    hold = valid & known & (check["h"].to_numpy() < holdout_cut(cfg.data.holdout.fraction))
    return hold, valid & ~hold


@io_task(name="check-partitions")
def check_group(
    cfg: CampaignConfig, store: Store, refs: list[PartitionRef], ask: CheckRequest
) -> list[dict[str, Any]]:
    """A few partitions checked one after the other (:func:`check_partition`): a task run
    costs its API calls, so partitions share one (``partitions_per_task``)."""
    return [check_partition(cfg, store, ref, ask) for ref in refs]


@io_task(name="score-partitions")
def score_group(
    cfg: CampaignConfig,
    store: Store,
    refs: list[PartitionRef],
    model: Any,
    dispatched: Collection[str],
    **scoring: Any,
) -> list[dict[str, Any]]:
    """A few partitions scored one after the other (:func:`score_partition_file`)."""
    return [score_partition_file(cfg, store, ref, model, dispatched, **scoring) for ref in refs]


def check_partition(
    cfg: CampaignConfig, store: Store, ref: PartitionRef, ask: CheckRequest
) -> dict[str, Any]:
    """One partition's check: counts, its evaluated holdout rows (with ``ask.eval_cut``), the
    rows of the items dispatched or in the stop set, its ``stop_size`` smallest-key pool
    rows (ids and keys) and its undispatched pool rows with a draw key below
    ``ask.sample_below``."""
    df, check, facts = checked_rows(cfg, store, ref, ask.cycle)
    if df is None:
        return {"facts": facts}
    hold, pool = _sides(cfg, df, check)
    sent = df["item_id"].isin(ask.dispatched).to_numpy()
    wanted = sent | df["item_id"].isin(ask.stop_ids).to_numpy()
    free = pool & ~sent
    keys = check["key"].to_numpy()
    facts |= {
        "holdout": int(hold.sum()),
        "pool": int(pool.sum()),
        "undispatched": int(free.sum()),
    }
    out: dict[str, Any] = {"facts": facts, "known": df[wanted & check["valid"].to_numpy(bool)]}
    if ask.eval_cut is not None:
        out["holdout"] = df[hold & (check["h"].to_numpy() < ask.eval_cut)]
    pool_idx = np.flatnonzero(pool)
    stop = pool_idx[smallest(keys[pool_idx], ask.stop_size)]
    out["stop"] = pd.DataFrame({"item_id": df["item_id"].to_numpy()[stop], "key": keys[stop]})
    pick = np.flatnonzero(free & (keys < np.uint64(ask.sample_below)))
    out["sample"] = df.iloc[pick].assign(_key=keys[pick])
    return out


def score_partition_file(
    cfg: CampaignConfig,
    store: Store,
    ref: PartitionRef,
    model: Any,
    dispatched: Collection[str],
    n: int,
    strategy: str,
    params: dict[str, Any],
    seed: int,
    n_draw: int,
    cap: int,
) -> dict[str, Any]:
    """One partition's best candidates for the batch (at most ``cap``: its rows with
    ``score``, ``_row`` and the model inputs ``X``), the scores of its shortlist
    (:func:`loopwise.scoring.partition_scores`: ``top``, so that the flow can tell whether
    it needs more of them) and its ``n_draw`` smallest-key undispatched rows for the
    control share."""
    df, check, facts = checked_rows(cfg, store, ref, None)
    if df is None:
        return {"facts": facts, "candidates": pd.DataFrame(), "draw": pd.DataFrame()}
    _, pool = _sides(cfg, df, check)
    free = np.flatnonzero(pool & ~df["item_id"].isin(set(dispatched)).to_numpy())
    rows = df.iloc[free].reset_index(drop=True)
    keys = check["key"].to_numpy()[free]
    facts["undispatched"] = len(rows)
    if not len(rows):
        return {"facts": facts, "candidates": rows, "draw": rows, "top": np.zeros(0)}
    (X,) = model_inputs(cfg, numeric_features(cfg, rows, where=ref.uri))
    top_rows, top = partition_scores(model, X, 0, n, strategy_for(strategy, params, seed))
    local, scores = top_rows[:cap], top[:cap]
    draw = smallest(keys, n_draw)
    return {
        "facts": facts,
        "candidates": rows.iloc[local].assign(score=scores, _key=keys[local], _row=free[local]),
        "X": X[local],
        "top": top,
        "draw": rows.iloc[draw].assign(_key=keys[draw]),
    }


def numeric_features(cfg: CampaignConfig, rows: pd.DataFrame, *, where: str) -> pd.DataFrame:
    """``rows`` with every feature column numeric: a column a converted CSV chunk read as
    text because of a bad cell (its row quarantined) becomes numbers again. A partition is
    encoded alone, so a column of categories cannot be one-hot encoded consistently across
    partitions: it is an error naming the column."""
    d = cfg.data
    if d.text_column:
        return rows
    skip = {c for c in (d.id_column, d.label_column, "item_id", "label") if c}
    cols = d.feature_columns or [c for c in rows.columns if c not in skip]
    out = rows
    for c in cols:
        s = rows[c]
        if pd.api.types.is_numeric_dtype(s) or is_vector_column(s):
            continue
        num = pd.to_numeric(s, errors="coerce")
        if (num.isna() & s.notna()).any():
            raise ValueError(
                f"{where}: feature column {c!r} holds categories ({s.dropna().iloc[0]!r}); "
                "a partitioned pool takes numeric and vector features: one-hot encode it in "
                "the data, or leave it out with data.feature_columns"
            )
        out = out.assign(**{c: num})
    return out
