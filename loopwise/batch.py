"""Batches: how the next one is chosen and composed (the strategy's picks plus a random
control share, as the records Label Studio dispatch takes), and where the open one stands
(progress, deadline, the expert review queue)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loopwise.config import CampaignConfig

__all__ = [
    "BatchPlan",
    "batch_deadline",
    "batch_progress",
    "batch_records",
    "compose_batch",
    "control_count",
    "draw_control",
    "plan_batch",
    "review_queue",
]


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


# ---------------------------------------------------------------- the next batch: who picks, how many


@dataclass(frozen=True)
class BatchPlan:
    """How the next batch is chosen: by which strategy (and why), how many picked, how many at random."""

    strategy: str
    params: dict[str, Any]
    n_picked: int
    n_control: int
    needs_model: bool
    reason: str | None = None


def plan_batch(
    n_total: int,
    control_fraction: float,
    *,
    strategy: str,
    params: Mapping[str, Any],
    cold_start: str,
    drift_fallback: str,
    cold: bool = False,
    drifted: bool = False,
    one_class: str | None = None,
) -> BatchPlan:
    """The strategy and the sizes of the next batch.

    ``cold`` (no model yet): the ``cold_start`` strategy picks, without a model.
    With a single class labeled (``one_class`` names it) the model is a constant, so the
    batch is chosen as at the cold start, without a model, until a second class turns up.
    When the pool drifted from the labeled data, the campaign's ``drift_fallback`` picks
    (its defaults: uncertainty estimates are least trusted off the training distribution).
    ``control_fraction`` of the batch is drawn at random (at least one when set).
    """
    if n_total < 0:
        raise ValueError(f"n_total must be >= 0, got {n_total}")
    n_control = control_count(n_total, control_fraction)
    n = n_total - n_control
    if cold:
        return BatchPlan(cold_start, {}, n, n_control, needs_model=False)
    if one_class is not None:
        reason = (
            f"only {one_class!r} is labeled so far: chosen by {cold_start}, as at the cold start"
        )
        return BatchPlan(cold_start, {}, n, n_control, needs_model=False, reason=reason)
    if drifted:
        reason = f"the pool drifted from the labeled data: chosen by {drift_fallback}"
        return BatchPlan(drift_fallback, {}, n, n_control, needs_model=True, reason=reason)
    return BatchPlan(strategy, dict(params), n, n_control, needs_model=True)


def compose_batch(
    picked: Sequence[int], scores: Sequence[float], n_control: int, keys: np.ndarray
) -> tuple[list[int], list[float | None], list[bool]]:
    """The picked rows then the control share: the ``n_control`` rows not picked with the
    smallest draw ``keys`` (one per candidate row, :func:`loopwise.partitions.draw_keys` of
    its item id), smallest first. A uniform draw, and the same rows whether the pool is
    one file or partitions, since a partition's smallest keys hold the pool's.

    Returns (candidate row indices, query scores — None for control rows, control flags).
    """
    from loopwise.partitions import smallest

    keys = np.asarray(keys)
    free = np.setdiff1d(np.arange(keys.size), np.asarray(list(picked), dtype=int))
    control = [int(i) for i in free[smallest(keys[free], n_control)]]
    rows = [int(i) for i in picked] + control
    return (
        rows,
        [float(s) for s in scores] + [None] * len(control),
        [False] * len(picked) + [True] * len(control),
    )


# ---------------------------------------------------------------- the open batch


def batch_progress(
    items: Sequence[str],
    *,
    accepted: Collection[str],
    answers: Mapping[str, int],
    annotators_per_item: int,
    max_annotations: int,
) -> dict[str, Any]:
    """Where each item of an open batch stands.

    ``accepted`` holds the items with an accepted label, ``answers`` the number of
    annotations (any status) of each item. ``done`` counts items accepted or sent to
    expert review (no consensus with ``max_annotations`` answers already); ``more`` lists
    items whose expected answers are all in without a consensus (disputed, or too many
    skips) and that may get another; ``pending`` holds those and the items still being
    answered.
    """
    review, more, pending = [], [], []
    for item in map(str, items):
        n = answers.get(item, 0)
        if item in accepted:
            continue
        if n >= max_annotations:
            review.append(item)
        elif n >= annotators_per_item:  # every expected answer is in, and no consensus yet
            more.append(item)
            pending.append(item)
        else:
            pending.append(item)
    total = len(items)
    return {
        "total": total,
        "done": total - len(pending),
        "pending": pending,
        "review": review,
        "more": more,
        "accepted": sum(str(i) in accepted for i in items),
    }


def batch_deadline(
    waiting_since: str,
    timeout_seconds: float | None,
    *,
    forced: bool = False,
    now: dt.datetime | None = None,
) -> float | None:
    """Seconds the open batch has waited, if it is to be closed now; else None.

    It is closed when ``forced`` or when it has waited ``timeout_seconds`` (None: never).
    """
    now = now or dt.datetime.now(dt.UTC)
    waited = max(0.0, (now - dt.datetime.fromisoformat(waiting_since)).total_seconds())
    if forced or (timeout_seconds is not None and waited >= timeout_seconds):
        return waited
    return None


def review_queue(
    annotations: Iterable[Mapping[str, Any]], accepted: Collection[str], max_annotations: int
) -> list[dict[str, Any]]:
    """Disputes that reached ``max_annotations`` accepted answers without a consensus: the
    items an expert has to decide, oldest task first. ``annotations`` are the accepted
    ones (latest version of each)."""
    by_item: dict[str, list[Mapping[str, Any]]] = {}
    for r in annotations:
        by_item.setdefault(r["item_id"], []).append(r)
    queue = [
        {
            "item_id": item,
            "task_id": int(rows[0]["task_id"]),
            "answers": len(rows),
            "labels": ", ".join(sorted(str(r["label"]) for r in rows)),
        }
        for item, rows in by_item.items()
        if item not in accepted and len(rows) >= max_annotations
    ]
    return sorted(queue, key=lambda q: q["task_id"])
