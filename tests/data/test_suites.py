"""The committed expectation suites: they pass on good rows (and the real data) and catch bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from loopwise.datasets import data_dir
from tasks.validate import validate_frame

ROOT = Path(__file__).resolve().parents[2]
EXPECTATIONS = ROOT / "expectations"
POOL_SUITE = EXPECTATIONS / "letter_pool.json"
PLANTED = Path(__file__).resolve().parent / "letter_planted.csv"
FEATURES = [
    "x-box", "y-box", "width", "high", "onpix", "x-bar", "y-bar", "x2bar",
    "y2bar", "xybar", "x2ybr", "xy2br", "x-ege", "x-egvy", "y-ege", "y-egvx",
]  # fmt: skip


@pytest.fixture(scope="module")
def letter() -> pd.DataFrame:
    path = data_dir() / "letter.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent (set LOOPWISE_DATASETS to the folder holding letter.csv)")
    df = pd.read_csv(path, encoding="utf-8-sig")  # the file starts with a UTF-8 BOM
    # the id the data stage gives every row (loopwise.items.assign_ids without an id column)
    df.insert(0, "item_id", [f"r{i:07d}" for i in range(len(df))])
    return df


#: A row that passes each committed suite (letter_pool: the first row of letter.csv, as
#: committed in tests/data/letter_planted.csv). A new suite needs its example here.
EXAMPLES = {
    "letter_pool.json": lambda: pd.read_csv(PLANTED, encoding="utf-8-sig").iloc[0].to_dict(),
    "labels.json": lambda: {"item_id": "i1", "label": "A", "agreement": 1.0},
}


def _broken(row: dict, expectation: dict, id_column: str) -> tuple[dict, str] | None:
    """The example row broken so that it fails ``expectation``, and the reason expected.

    None for table-level expectations (tests/tasks/test_validate.py checks those)."""
    kind, kw = expectation["type"], expectation["kwargs"]
    column = kw.get("column")
    if kind == "expect_table_columns_to_match_set":
        return None
    if column == id_column:
        if kind == "expect_column_values_to_not_be_null":
            return {**row, id_column: None}, "missing id"
        if kind == "expect_column_values_to_be_unique":
            return dict(row), "duplicate id"
    if kind == "expect_column_values_to_not_be_null":
        return {**row, column: None}, f"{column}: missing value"
    if kind == "expect_column_values_to_be_between":
        value = kw["max_value"] + 1
        return {**row, column: value}, f"{column}: value {value} outside"
    if kind == "expect_column_values_to_be_in_set":
        return {**row, column: "not-a-value"}, f"{column}: 'not-a-value' not in allowed set"
    raise AssertionError(f"no way to break {kind} on {column!r} yet: add one to _broken")


@pytest.mark.parametrize("name", sorted(p.name for p in EXPECTATIONS.glob("*.json")))
def test_each_committed_suite_passes_its_example_and_catches_each_break(name):
    assert name in EXAMPLES, f"expectations/{name} has no example row in EXAMPLES"
    example = EXAMPLES[name]()
    spec = json.loads((EXPECTATIONS / name).read_text(encoding="utf-8"))
    rows, expected = [example], {}
    for i, expectation in enumerate(spec["expectations"]):
        broken = _broken(example, expectation, "item_id")
        if broken is None:
            continue
        row, reason = broken
        if row["item_id"] == example["item_id"] and reason != "duplicate id":
            row["item_id"] = f"{example['item_id']}-broken-{i}"
        expected[len(rows)] = reason
        rows.append(row)
    assert expected, f"{name}: no row-level expectation to break"
    res = validate_frame(pd.DataFrame(rows), EXPECTATIONS / name, id_column="item_id")
    assert list(res.valid.index) == [0], res.reasons.to_dict()
    wrong = {
        i: res.reasons.get(i) for i, why in expected.items() if why not in str(res.reasons.get(i))
    }
    assert not wrong, f"row: reason given, for {expected}: {wrong}"


def test_the_demo_campaign_labels_are_the_ones_its_suite_accepts():
    """configs/demo.yaml's label set and the suite it names are edited apart: a pool row of
    every demo label passes the suite, a row of any other label is quarantined."""
    from loopwise.config import load_campaign

    cfg = load_campaign(ROOT / "configs" / "demo.yaml")
    suite = ROOT / cfg.data.validation_suite  # relative to the repo root, where `make demo` runs
    others = ["a", "AA", "?"]
    row = EXAMPLES["letter_pool.json"]()
    frame = pd.DataFrame([row] * (len(cfg.labels) + len(others)))
    frame["item_id"] = [f"r{i:07d}" for i in range(len(frame))]
    frame[cfg.data.label_column] = [*cfg.labels, *others]
    res = validate_frame(frame, suite, id_column="item_id")
    assert sorted(res.valid[cfg.data.label_column]) == sorted(cfg.labels)
    assert sorted(res.invalid[cfg.data.label_column]) == sorted(others)


def test_pool_suite_covers_every_column_of_the_file(letter):
    suite = json.loads(POOL_SUITE.read_text(encoding="utf-8"))
    checked = {e["kwargs"]["column"] for e in suite["expectations"] if "column" in e["kwargs"]}
    assert checked == set(letter.columns) == {"item_id", "lettr", *FEATURES}


def test_pool_suite_passes_on_the_real_file(letter):
    assert len(letter) == 20_000
    res = validate_frame(letter, POOL_SUITE, id_column="item_id")
    assert res.invalid.empty, res.reasons.head().to_dict()
    assert res.valid_fraction == 1.0
    assert all(e["success"] for e in res.summary["expectations"])
    pd.testing.assert_frame_equal(res.valid, letter)


def test_pool_suite_catches_planted_rows(letter):
    df = letter.copy()
    df[["x-bar", "high"]] = df[["x-bar", "high"]].astype(object)
    df.loc[17, "x-bar"] = 16
    df.loc[4_000, "lettr"] = "?"
    df.loc[9_999, "high"] = None
    df.loc[12_345, "high"] = "n/a"
    df.loc[19_999, "item_id"] = "r0000005"
    res = validate_frame(df, POOL_SUITE, id_column="item_id")
    assert res.reasons.to_dict() == {
        17: "x-bar: value 16 outside [0, 15]",
        4_000: "lettr: '?' not in allowed set",
        9_999: "high: missing value",
        12_345: "high: 'n/a' is not a number",
        19_999: "duplicate id",
    }
    assert len(res.valid) == 20_000 - 5


def test_pool_suite_rejects_a_frame_without_ids(letter):
    res = validate_frame(
        letter.head(10).rename(columns={"item_id": "id"}), POOL_SUITE, id_column="id"
    )
    assert res.valid.empty
    assert "item_id: column missing" in res.reasons.iloc[0]
