"""The pool as the cycle sees it: item ids, the holdout split, features, the model, selection.

Pure functions over pandas and numpy, used by the cycle's tasks:

- :func:`assign_ids` gives every row a stable string id;
- :func:`holdout_mask` splits by a hash of the id, so a row stays on its side of
  the split when the pool grows or is re-read;
- :func:`feature_matrix` / :func:`build_model` turn rows into what the estimator
  takes (numbers, or texts behind TF-IDF);
- :func:`partition_scores` / :func:`select_from_candidates` split the scoring of a
  large pool into partitions that can run anywhere, then select the batch.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import cohen_kappa_score, confusion_matrix, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from loopwise import strategies
from loopwise._validation import take_rows
from loopwise.config import CampaignConfig
from loopwise.strategies._base import ScoreStrategy, score_pool
from loopwise.strategies.uncertainty import margin_scores

__all__ = [
    "PREFILTER_FACTOR",
    "assign_ids",
    "batch_records",
    "build_model",
    "control_count",
    "draw_control",
    "evaluate_model",
    "feature_matrix",
    "holdout_mask",
    "model_inputs",
    "partition_bounds",
    "partition_scores",
    "prediction_agreement",
    "select_from_candidates",
    "split_by_hash",
]

#: Strategies that are not a per-row score see the union of the partitions' most
#: uncertain rows, this many times the batch (and the whole pool when it is smaller).
PREFILTER_FACTOR = 50


def assign_ids(
    df: pd.DataFrame, id_column: str | None, row_numbers: Sequence[int] | None = None
) -> pd.DataFrame:
    """A copy of ``df`` with a string ``item_id`` column, unique, from ``id_column`` or the row number.

    ``row_numbers`` (0-based, one per row) replaces the position when rows are missing,
    e.g. the broken lines of a CSV, so that no other row's id shifts.

    Raises ``ValueError`` naming the rows when ids are missing or repeated.
    """
    out = df.copy()
    if id_column is None:
        numbers = range(len(out)) if row_numbers is None else row_numbers
        out["item_id"] = [f"r{int(i):07d}" for i in numbers]
        return out
    if id_column not in out.columns:
        raise ValueError(f"id column {id_column!r} not in the data; columns: {list(out.columns)}")
    ids = out[id_column]
    if ids.isna().any():
        rows = (np.flatnonzero(ids.isna().to_numpy())[:5] + 1).tolist()
        raise ValueError(f"id column {id_column!r} is empty in data row(s) {rows}")
    out["item_id"] = ids.astype(str)
    dup = out["item_id"].duplicated()
    if dup.any():
        rows = (np.flatnonzero(dup.to_numpy())[:5] + 1).tolist()
        raise ValueError(f"id column {id_column!r} repeats ids in data row(s) {rows}")
    return out


def holdout_mask(item_ids: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """True for the ids on the holdout side: a hash of (seed, id) below ``fraction``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    cut = int(fraction * 2**32)
    out = np.empty(len(item_ids), dtype=bool)
    for i, item in enumerate(item_ids):
        digest = hashlib.blake2b(f"{seed}:{item}".encode(), digest_size=4).digest()
        out[i] = int.from_bytes(digest, "big") < cut
    return out


def split_by_hash(
    df: pd.DataFrame, label_column: str, labels: Sequence[str], fraction: float, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pool, holdout): the holdout is the rows whose known label is in ``labels`` and
    whose id hashes below ``fraction``; every other row is in the pool (none is lost)."""
    known = df[label_column].astype("string").isin(list(labels)).fillna(False).to_numpy(bool)
    mask = holdout_mask(df["item_id"].tolist(), fraction, seed) & known
    return df[~mask].reset_index(drop=True), df[mask].reset_index(drop=True)


def feature_matrix(
    df: pd.DataFrame,
    *,
    feature_columns: Sequence[str] | None,
    text_column: str | None,
    exclude: Sequence[str] = (),
) -> Any:
    """What the model reads: the texts (object array) or float32 features.

    Categorical feature columns are one-hot encoded over the categories present in
    ``df``, so pass the whole pool plus holdout at once to keep columns aligned.
    """
    if text_column is not None:
        if text_column not in df.columns:
            raise ValueError(f"text column {text_column!r} not in the data")
        return df[text_column].fillna("").astype(str).to_numpy(object)
    cols = (
        list(feature_columns)
        if feature_columns
        else [c for c in df.columns if c not in set(exclude) | {"item_id"}]
    )
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"feature column(s) {missing} not in the data")
    frame = df[cols]
    categorical = [c for c in cols if not pd.api.types.is_numeric_dtype(frame[c])]
    if categorical:
        frame = pd.get_dummies(frame, columns=categorical, dtype=np.float32)
    return frame.to_numpy(np.float32)


def build_model(estimator: Any, *, kind: str, scale: bool = True) -> Any:
    """The pipeline the campaign trains: TF-IDF for text, optional scaling for tables."""
    if kind == "text":
        return make_pipeline(TfidfVectorizer(sublinear_tf=True, min_df=1), estimator)
    return make_pipeline(StandardScaler(), estimator) if scale else make_pipeline(estimator)


def evaluate_model(model: Any, X: Any, y: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Holdout accuracy, macro-F1, per-class F1 and the confusion matrix (label order)."""
    y = np.asarray(y, dtype=object).astype(str)
    pred = np.asarray(model.predict(X)).astype(str)
    labels = [str(label) for label in labels]
    per_class = f1_score(y, pred, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": float(np.mean(pred == y)),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "per_class_f1": {label: float(v) for label, v in zip(labels, per_class, strict=True)},
        "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
        "n": int(y.size),
    }


def prediction_agreement(previous: Sequence[str] | None, current: Sequence[str]) -> float | None:
    """Cohen's kappa between two models' predictions on the stop set (None without a previous)."""
    if previous is None or len(previous) != len(current) or len(current) == 0:
        return None
    a, b = np.asarray(previous).astype(str), np.asarray(current).astype(str)
    if (a == b).all():
        return 1.0
    kappa = cohen_kappa_score(a, b)
    return float(kappa) if math.isfinite(kappa) else None


def partition_bounds(n_rows: int, n_partitions: int) -> list[tuple[int, int]]:
    """``[start, stop)`` row ranges of at most ``n_partitions`` near-equal partitions."""
    k = max(1, min(n_partitions, n_rows))
    edges = np.linspace(0, n_rows, k + 1).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def _is_score_strategy(strategy: Any) -> bool:
    return isinstance(strategy, ScoreStrategy)


def partition_scores(
    clf: Any, X_part: Any, offset: int, n: int, strategy: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The best candidates of one partition: (global row indices, scores), best first.

    For a per-row score strategy this is its own score, and the union of the
    partitions' top ``n`` holds the global top ``n`` exactly. For any other
    strategy it is the margin score, keeping ``PREFILTER_FACTOR · n`` rows.
    """
    if _is_score_strategy(strategy):
        scores = score_pool(clf, X_part, strategy.utility)
        keep = n
    else:
        scores = score_pool(clf, X_part, margin_scores)
        keep = PREFILTER_FACTOR * n
    keep = min(keep, scores.size)
    idx = np.argsort(-scores, kind="stable")[:keep]
    return idx + offset, scores[idx]


def select_from_candidates(
    clf: Any,
    X_pool: Any,
    candidates: np.ndarray,
    n: int,
    strategy: Any,
    *,
    X_labeled: Any = None,
    y_labeled: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``strategy`` on the candidate rows; return (pool row indices, scores), best first."""
    candidates = np.sort(np.asarray(candidates, dtype=np.int64))
    X_cand = take_rows(X_pool, candidates)
    local, scores = strategy.query(
        clf, X_cand, n, X_labeled=X_labeled, y_labeled=y_labeled, return_scores=True
    )
    return candidates[local], np.asarray(scores, dtype=np.float64)


def strategy_for(name: str, params: dict[str, Any], seed: int) -> Any:
    """The named strategy, seeded."""
    return strategies.get(name, random_state=seed, **params)


def model_inputs(cfg: CampaignConfig, *frames: pd.DataFrame) -> list[Any]:
    """The model inputs of each frame, encoded together so that their columns line up."""
    exclude = [c for c in (cfg.data.id_column, cfg.data.label_column, cfg.data.text_column) if c]
    # Only columns every frame has: the snapshot's annotated ``label`` is never a feature.
    shared = [c for c in frames[0].columns if all(c in f.columns for f in frames[1:])]
    columns = cfg.data.feature_columns or [c for c in shared if c not in set(exclude) | {"item_id"}]
    both = pd.concat([f[[*columns, *_text_of(f, cfg)]] for f in frames], ignore_index=True)
    X = feature_matrix(
        both,
        feature_columns=columns,
        text_column=cfg.data.text_column,
        exclude=exclude,
    )
    out, start = [], 0
    for f in frames:
        out.append(X[start : start + len(f)])
        start += len(f)
    return out


def _text_of(frame: pd.DataFrame, cfg: CampaignConfig) -> list[str]:
    """The text column, where the frame has it (text campaigns read it)."""
    text = cfg.data.text_column
    return [text] if text and text in frame.columns else []


def batch_records(
    cfg: CampaignConfig,
    pool: pd.DataFrame,
    rows: list[int],
    scores: list[float],
    model: Any = None,
    X_rows: Any = None,
    control: Sequence[bool] | None = None,
) -> list[dict[str, Any]]:
    """The batch as Label Studio dispatch takes it: item id, data, model guess, query score.

    ``control`` marks the rows drawn at random (the control share); annotators never see it.
    """
    picked = pool.iloc[rows]
    guess: list[tuple[str | None, float | None]] = [(None, None)] * len(rows)
    if model is not None and len(rows):
        proba = model.predict_proba(X_rows)
        classes = [str(c) for c in model.classes_]
        guess = [(classes[int(p.argmax())], float(p.max())) for p in proba]
    if cfg.data.text_column:
        data = [{"text": str(t)} for t in picked[cfg.data.text_column]]
    else:
        shown = [c for c in picked.columns if c not in {cfg.data.label_column, "item_id"}]
        data = [{"record": rec} for rec in picked[shown].to_dict("records")]
    return [
        {
            "item_id": item,
            "data": d,
            "prediction_label": g[0],
            "prediction_score": g[1],
            "query_score": s,
            "control": c,
        }
        for item, d, g, s, c in zip(
            picked["item_id"],
            data,
            guess,
            scores,
            [False] * len(rows) if control is None else [bool(c) for c in control],
            strict=True,
        )
    ]


def control_count(n: int, fraction: float) -> int:
    """How many of a batch of ``n`` are drawn at random: at least one when the share is set."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(n * fraction)))


def draw_control(n_rows: int, exclude: Sequence[int], k: int, seed: int) -> list[int]:
    """``k`` rows drawn uniformly from ``range(n_rows)`` minus ``exclude`` (reproducible)."""
    free = np.setdiff1d(np.arange(n_rows), np.asarray(list(exclude), dtype=int))
    k = min(k, free.size)
    if k <= 0:
        return []
    rng = np.random.default_rng([seed, 0xC0])
    return sorted(int(i) for i in rng.choice(free, size=k, replace=False))
