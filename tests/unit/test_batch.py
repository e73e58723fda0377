"""The next batch as a library decision: who picks (the campaign's strategy, its drift
fallback, or the cold-start strategy), how many at random, and the expert review queue."""

from __future__ import annotations

import numpy as np
import pytest

from loopwise.batch import compose_batch, plan_batch, review_queue
from loopwise.partitions import draw_keys

KW = {"strategy": "margin", "params": {"k": 3}, "cold_start": "kmeans", "drift_fallback": "random"}


def test_the_campaign_strategy_picks_with_a_model_and_a_tenth_at_random():
    plan = plan_batch(20, 0.1, **KW)
    assert (plan.strategy, plan.params, plan.needs_model) == ("margin", {"k": 3}, True)
    assert (plan.n_picked, plan.n_control, plan.reason) == (18, 2, None)


def test_a_single_labeled_class_is_chosen_as_at_the_cold_start():
    plan = plan_batch(10, 0.1, one_class="cat", **KW)
    assert (plan.strategy, plan.params, plan.needs_model) == ("kmeans", {}, False)
    assert "'cat'" in plan.reason and "kmeans" in plan.reason


def test_drift_switches_to_the_fallback_but_one_class_wins_over_drift():
    assert plan_batch(10, 0.0, drifted=True, **KW).strategy == "random"
    assert plan_batch(10, 0.0, drifted=True, **KW).n_control == 0
    assert plan_batch(10, 0.0, drifted=True, one_class="a", **KW).strategy == "kmeans"


def test_the_cold_start_needs_no_model_and_gives_no_warning():
    plan = plan_batch(1, 0.5, cold=True, **KW)
    assert (plan.strategy, plan.needs_model, plan.reason) == ("kmeans", False, None)
    assert (plan.n_picked, plan.n_control) == (1, 0), "a batch of one has no control share"


def test_a_negative_batch_is_refused():
    with pytest.raises(ValueError, match="n_total must be >= 0, got -1"):
        plan_batch(-1, 0.1, **KW)


def test_compose_puts_the_picks_first_then_the_smallest_draw_keys():
    keys = draw_keys([f"i{k}" for k in range(50)], seed=4)
    rows, scores, control = compose_batch([7, 3], [0.9, 0.8], 3, keys)
    assert rows[:2] == [7, 3] and scores == [0.9, 0.8, None, None, None]
    assert control == [False, False, True, True, True]
    free = [i for i in np.argsort(keys, kind="stable") if i not in (7, 3)]
    assert rows[2:] == [int(i) for i in free[:3]]
    other = compose_batch([7, 3], [0.9, 0.8], 3, draw_keys([f"i{k}" for k in range(50)], 5))
    assert other[0] != rows


def test_the_control_draw_is_uniform_over_the_rows_not_picked():
    counts = np.zeros(200)
    for seed in range(300):
        rows, _, _ = compose_batch(
            [0, 1], [1.0, 0.5], 20, draw_keys(list(map(str, range(200))), seed)
        )
        counts[rows[2:]] += 1
    assert counts[2:].min() > 0 and counts[:2].sum() == 0  # picked rows are never drawn
    assert counts[2:].std() / counts[2:].mean() < 0.35  # Poisson(30): about 0.18


def test_the_control_share_is_cut_to_what_is_left():
    rows, _, control = compose_batch([0, 1], [1.0, 0.5], 5, draw_keys(["a", "b", "c"], 0))
    assert rows == [0, 1, 2] and control == [False, False, True]


def test_review_queue_holds_unaccepted_items_at_max_answers_oldest_task_first():
    ann = [
        *[{"item_id": "b", "task_id": 9, "label": x} for x in "xyx"],
        *[{"item_id": "a", "task_id": 4, "label": x} for x in "yxy"],
        *[{"item_id": "c", "task_id": 1, "label": x} for x in "xy"],  # one answer short
        *[{"item_id": "d", "task_id": 2, "label": x} for x in "xyz"],  # accepted meanwhile
    ]
    queue = review_queue(ann, accepted={"d"}, max_annotations=3)
    assert [q["item_id"] for q in queue] == ["a", "b"]
    assert queue[0] == {"item_id": "a", "task_id": 4, "answers": 3, "labels": "x, y, y"}
