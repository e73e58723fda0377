"""Uncertainty utilities and the top-n selector, with fixed probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from loopwise import strategies
from loopwise.strategies.uncertainty import (
    entropy_scores,
    least_confidence_scores,
    margin_scores,
)
from tests.conftest import fixed, id_pool

# Rows chosen so that the three measures disagree on the winner.
TABLE = np.array(
    [
        [1.00, 0.00, 0.00],  # 0: certain
        [0.50, 0.50, 0.00],  # 1: two-way tie -> best margin
        [0.40, 0.30, 0.30],  # 2: flat-ish -> best least confidence... and entropy
        [0.34, 0.33, 0.33],  # 3: flattest -> best LC and entropy
        [0.60, 0.20, 0.20],  # 4
        [0.45, 0.44, 0.11],  # 5: small margin
    ]
)


def test_scores_match_their_definitions():
    np.testing.assert_allclose(least_confidence_scores(TABLE), 1 - TABLE.max(1))
    top = np.sort(TABLE, axis=1)
    np.testing.assert_allclose(margin_scores(TABLE), 1 - (top[:, -1] - top[:, -2]))
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(TABLE * np.log(TABLE), axis=1)
    np.testing.assert_allclose(entropy_scores(TABLE), ent)
    assert entropy_scores(TABLE)[0] == 0.0  # 0 log 0 = 0, no NaN


def test_binary_and_one_column_margins():
    p = np.array([[0.9, 0.1], [0.55, 0.45]])
    np.testing.assert_allclose(margin_scores(p), [0.2, 0.9])
    np.testing.assert_array_equal(margin_scores(np.ones((3, 1))), 0)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("least_confidence", [3, 2, 5, 1, 4, 0]),
        ("margin", [1, 3, 5, 2, 4, 0]),
        ("entropy", [3, 2, 5, 4, 1, 0]),
    ],
)
def test_each_measure_ranks_the_fixed_table(name, expected):
    idx = strategies.get(name, random_state=0).query(fixed(TABLE), id_pool(6), 6)
    np.testing.assert_array_equal(idx, expected)


def test_top_n_breaks_ties_by_seed_not_by_position():
    scores = np.zeros(1000)
    picks = {tuple(strategies.top_n(scores, 5, random_state=s)) for s in range(5)}
    assert len(picks) == 5  # different seeds, different tie-breaks
    assert all(min(p) > 0 or max(p) > 4 for p in picks)  # not just the first rows
    np.testing.assert_array_equal(strategies.top_n(scores, 5, 3), strategies.top_n(scores, 5, 3))


def test_top_n_keeps_every_strictly_better_row_and_orders_them():
    rng = np.random.RandomState(0)
    scores = rng.rand(10_000)
    idx = strategies.top_n(scores, 100, random_state=0)
    np.testing.assert_array_equal(idx, np.argsort(-scores)[:100])


def test_top_n_treats_nan_as_worst():
    idx = strategies.top_n(np.array([np.nan, 0.1, 0.5]), 2, 0)
    np.testing.assert_array_equal(idx, [2, 1])


def test_chunked_scoring_equals_one_shot(monkeypatch):
    from loopwise.strategies import _base

    rng = np.random.RandomState(1)
    table = rng.dirichlet(np.ones(4), size=5000)
    one = strategies.get("entropy", random_state=0).query(fixed(table), id_pool(5000), 50)
    monkeypatch.setattr(_base, "CHUNK_ROWS", 333)
    monkeypatch.setattr(_base.score_pool, "__defaults__", (333,))
    chunked = strategies.get("entropy", random_state=0).query(fixed(table), id_pool(5000), 50)
    np.testing.assert_array_equal(one, chunked)


@pytest.mark.parametrize("n_classes", [3, 4, 10, 26, 57])
def test_margin_matches_the_sorted_reference_on_random_probabilities(n_classes):
    rng = np.random.default_rng(n_classes)
    p = rng.random((500, n_classes))
    p[::7, 1] = p[::7, 0]  # exact ties at the top for some rows
    p /= p.sum(axis=1, keepdims=True)
    top = np.sort(p, axis=1)
    np.testing.assert_allclose(margin_scores(p), 1 - (top[:, -1] - top[:, -2]))
    np.testing.assert_allclose(margin_scores(np.asfortranarray(p)), margin_scores(p))
