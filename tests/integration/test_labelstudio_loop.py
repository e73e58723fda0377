"""Dispatch, polling and consensus against a real Label Studio server on 127.0.0.1."""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import pandas as pd
import pytest

from devstack import annotators
from devstack.annotators import AnnotatorProfile
from loopwise import consensus
from storage.campaign import Ledgers
from storage.store import Store
from tasks import labelstudio
from tasks.labelstudio import LabelStudioTarget

pytestmark = pytest.mark.integration

LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
_titles = itertools.count()


def _batch(n, offset=0, seed=0):
    rng = np.random.RandomState(seed)
    rows = []
    for i in range(offset, offset + n):
        rows.append(
            {
                "item_id": f"q{i:05d}",
                "data": {"text": f"question number {i}?"},
                "prediction_label": LABELS[i % len(LABELS)],
                "prediction_score": float(rng.uniform(0.3, 0.9)),
                "query_score": float(1.0 - i / 1000),
            }
        )
    return rows


def _on(server, pid=None):
    """The Label Studio target of a server (and a project)."""
    return LabelStudioTarget(server.url, server.token, pid)


def _ledgers(store, pid):
    """The project's ledgers as a new run reads them."""
    return Ledgers(Store(store), pid)


def _truth(batch):
    return {b["item_id"]: LABELS[(int(b["item_id"][1:]) * 7) % len(LABELS)] for b in batch}


@pytest.fixture
def project(label_studio, ls_client, tmp_path):
    title = f"loopwise-test-{next(_titles)}-{tmp_path.name}"
    pid = labelstudio.ensure_project.fn(_on(label_studio), title, LABELS, "text", overlap=3)
    return pid, str(tmp_path / "store")


def _server_tasks(ls_client, pid):
    return list(ls_client.tasks.list(project=pid, fields="task_only", page_size=1000))


def test_project_is_found_again_and_a_different_label_set_is_refused(
    label_studio, ls_client, project
):
    pid, _ = project
    title = ls_client.projects.get(id=pid).title
    again = labelstudio.ensure_project.fn(_on(label_studio), title, LABELS, "text", overlap=3)
    assert again == pid
    before = ls_client.projects.get(id=pid).label_config
    with pytest.raises(labelstudio.ProjectMismatchError, match="left untouched"):
        labelstudio.ensure_project.fn(_on(label_studio), title, ["yes", "no"], "text")
    assert ls_client.projects.get(id=pid).label_config == before
    p = ls_client.projects.get(id=pid)
    assert p.maximum_annotations == 3 and p.sampling == "Sequential sampling"


def test_redispatch_creates_no_task_and_order_is_best_first(label_studio, ls_client, project):
    pid, store = project
    batch = _batch(30)
    r1 = labelstudio.dispatch_batch.fn(
        _on(label_studio, pid),
        _ledgers(store, pid),
        batch,
        cycle=1,
        model_version="m1",
        labels=LABELS,
        chunk_size=8,
    )
    assert r1["created"] == 30 and r1["already_dispatched"] == 0
    r2 = labelstudio.dispatch_batch.fn(
        _on(label_studio, pid),
        _ledgers(store, pid),
        batch,
        cycle=1,
        model_version="m1",
        labels=LABELS,
    )
    assert (
        r2["created"] == 0 and r2["already_dispatched"] == 30 and r2["task_ids"] == r1["task_ids"]
    )
    tasks = _server_tasks(ls_client, pid)
    assert len(tasks) == 30
    # the receipt maps each item to the task that holds it, and id order is best-first order
    by_id = {int(t.id): t.data["item_id"] for t in tasks}
    assert all(by_id[tid] == item for item, tid in r1["task_ids"].items())
    assert [by_id[i] for i in sorted(by_id)] == [b["item_id"] for b in batch]
    full = ls_client.tasks.get(id=r1["task_ids"]["q00000"])
    pred = full.predictions[0]
    assert pred.model_version == "m1" and pred.result[0]["value"]["choices"] == ["ABBR"]
    assert full.data["query_score"] == pytest.approx(1.0)


def test_a_crash_between_import_and_receipt_is_reconciled_without_duplicates(
    label_studio, ls_client, project, monkeypatch
):
    pid, store = project
    batch = _batch(12)
    real_append = Store.append_jsonl

    def crash_on_receipt(self, key, records):
        records = list(records)
        if records and records[0].get("event") == "sent":
            raise OSError("disk went away after the import")  # a fault a real server cannot produce
        return real_append(self, key, records)

    monkeypatch.setattr(Store, "append_jsonl", crash_on_receipt)
    with pytest.raises(OSError, match="disk went away"):
        labelstudio.dispatch_batch.fn(
            _on(label_studio, pid),
            _ledgers(store, pid),
            batch,
            cycle=1,
            labels=LABELS,
        )
    monkeypatch.setattr(Store, "append_jsonl", real_append)
    r = labelstudio.dispatch_batch.fn(
        _on(label_studio, pid),
        _ledgers(store, pid),
        batch + _batch(3, offset=12),
        cycle=1,
        labels=LABELS,
    )
    assert r["created"] == 3 and r["already_dispatched"] == 12
    items = [t.data["item_id"] for t in _server_tasks(ls_client, pid)]
    assert len(items) == len(set(items)) == 15


def test_overlap_consensus_and_a_planted_bad_annotator(label_studio, ls_client, project):
    pid, store = project
    batch = _batch(40)
    truth = _truth(batch)
    labelstudio.dispatch_batch.fn(
        _on(label_studio, pid), _ledgers(store, pid), batch, cycle=1, labels=LABELS
    )
    profiles = [AnnotatorProfile(name=f"good{i}", accuracy=0.92) for i in range(4)]
    profiles.append(AnnotatorProfile(name="careless", accuracy=0.15))
    out = annotators.simulate_annotators(
        label_studio.url, label_studio.token, pid, truth, profiles, labels=LABELS, random_state=1
    )
    assert out["posted"] == 40 * 3
    got = labelstudio.collect_annotations.fn(_on(label_studio, pid), _ledgers(store, pid), LABELS)
    assert got["new"] == 120 and got["accepted"] == 120
    rows = pd.DataFrame(_ledgers(store, pid).annotations(["accepted"]))
    # overlap honoured: every item has exactly 3 annotations by 3 distinct annotators
    per_item = rows.groupby("item_id")["annotator"].agg(["count", "nunique"])
    assert (per_item["count"] == 3).all() and (per_item["nunique"] == 3).all()
    table = rows.rename(columns={"item_id": "item"})[["item", "annotator", "label"]]
    ds = consensus.dawid_skene(table, labels=LABELS, random_state=0)
    careless_id = str(out["users"]["careless"])
    assert ds.annotator_accuracy.index[-1] == careless_id
    accepted, disputed = consensus.accept(ds.labels, min_agreement=0.66)
    acc = np.mean([accepted.loc[i, "label"] == truth[i] for i in accepted.index])
    careless_rows = table[table.annotator == careless_id]
    careless_acc = np.mean(
        [
            truth[i] == lab
            for i, lab in zip(careless_rows["item"], careless_rows["label"], strict=True)
        ]
    )
    assert acc >= 0.95 > careless_acc + 0.5
    # the careless annotator's lone dissent never becomes the accepted label
    assert len(accepted) + len(disputed) == 40


def test_malformed_annotations_are_rejected_logged_and_kept(
    label_studio, ls_client, project, caplog
):
    pid, store = project
    r = labelstudio.dispatch_batch.fn(
        _on(label_studio, pid),
        _ledgers(store, pid),
        _batch(4),
        cycle=1,
        labels=LABELS,
    )
    t = r["task_ids"]
    me = ls_client.users.whoami().id
    good = [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["HUM"]}}
    ]
    unknown_label = [
        {
            "from_name": "label",
            "to_name": "text",
            "type": "choices",
            "value": {"choices": ["PERSON"]},
        }
    ]
    unknown_control = [
        {
            "from_name": "sentiment",
            "to_name": "text",
            "type": "choices",
            "value": {"choices": ["HUM"]},
        }
    ]
    ls_client.annotations.create(id=t["q00000"], result=good, completed_by=me)
    ls_client.annotations.create(id=t["q00001"], result=unknown_label, completed_by=me)
    ls_client.annotations.create(id=t["q00002"], result=unknown_control, completed_by=me)
    ls_client.annotations.create(id=t["q00003"], result=[], completed_by=me, was_cancelled=True)
    with caplog.at_level(logging.WARNING, logger="tasks.labelstudio"):
        got = labelstudio.collect_annotations.fn(
            _on(label_studio, pid), _ledgers(store, pid), LABELS
        )
    assert (got["accepted"], got["rejected"], got["cancelled"]) == (1, 2, 1)
    rows = {r["item_id"]: r for r in _ledgers(store, pid).annotations()}
    assert rows["q00001"]["status"] == "rejected" and "PERSON" in rows["q00001"]["reason"]
    assert rows["q00002"]["status"] == "rejected" and "sentiment" in rows["q00002"]["reason"]
    assert rows["q00001"]["raw"]["result"] == unknown_label  # kept whole
    assert sum("rejected" in m for m in caplog.messages) == 2
    # polling again finds nothing new: no duplicate rows in the ledger
    again = labelstudio.collect_annotations.fn(_on(label_studio, pid), _ledgers(store, pid), LABELS)
    assert again["new"] == 0
    assert len(Store(store).read_jsonl(f"annotations/{pid}.jsonl")) == 4


def test_polling_is_incremental_and_an_edited_annotation_is_appended_not_overwritten(
    label_studio, ls_client, project
):
    pid, store = project
    r = labelstudio.dispatch_batch.fn(
        _on(label_studio, pid),
        _ledgers(store, pid),
        _batch(10),
        cycle=1,
        labels=LABELS,
    )
    me = ls_client.users.whoami().id
    time.sleep(1.5)  # let the import fall behind the one-second polling margin

    def res(lab):
        return [
            {
                "from_name": "label",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": [lab]},
            }
        ]

    first = ls_client.annotations.create(
        id=r["task_ids"]["q00000"], result=res("HUM"), completed_by=me
    )
    assert (
        labelstudio.collect_annotations.fn(_on(label_studio, pid), _ledgers(store, pid), LABELS)[
            "new"
        ]
        == 1
    )
    ls_client.annotations.create(id=r["task_ids"]["q00005"], result=res("LOC"), completed_by=me)
    ls_client.annotations.update(id=first.id, result=res("NUM"))
    second = labelstudio.collect_annotations.fn(
        _on(label_studio, pid), _ledgers(store, pid), LABELS
    )
    # only the two changed tasks were read
    assert second["new"] == 2 and second["mode"] == "incremental" and second["tasks_read"] == 2
    ledger = Store(store).read_jsonl(f"annotations/{pid}.jsonl")
    versions = [row["label"] for row in ledger if row["annotation_id"] == first.id]
    assert versions == ["HUM", "NUM"]  # both versions kept
    latest = {row["annotation_id"]: row["label"] for row in _ledgers(store, pid).annotations()}
    assert latest[first.id] == "NUM"


def test_a_restart_between_dispatch_and_polling_loses_nothing(ls_work_dir, tmp_path):
    from devstack import labelstudio_server as lss

    data, state, store = tmp_path / "ls", tmp_path / "server.json", str(tmp_path / "store")
    info = lss.start(ls_work_dir, data_dir=data, state_file=state)
    try:
        pid = labelstudio.ensure_project.fn(_on(info), "restart", LABELS, "text", overlap=2)
        batch = _batch(12)
        labelstudio.dispatch_batch.fn(
            _on(info, pid), _ledgers(store, pid), batch, cycle=1, labels=LABELS
        )
        profiles = [AnnotatorProfile(name=n, accuracy=0.9) for n in ("ana", "ben", "cy")]
        annotators.simulate_annotators(
            info.url, info.token, pid, _truth(batch), profiles, labels=LABELS, random_state=0
        )
        lss.stop(info)
        info = lss.start(ls_work_dir, info.port, data_dir=data, state_file=state)
        got = labelstudio.collect_annotations.fn(_on(info, pid), _ledgers(store, pid), LABELS)
        assert got["new"] == 24 and got["accepted"] + got["cancelled"] == 24
        again = labelstudio.dispatch_batch.fn(
            _on(info, pid), _ledgers(store, pid), batch, cycle=1, labels=LABELS
        )
        assert again["created"] == 0
    finally:
        lss.stop(info)


def test_adaptive_overlap_and_consensus_qc_through_the_server(label_studio, project, tmp_path):
    from loopwise.consensus import AdaptiveOverlap
    from tasks import qc

    url, token = label_studio.url, label_studio.token
    pid, store = project
    # a project asking for 3 annotators per item, run adaptively: 1 by default, more on doubt
    from tasks.labelstudio import connect

    connect(url, token).projects.update(id=pid, maximum_annotations=1)
    batch = _batch(30)
    truth = _truth(batch)
    rng = np.random.RandomState(0)
    predictions = {}
    for i, item in enumerate(sorted(truth)):
        right = i % 3 != 0
        wrong = LABELS[(LABELS.index(truth[item]) + 1) % len(LABELS)]
        predictions[item] = (truth[item], 0.95) if right else (wrong, float(rng.uniform(0.3, 0.6)))
    labelstudio.dispatch_batch.fn(
        _on(label_studio, pid), _ledgers(store, pid), batch, cycle=1, labels=LABELS
    )
    profiles = [AnnotatorProfile(name=f"adapt{i}", accuracy=0.9) for i in range(3)]
    policy = AdaptiveOverlap(confidence_threshold=0.8, max_annotations=3)
    for round_ in range(3):
        annotators.simulate_annotators(
            url, token, pid, truth, profiles, labels=LABELS, random_state=round_
        )
        labelstudio.collect_annotations.fn(_on(label_studio, pid), _ledgers(store, pid), LABELS)
        more = qc.plan_adaptive_overlap(_ledgers(store, pid), predictions, policy)
        raised = qc.request_more_annotations.fn(
            _on(label_studio, pid), _ledgers(store, pid), more, cycle=1, max_annotations=3
        )
        if not raised:
            break
    rows = _ledgers(store, pid).annotations(["accepted"])
    assert 30 < len(rows) < 90  # more than one per item where in doubt, far fewer than full overlap
    doubtful = {item for item, (_, conf) in predictions.items() if conf < 0.8}
    per_item = pd.Series([r["item_id"] for r in rows]).value_counts()
    assert (per_item[list(doubtful)] >= 2).all()
    out = qc.consensus_qc.fn(_ledgers(store, pid), LABELS, cycle=1, min_agreement=0.66)
    ledger = Store(store).read_jsonl(f"labels/{pid}.jsonl")
    assert out["accepted_new"] == len(ledger) > 20
    assert not set(out["disputed"]) & {r["item_id"] for r in ledger}
    assert np.mean([r["label"] == truth[r["item_id"]] for r in ledger]) >= 0.9
    assert all(r["task_id"] and r["annotators"] for r in ledger)
    # re-running QC appends nothing: the ledger is append-only and idempotent
    assert qc.consensus_qc.fn(_ledgers(store, pid), LABELS, cycle=1)["accepted_new"] == 0


def test_cli_simulates_annotators_from_a_profile_file(label_studio, project, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import app

    pid, store = project
    batch = _batch(6)
    labelstudio.dispatch_batch.fn(
        _on(label_studio, pid), _ledgers(store, pid), batch, cycle=1, labels=LABELS
    )
    truth = tmp_path / "truth.csv"
    pd.DataFrame({"item_id": list(_truth(batch)), "label": list(_truth(batch).values())}).to_csv(
        truth, index=False
    )
    monkeypatch.setenv("LOOPWISE_TEST_TOKEN", label_studio.token)
    args = [
        "annotators",
        "simulate",
        "--project-id",
        str(pid),
        "--truth",
        str(truth),
        "--url",
        label_studio.url,
        "--token-env",
        "LOOPWISE_TEST_TOKEN",
    ]
    out = CliRunner().invoke(app, [*args, "--profiles", "configs/annotators.yaml"])
    assert out.exit_code == 0, out.output
    assert "posted 18 annotations" in out.output  # 6 items × overlap 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("annotators:\n  - {name: eve, accuracy: 1.7}\n")
    out = CliRunner().invoke(app, [*args, "--profiles", str(bad)])
    assert out.exit_code != 0 and "annotators.0.accuracy" in out.output


def test_tasks_wanting_more_answers_than_there_are_annotators_are_reported(label_studio, project):
    pid, store = project  # overlap 3
    batch = _batch(4, offset=900)
    labelstudio.dispatch_batch.fn(
        _on(label_studio, pid), _ledgers(store, pid), batch, cycle=1, labels=LABELS
    )
    two = [AnnotatorProfile(name=f"pair{i}", accuracy=0.9) for i in range(2)]
    out = annotators.simulate_annotators(
        label_studio.url, label_studio.token, pid, _truth(batch), two, labels=LABELS
    )
    assert out["posted"] == 4 * 2  # each task gets both, and still wants a third
    assert sorted(out["starved"]) == sorted(b["item_id"] for b in batch)
    three = [*two, AnnotatorProfile(name="third", accuracy=0.9)]
    out = annotators.simulate_annotators(
        label_studio.url, label_studio.token, pid, _truth(batch), three, labels=LABELS
    )
    assert out["posted"] == 4 and out["starved"] == []
