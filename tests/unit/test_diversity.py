"""Core-set, k-means, density weighting, cluster-margin and cold start."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from loopwise import strategies
from loopwise.strategies.cold_start import stratified_sample
from loopwise.strategies.diversity import k_center_greedy, landmark_density
from tests.conftest import fixed, id_pool


def _brute_k_center(X, n, centers):
    d = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(-1).min(1)
    picks = []
    for _ in range(n):
        i = int(np.argmax(d))
        picks.append(i)
        d = np.minimum(d, ((X - X[i]) ** 2).sum(1))
    return picks


def test_k_center_greedy_matches_the_textbook_traversal():
    rng = np.random.RandomState(0)
    X = rng.randn(400, 6).astype(np.float32)
    centers = rng.randn(5, 6).astype(np.float32)
    idx, dist = k_center_greedy(X, 25, centers=centers)
    assert idx.tolist() == _brute_k_center(X.astype(np.float64), 25, centers.astype(np.float64))
    assert np.all(np.diff(dist) <= 1e-5)


def test_k_center_greedy_never_repeats_on_duplicates():
    X = np.zeros((10, 3), dtype=np.float32)
    idx, _ = k_center_greedy(X, 10, random_state=0)
    assert sorted(idx.tolist()) == list(range(10))


def test_coreset_memory_is_linear_in_the_pool():
    # An N x N float32 matrix would take N*N*4 bytes = 256 MB here; the traversal
    # should stay within a small multiple of the pool itself.
    X = np.random.RandomState(0).randn(8000, 8).astype(np.float32)
    tracemalloc.start()
    k_center_greedy(X, 50, centers=X[:100])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 40 * X.nbytes < 8000 * 8000 * 4


def test_coreset_covers_regions_far_from_the_labeled_points():
    X, blob = make_blobs(
        n_samples=600, centers=[[0, 0], [20, 0], [0, 20]], cluster_std=1.0, random_state=0
    )
    labeled = X[blob == 0][:10]
    idx = strategies.get("coreset", random_state=0).query(
        None, X, 2, X_labeled=labeled, y_labeled=np.zeros(10)
    )
    assert set(blob[idx]) == {1, 2}


def test_kmeans_takes_one_representative_per_cluster():
    X, blob = make_blobs(
        n_samples=500, centers=5, cluster_std=0.5, center_box=(-30, 30), random_state=1
    )
    idx = strategies.get("kmeans", random_state=0).query(None, X, 5)
    assert sorted(blob[idx].tolist()) == [0, 1, 2, 3, 4]


def test_landmark_density_is_higher_inside_a_cluster_than_at_an_outlier():
    X, _ = make_blobs(n_samples=2000, centers=[[0, 0]], cluster_std=1.0, random_state=0)
    X = np.vstack([X, [[12.0, 12.0]]]).astype(np.float32)
    d = landmark_density(X, n_landmarks=200, random_state=0)
    centre = np.argmin((X**2).sum(1))
    assert d[centre] > 0.5 > 0.01 > d[-1]


def test_density_weighting_prefers_the_representative_of_two_equally_uncertain_rows():
    X, _ = make_blobs(n_samples=300, centers=[[0, 0]], cluster_std=1.0, random_state=0)
    X = np.vstack([X, [[15.0, 15.0]]])
    table = np.tile([0.9, 0.1], (301, 1))
    centre = int(np.argmin((X**2).sum(1)))
    table[centre] = table[300] = [0.5, 0.5]  # equally uncertain: the centre and the outlier
    pool = id_pool(301, X)
    margin = strategies.get("margin", random_state=1).query(fixed(table), pool, 2)
    assert set(margin.tolist()) == {centre, 300}
    dw = strategies.get("density_weighted", random_state=1).query(fixed(table), pool, 1)
    assert dw.tolist() == [centre]
    with pytest.raises(ValueError, match="uncertainty must be one of"):
        strategies.get("density_weighted", uncertainty="gini").query(fixed(table), pool, 1)


def test_cluster_margin_spreads_a_batch_that_margin_would_fill_with_near_copies():
    rng = np.random.RandomState(0)
    # 40 near-copies of one confusing record, 5 other confusing records spread out, 200 easy ones
    twins = rng.normal(0, 0.01, size=(40, 2))
    # far apart compared with the id column 0..244 that the fake model reads
    spread = 1000.0 * np.array([[10, 0], [0, 10], [-10, 0], [0, -10], [10, 10]])
    easy = rng.normal(5000, 3000, size=(200, 2))
    feats = np.vstack([twins, spread, easy])
    table = np.vstack(
        [
            np.tile([0.5, 0.5], (40, 1)),
            np.tile([0.52, 0.48], (5, 1)),
            np.tile([0.95, 0.05], (200, 1)),
        ]
    )
    pool = id_pool(245, feats)
    clf = fixed(table)
    margin = strategies.get("margin", random_state=0).query(clf, pool, 6)
    assert all(i < 40 for i in margin)
    cm = strategies.get("cluster_margin", candidate_factor=8, random_state=0).query(clf, pool, 6)
    # the hybrid keeps one twin and takes the distinct uncertain records
    assert sum(i < 40 for i in cm) <= 2 and sum(40 <= i < 45 for i in cm) >= 4
    with pytest.raises(ValueError, match="candidate_factor must be a number >= 1"):
        strategies.get("cluster_margin", candidate_factor=0.5).query(clf, pool, 2)


def test_stratified_cold_start_respects_the_strata_shares():
    strata = np.array(["a"] * 700 + ["b"] * 200 + ["c"] * 100)
    idx = stratified_sample(strata, 20, random_state=0)
    counts = {k: int((strata[idx] == k).sum()) for k in "abc"}
    assert counts == {"a": 14, "b": 4, "c": 2} and np.unique(idx).size == 20
    tiny = stratified_sample(np.array(["x"] * 98 + ["y"] * 2), 3, random_state=0)
    assert "y" in np.array(["x"] * 98 + ["y"] * 2)[tiny]  # a small stratum still gets a row


def test_cold_start_by_column_and_by_representatives():
    import pandas as pd

    X, blob = make_blobs(
        n_samples=400, centers=4, cluster_std=0.5, center_box=(-30, 30), random_state=2
    )
    df = pd.DataFrame(X, columns=["f1", "f2"]).assign(region=np.where(blob < 2, "north", "south"))
    by_col = strategies.get("cold_start", stratify="region", random_state=0).query(None, df, 10)
    assert (df["region"].iloc[by_col] == "north").sum() == (blob < 2).sum() * 10 // 400
    reps = strategies.get("cold_start", random_state=0).query(None, df[["f1", "f2"]], 4)
    assert sorted(blob[reps].tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="names no column"):
        strategies.get("cold_start", stratify="nope").query(None, df, 3)


def test_cluster_margin_typical_representative_avoids_outliers_and_auto_switches(blobs):
    from loopwise.strategies.hybrid import typicality

    rng = np.random.RandomState(0)
    dense = rng.normal(0, 0.1, size=(50, 2))
    outlier = np.array([[3.0, 3.0]])
    t = typicality(np.vstack([dense[:1], outlier]), np.vstack([dense, outlier]), k=5)
    assert t[0] > 5 * t[1]
    clf, X, XL, yL, _ = blobs
    few = strategies.get("cluster_margin", random_state=0)
    few.query(clf, X, 5, X_labeled=XL, y_labeled=yL)  # 24 labels < 10 (default) × 4 classes
    assert few.representative_ == "typical"
    many = strategies.get("cluster_margin", low_budget_per_class=2, random_state=0)
    many.query(clf, X, 5, X_labeled=XL, y_labeled=yL)  # 24 labels ≥ 2 × 4 classes
    assert many.representative_ == "uncertain"
    blind = strategies.get("cluster_margin", random_state=0)
    blind.query(clf, X, 5)
    assert blind.representative_ == "uncertain"  # no labeled set given: nothing to count
    with pytest.raises(ValueError, match="representative must be"):
        strategies.get("cluster_margin", representative="central").query(clf, X, 5)
