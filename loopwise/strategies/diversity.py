"""Diversity and representativeness: core-set (k-center greedy), k-means, density weighting."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from loopwise.strategies._base import QueryStrategy, feature_space, score_pool, top_n
from loopwise.strategies.uncertainty import (
    entropy_scores,
    least_confidence_scores,
    margin_scores,
)

__all__ = [
    "CoreSet",
    "DensityWeighted",
    "KMeansSampling",
    "cluster_representatives",
    "k_center_greedy",
    "landmark_density",
]

#: Elements of one block of a rows × centers distance computation (float32: 16 MB).
_BLOCK_ELEMENTS = 4_000_000
#: Above this many rows k-means runs in mini-batches.
_MINIBATCH_ABOVE = 20_000

UNCERTAINTY = {
    "least_confidence": least_confidence_scores,
    "margin": margin_scores,
    "entropy": entropy_scores,
}


def _min_sq_dist_to(X: np.ndarray, sq: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared distance from each row of X to its nearest center, in row blocks."""
    centers = np.ascontiguousarray(centers, dtype=np.float32)
    c_sq = np.einsum("ij,ij->i", centers, centers)
    out = np.empty(X.shape[0], dtype=np.float32)
    step = max(1, _BLOCK_ELEMENTS // max(1, centers.shape[0]))
    for start in range(0, X.shape[0], step):
        stop = min(start + step, X.shape[0])
        block = X[start:stop] @ centers.T
        block *= -2.0
        block += c_sq
        out[start:stop] = block.min(axis=1) + sq[start:stop]
    np.maximum(out, 0.0, out=out)
    return out


def k_center_greedy(
    X: np.ndarray, n: int, centers: np.ndarray | None = None, random_state: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Farthest-first traversal: each pick is the row farthest from everything chosen so far.

    Keeps one float32 vector of minimum squared distances and updates it with one
    matrix-vector product per pick, so memory is O(N) beyond ``X`` itself.

    Parameters
    ----------
    X : ndarray of shape (N, d), float32
    n : int, 1 <= n <= N
    centers : ndarray of shape (L, d), optional
        Points already covered (the labeled set). Without them the first pick is random.
    random_state : int, RandomState instance or None

    Returns
    -------
    indices : ndarray of shape (n,)
    distances : ndarray of shape (n,)
        Euclidean distance of each pick to the nearest earlier pick or center.
    """
    rng = check_random_state(random_state)
    X = np.ascontiguousarray(X, dtype=np.float32)
    sq = np.einsum("ij,ij->i", X, X)
    picks = np.empty(n, dtype=np.intp)
    dists = np.empty(n, dtype=np.float32)
    if centers is not None and len(centers) > 0:
        min_d = _min_sq_dist_to(X, sq, centers)
        start = 0
    else:
        first = rng.randint(X.shape[0])
        picks[0], dists[0] = first, np.inf
        min_d = np.full(X.shape[0], np.inf, dtype=np.float32)
        start = 1
        _update(X, sq, first, min_d)
    for t in range(start, n):
        i = int(np.argmax(min_d))
        picks[t], dists[t] = i, np.sqrt(max(float(min_d[i]), 0.0))
        _update(X, sq, i, min_d)
    return picks, dists


def _update(X: np.ndarray, sq: np.ndarray, i: int, min_d: np.ndarray) -> None:
    d = X @ X[i]
    d *= -2.0
    d += sq
    d += sq[i]
    np.minimum(min_d, d, out=min_d)
    # A chosen row is never chosen again, even among exact duplicates.
    min_d[i] = -np.inf


def cluster_representatives(
    X: np.ndarray,
    n: int,
    random_state: Any = None,
    sample_weight: np.ndarray | None = None,
    score: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One row per k-means cluster (k = n), larger clusters first.

    The representative of a cluster is its row nearest the centroid, or its
    highest-``score`` row when ``score`` is given. If duplicates leave fewer than
    ``n`` non-empty clusters, the batch is filled with the rows farthest from
    the chosen ones.

    Returns
    -------
    indices : ndarray of shape (n,)
    cluster_share : ndarray of shape (n,)
        Fraction of the rows in each representative's cluster (0 for fill-ins).
    """
    rng = check_random_state(random_state)
    X = np.ascontiguousarray(X, dtype=np.float32)
    N = X.shape[0]
    if n >= N:
        return np.arange(N)[rng.permutation(N)], np.full(N, 1.0 / N, dtype=np.float32)
    seed = rng.randint(np.iinfo(np.int32).max)
    if N > _MINIBATCH_ABOVE:
        km = MiniBatchKMeans(n_clusters=n, n_init=1, batch_size=4096, random_state=seed)
    else:
        km = KMeans(n_clusters=n, n_init=1, random_state=seed)
    with warnings.catch_warnings():
        # Fewer distinct points than clusters is handled below by filling the batch.
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = km.fit_predict(X, sample_weight=sample_weight)
    centers = km.cluster_centers_.astype(np.float32)
    counts = np.bincount(labels, minlength=n)
    chosen, share = [], []
    for c in np.argsort(-counts, kind="stable"):
        members = np.flatnonzero(labels == c)
        if members.size == 0:
            continue
        if score is not None:
            best = members[np.argmax(score[members])]
        else:
            diff = X[members] - centers[c]
            best = members[np.argmin(np.einsum("ij,ij->i", diff, diff))]
        chosen.append(best)
        share.append(members.size / N)
    chosen = list(dict.fromkeys(chosen))[:n]
    if len(chosen) < n:
        extra, _ = k_center_greedy(X, n, centers=None, random_state=rng)
        seen = set(chosen)
        for i in extra:
            if len(chosen) == n:
                break
            if i not in seen:
                chosen.append(int(i))
                seen.add(int(i))
                share.append(0.0)
    return np.asarray(chosen, dtype=np.intp), np.asarray(share[:n], dtype=np.float32)


def landmark_density(X: np.ndarray, n_landmarks: int = 500, random_state: Any = None) -> np.ndarray:
    """Gaussian kernel density of each row, estimated against random landmark rows.

    A Nyström-style estimate of the mean similarity to the whole pool: O(N · m)
    time, O(N) memory, no N × N matrix. The bandwidth follows the median heuristic.

    Returns
    -------
    density : ndarray of shape (N,), scaled to a maximum of 1
    """
    rng = check_random_state(random_state)
    X = np.ascontiguousarray(X, dtype=np.float32)
    N = X.shape[0]
    m = min(n_landmarks, N)
    landmarks = X[rng.choice(N, size=m, replace=False)]
    l_sq = np.einsum("ij,ij->i", landmarks, landmarks)
    sq = np.einsum("ij,ij->i", X, X)
    step = max(1, _BLOCK_ELEMENTS // m)
    # Median heuristic on a sample of the blocks keeps the bandwidth O(N) to find.
    probe = X[: min(N, step)]
    d_probe = np.maximum(sq[: probe.shape[0], None] - 2.0 * probe @ landmarks.T + l_sq, 0.0)
    h2 = float(np.median(d_probe[d_probe > 0])) if np.any(d_probe > 0) else 1.0
    density = np.empty(N, dtype=np.float32)
    for start in range(0, N, step):
        stop = min(start + step, N)
        d = X[start:stop] @ landmarks.T
        d *= -2.0
        d += l_sq
        d += sq[start:stop, None]
        np.maximum(d, 0.0, out=d)
        d *= -1.0 / (2.0 * h2)
        np.exp(d, out=d)
        density[start:stop] = d.mean(axis=1)
    return density / max(float(density.max()), np.finfo(np.float32).tiny)


class CoreSet(QueryStrategy):
    """k-center greedy core-set over the candidates, against the labeled points.

    Works in the model's feature space (see :func:`feature_space`); ``clf`` may be
    None when ``X_pool`` is already numeric.
    """

    name = "coreset"
    needs_model = False

    def _query(self, clf, X_pool, n, X_labeled, y_labeled, rng):
        X = feature_space(clf, X_pool)
        centers = feature_space(clf, X_labeled) if X_labeled is not None else None
        return k_center_greedy(X, n, centers=centers, random_state=rng)


class KMeansSampling(QueryStrategy):
    """Cluster the candidates into n groups and query the row nearest each centroid."""

    name = "kmeans"
    needs_model = False

    def _query(self, clf, X_pool, n, X_labeled, y_labeled, rng):
        return cluster_representatives(feature_space(clf, X_pool), n, random_state=rng)


class DensityWeighted(QueryStrategy):
    """Information density: uncertainty × representativeness ** beta.

    Parameters
    ----------
    uncertainty : {"margin", "entropy", "least_confidence"}
    beta : float
        Weight of the density term (0 gives plain uncertainty sampling).
    n_landmarks : int
        Landmark rows of the kernel density estimate.
    random_state : int, RandomState instance or None
    """

    name = "density_weighted"

    def __init__(
        self,
        uncertainty: str = "margin",
        beta: float = 1.0,
        n_landmarks: int = 500,
        random_state: Any = None,
    ) -> None:
        self.uncertainty = uncertainty
        self.beta = beta
        self.n_landmarks = n_landmarks
        self.random_state = random_state

    def _query(self, clf, X_pool, n, X_labeled, y_labeled, rng):
        if self.uncertainty not in UNCERTAINTY:
            raise ValueError(
                f"uncertainty must be one of {sorted(UNCERTAINTY)}, got {self.uncertainty!r}"
            )
        if not np.isfinite(self.beta) or self.beta < 0:
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta!r}")
        unc = score_pool(clf, X_pool, UNCERTAINTY[self.uncertainty])
        density = landmark_density(feature_space(clf, X_pool), self.n_landmarks, rng)
        scores = unc * density ** np.float32(self.beta)
        idx = top_n(scores, n, rng)
        return idx, scores[idx]
