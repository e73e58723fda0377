"""Tasks of a partitioned pool through ``.fn()``: features one partition at a time, the drift
check of a vector column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopwise.config import CampaignConfig
from tasks.decide import check_drift
from tasks.partitions import numeric_features


def _cfg() -> CampaignConfig:
    return CampaignConfig.model_validate(
        {"name": "x", "data": {"source": "lake/", "label_column": "y"}, "labels": ["a", "b"]}
    )


def test_a_column_of_categories_is_refused_by_name_and_numbers_read_as_text_are_numbers():
    rows = pd.DataFrame({"item_id": ["1", "2"], "f": ["1.5", "2"], "y": ["a", "b"]})
    out = numeric_features(_cfg(), rows, where="lake/part-1.parquet")
    assert out["f"].tolist() == [1.5, 2.0]
    bad = rows.assign(kind=["red", "blue"])
    with pytest.raises(ValueError, match=r"lake/part-1.parquet: feature column 'kind' holds cat"):
        numeric_features(_cfg(), bad, where="lake/part-1.parquet")


def test_the_drift_check_compares_a_vector_column_dimension_by_dimension():
    rng = np.random.default_rng(0)
    labeled = pd.DataFrame(
        {
            "item_id": [str(i) for i in range(100)],
            "emb": [rng.normal(size=4).tolist() for _ in range(100)],
            "label": ["a"] * 100,
        }
    )
    same = pd.DataFrame({"item_id": list("x" * 500), "emb": list(rng.normal(size=(500, 4)))})
    moved = same.assign(emb=[v + 3 for v in same["emb"]])
    calm = check_drift.fn(_cfg(), labeled, same)
    assert [f["name"] for f in calm["features"]] == ["emb_0", "emb_1", "emb_2", "emb_3"]
    assert not calm["drifted"] and check_drift.fn(_cfg(), labeled, moved)["drifted"]


@pytest.mark.parametrize(
    ("n", "per_task", "slots", "sizes"),
    [
        (10, 8, 2, [5, 5]),  # not 8 + 2: one thread would wait on the other
        (100, 8, 2, [7, 7, 7, 8, 7, 7, 7, 7, 7, 7, 8, 7, 7, 7]),
        (100, 8, 1, [8, 7, 8, 8, 7, 8, 8, 8, 7, 8, 8, 7, 8]),
        (3, 8, 4, [1, 1, 1]),
        (0, 8, 2, []),
    ],
)
def test_partitions_are_grouped_evenly_over_the_clusters_threads(n, per_task, slots, sizes):
    from flows.pool import partition_groups

    groups = partition_groups(list(range(n)), per_task, slots)
    assert [len(g) for g in groups] == sizes
    assert [p for g in groups for p in g] == list(range(n))  # every partition once, in order


def test_holdout_max_rows_evaluates_a_stable_subset_of_a_single_file_holdout():
    from loopwise.items import assign_ids
    from tasks.data import split_holdout

    rng = np.random.default_rng(1)
    df = pd.DataFrame({"f": rng.normal(size=5000), "y": rng.choice(["a", "b"], 5000)})
    df = assign_ids(df, None, label_column="y")
    base = {"name": "x", "data": {"source": "p.csv", "label_column": "y"}, "labels": ["a", "b"]}
    whole = split_holdout.fn(CampaignConfig.model_validate(base), df)
    base["data"]["holdout"] = {"max_rows": 300}
    cut = split_holdout.fn(CampaignConfig.model_validate(base), df)
    assert 250 < len(cut["holdout"]) < 350 < len(whole["holdout"])
    assert set(cut["holdout"]["item_id"]) < set(whole["holdout"]["item_id"])
    assert len(cut["pool"]) == len(whole["pool"])  # the rows left out are not pool rows
