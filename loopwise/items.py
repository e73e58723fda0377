"""Item identity and the holdout split: stable string ids and a split by a hash of the id,
so a row keeps its id and its side of the split when the pool grows, loses rows or is
re-read; and what a pool edit did to the items already sent to annotators.

Without an id column an item's id is a fingerprint of its values (:func:`content_ids`):
deleting or inserting rows moves no other row's id. Campaigns started before that have
row-number ids (``r0000123``, :func:`uses_row_numbers`) and keep them.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "IdScheme",
    "assign_ids",
    "content_ids",
    "holdout_mask",
    "label_time_rows",
    "pool_edits",
    "split_by_hash",
    "uses_row_numbers",
]

IdScheme = Literal["content", "rows"]
_ROW_NUMBER_ID = re.compile(r"r\d{7,}")
_MISSING = "\x00missing"


def assign_ids(
    df: pd.DataFrame,
    id_column: str | None,
    row_numbers: Sequence[int] | None = None,
    *,
    label_column: str | None = None,
    scheme: IdScheme = "content",
) -> pd.DataFrame:
    """A copy of ``df`` with a string ``item_id`` column, unique.

    From ``id_column`` when given; otherwise, with ``scheme="content"``, a fingerprint of
    each row's values without ``label_column`` (:func:`content_ids`), and with
    ``scheme="rows"`` (campaigns started with row-number ids) the row number, where
    ``row_numbers`` (0-based, one per row) replaces the position when rows are missing,
    e.g. the broken lines of a CSV, so that no other row's id shifts.

    Raises ``ValueError`` naming the rows when ids are missing or repeated, or naming an
    unknown ``scheme``.
    """
    if scheme not in ("content", "rows"):
        raise ValueError(f"scheme must be 'content' or 'rows', got {scheme!r}")
    out = df.copy()
    if id_column is None:
        if scheme == "content":
            out["item_id"] = content_ids(df, exclude=[label_column] if label_column else [])
        else:
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


def content_ids(df: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """A fingerprint id per row: ``f`` and 16 hex digits of a hash of the row's values.

    The values of every column but ``exclude`` (and ``item_id``), by column name, are
    hashed in a canonical form (:func:`_canonical`), so a re-read of the same file gives
    the same ids, and so does one in which other rows were deleted or inserted, or a
    column's type changed with them (``3`` and ``3.0`` are one value; every missing value
    is one value). Exact duplicate rows get an occurrence suffix in file order: ``-2``,
    ``-3``, ... (the first has none).
    """
    columns = sorted((c for c in df.columns if c not in {*exclude, "item_id"}), key=str)
    head = "\x1e".join(str(c) for c in columns)
    values = [_canonical_column(df[c]) for c in columns]
    seen: Counter[str] = Counter()
    out = []
    for row in zip(*values, strict=True) if values else [()] * len(df):
        text = head + "\x1d" + "\x1f".join(row)
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
        seen[digest] += 1
        n = seen[digest]
        out.append(f"f{digest}" if n == 1 else f"f{digest}-{n}")
    return out


def _canonical(value: Any) -> str:
    """One value as the text its fingerprint reads: integral numbers without a fraction,
    other floats by ``repr`` (exact), any missing value as one marker."""
    if value is None or value is pd.NA or value is pd.NaT:
        return _MISSING
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isnan(v):
            return _MISSING
        if math.isfinite(v) and v.is_integer() and abs(v) < 2**53:
            return str(int(v))
        return repr(v)
    return str(value)


def _canonical_column(s: pd.Series) -> list[str]:
    """:func:`_canonical` of every value, vectorized for plain numeric columns."""
    plain = isinstance(s.dtype, np.dtype)  # not a nullable (extension) dtype
    if plain and pd.api.types.is_integer_dtype(s.dtype):
        return s.to_numpy().astype(str).tolist()
    if plain and pd.api.types.is_float_dtype(s.dtype):
        x = s.to_numpy(np.float64)
        out = np.array(list(map(repr, x.tolist())), dtype=object)
        whole = np.isfinite(x) & (np.floor(x) == x) & (np.abs(x) < 2**53)
        out[whole] = x[whole].astype(np.int64).astype(str)
        out[np.isnan(x)] = _MISSING
        return out.tolist()
    return [_canonical(v) for v in s.to_numpy(object)]


def uses_row_numbers(item_ids: Iterable[str]) -> bool:
    """Whether any of ``item_ids`` is a row-number id (``r0000123``): a campaign that sent
    such ids was started before content ids and keeps the row-number scheme."""
    return any(_ROW_NUMBER_ID.fullmatch(str(i)) for i in item_ids)


def label_time_rows(
    labels: pd.DataFrame,
    records: Mapping[str, Mapping[str, Any]],
    pool: pd.DataFrame,
    *,
    text_column: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """The labeled items as they were sent to annotators: the training rows of a snapshot.

    Parameters
    ----------
    labels : DataFrame with ``item_id`` and ``label``, one row per accepted item
    records : mapping of item id to the ``data`` of its batch record, as sent
        (``{"record": {column: value}}`` or ``{"text": ...}``, see
        :func:`loopwise.batch.batch_records`)
    pool : DataFrame with ``item_id``, the current pool
    text_column : the column a ``{"text": ...}`` record fills

    Returns
    -------
    rows : DataFrame of shape (n_rows, pool columns), the pool's columns (but ``label``)
        and ``label``, in the pool's dtypes where the values allow: an item's values as
        sent where its record has them, the current pool row's elsewhere (an item sent
        before records were kept); sorted by ``item_id``
    missing : list of str, labeled items with neither a record nor a pool row (left out)
    """
    ledger = labels[["item_id", "label"]].drop_duplicates("item_id").reset_index(drop=True)
    base = pool.drop(columns=[c for c in ("label",) if c in pool.columns])
    rows = ledger[["item_id"]].merge(base, on="item_id", how="left", validate="one_to_one")
    has = ledger["item_id"].isin(set(records)).to_numpy()
    sent = pd.DataFrame.from_records(
        [_sent_values(records.get(i) or {}, text_column) for i in ledger["item_id"]],
        index=rows.index,
    )
    for c in sent.columns:
        if c in rows.columns and c != "item_id":
            col = rows[c].astype(object)
            col[has] = sent.loc[has, c]
            rows[c] = col
    keep = has | ledger["item_id"].isin(set(base["item_id"])).to_numpy()
    rows = rows[keep].copy()
    for c in base.columns:
        if rows[c].dtype != base[c].dtype:
            try:
                rows[c] = rows[c].astype(base[c].dtype)
            except (TypeError, ValueError):  # e.g. a missing value in an integer column
                rows[c] = rows[c].infer_objects()
    rows["label"] = ledger["label"].to_numpy()[keep]
    rows = rows.sort_values("item_id", kind="stable").reset_index(drop=True)
    return rows, ledger["item_id"][~keep].tolist()


def _sent_values(data: Mapping[str, Any], text_column: str | None) -> dict[str, Any]:
    """Column → value of a batch record's ``data`` (what annotators were shown)."""
    if "record" in data:
        return dict(data["record"])
    if "text" in data and text_column:
        return {text_column: data["text"]}
    return {}


def pool_edits(
    item_ids: Iterable[str],
    records: Mapping[str, Mapping[str, Any]],
    pool: pd.DataFrame,
    *,
    text_column: str | None = None,
) -> list[dict[str, Any]]:
    """What edits of the pool file did to items already sent to annotators.

    Each of ``item_ids`` no longer in ``pool`` was ``removed``; one whose current values
    differ from its label-time record (``records``, as in :func:`label_time_rows`) was
    ``changed`` (only possible with an id column: a content id changes with the values).
    Columns the pool no longer has are not compared.

    Returns
    -------
    list of dict
        ``item_id``, ``kind`` (``"removed"`` or ``"changed"``), ``columns`` (the changed
        ones) and ``digest`` (a hash of the changed values as they are now, None for a
        removal: the same edit seen again has the same digest), in the order of ``item_ids``.
    """
    by_id = pool.set_index("item_id")
    out: list[dict[str, Any]] = []
    for item in dict.fromkeys(item_ids):
        if item not in by_id.index:
            out.append({"item_id": item, "kind": "removed", "columns": [], "digest": None})
            continue
        sent = _sent_values(records.get(item) or {}, text_column)
        row = by_id.loc[item]
        now = {c: str(row[c]) if c == text_column else row[c] for c in sent if c in by_id.columns}
        cols = [c for c in now if _canonical(now[c]) != _canonical(sent[c])]
        if cols:
            text = "\x1f".join(f"{c}\x1e{_canonical(now[c])}" for c in cols)
            digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
            out.append({"item_id": item, "kind": "changed", "columns": cols, "digest": digest})
    return out


def holdout_mask(item_ids: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """True for the ids on the holdout side: a hash of (seed, id) below ``fraction``."""
    from loopwise.partitions import holdout_cut, holdout_hashes

    cut = holdout_cut(fraction)
    return holdout_hashes(item_ids, seed) < cut


def split_by_hash(
    df: pd.DataFrame, label_column: str, labels: Sequence[str], fraction: float, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pool, holdout): the holdout is the rows whose known label is in ``labels`` and
    whose id hashes below ``fraction``; every other row is in the pool (none is lost)."""
    known = df[label_column].astype("string").isin(list(labels)).fillna(False).to_numpy(bool)
    mask = holdout_mask(df["item_id"].tolist(), fraction, seed) & known
    return df[~mask].reset_index(drop=True), df[mask].reset_index(drop=True)
