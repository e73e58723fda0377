"""Items keep their identity (loopwise/items.py): content ids, training rows from what was
sent to annotators, and what a pool edit did to the items already sent."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from loopwise.items import (
    assign_ids,
    content_ids,
    label_time_rows,
    pool_edits,
    uses_row_numbers,
)


def _table(n: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n).round(4),
            "k": rng.integers(0, 5, n),
            "shop": rng.choice(["north", "south"], n),
            "y": rng.choice(["a", "b"], n),
        }
    )


def _reread(df: pd.DataFrame) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(df.to_csv(index=False)))


# --- content ids --------------------------------------------------------------------------


def test_content_ids_are_the_same_on_a_reread_of_the_file():
    df = _table()
    ids = content_ids(df, exclude=["y"])
    assert ids == content_ids(_reread(df), exclude=["y"])
    assert len(set(ids)) == len(df) and all(i.startswith("f") and len(i) == 17 for i in ids)


def test_deleting_or_inserting_rows_moves_no_other_id():
    df = _table()
    ids = content_ids(df, exclude=["y"])
    kept = [i for i in range(len(df)) if i % 7]
    assert content_ids(_reread(df.iloc[kept]), exclude=["y"]) == [ids[i] for i in kept]
    new = _table(5, seed=9)
    both = pd.concat([new.iloc[:2], df, new.iloc[2:]], ignore_index=True)
    assert content_ids(both, exclude=["y"])[2:-3] == ids


def test_the_label_column_is_not_part_of_the_id():
    df = _table()
    relabeled = df.assign(y=df["y"].map({"a": "b", "b": "a"}))
    assert content_ids(df, exclude=["y"]) == content_ids(relabeled, exclude=["y"])
    assert content_ids(df) != content_ids(relabeled)


def test_any_other_value_is_part_of_the_id():
    df = _table()
    changed = df.copy()
    changed.loc[3, "shop"] = "east"
    a, b = content_ids(df, exclude=["y"]), content_ids(changed, exclude=["y"])
    assert [i for i in range(len(df)) if a[i] != b[i]] == [3]


def test_exact_duplicates_get_an_occurrence_suffix_in_file_order():
    df = pd.DataFrame({"x": [1.5, 2.0, 1.5, 1.5], "y": ["a", "b", "a", "b"]})
    ids = content_ids(df, exclude=["y"])
    assert ids[2] == f"{ids[0]}-2" and ids[3] == f"{ids[0]}-3" and ids[1] != ids[0]
    # the first occurrence keeps its id when a later duplicate goes
    assert content_ids(df.iloc[[0, 1, 3]], exclude=["y"]) == ids[:3]


def test_missing_values_are_one_value_and_not_zero():
    df = pd.DataFrame({"x": [np.nan, 0.0, 1.0], "s": [None, "", "z"]})
    other = pd.DataFrame({"x": [None, 0.0, 1.0], "s": [np.nan, "", "z"]}, dtype=object)
    assert content_ids(df) == content_ids(other)
    assert len(set(content_ids(pd.DataFrame({"x": [np.nan, 0.0]})))) == 2


def test_a_column_that_turns_integer_when_its_missing_value_goes_keeps_its_ids():
    df = pd.read_csv(io.StringIO("k,s\n1,a\n2,b\n,c\n4,d\n"))
    assert df["k"].dtype == np.float64
    ids = content_ids(df)
    rest = pd.read_csv(io.StringIO("k,s\n1,a\n2,b\n4,d\n"))
    assert rest["k"].dtype == np.int64
    assert content_ids(rest) == [ids[0], ids[1], ids[3]]


def test_column_order_does_not_change_the_ids():
    df = _table()
    assert content_ids(df) == content_ids(df[["y", "shop", "x", "k"]])


def test_assign_ids_without_an_id_column_gives_content_ids_without_the_label():
    df = _table()
    out = assign_ids(df, None, label_column="y")
    assert list(out["item_id"]) == content_ids(df, exclude=["y"])
    assert "item_id" not in df.columns
    # an existing item_id column (a re-assignment) is not part of the fingerprint
    assert list(assign_ids(out, None, label_column="y")["item_id"]) == list(out["item_id"])


def test_assign_ids_keeps_the_row_number_scheme_when_asked():
    out = assign_ids(_table(3), None, [0, 2, 5], scheme="rows")
    assert list(out["item_id"]) == ["r0000000", "r0000002", "r0000005"]


def test_an_unknown_scheme_is_refused_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="'content' or 'rows', got 'hash'"):
        assign_ids(_table(3), None, scheme="hash")


def test_row_number_ids_are_told_from_content_and_column_ids():
    assert uses_row_numbers(["f0123456789abcdef", "r0000123"])
    assert not uses_row_numbers(["f0123456789abcdef", "r12", "row0000123", "u0001"])
    assert not uses_row_numbers([])


# --- training rows from what was sent ------------------------------------------------------


def _pool() -> pd.DataFrame:
    return assign_ids(
        pd.DataFrame({"x": [0.5, 1.5, 2.5, 3.5], "k": [1, 2, 3, 4], "y": ["a", "b", "a", "b"]}),
        None,
        label_column="y",
    )


def test_training_rows_take_the_values_the_items_were_sent_with():
    pool = _pool()
    i0, i1, i2 = pool["item_id"][:3]
    records = {i0: {"record": {"x": 9.25, "k": 7}}, i1: {"record": {"x": 1.5, "k": 2}}}
    labels = pd.DataFrame({"item_id": [i1, i0, i2], "label": ["b", "a", "a"]})
    rows, missing = label_time_rows(labels, records, pool)
    assert missing == []
    by = rows.set_index("item_id")
    assert (by.loc[i0, "x"], by.loc[i0, "k"]) == (9.25, 7)  # as sent, not as now
    assert by.loc[i2, "x"] == 2.5  # no record (an old campaign): the pool row
    assert list(rows["item_id"]) == sorted([i0, i1, i2])
    assert rows["k"].dtype == pool["k"].dtype and rows["x"].dtype == pool["x"].dtype
    assert (by.loc[i0, "label"], by.loc[i1, "label"], by.loc[i2, "label"]) == ("a", "b", "a")


def test_an_item_gone_from_the_pool_keeps_its_label_and_its_values():
    pool = _pool()
    records = {"gone": {"record": {"x": 4.5, "k": 5}}}
    labels = pd.DataFrame({"item_id": ["gone", "lost"], "label": ["b", "a"]})
    rows, missing = label_time_rows(labels, records, pool)
    assert missing == ["lost"]  # neither a record nor a pool row: nothing to train on
    assert rows[["item_id", "x", "k", "label"]].to_dict("records") == [
        {"item_id": "gone", "x": 4.5, "k": 5, "label": "b"}
    ]
    assert rows["k"].dtype == np.int64


def test_a_text_record_fills_the_text_column():
    pool = assign_ids(pd.DataFrame({"body": ["red", "blue"], "y": ["a", "b"]}), None)
    i0 = pool["item_id"][0]
    labels = pd.DataFrame({"item_id": [i0, "gone"], "label": ["a", "b"]})
    records = {i0: {"text": "red"}, "gone": {"text": "green"}}
    rows, _ = label_time_rows(labels, records, pool, text_column="body")
    assert dict(zip(rows["item_id"], rows["body"], strict=True)) == {i0: "red", "gone": "green"}


def test_the_snapshot_columns_line_up_with_the_pool_for_the_model():
    from loopwise.config import CampaignConfig
    from loopwise.features import model_inputs

    cfg = CampaignConfig(name="t", data={"source": "x.csv", "label_column": "y"}, labels=["a", "b"])
    pool = assign_ids(
        pd.DataFrame({"x": [0.5, 1.5], "shop": ["n", "s"], "y": ["a", "b"]}),
        None,
        label_column="y",
    )
    records = {"gone": {"record": {"x": 3.0, "shop": "e"}}}
    labels = pd.DataFrame({"item_id": [pool["item_id"][0], "gone"], "label": ["a", "b"]})
    rows, _ = label_time_rows(labels, records, pool)
    X_lab, X_pool = model_inputs(cfg, rows, pool)
    assert X_lab.shape[1] == X_pool.shape[1] and X_lab.dtype == np.float32
    assert not np.isnan(X_lab).any()


# --- pool edits ---------------------------------------------------------------------------


def test_items_no_longer_in_the_pool_are_removed_ones():
    pool = _pool()
    found = pool_edits(["gone", pool["item_id"][0], "gone"], {}, pool)
    assert found == [{"item_id": "gone", "kind": "removed", "columns": [], "digest": None}]


def test_an_item_whose_values_changed_names_the_columns():
    pool = assign_ids(
        pd.DataFrame({"id": ["u1", "u2"], "x": [0.5, 1.5], "k": [1, 2], "y": ["a", "b"]}), "id"
    )
    records = {
        "u1": {"record": {"id": "u1", "x": 0.5, "k": 3, "gone_column": 1}},
        "u2": {"record": {"id": "u2", "x": 1.5, "k": 2.0}},
    }
    (edit,) = pool_edits(["u1", "u2"], records, pool)
    assert (edit["item_id"], edit["kind"], edit["columns"]) == ("u1", "changed", ["k"])
    # the same edit seen again has the same digest; another value another one
    assert pool_edits(["u1"], records, pool)[0]["digest"] == edit["digest"]
    pool.loc[0, "k"] = 4
    assert pool_edits(["u1"], records, pool)[0]["digest"] != edit["digest"]


def test_an_unchanged_item_and_a_reread_pool_give_no_edit():
    df = pd.DataFrame({"id": ["u1", "u2"], "x": [0.1 + 0.2, np.nan], "y": ["a", "b"]})
    pool = assign_ids(_reread(df), "id")
    sent = pool.drop(columns=["y", "item_id"]).to_dict("records")
    records = {r["id"]: {"record": r} for r in sent}
    assert pool_edits(["u1", "u2"], records, pool) == []


def test_a_changed_text_is_an_edit_of_the_text_column():
    pool = assign_ids(pd.DataFrame({"id": ["d1"], "body": ["new words"]}), "id")
    (edit,) = pool_edits(["d1"], {"d1": {"text": "old words"}}, pool, text_column="body")
    assert edit["columns"] == ["body"]
