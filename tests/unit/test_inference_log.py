"""loopwise.inference_log: good records normalise, each bad field is named in its error."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from loopwise.inference_log import (
    FIELDS,
    SCHEMA_VERSION,
    RecordError,
    check_records,
    stream_item_id,
    validate_record,
)


def _record(**changes):
    rec = {
        "request_id": "req-1",
        "time": "2025-03-01T12:30:00+02:00",
        "model_name": "letter",
        "model_version": "3",
        "inputs": {"x1": 0.5, "x2": 3, "colour": "red", "ok": True, "gap": None, "v": [1, 2.5]},
        "proba": {"a": 0.7, "b": 0.3},
        "prediction": "a",
    }
    rec.update(changes)
    return {k: v for k, v in rec.items() if v is not _DROP}


_DROP = object()


def test_a_good_record_normalises_to_every_field_in_order():
    out = validate_record(_record())
    assert list(out) == list(FIELDS)
    assert out["time"] == "2025-03-01T10:30:00.000000Z"  # UTC, microseconds, Z
    assert out["inputs"] == {
        "x1": 0.5,
        "x2": 3,
        "colour": "red",
        "ok": True,
        "gap": None,
        "v": [1, 2.5],
    }
    assert out["proba"] == {"a": 0.7, "b": 0.3} and out["prediction"] == "a"
    assert out["decision"] is None and out["score"] is None and out["threshold"] is None
    assert out["writer"] is None and out["schema"] == SCHEMA_VERSION
    json.dumps(out, allow_nan=False)  # JSON-safe


def test_normalisation_of_times_labels_numbers_and_missing_values():
    out = validate_record(
        _record(
            time="2025-03-01T10:30:00.123Z",
            model_version=7,
            inputs={
                "x": float("nan"),
                "n": np.int64(4),
                "f": np.float32(0.5),
                "v": np.array([1.0, 2.0]),
            },
            proba={0: 0.25, 1: 0.75},
            prediction=1,
            decision="control",
            score=np.float64(0.4),
            threshold=1,
            writer="gw-1",
            schema=1,
        )
    )
    assert out["time"] == "2025-03-01T10:30:00.123000Z"
    assert out["model_version"] == "7" and out["prediction"] == "1"
    assert out["proba"] == {"0": 0.25, "1": 0.75}
    assert out["inputs"] == {"x": None, "n": 4, "f": 0.5, "v": [1.0, 2.0]}
    assert type(out["inputs"]["n"]) is int and type(out["score"]) is float
    assert out["score"] == 0.4 and out["threshold"] == 1.0 and out["decision"] == "control"
    assert out["writer"] == "gw-1"
    aware = dt.datetime(2025, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert validate_record(_record(time=aware))["time"] == "2025-01-01T00:00:00.000000Z"
    assert (
        validate_record(_record(model_version=None, proba=None, prediction="zz"))["proba"] is None
    )


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"request_id": _DROP}, "request_id", "missing"),
        ({"request_id": ""}, "request_id", "not 1 to 200"),
        ({"request_id": "a" * 201}, "request_id", "201 characters"),
        ({"request_id": "a b/c"}, "request_id", "' '"),
        ({"request_id": 12}, "request_id", "an int is not a string"),
        ({"time": "yesterday"}, "time", "'yesterday' is not an ISO-8601 time with a timezone"),
        ({"time": "2025-03-01T10:00:00"}, "time", "has no timezone"),
        ({"time": 1700000000}, "time", "an int"),
        ({"model_name": ""}, "model_name", "is empty"),
        ({"model_name": _DROP}, "model_name", "missing"),
        ({"model_version": _DROP}, "model_version", "missing"),
        ({"model_version": 1.5}, "model_version", "a float"),
        ({"inputs": _DROP}, "inputs", "missing"),
        ({"inputs": {}}, "inputs", "no feature"),
        ({"inputs": [1, 2]}, "inputs", "a list is not an object"),
        ({"inputs": {"x3": {"a": 1}}}, "inputs.x3", "a dict is not a feature value"),
        ({"inputs": {"v": [1, "2"]}}, "inputs.v[1]", "a string in a list"),
        ({"inputs": {"x": float("inf")}}, "inputs.x", "not a finite number"),
        ({"proba": {"a": 0.5, "b": 0.21}}, "proba", "probabilities sum to 0.71, not 1"),
        ({"proba": {"a": 1.2, "b": -0.2}}, "proba.a", "not a probability in [0, 1]"),
        ({"proba": {"a": "0.7", "b": 0.3}}, "proba.a", "a string"),
        ({"proba": [0.7, 0.3]}, "proba", "a list"),
        ({"proba": {}}, "proba", "no class"),
        ({"prediction": "c"}, "prediction", "'c' is not one of the proba classes ('a', 'b')"),
        ({"prediction": 2.5}, "prediction", "a float"),
        ({"decision": "maybe"}, "decision", "query, control, skip or null"),
        ({"score": float("nan")}, "score", "not a finite number"),
        ({"score": "high"}, "score", "not a number or null"),
        ({"threshold": True}, "threshold", "a bool"),
        ({"writer": 3}, "writer", "not a string"),
        ({"schema": 2}, "schema", "version 2"),
        ({"schema": "1"}, "schema", "a string"),
        ({"user": "bob"}, "user", "not a field"),
    ],
)
def test_each_bad_field_raises_a_record_error_naming_it(changes, field, words):
    with pytest.raises(RecordError) as info:
        validate_record(_record(**changes))
    err = info.value
    assert err.field == field
    assert words in err.reason
    assert str(err) == f"{field}: {err.reason}"
    assert isinstance(err, ValueError)


def test_the_first_bad_field_in_field_order_is_named():
    with pytest.raises(RecordError) as info:
        validate_record(_record(request_id="bad id", proba={"a": 0.1}, user=1))
    assert info.value.field == "request_id"


@pytest.mark.parametrize("raw", [[1, 2], "{not json", None, 5])
def test_a_record_that_is_not_an_object_is_named_record(raw):
    with pytest.raises(RecordError) as info:
        validate_record(raw)
    assert info.value.field == "record" and "not a JSON object" in info.value.reason


def test_check_records_splits_good_and_bad_with_positions():
    raws = [
        _record(request_id="r0"),
        _record(request_id="r1", proba={"a": 0.2, "b": 0.2}),
        _record(request_id="r2"),
        "garbage",
        _record(request_id="r4", inputs={"x3": {}}),
    ]
    good, bad = check_records(raws)
    assert [g["request_id"] for g in good] == ["r0", "r2"]
    assert [(i, reason.split(":")[0]) for i, _, reason in bad] == [
        (1, "proba"),
        (3, "record"),
        (4, "inputs.x3"),
    ]
    assert bad[0][1] is raws[1]  # the record as given, for the quarantine
    assert bad[2][2] == "inputs.x3: a dict is not a feature value"
    assert check_records([]) == ([], [])


def test_stream_item_id():
    assert stream_item_id("abc:1") == "s-abc:1"
    with pytest.raises(RecordError, match="request_id"):
        stream_item_id("has space")


def test_fields_describe_every_field_in_one_line():
    assert list(FIELDS)[:5] == ["request_id", "time", "model_name", "model_version", "inputs"]
    assert all(isinstance(v, str) and "\n" not in v and v for v in FIELDS.values())
