"""The run summary, the campaign state and checkpoints, and where an open batch stands."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loopwise.config import CampaignConfig
from storage.store import Store
from tasks.labelstudio import read_annotations
from tasks.qc import batch_progress
from tasks.report import summary_markdown
from tasks.state import (
    campaign_store,
    checkpoint,
    read_state,
    save_checkpoint,
    write_state,
)


@pytest.fixture
def cfg() -> CampaignConfig:
    return CampaignConfig.model_validate(
        {
            "name": "shoes",
            "data": {"source": "pool.csv"},
            "labels": ["a", "b"],
            "labelstudio": {"url": "http://ls.example:8080"},
        }
    )


# --- summary_markdown -----------------------------------------------------------------------


FULL = {
    "cycle": 3,
    "status": "batch dispatched",
    "labels": 120,
    "annotations": 250,
    "cost": 19.2,
    "metric": 0.912345,
    "macro_f1": 0.87654,
    "batch_progress": "4/10 items resolved",
    "quarantined": 2,
    "decision": {"stop": True, "rule": "plateau", "reason": "accuracy gained 0.001 over 3 cycles"},
    "next_run": "none",
    "run_url": "http://mlflow.example/#/experiments/1/runs/abc",
    "project_id": 42,
}


def rows_of(text: str) -> dict[str, str]:
    """The summary table as {label: value}."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 2 and cells[0]:
            out[cells[0]] = cells[1]
    return out


def test_summary_has_every_number_formatted(cfg):
    text = summary_markdown(cfg, FULL)
    assert text.startswith("# Loopwise campaign `shoes` — cycle 3")
    assert "**Status:** batch dispatched" in text
    assert rows_of(text) == {
        "labels accepted": "120",
        "annotations paid": "250",
        "cost spent": "19.20",
        "holdout accuracy": "0.9123",
        "holdout macro-F1": "0.8765",
        "open batch": "4/10 items resolved",
        "rows quarantined this run": "2",
    }


def test_summary_has_the_decision_rule_and_reason(cfg):
    text = summary_markdown(cfg, FULL)
    assert "**Decision:** stop (`plateau`)" in text
    assert "> accuracy gained 0.001 over 3 cycles" in text
    go_on = summary_markdown(
        cfg, {**FULL, "decision": {"stop": False, "rule": "continue", "reason": "r"}}
    )
    assert "**Decision:** go on (`continue`)" in go_on


def test_summary_has_the_links_and_next_run(cfg):
    text = summary_markdown(cfg, FULL)
    assert "- MLflow run: http://mlflow.example/#/experiments/1/runs/abc" in text
    assert "- Label Studio project: http://ls.example:8080/projects/42" in text
    assert "**Next run:** none" in text


def test_summary_omits_absent_keys(cfg):
    text = summary_markdown(cfg, {"cycle": 0, "status": "waiting", "labels": 0, "project_id": 7})
    assert rows_of(text) == {"labels accepted": "0"}
    for absent in ("cost spent", "holdout accuracy", "Decision", "Next run", "MLflow run"):
        assert absent not in text
    assert "/projects/7" in text


def test_summary_omits_keys_given_as_none_but_keeps_zero(cfg):
    text = summary_markdown(cfg, {**FULL, "metric": None, "run_url": None, "cost": 0.0})
    rows = rows_of(text)
    assert "holdout accuracy" not in rows
    assert rows["cost spent"] == "0.00"
    assert "MLflow run" not in text


def test_summary_without_a_project_has_no_project_link(cfg):
    text = summary_markdown(cfg, {"cycle": 0, "status": "new"})
    assert "projects/None" not in text


# --- state and checkpoints ------------------------------------------------------------------


def test_a_new_campaign_starts_before_cycle_zero(tmp_path):
    store = Store(tmp_path)
    state = read_state(store)
    assert state == {"cycle": -1, "stage": "new", "history": [], "rechecks": 0, "stopped": False}
    state["history"].append("x")
    assert read_state(store)["history"] == [], "the default is not shared between calls"
    assert list(tmp_path.iterdir()) == [], "reading writes nothing"


def test_write_state_replaces_the_file_and_keeps_other_keys(tmp_path):
    store = Store(tmp_path)
    first = write_state(store, read_state(store), cycle=0, stage="started", open_batch=["i1"])
    assert read_state(store) == first
    assert first["updated_at"]
    second = write_state(store, first, stage="trained")
    assert second["stage"] == "trained"
    assert (second["cycle"], second["open_batch"], second["history"]) == (0, ["i1"], [])
    assert first["stage"] == "started", "the given state is not modified"
    on_disk = json.loads((tmp_path / "state.json").read_text())
    assert on_disk == second
    # replaced atomically: one document, no temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_write_state_without_changes_rewrites_the_state(tmp_path):
    store = Store(tmp_path)
    state = {"cycle": 4, "stage": "waiting", "custom": {"k": 1}}
    written = write_state(store, state)
    assert {k: v for k, v in written.items() if k != "updated_at"} == state
    assert read_state(store)["custom"] == {"k": 1}


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


def test_the_ledger_rows_are_what_read_annotations_reads(tmp_path):
    ledgers(tmp_path, [annotation(1, "i1"), annotation(2, "i1", "skipped")], [])
    rows = read_annotations(str(tmp_path), PROJECT)
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
    got = batch_progress(
        str(tmp_path),
        PROJECT,
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
    got = batch_progress(
        str(tmp_path), PROJECT, ["i1", "i2"], disputed={}, annotators_per_item=1, max_annotations=3
    )
    assert (got["done"], got["total"], got["accepted"]) == (2, 2, 2)
    assert got["pending"] == got["review"] == got["more"] == []


def test_accepted_item_is_done_even_at_max_annotations(tmp_path):
    ann = [annotation(k, "i1") for k in range(1, 4)]
    ledgers(tmp_path, ann, accepted=["i1"])
    got = batch_progress(
        str(tmp_path), PROJECT, ["i1"], disputed={}, annotators_per_item=1, max_annotations=3
    )
    assert got["review"] == [] and got["done"] == 1


def test_an_updated_annotation_counts_once(tmp_path):
    ann = [
        annotation(1, "i1"),
        # the same annotation, edited later
        annotation(1, "i1", label="b", updated_at="2026-01-02T00:00:00Z"),
    ]
    ledgers(tmp_path, ann, accepted=[])
    got = batch_progress(
        str(tmp_path),
        PROJECT,
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
    got = batch_progress(
        str(tmp_path), PROJECT, ["i1"], disputed={}, annotators_per_item=2, max_annotations=4
    )
    assert got["more"] == ["i1"] and got["pending"] == ["i1"] and got["done"] == 0


def test_empty_ledgers_leave_everything_pending(tmp_path):
    got = batch_progress(
        str(tmp_path), PROJECT, ["i1", "i2"], disputed={}, annotators_per_item=1, max_annotations=2
    )
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
    got = batch_progress(
        str(tmp_path), PROJECT, ["i1"], disputed={}, annotators_per_item=1, max_annotations=2
    )
    assert got["pending"] == ["i1"] and got["accepted"] == 0
