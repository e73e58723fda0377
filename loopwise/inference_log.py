"""The inference-log record: one JSON object per served request, checked and normalised.

The production stream reads what the gateway (or a team's own service) served from an
append-only log; each line is one record with the fields of :data:`FIELDS`.
:func:`validate_record` checks one record strictly and returns its normalised form (a
plain, JSON-safe dict with every field, in :data:`FIELDS` order): the time in UTC as
``YYYY-MM-DDTHH:MM:SS.ffffffZ``, integer class names, predictions and model versions as
strings, ``NaN`` features as ``None``. A bad record raises :class:`RecordError` naming
the first bad field (dotted: ``inputs.x3``) and what is wrong with it, so a quarantined
record says how to fix it. :func:`check_records` splits a batch into good records and
bad ones with their positions.

Nothing here reads or writes: ``storage/inference_log.py`` keeps the log, the stream
flow validates what it reads.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DECISIONS",
    "FIELDS",
    "SCHEMA_VERSION",
    "RecordError",
    "check_records",
    "stream_item_id",
    "validate_record",
]

#: The version of the record layout this module writes and reads.
SCHEMA_VERSION = 1

#: Every field of a record, in the order of a normalised record, with its meaning.
FIELDS: dict[str, str] = {
    "request_id": "unique id of the request: 1-200 characters of [A-Za-z0-9._:-] (required)",
    "time": "when it was served: ISO-8601 with a timezone, stored in UTC as ...Z (required)",
    "model_name": "the MLflow registered model that served it (required)",
    "model_version": "the registry version that served it, or null if unknown (required)",
    "inputs": "the record as the model saw it: feature -> number, string, bool, null "
    "or list of numbers (required)",
    "proba": "class -> probability in [0, 1], summing to 1, or null",
    "prediction": "the served class (one of the proba classes), or null",
    "decision": "the selection decision: query, control, skip, or null (not decided yet)",
    "score": "the utility the decision used (a finite number), or null",
    "threshold": "the selector's threshold at that moment (a finite number), or null",
    "writer": "which process wrote it (gateway replica id, or 'external'), or null",
    "schema": f"the record schema version (default, and null: {SCHEMA_VERSION})",
}

#: The values of ``decision`` besides null.
DECISIONS = ("query", "control", "skip")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
_PROBA_TOLERANCE = 1e-3  # |sum - 1| allowed: probabilities rounded to a few digits
_RANGE_SLACK = 1e-9  # float noise of a softmax just outside [0, 1], clipped
_SHOWN = 60  # characters of a bad value quoted in a reason


class RecordError(ValueError):
    """A record breaks the schema; ``field`` (dotted) says where and ``reason`` why.

    ``str(err)`` is ``"<field>: <reason>"``, e.g. ``"proba: probabilities sum to 0.71,
    not 1"``. ``field`` is ``"record"`` when the record itself is not a JSON object.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# --------------------------------------------------------------------------- helpers


def _show(value: Any) -> str:
    """A short quotation of ``value`` for a reason."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _kind(value: Any) -> str:
    """What ``value`` is, in words: 'a dict', 'a list', 'null', 'a bool'..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a dict"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, numbers.Integral):
        return "an int"
    if isinstance(value, numbers.Real):
        return "a float"
    return f"a {type(value).__name__}"


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _text(field: str, value: Any, *, what: str = "a string") -> str:
    """A non-empty string."""
    if not isinstance(value, str):
        raise RecordError(field, f"{_kind(value)} is not {what}")
    if not value.strip():
        raise RecordError(field, "is empty")
    return value


def _label(field: str, value: Any) -> str:
    """A class name or model version: a non-empty string, or an int written as one."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    return _text(field, value, what="a string (or an int)")


def _optional_label(field: str, value: Any) -> str | None:
    return None if value is None else _label(field, value)


def _optional_float(field: str, value: Any) -> float | None:
    if value is None:
        return None
    if not _is_number(value):
        raise RecordError(field, f"{_kind(value)} ({_show(value)}) is not a number or null")
    out = float(value)
    if not math.isfinite(out):
        raise RecordError(field, f"{out} is not a finite number")
    return out


# --------------------------------------------------------------------------- fields


def _request_id(value: Any) -> str:
    if not isinstance(value, str):
        raise RecordError("request_id", f"{_kind(value)} is not a string")
    if not _REQUEST_ID_RE.match(value):
        if not value or len(value) > 200:
            raise RecordError("request_id", f"has {len(value)} characters, not 1 to 200")
        bad = sorted({c for c in value if not re.match(r"[A-Za-z0-9._:-]", c)})
        raise RecordError(
            "request_id",
            f"{_show(value)} has characters other than letters, digits and . _ : - "
            f"({', '.join(map(repr, bad))})",
        )
    return value


def _time(value: Any) -> str:
    """UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` from an ISO-8601 string (or aware datetime)."""
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise RecordError(
                "time", f"{_show(value)} is not an ISO-8601 time with a timezone"
            ) from None
    else:
        raise RecordError("time", f"{_kind(value)} is not an ISO-8601 time string")
    if when.tzinfo is None or when.utcoffset() is None:
        raise RecordError(
            "time",
            f"{_show(value if isinstance(value, str) else when.isoformat())} has no timezone "
            "(add Z or +00:00)",
        )
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _feature(field: str, value: Any) -> Any:
    """One input value: a JSON scalar or a flat list of finite numbers; NaN is missing."""
    if value is None or isinstance(value, bool | str):
        return value
    if _is_number(value):
        if isinstance(value, numbers.Integral):
            return int(value)
        out = float(value)
        if math.isnan(out):
            return None  # a missing value, as pandas and Parquet write it
        if math.isinf(out):
            raise RecordError(field, f"{out} is not a finite number")
        return out
    if isinstance(value, Mapping):
        raise RecordError(field, "a dict is not a feature value")
    if hasattr(value, "tolist") and not isinstance(value, list | tuple):
        value = value.tolist()  # a NumPy vector
    if isinstance(value, list | tuple):
        out_list = []
        for i, v in enumerate(value):
            if not _is_number(v):
                raise RecordError(
                    f"{field}[{i}]", f"{_kind(v)} in a list (a vector holds numbers only)"
                )
            f = float(v)
            if not math.isfinite(f):
                raise RecordError(f"{field}[{i}]", f"{f} is not a finite number")
            out_list.append(int(v) if isinstance(v, numbers.Integral) else f)
        return out_list
    raise RecordError(field, f"{_kind(value)} is not a feature value")


def _inputs(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise RecordError("inputs", f"{_kind(value)} is not an object of feature -> value")
    if not value:
        raise RecordError("inputs", "has no feature")
    out = {}
    for name, v in value.items():
        if not isinstance(name, str) or not name:
            raise RecordError("inputs", f"feature name {_show(name)} is not a non-empty string")
        out[name] = _feature(f"inputs.{name}", v)
    return out


def _proba(value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RecordError("proba", f"{_kind(value)} is not an object of class -> probability")
    if not value:
        raise RecordError("proba", "has no class")
    out: dict[str, float] = {}
    for cls, p in value.items():
        if isinstance(cls, numbers.Integral) and not isinstance(cls, bool):
            cls = str(int(cls))
        if not isinstance(cls, str) or not cls:
            raise RecordError("proba", f"class {_show(cls)} is not a non-empty string")
        where = f"proba.{cls}"
        if cls in out:
            raise RecordError(where, "the class is given twice")
        if not _is_number(p):
            raise RecordError(where, f"{_kind(p)} ({_show(p)}) is not a probability")
        f = float(p)
        if not math.isfinite(f) or not -_RANGE_SLACK <= f <= 1 + _RANGE_SLACK:
            raise RecordError(where, f"{f:g} is not a probability in [0, 1]")
        out[cls] = min(max(f, 0.0), 1.0)
    total = math.fsum(out.values())
    if abs(total - 1.0) > _PROBA_TOLERANCE:
        raise RecordError("proba", f"probabilities sum to {total:.4g}, not 1")
    return out


def _decision(value: Any) -> str | None:
    if value is None or value in DECISIONS:
        return value
    raise RecordError("decision", f"{_show(value)} is not one of {', '.join(DECISIONS)} or null")


def _schema(value: Any) -> int:
    if value is None:  # a null column of a Parquet file: the default
        return SCHEMA_VERSION
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise RecordError("schema", f"{_kind(value)} ({_show(value)}) is not a schema version")
    if int(value) != SCHEMA_VERSION:
        raise RecordError(
            "schema",
            f"version {int(value)} is not the version this Loopwise reads ({SCHEMA_VERSION})",
        )
    return SCHEMA_VERSION


# --------------------------------------------------------------------------- public


def validate_record(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check one inference-log record and return its normalised form.

    Parameters
    ----------
    raw : Mapping
        One record as read from the log (a parsed JSON object, a Parquet row).

    Returns
    -------
    dict
        Every field of :data:`FIELDS`, in that order, as plain JSON types: ``time`` in
        UTC (``YYYY-MM-DDTHH:MM:SS.ffffffZ``), ``model_version`` / ``prediction`` and
        the classes of ``proba`` as strings, ``score`` / ``threshold`` / probabilities
        as floats, missing optional fields as ``None`` (``schema``:
        :data:`SCHEMA_VERSION`).

    Raises
    ------
    RecordError
        For the first field (in :data:`FIELDS` order) that breaks the schema, a
        required field that is missing, or a field the schema does not know.
    """
    if not isinstance(raw, Mapping):
        shown = f" ({_show(raw)})" if isinstance(raw, str) else ""
        raise RecordError("record", f"{_kind(raw)}{shown} is not a JSON object")

    def required(name: str) -> Any:
        if name not in raw:
            raise RecordError(name, "missing (a required field)")
        return raw[name]

    out: dict[str, Any] = {
        "request_id": _request_id(required("request_id")),
        "time": _time(required("time")),
        "model_name": _text("model_name", required("model_name")),
        "model_version": _optional_label("model_version", required("model_version")),
        "inputs": _inputs(required("inputs")),
        "proba": _proba(raw.get("proba")),
    }
    prediction = raw.get("prediction")
    if prediction is not None:
        prediction = _label("prediction", prediction)
        if out["proba"] is not None and prediction not in out["proba"]:
            raise RecordError(
                "prediction",
                f"{prediction!r} is not one of the proba classes "
                f"({', '.join(map(repr, out['proba']))})",
            )
    writer = raw.get("writer")
    out["prediction"] = prediction
    out["decision"] = _decision(raw.get("decision"))
    out["score"] = _optional_float("score", raw.get("score"))
    out["threshold"] = _optional_float("threshold", raw.get("threshold"))
    out["writer"] = None if writer is None else _text("writer", writer)
    out["schema"] = _schema(raw.get("schema", SCHEMA_VERSION))
    unknown = [k for k in raw if k not in FIELDS]
    if unknown:
        raise RecordError(
            str(unknown[0]),
            f"not a field of an inference-log record (fields: {', '.join(FIELDS)})",
        )
    return out


def check_records(
    raws: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[tuple[int, Mapping[str, Any], str]]]:
    """Split records into the normalised good ones and the bad ones with their reasons.

    Parameters
    ----------
    raws : sequence of Mapping
        Records as read from the log.

    Returns
    -------
    good : list of dict
        The normalised records (:func:`validate_record`), in input order.
    bad : list of (int, Mapping, str)
        For each bad record: its position in ``raws``, the record as given and the
        reason (``"<field>: <reason>"``), in input order.
    """
    good: list[dict[str, Any]] = []
    bad: list[tuple[int, Mapping[str, Any], str]] = []
    for i, raw in enumerate(raws):
        try:
            good.append(validate_record(raw))
        except RecordError as err:
            bad.append((i, raw, str(err)))
    return good, bad


def stream_item_id(request_id: str) -> str:
    """The item id of a stream record in Label Studio and the labels ledger: ``s-<request_id>``.

    Raises
    ------
    RecordError
        If ``request_id`` is not a valid request id.
    """
    return "s-" + _request_id(request_id)
