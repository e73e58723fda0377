"""``loopwise init`` on good and bad files: what it infers, what it writes, what it says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from loopwise.config import load_campaign
from storage.store import Store

runner = CliRunner()


def _table(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "sku": [f"s{i:04d}" for i in range(n)],
            "weight": rng.normal(10, 2, n).round(3),
            "count": rng.integers(0, 50, n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "label": rng.choice(["keep", "drop"], n),
        }
    )


def _init(tmp: Path, data: Path, *args: str):
    return runner.invoke(
        app,
        [
            "init",
            str(data),
            "--configs-dir",
            str(tmp / "configs"),
            "--expectations-dir",
            str(tmp / "expectations"),
            *args,
        ],
    )


def _validate(cfg, tmp: Path):
    from tasks.data import load_pool
    from tasks.validate import validate_frame

    df = load_pool.fn(cfg)
    return df, validate_frame(df, cfg.data.validation_suite, id_column="item_id")


def test_init_infers_roles_and_writes_a_config_and_suite_the_data_passes(tmp_path):
    data = tmp_path / "products.csv"
    _table().to_csv(data, index=False)
    res = _init(tmp_path, data)
    assert res.exit_code == 0, res.output
    cfg = load_campaign(tmp_path / "configs" / "products.yaml")
    assert cfg.name == "products"
    assert cfg.data.id_column == "sku" and cfg.data.label_column == "label"
    assert cfg.data.feature_columns == ["weight", "count", "colour"]
    assert cfg.labels == ["drop", "keep"]
    assert cfg.control_fraction == 0.1
    suite = json.loads((tmp_path / "expectations" / "products.json").read_text())
    types = [(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]]
    assert ("expect_column_values_to_be_in_set", "colour") in types
    ranges = {
        e["kwargs"]["column"]: (e["kwargs"]["min_value"], e["kwargs"]["max_value"])
        for e in suite["expectations"]
        if e["type"] == "expect_column_values_to_be_between"
    }
    df = _table()
    lo, hi = ranges["weight"]
    assert lo < df["weight"].min() and hi > df["weight"].max()
    _, result = _validate(cfg, tmp_path)
    assert len(result.valid) == len(df) and len(result.invalid) == 0
    # A second init does not overwrite without --force.
    again = _init(tmp_path, data)
    assert again.exit_code == 2 and "--force" in again.output


def test_init_reads_parquet_and_finds_a_text_column(tmp_path):
    df = pd.DataFrame(
        {
            "id": range(40),
            "body": [
                f"a fairly long sentence about topic number {i} for the annotators"
                for i in range(40)
            ],
            "category": ["sport", "news"] * 20,
        }
    )
    data = tmp_path / "docs.parquet"
    df.to_parquet(data)
    res = _init(tmp_path, data)
    assert res.exit_code == 0, res.output
    cfg = load_campaign(tmp_path / "configs" / "docs.yaml")
    assert cfg.data.text_column == "body" and cfg.data.kind == "text"
    assert cfg.labels == ["news", "sport"] and cfg.data.id_column == "id"


def test_a_broken_row_is_named_and_quarantined_and_no_other_id_shifts(tmp_path):
    df = _table(30).drop(columns="sku")
    data = tmp_path / "broken.csv"
    lines = df.to_csv(index=False).splitlines()
    lines[5] = lines[5] + ",surplus,fields"  # data row 5, file line 6
    data.write_text("\n".join(lines) + "\n")
    res = _init(tmp_path, data)
    assert res.exit_code == 0, res.output
    assert "line 6 (row 5)" in res.output and "6 fields where the header has 4" in res.output
    cfg = load_campaign(tmp_path / "configs" / "broken.yaml")
    from tasks.data import load_pool, quarantine_broken_lines

    pool = load_pool.fn(cfg)
    assert len(pool) == 29
    # the other rows keep the ids they have in the file without the broken line
    clean = tmp_path / "clean.csv"
    df.to_csv(clean, index=False)
    whole = load_pool.fn(
        cfg.model_copy(update={"data": cfg.data.model_copy(update={"source": str(clean)})})
    )
    assert list(pool["item_id"]) == [*whole["item_id"][:4], *whole["item_id"][5:]]
    assert pool["weight"].iloc[4] == df["weight"].iloc[5]
    store = Store(tmp_path / "store")
    assert quarantine_broken_lines(store, str(data), pool, cycle=0) == 1
    assert quarantine_broken_lines(store, str(data), pool, cycle=1) == 0  # once only
    (rec,) = store.read_jsonl("quarantine/broken.jsonl")
    assert rec["reason"].startswith("line 6:") and "surplus" in rec["values"]["text"]


def test_a_missing_label_column_is_a_clear_error(tmp_path):
    data = tmp_path / "nolabel.csv"
    _table().drop(columns="label").to_csv(data, index=False)
    res = _init(tmp_path, data)
    assert res.exit_code == 2
    assert "no label column" in res.output and "--label-column" in res.output
    assert "weight" in res.output  # the columns it found
    assert not (tmp_path / "configs").exists()
    # With the label set given, a holdout file is asked for.
    res = _init(tmp_path, data, "--labels", "keep,drop")
    assert res.exit_code == 2 and "--holdout" in res.output


def test_a_mixed_type_column_is_named_and_its_bad_rows_are_quarantined(tmp_path):
    df = _table(60).astype({"weight": object})
    df.loc[17, "weight"] = "heavy"
    data = tmp_path / "mixed.csv"
    df.to_csv(data, index=False)
    res = _init(tmp_path, data)
    assert res.exit_code == 0, res.output
    assert "column 'weight'" in res.output and "row 18 ('heavy')" in res.output
    cfg = load_campaign(tmp_path / "configs" / "mixed.yaml")
    assert "weight" in cfg.data.feature_columns
    _, result = _validate(cfg, tmp_path)
    assert len(result.invalid) == 1
    assert result.invalid["sku"].tolist() == ["s0017"]
    (reason,) = list(result.reasons)
    assert "weight" in reason and "not a number" in reason


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", "a,b\n1,2\n", "unknown table format"),
        ("empty.csv", "a,label\n", "no data rows"),
        ("one.csv", "x,label\n1,a\n2,a\n", "single label"),
    ],
)
def test_unusable_files_are_refused_naming_the_file(tmp_path, name, content, message):
    data = tmp_path / name
    data.write_text(content)
    res = _init(tmp_path, data)
    assert res.exit_code == 2
    assert message in res.output and name in res.output
