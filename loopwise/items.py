"""Item identity and the holdout split: stable string ids and a split by a hash of the id,
so a row keeps its id and its side of the split when the pool grows or is re-read."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "assign_ids",
    "holdout_mask",
    "split_by_hash",
]


def assign_ids(
    df: pd.DataFrame, id_column: str | None, row_numbers: Sequence[int] | None = None
) -> pd.DataFrame:
    """A copy of ``df`` with a string ``item_id`` column, unique, from ``id_column`` or the row number.

    ``row_numbers`` (0-based, one per row) replaces the position when rows are missing,
    e.g. the broken lines of a CSV, so that no other row's id shifts.

    Raises ``ValueError`` naming the rows when ids are missing or repeated.
    """
    out = df.copy()
    if id_column is None:
        numbers = range(len(out)) if row_numbers is None else row_numbers
        out["item_id"] = [f"r{int(i):07d}" for i in numbers]
        return out
    if id_column not in out.columns:
        raise ValueError(f"id column {id_column!r} not in the data; columns: {list(out.columns)}")
    ids = out[id_column]
    if ids.isna().any():
        rows = (np.flatnonzero(ids.isna().to_numpy())[:5] + 1).tolist()
        raise ValueError(f"id column {id_column!r} is empty in data row(s) {rows}")
    out["item_id"] = ids.astype(str)
    dup = out["item_id"].duplicated()
    if dup.any():
        rows = (np.flatnonzero(dup.to_numpy())[:5] + 1).tolist()
        raise ValueError(f"id column {id_column!r} repeats ids in data row(s) {rows}")
    return out


def holdout_mask(item_ids: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """True for the ids on the holdout side: a hash of (seed, id) below ``fraction``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    cut = int(fraction * 2**32)
    out = np.empty(len(item_ids), dtype=bool)
    for i, item in enumerate(item_ids):
        digest = hashlib.blake2b(f"{seed}:{item}".encode(), digest_size=4).digest()
        out[i] = int.from_bytes(digest, "big") < cut
    return out


def split_by_hash(
    df: pd.DataFrame, label_column: str, labels: Sequence[str], fraction: float, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pool, holdout): the holdout is the rows whose known label is in ``labels`` and
    whose id hashes below ``fraction``; every other row is in the pool (none is lost)."""
    known = df[label_column].astype("string").isin(list(labels)).fillna(False).to_numpy(bool)
    mask = holdout_mask(df["item_id"].tolist(), fraction, seed) & known
    return df[~mask].reset_index(drop=True), df[mask].reset_index(drop=True)
