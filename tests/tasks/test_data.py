"""The data stage: ids, the holdout split and the features the model sees."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopwise.config import CampaignConfig
from loopwise.features import model_inputs as features
from tasks.data import split_holdout


def _cfg(**data) -> CampaignConfig:
    return CampaignConfig.model_validate(
        {
            "name": "t",
            "data": {"source": "x.csv", "label_column": "truth", **data},
            "labels": ["a", "b"],
        }
    )


@pytest.fixture
def frames():
    rng = np.random.RandomState(0)
    pool = pd.DataFrame(
        {
            "item_id": [f"r{i}" for i in range(40)],
            "x1": rng.normal(size=40),
            "color": rng.choice(["red", "blue"], 40),
            "truth": rng.choice(["a", "b"], 40),
        }
    )
    snapshot = pool.iloc[:10].assign(label=["a", "b"] * 5)
    return pool, snapshot


def test_the_annotated_label_and_the_ground_truth_never_become_features(frames):
    pool, snapshot = frames
    X_lab, X_pool = features(_cfg(), snapshot, pool)
    assert X_lab.shape[1] == X_pool.shape[1] == 3  # x1 + one-hot color (2)
    flipped = snapshot.assign(label=["b", "a"] * 5, truth="zzz")
    X_flip, _ = features(_cfg(), flipped, pool)
    np.testing.assert_array_equal(X_lab, X_flip)


def test_explicit_feature_columns_are_the_only_ones_used(frames):
    pool, snapshot = frames
    X_lab, X_pool = features(_cfg(feature_columns=["x1"]), snapshot, pool)
    assert X_lab.shape[1] == X_pool.shape[1] == 1
    np.testing.assert_allclose(X_pool[:, 0], pool["x1"].to_numpy(np.float32))


def test_holdout_split_keeps_labeled_rows_of_the_label_set_only(frames):
    pool, _ = frames
    pool = pool.copy()
    pool.loc[0:4, "truth"] = None
    pool.loc[5:7, "truth"] = "not-a-label"
    out = split_holdout.fn(_cfg(holdout={"fraction": 0.5}), pool)
    assert set(out["holdout"]["truth"]) <= {"a", "b"}
    assert len(out["pool"]) + len(out["holdout"]) == len(pool)  # every row on one side
    assert out["pool"]["truth"].isna().sum() == 5
    assert not set(out["pool"]["item_id"]) & set(out["holdout"]["item_id"])
    again = split_holdout.fn(_cfg(holdout={"fraction": 0.5}), pool.sample(frac=1, random_state=1))
    assert set(again["holdout"]["item_id"]) == set(out["holdout"]["item_id"])
