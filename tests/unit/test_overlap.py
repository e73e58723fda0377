"""The overlap policies, the label posterior and relabel-or-new (loopwise.overlap)."""

from __future__ import annotations

import numpy as np
import pytest

from loopwise.overlap import (
    DEFAULT_ACCURACY,
    OverlapPolicy,
    accepted_gain,
    annotator_accuracies,
    answer_gain,
    decide_items,
    label_posterior,
    label_value,
    model_prior,
    new_item_value,
    pool_accuracy,
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
    with pytest.raises(ValueError, match="model_weight"):
        OverlapPolicy(model_weight=1.5)


def test_a_label_is_worth_the_square_of_its_signal():
    assert label_value(np.array([0.9, 0.1])) == pytest.approx(0.64)
    assert label_value(np.array([0.5, 0.5])) == 0.0
    assert label_value(np.array([0.4, 0.3, 0.3])) == 0.0  # more likely wrong than right
    # one answer on a new item: a 0.8 annotator buys (2 x 0.8 - 1)^2 of a clean label
    assert new_item_value(0.8, 2) == pytest.approx(0.36)
    assert new_item_value(0.8, 10) == pytest.approx(0.36)
    assert new_item_value(0.3, 10) == 0.0  # better than chance, still more often wrong


def test_the_gain_of_an_answer_is_its_expected_value_minus_the_present_one():
    post = np.array([0.7, 0.3])
    a = 0.8
    agree = post[0] * a + post[1] * (1 - a)
    after_agree = post[0] * a / agree
    after_disagree = post[0] * (1 - a) / (1 - agree)
    expected = agree * label_value(np.array([after_agree, 1 - after_agree])) + (
        1 - agree
    ) * label_value(np.array([after_disagree, 1 - after_disagree]))
    assert answer_gain(post, a) == pytest.approx(expected - label_value(post))
    assert answer_gain(post, 0.5) == pytest.approx(0.0)  # a coin flip tells nothing
    assert answer_gain(np.array([0.999, 0.001]), 0.8) < 0.01  # nothing left to learn


def test_adaptive_asks_again_where_an_answer_buys_more_than_on_a_new_item():
    p = OverlapPolicy("adaptive", max_annotations=3)
    k6 = ["a", "b", "c", "d", "e", "f"]
    expert = p.decide(k6, ["a"], [0.97], pool_accuracy=0.7)
    assert expert.status == "accept" and expert.label == "a"
    # the same single answer from a careless annotator is worth a second opinion
    careless = p.decide(k6, ["a"], [0.6], pool_accuracy=0.7)
    assert careless.status == "more" and "on a new item" in careless.reason
    # ... unless the model already says the same
    assert p.decide(k6, ["a"], [0.6], prediction=("a", 0.6), pool_accuracy=0.7).status == ("accept")
    # a good annotator that contradicts a sure model: ask again
    assert p.decide(k6, ["a"], [0.85], prediction=("b", 0.6), pool_accuracy=0.7).status == ("more")
    # two answers that disagree are worth resolving; two that agree are not
    assert p.decide(k6, ["a", "b"], [0.85, 0.85], pool_accuracy=0.7).status == "more"
    assert p.decide(k6, ["a", "a"], [0.6, 0.6], pool_accuracy=0.7).status == "accept"
    # a better pool makes new items worth more, so fewer second opinions
    assert p.decide(k6, ["a"], [0.7], pool_accuracy=0.95).status == "accept"
    assert p.decide(k6, ["a"], [0.7], pool_accuracy=0.7).status == "more"
    # used up: accepted when more likely right than wrong (one trusted answer outweighs
    # two careless ones), else review
    heavy = p.decide(["a", "b"], ["a", "b", "a"], [0.6, 0.9, 0.6], pool_accuracy=0.7)
    assert heavy.status == "accept" and heavy.label == "b"
    tie = p.decide(["a", "b"], ["a", "b"], [0.8] * 2, pool_accuracy=0.7)
    assert tie.status == "more"
    tie = OverlapPolicy(max_annotations=2).decide(["a", "b"], ["a", "b"], [0.8] * 2)
    assert tie.status == "review" and "after 2 answers" in tie.reason
    assert p.decide(["a", "b"], [], []).status == "more"


def test_the_model_alone_never_labels_an_item():
    # one weak answer against a very sure model: the posterior's best label is the
    # model's, which nobody gave; never accepted, however sure
    p = OverlapPolicy("adaptive", model_weight=1.0, max_annotations=2)
    d = p.decide(["a", "b"], ["a"], [0.55], prediction=("b", 0.99))
    assert d.label == "b" and d.confidence > 0.9
    assert d.status == "more" and "given by nobody" in d.reason
    d = p.decide(["a", "b"], ["a", "a"], [0.55, 0.55], prediction=("b", 0.999))
    assert d.label == "b" and d.status == "review"


def test_decide_items_reads_each_annotators_accuracy():
    p = OverlapPolicy("adaptive")
    answers = {"i1": [("exp", "a")], "i2": [("spam", "a")], "i3": [("new", "b")]}
    out = decide_items(p, AB, answers, {"exp": 0.97, "spam": 0.5}, {})
    assert out["i1"].status == "accept"
    assert out["i2"].status == "more" and out["i2"].confidence == pytest.approx(0.5)
    assert out["i3"].label == "b"  # unknown annotator: the default accuracy
    assert pool_accuracy({"exp": 0.97, "spam": 0.5}) == pytest.approx(0.735)
    assert pool_accuracy({}) == DEFAULT_ACCURACY


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


def test_an_accepted_label_is_worth_asking_again_when_the_model_learns_otherwise():
    answers = {"i": [("u", "a")], "full": [("u", "a")] * 3, "exp": []}
    current = {"i": "a", "full": "a", "exp": "b"}
    acc = {"u": 0.75}
    agree = accepted_gain(AB, current, answers, acc, {"i": ("a", 0.9)}, max_annotations=3)
    disagree = accepted_gain(AB, current, answers, acc, {"i": ("b", 0.99)}, max_annotations=3)
    assert set(agree) == {"i"}  # used up and expert (no answers) items are left out
    assert disagree["i"] > new_item_value(0.75, 2) * 0.9 > agree["i"]
    # an annotator found out to be a spammer since: the label is worth nothing, and an
    # answer on it is worth what it is on a new item
    spam = accepted_gain(AB, current, answers, {"u": 0.5, "v": 0.9}, {}, max_annotations=3)
    assert spam["i"] == pytest.approx(new_item_value(pool_accuracy({"u": 0.5, "v": 0.9}), 2))
