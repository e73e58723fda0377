"""Rows deleted from the pool file between cycles: no paid label moves or is dropped.

A real Label Studio, Prefect's test harness, MLflow on SQLite. Each scenario runs a small
campaign for two cycles with a perfect simulated annotator (a paid label is the item's
true label), deletes rows from the file, and runs on:

- ``no-id``: the pool has no id column, so items are named by their content; 30 rows are
  deleted, among them labeled items and items of the batch out with annotators, and
  rows in front of them (which shifted every later row-number id before);
- ``id-column``: the pool has an id column; 10 labeled or in-batch items are deleted and
  one labeled item's values are changed in the file.

Each scenario runs once (a module fixture); each test checks one claim on what it left.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_classification

from storage.store import Store

pytestmark = pytest.mark.integration

LABELS = ["ant", "bee", "cat", "dog"]
FEATURES = [f"f{i}" for i in range(6)]
BATCH = 20
_names = itertools.count()


def _pool(with_ids: bool) -> pd.DataFrame:
    X, y = make_classification(
        n_samples=600,
        n_features=6,
        n_informative=5,
        n_redundant=0,
        n_classes=4,
        n_clusters_per_class=1,
        class_sep=1.6,
        random_state=11,
    )
    df = pd.DataFrame(X.round(4), columns=FEATURES)
    if with_ids:
        df.insert(0, "uid", [f"u{i:04d}" for i in range(len(df))])
    df["truth"] = np.asarray(LABELS)[y]
    return df


def _write_campaign(tmp: Path, label_studio, name: str, df: pd.DataFrame) -> Path:
    df.to_csv(tmp / "pool.csv", index=False)
    cfg = {
        "name": name,
        "data": {
            "source": str(tmp / "pool.csv"),
            "label_column": "truth",
            "holdout": {"fraction": 0.3},
            **({"id_column": "uid"} if "uid" in df.columns else {}),
        },
        "labels": LABELS,
        "batch_size": BATCH,
        "cold_start_size": BATCH,
        "annotators_per_item": 1,
        "max_annotations_per_item": 1,
        "budget": {"labels": 400, "cost_per_annotation": 0.1},
        "stopping": {"kappa_threshold": None, "plateau_epsilon": 0.0001, "plateau_window": 5},
        "stop_set_size": 100,
        "labelstudio": {"url": label_studio.url, "token_env": "LOOPWISE_TEST_LS_TOKEN"},
        "storage_root": str(tmp / "store"),
        "mlflow": {
            "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
            "artifact_location": (tmp / "mlartifacts").as_uri(),
        },
        "schedule": {"recheck_seconds": 3600},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Edited:
    """What a campaign left after two cycles, a pool edit, and the cycles after it."""

    original: pd.DataFrame  # the file before the edit, with the ids the campaign gave it
    truth: dict[str, str]  # item id → true label, from the file before the edit
    truth_after: dict[str, str]  # the same, read from the edited file
    removed: set[str]  # sent items whose rows were deleted
    changed: set[str]  # sent items whose values were changed in the file
    deleted_rows: int
    labels: list[dict[str, Any]]  # the labels ledger at the end
    edits: list[dict[str, Any]]  # the edits ledger at the end
    edits_after_first: list[dict[str, Any]]  # the edits ledger after the first run after the edit
    snapshot: pd.DataFrame  # the training set of the first cycle after the edit
    snapshot_labels: int  # accepted labels when that cycle trained
    history: list[dict[str, Any]]
    warnings: list[str]  # what loopwise.data warned about
    status: str  # `loopwise status` at the end, whitespace collapsed
    report: dict[str, Any] | None


def _run(label_studio, tmp: Path, with_ids: bool, edit) -> Iterator[Edited]:
    """The campaign: cold start, two cycles, ``edit`` of the file, two more cycles."""
    from typer.testing import CliRunner

    from devstack.campaign import annotate_campaign, campaign_project_id, ground_truth
    from flows.cli import app
    from flows.cycle import cycle
    from loopwise.annotators import AnnotatorProfile
    from loopwise.config import load_campaign
    from tasks.data import load_pool

    sure = [AnnotatorProfile(name="ann", accuracy=1.0, latency=1.0)]
    warned = _Warnings()
    logging.getLogger("loopwise.data").addHandler(warned)
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
            path = _write_campaign(tmp, label_studio, f"edits-{next(_names)}", _pool(with_ids))
            cfg = load_campaign(path)
            store = Store(f"{cfg.storage_root}/{cfg.name}")
            original = load_pool.fn(cfg)
            truth = ground_truth(cfg)
            pid = None
            for seed in (1, 2, 3):  # cold start, cycle 1, cycle 2 (its batch goes out)
                assert cycle(campaign=str(path))["status"] == "dispatched"
                pid = pid or campaign_project_id(cfg, label_studio.token)
                if seed < 3:
                    annotate_campaign(cfg, label_studio.token, pid, truth, sure, seed=seed)
            removed, changed, deleted_rows = edit(tmp / "pool.csv", original, store, pid)
            # the open batch is answered after the edit, from the labels the items had
            annotate_campaign(cfg, label_studio.token, pid, truth, sure, seed=3)
            assert cycle(campaign=str(path))["status"] == "dispatched"
            edits_after_first = store.read_jsonl(f"edits/{pid}.jsonl")
            k = store.read_json("state.json")["cycle"]
            snapshot = store.read_parquet(
                store.read_json(f"cycles/{k:04d}/trained.json")["snapshot"]["key"]
            )
            snapshot_labels = len(store.read_jsonl(f"labels/{pid}.jsonl"))
            annotate_campaign(cfg, label_studio.token, pid, truth, sure, seed=4)
            assert cycle(campaign=str(path))["status"] == "dispatched"
            status = CliRunner().invoke(app, ["status", str(path)])
            assert status.exit_code == 0, status.output
            report = None
            if not with_ids:
                from flows.report import report as report_flow

                report = report_flow(campaign=str(path))["report"]
            yield Edited(
                original=original,
                truth=truth,
                truth_after=ground_truth(cfg),
                removed=removed,
                changed=changed,
                deleted_rows=deleted_rows,
                labels=store.read_jsonl(f"labels/{pid}.jsonl"),
                edits=store.read_jsonl(f"edits/{pid}.jsonl"),
                edits_after_first=edits_after_first,
                snapshot=snapshot,
                snapshot_labels=snapshot_labels,
                history=store.read_json("state.json")["history"],
                warnings=list(warned.lines),
                status=" ".join(status.output.split()),
                report=report,
            )
    finally:
        logging.getLogger("loopwise.data").removeHandler(warned)


def _sent(store: Store, pid: int) -> tuple[set[str], list[str]]:
    """(labeled items, items of the open batch not labeled yet)."""
    labeled = {r["item_id"] for r in store.read_jsonl(f"labels/{pid}.jsonl")}
    open_batch = [i for i in store.read_json("state.json")["open_batch"] if i not in labeled]
    return labeled, open_batch


def _delete_30_rows(csv: Path, original: pd.DataFrame, store: Store, pid: int):
    """Delete 5 labeled items, 3 of the open batch and the 22 first rows never sent."""
    labeled, open_batch = _sent(store, pid)
    ids = original["item_id"].tolist()
    gone = set(sorted(labeled, key=ids.index)[-5:]) | set(open_batch[:3])
    sent = labeled | set(store.read_json("state.json")["open_batch"])
    front = [i for i in ids if i not in sent][:22]
    keep = ~original["item_id"].isin(gone | set(front))
    original[keep].drop(columns="item_id").to_csv(csv, index=False)
    return gone, set(), int((~keep).sum())


def _delete_10_and_change_1(csv: Path, original: pd.DataFrame, store: Store, pid: int):
    """Delete 7 labeled items and 3 of the open batch; change one labeled item's f0."""
    labeled, open_batch = _sent(store, pid)
    ordered = sorted(labeled)
    gone = set(ordered[:7]) | set(open_batch[:3])
    edited = original[~original["item_id"].isin(gone)].drop(columns="item_id").copy()
    target = ordered[-1]
    edited.loc[edited["uid"] == target, "f0"] += 1.5
    edited.to_csv(csv, index=False)
    return gone, {target}, len(gone)


@pytest.fixture(scope="module")
def no_id(harness, label_studio, tmp_path_factory) -> Iterator[Edited]:
    yield from _run(label_studio, tmp_path_factory.mktemp("no-id"), False, _delete_30_rows)


@pytest.fixture(scope="module")
def id_column(harness, label_studio, tmp_path_factory) -> Iterator[Edited]:
    tmp = tmp_path_factory.mktemp("id-column")
    yield from _run(label_studio, tmp, True, _delete_10_and_change_1)


@pytest.fixture(params=["no_id", "id_column"])
def edited(request) -> Edited:
    return request.getfixturevalue(request.param)


# --------------------------------------------------------------------------------- claims


def test_the_edit_touched_labeled_and_open_items(edited):
    labeled = {r["item_id"] for r in edited.labels}
    assert edited.removed and edited.removed <= labeled  # the open ones were answered since
    assert edited.deleted_rows in (10, 30)


def test_every_paid_label_is_the_true_label_of_its_item(edited):
    wrong = [r["item_id"] for r in edited.labels if r["label"] != edited.truth[r["item_id"]]]
    assert not wrong, wrong[:5]


def test_items_left_in_the_file_keep_their_ids(edited):
    assert set(edited.truth_after) <= set(edited.truth)
    assert all(edited.truth[i] == y for i, y in edited.truth_after.items())
    assert len(edited.truth) - len(edited.truth_after) == edited.deleted_rows


def test_the_next_snapshot_holds_every_accepted_label(edited):
    assert len(edited.snapshot) == edited.snapshot_labels
    assert edited.history[-2]["labels"] == edited.snapshot_labels
    assert edited.removed <= set(edited.snapshot["item_id"])


def test_every_training_row_is_the_row_its_label_was_paid_for(edited):
    """The features of each snapshot row belong to a row of the original file whose true
    label is the row's label: no label sits on another item's values."""
    truth_of = {tuple(row[FEATURES]): row["truth"] for _, row in edited.original.iterrows()}
    pairs = [(tuple(row[FEATURES]), row["label"]) for _, row in edited.snapshot.iterrows()]
    wrong = [(x, y) for x, y in pairs if truth_of.get(x) != y]
    assert not wrong, wrong[:3]


def test_each_change_is_recorded_once(edited):
    kinds = {(e["item_id"], e["kind"]) for e in edited.edits}
    expected = {(i, "removed") for i in edited.removed} | {(i, "changed") for i in edited.changed}
    assert kinds == expected
    assert len(edited.edits) == len(expected)
    assert edited.edits == edited.edits_after_first  # the next cycle records nothing again


def test_each_change_is_warned_about_once(edited):
    lines = [w for w in edited.warnings if "already sent to annotators" in w]
    assert len(lines) == 1 + bool(edited.changed), edited.warnings
    assert f"{len(edited.removed)} item(s) already sent" in lines[0]


def test_status_shows_the_pool_edits(edited):
    assert "pool edits" in edited.status, edited.status
    assert f"{len(edited.removed)} sent item(s) removed from the pool" in edited.status


def test_a_changed_item_trains_on_the_values_it_was_labeled_with(id_column):
    (item,) = id_column.changed
    (edit,) = [e for e in id_column.edits if e["kind"] == "changed"]
    assert edit["columns"] == ["f0"] and edit["labeled"]
    before = id_column.original.set_index("item_id").loc[item, "f0"]
    assert id_column.snapshot.set_index("item_id").loc[item, "f0"] == before


def test_accuracy_does_not_collapse_after_the_rows_are_deleted(no_id):
    before, after = no_id.history[-3]["metric"], no_id.history[-2]["metric"]
    assert after >= before - 0.1, no_id.history


def test_the_report_counts_the_pool_edits(no_id):
    pe = no_id.report["pool_edits"]
    assert pe["removed"] == len(no_id.removed) and pe["changed"] == 0
    assert {e["item_id"] for e in pe["edits"]} == no_id.removed
