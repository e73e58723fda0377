"""Each kind of data a user brings, from ``loopwise init`` to one full cycle.

For every kind (integer, boolean and string labels, a text column, a Parquet vector
column, a latin-1 CSV) a small file is written, ``loopwise init`` infers its campaign,
the cold start sends its batch to a real Label Studio, simulated annotators answer from
the label column, and the next run trains a model, decides and sends the next batch.
Each kind runs once (the ``kind`` fixture); each test checks one claim on what it left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_classification

from storage.store import Store, quarantine_key

pytestmark = pytest.mark.integration

ROWS = 300
BATCH = 10


def _table(n_classes: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    X, y = make_classification(
        n_samples=ROWS,
        n_features=4,
        n_informative=3,
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=seed,
    )
    return pd.DataFrame(X.round(4), columns=["f0", "f1", "f2", "f3"]), y


# Each writer puts its file in the folder and returns (file, extra init args, planted rows):
# the planted rows (0-based row numbers) are the invalid ones the campaign must quarantine,
# and only those.
Writer = Callable[[Path], tuple[Path, list[str], set[int]]]


def _integer_labels(tmp: Path) -> tuple[Path, list[str], set[int]]:
    df, y = _table(4, 1)
    df["label"] = y  # 0, 1, 2, 3 as integers
    df.to_csv(tmp / "ints.csv", index=False)
    return tmp / "ints.csv", [], set()


def _boolean_labels(tmp: Path) -> tuple[Path, list[str], set[int]]:
    df, y = _table(2, 2)
    df["spam"] = y.astype(bool)  # True / False
    df.to_csv(tmp / "bools.csv", index=False)
    return tmp / "bools.csv", ["--label-column", "spam"], set()


def _string_labels(tmp: Path) -> tuple[Path, list[str], set[int]]:
    df, y = _table(3, 3)
    df["shop"] = np.random.default_rng(3).choice(["north", "south", "east"], ROWS)
    df["label"] = np.asarray(["apple", "pear", "plum"])[y]
    df.to_csv(tmp / "strings.csv", index=False)
    return tmp / "strings.csv", [], set()


TOPICS = {
    "sport": "match goal team coach league striker season stadium referee",
    "money": "bank market shares profit inflation rates investor budget trade",
    "health": "doctor vaccine patient hospital virus nurse therapy clinic diet",
}


def _text(tmp: Path) -> tuple[Path, list[str], set[int]]:
    rng = np.random.default_rng(4)
    names = list(TOPICS)
    topic = rng.integers(0, len(names), ROWS)
    filler = "the a of today news report about new".split()
    texts = [
        " ".join(rng.choice(TOPICS[names[t]].split() + filler, 9)) + f" story {i}"
        for i, t in enumerate(topic)
    ]
    df = pd.DataFrame({"doc": [f"d{i:04d}" for i in range(ROWS)], "body": texts})
    df["topic"] = np.asarray(names)[topic]
    df.to_csv(tmp / "news.csv", index=False)
    return tmp / "news.csv", ["--label-column", "topic"], set()


def _vector(tmp: Path) -> tuple[Path, list[str], set[int]]:
    X, y = make_classification(
        n_samples=ROWS, n_features=8, n_informative=5, n_redundant=0, random_state=5
    )
    emb = [row.round(4).tolist() for row in X.astype(np.float32)]
    emb[17] = emb[17][:5]  # a list of another length: the one row to quarantine
    df = pd.DataFrame({"emb": emb, "label": np.asarray(["cat", "dog"])[y]})
    df.to_parquet(tmp / "embeddings.parquet")
    return tmp / "embeddings.parquet", [], {17}


def _latin1(tmp: Path) -> tuple[Path, list[str], set[int]]:
    df, y = _table(2, 6)
    df["ville"] = np.random.default_rng(6).choice(["Zürich", "Genève", "Bâle"], ROWS)
    df["label"] = np.asarray(["négatif", "positif"])[y]
    df.to_csv(tmp / "villes.csv", index=False, encoding="latin-1")
    return tmp / "villes.csv", ["--encoding", "latin-1"], set()


KINDS: dict[str, Writer] = {
    "integer-labels": _integer_labels,
    "boolean-labels": _boolean_labels,
    "string-labels": _string_labels,
    "text": _text,
    "vector": _vector,
    "latin-1": _latin1,
}


@dataclass
class KindRun:
    """What one kind's campaign left after init, the cold start, the answers and a cycle."""

    kind: str
    init_output: str
    config: Any  # the CampaignConfig init wrote (with the test's servers and folders)
    planted: set[str]
    cold: dict[str, Any]  # what the cold-start run returned
    cold_items: list[str]  # the project's tasks in Label Studio after the cold start
    truth: dict[str, str]
    answered: dict[str, Any]  # what the simulated annotators reported
    after: dict[str, Any]  # what the next run returned
    items: list[str]  # the project's tasks after it
    labels: list[dict[str, Any]]  # the labels ledger
    quarantined: list[dict[str, Any]]
    state: dict[str, Any]


def _server_items(ls_client, title: str) -> list[str]:
    (project,) = [p for p in ls_client.projects.list(title=title) if p.title == title]
    tasks = ls_client.tasks.list(project=project.id, fields="task_only", page_size=1000)
    return [t.data["item_id"] for t in tasks]


def _adapt(path: Path, tmp: Path, label_studio) -> None:
    """The config init wrote, pointed at the test's servers and folders, small batches."""
    raw = yaml.safe_load(path.read_text())
    raw.update(
        batch_size=BATCH,
        annotators_per_item=1,
        max_annotations_per_item=1,
        budget={"labels": 60, "cost_per_annotation": 0.1, "value_per_point": 10.0},
        stopping={"kappa_threshold": None, "plateau_epsilon": 0.0001, "plateau_window": 5},
        stop_set_size=100,
        labelstudio={"url": label_studio.url, "token_env": "LOOPWISE_TEST_LS_TOKEN"},
        storage_root=str(tmp / "store"),
        mlflow={
            "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
            "artifact_location": (tmp / "mlartifacts").as_uri(),
        },
        schedule={"recheck_seconds": 3600},
    )
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))


@pytest.fixture(scope="module", params=list(KINDS))
def kind(request, harness, label_studio, ls_client, tmp_path_factory) -> Iterator[KindRun]:
    """One kind's campaign: init, cold start, answers, one full cycle."""
    from typer.testing import CliRunner

    from devstack.campaign import annotate_campaign, campaign_project_id, ground_truth
    from flows.cli import app
    from flows.cycle import cycle
    from loopwise.annotators import AnnotatorProfile
    from loopwise.config import load_campaign
    from tasks.data import load_pool

    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    data, args, planted = KINDS[name](tmp)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
        res = CliRunner().invoke(
            app,
            [
                "init",
                str(data),
                "--name",
                f"kind-{name}",
                "--configs-dir",
                str(tmp / "configs"),
                "--expectations-dir",
                str(tmp / "expectations"),
                *args,
            ],
        )
        assert res.exit_code == 0, res.output  # nothing to test without a campaign
        path = tmp / "configs" / f"kind-{name}.yaml"
        _adapt(path, tmp, label_studio)
        cfg = load_campaign(path)
        store = Store(f"{cfg.storage_root}/{cfg.name}")
        ids = load_pool.fn(cfg)["item_id"]
        planted_ids = {ids.iloc[r] for r in planted}

        cold = cycle(campaign=str(path))
        cold_items = _server_items(ls_client, cfg.project_title) if cold else []
        truth = ground_truth(cfg)
        pid = campaign_project_id(cfg, label_studio.token)
        sure = [AnnotatorProfile(name="ann", accuracy=1.0, latency=1.0)]
        answered = annotate_campaign(cfg, label_studio.token, pid, truth, sure, seed=1)
        after = cycle(campaign=str(path))
        yield KindRun(
            kind=name,
            init_output=res.output,
            config=cfg,
            planted=planted_ids,
            cold=cold,
            cold_items=cold_items,
            truth=truth,
            answered=answered,
            after=after,
            items=_server_items(ls_client, cfg.project_title),
            labels=store.read_jsonl(f"labels/{pid}.jsonl"),
            quarantined=store.read_jsonl(quarantine_key(cfg.data.source)),
            state=store.read_json("state.json"),
        )


def test_init_infers_the_kind(kind):
    cfg = kind.config
    expected = {
        "integer-labels": ["0", "1", "2", "3"],
        "boolean-labels": ["False", "True"],
        "string-labels": ["apple", "pear", "plum"],
        "text": ["health", "money", "sport"],
        "vector": ["cat", "dog"],
        "latin-1": ["négatif", "positif"],
    }[kind.kind]
    assert cfg.labels == expected
    assert (cfg.data.kind == "text") == (kind.kind == "text")
    if kind.kind == "vector":
        assert cfg.data.feature_columns == [f"emb_{i}" for i in range(8)]
    if kind.kind == "latin-1":
        assert cfg.data.encoding == "latin-1"


def test_only_the_planted_rows_are_quarantined(kind):
    assert {r["id"] for r in kind.quarantined} == kind.planted, kind.quarantined[:3]


def test_the_cold_start_sends_its_batch_to_label_studio(kind):
    assert kind.cold["status"] == "dispatched", kind.cold
    assert len(kind.cold_items) == BATCH and not set(kind.cold_items) & kind.planted


def test_the_annotators_answer_with_labels_of_the_label_set(kind):
    answers = {kind.truth[i] for i in kind.cold_items}
    assert answers <= set(kind.config.labels), answers


def test_every_cold_start_item_gets_its_true_label_accepted(kind):
    accepted = {r["item_id"]: r["label"] for r in kind.labels}
    assert accepted == {i: kind.truth[i] for i in kind.cold_items}


def test_the_next_run_trains_a_model_on_the_accepted_labels(kind):
    (row,) = kind.state["history"]
    assert row["cycle"] == 1 and row["labels"] == BATCH
    assert row["metric"] is not None and 0.0 <= row["metric"] <= 1.0


def test_the_next_batch_goes_to_label_studio(kind):
    assert kind.after["status"] == "dispatched" and kind.after["cycle"] == 1, kind.after
    assert len(kind.items) == 2 * BATCH and len(set(kind.items)) == 2 * BATCH
    assert not set(kind.items) & kind.planted
