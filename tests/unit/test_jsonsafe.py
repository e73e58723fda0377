"""loopwise.jsonsafe: one conversion to plain JSON types for ledgers, tasks and summaries."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest

from loopwise.jsonsafe import json_safe


@pytest.mark.parametrize("strict", [False, True])
def test_missing_values_numpy_scalars_and_times_become_plain_json(strict):
    value = {
        "nan": float("nan"),
        "inf": np.float64(-np.inf),
        "na": pd.NA,
        "nat": pd.NaT,
        "i": np.int64(41),
        "f": np.float32(1.5),
        "b": np.bool_(True),
        "s": np.str_("Oslo"),
        "ts": pd.Timestamp("2024-01-03 10:00", tz="UTC"),
        "d": dt.date(2024, 1, 3),
        "t": dt.time(10, 30),
        "dt64": np.datetime64("2024-01-03T10:00:00.000000000"),
        "dt64_nat": np.datetime64("NaT"),
        "nested": [(1, np.int32(2)), {"x": [np.nan, "y"]}, np.array([0.5, np.nan])],
    }
    out = json_safe(value, strict=strict)
    assert out == {
        "nan": None,
        "inf": None,
        "na": None,
        "nat": None,
        "i": 41,
        "f": 1.5,
        "b": True,
        "s": "Oslo",
        "ts": "2024-01-03T10:00:00+00:00",
        "d": "2024-01-03",
        "t": "10:30:00",
        "dt64": "2024-01-03T10:00:00",
        "dt64_nat": None,
        "nested": [[1, 2], {"x": [None, "y"]}, [0.5, None]],
    }
    assert type(out["i"]) is int and type(out["b"]) is bool and type(out["f"]) is float
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_lenient_turns_what_json_cannot_carry_into_strings_and_lists():
    out = json_safe({1: b"caf\xc3\xa9\xff", "set": {3}, "s": pd.Series([1, np.nan]), "o": 1j})
    assert out == {"1": "café\ufffd", "set": [3], "s": [1.0, None], "o": "1j"}


def test_strict_refuses_what_json_cannot_carry_and_says_where():
    with pytest.raises(TypeError, match=r"data\['row'\]\[1\] is a object"):
        json_safe({"row": [1, object()]}, strict=True, where="data")
    with pytest.raises(TypeError, match=r"data has a key 3 of type int; keys must be str"):
        json_safe({3: "x"}, strict=True, where="data")
    with pytest.raises(TypeError, match=r"value\['blob'\] is bytes"):
        json_safe({"blob": np.bytes_(b"x")}, strict=True)
    with pytest.raises(TypeError, match=r"value is a set"):
        json_safe({1, 2}, strict=True)
    assert math.isclose(json_safe(np.float16(0.25), strict=True), 0.25)
