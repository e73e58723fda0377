"""The contract every registered pool strategy must pass (DESIGN.md, "The strategy contract")."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from loopwise import strategies
from loopwise.exceptions import EmptyPoolError, NotEnoughLabelsError

ALL = strategies.names()


def query(name, clf, X, n, XL, yL, seed=0, **kw):
    return strategies.get(name, random_state=seed).query(
        clf, X, n, X_labeled=XL, y_labeled=yL, **kw
    )


#: The strategies of the design (DESIGN.md); campaign files name them, so none may go missing.
DESIGN = (
    "random",
    "least_confidence",
    "margin",
    "entropy",
    "qbc_vote_entropy",
    "qbc_kl",
    "expected_gradient_length",
    "density_weighted",
    "coreset",
    "kmeans",
    "cluster_margin",
    "diverse_margin",
    "cold_start",
)


@pytest.mark.parametrize("name", DESIGN)
def test_each_strategy_of_the_design_picks_a_batch_by_its_name(name, blobs):
    clf, X, XL, yL, _ = blobs
    idx = query(name, clf, X, 5, XL, yL)
    assert np.unique(idx).size == 5 and idx.max() < len(X)


def test_a_campaign_without_a_strategy_gets_the_default_and_it_picks_a_batch(blobs):
    from loopwise.config import CampaignConfig

    clf, X, XL, yL, _ = blobs
    cfg = CampaignConfig.model_validate(
        {"name": "t", "data": {"source": "p.csv"}, "labels": ["a", "b"]}
    )
    assert cfg.strategy.name == strategies.DEFAULT
    idx = query(cfg.strategy.name, clf, X, 5, XL, yL)
    assert np.unique(idx).size == 5


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown strategy 'nope'") as err:
        strategies.get("nope")
    for name in ALL:
        assert name in str(err.value)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_batch_and_valid_distinct_indices(name, blobs):
    clf, X, XL, yL, _ = blobs
    a, scores = query(name, clf, X, 15, XL, yL, seed=7, return_scores=True)
    b = query(name, clf, X, 15, XL, yL, seed=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (15,) and a.dtype.kind == "i"
    assert np.unique(a).size == 15
    assert a.min() >= 0 and a.max() < len(X)
    assert scores.shape == (15,)
    # best first: scores never increase along the batch
    assert np.all(np.diff(scores.astype(np.float64)) <= 1e-6), scores


@pytest.mark.parametrize("name", ALL)
def test_n_larger_than_pool_returns_whole_pool(name, blobs):
    clf, X, XL, yL, _ = blobs
    idx = query(name, clf, X[:7], 50, XL, yL)
    assert sorted(idx.tolist()) == list(range(7))


@pytest.mark.parametrize("name", ALL)
def test_one_row_pool(name, blobs):
    clf, X, XL, yL, _ = blobs
    np.testing.assert_array_equal(query(name, clf, X[:1], 3, XL, yL), [0])


@pytest.mark.parametrize("name", ALL)
def test_model_is_not_mutated(name, blobs):
    clf, X, XL, yL, _ = blobs
    before = pickle.dumps(clf)
    query(name, clf, X, 10, XL, yL)
    assert pickle.dumps(clf) == before


@pytest.mark.parametrize("name", ALL)
def test_one_class_model_falls_back_or_says_why(name, blobs):
    _, X, XL, _, _ = blobs
    yL = np.zeros(len(XL), dtype=int)
    one_class = _OneClass().fit(XL, yL)
    s = strategies.get(name, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            idx = s.query(one_class, X, 10, X_labeled=XL, y_labeled=yL)
        except NotEnoughLabelsError as err:  # a clear error is allowed by the contract
            assert "class" in str(err)
            return
    assert np.unique(idx).size == 10 and idx.max() < len(X)
    if s.needs_model:
        # documented fallback: k-means++ representatives, announced by a warning
        assert any("single class" in str(w.message) for w in caught)
        with pytest.warns(UserWarning, match="single class"):
            again = strategies.get(name, random_state=0).query(
                one_class, X, 10, X_labeled=XL, y_labeled=yL
            )
        np.testing.assert_array_equal(idx, again)


@pytest.mark.parametrize("name", ALL)
def test_bad_n_and_empty_pool_are_clear_errors(name, blobs):
    clf, X, *_ = blobs
    s = strategies.get(name, random_state=0)
    with pytest.raises(ValueError, match="positive integer, got 0"):
        s.query(clf, X, 0)
    with pytest.raises(TypeError, match="positive integer"):
        s.query(clf, X, 2.5)
    with pytest.raises(EmptyPoolError, match="0 rows"):
        s.query(clf, X[:0], 3)


@pytest.mark.parametrize("name", [n for n in ALL if strategies.REGISTRY[n].needs_model])
def test_model_strategies_refuse_a_missing_model(name, blobs):
    _, X, _, _, _ = blobs
    with pytest.raises(TypeError, match="needs a fitted classifier"):
        strategies.get(name).query(None, X, 3)


def test_mismatched_labeled_set_is_refused(blobs):
    clf, X, XL, yL, _ = blobs
    with pytest.raises(ValueError, match="X_labeled has 24 rows but y_labeled has 23"):
        strategies.get("coreset").query(clf, X, 3, X_labeled=XL, y_labeled=yL[:-1])
    with pytest.raises(ValueError, match="give both"):
        strategies.get("coreset").query(clf, X, 3, X_labeled=XL)


class _OneClass(LogisticRegression):
    """A classifier that has seen a single class: one probability column, always 1."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.coef_ = np.zeros((1, np.asarray(X).shape[1]))
        self.intercept_ = np.zeros(1)
        return self

    def predict_proba(self, X):
        return np.ones((len(X), 1))
