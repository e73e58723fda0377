"""The pool as the cycle sees it: ids, the holdout split, features, models, partitioned selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score
from sklearn.preprocessing import StandardScaler

from loopwise import strategies
from loopwise.features import feature_matrix
from loopwise.items import assign_ids, holdout_mask
from loopwise.model import build_model, evaluate_model, prediction_agreement
from loopwise.scoring import (
    PREFILTER_FACTOR,
    partition_bounds,
    partition_scores,
    select_from_candidates,
    strategy_for,
)

# --- assign_ids -----------------------------------------------------------------------------


def test_row_number_ids_are_unique_zero_padded_strings():
    df = pd.DataFrame({"x": [5, 6, 7]})
    out = assign_ids(df, None, scheme="rows")
    assert list(out["item_id"]) == ["r0000000", "r0000001", "r0000002"]
    assert "item_id" not in df.columns, "the input frame is not modified"
    assert list(out["x"]) == [5, 6, 7]


def test_ids_from_a_column_become_strings():
    df = pd.DataFrame({"sku": [10, 20, 30], "x": [1, 2, 3]})
    out = assign_ids(df, "sku")
    assert list(out["item_id"]) == ["10", "20", "30"]
    assert list(out["sku"]) == [10, 20, 30]


def test_missing_id_column_is_named():
    with pytest.raises(ValueError, match="'sku' not in the data"):
        assign_ids(pd.DataFrame({"x": [1]}), "sku")


def test_empty_ids_are_refused():
    with pytest.raises(ValueError, match=r"'id' is empty in data row"):
        assign_ids(pd.DataFrame({"id": ["a", None, "c"]}), "id")


def test_repeated_ids_are_refused():
    with pytest.raises(ValueError, match=r"'id' repeats ids in data row"):
        assign_ids(pd.DataFrame({"id": ["a", "b", "a"]}), "id")


def test_ids_equal_as_strings_are_repeats():
    with pytest.raises(ValueError, match="repeats ids"):
        assign_ids(pd.DataFrame({"id": [1, "1"]}), "id")


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (["a", None, "c", None], "is empty in data row(s) [2, 4]"),
        (["a", "b", "a", "b"], "repeats ids in data row(s) [3, 4]"),
    ],
)
def test_bad_ids_name_the_data_rows_as_plain_numbers(ids, message):
    with pytest.raises(ValueError) as info:
        assign_ids(pd.DataFrame({"id": ids}), "id")
    assert message in str(info.value)


# --- holdout_mask ---------------------------------------------------------------------------


def test_holdout_mask_is_deterministic():
    ids = [f"i{k}" for k in range(500)]
    a, b = holdout_mask(ids, 0.3, seed=1), holdout_mask(ids, 0.3, seed=1)
    assert a.dtype == bool and a.shape == (500,)
    np.testing.assert_array_equal(a, b)


def test_holdout_side_follows_the_id_when_rows_are_added_and_reordered():
    ids = [f"item-{k}" for k in range(1000)]
    before = dict(zip(ids, holdout_mask(ids, 0.2, seed=3), strict=True))
    grown = [f"item-{k}" for k in range(1000, 1500)] + ids
    order = np.random.default_rng(0).permutation(len(grown))
    shuffled = [grown[i] for i in order]
    after = dict(zip(shuffled, holdout_mask(shuffled, 0.2, seed=3), strict=True))
    assert all(after[i] == before[i] for i in ids)


def test_seed_changes_the_split():
    ids = [str(k) for k in range(2000)]
    assert not np.array_equal(holdout_mask(ids, 0.5, seed=0), holdout_mask(ids, 0.5, seed=1))


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5, 0.85])
def test_holdout_fraction_is_close_to_target_on_10k_ids(fraction):
    ids = [f"r{k:07d}" for k in range(10_000)]
    share = holdout_mask(ids, fraction, seed=0).mean()
    # binomial sd at n=10k is at most 0.005; 4 sd
    assert abs(share - fraction) < 0.02


def test_larger_fraction_holds_out_a_superset():
    ids = [str(k) for k in range(3000)]
    small, large = holdout_mask(ids, 0.1), holdout_mask(ids, 0.3)
    assert not (small & ~large).any()


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_bad_fraction_is_refused(fraction):
    with pytest.raises(ValueError, match="fraction"):
        holdout_mask(["a", "b"], fraction)


# --- feature_matrix -------------------------------------------------------------------------


def test_features_exclude_item_id_and_the_excluded_columns():
    df = assign_ids(
        pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4], "label": ["x", "y"], "sku": [7, 8]}), "sku"
    )
    X = feature_matrix(df, feature_columns=None, text_column=None, exclude=["label", "sku"])
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X, [[1, 3], [2, 4]])


def test_named_feature_columns_are_used_in_order():
    df = pd.DataFrame({"a": [1, 2], "b": [3, 4], "c": [5, 6]})
    X = feature_matrix(df, feature_columns=["c", "a"], text_column=None)
    np.testing.assert_array_equal(X, [[5, 1], [6, 2]])


def test_categorical_one_hot_is_aligned_over_concatenated_frames():
    pool = pd.DataFrame({"n": [1.0, 2.0, 3.0], "colour": ["red", "blue", "red"]})
    holdout = pd.DataFrame({"n": [4.0, 5.0], "colour": ["green", "blue"]})
    both = pd.concat([pool, holdout], ignore_index=True)
    X = feature_matrix(both, feature_columns=None, text_column=None)
    # numeric column, then one column per category present anywhere in the frames
    assert X.shape == (5, 1 + 3)
    np.testing.assert_array_equal(X[:, 0], [1, 2, 3, 4, 5])
    onehot = X[:, 1:]
    assert (onehot.sum(axis=1) == 1).all()
    # the same category gets the same column in pool rows and holdout rows
    col = {c: int(np.argmax(onehot[i])) for i, c in enumerate(both["colour"])}
    assert len(set(col.values())) == 3
    for i, c in enumerate(both["colour"]):
        assert onehot[i, col[c]] == 1


def test_text_column_gives_an_object_array_of_strings():
    df = pd.DataFrame({"text": ["hello", None, 3], "label": ["a", "b", "a"]})
    X = feature_matrix(df, feature_columns=None, text_column="text", exclude=["label"])
    assert X.dtype == object
    assert list(X) == ["hello", "", "3"]


def test_missing_feature_column_is_named():
    with pytest.raises(ValueError, match="'nope'"):
        feature_matrix(pd.DataFrame({"a": [1]}), feature_columns=["a", "nope"], text_column=None)


def test_missing_text_column_is_named():
    with pytest.raises(ValueError, match="text column 'body'"):
        feature_matrix(pd.DataFrame({"a": [1]}), feature_columns=None, text_column="body")


# --- build_model ----------------------------------------------------------------------------


def test_text_model_is_tfidf_and_fits_on_strings():
    texts = np.array(
        ["great product love it", "terrible waste of money", "love love love", "awful terrible"]
        * 3,
        dtype=object,
    )
    y = ["pos", "neg", "pos", "neg"] * 3
    model = build_model(LogisticRegression(max_iter=200), kind="text")
    assert isinstance(model.steps[0][1], TfidfVectorizer)
    model.fit(texts, y)
    assert list(model.predict(np.array(["love it", "terrible"], dtype=object))) == ["pos", "neg"]
    assert model.predict_proba(texts).shape == (12, 2)


def test_tabular_model_scales_unless_told_not_to():
    scaled = build_model(LogisticRegression(), kind="tabular", scale=True)
    plain = build_model(LogisticRegression(), kind="tabular", scale=False)
    assert isinstance(scaled.steps[0][1], StandardScaler) and len(scaled.steps) == 2
    assert len(plain.steps) == 1 and isinstance(plain.steps[0][1], LogisticRegression)


# --- evaluate_model -------------------------------------------------------------------------


class Fixed:
    """A 'model' whose predictions are given."""

    def __init__(self, pred):
        self.pred = pred

    def predict(self, X):
        return np.asarray(self.pred, dtype=object)


def test_evaluate_model_on_a_case_computed_by_hand():
    y = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    out = evaluate_model(Fixed(pred), None, y, ["a", "b", "c"])
    # a: tp 1, fp 1, fn 1 -> F1 1/2; b: tp 2, fp 1, fn 0 -> F1 4/5; c: tp 0 -> 0
    assert out["accuracy"] == pytest.approx(3 / 5)
    assert out["per_class_f1"] == pytest.approx({"a": 0.5, "b": 0.8, "c": 0.0})
    assert out["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert out["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]  # rows true, columns predicted
    assert out["n"] == 5


def test_evaluate_model_compares_labels_as_strings():
    out = evaluate_model(Fixed([1, 2, 2]), None, ["1", "2", "1"], [1, 2])
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert set(out["per_class_f1"]) == {"1", "2"}


# --- prediction_agreement -------------------------------------------------------------------


def test_agreement_is_none_without_a_previous_model():
    assert prediction_agreement(None, ["a", "b"]) is None


def test_agreement_is_none_for_different_lengths_or_empty():
    assert prediction_agreement(["a"], ["a", "b"]) is None
    assert prediction_agreement([], []) is None


def test_identical_predictions_agree_fully_even_with_one_class():
    assert prediction_agreement(["a", "b", "c"], ["a", "b", "c"]) == 1.0
    assert prediction_agreement(["a"] * 5, ["a"] * 5) == 1.0


def test_agreement_is_cohens_kappa():
    rng = np.random.default_rng(0)
    prev = rng.choice(["x", "y", "z"], size=200)
    cur = np.where(rng.random(200) < 0.7, prev, rng.choice(["x", "y", "z"], size=200))
    got = prediction_agreement(list(prev), list(cur))
    assert got == pytest.approx(cohen_kappa_score(prev, cur))
    assert 0 < got < 1


# --- partitions -----------------------------------------------------------------------------


@pytest.mark.parametrize(("n_rows", "k"), [(10, 1), (10, 3), (10, 10), (3, 8), (1000, 7), (1, 4)])
def test_partitions_cover_every_row_exactly_once(n_rows, k):
    bounds = partition_bounds(n_rows, k)
    assert len(bounds) == min(k, n_rows)
    covered = np.concatenate([np.arange(a, b) for a, b in bounds])
    np.testing.assert_array_equal(covered, np.arange(n_rows))
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_no_partitions_of_an_empty_pool():
    assert partition_bounds(0, 4) == []


@pytest.fixture(scope="module")
def problem():
    X, y = make_blobs(n_samples=2400, centers=4, n_features=6, cluster_std=3.0, random_state=0)
    clf = LogisticRegression(max_iter=1000).fit(X[:200], y[:200])
    return clf, X[200:], X[:200], y[:200]


def partitioned_select(clf, X_pool, n, name, k, seed, X_labeled=None, y_labeled=None):
    scored = [
        partition_scores(clf, X_pool[a:b], a, n, strategy_for(name, {}, seed))
        for a, b in partition_bounds(X_pool.shape[0], k)
    ]
    candidates = np.unique(np.concatenate([idx for idx, _ in scored]))
    rows, scores = select_from_candidates(
        clf,
        X_pool,
        candidates,
        n,
        strategy_for(name, {}, seed),
        X_labeled=X_labeled,
        y_labeled=y_labeled,
    )
    return scored, candidates, rows, scores


@pytest.mark.parametrize("name", ["margin", "entropy", "least_confidence"])
@pytest.mark.parametrize("k", [1, 2, 3, 7, 16])
@pytest.mark.parametrize("n", [1, 10, 37])
def test_partitioned_score_selection_equals_the_whole_pool_query(problem, name, k, n):
    clf, X_pool, _, _ = problem
    _, _, rows, scores = partitioned_select(clf, X_pool, n, name, k, seed=0)
    want_rows, want_scores = strategies.get(name, random_state=0).query(
        clf, X_pool, n, return_scores=True
    )
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)


def test_score_partition_returns_its_best_rows_with_global_indices(problem):
    clf, X_pool, _, _ = problem
    a, b = 500, 900
    idx, scores = partition_scores(clf, X_pool[a:b], a, 15, strategy_for("margin", {}, 0))
    assert idx.size == 15 and ((idx >= a) & (idx < b)).all()
    assert (np.diff(scores) <= 0).all(), "best first"
    whole = strategies.get("margin").utility(clf.predict_proba(X_pool[a:b]))
    assert scores[-1] >= np.sort(whole)[::-1][14] - 1e-6


def test_non_score_strategy_partitions_keep_a_margin_shortlist(problem):
    clf, X_pool, _, _ = problem
    n = 3
    idx, _ = partition_scores(clf, X_pool[:1000], 0, n, strategy_for("cluster_margin", {}, 0))
    assert idx.size == PREFILTER_FACTOR * n
    idx, _ = partition_scores(clf, X_pool[:100], 0, n, strategy_for("cluster_margin", {}, 0))
    assert idx.size == 100, "a partition smaller than the shortlist is kept whole"


@pytest.mark.parametrize("k", [1, 4, 9])
@pytest.mark.parametrize("labeled", [False, True])
def test_cluster_margin_picks_distinct_valid_candidates(problem, k, labeled):
    clf, X_pool, X_lab, y_lab = problem
    n = 12
    extra = {"X_labeled": X_lab, "y_labeled": y_lab} if labeled else {}
    _, candidates, rows, scores = partitioned_select(
        clf, X_pool, n, "cluster_margin", k, 5, **extra
    )
    assert rows.size == n and scores.size == n
    assert np.unique(rows).size == n
    assert ((rows >= 0) & (rows < X_pool.shape[0])).all()
    assert np.isin(rows, candidates).all()
    assert (np.diff(scores) <= 1e-9).all(), "best first"


def test_cluster_margin_selection_is_reproducible_with_the_same_seed(problem):
    clf, X_pool, _, _ = problem
    first = partitioned_select(clf, X_pool, 10, "cluster_margin", 4, seed=11)[2]
    again = partitioned_select(clf, X_pool, 10, "cluster_margin", 4, seed=11)[2]
    np.testing.assert_array_equal(first, again)


def test_candidate_order_does_not_change_the_selection(problem):
    clf, X_pool, _, _ = problem
    cands = np.arange(0, 1500, 3)
    s = strategy_for("margin", {}, 0)
    a = select_from_candidates(clf, X_pool, cands, 8, s)[0]
    b = select_from_candidates(clf, X_pool, cands[::-1].copy(), 8, strategy_for("margin", {}, 0))[0]
    np.testing.assert_array_equal(a, b)
    assert np.isin(a, cands).all()


def test_split_by_hash_loses_no_row_and_holds_out_only_known_labels():
    from loopwise.items import split_by_hash

    df = assign_ids(pd.DataFrame({"y": ["a", "b", None, "zz"] * 250, "x": range(1000)}), None)
    pool, holdout = split_by_hash(df, "y", ["a", "b"], 0.3, seed=1)
    assert len(pool) + len(holdout) == len(df)
    assert set(holdout["y"]) <= {"a", "b"}
    assert 0.2 < len(holdout) / 500 < 0.4
    again, _ = split_by_hash(df.sample(frac=1, random_state=0), "y", ["a", "b"], 0.3, seed=1)
    assert set(again["item_id"]) == set(pool["item_id"])


@pytest.mark.parametrize("name", ["cluster_margin", "margin"])
def test_the_shortlist_does_not_depend_on_how_the_pool_is_cut(problem, name):
    from loopwise.scoring import shortlist

    clf, X_pool, _, _ = problem
    s = strategy_for(name, {}, 0)
    whole = shortlist([partition_scores(clf, X_pool, 0, 4, s)], 4, s)
    for k in (2, 3, 7, 16):
        cut = [
            partition_scores(clf, X_pool[a:b], a, 4, s)
            for a, b in partition_bounds(X_pool.shape[0], k)
        ]
        assert shortlist(cut, 4, s).tolist() == whole.tolist()
    assert whole.size == (4 if name == "margin" else PREFILTER_FACTOR * 4)
