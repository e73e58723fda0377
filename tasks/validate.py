"""Validation stage: check rows against a great-expectations suite, quarantine the ones that fail.

A suite is a JSON file (``expectations/*.json``) or the same structure as a dict
(:func:`suite_for_labels`). :func:`validate_frame` runs it on a DataFrame and
splits the rows:

- row-level expectations (values between / in set / not null / match regex / of
  type on an object column, ...) reject exactly the rows that fail them, each
  with a readable reason such as ``"x-box: value 99 outside [0, 15]"``;
- table-level expectations (column set, row count, a column the suite needs that
  the frame lacks, ...) that fail reject the whole frame, the reason naming the
  expectation and the column;
- the id column must be unique: second and later rows with an id already seen
  are rejected as ``"duplicate id"``, rows without an id as ``"missing id"``;
- a column checked against numeric bounds that holds a non-numeric string (which
  makes pandas give it ``object`` dtype) is compared as numbers: the string's
  row alone is rejected (``"x-box: 'abc' is not a number"``);
- a column checked against a set of strings (a label set, categories) is compared
  as strings: integers, whole floats and booleans as ``'1'``, ``'1'``, ``'True'``
  (:func:`loopwise.infer.as_strings`), so an integer or boolean label column meets
  the label set ``loopwise init`` wrote.

A row's reason lists every check it failed, joined by ``"; "``. Rows failing a
row-level expectation are rejected even when its ``mostly`` lets the expectation
as a whole pass: ``mostly`` only decides the expectation's ``success`` in the
summary; the share of valid rows a stage accepts is ``min_valid_fraction``.

:func:`validate_pool` is the Prefect task of the cycle: it validates, appends the
rejected rows with their reasons to the ``quarantine/`` ledger of the store and
raises :class:`ValidationFailed` when too few rows are valid.

great-expectations is imported on first use (it takes seconds); one ephemeral
context is built per process and reused.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import numbers
import os
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopwise.infer import as_strings
from loopwise.jsonsafe import json_safe
from storage.store import Store, quarantine_key
from tasks import step_task

__all__ = [
    "ValidationFailed",
    "ValidationResult",
    "load_suite",
    "suite_for_labels",
    "validate_frame",
    "validate_labels",
    "validate_pool",
]

log = logging.getLogger(__name__)

SuiteSource = str | os.PathLike[str] | Mapping[str, Any]

#: Expectations whose bounds are numbers: a non-numeric column they name is
#: compared as numbers (strings that are not numbers become their own failure).
_NUMERIC_BOUNDED = frozenset(
    {
        "expect_column_values_to_be_between",
        "expect_column_min_to_be_between",
        "expect_column_max_to_be_between",
        "expect_column_mean_to_be_between",
        "expect_column_median_to_be_between",
        "expect_column_sum_to_be_between",
        "expect_column_stdev_to_be_between",
    }
)
_NOT_NULL = "expect_column_values_to_not_be_null"
#: Expectations that compare cells with a set of values.
_IN_SET = frozenset({"expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set"})
_TOP = 5  # reasons quoted in summaries and errors
_LOCK = threading.Lock()  # one shared GX context; validations take turns


class ValidationFailed(RuntimeError):
    """Too small a share of the rows passed validation; ``summary`` has the counts."""

    def __init__(self, message: str, summary: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.summary = dict(summary or {})


@dataclass(frozen=True)
class ValidationResult:
    """Rows split by a suite: ``reasons`` is indexed like ``invalid``, one string per row."""

    valid: pd.DataFrame = field(repr=False)
    invalid: pd.DataFrame = field(repr=False)
    reasons: pd.Series = field(repr=False)
    valid_fraction: float
    summary: dict[str, Any] = field(repr=False)


# ------------------------------------------------------------------ great-expectations


def _gx() -> Any:
    """The great_expectations module, imported with analytics off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    return gx


@functools.lru_cache(maxsize=1)
def _batch_definition() -> Any:
    """A whole-DataFrame batch definition on a process-wide ephemeral context."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("loopwise").add_dataframe_asset("frame")
    return asset.add_batch_definition_whole_dataframe("whole")


def load_suite(suite: SuiteSource) -> Any:
    """A ``gx.ExpectationSuite`` from a JSON file or a dict; ValueError naming the file."""
    if isinstance(suite, Mapping):
        spec: Any = dict(suite)
        where = f"expectation suite {spec.get('name')!r}"
    else:
        path = Path(suite)
        where = f"expectation suite {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ValueError(f"{where}: cannot read the file ({err.strerror or err})") from err
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err})") from err
    if not isinstance(spec, dict) or not isinstance(spec.get("expectations"), list):
        raise ValueError(f"{where}: expected a JSON object with 'name' and an 'expectations' list")
    gx = _gx()
    try:
        return gx.ExpectationSuite(**spec)
    except Exception as err:
        raise ValueError(f"{where}: not a valid expectation suite ({err})") from err


def suite_for_labels(
    labels: Sequence[str],
    *,
    name: str = "labels",
    id_column: str = "item_id",
    label_column: str = "label",
) -> dict[str, Any]:
    """The accepted-labels suite for one campaign's label set, as suite JSON (a dict)."""
    if isinstance(labels, str):
        raise TypeError("labels must be a list of label names, not one string")
    label_set = list(dict.fromkeys(labels))
    if not label_set:
        raise ValueError("labels must name at least one label")
    return {
        "name": name,
        "expectations": [
            {"type": _NOT_NULL, "kwargs": {"column": id_column}},
            {"type": "expect_column_values_to_be_unique", "kwargs": {"column": id_column}},
            {"type": _NOT_NULL, "kwargs": {"column": label_column}},
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": label_column, "value_set": label_set},
            },
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "agreement", "min_value": 0, "max_value": 1},
            },
        ],
        "meta": {
            "description": "accepted-labels ledger: one row per item with its agreed label "
            "(built by tasks.validate.suite_for_labels for the campaign's label set)"
        },
    }


# ------------------------------------------------------------------ reasons


def _value(v: Any) -> str:
    """A cell as it reads in a reason: strings quoted, whole floats without '.0'."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return str(int(v))
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "null"
    return str(v)


def _bound(v: Any) -> str:
    return _value(v) if isinstance(v, numbers.Number) else str(v)


def _range(kw: Mapping[str, Any]) -> str:
    lo, hi = kw.get("min_value"), kw.get("max_value")
    left = "(" if kw.get("strict_min") else "["
    right = ")" if kw.get("strict_max") else "]"
    return f"{left}{'-inf' if lo is None else _bound(lo)}, {'inf' if hi is None else _bound(hi)}{right}"


def _short_set(values: Any, limit: int = 8) -> str:
    vals = list(values or [])
    shown = ", ".join(_value(v) for v in vals[:limit])
    return "{" + shown + (", ..." if len(vals) > limit else "") + "}"


def _columns_of(kw: Mapping[str, Any]) -> list[str]:
    cols = [kw[k] for k in ("column", "column_A", "column_B") if kw.get(k) is not None]
    return [*cols, *(kw.get("column_list") or [])]


def _row_template(typ: str, kw: Mapping[str, Any]) -> tuple[str, Callable[[str], str]]:
    """(kind, text of a cell value) for a single-column row-level expectation."""
    rng, regex = _range(kw), kw.get("regex")
    types = " | ".join(map(str, kw.get("type_list") or []))
    templates: dict[str, tuple[str, Callable[[str], str]]] = {
        "expect_column_values_to_be_between": (
            f"outside {rng}",
            lambda v: f"value {v} outside {rng}",
        ),
        "expect_column_values_to_be_in_set": (
            "not in allowed set",
            lambda v: f"{v} not in allowed set",
        ),
        "expect_column_values_to_not_be_in_set": (
            "forbidden value",
            lambda v: f"{v} is a forbidden value",
        ),
        _NOT_NULL: ("missing value", lambda v: "missing value"),
        "expect_column_values_to_be_null": (
            "should be null",
            lambda v: f"value {v} should be null",
        ),
        "expect_column_values_to_match_regex": (
            f"does not match /{regex}/",
            lambda v: f"{v} does not match /{regex}/",
        ),
        "expect_column_values_to_not_match_regex": (
            f"matches forbidden /{regex}/",
            lambda v: f"{v} matches forbidden /{regex}/",
        ),
        "expect_column_values_to_be_of_type": (
            f"not of type {kw.get('type_')}",
            lambda v: f"{v} is not of type {kw.get('type_')}",
        ),
        "expect_column_values_to_be_in_type_list": (
            "wrong type",
            lambda v: f"{v} is not of type {types}",
        ),
        "expect_column_values_to_be_unique": ("not unique", lambda v: f"value {v} is not unique"),
        "expect_column_value_lengths_to_be_between": (
            f"length outside {rng}",
            lambda v: f"length of {v} outside {rng}",
        ),
        "expect_column_value_lengths_to_equal": (
            f"length is not {kw.get('value')}",
            lambda v: f"length of {v} is not {kw.get('value')}",
        ),
    }
    return templates.get(typ, (f"fails {typ}", lambda v: f"value {v} fails {typ}"))


def _row_reasons(
    typ: str, kw: Mapping[str, Any], frame: pd.DataFrame, positions: Sequence[int]
) -> list[tuple[str, str]]:
    """(kind, text) for each row (by position in ``frame``) failing a row-level expectation.

    ``kind`` leaves out the cell value, so that rows failing the same way count together.
    """
    cols = _columns_of(kw)
    cells = {c: frame[c].to_numpy(dtype=object) for c in cols if c in frame.columns}
    if len(cols) != 1:
        kind = f"{', '.join(map(str, cols)) or 'row'}: fails {typ}"
        out = []
        for p in positions:
            vals = ", ".join(_value(v[p]) for v in cells.values())
            out.append((kind, f"{kind} ({vals})" if vals else kind))
        return out
    col = cols[0]
    kind, text = _row_template(typ, kw)
    values = cells.get(col)
    return [
        (f"{col}: {kind}", f"{col}: {text('?' if values is None else _value(values[p]))}")
        for p in positions
    ]


def _exception_message(info: Any) -> str | None:
    """The message of an exception GX caught while evaluating an expectation, if any."""
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "error")
    for sub in info.values():
        if isinstance(sub, Mapping) and sub.get("raised_exception"):
            return str(sub.get("exception_message") or "error")
    return None


def _table_reason(
    typ: str, kw: Mapping[str, Any], result: Mapping[str, Any], error: str | None, columns: Any
) -> str:
    """Why a table-level expectation (or one that could not run) failed the whole frame."""
    cols = _columns_of(kw)
    absent = [c for c in cols if c not in columns]
    if absent:
        return f"{', '.join(map(str, absent))}: column missing ({typ})"
    where = f"{typ}({', '.join(map(str, cols))})" if cols else typ
    if error is not None:
        return f"{where} could not be evaluated: {error}"
    if typ == "expect_table_columns_to_match_set":
        mism = (result.get("details") or {}).get("mismatched") or {}
        parts = [f"{k} columns {v}" for k, v in sorted(mism.items())]
        return f"{where} failed: " + (
            ", ".join(parts) or f"observed {result.get('observed_value')}"
        )
    if typ == "expect_column_values_to_be_of_type" and cols:
        return f"{cols[0]}: column has dtype {result.get('observed_value')}, expected {kw.get('type_')} ({typ})"
    observed = result.get("observed_value")
    return f"{where} failed" + ("" if observed is None else f": observed {observed}")


# ------------------------------------------------------------------ validation


def _suite_order(suite: Any) -> dict[tuple[str, str], int]:
    order: dict[tuple[str, str], int] = {}
    for i, exp in enumerate(suite.expectations):
        order.setdefault(_config_key(exp.configuration), i)
    return order


def _config_key(cfg: Any) -> tuple[str, str]:
    kw = {k: v for k, v in dict(cfg.kwargs).items() if k != "batch_id"}
    return cfg.type, json.dumps(kw, sort_keys=True, default=str)


def _numeric_columns(suite: Any, frame: pd.DataFrame) -> list[str]:
    """Non-numeric columns of ``frame`` that the suite compares against numeric bounds."""
    out: list[str] = []
    for exp in suite.expectations:
        cfg = exp.configuration
        kw = cfg.kwargs
        col = kw.get("column")
        if cfg.type not in _NUMERIC_BOUNDED or col not in frame.columns or col in out:
            continue
        bounds = [kw.get("min_value"), kw.get("max_value")]
        numeric = [b for b in bounds if isinstance(b, numbers.Number) and not isinstance(b, bool)]
        dtype = frame[col].dtype
        if numeric and not (
            pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        ):
            out.append(col)
    return out


def _string_set_columns(suite: Any, frame: pd.DataFrame) -> list[str]:
    """Columns of ``frame`` that are not strings and that the suite compares with a set of
    strings."""
    out: list[str] = []
    for exp in suite.expectations:
        cfg = exp.configuration
        col = cfg.kwargs.get("column")
        values = cfg.kwargs.get("value_set")
        if cfg.type not in _IN_SET or col not in frame.columns or col in out:
            continue
        if not isinstance(values, (list, tuple, set)) or not values:
            continue
        if all(isinstance(v, str) for v in values) and not pd.api.types.is_string_dtype(frame[col]):
            out.append(col)
    return out


@dataclass
class _Rows:
    """The rows under validation and the reasons found so far."""

    #: per row of the frame: reason text → kind, in the order found
    reasons: list[dict[str, str]]
    #: positions in the frame of the rows GX sees (the repeated ids left out)
    kept: np.ndarray
    #: those rows, on a 0..m-1 index: unexpected_index_list entries are then positions,
    #: mapped back through ``kept`` (robust to any id values)
    original: pd.DataFrame
    #: (position in ``original``, column) pairs that already have a reason
    explained: set[tuple[int, Any]]

    def add(self, position: int, text: str, kind: str) -> None:
        """A reason for the row at ``position`` in ``original`` (the first kind counts)."""
        self.reasons[self.kept[position]].setdefault(text, kind)


def validate_frame(
    df: pd.DataFrame, suite_path: SuiteSource, *, id_column: str
) -> ValidationResult:
    """Split ``df`` into valid and invalid rows by the suite; one reason string per invalid row."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if id_column not in df.columns:
        raise ValueError(
            f"id column {id_column!r} not in the frame; columns: {list(map(str, df.columns))}"
        )
    suite = load_suite(suite_path)
    n = len(df)
    reasons: list[dict[str, str]] = [{} for _ in range(n)]
    missing_id, duplicate = _id_reasons(df[id_column], reasons)
    kept = np.flatnonzero(~duplicate)
    rows = _Rows(
        reasons,
        kept,
        df.iloc[kept].reset_index(drop=True),
        {(int(p), id_column) for p in np.flatnonzero(missing_id[kept])},
    )
    work, coerced_columns, not_numeric = _coerce_numeric(suite, rows)
    table_failures: list[str] = []
    per_expectation = [
        _expectation_entry(r, rows, work.columns, table_failures) for r in _results(suite, work)
    ]
    if table_failures:
        for row in reasons:
            for why in table_failures:
                row.setdefault(why, why)
    valid, invalid, why = _split(df, reasons, coerced_columns)
    kinds = Counter(k for r in reasons for k in dict.fromkeys(r.values()))
    fraction = float(len(valid) / n) if n else 1.0
    summary = {
        "suite": suite.name,
        "rows": n,
        "valid": len(valid),
        "invalid": len(invalid),
        "valid_fraction": fraction,
        "missing_ids": int(missing_id.sum()),
        "duplicate_ids": int(duplicate.sum()),
        "not_numeric": not_numeric,
        "table_failures": table_failures,
        "expectations": per_expectation,
        "top_reasons": [[k, c] for k, c in kinds.most_common(_TOP)],
    }
    return ValidationResult(valid, invalid, why, fraction, summary)


def _id_reasons(ids: pd.Series, reasons: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a missing id and rows repeating an earlier id (boolean masks), with reasons."""
    missing_id = ids.isna().to_numpy()
    duplicate = (ids.duplicated(keep="first") & ids.notna()).to_numpy()
    for i in np.flatnonzero(missing_id):
        reasons[i]["missing id"] = "missing id"
    for i in np.flatnonzero(duplicate):
        reasons[i]["duplicate id"] = "duplicate id"
    return missing_id, duplicate


def _coerce_numeric(suite: Any, rows: _Rows) -> tuple[pd.DataFrame, list[str], dict[str, int]]:
    """The frame GX validates: columns compared with numeric bounds as numbers, columns
    compared with a set of strings as strings.

    A cell that is not a number gets its own reason. Returns the frame, the coerced
    columns and the count of such cells per column.
    """
    work = rows.original.copy()
    not_numeric: dict[str, int] = {}
    coerced_columns = _numeric_columns(suite, work)
    for col in coerced_columns:
        numbers_ = pd.to_numeric(work[col], errors="coerce")
        bad = np.flatnonzero((work[col].notna() & numbers_.isna()).to_numpy())
        for p in bad:
            text = f"{col}: {_value(rows.original.at[p, col])} is not a number"
            rows.reasons[rows.kept[p]][text] = f"{col}: not a number"
            rows.explained.add((int(p), col))
        if len(bad):
            not_numeric[str(col)] = len(bad)
        work[col] = numbers_
    for col in _string_set_columns(suite, work):
        if col not in coerced_columns:
            work[col] = as_strings(work[col])
    return work, coerced_columns, not_numeric


def _results(suite: Any, work: pd.DataFrame) -> list[Any]:
    """The suite's expectation results on ``work``, in the suite's order."""
    with _LOCK:
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": work})
        run = batch.validate(
            suite,
            result_format={"result_format": "COMPLETE", "return_unexpected_index_query": False},
        )
    order = _suite_order(suite)
    return sorted(
        run.results, key=lambda r: order.get(_config_key(r.expectation_config), len(order))
    )


def _expectation_entry(
    r: Any, rows: _Rows, columns: pd.Index, table_failures: list[str]
) -> dict[str, Any]:
    """The summary entry of one expectation result; its reasons go to ``rows`` (row-level)
    or ``table_failures`` (table-level, or one that could not run)."""
    cfg = r.expectation_config
    typ, kw = cfg.type, dict(cfg.kwargs)
    result = dict(r.result or {})
    error = _exception_message(r.exception_info)
    index = result.get("unexpected_index_list")
    entry: dict[str, Any] = {
        "expectation": typ,
        "column": ", ".join(map(str, _columns_of(kw))) or None,
        "success": bool(r.success) and error is None,
    }
    if error is None and isinstance(index, list):
        positions = [int(p) for p in index]
        if typ == _NOT_NULL:  # not again for cells already "not a number" / "missing id"
            positions = [p for p in positions if (p, kw.get("column")) not in rows.explained]
        for p, (kind, text) in zip(
            positions, _row_reasons(typ, kw, rows.original, positions), strict=True
        ):
            rows.add(p, text, kind)
        entry.update(level="row", unexpected_count=len(positions))
        return entry
    entry["level"] = "table"
    if not entry["success"]:
        why = _table_reason(typ, kw, result, error, columns)
        table_failures.append(why)
        entry["reason"] = why
    if "observed_value" in result:
        entry["observed_value"] = json_safe(result["observed_value"])
    return entry


def _split(
    df: pd.DataFrame, reasons: list[dict[str, str]], coerced_columns: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """The valid rows, the invalid rows and their reasons (joined by "; ")."""
    bad_rows = np.array([bool(r) for r in reasons], dtype=bool)
    valid = df.iloc[np.flatnonzero(~bad_rows)].copy()
    for col in coerced_columns:  # the valid rows of a coerced column are all numbers
        valid[col] = pd.to_numeric(valid[col])
    invalid = df.iloc[np.flatnonzero(bad_rows)].copy()
    why = pd.Series(
        ["; ".join(reasons[i]) for i in np.flatnonzero(bad_rows)],
        index=invalid.index,
        dtype=object,
        name="reason",
    )
    return valid, invalid, why


def validate_labels(
    df: pd.DataFrame, suite_path: SuiteSource, *, id_column: str = "item_id"
) -> ValidationResult:
    """Validate the accepted-labels ledger (as a frame) against a labels suite (see :func:`suite_for_labels`)."""
    return validate_frame(df, suite_path, id_column=id_column)


# ------------------------------------------------------------------ the task


def _run_logger() -> Any:
    """Prefect's run logger inside a flow or task run, this module's logger outside."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return log


def _top(summary: Mapping[str, Any]) -> str:
    return (
        "; ".join(
            f"{k} ({c} row{'' if c == 1 else 's'})" for k, c in summary.get("top_reasons", [])
        )
        or "none"
    )


@step_task
def validate_pool(
    df: pd.DataFrame,
    suite_path: SuiteSource,
    *,
    id_column: str,
    store: Store,
    source: str,
    min_valid_fraction: float,
    cycle: int | None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validate rows against a suite, quarantine the failures; the valid rows and a summary."""
    if not 0.0 <= float(min_valid_fraction) <= 1.0:
        raise ValueError(f"min_valid_fraction must be in [0, 1], got {min_valid_fraction!r}")
    result = validate_frame(df, suite_path, id_column=id_column)
    summary = {**result.summary, "source": str(source), "cycle": cycle, "quarantined": 0}
    if len(result.invalid):
        # A row already quarantined for the same reason by an earlier run is not
        # recorded again: the ledger holds each bad row once, however often it is read.
        seen = {
            (r.get("id"), r.get("reason")) for r in store.read_jsonl(quarantine_key(str(source)))
        }
        ids = (
            result.invalid[id_column]
            if id_column in result.invalid.columns
            else result.invalid.index
        )
        fresh = [
            (i, r) not in seen
            for i, r in zip(ids.astype(str), result.reasons.astype(str), strict=True)
        ]
        summary["quarantined"] = len(result.invalid)
        summary["quarantined_new"] = store.quarantine(
            str(source), result.invalid[fresh], result.reasons[fresh], cycle=cycle
        )
    logger = _run_logger()
    share = result.valid_fraction
    if len(result.invalid):
        logger.warning(
            "%s: %d of %d rows failed suite %r and were quarantined (%.1f%% valid); top reasons: %s",
            source,
            summary["invalid"],
            summary["rows"],
            summary["suite"],
            100 * share,
            _top(summary),
        )
    else:
        logger.info("%s: all %d rows pass suite %r", source, summary["rows"], summary["suite"])
    if share < min_valid_fraction:
        raise ValidationFailed(
            f"{source}: only {share:.1%} of {summary['rows']} rows pass suite {summary['suite']!r} "
            f"(minimum {min_valid_fraction:.1%}); {summary['invalid']} quarantined; "
            f"top reasons: {_top(summary)}",
            summary,
        )
    return result.valid, summary
