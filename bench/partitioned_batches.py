"""Does a partitioned pool buy the same accuracy per label as the single-file pool (issue 16)?

On a pool that fits in memory, the same campaign runs twice per seed from the same 50
random labels, with oracle labels: once as a single-file pool (the whole pool scored
in the flow process, :mod:`loopwise.scoring` as the cycle's ``score-pool`` runs it),
once as a partitioned pool of ``PARTS`` partitions (:func:`flows.stages.pool.
load_partitioned` and :func:`~flows.stages.pool.compose_partitioned`, in the flow
process). Each cycle fits the campaign's model on the labels so far, measures it on
the holdout and sends a batch of 50 (45 picked by the default strategy, 5 control).
The two paths pick with the same rules: the strategy chooses among the pool's most
uncertain rows (the same rows however the pool is cut), and the control share is the
undispatched rows with the smallest item-id hash keys.

Reported per dataset: the mean holdout accuracy per cycle of each path, the mean
difference over the curve, the seeds on which the partitioned path ends lower, the
overlap of the first batch's picks (same labels, same model), and how many of the
batches, control items included, were the same items in the same order.

Writes bench/results/partitioned_batches.{json,md}; about 4 minutes on one core:

    OMP_NUM_THREADS=1 python bench/partitioned_batches.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if not __package__:
    sys.path.insert(0, str(ROOT))

DATASETS = ROOT.parent / "shared" / "datasets"
CYCLES = 12
BATCH = 50
PARTS = 8


def _pools(tmp: Path) -> dict[str, tuple[Path, str, list[str]]]:
    """name → (CSV with an id column, label column, labels)."""
    from sklearn.datasets import make_classification

    out = {}
    letter = DATASETS / "letter.csv"
    if letter.exists():
        df = pd.read_csv(letter, encoding="utf-8-sig")
        df.insert(0, "uid", [f"l{i:05d}" for i in range(len(df))])
        df.to_csv(tmp / "letter.csv", index=False)
        out["letter"] = (tmp / "letter.csv", "lettr", sorted(df["lettr"].unique()))
    X, y = make_classification(
        n_samples=20_000,
        n_features=20,
        n_informative=12,
        n_classes=10,
        n_clusters_per_class=2,
        class_sep=1.0,
        random_state=3,
    )
    syn = pd.DataFrame(X.round(5), columns=[f"f{i:02d}" for i in range(20)])
    syn.insert(0, "uid", [f"s{i:05d}" for i in range(len(syn))])
    syn["y"] = [f"c{v}" for v in y]
    syn.to_csv(tmp / "syn.csv", index=False)
    out["syn-10"] = (tmp / "syn.csv", "y", [f"c{v}" for v in range(10)])
    return out


def _cfg(src: Path, label: str, labels: list[str], store: Path, partitioned: bool) -> Any:
    from loopwise.config import CampaignConfig

    rows = sum(1 for _ in open(src)) - 1
    return CampaignConfig.model_validate(
        {
            "name": "eff",
            "data": {
                "source": str(src),
                "id_column": "uid",
                "label_column": label,
                "partitioned": partitioned,
                "partition_rows": max(100, -(-rows // PARTS)),
            },
            "labels": labels,
            "batch_size": BATCH,
            "storage_root": str(store),
        }
    )


def _whole_batch(cfg, data, plan, model, labeled, dispatched, seed) -> list[str]:
    """The single-file pool's batch, as the select stage composes it (score-pool inline)."""
    from loopwise.batch import compose_batch
    from loopwise.features import model_inputs
    from loopwise.partitions import draw_keys
    from loopwise.scoring import (
        partition_bounds,
        partition_scores,
        select_from_candidates,
        shortlist,
        strategy_for,
    )

    rows_idx = data.undispatched(dispatched)
    (X_pool,) = model_inputs(cfg, data.pool)
    X_cand = X_pool[rows_idx]
    s = strategy_for(plan.strategy, plan.params, seed)
    scored = [
        partition_scores(model, X_cand[a:b], a, plan.n_picked, s)
        for a, b in partition_bounds(len(rows_idx), cfg.score_partitions)
    ]
    cands = shortlist(scored, plan.n_picked, s)
    picked, scores = select_from_candidates(
        model, X_cand, cands, plan.n_picked, s, X_labeled=labeled[0], y_labeled=labeled[1]
    )
    keys = draw_keys(data.pool["item_id"].to_numpy()[rows_idx].tolist(), cfg.seed)
    rows, _, control = compose_batch(picked, scores, plan.n_control, keys)
    ids = data.pool["item_id"].to_numpy()[rows_idx[rows]]
    return [str(i) for i in ids], [bool(c) for c in control]


def run_seed(name: str, spec: tuple, seed: int, tmp: Path) -> dict[str, Any]:
    from flows.stages.context import PoolData
    from flows.stages.pool import compose_partitioned, load_partitioned
    from loopwise.batch import plan_batch
    from loopwise.features import model_inputs
    from loopwise.model import evaluate_model
    from storage.campaign import campaign_store
    from tasks.data import load_pool, split_holdout
    from tasks.train import fit

    src, label, labels = spec
    out: dict[str, Any] = {}
    for arm in ("single-file", "partitioned"):
        store_root = tmp / f"{name}-{seed}-{arm}"
        cfg = _cfg(src, label, labels, store_root, arm == "partitioned")
        store = campaign_store(cfg.storage_root, cfg.name)
        if arm == "single-file":
            split = split_holdout.fn(cfg, load_pool.fn(cfg))
            data = PoolData(split["pool"], split["holdout"], 0)
            pool_rows = data.pool
        else:
            data = load_partitioned(cfg, store, [], 0)
            pool_rows = None
        holdout = data.holdout
        truth_frame = pd.read_csv(src)
        truth = dict(
            zip(truth_frame["uid"].astype(str), truth_frame[label].astype(str), strict=True)
        )
        rng = np.random.default_rng(seed)
        hold_ids = set(holdout["item_id"])
        pool_ids = sorted(set(truth) - hold_ids)
        labeled_ids = [str(i) for i in rng.choice(pool_ids, 50, replace=False)]
        rows_by_id = truth_frame.assign(item_id=truth_frame["uid"].astype(str)).set_index("item_id")
        curve, first, batches = [], None, []
        for k in range(CYCLES):
            lab = rows_by_id.loc[labeled_ids].reset_index()
            X_lab, X_hold = model_inputs(
                cfg, lab.drop(columns=[label]), holdout.drop(columns=[label])
            )
            y_lab = lab[label].astype(str).to_numpy()
            model = fit.fn(cfg, X_lab, y_lab)
            acc = evaluate_model(model, X_hold, holdout[label].astype(str).to_numpy(), labels)
            curve.append(float(acc["accuracy"]))
            s = cfg.strategy
            plan = plan_batch(
                BATCH,
                cfg.control_fraction,
                strategy=s.name,
                params=s.params,
                cold_start=s.cold_start,
                drift_fallback=None,
            )
            if arm == "single-file":
                ids, control = _whole_batch(
                    cfg, data, plan, model, (X_lab, y_lab), labeled_ids, seed + k
                )
            else:
                data = load_partitioned(cfg, store, labeled_ids, k + 1)
                batch = compose_partitioned(
                    cfg, store, data, plan, model, (X_lab, y_lab), labeled_ids, seed + k
                )
                ids, control = [b["item_id"] for b in batch], [b["control"] for b in batch]
            if first is None:
                first = [i for i, c in zip(ids, control, strict=True) if not c]
            batches.append(list(ids))
            labeled_ids += ids
        out[arm] = {"curve": curve, "first_picks": first, "batches": batches}
        del pool_rows
    a, b = out["single-file"], out["partitioned"]
    same = len(set(a["first_picks"]) & set(b["first_picks"])) / max(len(a["first_picks"]), 1)
    equal = sum(x == y for x, y in zip(a["batches"], b["batches"], strict=True))
    return {
        "dataset": name,
        "seed": seed,
        **out,
        "first_batch_overlap": same,
        "equal_batches": equal,
    }


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Single-file pool vs partitioned pool, same campaign (bench/partitioned_batches.py)",
        "",
        f"{CYCLES} cycles of {BATCH} labels (45 picked, 5 control) from 50 random labels; "
        f"partitioned into {PARTS} partitions; oracle labels; holdout accuracy, mean over seeds.",
        "",
        "| dataset | seeds | single-file final | partitioned final | mean diff over the curve | "
        "seeds partitioned ends lower | first batch overlap | identical batches |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted({r["dataset"] for r in rows}):
        rs = [r for r in rows if r["dataset"] == name]
        a = np.array([r["single-file"]["curve"] for r in rs])
        b = np.array([r["partitioned"]["curve"] for r in rs])
        lower = sum(float(y[-1]) < float(x[-1]) for x, y in zip(a, b, strict=True))
        overlap = np.mean([r["first_batch_overlap"] for r in rs])
        lines.append(
            f"| {name} | {len(rs)} | {a[:, -1].mean():.4f} | {b[:, -1].mean():.4f} | "
            f"{(b - a).mean():+.4f} (sd of the seeds' means {(b - a).mean(axis=1).std():.4f}) | "
            f"{lower}/{len(rs)} | {overlap:.2f} | "
            f"{sum(r['equal_batches'] for r in rs)}/{CYCLES * len(rs)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import logging

    from prefect.testing.utilities import prefect_test_harness

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as d, prefect_test_harness(server_startup_timeout=120):
        tmp = Path(d)
        for name, spec in _pools(tmp).items():
            for seed in range(args.seeds):
                r = run_seed(name, spec, seed, tmp)
                rows.append(r)
                print(
                    f"{name} seed {seed}: final {r['single-file']['curve'][-1]:.4f} vs "
                    f"{r['partitioned']['curve'][-1]:.4f}, first batch overlap "
                    f"{r['first_batch_overlap']:.2f}",
                    flush=True,
                )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "partitioned_batches.json").write_text(json.dumps(rows, indent=1))
    (args.out / "partitioned_batches.md").write_text(report(rows))
    print(report(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
