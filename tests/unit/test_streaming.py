"""The stream path's bookkeeping (loopwise/streaming.py): batch records, feedback as
answers, attribution, the next retrain, the report's summary."""

from __future__ import annotations

import pytest

from loopwise.streaming import (
    attribution,
    batch_record,
    feedback_annotation,
    is_stream_item,
    next_retrain,
    stream_summary,
)

LABELS = ["a", "b", "c"]


def _record(rid: str, decision: str = "query", version: str = "3") -> dict:
    return {
        "request_id": rid,
        "time": "2026-12-03T00:00:00.000000Z",
        "model_name": "m",
        "model_version": version,
        "inputs": {"x": 1.0, "t": "hi"},
        "proba": {"a": 0.7, "b": 0.2, "c": 0.1},
        "prediction": "a",
        "decision": decision,
        "score": 0.5,
        "threshold": 0.4,
    }


def test_a_batch_record_carries_the_served_prediction_its_version_and_the_inputs():
    b = batch_record(_record("r1"))
    assert b["item_id"] == "s-r1" and is_stream_item(b["item_id"])
    assert b["data"] == {"record": {"x": 1.0, "t": "hi"}}
    assert (b["prediction_label"], b["prediction_score"], b["model_version"]) == ("a", 0.7, "3")
    assert b["control"] is False and b["query_score"] == 0.5
    assert batch_record(_record("r2", "control"))["control"] is True
    assert batch_record(_record("r3"), text_column="t")["data"] == {"text": "hi"}
    assert not is_stream_item("u0001")


@pytest.mark.parametrize(
    ("feedback", "served", "status", "label"),
    [
        ({"label": "b"}, "a", "accepted", "b"),
        ({"correct": True}, "a", "accepted", "a"),
        ({"correct": True}, None, "skipped", None),
        ({"correct": False}, "a", "skipped", None),
        ({"label": "zz"}, "a", "rejected", None),
    ],
)
def test_feedback_becomes_an_answer_of_its_own_annotator(feedback, served, status, label):
    row = feedback_annotation(
        {"request_id": "r1", "time": "t", "user": "u", **feedback}, served, LABELS
    )
    assert (row["status"], row["label"]) == (status, label)
    assert row["item_id"] == "s-r1" and row["annotator"] == "feedback:u"
    assert row["task_id"] is None and row["annotation_id"].startswith("feedback:")


def test_the_same_feedback_has_the_same_id_and_another_another():
    one = {"request_id": "r1", "label": "b", "time": "t1"}
    a, b = (feedback_annotation(one, "a", LABELS) for _ in range(2))
    c = feedback_annotation({**one, "time": "t2"}, "a", LABELS)
    assert a["annotation_id"] == b["annotation_id"] != c["annotation_id"]
    given = feedback_annotation({**one, "feedback_id": "f9"}, "a", LABELS)
    assert given["annotation_id"] == "feedback:f9"


def test_attribution_and_the_online_accuracy_read_control_labels_only():
    selected = [
        batch_record(_record("q1", "query", "1")),
        batch_record(_record("c1", "control", "1")),
        batch_record(_record("c2", "control", "1")),
        batch_record(_record("c3", "control", "2")),
        batch_record(_record("unlabeled", "control", "2")),
    ]
    labels = {
        "s-q1": {"label": "b"},  # a queried record the model got wrong: not counted
        "s-c1": {"label": "a"},
        "s-c2": {"label": "c"},
        "s-c3": {"label": "a"},
    }
    rows = attribution(selected, labels)
    assert [r["request_id"] for r in rows] == ["q1", "c1", "c2", "c3"]
    assert [r["correct"] for r in rows] == [False, True, False, True]
    runs = [{"records": 100, "quarantined": 2, "decisions": {"query": 3, "control": 4, "skip": 93}}]
    st = stream_summary(runs, rows, [], [], [])
    assert st["labeling_rate"] == pytest.approx(0.07)
    assert st["online_accuracy"]["1"]["n"] == 2 and st["online_accuracy"]["1"]["correct"] == 1
    assert st["online_accuracy"]["2"]["n"] == 1
    assert st["labels_by_decision"] == {"query": 1, "control": 3}


def _t(key: str, time: str) -> dict:
    return {"key": key, "time": time}


def test_one_retrain_at_a_time_and_a_trigger_after_the_request_asks_for_the_next():
    triggers = [_t("labels:0", "01"), _t("drift:4", "03")]
    # Nothing requested yet: the first trigger asks.
    assert next_retrain(triggers, [], []) == (None, triggers[0])
    requested = [{"key": "labels:0", "time": "02", "created": True}]
    # Requested, not done: nothing else is asked for, whatever fired meanwhile.
    assert next_retrain(triggers, requested, []) == ("labels:0", None)
    # Done: the drift that fired after the request asks for the next retrain.
    done = [{"key": "labels:0"}]
    assert next_retrain(triggers, requested, done) == (None, triggers[1])
    # A trigger that fired before the last request was answered by that retrain.
    late = [{"key": "labels:0", "time": "05", "created": True}]
    assert next_retrain(triggers, late, done) == (None, None)
    # A request the deployment could not create is not pending.
    failed = [{"key": "labels:0", "time": "02", "created": False}]
    assert next_retrain(triggers, failed, []) == (None, triggers[1])
