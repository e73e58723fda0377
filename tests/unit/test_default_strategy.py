"""The default strategy, diverse_margin: margin without near-copies, exactly margin at batch 1."""

from __future__ import annotations

import numpy as np
import pytest

from loopwise import datasets, strategies
from loopwise.simulate import run_simulation
from loopwise.strategies import hybrid
from loopwise.strategies.hybrid import seeded_partition
from loopwise.strategies.uncertainty import margin_scores
from tests.conftest import fixed, id_pool


def _twins_pool():
    """40 near-copies of one confusing record, 5 spread confusing records, 200 easy ones."""
    rng = np.random.RandomState(0)
    twins = rng.normal(0, 0.01, size=(40, 2))
    spread = 1000.0 * np.array([[10, 0], [0, 10], [-10, 0], [0, -10], [10, 10]])
    easy = rng.normal(5000, 3000, size=(200, 2))
    table = np.vstack(
        [
            np.tile([0.5, 0.5], (40, 1)),
            np.tile([0.52, 0.48], (5, 1)),
            np.tile([0.95, 0.05], (200, 1)),
        ]
    )
    return id_pool(245, np.vstack([twins, spread, easy])), fixed(table)


def test_the_default_is_diverse_margin():
    assert strategies.DEFAULT == "diverse_margin"


@pytest.mark.parametrize("exact_up_to", [10**6, 0], ids=["k-means", "k-means++ seeds"])
def test_a_batch_keeps_one_near_copy_and_takes_the_other_uncertain_records(
    exact_up_to, monkeypatch
):
    monkeypatch.setattr(hybrid, "_EXACT_KMEANS_UP_TO", exact_up_to)
    pool, clf = _twins_pool()
    margin = strategies.get("margin", random_state=0).query(clf, pool, 6)
    assert all(i < 40 for i in margin)  # margin fills the batch with twins
    picked = strategies.get("diverse_margin", candidate_factor=8, random_state=0).query(
        clf, pool, 6
    )
    # one twin stands for the 40; the distinct uncertain records fill the batch
    assert sum(i < 40 for i in picked) <= 2 and sum(40 <= i < 45 for i in picked) >= 4


def test_at_batch_size_one_it_is_margin_sampling(blobs):
    clf, X, XL, yL, _ = blobs
    for seed in range(5):
        one = strategies.get("diverse_margin", random_state=seed).query(
            clf, X, 1, X_labeled=XL, y_labeled=yL
        )
        best = strategies.get("margin", random_state=seed).query(clf, X, 1)
        assert one.tolist() == best.tolist()


def test_every_pick_is_the_least_certain_row_of_its_group(blobs):
    clf, X, XL, yL, _ = blobs
    s = strategies.get("diverse_margin", candidate_factor=5, random_state=3)
    idx, scores = s.query(clf, X, 8, X_labeled=XL, y_labeled=yL, return_scores=True)
    unc = margin_scores(clf.predict_proba(X))
    assert np.allclose(scores, unc[idx])
    assert list(scores) == sorted(scores, reverse=True)  # best first
    shortlist = np.argsort(-unc, kind="stable")[:40]
    assert set(idx.tolist()) <= set(shortlist.tolist())
    assert idx[0] == shortlist[0]  # the most uncertain row always makes the batch


def test_the_same_seed_gives_the_same_batch_and_bad_factors_are_refused(blobs):
    clf, X, *_ = blobs
    a = strategies.get("diverse_margin", random_state=7).query(clf, X, 10)
    b = strategies.get("diverse_margin", random_state=7).query(clf, X, 10)
    assert a.tolist() == b.tolist()
    with pytest.raises(ValueError, match="candidate_factor must be a number >= 1"):
        strategies.get("diverse_margin", candidate_factor=0.5).query(clf, X, 2)
    with pytest.raises(TypeError):
        strategies.get("diverse_margin", representative="typical")
    with pytest.raises(ValueError, match=r"low_confidence must be a number in \[0, 1\)"):
        strategies.get("diverse_margin", low_confidence=1.5).query(clf, X, 2)
    assert strategies.get("diverse_margin").get_params() == {
        "candidate_factor": 10.0,
        "low_confidence": 0.2,
        "random_state": None,
    }


def test_seeded_partition_separates_clusters_and_survives_duplicates():
    rng = np.random.RandomState(0)
    centers = np.array([[0, 0], [100, 0], [0, 100], [100, 100]], dtype=np.float32)
    X = np.vstack([c + rng.normal(0, 1, size=(50, 2)) for c in centers]).astype(np.float32)
    groups = seeded_partition(X, 4, np.random.RandomState(1))
    # every true cluster lands in exactly one group
    assert all(np.unique(groups[i * 50 : (i + 1) * 50]).size == 1 for i in range(4))
    assert np.unique(groups).size == 4
    same = np.zeros((30, 3), dtype=np.float32)
    assert np.unique(seeded_partition(same, 5, np.random.RandomState(0))).size == 1


def test_diverse_margin_beats_random_in_a_short_simulation():
    """A behaviour check, not a benchmark: paired seeds on digits, the default ahead of random."""
    d = datasets.load("digits")
    result = run_simulation(
        d.X, d.y, ["diverse_margin"], seeds=range(3), batch_size=10, budget=200, n_jobs=1
    )
    diff = result.paired_difference("diverse_margin", "random")
    assert diff["mean"] > 0.01 and diff["wins"] >= 2


def _unsure_pool():
    """A model barely better than a guess: 10 isolated rows hold the smallest margins,
    60 rows of two dense clusters margins just above them, 130 rows are surer."""
    rng = np.random.RandomState(0)
    directions = rng.normal(size=(10, 4))
    outliers = 8 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    dense = np.vstack([rng.normal(0, 0.5, size=(30, 4)), rng.normal(4, 0.5, size=(30, 4))])
    rest = rng.normal(-4, 0.5, size=(130, 4))
    table = np.vstack(
        [
            np.tile([0.34, 0.33, 0.33], (10, 1)),
            np.tile([0.35, 0.33, 0.32], (60, 1)),
            np.tile([0.40, 0.30, 0.30], (130, 1)),
        ]
    )
    # features far larger than the id column FixedProba reads
    return id_pool(200, 1000 * np.vstack([outliers, dense, rest])), fixed(table)


def test_pool_confidence_runs_from_a_uniform_guess_to_certainty():
    rng = np.random.RandomState(0)
    pool = id_pool(4)
    assert hybrid.pool_confidence(fixed(np.full((4, 4), 0.25)), pool, rng) == pytest.approx(0.0)
    assert hybrid.pool_confidence(fixed(np.eye(4)), pool, rng) == pytest.approx(1.0)
    half = np.tile([0.625, 0.125, 0.125, 0.125], (4, 1))
    assert hybrid.pool_confidence(fixed(half), pool, rng) == pytest.approx(0.5)


def test_a_model_barely_better_than_a_guess_gets_typical_rows_not_outliers():
    pool, clf = _unsure_pool()
    s = strategies.get("diverse_margin", candidate_factor=10, random_state=0)
    picked = s.query(clf, pool, 4)
    assert s.confidence_ < 0.2 and s.representative_ == "typical"
    assert sum(i < 10 for i in picked) <= 1  # mostly rows of the dense clusters...
    assert any(10 <= i < 40 for i in picked) and any(40 <= i < 70 for i in picked)  # both
    # The switch off: the smallest margins win, outliers first (what margin would do).
    off = strategies.get("diverse_margin", low_confidence=0, random_state=0)
    assert sum(i < 10 for i in off.query(clf, pool, 4)) >= 3 and off.representative_ == "uncertain"


def test_wide_sparse_features_are_projected_not_made_dense():
    from scipy import sparse

    from loopwise.strategies._base import PROJECTED_DIMS, WIDE_SPARSE, feature_space

    X = sparse.random(300, WIDE_SPARSE + 5_000, density=0.002, format="csr", random_state=0)
    Z = feature_space(None, X)
    assert Z.shape == (300, PROJECTED_DIMS) and Z.dtype == np.float32
    assert np.allclose(feature_space(None, X[:7]), Z[:7], atol=1e-5)  # one projection
    D = X[:60].toarray()
    iu = np.triu_indices(60, 1)
    true = np.sqrt(((D[:, None] - D[None]) ** 2).sum(-1))[iu]
    kept = np.sqrt(((Z[:60, None] - Z[None, :60]) ** 2).sum(-1))[iu]
    ratio = kept / true
    assert 0.85 < np.median(ratio) < 1.15 and np.percentile(ratio, 95) < 1.3
    narrow = sparse.random(20, 50, density=0.3, format="csr", random_state=0)
    assert np.array_equal(feature_space(None, narrow), narrow.toarray().astype(np.float32))
