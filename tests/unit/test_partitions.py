"""The arithmetic of a partitioned pool (loopwise/partitions.py) and vector features."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from loopwise.features import feature_matrix
from loopwise.infer import expand_vectors
from loopwise.items import holdout_mask
from loopwise.partitions import (
    draw_keys,
    eval_cut,
    holdout_cut,
    holdout_hashes,
    merge_candidates,
    score_cut,
    short_of,
    smallest,
    valid_share,
)

IDS = [f"item-{i}" for i in range(20_000)]


def test_the_holdout_side_is_the_hash_it_always_was():
    # The split of campaigns started before partitions: blake2b-4 of "seed:id" < fraction.
    for item in IDS[:50]:
        d = hashlib.blake2b(f"3:{item}".encode(), digest_size=4).digest()
        assert holdout_mask([item], 0.25, 3)[0] == (int.from_bytes(d, "big") < 0.25 * 2**32)
    assert np.array_equal(holdout_mask(IDS, 0.2, 1), holdout_hashes(IDS, 1) < holdout_cut(0.2))


@pytest.mark.parametrize("k", [1, 37, 1000])
def test_the_smallest_of_each_partition_hold_the_smallest_of_the_pool(k):
    keys = draw_keys(IDS, seed=5)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(IDS)), size=9, replace=False))
    parts = np.split(np.arange(len(IDS)), cuts)
    union = np.concatenate([p[smallest(keys[p], k)] for p in parts])
    merged = union[smallest(keys[union], k)]
    assert merged.tolist() == smallest(keys, k).tolist()


def test_draw_keys_are_a_uniform_draw_fixed_by_the_seed():
    a, b = draw_keys(IDS, 1), draw_keys(IDS, 2)
    assert np.array_equal(a, draw_keys(IDS, 1)) and not np.array_equal(a, b)
    first_half = (a < np.uint64(2**63)).mean()
    assert 0.48 < first_half < 0.52


def test_the_evaluated_holdout_is_about_max_rows_and_a_subset_of_the_holdout():
    h = holdout_hashes(IDS, 0)
    n_hold = int((h < holdout_cut(0.3)).sum())
    assert eval_cut(0.3, n_hold, None) == holdout_cut(0.3)
    assert eval_cut(0.3, n_hold, n_hold) == holdout_cut(0.3)
    cut = eval_cut(0.3, n_hold, 1000)
    kept = int((h < cut).sum())
    assert 900 < kept < 1100 and cut < holdout_cut(0.3)


def test_the_merged_shortlist_is_the_pools_best_in_pool_order():
    rng = np.random.default_rng(1)
    frames = [
        pd.DataFrame(
            {
                "item_id": [f"p{p}-{i}" for i in range(50)],
                "score": rng.random(50),
                "_part": p,
                "_row": np.arange(50),
            }
        )
        for p in range(4)
    ]
    frames[2].loc[0, "score"] = frames[1].loc[0, "score"] = 2.0  # a tie: the earlier row wins
    a = merge_candidates(frames, 1)
    assert a["item_id"].tolist() == ["p1-0"]
    b = merge_candidates(frames[::-1], 30)
    every = pd.concat(frames).sort_values("score", ascending=False)
    assert set(b["item_id"]) == set(every["item_id"].head(30))
    assert b[["_part", "_row"]].apply(tuple, axis=1).is_monotonic_increasing


def test_a_partition_holding_more_of_the_shortlist_than_it_sent_is_found():
    rng = np.random.default_rng(2)
    tops = [np.sort(rng.random(400))[::-1], np.sort(rng.random(400) * 0.1)[::-1]]
    cut = score_cut(tops, 300)
    assert (np.concatenate(tops) >= cut).sum() == 300
    assert short_of(100, 100, tops[0], cut)  # it sent its cap, and it has ~300 above the cut
    assert not short_of(100, 100, tops[1], cut)  # nothing of it is in the shortlist
    assert not short_of(90, 100, tops[0], cut)  # it sent all it had
    assert score_cut([np.ones(3), np.ones(2)], 10) == float("-inf")


def test_an_unreadable_partition_counts_as_invalid_rows():
    share, valid, rows = valid_share(
        [{"rows": 100, "valid": 90}, {"rows": None, "valid": 0}, {"rows": 300, "valid": 300}]
    )
    assert (valid, rows) == (390, 600) and share == pytest.approx(0.65)


def test_a_vector_column_reads_as_its_dimensions_in_place():
    df = pd.DataFrame(
        {
            "a": [1.0, 2.0, 3.0],
            "emb": [np.array([1, 2, 3]), np.array([4, 5, 6]), np.array([7, 8, 9])],
            "b": [7, 8, 9],
            "kind": ["x", "y", "x"],
        }
    )
    X = feature_matrix(df, feature_columns=None, text_column=None)
    spread = feature_matrix(expand_vectors(df), feature_columns=None, text_column=None)
    assert np.array_equal(X, spread) and X.shape == (3, 7)
    as_lists = df.assign(emb=[v.tolist() for v in df["emb"]])
    assert np.array_equal(feature_matrix(as_lists, feature_columns=None, text_column=None), X)
    ragged = df.assign(emb=[[1, 2, 3], [4, 5], None])
    R = feature_matrix(ragged, feature_columns=None, text_column=None)
    assert np.isnan(R[1, 1:4]).all() and np.isnan(R[2, 1:4]).all() and R[0, 3] == 3
