"""What ``loopwise init`` infers from a data file: the roles of its columns, the label set,
a great-expectations suite (as JSON) and a campaign config.

Pure: takes a DataFrame, returns plain values. Problems that make a campaign impossible
raise :class:`InferenceError`; problems a campaign survives (a few non-numeric cells in
a numeric column, broken lines) are returned as warnings that name the row and column.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopwise import strategies

__all__ = [
    "ID_NAMES",
    "LABEL_NAMES",
    "MAX_VECTOR_LENGTH",
    "Inference",
    "InferenceError",
    "as_strings",
    "campaign_yaml",
    "expand_vectors",
    "expectation_suite",
    "find_label_column",
    "infer_columns",
]

#: Column names taken for the label when none is given (case-insensitive).
LABEL_NAMES = ("label", "labels", "class", "target", "y", "category", "lettr", "answer", "outcome")
#: Column names taken for the id when none is given (case-insensitive).
ID_NAMES = ("id", "item_id", "uuid", "key", "record_id", "row_id")
#: Most distinct values of a categorical feature or a label column.
MAX_CATEGORIES = 50
MAX_LABELS = 200
#: A column whose non-empty cells parse as numbers at least this often is numeric.
NUMERIC_SHARE = 0.9
#: Longest list of numbers in a cell that becomes that many feature columns.
MAX_VECTOR_LENGTH = 4096


class InferenceError(ValueError):
    """The file cannot make a campaign as it is; the message says what to pass instead."""


@dataclass
class Inference:
    """The inferred roles and the problems found."""

    id_column: str | None
    label_column: str | None
    text_column: str | None
    numeric: list[str]
    categorical: list[str]
    labels: list[str]
    ignored: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: per numeric column: (min, max) of the values that are numbers
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    not_null: list[str] = field(default_factory=list)
    rows: int = 0

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def _cell_text(v: Any) -> str:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def as_strings(values: pd.Series) -> pd.Series:
    """The cells of ``values`` as the strings a label set lists; missing cells stay missing.

    ``1`` and ``1.0`` read ``'1'`` (an integer column with empty cells reads as floats),
    ``True`` reads ``'True'``, strings are kept as they are. The result has object dtype,
    NaN where ``values`` is missing, and the index of ``values``.
    """
    out = pd.Series(np.nan, index=values.index, dtype=object)
    present = values.notna().to_numpy(bool)
    out[present] = [_cell_text(v) for v in values[present]]
    return out


def _is_list(v: Any) -> bool:
    return isinstance(v, (list, tuple, np.ndarray))


def _listy(s: pd.Series) -> bool:
    """Whether the column's cells are lists (a Parquet list column reads as arrays)."""
    if s.dtype != object:
        return False
    seen = False
    for v in s.to_numpy(object):  # stops at the first cell that is not a list
        if v is None or _is_nan(v):
            continue
        if not _is_list(v):
            return False
        seen = True
    return seen


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and v != v


def _numbers(v: Any) -> bool:
    a = np.asarray(v)
    return a.ndim == 1 and (a.dtype.kind in "iuf" or (a.size == 0))


def expand_vectors(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with each column of fixed-length lists of numbers spread over float columns.

    A column ``emb`` whose cells are lists (or arrays) of ``k`` numbers becomes the float32
    columns ``emb_0`` … ``emb_{k-1}`` in its place; ``k`` is the most common length, and a
    row with another length (or an empty cell) gets NaN in all of them, which the campaign's
    validation quarantines. Columns of lists that are not numbers, or longer than
    :data:`MAX_VECTOR_LENGTH`, are left as they are (``loopwise init`` ignores them, with
    the reason). ``attrs["vectors"]`` maps each spread column to its length, its new
    columns and the positions of the rows that did not fit.
    """
    vectors: dict[str, dict[str, Any]] = {}
    parts: list[pd.DataFrame | pd.Series] = []
    for c in df.columns:
        s = df[c]
        spread = _spread(str(c), s, set(map(str, df.columns))) if _listy(s) else None
        if spread is None:
            parts.append(s)
            continue
        frame, info = spread
        vectors[str(c)] = info
        parts.append(frame)
    if not vectors:
        return df
    out = pd.concat(parts, axis=1)
    out.attrs = {**df.attrs, "vectors": vectors}
    return out


def _spread(c: str, s: pd.Series, taken: set[str]) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """The float columns of a list column, or None if its cells are not vectors of numbers."""
    cells = s.to_numpy(object)
    present = [i for i, v in enumerate(cells) if _is_list(v)]
    if not all(_numbers(cells[i]) for i in present):
        return None
    lengths = pd.Series([len(cells[i]) for i in present])
    k = int(lengths.mode().min())
    if not 0 < k <= MAX_VECTOR_LENGTH:
        return None
    names = [f"{c}_{j}" for j in range(k)]
    if taken & set(names):
        return None
    values = np.full((len(cells), k), np.nan, dtype=np.float32)
    fits = [i for i in present if len(cells[i]) == k]
    if fits:
        values[fits] = np.stack([np.asarray(cells[i], dtype=np.float32) for i in fits])
    bad = sorted(set(range(len(cells))) - set(fits))
    frame = pd.DataFrame(values, index=s.index, columns=names)
    return frame, {"length": k, "columns": names, "bad_rows": bad}


def _row_list(idx: Sequence[int], values: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(
        f"row {int(i) + 1} ({v!r})" for i, v in list(zip(idx, values, strict=True))[:limit]
    )
    more = len(idx) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def _rows(idx: Sequence[int], limit: int = 5) -> str:
    more = len(idx) - limit
    return ", ".join(f"row {int(i) + 1}" for i in idx[:limit]) + (
        f" and {more} more" if more > 0 else ""
    )


def find_label_column(columns: Sequence[Any], given: str | None = None) -> str | None:
    """The label column: ``given`` if it is one of ``columns``, else the first of
    :data:`LABEL_NAMES` among them (case-insensitive), else None."""
    cols = [str(c) for c in columns]
    if given is not None:
        return given if given in cols else None
    return _find(cols, LABEL_NAMES)


def _find(columns: Sequence[str], names: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


def _stringy(s: pd.Series) -> bool:
    return (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)) and not _listy(s)


def _is_text(s: pd.Series) -> bool:
    values = s.dropna().astype(str)
    if values.empty:
        return False
    words = values.str.split().str.len().mean()
    return bool(values.str.len().mean() >= 30 or words >= 5)


def infer_columns(
    df: pd.DataFrame,
    *,
    source: str = "the file",
    label_column: str | None = None,
    id_column: str | None = None,
    text_column: str | None = None,
    labels: Sequence[str] | None = None,
) -> Inference:
    """Roles of the columns of ``df``: id, label, text, numeric and categorical features.

    Raises :class:`InferenceError` when no label set can be found, or a named column
    is missing; warns (``Inference.warnings``) about cells the validation will quarantine.
    """
    cols = [str(c) for c in df.columns]
    df = df.copy()
    df.columns = cols
    if df.empty:
        raise InferenceError(f"{source}: no data rows")
    for given, what in ((label_column, "label"), (id_column, "id"), (text_column, "text")):
        if given is not None and given not in cols:
            raise InferenceError(f"{source}: no {what} column {given!r}; the columns are {cols}")
    label = label_column or _find(cols, LABEL_NAMES)
    if label is None and not labels:
        raise InferenceError(
            f"{source}: no label column (looked for {', '.join(LABEL_NAMES)}); the columns are "
            f"{cols}. Pass --label-column NAME, or --labels A,B,... for data with no labels yet "
            "(then a labeled holdout file is needed: --holdout FILE)."
        )
    warnings: list[str] = []
    label_set: list[str] = [str(v) for v in labels] if labels else []
    if label is not None:
        df[label] = as_strings(df[label])
        label_set = _label_set(df[label], label, labels, source, warnings)
    ident = id_column or _find([c for c in cols if c != label], ID_NAMES) or _unique_key(df, label)
    if ident is not None:
        _check_ids(df[ident], ident, source)
    rest = [c for c in cols if c not in {label, ident}]
    text = text_column
    if text is None:
        text = next((c for c in rest if _stringy(df[c]) and _is_text(df[c])), None)
    inf = Inference(ident, label, text, [], [], label_set, warnings=warnings, rows=len(df))
    for c in rest:
        if c != text:
            _add_feature(inf, c, df[c], source)
    _vector_checks(inf, df.attrs.get("vectors") or {}, source)
    if text is None and not inf.features:
        raise InferenceError(
            f"{source}: no feature column (numeric, categorical or text) besides id and label; "
            f"the columns are {cols}"
        )
    return inf


def _label_set(
    column: pd.Series,
    label: str,
    labels: Sequence[str] | None,
    source: str,
    warnings: list[str],
) -> list[str]:
    """The label set: ``labels`` if given (warning about values outside it), else the
    values of the label column ``label``."""
    values = column.dropna()
    if values.empty and not labels:
        raise InferenceError(
            f"{source}: the label column {label!r} is empty; pass --labels A,B,..."
        )
    found = sorted({str(v) for v in values}, key=_natural)
    if len(found) > MAX_LABELS:
        raise InferenceError(
            f"{source}: column {label!r} has {len(found)} distinct values, too many for a "
            f"label set (at most {MAX_LABELS}); pass --label-column with the right column"
        )
    if labels:
        label_set = [str(v) for v in labels]
        outside = sorted(set(found) - set(label_set))
        if outside:
            bad = values[values.astype(str).isin(outside)]
            warnings.append(
                f"{source}, column {label!r}: values outside --labels in "
                f"{_row_list(bad.index, bad.tolist())}; those rows stay in the pool unlabeled "
                "and out of the holdout"
            )
    else:
        label_set = found
    if len(label_set) < 2:
        raise InferenceError(
            f"{source}: column {label!r} holds a single label {label_set}; a classifier needs "
            "at least two (pass --labels A,B,...)"
        )
    return label_set


def _check_ids(ids: pd.Series, ident: str, source: str) -> None:
    """Raise if the id column ``ident`` has an empty or a repeated id."""
    if ids.isna().any():
        rows = np.flatnonzero(ids.isna().to_numpy())
        raise InferenceError(
            f"{source}, column {ident!r}: empty id in {_row_list(rows, [''] * len(rows))}"
        )
    dup = ids.astype(str).duplicated(keep=False)
    if dup.any():
        rows = np.flatnonzero(dup.to_numpy())
        raise InferenceError(
            f"{source}, column {ident!r}: repeated ids in {_row_list(rows, ids[dup].tolist())}"
        )


def _vector_checks(inf: Inference, vectors: dict[str, dict[str, Any]], source: str) -> None:
    """The columns spread from a list column (:func:`expand_vectors`) must all be filled:
    a row whose list had another length is quarantined, and the user is told."""
    for c, info in vectors.items():
        spread = [v for v in info["columns"] if v in inf.numeric]
        inf.not_null.extend(v for v in spread if v not in inf.not_null)
        bad = info.get("bad_rows") or []
        if bad and spread:
            inf.warnings.append(
                f"{source}, column {c!r}: lists of {info['length']} numbers, spread over "
                f"{spread[0]}..{spread[-1]}; empty or of another length in "
                f"{_rows(bad)}; the campaign quarantines those rows"
            )


def _add_feature(inf: Inference, c: str, s: pd.Series, source: str) -> None:
    """Record column ``c`` in ``inf``: numeric, categorical, or ignored (with the reason)."""
    nonnull = s.dropna()
    if nonnull.empty:
        inf.ignored[c] = "empty"
        return
    if _listy(s):
        inf.ignored[c] = (
            f"lists, but not of one length of numbers (at most {MAX_VECTOR_LENGTH}): not a feature"
        )
        return
    if pd.api.types.is_bool_dtype(s.dtype):
        inf.categorical.append(c)
        inf.categories[c] = sorted({str(v) for v in nonnull})
    elif pd.api.types.is_numeric_dtype(s.dtype):
        inf.numeric.append(c)
        inf.ranges[c] = (float(nonnull.min()), float(nonnull.max()))
    else:
        _add_text_feature(inf, c, nonnull, source)
    if (c in inf.numeric or c in inf.categorical) and s.isna().sum() == 0:
        inf.not_null.append(c)


def _add_text_feature(inf: Inference, c: str, nonnull: pd.Series, source: str) -> None:
    """A column of strings: numeric if most cells parse, else a category if few distinct."""
    parsed = pd.to_numeric(nonnull, errors="coerce")
    share = float(parsed.notna().mean())
    if share >= NUMERIC_SHARE:
        inf.numeric.append(c)
        inf.ranges[c] = (float(parsed.min()), float(parsed.max()))
        bad = nonnull[parsed.isna()]
        inf.warnings.append(
            f"{source}, column {c!r}: numeric in {parsed.notna().sum()} of {len(nonnull)} "
            f"rows, not a number in {_row_list(bad.index, bad.tolist())}; the campaign "
            "quarantines those rows when it validates the pool"
        )
    elif nonnull.astype(str).nunique() <= MAX_CATEGORIES:
        inf.categorical.append(c)
        inf.categories[c] = sorted({str(v) for v in nonnull}, key=_natural)
        if share > 0:
            nums = nonnull[parsed.notna()]
            inf.warnings.append(
                f"{source}, column {c!r}: mixed types, numbers in "
                f"{_row_list(nums.index, nums.tolist())}; kept as a category"
            )
    else:
        inf.ignored[c] = f"{nonnull.astype(str).nunique()} distinct strings: not a feature"


def _unique_key(df: pd.DataFrame, label: str | None) -> str | None:
    """A column that looks like a key: named ``*_id``/``*id``, or short strings, all distinct."""
    for c in df.columns:
        s = df[c]
        if c == label or _listy(s) or s.isna().any() or not s.is_unique:
            continue
        named = c.lower().endswith(("_id", "id", "_key"))
        short_strings = _stringy(s) and s.astype(str).str.len().max() <= 64 and not _is_text(s)
        if short_strings or (named and not pd.api.types.is_float_dtype(s.dtype)):
            return c
    return None


def _natural(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", v))


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else round(float(v), 6)


def expectation_suite(inf: Inference, name: str, *, margin: float = 0.1) -> dict[str, Any]:
    """A great-expectations suite (1.x JSON) derived from the data.

    Numeric ranges are the observed ones widened by ``margin`` of their span on each side,
    so that new rows slightly outside the sample are not quarantined.
    """
    exps: list[dict[str, Any]] = []
    needed = [
        "item_id",
        *[c for c in (inf.id_column, inf.label_column, inf.text_column) if c],
        *inf.features,
    ]
    exps.append(
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": list(dict.fromkeys(needed)), "exact_match": False},
            "meta": {
                "notes": "every column the campaign uses is present; extra columns are allowed"
            },
        }
    )
    exps.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "item_id"}})
    exps.append({"type": "expect_column_values_to_be_unique", "kwargs": {"column": "item_id"}})
    if inf.label_column:
        exps.append(
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": inf.label_column, "value_set": list(inf.labels)},
                "meta": {"notes": "ground truth where it exists; empty cells are unlabeled rows"},
            }
        )
    if inf.text_column:
        exps.append(
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": inf.text_column}}
        )
    for c in inf.numeric:
        lo, hi = inf.ranges[c]
        pad = (hi - lo) * margin
        if c in inf.not_null:
            exps.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c}})
        exps.append(
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": c, "min_value": _num(lo - pad), "max_value": _num(hi + pad)},
                "meta": {
                    "notes": f"observed {_num(lo)}..{_num(hi)}, widened by {margin:.0%} of the span"
                },
            }
        )
    for c in inf.categorical:
        if c in inf.not_null:
            exps.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c}})
        exps.append(
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": c, "value_set": inf.categories[c]},
            }
        )
    return {
        "name": name,
        "expectations": exps,
        "meta": {"generated_by": "loopwise init", "rows_profiled": inf.rows},
    }


def campaign_yaml(
    inf: Inference,
    *,
    name: str,
    source: str,
    suite_path: str,
    holdout: str | None = None,
    labelstudio_url: str = "http://127.0.0.1:8080",
    encoding: str | None = None,
) -> str:
    """The campaign config file, with a comment on each key a user is likely to change."""
    import yaml

    def dump(v: Any) -> str:
        return (
            yaml.safe_dump(v, default_flow_style=True, allow_unicode=True, width=10_000)
            .strip()
            .removesuffix("...")
            .strip()
        )

    lines = [
        f"# Campaign {name}, written by `loopwise init {source}`.",
        "# Every key is described in README.md (Configuration); edit the budget and costs first.",
        f"name: {name}",
        "data:",
        f"  source: {dump(source)}",
    ]
    if encoding:
        lines.append(f"  encoding: {dump(encoding)}")
    if inf.id_column:
        lines.append(f"  id_column: {dump(inf.id_column)}")
    if inf.label_column:
        lines.append(
            f"  label_column: {dump(inf.label_column)}    # ground truth where it exists: the holdout"
        )
    if inf.text_column:
        lines.append(f"  text_column: {dump(inf.text_column)}")
    else:
        lines.append(f"  feature_columns: {dump(inf.features)}")
    if holdout:
        lines.append(f"  holdout: {{source: {dump(holdout)}}}")
    else:
        lines.append("  holdout: {fraction: 0.2, seed: 0}")
    lines += [
        f"  validation_suite: {dump(suite_path)}",
        "  min_valid_fraction: 0.9       # stop the run when fewer rows than this pass validation",
        f"labels: {dump(list(inf.labels))}",
        "model:",
        "  estimator: sklearn.linear_model.LogisticRegression",
        "  params: {max_iter: 1000}",
        "strategy:",
        f"  name: {strategies.DEFAULT:22s}# `loopwise strategies` lists them all",
        "batch_size: 20",
        "annotators_per_item: 1          # 2 or more turns on consensus QC",
        "max_annotations_per_item: 3     # a dispute gets more answers up to this (at most your annotators)",
        "control_fraction: 0.1           # share of every batch drawn at random (loopwise report)",
        "budget:",
        "  labels: 500",
        "  cost_per_annotation: 0.10     # what one annotation costs you",
        "  value_per_point: 10.0         # what one point (0.01) of accuracy is worth to you",
        "labelstudio:",
        f"  url: {dump(labelstudio_url)}",
        "  token_env: LABEL_STUDIO_API_KEY",
        "storage_root: .loopwise/store",
        "mlflow:",
        "  tracking_uri: sqlite:///.loopwise/mlflow.db",
        "schedule:",
        "  recheck_seconds: 600          # how often a batch out with annotators is checked",
        "  batch_timeout_seconds: 604800 # then a batch is closed: retrain on what is in",
        "seed: 0",
    ]
    return "\n".join(lines) + "\n"
