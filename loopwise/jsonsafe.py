"""Values as plain JSON types, for the ledgers, the Label Studio tasks and the summaries.

One conversion for every place that writes JSON: NumPy scalars unwrapped, missing values
(NaN, infinities, ``None``, ``pd.NA``, ``NaT``) as ``None``, dates and times as ISO 8601
strings, tuples and arrays as lists. It differs only in what it does with a value JSON
has no type for: turn it into a string, or (``strict=True``) refuse it naming where it
was.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["json_safe"]

# Unordered or index-carrying containers: listed in the lenient mode only (a strict
# caller, such as a Label Studio task, should not get an arbitrary order or lose an index).
_LENIENT_SEQUENCES = (set, frozenset, pd.Series)


def json_safe(value: Any, *, strict: bool = False, where: str = "value") -> Any:
    """``value`` (nested mappings and sequences included) as plain JSON types.

    Parameters
    ----------
    value : Any
        A scalar, or mappings and sequences of them.
    strict : bool, default False
        What to do with a value JSON cannot carry (bytes, a mapping key that is not a
        string, an object of another type). False: keys become ``str(key)``, bytes are
        decoded as UTF-8 (invalid bytes replaced), sets and Series become lists and any
        other object becomes ``str(value)``. True: raise :class:`TypeError`.
    where : str, default "value"
        The name of ``value`` in the error messages; nested values are named like
        ``where['key'][0]``.

    Returns
    -------
    Any
        ``None``, ``bool``, ``int``, ``float`` (finite), ``str``, or lists and dicts
        (with ``str`` keys) of them. ``json.dumps(..., allow_nan=False)`` accepts it.

    Raises
    ------
    TypeError
        With ``strict=True``, for a value JSON cannot carry; the message names it.
    """
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)  # .item() would give nanoseconds as an int
    elif isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return _mapping(value, strict, where)
    if isinstance(value, list | tuple | np.ndarray) or (
        not strict and isinstance(value, _LENIENT_SEQUENCES)
    ):
        return [json_safe(v, strict=strict, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if _is_missing(value):
        return None
    if isinstance(value, dt.datetime | dt.date | dt.time):  # pd.Timestamp is a datetime
        return value.isoformat()
    if isinstance(value, bytes):
        if strict:
            raise TypeError(f"{where} is bytes, which JSON cannot carry")
        return value.decode("utf-8", errors="replace")
    if strict:
        raise TypeError(
            f"{where} is a {type(value).__name__} ({value!r}); JSON carries str, numbers, "
            "bool, None, lists, mappings and dates"
        )
    return str(value)


def _mapping(value: Mapping, strict: bool, where: str) -> dict[str, Any]:
    out = {}
    for k, v in value.items():
        if strict and not isinstance(k, str):
            raise TypeError(f"{where} has a key {k!r} of type {type(k).__name__}; keys must be str")
        out[str(k)] = json_safe(v, strict=strict, where=f"{where}[{k!r}]")
    return out


def _is_missing(value: Any) -> bool:
    """``pd.NA``, ``NaT``, a decimal NaN; False for anything ``pd.isna`` cannot judge."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
