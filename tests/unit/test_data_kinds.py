"""The pure side of the data kinds: labels as strings, Parquet vectors spread over float
columns, the text space of a cold start, the ``data.encoding`` key."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopwise.config import CampaignConfig, ConfigError
from loopwise.features import text_space
from loopwise.infer import (
    MAX_VECTOR_LENGTH,
    as_strings,
    campaign_yaml,
    expand_vectors,
    expectation_suite,
    find_label_column,
    infer_columns,
)
from loopwise.strategies.cold_start import ColdStart

# --- labels as strings ---------------------------------------------------------------------


def test_as_strings_writes_whole_numbers_without_a_decimal_point():
    got = as_strings(pd.Series([0, 1, 5]))
    assert got.tolist() == ["0", "1", "5"]


def test_as_strings_reads_an_integer_column_with_gaps_as_its_integers():
    got = as_strings(pd.Series([0.0, np.nan, 1.0]))
    assert got.tolist()[::2] == ["0", "1"] and pd.isna(got.iloc[1])


def test_as_strings_keeps_missing_cells_missing_not_the_string_nan():
    got = as_strings(pd.Series(["a", None, np.nan], dtype=object))
    assert got.iloc[0] == "a" and got.iloc[1:].isna().all()
    assert "nan" not in got.dropna().tolist() and "None" not in got.dropna().tolist()


def test_as_strings_writes_booleans_as_python_does():
    assert as_strings(pd.Series([True, False])).tolist() == ["True", "False"]


def test_as_strings_keeps_the_index():
    s = pd.Series([1, 2], index=[7, 9])
    assert as_strings(s).index.tolist() == [7, 9]


def test_integer_labels_make_a_label_set_and_suite_of_strings():
    df = pd.DataFrame({"x": np.arange(10.0), "label": [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]})
    inf = infer_columns(df)
    assert inf.labels == ["0", "1", "2", "3", "4", "5"]
    (in_set,) = [
        e
        for e in expectation_suite(inf, "t")["expectations"]
        if e["type"] == "expect_column_values_to_be_in_set"
    ]
    assert in_set["kwargs"]["value_set"] == ["0", "1", "2", "3", "4", "5"]


def test_integer_labels_with_gaps_are_not_floats_in_the_label_set():
    df = pd.DataFrame({"x": np.arange(4.0), "label": [0.0, np.nan, 1.0, 1.0]})
    assert infer_columns(df).labels == ["0", "1"]


def test_boolean_labels_make_the_label_set_false_true():
    df = pd.DataFrame({"x": np.arange(4.0), "label": [True, False, True, False]})
    assert infer_columns(df).labels == ["False", "True"]


def test_find_label_column_takes_the_given_name_or_a_known_one():
    assert find_label_column(["a", "Target"]) == "Target"
    assert find_label_column(["a", "b"], "b") == "b"
    assert find_label_column(["a", "b"], "zz") is None
    assert find_label_column(["a", "b"]) is None


# --- Parquet vectors -----------------------------------------------------------------------


def _vectors(rows: list) -> pd.DataFrame:
    return pd.DataFrame({"emb": pd.Series(rows, dtype=object), "label": ["a", "b"] * 2})


def test_a_column_of_fixed_length_number_lists_becomes_that_many_float_columns():
    df = _vectors([np.array([1.0, 2.0, 3.0])] * 4)
    out = expand_vectors(df)
    assert list(out.columns) == ["emb_0", "emb_1", "emb_2", "label"]
    assert out["emb_2"].dtype == np.float32 and out["emb_2"].tolist() == [3.0] * 4
    assert out.attrs["vectors"]["emb"]["length"] == 3


def test_a_list_of_another_length_or_an_empty_cell_becomes_missing_values():
    df = _vectors([[1.0, 2.0], [1.0], None, [3, 4]])
    out = expand_vectors(df)
    assert out["emb_0"].isna().tolist() == [False, True, True, False]
    assert out.attrs["vectors"]["emb"]["bad_rows"] == [1, 2]


def test_lists_of_strings_stay_a_column_init_ignores_with_the_reason():
    df = pd.DataFrame(
        {
            "tags": pd.Series([["x"], ["y", "z"]] * 3, dtype=object),
            "n": range(6),
            "label": [0, 1] * 3,
        }
    )
    assert expand_vectors(df) is df
    inf = infer_columns(df)
    assert "tags" in inf.ignored and "lists" in inf.ignored["tags"]
    assert "tags" not in inf.features and inf.text_column is None


def test_too_long_vectors_are_left_alone():
    df = _vectors([np.zeros(MAX_VECTOR_LENGTH + 1)] * 4)
    assert list(expand_vectors(df).columns) == ["emb", "label"]


def test_a_frame_without_lists_is_returned_as_it_is():
    df = pd.DataFrame({"a": [1, 2]})
    assert expand_vectors(df) is df


def test_spread_vector_columns_are_numeric_features_that_must_be_filled():
    df = expand_vectors(_vectors([[1.0, 2.0], [1.0], [0.5, 0.1], [3, 4]]))
    inf = infer_columns(df)
    assert inf.numeric == ["emb_0", "emb_1"] and {"emb_0", "emb_1"} <= set(inf.not_null)
    assert any("row 2" in w and "quarantines" in w for w in inf.warnings)


# --- text cold start -----------------------------------------------------------------------

TEXTS = [
    "the striker scored a late goal in the football match",
    "the goalkeeper saved a penalty in the cup final",
    "fans cheered as the team won the league title",
    "the central bank raised interest rates again",
    "stock markets fell as inflation data surprised traders",
    "the company reported record quarterly profits",
    "a new vaccine trial showed promising results",
    "doctors warn about the rise in flu cases",
] * 5


def test_text_space_is_dense_float32_unit_rows():
    X = text_space(TEXTS, n_components=5, random_state=0)
    assert X.shape == (len(TEXTS), 5) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)


def test_text_space_has_at_most_as_many_dimensions_as_the_texts_allow():
    X = text_space(["red apple", "green apple", "red pear"], random_state=0)
    assert X.shape[0] == 3 and 1 <= X.shape[1] <= 2


def test_text_space_is_seeded():
    a = text_space(TEXTS, n_components=4, random_state=3)
    b = text_space(TEXTS, n_components=4, random_state=3)
    np.testing.assert_array_equal(a, b)


def test_text_space_of_texts_without_words_is_one_zero_column():
    X = text_space(["", "a", None], random_state=0)
    assert X.shape == (3, 1) and not X.any()


def test_text_space_refuses_no_dimensions():
    with pytest.raises(ValueError, match="n_components"):
        text_space(TEXTS, n_components=0)


def test_the_cold_start_runs_on_texts_in_the_text_space_and_covers_the_topics():
    X = text_space(TEXTS, n_components=10, random_state=0)
    idx = ColdStart(random_state=0).query(None, X, 3)
    topics = {int(i) % 8 // 3 for i in idx}  # 0 sport, 1 money, 2 health (rows 6, 7)
    assert len(set(idx.tolist())) == 3 and len(topics) >= 2


def test_the_cold_start_on_raw_texts_is_the_error_text_space_avoids():
    with pytest.raises(TypeError, match="numeric features"):
        ColdStart(random_state=0).query(None, np.asarray(TEXTS, dtype=object), 3)


# --- data.encoding -------------------------------------------------------------------------


def _cfg(**data) -> dict:
    return {"name": "t", "data": {"source": "pool.csv", **data}, "labels": ["a", "b"]}


def test_data_encoding_takes_a_python_codec_name():
    cfg = CampaignConfig.model_validate(_cfg(encoding="latin-1"))
    assert cfg.data.encoding == "latin-1"
    assert CampaignConfig.model_validate(_cfg()).data.encoding is None


def test_an_unknown_encoding_is_refused_with_the_names_to_use():
    with pytest.raises(ValueError, match=r"unknown text encoding 'latin-9000'.*latin-1"):
        CampaignConfig.model_validate(_cfg(encoding="latin-9000"))


def test_an_encoding_for_a_parquet_source_is_refused():
    with pytest.raises(ValueError, match="CSV only"):
        CampaignConfig.model_validate(_cfg(source="pool.parquet", encoding="latin-1"))


def test_the_written_config_names_the_encoding_and_loads(tmp_path):
    from loopwise.config import load_campaign

    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": ["a", "b", "a"]})
    inf = infer_columns(df)
    text = campaign_yaml(inf, name="t", source="pool.csv", suite_path="s.json", encoding="cp1252")
    assert "  encoding: cp1252" in text
    (tmp_path / "t.yaml").write_text(text)
    assert load_campaign(tmp_path / "t.yaml").data.encoding == "cp1252"


def test_a_bad_encoding_in_a_file_names_the_key(tmp_path):
    from loopwise.config import load_campaign

    (tmp_path / "t.yaml").write_text(
        "name: t\ndata: {source: pool.csv, encoding: klingon}\nlabels: [a, b]\n"
    )
    with pytest.raises(ConfigError, match=r"data.encoding"):
        load_campaign(tmp_path / "t.yaml")
