"""Peer query strategies (modAL, scikit-activeml) behind Loopwise's strategy contract.

Every adapter has ``query(clf, X_pool, n, *, X_labeled=None, y_labeled=None)`` and
returns ``min(n, len(X_pool))`` distinct int indices into ``X_pool``, best first.
``clf`` is a fitted classifier with ``predict_proba`` and is never modified: what a
peer must fit is a clone. An int ``random_state`` seeds every call the same way, so
two calls with the same seed and inputs give the same batch.

Peers run out of the box: they see the raw ``X`` (not the pipeline's transformed
features), with their default parameters, except for the seeds Loopwise injects.

Not adapted: scikit-activeml ``ExpectedModelChangeMaximization`` (its ``query``
type-checks for a ``SkactivemlRegressor``: it is a regression strategy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone

#: Missing-label marker of the scikit-activeml layout (labels are encoded 0..K-1).
MISSING = -1
#: Placeholder in a peer's parameters for the adapter's ``random_state``.
SEED = "<random_state>"
#: Committee size of the query-by-committee peers.
N_MEMBERS = 5


def _finish(idx: Any, n: int, n_pool: int, random_state: int) -> np.ndarray:
    """Keep the first occurrence of each valid index; pad to ``n`` with seeded random rows."""
    idx = np.asarray(idx, dtype=np.intp).ravel()
    idx = idx[(idx >= 0) & (idx < n_pool)]
    _, first = np.unique(idx, return_index=True)
    idx = idx[np.sort(first)][:n]
    if idx.size < n:  # a peer that ran out of picks (e.g. TypiClust with few clusters)
        rest = np.setdiff1d(np.arange(n_pool), idx)
        fill = np.random.RandomState(random_state).permutation(rest)[: n - idx.size]
        idx = np.concatenate([idx, fill])
    return idx


def _seeded(value: Any, random_state: int) -> Any:
    """``value`` with every ``SEED`` placeholder (also inside a dict) replaced by ``random_state``."""
    if isinstance(value, dict):
        return {k: _seeded(v, random_state) for k, v in value.items()}
    return random_state if isinstance(value, str) and value == SEED else value


def _bootstraps(y: np.ndarray, n_members: int, random_state: int) -> list[np.ndarray]:
    """Stratified bootstrap resamples of ``y`` (every member sees every class), seeded."""
    rng = np.random.RandomState(random_state)
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    return [
        np.concatenate([rng.choice(rows, rows.size) for rows in by_class]) for _ in range(n_members)
    ]


class Peer:
    """Base adapter: validates the pool, clips ``n`` and enforces the output contract."""

    library = ""
    needs_labeled = False

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(random_state={self.random_state!r})"

    def query(
        self, clf: Any, X_pool: Any, n: int, *, X_labeled: Any = None, y_labeled: Any = None
    ) -> np.ndarray:
        """Distinct indices into ``X_pool`` of the ``min(n, len(X_pool))`` picks, best first."""
        X_pool = np.asarray(X_pool)
        if X_pool.ndim != 2 or X_pool.shape[0] == 0:
            raise ValueError(f"X_pool must be a non-empty 2-D array, got shape {X_pool.shape}")
        n = min(int(n), X_pool.shape[0])
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if (X_labeled is None) != (y_labeled is None):
            raise ValueError("give both X_labeled and y_labeled, or neither")
        if X_labeled is not None:
            X_labeled, y_labeled = np.asarray(X_labeled), np.asarray(y_labeled)
            if X_labeled.shape[0] == 0:
                X_labeled = y_labeled = None
        if self.needs_labeled and X_labeled is None:
            raise ValueError(f"{type(self).__name__} needs X_labeled and y_labeled")
        idx = self._query(clf, X_pool, n, X_labeled, y_labeled)
        return _finish(idx, n, X_pool.shape[0], self.random_state)

    def _query(
        self,
        clf: Any,
        X_pool: np.ndarray,
        n: int,
        X_labeled: np.ndarray | None,
        y_labeled: np.ndarray | None,
    ) -> np.ndarray:
        raise NotImplementedError


# --------------------------------------------------------------------------- modAL


class ModalUncertainty(Peer):
    """modAL ``uncertainty_sampling`` / ``margin_sampling`` / ``entropy_sampling``, sorted best first."""

    library = "modAL"

    def __init__(self, method: str, random_state: int = 0) -> None:
        super().__init__(random_state)
        self.method = method

    def _query(
        self,
        clf: Any,
        X_pool: np.ndarray,
        n: int,
        X_labeled: np.ndarray | None,
        y_labeled: np.ndarray | None,
    ) -> np.ndarray:
        from modAL import uncertainty

        fn = {
            "least_confidence": uncertainty.uncertainty_sampling,
            "margin": uncertainty.margin_sampling,
            "entropy": uncertainty.entropy_sampling,
        }[self.method]
        # random_tie_break=True would draw from the global NumPy RNG: unseedable.
        idx, values = fn(clf, X_pool, n_instances=n)
        # modAL returns the top n in argpartition order; margin's values are margins (low = best).
        key = values if self.method == "margin" else -values
        return idx[np.argsort(key, kind="stable")]


class ModalRankedBatch(Peer):
    """modAL ``uncertainty_batch_sampling`` (ranked batch) with the labeled set as ``X_training``."""

    library = "modAL"

    def _query(
        self,
        clf: Any,
        X_pool: np.ndarray,
        n: int,
        X_labeled: np.ndarray | None,
        y_labeled: np.ndarray | None,
    ) -> np.ndarray:
        from modAL.batch import uncertainty_batch_sampling
        from modAL.models import ActiveLearner

        learner = ActiveLearner(estimator=clf)  # no X_training given: nothing is fitted
        learner.X_training = X_labeled  # read by ranked_batch only; None means cold start
        idx, _ = uncertainty_batch_sampling(learner, X_pool, n_instances=n)
        return idx


class ModalQBCVoteEntropy(Peer):
    """modAL ``vote_entropy_sampling`` with a committee of clones fitted on seeded bootstraps."""

    library = "modAL"
    needs_labeled = True

    def _query(
        self,
        clf: Any,
        X_pool: np.ndarray,
        n: int,
        X_labeled: np.ndarray | None,
        y_labeled: np.ndarray | None,
    ) -> np.ndarray:
        from modAL.disagreement import vote_entropy_sampling
        from modAL.models import ActiveLearner, Committee

        # Committee.vote stores votes in a float array: encode labels (vote entropy ignores names).
        y_codes = np.unique(y_labeled, return_inverse=True)[1]
        learners = [
            ActiveLearner(estimator=clone(clf), X_training=X_labeled[b], y_training=y_codes[b])
            for b in _bootstraps(y_codes, N_MEMBERS, self.random_state)
        ]
        idx, values = vote_entropy_sampling(Committee(learner_list=learners), X_pool, n_instances=n)
        return idx[np.argsort(-values, kind="stable")]


# ------------------------------------------------------------------ scikit-activeml


@dataclass
class Layout:
    """scikit-activeml's view: labeled rows then pool rows, labels encoded, pool as candidates."""

    X: np.ndarray
    y: np.ndarray
    candidates: np.ndarray
    classes: np.ndarray
    n_labeled: int

    @classmethod
    def build(cls, clf: Any, X_pool: np.ndarray, X_labeled: Any, y_labeled: Any) -> Layout:
        """Stack ``X_labeled`` over ``X_pool``; labels become 0..K-1 and the pool ``MISSING``."""
        known = [np.asarray(getattr(clf, "classes_", []))]
        if y_labeled is not None:
            known.append(y_labeled)
        classes = np.unique(np.concatenate(known))
        n_labeled = 0 if X_labeled is None else X_labeled.shape[0]
        X = X_pool if X_labeled is None else np.vstack([X_labeled, X_pool])
        y = np.full(X.shape[0], MISSING, dtype=np.int64)
        if n_labeled:
            y[:n_labeled] = np.searchsorted(classes, y_labeled)
        candidates = np.arange(n_labeled, X.shape[0])
        return cls(X, y, candidates, np.arange(classes.size), n_labeled)

    def wrap(self, clf: Any, random_state: int, rows: np.ndarray | None = None) -> Any:
        """A ``SklearnClassifier`` around a clone of ``clf``, fitted on the labeled (or ``rows``) part."""
        from skactiveml.classifier import SklearnClassifier

        wrapped = SklearnClassifier(
            clone(clf), classes=self.classes, missing_label=MISSING, random_state=random_state
        )
        if rows is None:
            return wrapped.fit(self.X, self.y)
        return wrapped.fit(self.X[rows], self.y[rows])

    def to_pool(self, idx: Any) -> np.ndarray:
        """Indices into ``X`` back to indices into ``X_pool``."""
        return np.asarray(idx, dtype=np.intp) - self.n_labeled


class SkactivemlPeer(Peer):
    """A scikit-activeml pool strategy on the stacked layout; ``model`` says how it takes the classifier."""

    library = "scikit-activeml"

    def __init__(
        self,
        cls_name: str,
        params: dict[str, Any] | None = None,
        model: str | None = None,
        random_state: int = 0,
    ) -> None:
        super().__init__(random_state)
        self.cls_name = cls_name
        self.params = params or {}
        self.model = model  # None, "clf" (fit_clf=False), "estimator" (Clue) or "ensemble" (QBC)
        self.needs_labeled = model == "ensemble"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cls_name}, {self.params}, random_state={self.random_state!r})"

    def _query(
        self,
        clf: Any,
        X_pool: np.ndarray,
        n: int,
        X_labeled: np.ndarray | None,
        y_labeled: np.ndarray | None,
    ) -> np.ndarray:
        import skactiveml.pool

        lay = Layout.build(clf, X_pool, X_labeled, y_labeled)
        params = {k: _seeded(v, self.random_state) for k, v in self.params.items()}
        qs = getattr(skactiveml.pool, self.cls_name)(
            missing_label=MISSING, random_state=self.random_state, **params
        )
        kw: dict[str, Any] = {}
        if self.model == "clf":
            kw = {"clf": lay.wrap(clf, self.random_state), "fit_clf": False}
        elif self.model == "estimator":
            kw = {"estimator": lay.wrap(clf, self.random_state), "fit_estimator": False}
        elif self.model == "ensemble":
            members = [
                lay.wrap(clf, self.random_state + i, rows=b)
                for i, b in enumerate(_bootstraps(y_labeled, N_MEMBERS, self.random_state))
            ]
            kw = {"ensemble": members, "fit_ensemble": False}
        idx = qs.query(lay.X, lay.y, candidates=lay.candidates, batch_size=n, **kw)
        return lay.to_pool(idx)


# --------------------------------------------------------------------------- registry

#: name -> (adapter class, constructor kwargs other than random_state)
_SPECS: dict[str, tuple[type[Peer], dict[str, Any]]] = {
    "modal.least_confidence": (ModalUncertainty, {"method": "least_confidence"}),
    "modal.margin": (ModalUncertainty, {"method": "margin"}),
    "modal.entropy": (ModalUncertainty, {"method": "entropy"}),
    "modal.ranked_batch": (ModalRankedBatch, {}),
    "modal.qbc_vote_entropy": (ModalQBCVoteEntropy, {}),
    "skactiveml.least_confidence": (
        SkactivemlPeer,
        {
            "cls_name": "UncertaintySampling",
            "params": {"method": "least_confident"},
            "model": "clf",
        },
    ),
    "skactiveml.margin": (
        SkactivemlPeer,
        {
            "cls_name": "UncertaintySampling",
            "params": {"method": "margin_sampling"},
            "model": "clf",
        },
    ),
    "skactiveml.entropy": (
        SkactivemlPeer,
        {"cls_name": "UncertaintySampling", "params": {"method": "entropy"}, "model": "clf"},
    ),
    "skactiveml.qbc_vote_entropy": (
        SkactivemlPeer,
        {"cls_name": "QueryByCommittee", "params": {"method": "vote_entropy"}, "model": "ensemble"},
    ),
    "skactiveml.qbc_kl": (
        SkactivemlPeer,
        {
            "cls_name": "QueryByCommittee",
            "params": {"method": "KL_divergence"},
            "model": "ensemble",
        },
    ),
    "skactiveml.coreset": (SkactivemlPeer, {"cls_name": "CoreSet"}),
    # Clue's KMeans gets no seed from Clue itself: inject ours.
    "skactiveml.clue": (
        SkactivemlPeer,
        {
            "cls_name": "Clue",
            "params": {"cluster_algo_dict": {"random_state": SEED}},
            "model": "estimator",
        },
    ),
    "skactiveml.falcun": (SkactivemlPeer, {"cls_name": "Falcun", "model": "clf"}),
    "skactiveml.typiclust": (SkactivemlPeer, {"cls_name": "TypiClust"}),
    "skactiveml.max_herding": (SkactivemlPeer, {"cls_name": "MaxHerding"}),
    # Without clf_embedding_flag_name, BADGE embeds with the raw features: the exact
    # last-layer gradient embedding of a linear model.
    "skactiveml.badge": (SkactivemlPeer, {"cls_name": "Badge", "model": "clf"}),
}

#: Loopwise strategy name -> the peers that are its counterparts.
PEER_COUNTERPART: dict[str, list[str]] = {
    "least_confidence": ["modal.least_confidence", "skactiveml.least_confidence"],
    "margin": ["modal.margin", "skactiveml.margin"],
    "entropy": ["modal.entropy", "skactiveml.entropy"],
    "qbc_vote_entropy": ["modal.qbc_vote_entropy", "skactiveml.qbc_vote_entropy"],
    "qbc_kl": ["skactiveml.qbc_kl"],
    "coreset": ["skactiveml.coreset"],
    "kmeans": ["skactiveml.typiclust", "skactiveml.max_herding"],
    "density_weighted": ["skactiveml.clue", "modal.ranked_batch"],
    "expected_gradient_length": ["skactiveml.badge"],
    "cluster_margin": [
        "skactiveml.clue",
        "skactiveml.falcun",
        "skactiveml.badge",
        "modal.ranked_batch",
    ],
}


def make_peers(random_state: int) -> dict[str, Peer]:
    """Every peer adapter by name, seeded with ``random_state``."""
    return {name: cls(random_state=random_state, **kw) for name, (cls, kw) in _SPECS.items()}
