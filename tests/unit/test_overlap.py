"""The overlap policies, the label posterior and relabel-or-new (loopwise.overlap)."""

from __future__ import annotations

import numpy as np
import pytest

from loopwise.overlap import (
    DEFAULT_ACCURACY,
    OverlapPolicy,
    accepted_doubt,
    annotator_accuracies,
    decide_items,
    label_posterior,
    model_prior,
    relabel_or_new,
)

AB = ["a", "b"]
ABC = ["a", "b", "c"]


def test_model_prior_mixes_the_guess_with_a_uniform_one():
    assert model_prior(AB, None, None) == pytest.approx([0.5, 0.5])
    assert model_prior(ABC, "b", 0.7, weight=1.0) == pytest.approx([0.15, 0.7, 0.15])
    half = model_prior(ABC, "b", 0.7, weight=0.5)
    assert half == pytest.approx(0.5 * np.array([0.15, 0.7, 0.15]) + 0.5 / 3)
    assert model_prior(ABC, "zzz", 0.9) == pytest.approx([1 / 3] * 3)  # not in the label set
    with pytest.raises(ValueError, match="score"):
        model_prior(AB, "a", 1.5)


def test_posterior_is_bayes_with_one_coin_annotators():
    # two agreeing annotators of accuracy 0.8 on 2 classes, uniform prior: .64/(.64+.04)
    post = label_posterior(np.array([0.5, 0.5]), ["a", "a"], [0.8, 0.8], AB)
    assert post[0] == pytest.approx(0.64 / 0.68)
    # a spammer (chance accuracy) moves nothing; an accuracy below chance counts as chance
    prior = np.array([0.2, 0.5, 0.3])
    assert label_posterior(prior, ["c"], [1 / 3], ABC) == pytest.approx(prior)
    assert label_posterior(prior, ["c"], [0.05], ABC) == pytest.approx(prior)
    # nobody is infallible: an answer at "accuracy 1" is clipped below certainty
    assert label_posterior(np.array([0.5, 0.5]), ["a"], [1.0], AB)[0] < 1.0
    with pytest.raises(ValueError, match="not in the label set"):
        label_posterior(np.array([0.5, 0.5]), ["x"], [0.8], AB)
    with pytest.raises(ValueError, match="one entry per answer"):
        label_posterior(np.array([0.5, 0.5]), ["a"], [0.8, 0.9], AB)


def test_fixed_asks_its_annotators_and_adaptive_starts_with_one():
    assert OverlapPolicy("fixed", annotators=3).initial == 3
    assert OverlapPolicy("fixed", annotators=9, max_annotations=4).initial == 4
    assert OverlapPolicy("adaptive", annotators=3).initial == 1
    with pytest.raises(ValueError, match="policy"):
        OverlapPolicy("sometimes")
    with pytest.raises(ValueError, match="target_confidence"):
        OverlapPolicy(target_confidence=1.0)


def test_adaptive_accepts_a_trusted_answer_and_doubts_an_unknown_one():
    p = OverlapPolicy("adaptive", target_confidence=0.9, max_annotations=3)
    expert = p.decide(AB, ["a"], [0.97])
    assert expert.status == "accept" and expert.label == "a" and expert.confidence >= 0.9
    unknown = p.decide(AB, ["a"], [DEFAULT_ACCURACY])
    assert unknown.status == "more" and "posterior" in unknown.reason
    # the model's agreement can be what tips a good annotator's answer over the target
    alone = p.decide(AB, ["a"], [0.85]).confidence
    agreed = p.decide(AB, ["a"], [0.85], prediction=("a", 0.95))
    disagreed = p.decide(AB, ["a"], [0.85], prediction=("b", 0.95))
    assert disagreed.confidence < alone < agreed.confidence
    assert agreed.status == "accept" and disagreed.status == "more"
    # used up: review
    tie = p.decide(AB, ["a", "b", "a"], [0.6, 0.6, 0.6], prediction=("b", 0.9))
    assert tie.status == "review" and "after 3 answers" in tie.reason
    assert p.decide(AB, [], []).status == "more"


def test_the_model_alone_never_labels_an_item():
    # one weak answer against a very sure model: the posterior's best label is the
    # model's, which nobody gave; never accepted, however sure
    p = OverlapPolicy("adaptive", target_confidence=0.6, model_weight=1.0)
    d = p.decide(AB, ["a"], [0.55], prediction=("b", 0.99))
    assert d.label == "b" and d.confidence > 0.6
    assert d.status == "more" and "no annotator gave" in d.reason


def test_decide_items_reads_each_annotators_accuracy():
    p = OverlapPolicy("adaptive")
    answers = {"i1": [("exp", "a")], "i2": [("spam", "a")], "i3": [("new", "b")]}
    out = decide_items(p, AB, answers, {"exp": 0.97, "spam": 0.5}, {})
    assert out["i1"].status == "accept"
    assert out["i2"].status == "more" and out["i2"].confidence == pytest.approx(0.5)
    assert out["i3"].status == "more"  # unknown annotator: the default accuracy


def test_annotator_accuracies_shrink_towards_the_default_until_there_is_evidence():
    acc = annotator_accuracies({"a": 0.99, "b": 0.3}, {"a": 1, "b": 200, "c": 4})
    assert DEFAULT_ACCURACY < acc["a"] < 0.8  # one answer is not yet an expert
    assert acc["b"] == pytest.approx((200 * 0.3 + 5 * DEFAULT_ACCURACY) / 205)
    assert acc["c"] == DEFAULT_ACCURACY


def test_relabel_or_new_puts_both_on_one_scale_and_caps_the_share():
    new = [0.5, 0.45, 0.4, 0.1]  # in the strategy's order
    doubt = {"x": 0.6, "y": 0.05, "z": 0.3, "w": 0.2}
    n_new, relabel = relabel_or_new(new, doubt, 4, max_share=0.5)
    assert (n_new, relabel) == (3, ["x"])  # x (0.6) beats the last pick (0.1); z (0.3) not 0.4
    n_new, relabel = relabel_or_new([0.5, 0.45, 0.2, 0.1], doubt, 4, max_share=0.5)
    assert (n_new, relabel) == (2, ["x", "z"])  # both beat the last two picks
    n_new, relabel = relabel_or_new([0.5, 0.45, 0.2, 0.1], doubt, 4, max_share=0.25)
    assert (n_new, relabel) == (3, ["x"])  # the cap: one of four
    assert relabel_or_new(new, doubt, 4, max_share=0.0) == (4, [])
    assert relabel_or_new(new, {}, 4) == (4, [])
    # a pool with fewer new items than the batch: relabels fill the room
    assert relabel_or_new([0.5], {"x": 0.01, "y": 0.02}, 4, max_share=0.5) == (1, ["y", "x"])


def test_accepted_doubt_rises_when_the_model_learns_otherwise():
    answers = {"i": [("u", "a")], "full": [("u", "a")] * 3, "exp": []}
    current = {"i": "a", "full": "a", "exp": "b"}
    agree = accepted_doubt(AB, current, answers, {"u": 0.6}, {"i": ("a", 0.9)}, max_annotations=3)
    disagree = accepted_doubt(
        AB, current, answers, {"u": 0.6}, {"i": ("b", 0.95)}, max_annotations=3
    )
    assert set(agree) == {"i"}  # used up and expert (no answers) items are left out
    assert disagree["i"] > 0.5 > agree["i"]
