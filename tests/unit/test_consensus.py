"""Consensus: majority vote, Dawid–Skene (against crowd-kit), acceptance, adaptive overlap."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from loopwise.consensus import (
    AdaptiveOverlap,
    AnnotatorProfile,
    accept,
    dawid_skene,
    majority_vote,
    simulate_adaptive_overlap,
)

ACCURACIES = {"w0": 0.9, "w1": 0.85, "w2": 0.8, "w3": 0.75, "bad": 0.3}


def crowd(n_items=300, accuracies=ACCURACIES, n_classes=4, seed=3):
    """Every annotator labels every item; errors are uniform over the wrong classes."""
    rng = np.random.RandomState(seed)
    y = rng.randint(n_classes, size=n_items)
    rows = []
    for i in range(n_items):
        for name, acc in accuracies.items():
            label = y[i] if rng.rand() < acc else (y[i] + rng.randint(1, n_classes)) % n_classes
            rows.append((f"item{i:03d}", name, f"c{label}"))
    truth = pd.Series([f"c{v}" for v in y], index=[f"item{i:03d}" for i in range(n_items)])
    return pd.DataFrame(rows, columns=["item", "annotator", "label"]), truth


def table(rows):
    return pd.DataFrame(rows, columns=["item", "annotator", "label"])


# --------------------------------------------------------------------------- majority vote

HAND = table(
    [
        ("a", "u1", "cat"),
        ("a", "u2", "cat"),
        ("a", "u3", "dog"),
        ("b", "u1", "dog"),
        ("b", "u2", "dog"),
        ("b", "u3", "dog"),
        ("c", "u1", "bird"),
        ("d", "u2", "cat"),
        ("d", "u3", "bird"),
        ("d", "u4", "dog"),
        ("d", "u1", "dog"),
    ]
)


def test_majority_vote_on_a_hand_built_table():
    mv = majority_vote(HAND, random_state=0)
    assert mv.index.name == "item"
    assert list(mv.index) == ["a", "b", "c", "d"]
    assert mv["label"].tolist() == ["cat", "dog", "bird", "dog"]
    np.testing.assert_allclose(mv["agreement"], [2 / 3, 1.0, 1.0, 0.5])
    np.testing.assert_allclose(mv["confidence"], mv["agreement"])
    assert mv["n_annotations"].tolist() == [3, 3, 1, 4]


def test_majority_vote_ties_are_broken_by_the_seed_not_by_position():
    # 40 items, each a 1:1 tie between "x" and "y"
    ties = table([(i, u, lab) for i in range(40) for u, lab in (("u1", "x"), ("u2", "y"))])
    runs = {s: majority_vote(ties, random_state=s)["label"].tolist() for s in range(4)}
    assert runs[0] == majority_vote(ties, random_state=0)["label"].tolist()  # reproducible
    assert len({tuple(r) for r in runs.values()}) == 4  # different seeds, different winners
    assert {"x", "y"} == set(runs[0])  # not always the first (or the sorted-first) label
    assert (majority_vote(ties, random_state=0)["agreement"] == 0.5).all()


def test_single_annotation_and_explicit_label_set_with_an_unused_class():
    mv = majority_vote(HAND, labels=["bird", "cat", "dog", "fish"], random_state=0)
    assert mv.loc["c", "label"] == "bird" and mv.loc["c", "n_annotations"] == 1
    ds = dawid_skene(HAND, labels=["bird", "cat", "dog", "fish"], random_state=0)
    assert list(ds.posteriors.columns) == ["bird", "cat", "dog", "fish"]
    assert (ds.labels["label"] != "fish").all()
    assert ds.priors["fish"] < 0.01  # nobody used it
    assert (ds.posteriors["fish"] < 0.01).all()
    np.testing.assert_allclose(ds.posteriors.sum(axis=1), 1.0)
    assert np.isfinite(ds.posteriors.to_numpy()).all()
    assert ds.labels.loc["c", "label"] == "bird"  # a single annotation still gets a label
    assert ds.labels.loc["c", "n_annotations"] == 1
    # u4 annotated once: it has a confusion matrix whose rows are distributions
    np.testing.assert_allclose(ds.confusions["u4"].sum(axis=1), 1.0)
    assert set(ds.annotator_accuracy.index) == {"u1", "u2", "u3", "u4"}


@pytest.mark.parametrize("func", [majority_vote, dawid_skene])
def test_invalid_annotations_raise_clear_errors(func):
    with pytest.raises(ValueError, match="empty"):
        func(table([]))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['annotator'\]"):
        func(pd.DataFrame({"item": [1], "label": ["x"]}))
    with pytest.raises(TypeError, match="DataFrame"):
        func([("a", "u", "x")])
    with pytest.raises(ValueError, match=r"annotations\['label'\] has 1 missing"):
        func(table([("a", "u", "x"), ("b", "u", None)]))
    with pytest.raises(ValueError, match=r"\['z'\] that are not in labels \['x', 'y'\]"):
        func(table([("a", "u", "x"), ("b", "u", "z")]), labels=["x", "y"])
    with pytest.raises(ValueError, match="distinct"):
        func(table([("a", "u", "x")]), labels=["x", "x"])


def test_dawid_skene_rejects_bad_parameters():
    with pytest.raises(ValueError, match="max_iter"):
        dawid_skene(HAND, max_iter=0)
    with pytest.raises(ValueError, match=r"smoothing must be in \[0.0, inf\], got -1.0"):
        dawid_skene(HAND, smoothing=-1)
    with pytest.raises(TypeError, match="tol must be a real number"):
        dawid_skene(HAND, tol="small")


# --------------------------------------------------------------------------- Dawid–Skene


@pytest.fixture(scope="module")
def simulated():
    df, truth = crowd()
    return df, truth, dawid_skene(df, random_state=0)


def test_dawid_skene_agrees_with_crowd_kit(simulated):
    from crowdkit.aggregation import DawidSkene

    df, _, ours = simulated
    with warnings.catch_warnings():  # crowd-kit 1.4.2 uses pandas APIs deprecated in pandas 3
        warnings.simplefilter("ignore")
        theirs = DawidSkene(n_iter=100).fit_predict(
            df.rename(columns={"item": "task", "annotator": "worker"})
        )
    same = (ours.labels["label"] == theirs.loc[ours.labels.index]).mean()
    assert same >= 0.98
    assert ours.converged and ours.n_iter < 100


def test_dawid_skene_finds_the_bad_annotator(simulated):
    df, truth, ours = simulated
    acc = ours.annotator_accuracy
    assert acc.index[-1] == "bad"
    assert list(acc.values) == sorted(acc.values, reverse=True)
    assert abs(acc["bad"] - ACCURACIES["bad"]) < 0.1
    # every estimate is close to the annotator's real accuracy on this data
    observed = (df["label"].to_numpy() == truth.loc[df["item"]].to_numpy()).astype(float)
    real = pd.Series(observed).groupby(df["annotator"].to_numpy()).mean()
    np.testing.assert_allclose(acc.loc[real.index], real, atol=0.05)


def test_dawid_skene_beats_majority_vote_against_the_truth(simulated):
    df, truth, ours = simulated
    mv = majority_vote(df, random_state=0)
    ds_acc = (ours.labels["label"] == truth.loc[ours.labels.index]).mean()
    mv_acc = (mv["label"] == truth.loc[mv.index]).mean()
    assert ds_acc > mv_acc + 0.01


def test_dawid_skene_outputs_are_consistent(simulated):
    df, _, ours = simulated
    post = ours.posteriors
    np.testing.assert_allclose(post.sum(axis=1), 1.0)
    np.testing.assert_array_equal(ours.labels["label"], post.idxmax(axis=1))
    np.testing.assert_allclose(ours.labels["confidence"], post.max(axis=1))
    # agreement is the share of the item's annotators who gave the chosen label
    given = df.set_index(["item", "annotator"])["label"].unstack()
    share = given.eq(ours.labels["label"], axis=0).mean(axis=1)
    np.testing.assert_allclose(ours.labels["agreement"], share.loc[ours.labels.index])
    assert (ours.labels["n_annotations"] == 5).all()
    for conf in ours.confusions.values():
        np.testing.assert_allclose(conf.sum(axis=1), 1.0)
    # accuracy = sum_k prior_k * confusion[k, k]
    bad = ours.confusions["bad"]
    assert ours.annotator_accuracy["bad"] == pytest.approx(
        float((ours.priors * np.diag(bad.to_numpy())).sum())
    )
    np.testing.assert_allclose(ours.priors.sum(), 1.0)


def test_dawid_skene_is_reproducible_and_order_free(simulated):
    df, _, ours = simulated
    shuffled = df.sample(frac=1.0, random_state=1)
    again = dawid_skene(shuffled, random_state=0)
    pd.testing.assert_frame_equal(again.labels, ours.labels)
    pd.testing.assert_frame_equal(again.posteriors, ours.posteriors, atol=1e-10)


# --------------------------------------------------------------------------- accept


def test_accept_splits_by_thresholds_with_reasons():
    labels = pd.DataFrame(
        {
            "label": ["x", "y", "x", "z", "y"],
            "agreement": [1.0, 0.5, 2 / 3, 1.0, 0.6599],
            "confidence": [0.99, 0.95, 0.90, 0.40, 0.97],
            "n_annotations": [3, 2, 3, 1, 3],
        },
        index=pd.Index(["a", "b", "c", "d", "e"], name="item"),
    )
    accepted, disputed = accept(labels, min_agreement=0.66, min_confidence=0.5, min_annotations=2)
    assert list(accepted.index) == ["a", "c"]
    assert "reason" not in accepted.columns
    assert list(disputed.index) == ["b", "d", "e"]
    assert disputed.loc["b", "reason"] == "agreement 0.50 < 0.66"
    assert disputed.loc["d", "reason"] == "confidence 0.40 < 0.50; n_annotations 1 < 2"
    assert disputed.loc["e", "reason"] == "agreement 0.6599 < 0.6600"  # never "0.66 < 0.66"
    pd.testing.assert_frame_equal(disputed.drop(columns="reason"), labels.loc[["b", "d", "e"]])
    # defaults: only agreement counts
    accepted, disputed = accept(labels)
    assert list(disputed.index) == ["b", "e"]


def test_accept_validates_its_input():
    mv = majority_vote(HAND, random_state=0)
    with pytest.raises(ValueError, match=r"min_agreement must be in \[0.0, 1.0\], got 1.5"):
        accept(mv, min_agreement=1.5)
    with pytest.raises(ValueError, match="min_annotations"):
        accept(mv, min_annotations=0)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['confidence'\]"):
        accept(mv.drop(columns="confidence"))
    accepted, disputed = accept(mv.iloc[:0])
    assert accepted.empty and disputed.empty and "reason" in disputed.columns


# --------------------------------------------------------------------------- adaptive overlap


@pytest.mark.parametrize(
    ("model_label", "confidence", "so_far", "expected"),
    [
        ("x", 0.95, [], True),  # always the first annotation
        ("x", 0.95, ["x"], False),  # agrees with a confident model
        ("x", 0.95, ["y"], True),  # disagrees with the model
        ("x", 0.50, ["x"], True),  # the model is unsure
        ("x", None, ["x"], True),  # confidence unknown
        (None, 0.95, ["x"], True),  # no model yet
        ("x", 0.50, ["x", "x"], False),  # two unanimous annotators are enough
        ("x", 0.95, ["y", "y"], False),  # … even against the model
        ("x", 0.95, ["x", "y"], True),  # annotators disagree
        ("x", 0.95, ["x", "y", "z"], False),  # the cap
    ],
)
def test_adaptive_overlap_decisions(model_label, confidence, so_far, expected):
    policy = AdaptiveOverlap(confidence_threshold=0.8, max_annotations=3)
    assert policy.needs_more(model_label, confidence, so_far) is expected


def test_adaptive_overlap_validates():
    with pytest.raises(ValueError, match="confidence_threshold"):
        AdaptiveOverlap(confidence_threshold=2.0).needs_more("x", 0.9, ["x"])
    with pytest.raises(ValueError, match="model_confidence"):
        AdaptiveOverlap().needs_more("x", 1.2, ["x"])
    with pytest.raises(TypeError, match="labels_so_far"):
        AdaptiveOverlap().needs_more("x", 0.9, "x")


def calibrated_model(n, n_classes, seed):
    """Predictions whose confidence is their probability of being right."""
    rng = np.random.RandomState(seed)
    y = rng.randint(n_classes, size=n)
    conf = rng.uniform(0.4, 1.0, size=n)
    right = rng.rand(n) < conf
    pred = np.where(right, y, (y + rng.randint(1, n_classes, size=n)) % n_classes)
    return y, pred, conf


PROFILES = [0.9, 0.85, 0.8, 0.75, AnnotatorProfile(0.7, confusion={0: 1}), {"accuracy": 0.85}]


@pytest.mark.parametrize("method", ["dawid_skene", "majority"])
def test_adaptive_overlap_keeps_accuracy_with_fewer_annotations(method):
    y, pred, conf = calibrated_model(2000, 4, seed=0)
    s = simulate_adaptive_overlap(
        y, pred, conf, PROFILES, policy=AdaptiveOverlap(0.8, 3), method=method, random_state=0
    )
    full, adaptive = s.loc["full"], s.loc["adaptive"]
    assert full["n_annotations"] == 6000
    assert adaptive["annotation_ratio"] < 0.8
    assert abs(adaptive["accepted_accuracy"] - full["accepted_accuracy"]) <= 0.01
    assert adaptive["accepted_share"] >= full["accepted_share"] - 0.02
    assert full["accepted_accuracy"] > 0.9  # the comparison is between two good arms


def test_adaptive_overlap_simulation_is_seeded_and_paired():
    y, pred, conf = calibrated_model(300, 3, seed=1)
    a = simulate_adaptive_overlap(y, pred, conf, [0.9, 0.8, 0.7], random_state=5)
    b = simulate_adaptive_overlap(y, pred, conf, [0.9, 0.8, 0.7], random_state=5)
    pd.testing.assert_frame_equal(a, b)
    # a model that is always right and sure: one annotation per item whenever it agrees
    sure = simulate_adaptive_overlap(y, y, np.ones(300), [1.0, 1.0, 1.0], random_state=0)
    assert sure.loc["adaptive", "n_annotations"] == 300
    assert sure.loc["adaptive", "accepted_accuracy"] == 1.0
    # a useless, unsure model: the adaptive arm asks for a second opinion everywhere
    unsure = simulate_adaptive_overlap(y, pred, np.zeros(300), [1.0, 1.0, 1.0], random_state=0)
    assert unsure.loc["adaptive", "n_annotations"] == 600


def test_adaptive_overlap_simulation_validates():
    y, pred, conf = calibrated_model(50, 3, seed=0)
    with pytest.raises(ValueError, match="at least that many"):
        simulate_adaptive_overlap(y, pred, conf, [0.9, 0.8], max_annotations=3, random_state=0)
    with pytest.raises(ValueError, match="exceeds max_annotations"):
        simulate_adaptive_overlap(
            y, pred, conf, [0.9] * 5, policy=AdaptiveOverlap(max_annotations=5), random_state=0
        )
    with pytest.raises(ValueError, match=r"annotator_profiles\[1\].accuracy"):
        simulate_adaptive_overlap(y, pred, conf, [0.9, 1.5, 0.8], random_state=0)
    with pytest.raises(ValueError, match="model_confidence must have the shape"):
        simulate_adaptive_overlap(y, pred, conf[:-1], [0.9, 0.8, 0.7], random_state=0)
    with pytest.raises(ValueError, match="confusion maps 0 to itself"):
        simulate_adaptive_overlap(
            y, pred, conf, [0.9, 0.8, AnnotatorProfile(0.7, {0: 0})], random_state=0
        )


def test_a_lone_answer_stands_whatever_the_model_of_confusions_made_of_it():
    from loopwise.consensus import aggregate, lone_answers_stand

    # Two annotators check each other on items 0-5 (bob always answers "b" where ann
    # answers "a"); then each answers items alone.
    rows = [(f"i{i}", who, lab) for i in range(6) for who, lab in (("ann", "a"), ("bob", "b"))]
    rows += [("solo-ann", "ann", "a"), ("solo-bob", "bob", "b"), ("two", "ann", "a")]
    rows += [("two", "bob", "a")]
    table = pd.DataFrame(rows, columns=["item", "annotator", "label"])
    # One-coin reads bob as mostly wrong and moves his lone answer to "a".
    result = aggregate(table, method="one_coin", labels=["a", "b"], random_state=0)
    moved_by_model = result.labels.loc[["solo-ann", "solo-bob"], "label"].tolist() != ["a", "b"]
    out = lone_answers_stand(result.labels, table, result.annotator_accuracy)
    assert out.loc["solo-ann", "label"] == "a" and out.loc["solo-bob", "label"] == "b"
    assert out.loc[["solo-ann", "solo-bob"], "agreement"].tolist() == [1.0, 1.0]
    # Items with more than one answer keep the method's result.
    assert out.drop(index=["solo-ann", "solo-bob"]).equals(
        result.labels.drop(index=["solo-ann", "solo-bob"])
    )
    # The case the rule is for: the model of confusions had moved a lone answer, whose
    # confidence is then its annotator's estimated accuracy.
    assert moved_by_model
    bob = result.annotator_accuracy["bob"]
    assert out.loc["solo-bob", "confidence"] == pytest.approx(bob)
