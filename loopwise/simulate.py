"""Pool-based active-learning simulation with an oracle, repeated over seeds.

The protocol (shared with ``bench/``): a stratified train/test split per seed;
the train part is the unlabeled pool whose labels an oracle reveals; a seed set
of ``per_class`` labels per class, the same for every arm of a repetition
(paired comparison); batches of ``batch_size`` until ``budget`` labels; the
model is refitted after every batch and scored on the test part. A ``random``
arm is always included as the control.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from loopwise import strategies
from loopwise._validation import check_n, num_rows, take_rows

__all__ = ["SimulationResult", "default_model", "run_simulation", "seed_set"]

#: An arm: a registered strategy name, or a factory ``random_state -> strategy``.
Arm = str | Callable[[int], Any]
CONTROL = "random"
#: The job name of the model trained on the whole labeled pool.
_FULL = "__full__"


def default_model() -> Any:
    """The protocol's tabular model: standardize, then logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def seed_set(y: np.ndarray, per_class: int, random_state: int) -> np.ndarray:
    """``per_class`` random positions of each class of ``y`` (all of a smaller class)."""
    rng = np.random.RandomState(random_state)
    picks = [
        rng.choice(rows, size=min(per_class, rows.size), replace=False)
        for rows in (np.flatnonzero(y == c) for c in np.unique(y))
    ]
    return np.sort(np.concatenate(picks))


@dataclass
class SimulationResult:
    """Learning curves of every arm and repetition, and their summaries.

    Attributes
    ----------
    curves : DataFrame
        One row per (arm, seed, step): ``n_labels``, ``accuracy``,
        ``query_seconds`` (time of the query that followed, NaN at the last step).
    full_pool_accuracy : dict
        Seed → test accuracy of the model trained on the whole labeled pool.
    """

    curves: pd.DataFrame
    full_pool_accuracy: dict[int, float]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def arms(self) -> list[str]:
        """Arm names, in the order they were run."""
        return list(dict.fromkeys(self.curves["arm"]))

    def mean_curves(self) -> pd.DataFrame:
        """Mean and standard deviation of accuracy per arm and label count."""
        g = self.curves.groupby(["arm", "n_labels"], sort=False)["accuracy"]
        return g.agg(["mean", "std"]).reset_index()

    def aulc_per_seed(self) -> pd.DataFrame:
        """Area under each learning curve: mean accuracy over the label counts (arm × seed)."""
        return self.curves.pivot_table(
            index="seed", columns="arm", values="accuracy", aggfunc="mean"
        )[self.arms]

    def labels_to_reach(self, fraction: float) -> dict[str, int | None]:
        """Per arm: the fewest labels at which the mean curve reaches ``fraction`` of the
        mean full-pool accuracy, or None if it never does within the budget."""
        target = fraction * float(np.mean(list(self.full_pool_accuracy.values())))
        out: dict[str, int | None] = {}
        for arm, curve in self.mean_curves().groupby("arm", sort=False):
            hit = curve.loc[curve["mean"] >= target, "n_labels"]
            out[arm] = int(hit.iloc[0]) if len(hit) else None  # None: not reached
        return out

    def summary(self, fractions: Iterable[float] = (0.95, 0.98, 0.99)) -> pd.DataFrame:
        """One row per arm: AULC (mean, std over seeds), final accuracy, labels to reach
        each fraction of full-pool accuracy, and the mean seconds per query."""
        aulc = self.aulc_per_seed()
        last = self.curves.sort_values("n_labels").groupby(["arm", "seed"]).tail(1)
        table = pd.DataFrame(
            {
                "aulc": aulc.mean(),
                "aulc_std": aulc.std(ddof=1) if len(aulc) > 1 else 0.0,
                "final_accuracy": last.groupby("arm")["accuracy"].mean(),
                "query_seconds": self.curves.groupby("arm")["query_seconds"].mean(),
            }
        ).loc[self.arms]
        for f in fractions:
            reached = pd.Series(self.labels_to_reach(f), dtype="Int64")  # <NA>: not reached
            table[f"labels_to_{round(f * 100)}pct"] = reached
        table.index.name = "arm"
        return table.reset_index()

    def paired_difference(self, arm: str, other: str) -> dict[str, float]:
        """AULC of ``arm`` minus ``other`` on the same seeds: mean, std and wins."""
        aulc = self.aulc_per_seed()
        d = aulc[arm] - aulc[other]
        return {
            "mean": float(d.mean()),
            "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
            "wins": int((d > 0).sum()),
            "ties": int((d == 0).sum()),
            "n": len(d),
        }


def run_simulation(
    X: Any,
    y: Any,
    arms: Mapping[str, Arm] | Iterable[str],
    *,
    model: Any = None,
    seeds: Iterable[int] = range(5),
    test_size: float = 0.3,
    per_class: int = 2,
    batch_size: int = 10,
    budget: int = 500,
    n_jobs: int = 1,
    progress: Callable[[str, int], None] | None = None,
) -> SimulationResult:
    """Simulate labeling with every arm on the same splits and seed sets.

    Parameters
    ----------
    X : array-like of shape (N, ...)
        Features, or raw records (e.g. texts) when ``model`` is a pipeline that encodes them.
    y : array-like of shape (N,)
        The oracle's labels.
    arms : mapping name → arm, or an iterable of strategy names
        An arm is a registered strategy name or a factory ``random_state -> strategy``
        (anything with the :class:`~loopwise.strategies.QueryStrategy` ``query`` signature).
        ``"random"`` is added as the control if missing.
    model : scikit-learn classifier, optional
        Cloned and refitted after every batch; defaults to :func:`default_model`.
    seeds : iterable of int
        One repetition per seed (split, seed set and strategy seed).
    test_size : float in (0, 1)
    per_class : int
        Seed-set labels per class.
    batch_size : int
    budget : int
        Label budget including the seed set; clipped to the pool size.
    n_jobs : int
        Repetitions × arms run in parallel processes (joblib) when > 1.
    progress : callable (arm, seed) → None, optional
        Called when an arm finishes a repetition.

    Returns
    -------
    SimulationResult
    """
    batch_size = check_n(batch_size, "batch_size")
    budget = check_n(budget, "budget")
    per_class = check_n(per_class, "per_class")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    y = np.asarray(y)
    if num_rows(X) != y.shape[0]:
        raise ValueError(f"X has {num_rows(X)} rows but y has {y.shape[0]}")
    arm_map = _arm_map(arms)
    model = default_model() if model is None else model
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed")

    splits = {s: _split(y, test_size, per_class, s) for s in seeds}
    # the full-pool models first, then every arm of every repetition
    jobs = [(_FULL, None, s) for s in seeds]
    jobs += [(name, arm, s) for s in seeds for name, arm in arm_map.items()]
    one = functools.partial(
        _run_job, X=X, y=y, model=model, splits=splits, batch_size=batch_size, budget=budget
    )
    outputs = _run_jobs(one, jobs, n_jobs, progress)
    params = {
        "seeds": seeds,
        "test_size": test_size,
        "per_class": per_class,
        "batch_size": batch_size,
        "budget": budget,
        "model": repr(model),
    }
    return _result(outputs, params)


def _result(outputs: list[tuple[str, int, Any]], params: dict[str, Any]) -> SimulationResult:
    """The full-pool accuracies and the learning curves of the jobs' outputs."""
    full = {s: float(acc) for name, s, acc in outputs if name == _FULL}
    records = [
        {"arm": name, "seed": s, **row}
        for name, s, rows in outputs
        if name != _FULL
        for row in rows
    ]
    return SimulationResult(pd.DataFrame.from_records(records), full, params)


def _arm_map(arms: Mapping[str, Arm] | Iterable[str]) -> dict[str, Arm]:
    """The arms by name, each checked, the control first."""
    arm_map: dict[str, Arm] = dict(arms) if isinstance(arms, Mapping) else {a: a for a in arms}
    for name, arm in arm_map.items():
        if isinstance(arm, str) and arm not in strategies.REGISTRY:
            strategies.get(arm)  # raises the ValueError that lists the known names
        elif not isinstance(arm, str) and not callable(arm):
            raise TypeError(f"arm {name!r} must be a strategy name or a factory, got {arm!r}")
    return {CONTROL: CONTROL, **arm_map}


def _run_job(
    job: tuple[str, Arm | None, int],
    *,
    X: Any,
    y: np.ndarray,
    model: Any,
    splits: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    batch_size: int,
    budget: int,
) -> tuple[str, int, Any]:
    """One job: the full-pool accuracy (``arm`` None) or the learning curve of an arm."""
    name, arm, s = job
    train, test, seed_rows = splits[s]
    if arm is None:
        clf = clone(model).fit(take_rows(X, train), y[train])
        return name, s, accuracy_score(y[test], clf.predict(take_rows(X, test)))
    rows = _run_arm(X, y, model, arm, s, train, test, seed_rows, batch_size, budget)
    return name, s, rows


def _run_jobs(
    one: Callable[[tuple[str, Arm | None, int]], tuple[str, int, Any]],
    jobs: list[tuple[str, Arm | None, int]],
    n_jobs: int,
    progress: Callable[[str, int], None] | None,
) -> list[tuple[str, int, Any]]:
    """Every job's output in job order; in parallel processes when ``n_jobs`` > 1."""
    if n_jobs == 1:
        results = map(one, jobs)
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(one)(job) for job in jobs
        )
    outputs = []
    for name, s, out in results:
        outputs.append((name, s, out))
        if progress is not None and name != _FULL:
            progress(name, s)
    # Parallel results arrive in completion order; restore the job order.
    order = {(name, s): i for i, (name, _, s) in enumerate(jobs)}
    outputs.sort(key=lambda o: order[(o[0], o[1])])
    return outputs


def _split(y: np.ndarray, test_size: float, per_class: int, seed: int):
    train, test = train_test_split(
        np.arange(y.shape[0]), test_size=test_size, stratify=y, random_state=seed
    )
    return train, test, seed_set(y[train], per_class, seed)


def _run_arm(X, y, model, arm, seed, train, test, seed_rows, batch_size, budget) -> list[dict]:
    strategy = strategies.get(arm, random_state=seed) if isinstance(arm, str) else arm(seed)
    X_train, y_train = take_rows(X, train), y[train]
    X_test, y_test = take_rows(X, test), y[test]
    budget = min(budget, train.size)
    labeled = np.zeros(train.size, dtype=bool)
    labeled[seed_rows] = True
    rows: list[dict] = []
    while True:
        lab = np.flatnonzero(labeled)
        X_lab = take_rows(X_train, lab)
        clf = clone(model).fit(X_lab, y_train[lab])
        acc = accuracy_score(y_test, clf.predict(X_test))
        n_lab = int(lab.size)
        if n_lab >= budget:
            rows.append({"n_labels": n_lab, "accuracy": float(acc), "query_seconds": np.nan})
            return rows
        pool = np.flatnonzero(~labeled)
        n = min(batch_size, budget - n_lab, pool.size)
        t0 = time.perf_counter()
        picked = strategy.query(
            clf, take_rows(X_train, pool), n, X_labeled=X_lab, y_labeled=y_train[lab]
        )
        seconds = time.perf_counter() - t0
        picked = np.asarray(picked)
        if (
            picked.size != n
            or np.unique(picked).size != n
            or picked.min() < 0
            or picked.max() >= pool.size
        ):
            raise RuntimeError(f"arm {arm!r} returned an invalid batch {picked!r} for n={n}")
        rows.append({"n_labels": n_lab, "accuracy": float(acc), "query_seconds": seconds})
        labeled[pool[picked]] = True
