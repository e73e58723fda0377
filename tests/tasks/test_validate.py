"""The validation stage: planted bad rows are quarantined, exactly, with readable reasons."""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path

import pandas as pd
import pytest

from storage.store import Store
from tasks.validate import (
    ValidationFailed,
    suite_for_labels,
    validate_frame,
    validate_labels,
    validate_pool,
)

ROOT = Path(__file__).resolve().parents[2]
POOL_SUITE = ROOT / "expectations" / "letter_pool.json"
PLANTED = ROOT / "tests" / "data" / "letter_planted.csv"

# Planted in tests/data/letter_planted.csv (rows 0-11 are real letter.csv rows):
# row -> (item_id, every reason the row must carry)
EXPECTED = {
    12: ("r0000012", ["x-box: value 99 outside [0, 15]"]),
    13: ("r0000013", ["onpix: missing value"]),
    14: ("r0000014", ["lettr: 'ZZ' not in allowed set"]),
    15: ("r0000015", ["x-ege: 'abc' is not a number"]),
    16: ("r0000003", ["duplicate id"]),
    17: ("r0000017", ["lettr: 'a' not in allowed set", "y-box: value -1 outside [0, 15]"]),
}


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    return pd.read_csv(PLANTED, encoding="utf-8-sig")


@pytest.fixture(scope="module")
def result(planted):
    return validate_frame(planted, POOL_SUITE, id_column="item_id")


def test_exactly_the_planted_rows_are_invalid(planted, result):
    assert list(result.invalid.index) == list(EXPECTED)
    assert list(result.valid.index) == list(range(12))
    assert result.reasons.index.equals(result.invalid.index)
    assert result.valid_fraction == pytest.approx(12 / 18)
    assert result.summary["rows"] == 18
    assert (result.summary["valid"], result.summary["invalid"]) == (12, 6)
    assert result.summary["suite"] == "letter_pool"
    # the invalid rows are returned as they arrived
    pd.testing.assert_frame_equal(result.invalid, planted.loc[list(EXPECTED)])


def test_reasons_name_the_column_and_the_value(result):
    for row, (item_id, parts) in EXPECTED.items():
        assert result.invalid.at[row, "item_id"] == item_id
        assert result.reasons[row] == "; ".join(parts), row


def test_non_numeric_string_rejects_only_its_row(planted, result):
    # "abc" makes pandas read x-ege as strings; the other rows' numbers still count
    assert not pd.api.types.is_numeric_dtype(planted["x-ege"])
    assert result.summary["not_numeric"] == {"x-ege": 1}
    assert pd.api.types.is_integer_dtype(result.valid["x-ege"])
    assert result.invalid.at[15, "x-ege"] == "abc"


def test_summary_counts_per_expectation(result):
    by = {(e["expectation"], e["column"]): e for e in result.summary["expectations"]}
    assert by[("expect_column_values_to_be_between", "x-box")]["unexpected_count"] == 1
    assert by[("expect_column_values_to_be_in_set", "lettr")]["unexpected_count"] == 2
    assert by[("expect_column_values_to_be_in_set", "lettr")]["success"] is False
    assert by[("expect_column_values_to_be_between", "width")]["success"] is True
    assert by[("expect_table_columns_to_match_set", None)]["level"] == "table"
    top = dict(map(tuple, result.summary["top_reasons"]))
    assert top["lettr: not in allowed set"] == 2
    assert result.summary["duplicate_ids"] == 1
    json.dumps(result.summary)  # JSON-safe: it goes into the run's state


def test_first_occurrence_of_a_duplicate_id_stays_valid(planted, result):
    assert (result.valid["item_id"] == "r0000003").sum() == 1
    assert result.valid.loc[3, "lettr"] == "N"  # the first r0000003


def test_missing_id_is_invalid(planted):
    df = planted.head(4).copy()
    df.loc[2, "item_id"] = None
    res = validate_frame(df, POOL_SUITE, id_column="item_id")
    assert res.reasons.to_dict() == {2: "missing id"}


def test_missing_column_fails_the_whole_frame(planted):
    df = planted.head(5).drop(columns=["width"])
    res = validate_frame(df, POOL_SUITE, id_column="item_id")
    assert res.valid.empty and len(res.invalid) == 5
    assert res.valid_fraction == 0.0
    why = res.reasons.iloc[0]
    assert "expect_table_columns_to_match_set failed: missing columns ['width']" in why
    assert "width: column missing (expect_column_values_to_be_between)" in why
    assert res.reasons.nunique() == 1
    assert res.summary["table_failures"]


def test_table_level_failure_keeps_row_reasons(planted):
    df = planted.drop(columns=["width"])
    res = validate_frame(df, POOL_SUITE, id_column="item_id")
    assert res.reasons[12].startswith("x-box: value 99 outside [0, 15]; ")
    assert "width: column missing" in res.reasons[12]


def test_id_column_must_be_present(planted):
    with pytest.raises(ValueError, match="'row_id'"):
        validate_frame(planted, POOL_SUITE, id_column="row_id")


def test_bad_suite_files_are_named(planted, tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ValueError, match=r"nope\.json"):
        validate_frame(planted, missing, id_column="item_id")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json.*not valid JSON"):
        validate_frame(planted, broken, id_column="item_id")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"name": "x", "expectations": [{"type": "expect_nothing"}]}))
    with pytest.raises(ValueError, match=r"wrong\.json.*not a valid expectation suite"):
        validate_frame(planted, wrong, id_column="item_id")


def test_other_row_level_expectations():
    suite = {
        "name": "misc",
        "expectations": [
            {
                "type": "expect_column_values_to_match_regex",
                "kwargs": {"column": "id", "regex": r"^r\d+$"},
            },
            {
                "type": "expect_column_values_to_be_of_type",
                "kwargs": {"column": "x", "type_": "int"},
            },
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "y", "min_value": 0, "strict_min": True},
            },
        ],
    }
    df = pd.DataFrame(
        {"id": ["r1", "bad", "r3", "r4"], "x": [1, "two", 3, 4], "y": [1.5, 2.0, 0.0, 3.0]},
        index=[10, 20, 30, 40],
    ).astype({"x": object})
    res = validate_frame(df, suite, id_column="id")
    assert res.reasons.to_dict() == {
        20: r"id: 'bad' does not match /^r\d+$/; x: 'two' is not of type int",
        30: "y: value 0 outside (0, inf]",
    }
    assert list(res.valid.index) == [10, 40]


def test_empty_frame_is_all_valid(planted):
    res = validate_frame(planted.head(0), POOL_SUITE, id_column="item_id")
    assert res.valid.empty and res.invalid.empty and res.valid_fraction == 1.0


# ---------------------------------------------------------------- the task


def test_validate_pool_quarantines_with_reasons(planted, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="tasks.validate"):
        valid, summary = validate_pool.fn(
            planted,
            POOL_SUITE,
            id_column="item_id",
            store=Store(tmp_path),
            source="data/letter.csv",
            min_valid_fraction=0.5,
            cycle=3,
        )
    assert len(valid) == 12 and summary["quarantined"] == 6
    assert summary["source"] == "data/letter.csv" and summary["cycle"] == 3
    ledger = Store(tmp_path).read_jsonl("quarantine/letter.jsonl")
    assert [r["row"] for r in ledger] == list(EXPECTED)
    for rec in ledger:
        item_id, parts = EXPECTED[rec["row"]]
        assert rec["id"] == item_id
        assert rec["reason"] == "; ".join(parts)
        assert rec["cycle"] == 3 and rec["source"] == "data/letter.csv"
    assert ledger[0]["values"]["x-box"] == 99
    assert "6 of 18 rows failed suite 'letter_pool'" in caplog.text


def test_a_rerun_records_each_bad_row_once_and_a_new_bad_row_again(planted, tmp_path):
    kw = dict(
        id_column="item_id", store=Store(tmp_path), source="letter.csv", min_valid_fraction=0.5
    )
    validate_pool.fn(planted, POOL_SUITE, cycle=1, **kw)
    _, summary = validate_pool.fn(planted, POOL_SUITE, cycle=2, **kw)
    assert summary["quarantined"] == 6 and summary["quarantined_new"] == 0
    worse = planted.copy()
    worse.loc[0, "x-box"] = 77  # a row that was fine is now bad
    _, summary = validate_pool.fn(worse, POOL_SUITE, cycle=3, **kw)
    assert summary["quarantined"] == 7 and summary["quarantined_new"] == 1
    ledger = Store(tmp_path).read_jsonl("quarantine/letter.jsonl")
    assert len(ledger) == 7 and ledger[-1]["cycle"] == 3 and "x-box" in ledger[-1]["reason"]


def test_validate_pool_below_threshold_raises(planted, tmp_path):
    with pytest.raises(ValidationFailed) as err:
        validate_pool.fn(
            planted,
            POOL_SUITE,
            id_column="item_id",
            store=Store(tmp_path),
            source="letter.csv",
            min_valid_fraction=0.9,
            cycle=None,
        )
    msg = str(err.value)
    assert "66.7% of 18 rows" in msg and "minimum 90.0%" in msg
    assert "lettr: not in allowed set (2 rows)" in msg
    assert isinstance(err.value, RuntimeError)
    assert err.value.summary["invalid"] == 6
    # the evidence is kept even when the stage fails
    assert len(Store(tmp_path).read_jsonl("quarantine/letter.jsonl")) == 6


def test_validate_pool_clean_frame_writes_nothing(planted, tmp_path):
    valid, summary = validate_pool.fn(
        planted.head(12),
        POOL_SUITE,
        id_column="item_id",
        store=Store(tmp_path),
        source="letter.csv",
        min_valid_fraction=1.0,
        cycle=1,
    )
    assert len(valid) == 12 and summary["quarantined"] == 0
    assert Store(tmp_path).read_jsonl("quarantine/letter.jsonl") == []


# ---------------------------------------------------------------- labels


def test_labels_suite_and_validation():
    suite = suite_for_labels(["cat", "dog", "cat"])
    in_set = next(e for e in suite["expectations"] if e["type"].endswith("_in_set"))
    assert in_set["kwargs"]["value_set"] == ["cat", "dog"]
    ledger = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d", "b"],
            "label": ["cat", "bird", None, "dog", "dog"],
            "agreement": [1.0, 0.7, 0.8, 1.5, 0.9],
            "annotators": [["u1"], ["u1", "u2"], ["u2"], ["u1"], ["u3"]],
        }
    )
    res = validate_labels(ledger, suite)
    assert res.reasons.to_dict() == {
        1: "label: 'bird' not in allowed set",
        2: "label: missing value",
        3: "agreement: value 1.5 outside [0, 1]",
        4: "duplicate id",
    }
    with pytest.raises(ValueError, match="at least one label"):
        suite_for_labels([])


def test_committed_labels_template_matches_the_builder():
    committed = json.loads((ROOT / "expectations" / "labels.json").read_text(encoding="utf-8"))
    assert committed == suite_for_labels(list(string.ascii_uppercase))
