"""The overlap policies against a real Label Studio: the overlap of exactly the right
tasks is set or raised, nothing is dispatched twice, relabels and corrections."""

from __future__ import annotations

import itertools

import pytest

from devstack import annotators
from devstack.annotators import AnnotatorProfile
from loopwise.batch import batch_progress
from loopwise.overlap import OverlapPolicy
from storage.campaign import Ledgers
from storage.store import Store
from tasks import labelstudio, qc
from tasks.labelstudio import LabelStudioTarget

pytestmark = pytest.mark.integration

LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
_titles = itertools.count()


def _truth(i: int) -> str:
    return LABELS[(i * 7) % len(LABELS)]


def _batch(n: int, wrong_every: int = 3, offset: int = 0) -> list[dict]:
    """n items; the model is sure and right on most, sure and wrong on every third."""
    rows = []
    for i in range(offset, offset + n):
        right = i % wrong_every != 0
        guess = _truth(i) if right else LABELS[(LABELS.index(_truth(i)) + 1) % len(LABELS)]
        rows.append(
            {
                "item_id": f"q{i:04d}",
                "data": {"text": f"question {i}?"},
                "prediction_label": guess,
                "prediction_score": 0.95,
                "query_score": 1.0 - i / 100,
            }
        )
    return rows


def _project(server, tmp_path, overlap: int) -> tuple[LabelStudioTarget, str]:
    title = f"overlap-{next(_titles)}-{tmp_path.name}"
    target = LabelStudioTarget(server.url, server.token)
    pid = labelstudio.ensure_project.fn(target, title, LABELS, "text", overlap=overlap)
    return target.for_project(pid), str(tmp_path / "store")


def _ledgers(store: str, target: LabelStudioTarget) -> Ledgers:
    return Ledgers(Store(store), target.project)


def _overlaps(client, pid: int) -> dict[str, int]:
    tasks = client.tasks.list(project=pid, fields="all", page_size=1000)
    return {t.data["item_id"]: int(t.overlap) for t in tasks}


def _answers(client, pid: int) -> dict[str, int]:
    tasks = client.tasks.list(project=pid, fields="all", page_size=1000)
    return {t.data["item_id"]: len(t.annotations or []) for t in tasks}


def _round(server, target, store, truth, profiles, policy, seed, items=None):
    """One check of the open batch (``items``, default every item of ``truth``), as the
    advance stage does it: collect, consensus, the items that need another answer get
    their overlap raised."""
    annotators.simulate_annotators(
        server.url, server.token, target.project, truth, profiles, labels=LABELS, random_state=seed
    )
    labelstudio.collect_annotations.fn(target, _ledgers(store, target), LABELS)
    out = qc.consensus_qc.fn(
        _ledgers(store, target), LABELS, cycle=1, policy=policy, min_annotations=policy.initial
    )
    led = _ledgers(store, target)
    progress = batch_progress(
        sorted(items or truth),
        accepted=led.labeled_ids(),
        answers=led.answers_per_item(),
        annotators_per_item=policy.initial,
        max_annotations=policy.max_annotations,
    )
    raised = qc.request_more_annotations.fn(
        target, led, progress["more"], cycle=1, max_annotations=policy.max_annotations
    )
    return out, progress, raised


def test_adaptive_raises_the_overlap_of_exactly_the_doubtful_items(label_studio, tmp_path):
    target, store = _project(label_studio, tmp_path, overlap=1)
    client = target.client()
    policy = OverlapPolicy("adaptive", max_annotations=3)
    profiles = [AnnotatorProfile(name=f"ov{i}", accuracy=1.0) for i in range(3)]
    # Batch 1: nobody's accuracy is known yet, so every item answered alone gets a second
    # answer (calibration), whatever the model says.
    first = _batch(18)
    truth = {b["item_id"]: _truth(i) for i, b in enumerate(first)}
    receipt = labelstudio.dispatch_batch.fn(
        target, _ledgers(store, target), first, cycle=1, labels=LABELS, overlap=policy.initial
    )
    assert receipt["created"] == 18
    assert set(_overlaps(client, target.project).values()) == {1}
    out, progress, raised = _round(label_studio, target, store, truth, profiles, policy, 0)
    assert set(raised) == set(truth) and set(progress["more"]) == set(truth)
    assert all("calibrating annotator" in out["disputed"][i] for i in truth)
    _round(label_studio, target, store, truth, profiles, policy, 1)
    assert set(_ledgers(store, target).current_labels()) == set(truth)
    # Batch 2: the annotators are known to be reliable now. One answer that agrees with a
    # sure model is enough; only where the model was wrong may an item need another (a
    # reliable enough annotator outweighs the model alone).
    second = _batch(18, offset=18)
    items = [b["item_id"] for b in second]
    truth |= {b["item_id"]: _truth(18 + i) for i, b in enumerate(second)}
    labelstudio.dispatch_batch.fn(
        target, _ledgers(store, target), second, cycle=2, labels=LABELS, overlap=policy.initial
    )
    out, progress, raised = _round(
        label_studio, target, store, truth, profiles, policy, 2, items=items
    )
    model_wrong = {b["item_id"] for i, b in enumerate(second) if (18 + i) % 3 == 0}
    assert set(progress["more"]) == set(raised) == set(out["disputed"])
    assert set(raised) <= model_wrong
    overlaps = {i: n for i, n in _overlaps(client, target.project).items() if i in items}
    assert {i for i, n in overlaps.items() if n == 2} == set(raised)
    assert {i for i, n in overlaps.items() if n == 1} == set(items) - set(raised)
    _round(label_studio, target, store, truth, profiles, policy, 3, items=items)
    labels = _ledgers(store, target).current_labels()
    assert set(labels) == set(truth), "two agreeing answers outweigh the model"
    assert all(r["label"] == truth[i] for i, r in labels.items())
    answers = _answers(client, target.project)
    assert sum(answers[i] for i in items) == 18 + len(raised), "one more per doubtful item"
    # nothing dispatched twice: the same batches again create no task
    for cycle, batch in ((1, first), (2, second)):
        again = labelstudio.dispatch_batch.fn(
            target, _ledgers(store, target), batch, cycle=cycle, labels=LABELS, overlap=1
        )
        assert again["created"] == 0
    assert len(_overlaps(client, target.project)) == 36
    after = _overlaps(client, target.project)
    assert {i: after[i] for i in items} == overlaps


def test_a_project_asking_for_more_gets_the_policys_overlap_per_task(label_studio, tmp_path):
    # an existing project created for a fixed overlap of 3, now run adaptively
    target, store = _project(label_studio, tmp_path, overlap=3)
    client = target.client()
    batch = _batch(6)
    labelstudio.dispatch_batch.fn(
        target, _ledgers(store, target), batch[:3], cycle=1, labels=LABELS, overlap=1
    )
    assert set(_overlaps(client, target.project).values()) == {1}
    # a fixed policy on the same project keeps the project's overlap for its tasks
    labelstudio.dispatch_batch.fn(
        target, _ledgers(store, target), batch[3:], cycle=2, labels=LABELS, overlap=3
    )
    overlaps = _overlaps(client, target.project)
    assert [overlaps[b["item_id"]] for b in batch] == [1, 1, 1, 3, 3, 3]
    receipts = [r for r in _ledgers(store, target).read("dispatch") if r["event"] == "sent"]
    assert {r["prediction_label"] for r in receipts} <= set(LABELS)
    assert all(r["prediction_score"] == 0.95 for r in receipts)


def test_fixed_two_gets_two_answers_per_item(label_studio, tmp_path):
    policy = OverlapPolicy("fixed", annotators=2, max_annotations=3)
    target, store = _project(label_studio, tmp_path, overlap=policy.initial)
    batch = _batch(6)
    truth = {b["item_id"]: _truth(i) for i, b in enumerate(batch)}
    labelstudio.dispatch_batch.fn(
        target, _ledgers(store, target), batch, cycle=1, labels=LABELS, overlap=policy.initial
    )
    profiles = [AnnotatorProfile(name=f"fx{i}", accuracy=1.0) for i in range(3)]
    out, _, raised = _round(label_studio, target, store, truth, profiles, policy, 0)
    assert set(_answers(target.client(), target.project).values()) == {2}
    assert out["accepted_new"] == 6 and not raised


def test_a_relabel_raises_one_task_and_a_new_consensus_corrects_it(label_studio, tmp_path):
    policy = OverlapPolicy("fixed", annotators=1, max_annotations=3)
    target, store = _project(label_studio, tmp_path, overlap=1)
    batch = _batch(3)
    truth = {b["item_id"]: _truth(i) for i, b in enumerate(batch)}
    labelstudio.dispatch_batch.fn(target, _ledgers(store, target), batch, cycle=1, labels=LABELS)
    liar = AnnotatorProfile(name="liar", accuracy=0.0)  # always wrong
    annotators.simulate_annotators(
        label_studio.url, label_studio.token, target.project, truth, [liar], labels=LABELS
    )
    labelstudio.collect_annotations.fn(target, _ledgers(store, target), LABELS)
    qc.consensus_qc.fn(_ledgers(store, target), LABELS, cycle=1, policy=policy)
    wrong = _ledgers(store, target).current_labels()
    assert all(wrong[i]["label"] != truth[i] for i in truth)
    item = "q0001"
    qc.request_more_annotations.fn(
        target, _ledgers(store, target), [item], reasons={item: "relabel"}, cycle=2
    )
    overlaps = _overlaps(target.client(), target.project)
    assert overlaps == {"q0000": 1, "q0001": 2, "q0002": 1}
    good = [AnnotatorProfile(name=f"rl{i}", accuracy=1.0) for i in range(2)]
    annotators.simulate_annotators(
        label_studio.url, label_studio.token, target.project, truth, good, labels=LABELS
    )
    labelstudio.collect_annotations.fn(target, _ledgers(store, target), LABELS)
    qc.request_more_annotations.fn(
        target, _ledgers(store, target), [item], reasons={item: "relabel"}, cycle=2
    )
    annotators.simulate_annotators(
        label_studio.url, label_studio.token, target.project, truth, good, labels=LABELS
    )
    labelstudio.collect_annotations.fn(target, _ledgers(store, target), LABELS)
    out = qc.consensus_qc.fn(_ledgers(store, target), LABELS, cycle=2, policy=policy)
    assert out["corrected_new"] == 1
    records = [r for r in _ledgers(store, target).read("labels") if r["item_id"] == item]
    assert [r["version"] for r in records] == [1, 2]
    assert records[0]["label"] == wrong[item]["label"] and records[1]["label"] == truth[item]
    assert records[1]["supersedes"] == 1 and "consensus of 3 answers" in records[1]["reason"]
    # every annotation the liar gave is still in the ledger
    assert sum(r["item_id"] == item for r in _ledgers(store, target).annotations()) == 3
