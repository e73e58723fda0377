"""Consensus QC under the overlap policies, and corrections in the append-only labels
ledger (tasks.qc against a real local store)."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from loopwise.overlap import OverlapPolicy
from storage.campaign import Ledgers
from storage.store import Store
from tasks import qc

PID = 3
LABELS = ["a", "b"]
_ids = itertools.count(1)


def answer(item: str, annotator: str, label: str, *, aid: int | None = None) -> dict:
    """An accepted annotation ledger row as collect_annotations writes it."""
    aid = next(_ids) if aid is None else aid
    return {
        "annotation_id": aid,
        "item_id": item,
        "task_id": 100 + int(item[1:]),
        "annotator": annotator,
        "label": label,
        "status": "accepted",
        "reason": None,
        "updated_at": "2026-01-01T00:00:00Z",
    }


def sent(item: str, label: str | None, score: float | None) -> dict:
    return {
        "event": "sent",
        "item_id": item,
        "task_id": 100 + int(item[1:]),
        "cycle": 0,
        "prediction_label": label,
        "prediction_score": score,
    }


def fresh(root) -> Ledgers:
    """The ledgers as a new run reads them."""
    return Ledgers(Store(root), PID)


def run_qc(root, cycle=1, **kw):
    return qc.consensus_qc.fn(fresh(root), LABELS, cycle=cycle, random_state=0, **kw)


def test_a_consensus_on_more_answers_supersedes_and_history_stays(tmp_path):
    led = fresh(tmp_path)
    led.append("annotations", [answer("i1", "u1", "a")])
    out = run_qc(tmp_path)
    assert out["accepted_new"] == 1 and out["corrected_new"] == 0
    # two more annotators say "b": the consensus of 3 answers supersedes the first label
    led = fresh(tmp_path)
    led.append("annotations", [answer("i1", "u2", "b"), answer("i1", "u3", "b")])
    out = run_qc(tmp_path, cycle=2)
    assert out["corrected_new"] == 1 and out["accepted_new"] == 0
    records = fresh(tmp_path).read("labels")
    assert [(r["label"], r["version"], r["supersedes"]) for r in records] == [
        ("a", 1, None),
        ("b", 2, 1),
    ]
    assert "consensus of 3 answers" in records[1]["reason"]
    assert fresh(tmp_path).current_labels()["i1"]["label"] == "b"
    assert len(fresh(tmp_path).corrections()) == 1
    # a re-run (and a re-estimate on the same answers) appends nothing
    assert run_qc(tmp_path, cycle=2)["corrected_new"] == 0
    assert len(fresh(tmp_path).read("labels")) == 2


def test_an_expert_answer_corrects_an_accepted_label_and_only_an_expert_undoes_it(tmp_path):
    led = fresh(tmp_path)
    led.append("annotations", [answer("i2", "u1", "a"), answer("i2", "u2", "a")])
    run_qc(tmp_path)
    fresh(tmp_path).append("annotations", [answer("i2", "boss", "b")])
    out = run_qc(tmp_path, cycle=2, experts={"boss"})
    assert out["corrected_new"] == 1
    current = fresh(tmp_path).current_labels()["i2"]
    assert (current["label"], current["method"], current["version"]) == ("b", "expert", 2)
    assert "expert answer 'b'" in current["reason"]
    # more crowd answers for "a" do not overturn the expert
    fresh(tmp_path).append("annotations", [answer("i2", "u3", "a"), answer("i2", "u4", "a")])
    assert run_qc(tmp_path, cycle=3, experts={"boss"})["corrected_new"] == 0
    assert fresh(tmp_path).current_labels()["i2"]["label"] == "b"


def test_adaptive_calibrates_annotators_then_weighs_them_against_the_model(tmp_path):
    led = fresh(tmp_path)
    led.append("dispatch", [sent("i1", "a", 0.95), sent("i2", "b", 0.95), sent("i3", None, None)])
    led.append(
        "annotations", [answer("i1", "u1", "a"), answer("i2", "u1", "a"), answer("i3", "u1", "a")]
    )
    policy = OverlapPolicy("adaptive", max_annotations=3)
    out = run_qc(tmp_path, policy=policy, min_annotations=1)
    # u1's accuracy is unknown: every item answered by u1 alone gets a second answer
    assert not fresh(tmp_path).current_labels()
    assert all("calibrating annotator u1" in out["disputed"][i] for i in ("i1", "i2", "i3"))
    # u1 checked against u2 on five items (they agree): now u1 is known
    fresh(tmp_path).append(
        "annotations",
        [answer(f"c{k}", who, "a") for k in range(10, 15) for who in ("u1", "u2")],
    )
    out = run_qc(tmp_path, policy=policy, min_annotations=1)
    labels = {i: r for i, r in fresh(tmp_path).current_labels().items() if i.startswith("i")}
    # i1: u1 agrees with a sure model; i2: u1 contradicts it, and u1 (agreeing with u2
    # on every check) now outweighs the model, with less confidence; i3: no model guess
    assert set(labels) == {"i1", "i2", "i3"}
    assert labels["i2"]["label"] == "a"
    assert labels["i1"]["confidence"] > labels["i3"]["confidence"] > labels["i2"]["confidence"]
    assert not out["disputed"]


def test_fixed_policy_needs_its_annotators(tmp_path):
    led = fresh(tmp_path)
    led.append("annotations", [answer("i1", "u1", "a"), answer("i2", "u1", "a")])
    led.append("annotations", [answer("i2", "u2", "a")])
    out = run_qc(tmp_path, min_annotations=2, policy=OverlapPolicy("fixed", annotators=2))
    assert set(fresh(tmp_path).current_labels()) == {"i2"}
    assert "n_annotations 1 < 2" in out["disputed"]["i1"]


def test_training_reads_the_latest_label_of_each_item(tmp_path):
    from tasks.train import labeled_snapshot

    led = fresh(tmp_path)
    led.append("annotations", [answer("i1", "u1", "a"), answer("i4", "u1", "b")])
    run_qc(tmp_path)
    fresh(tmp_path).append("annotations", [answer("i1", "u2", "b"), answer("i1", "u3", "b")])
    run_qc(tmp_path, cycle=2)
    pool = pd.DataFrame({"item_id": ["i1", "i4"], "x": [1.0, 2.0]})
    current = list(fresh(tmp_path).current_labels().values())
    snap = labeled_snapshot.fn(Store(tmp_path), 2, pool, current)
    rows = Store(tmp_path).read_parquet(snap["key"]).set_index("item_id")["label"].to_dict()
    assert rows == {"i1": "b", "i4": "b"}


@pytest.mark.parametrize("first", ["a", "b"])
def test_a_replayed_correction_is_written_once(tmp_path, first):
    led = fresh(tmp_path)
    record = {"item_id": "i9", "label": first, "version": 1, "supersedes": None}
    assert led.append("labels", [record, record]) == 1
    fix = {"item_id": "i9", "label": "c", "version": 2, "supersedes": 1, "reason": "r"}
    assert led.append("labels", [fix]) == 1
    assert fresh(tmp_path).append("labels", [fix]) == 0
    assert fresh(tmp_path).current_labels()["i9"]["label"] == "c"
