"""bench/spending.py: the campaign simulation behind the overlap-policy benchmark (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification

from bench.spending import ARMS, MAX_ANNOTATIONS, run_arms, summarize
from loopwise.annotators import AnnotatorProfile
from loopwise.simulate import default_model

BUDGET = 160


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=400, n_features=8, n_informative=5, n_classes=3, random_state=0
    )
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def runs(data):
    X, y = data
    return run_arms(X, y, model=default_model(), seeds=[0, 1], budget=BUDGET)


def _per_label(runs, arm):
    """Money over accepted labels at the end, mean over seeds."""
    last = [r["records"][-1] for r in runs if r["arm"] == arm]
    return float(np.mean([x["money"] / x["n_accepted"] for x in last]))


def test_fixed_2_pays_about_twice_fixed_1_per_label(runs):
    ratio = _per_label(runs, "fixed-2") / _per_label(runs, "fixed-1")
    assert 1.6 <= ratio <= 3.2, ratio


def test_adaptive_pays_less_than_fixed_2_per_label_with_reliable_annotators(data):
    # Not asserted for the mixed pool: there adaptive buys a second or third
    # answer wherever the spammer or the careless annotator answered first, and fixed-2
    # accepts any two agreeing answers, so on this tiny set adaptive pays more per label
    # (for more correct labels); see bench/results/spending.md.
    X, y = data
    reliable = run_arms(
        X,
        y,
        model=default_model(),
        arms=["fixed-2", "adaptive"],
        seeds=[0, 1],
        budget=BUDGET,
        profiles=lambda k: [AnnotatorProfile(accuracy=0.95)] * 5,
    )
    assert _per_label(reliable, "adaptive") < _per_label(reliable, "fixed-2")
    assert _per_label(reliable, "fixed-2") >= 2.0


def test_every_arm_ran_every_seed_within_the_budget(runs):
    assert sorted((r["arm"], r["seed"]) for r in runs) == sorted(
        (a, s) for a in ARMS for s in (0, 1)
    )
    for r in runs:
        money = [x["money"] for x in r["records"]]
        assert money == sorted(money) and 0 < money[-1] <= BUDGET
        assert r["n_answers"].sum() == money[-1]  # every answer paid for once


def test_never_more_answers_than_max_annotations(runs):
    for r in runs:
        assert r["n_answers"].max() <= MAX_ANNOTATIONS


def test_summary_reads_money_to_target_on_the_mean_curve(runs):
    d = summarize(runs, BUDGET, n_classes=3)
    assert d["target_accuracy"] == pytest.approx(0.95 * d["best_final_accuracy"])
    best = max(d["summary"], key=lambda r: r["final_accuracy"])
    assert best["money_to_target"] is not None and best["money_to_target"] <= BUDGET
    assert set(d["checks"]) == {"adaptive", "adaptive+relabel"}


def test_a_perfect_pool_gives_only_correct_labels(data):
    X, y = data
    perfect = run_arms(
        X,
        y,
        model=default_model(),
        seeds=[0],
        budget=100,
        profiles=lambda k: [AnnotatorProfile(accuracy=1.0)] * 5,
    )
    for r in perfect:
        accepted = r["status"] == 2
        assert accepted.sum() > 0
        assert (r["labels"][accepted] == r["truth"][accepted]).all(), r["arm"]
        assert r["records"][-1]["accepted_accuracy"] == 1.0
