"""Data kinds from the file to the validated pool: integer and boolean labels read and
compared as strings, Parquet vectors as features, CSVs in another encoding, and what
``loopwise init`` writes for each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from loopwise.config import load_campaign
from storage.tables import read_table
from tasks.data import load_pool, split_holdout
from tasks.validate import validate_frame

runner = CliRunner()


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


def _features(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 2)).round(3), columns=["a", "b"])


def _campaign(tmp: Path, data: Path, *args: str):
    res = _init(tmp, data, *args)
    assert res.exit_code == 0, res.output
    cfg = load_campaign(tmp / "configs" / f"{data.name.split('.')[0]}.yaml")
    pool = load_pool.fn(cfg)
    return cfg, pool, validate_frame(pool, cfg.data.validation_suite, id_column="item_id")


# --- reading -------------------------------------------------------------------------------


def test_a_string_column_of_a_csv_keeps_its_text_and_its_gaps(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("x,label\n1,0\n2,\n3,01\n4,true\n")
    df = read_table(p, string_columns=["label", "not-there"])
    assert df["label"].iloc[[0, 2, 3]].tolist() == ["0", "01", "true"]
    assert pd.isna(df["label"].iloc[1])
    assert df["x"].dtype.kind == "i"


def test_a_string_column_of_a_parquet_file_reads_whole_numbers_as_integers(tmp_path):
    p = tmp_path / "t.parquet"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": [0.0, None, 1.0]}).to_parquet(p)
    df = read_table(p, string_columns=["label"])
    assert df["label"].iloc[[0, 2]].tolist() == ["0", "1"] and pd.isna(df["label"].iloc[1])


def test_a_parquet_vector_column_is_read_as_float_columns(tmp_path):
    p = tmp_path / "t.parquet"
    pd.DataFrame({"emb": [[0.5, 1.5]] * 3, "label": ["a", "b", "a"]}).to_parquet(p)
    assert list(read_table(p).columns) == ["emb_0", "emb_1", "label"]


def test_a_latin1_csv_read_as_utf8_is_an_error_naming_the_offset_line_and_option(tmp_path):
    p = tmp_path / "cities.csv"
    p.write_bytes("x,city\n1,Bern\n2,Zürich\n".encode("latin-1"))
    with pytest.raises(ValueError) as err:
        read_table(p)
    msg = str(err.value)
    assert str(p) in msg and "byte 0xfc at offset 17 (line 3)" in msg
    assert "--encoding latin-1" in msg and "data.encoding" in msg


def test_the_decode_error_of_a_gzip_csv_counts_the_uncompressed_bytes(tmp_path):
    import gzip

    p = tmp_path / "cities.csv.gz"
    p.write_bytes(gzip.compress("x,city\n1,Bern\n2,Zürich\n".encode("latin-1")))
    with pytest.raises(ValueError, match=r"offset 17 \(line 3\)"):
        read_table(p)


def test_a_latin1_csv_reads_with_its_encoding(tmp_path):
    p = tmp_path / "cities.csv"
    p.write_bytes("x,city\n1,Bern\n2,Zürich\n".encode("latin-1"))
    assert read_table(p, encoding="latin-1")["city"].tolist() == ["Bern", "Zürich"]


def test_broken_lines_of_a_latin1_csv_are_found_in_its_encoding(tmp_path):
    p = tmp_path / "cities.csv"
    p.write_bytes("x,city\n1,Bern\n2,Zürich,extra\n3,Genève\n".encode("latin-1"))
    df = read_table(p, encoding="latin-1")
    assert df["city"].tolist() == ["Bern", "Genève"]
    (bad,) = df.attrs["bad_lines"]
    assert bad["line"] == 3 and "Zürich" in bad["text"]


# --- the pool and its validation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "labels"),
    [
        ([0, 1], ["0", "1"]),
        ([0, 1, 2, 3, 4, 5], ["0", "1", "2", "3", "4", "5"]),
        ([True, False], ["False", "True"]),
    ],
    ids=["binary", "trec-like", "boolean"],
)
def test_integer_and_boolean_label_campaigns_quarantine_nothing(tmp_path, values, labels):
    df = _features()
    df["label"] = [values[i % len(values)] for i in range(len(df))]
    data = tmp_path / "pool.csv"
    df.to_csv(data, index=False)
    cfg, pool, result = _campaign(tmp_path, data)
    assert cfg.labels == labels
    assert len(result.invalid) == 0, result.reasons.tolist()[:3]
    split = split_holdout.fn(cfg, pool)
    assert len(split["holdout"]) > 0 and split["holdout_classes"] == len(labels)


def test_an_unlabeled_row_of_an_integer_label_column_stays_in_the_pool_unlabeled(tmp_path):
    df = _features()
    df["label"] = pd.array([i % 2 for i in range(len(df))], dtype="Int64")
    df.loc[4, "label"] = pd.NA
    data = tmp_path / "pool.csv"
    df.to_csv(data, index=False)
    cfg, pool, result = _campaign(tmp_path, data)
    assert cfg.labels == ["0", "1"] and len(result.invalid) == 0
    assert pd.isna(pool.loc[4, "label"])
    assert "nan" not in set(pool["label"].dropna())
    split = split_holdout.fn(cfg, pool)
    assert pool["item_id"].iloc[4] not in set(split["holdout"]["item_id"])


def test_boolean_categorical_features_pass_their_own_suite(tmp_path):
    df = _features()
    df["flag"] = [i % 3 == 0 for i in range(len(df))]
    df["label"] = ["x", "y"] * (len(df) // 2)
    data = tmp_path / "pool.csv"
    df.to_csv(data, index=False)
    _, _, result = _campaign(tmp_path, data)
    assert len(result.invalid) == 0, result.reasons.tolist()[:3]


def test_an_old_suite_listing_integer_labels_as_strings_meets_an_integer_column():
    suite = {
        "name": "old",
        "expectations": [
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": "label", "value_set": ["0", "1"]},
            }
        ],
    }
    df = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "label": [0.0, 1.0, np.nan, 7.0]})
    result = validate_frame(df, suite, id_column="item_id")
    assert result.invalid["item_id"].tolist() == ["d"]
    assert result.reasons.tolist() == ["label: 7 not in allowed set"]
    assert result.valid["label"].iloc[0] == 0.0  # the valid rows keep their values


def test_a_vector_campaign_validates_and_quarantines_the_row_of_another_length(tmp_path):
    rng = np.random.default_rng(1)
    emb = [rng.normal(size=4).round(3).tolist() for _ in range(40)]
    emb[7] = [1.0, 2.0]
    data = tmp_path / "vec.parquet"
    pd.DataFrame({"emb": emb, "label": ["u", "v"] * 20}).to_parquet(data)
    res = _init(tmp_path, data)
    assert res.exit_code == 0, res.output
    assert "emb_0..emb_3" in res.output and "row 8" in res.output
    cfg, pool, result = _campaign(tmp_path, data, "--force")
    assert cfg.data.feature_columns == ["emb_0", "emb_1", "emb_2", "emb_3"]
    assert result.invalid["item_id"].tolist() == [pool["item_id"].iloc[7]]
    assert "emb_0: missing value" in result.reasons.iloc[0]


def test_init_on_a_latin1_csv_says_which_option_to_pass(tmp_path):
    df = _features(20)
    df["city"] = ["Zürich", "Genève"] * 10
    df["label"] = ["oui", "non"] * 10
    data = tmp_path / "villes.csv"
    df.to_csv(data, index=False, encoding="latin-1")
    res = _init(tmp_path, data)
    assert res.exit_code == 2
    assert "villes.csv" in res.output and "line 2" in res.output and "--encoding" in res.output


def test_init_with_the_encoding_writes_it_and_the_pool_passes(tmp_path):
    df = _features(20)
    df["city"] = ["Zürich", "Genève"] * 10
    df["label"] = ["oui", "non"] * 10
    data = tmp_path / "villes.csv"
    df.to_csv(data, index=False, encoding="latin-1")
    cfg, pool, result = _campaign(tmp_path, data, "--encoding", "latin-1")
    assert cfg.data.encoding == "latin-1"
    assert set(pool["city"]) == {"Zürich", "Genève"} and len(result.invalid) == 0


def test_init_refuses_an_unknown_encoding(tmp_path):
    data = tmp_path / "pool.csv"
    _features().assign(label=["a", "b"] * 30).to_csv(data, index=False)
    res = _init(tmp_path, data, "--encoding", "klingon")
    assert res.exit_code == 2 and "klingon" in res.output
