"""consensus.aggregate: every method of METHODS, crowd-kit's and the hand-written ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopwise.annotators import AnnotatorProfile, draw_answers
from loopwise.consensus import METHODS, aggregate, dawid_skene, majority_vote

MODELS = ("dawid_skene", "one_coin", "glad", "mace")  # the ones that model annotators


def pool_answers(profiles, n_items, n_classes, overlap, seed):
    """``overlap`` distinct annotators of ``profiles`` per item; labels ``c0``, ``c1``, …"""
    rng = np.random.RandomState(seed)
    truth = rng.randint(n_classes, size=n_items)
    who = np.argsort(rng.random_sample((n_items, len(profiles))), axis=1)[:, :overlap]
    answers = draw_answers(profiles, who, truth[:, None], range(n_classes), rng)
    names = np.array([f"a{i}" for i in range(len(profiles))])
    table = pd.DataFrame(
        {
            "item": np.repeat([f"item{i:04d}" for i in range(n_items)], overlap),
            "annotator": names[who.ravel()],
            "label": [f"c{v}" for v in answers.ravel()],
        }
    )
    index = pd.Index([f"item{i:04d}" for i in range(n_items)], name="item")
    return table, pd.Series([f"c{v}" for v in truth], index=index)


def accuracy(result, truth):
    labels = result.labels["label"]
    return float((labels == truth.loc[labels.index]).mean())


@pytest.fixture(scope="module")
def easy():
    profiles = [AnnotatorProfile(0.85), AnnotatorProfile(0.85), AnnotatorProfile(0.85)]
    return pool_answers(profiles, 300, 3, 3, seed=0)


@pytest.fixture(scope="module")
def easy_results(easy):
    table, _ = easy
    return {m: aggregate(table, method=m, random_state=0) for m in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_recovers_the_truth_on_an_easy_pool(easy, easy_results, method):
    _, truth = easy
    # three 0.85 annotators: the majority of three is right 94 % of the time; chance is 33 %
    assert accuracy(easy_results[method], truth) >= 0.9


@pytest.mark.parametrize("method", METHODS)
def test_outputs_have_the_documented_shape(easy, easy_results, method):
    table, truth = easy
    r = easy_results[method]
    assert list(r.labels.columns) == ["label", "confidence", "agreement", "n_annotations"]
    assert r.labels.index.name == "item"
    assert list(r.labels.index) == sorted(truth.index)
    assert (r.labels["n_annotations"] == 3).all()
    assert list(r.posteriors.columns) == ["c0", "c1", "c2"]
    assert r.posteriors.index.equals(r.labels.index)
    np.testing.assert_allclose(r.posteriors.sum(axis=1), 1.0)
    np.testing.assert_allclose(r.labels["confidence"], r.posteriors.max(axis=1))
    chosen = r.posteriors.columns.get_indexer(r.labels["label"])
    picked = r.posteriors.to_numpy()[np.arange(len(chosen)), chosen]
    np.testing.assert_allclose(picked, r.posteriors.max(axis=1))  # a most probable label
    given = table.set_index(["item", "annotator"])["label"].unstack()
    share = given.eq(r.labels["label"], axis=0).sum(axis=1) / given.notna().sum(axis=1)
    np.testing.assert_allclose(r.labels["agreement"], share.loc[r.labels.index])
    acc = r.annotator_accuracy
    assert set(acc.index) == {"a0", "a1", "a2"} and acc.is_monotonic_decreasing
    assert ((acc >= 0) & (acc <= 1)).all()
    np.testing.assert_allclose(acc, 0.85, atol=0.08)  # each is a 0.85 annotator
    np.testing.assert_allclose(r.priors.sum(), 1.0)


def test_majority_posteriors_are_vote_shares_and_accuracy_is_agreement_with_the_winner():
    table = pd.DataFrame(
        [("a", "u1", "x"), ("a", "u2", "x"), ("a", "u3", "y"), ("b", "u1", "y"), ("b", "u3", "y")],
        columns=["item", "annotator", "label"],
    )
    r = aggregate(table, method="majority", random_state=0)
    np.testing.assert_allclose(r.posteriors.loc["a"], [2 / 3, 1 / 3])
    np.testing.assert_allclose(r.posteriors.loc["b"], [0.0, 1.0])
    assert r.annotator_accuracy.to_dict() == {"u1": 1.0, "u2": 1.0, "u3": 0.5}
    pd.testing.assert_frame_equal(r.labels, majority_vote(table, random_state=0))


def test_dawid_skene_is_the_hand_written_one(easy, easy_results):
    table, _ = easy
    ours = dawid_skene(table, random_state=0)
    pd.testing.assert_frame_equal(easy_results["dawid_skene"].labels, ours.labels)
    pd.testing.assert_frame_equal(easy_results["dawid_skene"].posteriors, ours.posteriors)


def hard_pool(n_classes):
    """A good annotator, a careless one, a spammer and a biased one (errs k -> k+1)."""
    shift = {k: (k + 1) % n_classes for k in range(n_classes)}
    return [
        AnnotatorProfile(0.9),
        AnnotatorProfile(0.7),
        AnnotatorProfile(1.0 / n_classes),
        AnnotatorProfile(0.6, confusion=shift),
    ]


@pytest.fixture(scope="module")
def hard():
    """Every method on 3 seeds of the hard pool (3 answers per item, 4 classes):
    {method: [result per seed]}, and the truth per seed."""
    results, truths = {m: [] for m in METHODS}, []
    for seed in range(3):
        table, truth = pool_answers(hard_pool(4), 400, 4, 3, seed=seed)
        truths.append(truth)
        for m in METHODS:
            results[m].append(aggregate(table, method=m, random_state=seed))
    return results, truths


@pytest.mark.parametrize("method", MODELS)
def test_annotator_models_beat_majority_with_a_spammer_and_a_biased_annotator(hard, method):
    results, truths = hard

    def acc(m):
        return np.array([accuracy(r, t) for r, t in zip(results[m], truths, strict=True)])

    gain = acc(method) - acc("majority")
    assert (gain > 0).all(), f"{method} vs majority per seed: {gain}"
    assert gain.mean() >= 0.03, f"{method} vs majority, mean gain {gain.mean():.3f}"


@pytest.mark.parametrize("method", MODELS)
def test_annotator_models_find_the_spammer(hard, method):
    results, _ = hard
    for r in results[method]:
        assert r.annotator_accuracy.index[-1] == "a2"  # the spammer is estimated the worst
        assert r.annotator_accuracy.index[0] == "a0"  # the 0.9 annotator the best


@pytest.mark.parametrize("method", METHODS)
def test_a_class_nobody_used_gets_a_column_of_about_zero(method):
    table = pd.DataFrame(
        [
            ("a", "u1", "cat"),
            ("a", "u2", "cat"),
            ("a", "u3", "dog"),
            ("b", "u1", "dog"),
            ("b", "u2", "dog"),
            ("c", "u3", "bird"),
            ("d", "u2", "cat"),
            ("d", "u3", "bird"),
            ("d", "u1", "cat"),
        ],
        columns=["item", "annotator", "label"],
    )
    labels = ["fish", "bird", "cat", "dog"]  # the set's order, not the sorted one
    r = aggregate(table, method=method, labels=labels, random_state=0)
    assert list(r.posteriors.columns) == labels
    assert list(r.priors.index) == labels
    np.testing.assert_allclose(r.posteriors.sum(axis=1), 1.0)
    assert np.isfinite(r.posteriors.to_numpy()).all()
    assert (r.posteriors["fish"] < 0.01).all()
    assert (r.labels["label"] != "fish").all()
    assert r.labels.loc["c", "n_annotations"] == 1  # a single annotation still gets a label
    assert r.annotator_accuracy.notna().all()


@pytest.mark.parametrize("method", METHODS)
def test_one_class_in_every_answer(method):
    table = pd.DataFrame({"item": [1, 2, 2], "annotator": ["u", "u", "v"], "label": ["x"] * 3})
    r = aggregate(table, method=method, labels=["x", "y"], random_state=0)
    assert (r.labels["label"] == "x").all()
    np.testing.assert_allclose(r.posteriors["x"], 1.0, atol=0.01)


@pytest.mark.parametrize("method", METHODS)
def test_mixed_type_ids_are_kept(method):
    table = pd.DataFrame(
        {
            "item": [1, 1, "b", "b", 3, 3],
            "annotator": ["u", 7, "u", 7, "u", 7],
            "label": [True, True, False, False, True, False],
        }
    )
    r = aggregate(table, method=method, random_state=0)
    assert set(r.labels.index) == {1, "b", 3}
    assert set(r.annotator_accuracy.index) == {"u", 7}
    assert bool(r.labels.loc[1, "label"]) is True
    assert bool(r.labels.loc["b", "label"]) is False


def test_ties_are_broken_by_the_seed_for_every_method():
    ties = pd.DataFrame(
        [(i, u, lab) for i in range(40) for u, lab in (("u1", "x"), ("u2", "y"))],
        columns=["item", "annotator", "label"],
    )
    # Not Wawa: it weighs u1 and u2 by their agreement with crowd-kit's majority vote,
    # which gives every 1:1 tie to the same label, so u1 and u2 are no longer tied. Not
    # MACE: its random restarts make u1 and u2 differ (and it takes seconds per fit).
    for method in ("dawid_skene", "one_coin", "glad", "majority"):
        runs = [aggregate(ties, method=method, random_state=s).labels["label"] for s in range(3)]
        assert {"x", "y"} == set(runs[0]), method  # not always the first label
        assert len({tuple(r) for r in runs}) > 1, method


@pytest.mark.parametrize("method", METHODS)
def test_results_are_deterministic_for_a_seed(method):
    table, _ = pool_answers(hard_pool(3), 120, 3, 2, seed=1)
    a = aggregate(table, method=method, random_state=7)
    b = aggregate(table, method=method, random_state=7)
    pd.testing.assert_frame_equal(a.labels, b.labels)
    pd.testing.assert_frame_equal(a.posteriors, b.posteriors)
    pd.testing.assert_series_equal(a.annotator_accuracy, b.annotator_accuracy)


@pytest.mark.parametrize("bad", ["dawid-skene", "DS", "", None, 3, ["majority"]])
def test_an_unknown_method_names_the_allowed_ones(bad):
    table = pd.DataFrame({"item": [1], "annotator": ["u"], "label": ["x"]})
    with pytest.raises(ValueError, match="method must be one of") as info:
        aggregate(table, method=bad)
    for m in METHODS:
        assert repr(m) in str(info.value)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("method", METHODS)
def test_invalid_annotations_raise_the_errors_of_today(method):
    def table(rows):
        return pd.DataFrame(rows, columns=["item", "annotator", "label"])

    with pytest.raises(ValueError, match="empty"):
        aggregate(table([]), method=method)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['annotator'\]"):
        aggregate(pd.DataFrame({"item": [1], "label": ["x"]}), method=method)
    with pytest.raises(TypeError, match="DataFrame"):
        aggregate([("a", "u", "x")], method=method)
    with pytest.raises(ValueError, match=r"annotations\['label'\] has 1 missing"):
        aggregate(table([("a", "u", "x"), ("b", "u", None)]), method=method)
    with pytest.raises(ValueError, match=r"\['z'\] that are not in labels \['x', 'y'\]"):
        aggregate(table([("a", "u", "x"), ("b", "u", "z")]), method=method, labels=["x", "y"])
    with pytest.raises(ValueError, match="distinct"):
        aggregate(table([("a", "u", "x")]), method=method, labels=["x", "x"])


def test_the_campaign_config_takes_every_method():
    from loopwise.config import CampaignConfig

    literal = CampaignConfig.model_fields["consensus"].annotation
    assert set(literal.__args__) == set(METHODS)
    assert CampaignConfig.model_fields["consensus"].default == "dawid_skene"
