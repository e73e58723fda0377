"""Data stage: read the pool, give rows their ids, validate, split off the holdout."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from loopwise.config import CampaignConfig
from loopwise.items import IdScheme, assign_ids, pool_edits, split_by_hash, uses_row_numbers
from loopwise.partitions import eval_cut, holdout_hashes
from storage.campaign import STOP_SET, Ledgers, campaign_store, read_state
from storage.store import Store, quarantine_key
from storage.tables import read_table
from tasks import io_task, step_task

__all__ = [
    "id_scheme",
    "load_pool",
    "pool_head",
    "quarantine_broken_lines",
    "read_holdout",
    "record_pool_edits",
    "split_holdout",
]

log = logging.getLogger("loopwise.data")


@io_task
def load_pool(cfg: CampaignConfig, scheme: IdScheme | None = None) -> pd.DataFrame:
    """Read the campaign's data source and give every row its item id (without an id
    column: ``scheme``, by default the one the campaign's records use, see :func:`id_scheme`)."""
    df = _read(cfg, cfg.data.source)
    bad = df.attrs.get("bad_lines") or []
    if cfg.data.max_rows is not None:
        df = df.iloc[: cfg.data.max_rows]
        bad = [b for b in bad if b["row"] <= cfg.data.max_rows + len(bad)]
    if scheme is None:
        scheme = id_scheme(cfg)
    # Row-number ids from the row numbers in the file, so a broken line shifts no other id.
    numbers = list(df.index) if bad else None
    out = assign_ids(
        df, cfg.data.id_column, numbers, label_column=cfg.data.label_column, scheme=scheme
    ).reset_index(drop=True)
    out.attrs["bad_lines"] = bad
    out.attrs["id_scheme"] = "column" if cfg.data.id_column else scheme
    return out


def pool_head(cfg: CampaignConfig) -> pd.DataFrame:
    """Rows of the pool with its columns as the model reads them (vectors spread), for what
    needs only its schema (the gateway): the whole pool when it is one file, the first
    partition (or first 1,000 rows) of a partitioned one, which is never read whole."""
    if not cfg.data.is_partitioned:
        return load_pool.fn(cfg)
    from loopwise.infer import expand_vectors
    from storage.partitions import csv_chunks, list_partitions, read_partition

    src = cfg.data.source
    if cfg.data.source_is_folder:
        first = list_partitions(src)[0]
        df = read_partition(first.read_bytes(), first.uri).to_pandas()
    else:
        label = [cfg.data.label_column] if cfg.data.label_column else []
        chunks = csv_chunks(
            src, 0, rows=1000, encoding=cfg.data.encoding, string_columns=label, bad_lines=[]
        )
        df = next(iter(chunks))
    return expand_vectors(df)


def id_scheme(cfg: CampaignConfig) -> IdScheme:
    """How a campaign without an id column names its items: ``"content"`` (fingerprints),
    or ``"rows"`` for a campaign started with row-number ids (its dispatch ledger or stop
    set holds ids like ``r0000123``), with a warning that edits to the file move its items."""
    if cfg.data.id_column:
        return "content"
    store = campaign_store(cfg.storage_root, cfg.name)
    pid = read_state(store).project_id
    sent = Ledgers(store, pid).dispatched_ids() if pid is not None else []
    if not uses_row_numbers([*sent, *(store.read_json(STOP_SET) or [])]):
        return "content"
    log.warning(
        "campaign %s was started with row-number item ids (r0000123 = row 123 of %s) and "
        "keeps them: deleting or inserting rows in the file moves its labels onto other rows. "
        "To keep its items across edits, add a column holding these ids to the file before "
        "editing it (row i -> 'r%%07d' %% i) and set data.id_column to it.",
        cfg.name,
        cfg.data.source,
    )
    return "rows"


def _read(cfg: CampaignConfig, source: str) -> pd.DataFrame:
    """A table of the campaign, its label column read as strings (labels are compared as
    the strings the label set lists: ``'0'``, ``'True'``), in the campaign's encoding."""
    fmt = None if cfg.data.format == "auto" else cfg.data.format
    label = cfg.data.label_column
    return read_table(
        source, format=fmt, encoding=cfg.data.encoding, string_columns=[label] if label else []
    )


def read_holdout(cfg: CampaignConfig, scheme: IdScheme = "content") -> pd.DataFrame:
    """The campaign's holdout file (``data.holdout.source``) with item ids."""
    label = cfg.data.label_column
    src = cfg.data.holdout.source
    return assign_ids(_read(cfg, src), cfg.data.id_column, label_column=label, scheme=scheme)


@step_task
def split_holdout(cfg: CampaignConfig, df: pd.DataFrame) -> dict[str, Any]:
    """Split the rows into pool and holdout (stable per item id); the holdout needs labels."""
    h, label = cfg.data.holdout, cfg.data.label_column
    if h.source is not None:
        scheme = "rows" if uses_row_numbers(df["item_id"].head(1)) else "content"
        holdout = read_holdout(cfg, scheme)
        pool = df[~df["item_id"].isin(set(holdout["item_id"]))]
    else:
        if label is None or label not in df.columns:
            raise ValueError(
                "the holdout needs known labels: set data.label_column to a column of "
                f"{cfg.data.source} or data.holdout.source to a labeled file"
            )
        pool, holdout = split_by_hash(df, label, cfg.labels, h.fraction, h.seed)
    if label is None or label not in holdout.columns:
        raise ValueError(f"holdout file {h.source} has no label column {label!r}")
    holdout = holdout[holdout[label].astype(str).isin(set(cfg.labels))]
    if h.max_rows is not None and len(holdout) > h.max_rows and h.source is None:
        # The evaluated share: the holdout rows of smallest hash, as a partitioned pool's.
        cut = eval_cut(h.fraction, len(holdout), h.max_rows)
        holdout = holdout[holdout_hashes(holdout["item_id"].tolist(), h.seed) < cut]
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
    log.warning("%s: %d broken line(s) quarantined: %s", source, len(keep), "; ".join(reasons[:5]))
    return store.quarantine(source, frame, reasons, cycle=cycle)


@io_task
def record_pool_edits(
    ledgers: Ledgers,
    cycle: int,
    frames: list[pd.DataFrame],
    records: dict[str, dict[str, Any]],
    text_column: str | None = None,
) -> list[dict[str, Any]]:
    """Compare the items sent to annotators with the pool now (``frames``: pool and holdout);
    record each removal or change once in the ``edits`` ledger, with a warning naming the
    items; return the new ones."""
    labeled = ledgers.labeled_ids()
    sent = [*ledgers.dispatched_ids(), *sorted(labeled)]
    ids = set(sent)
    now = pd.concat([f[f["item_id"].isin(ids)] for f in frames], ignore_index=True)
    found = pool_edits(sent, records, now, text_column=text_column)
    seen = {(r["item_id"], r["kind"], r.get("digest")) for r in ledgers.read("edits")}
    fresh = [
        {**e, "labeled": e["item_id"] in labeled, "cycle": cycle}
        for e in found
        if (e["item_id"], e["kind"], e["digest"]) not in seen
    ]
    ledgers.append("edits", fresh)
    for kind, what in (("removed", "no longer in the pool"), ("changed", "changed in the pool")):
        items = [e["item_id"] for e in fresh if e["kind"] == kind]
        if items:
            n_lab = sum(e["labeled"] for e in fresh if e["kind"] == kind)
            log.warning(
                "cycle %d: %d item(s) already sent to annotators (%d labeled) %s since: %s%s; "
                "their labels are kept, trained on the values they were labeled with",
                cycle,
                len(items),
                n_lab,
                what,
                ", ".join(items[:5]),
                f" and {len(items) - 5} more" if len(items) > 5 else "",
            )
    return fresh
