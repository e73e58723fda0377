"""A campaign's records in its store: the typed state, per-cycle checkpoints, the ledgers
(each read once per run), and where an open batch stands as computed from them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loopwise.batch import batch_progress
from loopwise.state import Stage
from storage.campaign import (
    Ledgers,
    campaign_store,
    checkpoint,
    checkpointed,
    read_state,
    save_checkpoint,
    write_state,
)
from storage.store import Store

# --- state and checkpoints ------------------------------------------------------------------


def test_a_new_campaign_starts_before_cycle_zero(tmp_path):
    store = Store(tmp_path)
    state = read_state(store)
    assert (state.cycle, state.stage, state.history, state.rechecks, state.stopped) == (
        -1,
        Stage.NEW,
        [],
        0,
        False,
    )
    assert state.cold_start
    state.history.append({"cycle": 0})
    assert read_state(store).history == [], "the default is not shared between calls"
    assert list(tmp_path.iterdir()) == [], "reading writes nothing"


def test_write_state_replaces_the_file_and_keeps_other_keys(tmp_path):
    store = Store(tmp_path)
    first = write_state(store, read_state(store), cycle=0, stage="started", open_batch=["i1"])
    assert read_state(store) == first
    assert first.updated_at
    second = write_state(store, first, stage="trained")
    assert second.stage is Stage.TRAINED
    assert (second.cycle, second.open_batch, second.history) == (0, ["i1"], [])
    assert first.stage is Stage.STARTED, "the given state is not modified"
    on_disk = json.loads((tmp_path / "state.json").read_text())
    assert on_disk == second.model_dump(mode="json")
    assert on_disk["stage"] == "trained", "the stage is stored as its name"
    # replaced atomically: one document, no temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_an_old_state_file_loads_and_keeps_its_unknown_keys(tmp_path):
    store = Store(tmp_path)
    # as an earlier release wrote it: no review_queue, no project_id, a key of its own
    store.write_json("state.json", {"cycle": 4, "stage": "waiting", "custom": {"k": 1}})
    state = read_state(store)
    assert (state.cycle, state.stage, state.review_queue) == (4, Stage.WAITING, 0)
    written = write_state(store, state)
    assert read_state(store).model_extra["custom"] == {"k": 1}
    assert written.updated_at is not None


def test_a_state_with_an_unknown_stage_is_an_error_naming_the_file(tmp_path):
    store = Store(tmp_path)
    store.write_json("state.json", {"cycle": 1, "stage": "exploded"})
    with pytest.raises(
        ValueError, match=r"state\.json: not a campaign state \(stage: Input should be 'new'"
    ):
        read_state(store)


def test_checkpoint_round_trip_in_a_zero_padded_cycle_folder(tmp_path):
    store = Store(tmp_path)
    value = {"rows": [3, 1, 2], "scores": [0.9, 0.5, 0.1]}
    assert save_checkpoint(store, 7, "selected", value) == value
    assert (tmp_path / "cycles" / "0007" / "selected.json").is_file()
    assert checkpoint(store, 7, "selected") == value
    assert checkpoint(store, 7, "dispatched") is None
    assert checkpoint(store, 8, "selected") is None


def test_checkpoint_is_replaced_not_appended(tmp_path):
    store = Store(tmp_path)
    save_checkpoint(store, 12, "trained", {"v": 1})
    save_checkpoint(store, 12, "trained", {"v": 2})
    assert checkpoint(store, 12, "trained") == {"v": 2}
    assert [p.name for p in (tmp_path / "cycles" / "0012").iterdir()] == ["trained.json"]


def test_campaign_store_is_a_folder_per_campaign(tmp_path):
    store = campaign_store(f"{tmp_path}/", "shoes")
    write_state(store, read_state(store), cycle=0)
    assert (tmp_path / "shoes" / "state.json").is_file()


def test_checkpointed_computes_once_and_then_returns_the_checkpoint(tmp_path):
    store = Store(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"n": len(calls)}

    assert checkpointed(store, 3, Stage.SELECTED, compute) == {"n": 1}
    assert checkpointed(store, 3, Stage.SELECTED, compute) == {"n": 1}
    assert len(calls) == 1, "a re-run finds the checkpoint and computes nothing"
    assert checkpointed(store, 3, "selected", compute, valid=lambda v: v["n"] == 2) == {"n": 2}
    assert checkpoint(store, 3, "selected") == {"n": 2}, "an invalid checkpoint is replaced"


# --- batch_progress -------------------------------------------------------------------------

PROJECT = 5


def annotation(aid: int, item: str, status: str = "accepted", label: str | None = "a", **kw: Any):
    """An annotation ledger row as collect_annotations writes it."""
    return {
        "annotation_id": aid,
        "item_id": item,
        "task_id": 100 + int(item.strip("i") or 0),
        "annotator": f"u{aid}",
        "label": label if status == "accepted" else None,
        "status": status,
        "reason": None if status == "accepted" else status,
        "lead_time": 3.0,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": kw.get("updated_at", "2026-01-01T00:00:00Z"),
        "raw": {"id": aid},
    }


def ledgers(root, annotations, accepted):
    store = Store(root)
    store.append_jsonl(f"annotations/{PROJECT}.jsonl", annotations)
    store.append_jsonl(
        f"labels/{PROJECT}.jsonl", [{"item_id": i, "label": "a", "cycle": 0} for i in accepted]
    )


def progress(root, items, **kw):
    led = Ledgers(Store(root), PROJECT)
    kw.pop("disputed", None)
    return batch_progress(items, accepted=led.labeled_ids(), answers=led.answers_per_item(), **kw)


def test_the_ledger_rows_are_what_the_annotations_view_reads(tmp_path):
    ledgers(tmp_path, [annotation(1, "i1"), annotation(2, "i1", "skipped")], [])
    rows = Ledgers(Store(tmp_path), PROJECT).annotations()
    assert sorted((r["annotation_id"], r["status"]) for r in rows) == [
        (1, "accepted"),
        (2, "skipped"),
    ]


def test_batch_progress_sorts_items_by_where_they_stand(tmp_path):
    # 2 answers expected per item, at most 4
    ann = [
        # i1: accepted into the labels ledger
        *[annotation(1, "i1"), annotation(2, "i1")],
        # i2: at max annotations, still disputed
        *[annotation(k, "i2", label="ab"[k % 2]) for k in (3, 4, 5, 6)],
        # i3: both expected answers in, disputed
        *[annotation(7, "i3"), annotation(8, "i3", label="b")],
        # i4: one of two answers in; i5: none
        annotation(9, "i4"),
    ]
    ledgers(tmp_path, ann, accepted=["i1"])
    items = ["i1", "i2", "i3", "i4", "i5"]  # i5: no answer yet
    got = progress(
        tmp_path,
        items,
        disputed={"i2": "agreement 0.50 < 0.66", "i3": "agreement 0.50 < 0.66"},
        annotators_per_item=2,
        max_annotations=4,
    )
    assert got == {
        "total": 5,
        "done": 2,
        "pending": ["i3", "i4", "i5"],
        "review": ["i2"],
        "more": ["i3"],
        "accepted": 1,
    }


def test_all_accepted_batch_is_done(tmp_path):
    ledgers(tmp_path, [annotation(1, "i1"), annotation(2, "i2")], accepted=["i1", "i2"])
    got = progress(tmp_path, ["i1", "i2"], disputed={}, annotators_per_item=1, max_annotations=3)
    assert (got["done"], got["total"], got["accepted"]) == (2, 2, 2)
    assert got["pending"] == got["review"] == got["more"] == []


def test_accepted_item_is_done_even_at_max_annotations(tmp_path):
    ann = [annotation(k, "i1") for k in range(1, 4)]
    ledgers(tmp_path, ann, accepted=["i1"])
    got = progress(tmp_path, ["i1"], disputed={}, annotators_per_item=1, max_annotations=3)
    assert got["review"] == [] and got["done"] == 1


def test_an_updated_annotation_counts_once(tmp_path):
    ann = [
        annotation(1, "i1"),
        # the same annotation, edited later
        annotation(1, "i1", label="b", updated_at="2026-01-02T00:00:00Z"),
    ]
    ledgers(tmp_path, ann, accepted=[])
    got = progress(
        tmp_path,
        ["i1"],
        disputed={"i1": "x"},
        annotators_per_item=2,
        max_annotations=4,
    )
    assert got["more"] == [] and got["pending"] == ["i1"], "one answer of two is in"


def test_items_with_enough_answers_and_no_consensus_get_more(tmp_path):
    # both answers skipped: consensus never saw the item, it is neither accepted nor disputed
    ann = [annotation(1, "i1", "skipped"), annotation(2, "i1", "skipped")]
    ledgers(tmp_path, ann, accepted=[])
    got = progress(tmp_path, ["i1"], disputed={}, annotators_per_item=2, max_annotations=4)
    assert got["more"] == ["i1"] and got["pending"] == ["i1"] and got["done"] == 0


def test_empty_ledgers_leave_everything_pending(tmp_path):
    got = progress(tmp_path, ["i1", "i2"], disputed={}, annotators_per_item=1, max_annotations=2)
    assert got == {
        "total": 2,
        "done": 0,
        "pending": ["i1", "i2"],
        "review": [],
        "more": [],
        "accepted": 0,
    }


def test_other_projects_ledgers_are_ignored(tmp_path):
    store = Store(tmp_path)
    store.append_jsonl("annotations/99.jsonl", [annotation(1, "i1"), annotation(2, "i1")])
    store.append_jsonl("labels/99.jsonl", [{"item_id": "i1"}])
    got = progress(tmp_path, ["i1"], disputed={}, annotators_per_item=1, max_annotations=2)
    assert got["pending"] == ["i1"] and got["accepted"] == 0


# --- Ledgers --------------------------------------------------------------------------------


class CountingStore(Store):
    """A local store that counts ledger reads (a full listing each, on S3)."""

    def __init__(self, root):
        super().__init__(root)
        self.reads: list[str] = []

    def read_jsonl(self, key):
        self.reads.append(key)
        return super().read_jsonl(key)


def test_a_ledger_is_read_once_and_sees_its_own_appends(tmp_path):
    store = CountingStore(tmp_path)
    led = Ledgers(store, PROJECT)
    led.append("annotations", [annotation(1, "i1")])  # before any read: nothing cached
    assert [r["annotation_id"] for r in led.read("annotations")] == [1]
    led.append("annotations", [annotation(2, "i2", "skipped")])
    assert led.answers_per_item() == {"i1": 1, "i2": 1}
    assert led.paid_annotations() == 1, "a skip is free"
    assert store.reads == ["annotations/5.jsonl"], "one read for the whole run"
    fresh = Ledgers(Store(tmp_path), PROJECT).read("annotations")
    assert fresh == led.read("annotations"), "the cache holds what a new reader reads"


def test_ledger_keys_are_per_project_and_unknown_names_are_refused(tmp_path):
    led = Ledgers(Store(tmp_path), 7)
    assert led.key("labels") == "labels/7.jsonl"
    assert led.document_key("collect") == "collect/7.json"
    with pytest.raises(ValueError, match=r"unknown ledger 'label'; ledgers: \[.*'labels'"):
        led.key("label")
    led.append("dispatch", [{"event": "intent", "items": ["a"]}, {"event": "sent", "item_id": "a"}])
    assert led.dispatched_ids() == ["a"]
    assert Ledgers(Store(tmp_path), 8).dispatched_ids() == [], "another project's ledger"


# --- the lease: one run per campaign ---------------------------------------------------------


def test_a_held_campaign_names_its_holder_and_frees_on_release(tmp_path):
    from storage.campaign import CampaignBusy, acquire_lease

    store = Store(tmp_path)
    first = acquire_lease(store, "flow run A", 60)
    with pytest.raises(CampaignBusy, match="held by flow run A since"):
        acquire_lease(store, "flow run B", 60)
    nested = acquire_lease(store, "flow run A", 60)  # its own subflow
    assert nested.seq == first.seq and nested.nested
    nested.release()
    with pytest.raises(CampaignBusy):
        acquire_lease(store, "flow run B", 60)
    first.release()
    second = acquire_lease(store, "flow run B", 60)
    assert second.seq == first.seq + 1
    assert read_state(store).cycle == -1, "the lease touches no state"


def test_the_lease_of_a_run_that_died_lapses_and_the_late_run_learns_it_lost(tmp_path):
    import time

    from storage.campaign import CampaignBusy, acquire_lease

    store = Store(tmp_path)
    dead = acquire_lease(store, "flow run A", 0.2)
    time.sleep(0.3)  # the holder stopped renewing
    taker = acquire_lease(store, "flow run B", 60)
    assert taker.seq == dead.seq + 1
    with pytest.raises(CampaignBusy, match="flow run B"):
        dead.renew()
    dead.release()  # a late release must not free the new holder's lease
    with pytest.raises(CampaignBusy, match="flow run B"):
        acquire_lease(store, "flow run C", 60)


def test_a_lease_needs_a_positive_ttl(tmp_path):
    from storage.campaign import acquire_lease

    with pytest.raises(ValueError, match="ttl_seconds must be > 0, got 0"):
        acquire_lease(Store(tmp_path), "x", 0)


def test_a_replayed_append_writes_nothing_twice(tmp_path):
    led = Ledgers(Store(tmp_path), PROJECT)
    first = [annotation(1, "i1"), annotation(2, "i2")]
    assert led.append("annotations", first) == 2
    edited = annotation(1, "i1", label="b", updated_at="2026-01-02T00:00:00Z")
    assert Ledgers(Store(tmp_path), PROJECT).append("annotations", [*first, edited]) == 1
    led.append("labels", [{"item_id": "i1", "label": "a"}, {"item_id": "i1", "label": "b"}])
    intents = [{"event": "intent", "items": ["i1"]}] * 2
    sent = {"event": "sent", "item_id": "i1", "task_id": 7}
    assert led.append("dispatch", [*intents, sent, sent]) == 3, "intents are not keyed"
    fresh = Ledgers(Store(tmp_path), PROJECT)
    assert [r["label"] for r in fresh.read("labels")] == ["a"], "the first label stays"
    assert len(fresh.read("annotations")) == 3 and fresh.dispatched_ids() == ["i1"]
