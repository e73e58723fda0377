"""Stopping in hindsight: does the marginal-gain rule stop where the next batch stopped paying?

Target (issue): "On the demo campaign, the marginal-gain rule stops within one batch of
the point where, in hindsight, the next batch cost more than it returned."

The demo campaign (``configs/demo.yaml``, read with ``loopwise.config.load_campaign``) is
simulated with an oracle: letter.csv from ``loopwise.datasets.data_dir()``, its first
``data.max_rows`` rows, item ids and the hashed holdout of the campaign
(``data.holdout``: fraction and seed), the campaign's model (StandardScaler +
LogisticRegression(max_iter=1000)) on the 16 features, a cold-start batch of
``cold_start_size`` by the ``strategy.cold_start`` strategy (seed s), then batches of
``batch_size`` by the campaign's strategy (cluster_margin, seeded s + cycle) through the
cycle's own path (``partition_scores`` over ``score_partitions`` partitions, then
``select_from_candidates``), refitting and scoring on the holdout after every batch,
with Cohen's kappa on a stop set of ``stop_set_size`` pool rows, well past the point
where the demo would stop (``--labels``, default 1,500). A label costs
``cfg.cost_per_item`` (annotators per item × cost per annotation) and one point of
accuracy is worth ``budget.value_per_point``. Simulated annotators, consensus and pool
validation are left out: the oracle's label is the accepted label.

For each seed's curve (history[i] is cycle i + 1; the cold start is cycle 0):

- marginal gain: the first cycle after which ``decide`` stops with ONLY the marginal-gain
  rule active (the demo's rules with no budgets, no target, plateau window 10^6, kappa
  off);
- demo: the first cycle after which ``decide`` stops with the demo's full rules (what
  the demo would actually do), and which rule fired;
- hindsight: ``hindsight_stop_point`` on the seed's whole curve, and on the curve averaged
  over seeds (its docstring: one unlucky batch sets it on a noisy curve).

The difference is counted in batches (cycles); the target is |difference| <= 1.

    python bench/stopping_hindsight.py                  # 10 seeds to 1,500 labels (~10 min on 2 cores)
    python bench/stopping_hindsight.py --seeds 5 --jobs 2
    python bench/stopping_hindsight.py --labels 800

Writes bench/results/stopping_hindsight.{json,md,png}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from loopwise.config import CampaignConfig, load_campaign  # noqa: E402
from loopwise.datasets import data_dir  # noqa: E402
from loopwise.features import feature_matrix  # noqa: E402
from loopwise.items import assign_ids, split_by_hash  # noqa: E402
from loopwise.model import build_model, evaluate_model, prediction_agreement  # noqa: E402
from loopwise.scoring import (  # noqa: E402
    partition_bounds,
    partition_scores,
    select_from_candidates,
    shortlist,
    strategy_for,
)
from loopwise.stopping import CycleRecord, StoppingRules, decide, hindsight_stop_point  # noqa: E402

RESULTS = HERE / "results"
CAMPAIGN = HERE.parent / "configs" / "demo.yaml"
#: A plateau window no campaign reaches: the plateau rule never fires.
NO_PLATEAU = 10**6


# ----------------------------------------------------------------------------- data and rules


def load_data(cfg: CampaignConfig) -> dict[str, Any]:
    """Pool and holdout of the demo campaign, as its cycle sees them (features without the label)."""
    path = data_dir() / Path(cfg.data.source).name
    df = pd.read_csv(path)
    if cfg.data.max_rows is not None:
        df = df.iloc[: cfg.data.max_rows]
    df = assign_ids(df.reset_index(drop=True), cfg.data.id_column)
    label = cfg.data.label_column
    h = cfg.data.holdout
    pool, holdout = split_by_hash(df, label, cfg.labels, h.fraction, h.seed)
    exclude = [c for c in (cfg.data.id_column, label, cfg.data.text_column) if c]
    X = feature_matrix(
        pd.concat([pool, holdout], ignore_index=True),
        feature_columns=cfg.data.feature_columns,
        text_column=cfg.data.text_column,
        exclude=exclude,
    )
    return {
        "path": str(path),
        "X_pool": X[: len(pool)],
        "y_pool": pool[label].astype(str).to_numpy(),
        "X_hold": X[len(pool) :],
        "y_hold": holdout[label].astype(str).to_numpy(),
        "features": int(X.shape[1]),
    }


def marginal_gain_only(cfg: CampaignConfig) -> StoppingRules:
    """The demo's rules with everything but the marginal-gain rule switched off."""
    return cfg.rules().model_copy(
        update={
            "max_labels": None,
            "max_cost": None,
            "target_metric": None,
            "plateau_window": NO_PLATEAU,
            "kappa_threshold": None,
            "marginal_gain": True,
        }
    )


# ----------------------------------------------------------------------------- simulation


def simulate(cfg: CampaignConfig, data: dict[str, Any], seed: int, max_labels: int) -> dict:
    """One campaign with an oracle; the history and each rule set's first stop."""
    X_pool, y_pool = data["X_pool"], data["y_pool"]
    X_hold, y_hold = data["X_hold"], data["y_hold"]
    n_pool = X_pool.shape[0]
    cost_per_label = cfg.cost_per_item
    rule_sets = {"marginal_gain": marginal_gain_only(cfg), "demo": cfg.rules()}
    name, params = cfg.strategy.name, dict(cfg.strategy.params)

    # Cycle 0 (bootstrap): the cold-start batch, no model.
    n0 = min(cfg.cold_start_size or cfg.batch_size, n_pool)
    picked = strategy_for(cfg.strategy.cold_start, {}, seed).query(None, X_pool, n0)
    labeled = np.zeros(n_pool, dtype=bool)
    labeled[np.asarray(picked)] = True
    rng = np.random.RandomState(seed)
    stop_rows = np.sort(rng.choice(n_pool, min(cfg.stop_set_size, n_pool), replace=False))

    history: list[CycleRecord] = []
    cycles: list[dict[str, Any]] = []
    stops: dict[str, dict[str, Any] | None] = dict.fromkeys(rule_sets)
    prev_pred = None
    k = 0
    t0 = time.perf_counter()
    while True:
        k += 1
        lab = np.flatnonzero(labeled)
        model = build_model(cfg.model.build(), kind=cfg.data.kind, scale=cfg.model.scale)
        model.fit(X_pool[lab], y_pool[lab])
        acc = evaluate_model(model, X_hold, y_hold, cfg.labels)["accuracy"]
        pred = [str(p) for p in model.predict(X_pool[stop_rows])]
        kappa = prediction_agreement(prev_pred, pred)
        prev_pred = pred
        history.append(
            CycleRecord(
                cycle=k,
                labels=int(lab.size),
                cost=round(lab.size * cost_per_label, 6),
                metric=acc,
                predictions_kappa=kappa,
            )
        )
        remaining = int(n_pool - lab.size)
        row: dict[str, Any] = {"cycle": k, "labels": int(lab.size), "accuracy": acc, "kappa": kappa}
        for rs, rules in rule_sets.items():
            d = decide(history, rules, pool_remaining=remaining, next_batch=cfg.batch_size)
            if rs == "marginal_gain":
                det = d.details if d.stop else d.details["checks"].get("marginal_gain", {})
                row["projected_gain_points"] = det.get("projected_gain_points")
                row["projected_value"] = det.get("projected_value")
                row["next_batch_cost"] = det.get("next_batch_cost")
            if d.stop and stops[rs] is None:
                stops[rs] = {
                    "position": len(history) - 1,
                    "cycle": k,
                    "labels": int(lab.size),
                    "rule": d.rule,
                    "reason": d.reason,
                }
        cycles.append(row)
        if lab.size >= max_labels or remaining == 0:
            break
        n = min(cfg.batch_size, max_labels - int(lab.size), remaining)
        cand = np.flatnonzero(~labeled)
        X_cand = X_pool[cand]
        scored = [
            partition_scores(model, X_cand[a:b], a, n, strategy_for(name, params, seed + k))
            for a, b in partition_bounds(X_cand.shape[0], cfg.score_partitions)
        ]
        candidates = shortlist(scored, n, strategy_for(name, params, seed + k))
        rows, _ = select_from_candidates(
            model,
            X_cand,
            candidates,
            n,
            strategy_for(name, params, seed + k),
            X_labeled=X_pool[lab],
            y_labeled=y_pool[lab],
        )
        labeled[cand[np.asarray(rows)]] = True
    hs = hindsight_stop_point(history, cfg.budget.value_per_point, cost_per_label)
    return {
        "seed": seed,
        "cycles": cycles,
        "stops": stops,
        "hindsight": None if hs is None else _point(history, hs),
        "best_net_value": _point(history, best_net_value(history, cfg.budget.value_per_point)),
        "seconds": time.perf_counter() - t0,
    }


def best_net_value(history: list[CycleRecord], value_per_point: float) -> int:
    """Position of the largest value of the metric minus money spent (a non-myopic hindsight)."""
    net = [h.metric * 100 * value_per_point - h.cost for h in history]
    return int(np.argmax(net))


def _point(history: list[CycleRecord], pos: int) -> dict[str, Any]:
    return {"position": pos, "cycle": history[pos].cycle, "labels": history[pos].labels}


def _history(cycles: list[dict[str, Any]], cost_per_label: float, metric: str = "accuracy"):
    return [
        CycleRecord(
            cycle=c["cycle"],
            labels=c["labels"],
            cost=round(c["labels"] * cost_per_label, 6),
            metric=float(c[metric]),
            predictions_kappa=c.get("kappa"),
        )
        for c in cycles
    ]


def _diff(stop: dict | None, ref: dict | None) -> int | None:
    if stop is None or ref is None:
        return None
    return stop["position"] - ref["position"]


def _within(d: int | None, stop: dict | None, ref: dict | None) -> bool:
    if stop is None and ref is None:
        return True  # neither stops within the run
    return d is not None and abs(d) <= 1


# ----------------------------------------------------------------------------- analysis


def analyse(cfg: CampaignConfig, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Stop points per seed and on the seed-averaged curve; differences in batches."""
    cpl = cfg.cost_per_item
    vpp = cfg.budget.value_per_point
    n_cycles = min(len(r["cycles"]) for r in runs)
    labels = [runs[0]["cycles"][i]["labels"] for i in range(n_cycles)]
    for r in runs:
        if [c["labels"] for c in r["cycles"][:n_cycles]] != labels:
            raise RuntimeError("seeds disagree on the label counts; cannot average")
    mean_acc = [statistics.fmean(r["cycles"][i]["accuracy"] for r in runs) for i in range(n_cycles)]
    sd_acc = [
        statistics.stdev(r["cycles"][i]["accuracy"] for r in runs) if len(runs) > 1 else 0.0
        for i in range(n_cycles)
    ]
    avg_cycles = [
        {"cycle": i + 1, "labels": labels[i], "accuracy": mean_acc[i]} for i in range(n_cycles)
    ]
    avg_hist = _history(avg_cycles, cpl)
    hs_avg_pos = hindsight_stop_point(avg_hist, vpp, cpl)
    hs_avg = None if hs_avg_pos is None else _point(avg_hist, hs_avg_pos)
    best_avg = _point(avg_hist, best_net_value(avg_hist, vpp))
    # the marginal-gain rule run on the averaged curve, cycle by cycle
    mg_rules = marginal_gain_only(cfg)
    mg_avg = None
    for i in range(n_cycles):
        d = decide(avg_hist[: i + 1], mg_rules, pool_remaining=10**9, next_batch=cfg.batch_size)
        if d.stop:
            mg_avg = {**_point(avg_hist, i), "rule": d.rule, "reason": d.reason}
            break
    # value and cost of every batch on the averaged curve
    batches = []
    for a, b in itertools.pairwise(avg_cycles):
        n = b["labels"] - a["labels"]
        gain = b["accuracy"] - a["accuracy"]
        batches.append(
            {
                "after_cycle": a["cycle"],
                "labels": a["labels"],
                "batch": n,
                "gain_points": 100 * gain,
                "value": 100 * gain * vpp,
                "cost": n * cpl,
            }
        )

    per_seed = []
    for r in runs:
        mg, demo, hs = r["stops"]["marginal_gain"], r["stops"]["demo"], r["hindsight"]
        row = {
            "seed": r["seed"],
            "marginal_gain": mg,
            "demo": demo,
            "hindsight": hs,
            "best_net_value": r["best_net_value"],
            "diff_mg_vs_hindsight": _diff(mg, hs),
            "within_one_mg_vs_hindsight": _within(_diff(mg, hs), mg, hs),
            "diff_mg_vs_avg_hindsight": _diff(mg, hs_avg),
            "within_one_mg_vs_avg_hindsight": _within(_diff(mg, hs_avg), mg, hs_avg),
            "diff_demo_vs_hindsight": _diff(demo, hs),
            "within_one_demo_vs_hindsight": _within(_diff(demo, hs), demo, hs),
            "diff_demo_vs_avg_hindsight": _diff(demo, hs_avg),
            "within_one_demo_vs_avg_hindsight": _within(_diff(demo, hs_avg), demo, hs_avg),
        }
        per_seed.append(row)

    def share(key: str) -> float:
        return sum(bool(p[key]) for p in per_seed) / len(per_seed)

    summary = {
        "seeds": len(runs),
        "mg_within_one_of_own_hindsight": share("within_one_mg_vs_hindsight"),
        "mg_within_one_of_avg_hindsight": share("within_one_mg_vs_avg_hindsight"),
        "demo_within_one_of_own_hindsight": share("within_one_demo_vs_hindsight"),
        "demo_within_one_of_avg_hindsight": share("within_one_demo_vs_avg_hindsight"),
        "mg_avg_curve_within_one_of_avg_hindsight": _within(_diff(mg_avg, hs_avg), mg_avg, hs_avg),
        "median_diff_mg_vs_own_hindsight": _median([p["diff_mg_vs_hindsight"] for p in per_seed]),
        "median_diff_mg_vs_avg_hindsight": _median(
            [p["diff_mg_vs_avg_hindsight"] for p in per_seed]
        ),
    }
    return {
        "labels": labels,
        "mean_accuracy": mean_acc,
        "sd_accuracy": sd_acc,
        "hindsight_avg": hs_avg,
        "best_net_value_avg": best_avg,
        "marginal_gain_avg": mg_avg,
        "avg_batches": batches,
        "per_seed": per_seed,
        "summary": summary,
    }


def _median(values: list[int | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


# ----------------------------------------------------------------------------- outputs


def _fmt_stop(p: dict | None, with_rule: bool = False) -> str:
    if p is None:
        return "never"
    s = f"{p['labels']} (c{p['cycle']})"
    return f"{s} {p['rule']}" if with_rule and "rule" in p else s


def _fmt_diff(d: int | None, ok: bool) -> str:
    return ("–" if d is None else f"{d:+d}") + (" ✓" if ok else " ✗")


def report(res: dict[str, Any]) -> str:
    s, a = res["settings"], res["analysis"]
    sm = a["summary"]
    cost_batch = s["batch_size"] * s["cost_per_label"]
    gain_needed = cost_batch / s["value_per_point"]
    lines = [
        "# Stopping in hindsight: the marginal-gain rule on the demo campaign",
        "",
        f"`configs/demo.yaml` simulated with an oracle: {Path(s['data']).name}, first "
        f"{s['max_rows']:,} rows, hashed holdout {s['holdout_fraction']:.0%} "
        f"(seed {s['holdout_seed']}): pool {s['pool']:,}, holdout {s['holdout']:,}; "
        f"{s['features']} features, StandardScaler + LogisticRegression(max_iter=1000); cold start "
        f"{s['cold_start_size']} by `{s['cold_start']}`, then batches of {s['batch_size']} by "
        f"`{s['strategy']}` through `partition_scores` ({s['score_partitions']} partitions) + "
        f"`select_from_candidates`, to {s['max_labels']:,} labels; {s['seeds']} seeds "
        f"({s['seed_list'][0]}…{s['seed_list'][-1]}: cold start, strategy and stop set; the "
        "holdout is the campaign's). A label costs "
        f"{s['cost_per_label']:.2f} ({s['annotators_per_item']} annotators × "
        f"{s['cost_per_annotation']:.2f}); one accuracy point is worth {s['value_per_point']:.2f}; "
        f"so a batch of {s['batch_size']} ({cost_batch:.2f}) pays only if it gains at least "
        f"{gain_needed:.2f} points. Produced by `python bench/stopping_hindsight.py`.",
        "",
        "Stop points are the labels held when the rule says stop (cycle number in brackets); "
        "differences are in batches (cycles), rule minus hindsight; ✓ = within one batch. "
        "*marginal gain*: `decide` with only the marginal-gain rule; *demo*: the demo's full "
        "rules (budgets 800 labels / 200.00, target 0.90, plateau 0.005 over 3, marginal gain, "
        "kappa ≥ 0.98 twice) and the rule that fired; *hindsight*: `hindsight_stop_point` on the "
        "seed's own curve; *avg hindsight*: on the curve averaged over seeds. *best net value* "
        "(not the issue's definition, for context): where accuracy × 100 × value per point minus "
        "money spent peaks over the whole run — stopping there maximizes net value in hindsight.",
        "",
        "| seed | marginal gain | hindsight | diff | diff vs avg hindsight | demo (rule) "
        "| demo diff | demo diff vs avg | best net value |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for p in a["per_seed"]:
        lines.append(
            f"| {p['seed']} | {_fmt_stop(p['marginal_gain'])} | {_fmt_stop(p['hindsight'])} | "
            f"{_fmt_diff(p['diff_mg_vs_hindsight'], p['within_one_mg_vs_hindsight'])} | "
            f"{_fmt_diff(p['diff_mg_vs_avg_hindsight'], p['within_one_mg_vs_avg_hindsight'])} | "
            f"{_fmt_stop(p['demo'], with_rule=True)} | "
            f"{_fmt_diff(p['diff_demo_vs_hindsight'], p['within_one_demo_vs_hindsight'])} | "
            f"{_fmt_diff(p['diff_demo_vs_avg_hindsight'], p['within_one_demo_vs_avg_hindsight'])} | "
            f"{_fmt_stop(p['best_net_value'])} |"
        )
    hs_avg, mg_avg = a["hindsight_avg"], a["marginal_gain_avg"]
    n = sm["seeds"]
    lines += [
        "",
        f"Seed-averaged curve: hindsight stop at {_fmt_stop(hs_avg)}; the marginal-gain rule run "
        f"on the averaged curve stops at {_fmt_stop(mg_avg)}"
        + (
            f" ({_fmt_diff(_diff(mg_avg, hs_avg), sm['mg_avg_curve_within_one_of_avg_hindsight'])})."
            if hs_avg and mg_avg
            else "."
        )
        + f" Net value (accuracy points × value − spend) peaks at {_fmt_stop(a['best_net_value_avg'])}.",
        "",
        "## Target",
        "",
        f"- marginal gain within one batch of the seed's own hindsight point: "
        f"{round(sm['mg_within_one_of_own_hindsight'] * n)}/{n} seeds "
        f"(median difference {sm['median_diff_mg_vs_own_hindsight']} batches)",
        f"- marginal gain within one batch of the seed-averaged hindsight point: "
        f"{round(sm['mg_within_one_of_avg_hindsight'] * n)}/{n} seeds "
        f"(median difference {sm['median_diff_mg_vs_avg_hindsight']} batches)",
        f"- the demo's full rules within one batch: {round(sm['demo_within_one_of_own_hindsight'] * n)}/{n} "
        f"of the own hindsight points, {round(sm['demo_within_one_of_avg_hindsight'] * n)}/{n} of "
        "the averaged one",
        "",
        "## The seed-averaged curve, batch by batch",
        "",
        "| after cycle | labels | mean accuracy (sd) | next batch gain (points) | its value | its cost |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for i, b in enumerate(a["avg_batches"]):
        mark = " ← hindsight" if hs_avg and hs_avg["position"] == i else ""
        lines.append(
            f"| {b['after_cycle']} | {b['labels']} | {a['mean_accuracy'][i]:.4f} "
            f"({a['sd_accuracy'][i]:.4f}) | {b['gain_points']:+.2f} | {b['value']:.2f} | "
            f"{b['cost']:.2f}{mark} |"
        )
    lines += ["", "![curves](stopping_hindsight.png)"]
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    a, runs = res["analysis"], res["runs"]
    s = res["settings"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), dpi=110)
    for r in runs:
        xs = [c["labels"] for c in r["cycles"]]
        ys = [c["accuracy"] for c in r["cycles"]]
        (line,) = left.plot(xs, ys, "-", lw=0.8, alpha=0.45)
        by_labels = dict(zip(xs, ys, strict=True))
        mg, hs = r["stops"]["marginal_gain"], r["hindsight"]
        if mg:
            left.plot(mg["labels"], by_labels[mg["labels"]], "o", color=line.get_color(), ms=7)
        if hs:
            left.plot(
                hs["labels"], by_labels[hs["labels"]], "x", color=line.get_color(), ms=8, mew=2
            )
        demo = r["stops"]["demo"]
        if demo and (not mg or demo["labels"] != mg["labels"]):
            left.plot(demo["labels"], by_labels[demo["labels"]], "^", color=line.get_color(), ms=7)
    left.plot(a["labels"], a["mean_accuracy"], "k-", lw=2.2, label="mean over seeds")
    hs_avg, mg_avg = a["hindsight_avg"], a["marginal_gain_avg"]
    if hs_avg:
        left.axvline(
            hs_avg["labels"],
            color="tab:red",
            ls="--",
            lw=1.4,
            label=f"hindsight on the mean curve ({hs_avg['labels']})",
        )
    if mg_avg:
        left.axvline(
            mg_avg["labels"],
            color="tab:blue",
            ls=":",
            lw=1.6,
            label=f"marginal gain on the mean curve ({mg_avg['labels']})",
        )
    left.plot([], [], "o", color="gray", label="marginal-gain stop (seed)")
    left.plot([], [], "x", color="gray", mew=2, label="hindsight point (seed)")
    left.plot([], [], "^", color="gray", label="demo rules' stop, where it differs (seed)")
    left.set_xlabel("labels")
    left.set_ylabel("holdout accuracy")
    left.set_title(f"demo campaign, {len(runs)} seeds: stop points")
    left.grid(alpha=0.3)
    left.legend(fontsize=8, loc="lower right")

    b = a["avg_batches"]
    right.bar(
        [x["labels"] for x in b],
        [x["value"] for x in b],
        width=s["batch_size"] * 0.8,
        color="tab:green",
        alpha=0.7,
        label="value of the next batch (mean curve)",
    )
    right.axhline(
        s["batch_size"] * s["cost_per_label"],
        color="k",
        lw=1.2,
        label=f"cost of a batch ({s['batch_size'] * s['cost_per_label']:.2f})",
    )
    if hs_avg:
        right.axvline(hs_avg["labels"], color="tab:red", ls="--", lw=1.4, label="hindsight")
    right.set_xlabel("labels before the batch")
    right.set_ylabel("currency")
    right.set_title("next batch: value vs cost")
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------- driver


def _run_one(campaign: str, seed: int, max_labels: int) -> dict[str, Any]:
    cfg = load_campaign(campaign)
    return simulate(cfg, load_data(cfg), seed, max_labels)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--campaign", type=Path, default=CAMPAIGN, help="campaign file")
    ap.add_argument("--seeds", type=int, default=10, help="repetitions, seeds 0..n-1 (>= 5)")
    ap.add_argument("--labels", type=int, default=1500, help="run every seed to this many labels")
    ap.add_argument("--jobs", type=int, default=1, help="seeds in parallel processes")
    ap.add_argument("--out", type=Path, default=RESULTS, help="output directory")
    args = ap.parse_args()

    cfg = load_campaign(args.campaign)
    data = load_data(cfg)
    seeds = list(range(args.seeds))
    load_start = _loadavg()
    t0 = time.perf_counter()
    if args.jobs == 1:
        runs = []
        for s in seeds:
            runs.append(simulate(cfg, data, s, args.labels))
            r = runs[-1]
            print(
                f"seed {s}: {len(r['cycles'])} cycles in {r['seconds']:.0f} s; marginal gain "
                f"{_fmt_stop(r['stops']['marginal_gain'])}, hindsight {_fmt_stop(r['hindsight'])}, "
                f"demo {_fmt_stop(r['stops']['demo'], True)}",
                flush=True,
            )
    else:
        from joblib import Parallel, delayed

        runs = Parallel(n_jobs=args.jobs)(
            delayed(_run_one)(str(args.campaign), s, args.labels) for s in seeds
        )
    wall = time.perf_counter() - t0
    analysis = analyse(cfg, runs)
    settings = {
        "campaign": str(args.campaign),
        "data": data["path"],
        "max_rows": cfg.data.max_rows,
        "holdout_fraction": cfg.data.holdout.fraction,
        "holdout_seed": cfg.data.holdout.seed,
        "pool": int(data["X_pool"].shape[0]),
        "holdout": int(data["X_hold"].shape[0]),
        "features": data["features"],
        "cold_start": cfg.strategy.cold_start,
        "cold_start_size": cfg.cold_start_size or cfg.batch_size,
        "strategy": cfg.strategy.name,
        "strategy_params": cfg.strategy.params,
        "score_partitions": cfg.score_partitions,
        "batch_size": cfg.batch_size,
        "max_labels": args.labels,
        "seeds": len(seeds),
        "seed_list": seeds,
        "annotators_per_item": cfg.annotators_per_item,
        "cost_per_annotation": cfg.budget.cost_per_annotation,
        "cost_per_label": cfg.cost_per_item,
        "value_per_point": cfg.budget.value_per_point,
        "rules_marginal_gain_only": marginal_gain_only(cfg).model_dump(),
        "rules_demo": cfg.rules().model_dump(),
    }
    res = {
        "settings": settings,
        "analysis": analysis,
        "runs": runs,
        "wall_s": wall,
        "load_start": load_start,
        "load_end": _loadavg(),
        "cpus": os.cpu_count(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stopping_hindsight.json").write_text(json.dumps(res, indent=1) + "\n")
    plot(res, args.out / "stopping_hindsight.png")
    (args.out / "stopping_hindsight.md").write_text(report(res))
    print(report(res))
    print(f"wrote {args.out}/stopping_hindsight.{{json,md,png}} in {wall:.0f} s")


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


if __name__ == "__main__":
    main()
