"""The pool-based simulation and its summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits, load_wine

from loopwise.simulate import SimulationResult, run_simulation, seed_set


def test_seed_set_takes_per_class_rows():
    y = np.array([0] * 10 + [1] * 10 + [2])
    s = seed_set(y, 2, random_state=0)
    assert sorted(np.bincount(y[s]).tolist()) == [1, 2, 2]
    np.testing.assert_array_equal(s, seed_set(y, 2, random_state=0))


def test_arms_share_splits_and_seed_sets_and_respect_the_budget():
    X, y = load_wine(return_X_y=True)
    r = run_simulation(X, y, ["margin", "coreset"], seeds=[0, 1], batch_size=7, budget=40)
    assert r.arms == ["random", "margin", "coreset"]  # the control is always there
    c = r.curves
    first = c[c.n_labels == c.n_labels.min()]
    # paired design: before any query, every arm of a seed has the same model and accuracy
    assert first.groupby("seed")["accuracy"].nunique().eq(1).all()
    assert (c.groupby(["arm", "seed"])["n_labels"].max() == 40).all()
    steps = c[(c.arm == "margin") & (c.seed == 0)]["n_labels"].tolist()
    assert steps == [6, 13, 20, 27, 34, 40]  # 2 per class × 3 classes, batches of 7, clipped
    assert set(r.full_pool_accuracy) == {0, 1}


def test_budget_larger_than_the_pool_stops_at_the_pool():
    X, y = load_wine(return_X_y=True)
    r = run_simulation(X, y, ["random"], seeds=[0], budget=10_000, batch_size=50)
    assert r.curves.n_labels.max() == len(y) - int(np.ceil(0.3 * len(y)))  # = the whole pool


def test_summary_numbers_follow_from_the_curves():
    curves = pd.DataFrame(
        {
            "arm": ["random"] * 6 + ["margin"] * 6,
            "seed": [0, 0, 0, 1, 1, 1] * 2,
            "n_labels": [10, 20, 30] * 4,
            "accuracy": [0.5, 0.6, 0.7, 0.5, 0.7, 0.8, 0.5, 0.8, 0.9, 0.5, 0.8, 0.9],
            "query_seconds": [0.1, 0.1, np.nan] * 4,
        }
    )
    r = SimulationResult(curves, {0: 1.0, 1: 0.9})
    s = r.summary(fractions=(0.78, 0.95)).set_index("arm")
    assert s.loc["random", "aulc"] == pytest.approx(np.mean([0.6, 0.6667]), abs=1e-3)
    assert s.loc["margin", "aulc"] == pytest.approx(0.7333, abs=1e-3)
    # 78 % of the mean full-pool accuracy 0.95 is 0.741: the mean curves reach it at 20 and 30
    assert s.loc["margin", "labels_to_78pct"] == 20 and s.loc["random", "labels_to_78pct"] == 30
    assert pd.isna(s.loc["random", "labels_to_95pct"])
    assert r.labels_to_reach(0.95)["random"] is None
    d = r.paired_difference("margin", "random")
    assert d["wins"] == 2 and d["mean"] == pytest.approx(0.1)


def test_unknown_arm_is_refused_before_any_work():
    with pytest.raises(ValueError, match="unknown strategy 'magic'"):
        run_simulation(np.zeros((10, 2)), np.arange(10) % 2, ["magic"])


@pytest.mark.slow
def test_margin_beats_random_on_digits_on_paired_seeds():
    X, y = load_digits(return_X_y=True)
    r = run_simulation(X, y, ["margin"], seeds=range(3), budget=200, n_jobs=2)
    d = r.paired_difference("margin", "random")
    assert d["wins"] == 3 and d["mean"] > 0.01
