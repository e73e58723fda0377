"""The committed expectation suites: they pass on the real data and catch planted bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from loopwise.datasets import data_dir
from tasks.validate import load_suite, validate_frame

EXPECTATIONS = Path(__file__).resolve().parents[2] / "expectations"
POOL_SUITE = EXPECTATIONS / "letter_pool.json"
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


@pytest.mark.parametrize("name", sorted(p.name for p in EXPECTATIONS.glob("*.json")))
def test_committed_suites_load(name):
    spec = json.loads((EXPECTATIONS / name).read_text(encoding="utf-8"))
    suite = load_suite(EXPECTATIONS / name)
    assert suite.name == spec["name"] == Path(name).stem
    assert len(suite.expectations) == len(spec["expectations"]) > 0


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
