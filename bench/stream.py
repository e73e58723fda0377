"""Stream selection: which served records to label, at a fixed rate and after drift.

A dataset is replayed as a stream of served records (issue 15). Per seed: a stratified
70 / 30 split; a champion trained on ``INIT_LABELS`` random pool rows; then
``STREAM`` further pool rows arrive one at a time. Each arm decides query / control /
skip for each record with the current model's probabilities; an asked record is
labeled at once (the oracle); the model is retrained on every label so far each time
``RETRAIN_EVERY`` new labels arrived (the ``new_labels`` trigger) and scored on the
test split. Arms, all at the same labeling rate ``RATE``:

- ``random`` — :class:`loopwise.stream_policy.StreamPolicy` with ``control_share=1``:
  every asked record a uniform draw;
- ``stream`` — ``StreamPolicy`` (margin, adaptive threshold, control share 0.2):
  the product's default, at a fixed rate;
- ``stream+boost`` — the same, and every ``drift_window`` records the product's
  ``input_drift`` trigger (:func:`loopwise.triggers.input_drift`, default
  :class:`~loopwise.triggers.TriggerRules`) compares the window's inputs with the
  inputs the model was deployed on; when it fires, the model is retrained, the policy
  labels ``boost`` × the rate for ``boost_records`` records
  (:meth:`~loopwise.stream_policy.StreamPolicy.boost_for`) and the window becomes the
  new reference;
- ``skactiveml.variable_uncertainty`` — the peer: scikit-activeml's stream budget
  manager of the Variable Uncertainty strategy (Žliobaitė et al. 2014; least
  confidence against a self-adjusting threshold) at budget ``RATE``. modAL has no
  stream-based sampler (its stream example thresholds the uncertainty by hand), so it
  has no arm.

Two scenarios: ``stationary`` (the stream is the pool as it is) and ``drift``: from the
middle of the stream, a class-prior shift (a seeded half of the classes four times
as likely) AND a feature shift (a seeded third of the inputs moved by one standard
deviation); after the drift the model is scored on the test split under the same
shift (rows weighted by the new priors, the same inputs moved).

Writes bench/results/stream.{json,md}; about 5 minutes on one core.

    OMP_NUM_THREADS=1 python bench/stream.py
    OMP_NUM_THREADS=1 python bench/stream.py --datasets syn-balanced digits --seeds 3 --out /tmp/held_back
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
if not __package__:  # run as a script: this checkout's loopwise, not the venv's editable one
    sys.path.insert(0, str(HERE.parent))

from loopwise import datasets  # noqa: E402
from loopwise.simulate import default_model  # noqa: E402
from loopwise.strategies.diversity import UNCERTAINTY  # noqa: E402
from loopwise.stream_policy import StreamPolicy  # noqa: E402
from loopwise.triggers import TriggerRules, input_drift  # noqa: E402

RESULTS = HERE / "results"
DATASETS = ["letter", "adult"]
ARMS = ("random", "stream", "stream+boost", "skactiveml.variable_uncertainty")
SCENARIOS = ("stationary", "drift")
#: Shares of the best arm's final accuracy (same seed) that count as recovered: the
#: first a coarse "most of the way back", the second about "within a point".
RECOVER = (0.95, 0.99)
#: The issue's first target: stream selection at least as good as random everywhere.
TARGET_1 = ("stream", "random")
#: The issue's second target: after drift, the adaptive rate recovers in fewer labels.
TARGET_2 = ("stream+boost", "stream")


NOTES = [
    "- The peer's budget manager estimates its spend over a sliding memory and "
    "overshoots the budget (see its label counts): it is compared at somewhat more labels.",
    "- modAL has no stream-based sampler (its stream example thresholds the uncertainty "
    "by hand), so it has no arm.",
    "- Labels arrive at once and are always right; in the product they come later, "
    "which delays every retrain alike.",
    "- The input_drift reference is the inputs the model was deployed on (the first "
    "window, then the window that fired), not the labeled rows: actively selected rows "
    "are drifted from the stream by design and would raise false alarms.",
    "- Target 2 asks for fewer *labels*: the boost buys its labels sooner (fewer records, "
    "i.e. less time on a degraded model), not cheaper; per label it is about as "
    "efficient as the fixed rate, and it spends more labels in total.",
]


@dataclass(frozen=True)
class Config:
    """One run's sizes; the defaults are the published run."""

    stream: int = 6000
    rate: float = 0.05
    control_share: float = 0.2
    init_labels: int = 100
    retrain_every: int = 20
    boost: float = 3.0
    boost_records: int = 1000
    rules: TriggerRules = field(default_factory=TriggerRules)
    max_test: int = 3000
    prior_weight: float = 4.0
    feature_shift: float = 1.0
    chunk: int = 200

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rules"] = self.rules.model_dump()
        return d


# --------------------------------------------------------------------------- the stream


@dataclass
class Stream:
    """One seed's replay: the champion's training rows, the stream, the test split."""

    X_init: np.ndarray
    y_init: np.ndarray
    X: np.ndarray
    y: np.ndarray
    drift_at: int | None  # position of the first drifted record
    X_test_pre: np.ndarray
    X_test_post: np.ndarray
    y_test: np.ndarray
    w_test_post: np.ndarray  # test row weights after the drift (the new class priors)
    shifted: list[int]  # inputs moved by the drift
    heavy: list[Any]  # classes made more likely by the drift


def make_stream(X: np.ndarray, y: np.ndarray, seed: int, cfg: Config, drift: bool) -> Stream:
    """Split, draw the champion's rows and the stream, inject the drift midway."""
    rng = np.random.RandomState(seed)
    pool, test = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=seed)
    if len(test) > cfg.max_test:
        test = rng.choice(test, cfg.max_test, replace=False)
    pool = rng.permutation(pool)
    need = cfg.init_labels + cfg.stream
    if len(pool) < need:
        raise ValueError(f"the pool has {len(pool)} rows, the stream needs {need}")
    init, rest = pool[: cfg.init_labels], pool[cfg.init_labels :]
    classes = np.unique(y)
    heavy = rng.choice(classes, size=max(1, len(classes) // 2), replace=False)
    weight = {c: (cfg.prior_weight if c in heavy else 1.0) for c in classes}
    sd = X[pool].std(axis=0)
    movable = np.flatnonzero(sd > 0)
    shifted = np.sort(rng.choice(movable, size=max(1, len(movable) // 3), replace=False))
    shift = np.zeros(X.shape[1], dtype=np.float64)
    shift[shifted] = cfg.feature_shift * sd[shifted]
    if not drift:
        rows = rest[: cfg.stream]
        Xs = X[rows].astype(np.float64)
        drift_at = None
    else:
        half = cfg.stream // 2
        before, after_pool = rest[:half], rest[half:]
        p = np.array([weight[c] for c in y[after_pool]])
        after = rng.choice(after_pool, size=cfg.stream - half, replace=False, p=p / p.sum())
        rows = np.concatenate([before, after])
        Xs = X[rows].astype(np.float64)
        Xs[half:] += shift
        drift_at = half
    X_test = X[test].astype(np.float64)
    return Stream(
        X_init=X[init].astype(np.float64),
        y_init=y[init],
        X=Xs,
        y=y[rows],
        drift_at=drift_at,
        X_test_pre=X_test,
        X_test_post=X_test + shift if drift else X_test,
        y_test=y[test],
        w_test_post=np.array([weight[c] for c in y[test]]) if drift else np.ones(len(test)),
        shifted=[int(j) for j in shifted] if drift else [],
        heavy=[_plain(c) for c in heavy] if drift else [],
    )


# --------------------------------------------------------------------------- the arms


class _PeerVU:
    """scikit-activeml's Variable Uncertainty budget manager, one record at a time."""

    def __init__(self, rate: float) -> None:
        from skactiveml.stream.budgetmanager import VariableUncertaintyBudgetManager

        self.bm = VariableUncertaintyBudgetManager(budget=rate)

    def ask(self, proba_row: np.ndarray) -> bool:
        utility = np.array([1.0 - float(proba_row.max())])
        queried = self.bm.query_by_utility(utility)
        self.bm.update(np.zeros((1, 1)), queried)
        return bool(len(queried))


def run_arm(arm: str, s: Stream, model: Any, seed: int, cfg: Config) -> dict[str, Any]:
    """Replay the stream under one arm; the learning curve and the labels spent."""
    policy = None
    peer = None
    if arm == "random":
        policy = StreamPolicy(cfg.rate, control_share=1.0, random_state=seed)
    elif arm in ("stream", "stream+boost"):
        policy = StreamPolicy(
            cfg.rate,
            control_share=cfg.control_share,
            boost=cfg.boost,
            boost_records=cfg.boost_records,
            random_state=seed,
        )
    elif arm == "skactiveml.variable_uncertainty":
        peer = _PeerVU(cfg.rate)
    else:
        raise ValueError(f"unknown arm {arm!r}; known arms: {', '.join(ARMS)}")
    boosting = arm == "stream+boost"
    score = UNCERTAINTY["margin"]
    window = cfg.rules.drift_window
    labeled_X, labeled_y = [*s.X_init], [*s.y_init]
    clf = _fit(model, labeled_X, labeled_y)
    curve = [_point(clf, s, 0, 0)]
    new = 0
    drift_events: list[int] = []
    reference = s.X[:window] if boosting else None  # the inputs the model was deployed on
    proba, start = None, 0
    for i in range(len(s.y)):
        if proba is None or i >= start + len(proba):
            start, proba = i, clf.predict_proba(s.X[i : i + cfg.chunk])
        row = proba[i - start]
        if peer is not None:
            asked = peer.ask(row)
        else:
            asked = policy.decide_score(float(score(row[None, :])[0])).decision != "skip"
        retrain = False
        if asked:
            labeled_X.append(s.X[i])
            labeled_y.append(s.y[i])
            new += 1
            retrain = new >= cfg.retrain_every
        if boosting and (i + 1) % window == 0 and i + 1 > window:
            fired = input_drift(
                reference, s.X[i + 1 - window : i + 1], (i + 1) // window - 1, cfg.rules
            )
            if fired.fired:
                drift_events.append(i + 1)
                policy.boost_for()
                reference = s.X[i + 1 - window : i + 1]
                retrain = retrain or new > 0
        if retrain:
            clf = _fit(model, labeled_X, labeled_y)
            proba = None
            new = 0
            curve.append(_point(clf, s, i + 1, len(labeled_y) - len(s.y_init)))
    if new:
        clf = _fit(model, labeled_X, labeled_y)
    final = _point(clf, s, len(s.y), len(labeled_y) - len(s.y_init))
    return {"curve": curve, "final": final, "drift_events": drift_events}


def _fit(model: Any, X: list[np.ndarray], y: list[Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence on tiny early sets
        return clone(model).fit(np.asarray(X), np.asarray(y))


def _point(clf: Any, s: Stream, position: int, labels: int) -> dict[str, Any]:
    """Test accuracy of ``clf`` in the regime of ``position`` (after the drift: the
    shifted test split, weighted by the new priors), and the pre-drift accuracy."""
    post = s.drift_at is not None and position > s.drift_at
    correct_post = clf.predict(s.X_test_post) == s.y_test
    correct_pre = clf.predict(s.X_test_pre) == s.y_test if s.drift_at is not None else correct_post
    acc_post = float(np.average(correct_post, weights=s.w_test_post))
    acc_pre = float(correct_pre.mean())
    return {
        "position": position,
        "labels": labels,
        "accuracy": acc_post if post else acc_pre,
        "accuracy_post": acc_post,
    }


# --------------------------------------------------------------------------- summaries


def run_cell(
    X: np.ndarray,
    y: np.ndarray,
    model: Any,
    seed: int,
    cfg: Config,
    drift: bool,
    arms: tuple[str, ...] = ARMS,
) -> dict[str, Any]:
    """Every arm on one seed's stream (paired: the same split, champion and stream)."""
    s = make_stream(X, y, seed, cfg, drift)
    out = {arm: run_arm(arm, s, model, seed, cfg) for arm in arms}
    best = max(r["final"]["accuracy"] for r in out.values())
    for r in out.values():
        r["recovery"] = _recovery(r, s, best) if drift else None
    return {
        "drift_at": s.drift_at,
        "shifted_inputs": s.shifted,
        "heavy_classes": s.heavy,
        "arms": out,
    }


def _recovery(r: dict[str, Any], s: Stream, best: float) -> dict[str, Any]:
    """Labels and records after the drift until the model scores each level of
    :data:`RECOVER` × the seed's best final accuracy on the drifted test split
    (None: never)."""
    at = s.drift_at
    before = [p for p in r["curve"] if p["position"] <= at][-1]
    out: dict[str, Any] = {
        "accuracy_at_drift": before["accuracy_post"],
        "labels_at_drift": before["labels"],
    }
    for share in RECOVER:
        hit = next(
            (p for p in r["curve"] if p["position"] > at and p["accuracy_post"] >= share * best),
            None,
        )
        out[f"{share:g}"] = {
            "level": share * best,
            "labels": None if hit is None else hit["labels"] - before["labels"],
            "records": None if hit is None else hit["position"] - at,
        }
    return out


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def summarize(cells: dict[str, dict[int, dict[str, Any]]], arms: tuple[str, ...]) -> dict[str, Any]:
    """Per scenario and arm: mean final accuracy and labels; paired differences; recovery."""
    out: dict[str, Any] = {}
    for scenario, seeds in cells.items():
        per_arm = {
            arm: {
                "final_accuracy": [
                    seeds[k]["arms"][arm]["final"]["accuracy"] for k in sorted(seeds)
                ],
                "labels": [seeds[k]["arms"][arm]["final"]["labels"] for k in sorted(seeds)],
                "drift_events": [len(seeds[k]["arms"][arm]["drift_events"]) for k in sorted(seeds)],
            }
            for arm in arms
        }
        for arm, d in per_arm.items():
            d["mean_final_accuracy"] = float(np.mean(d["final_accuracy"]))
            d["mean_labels"] = float(np.mean(d["labels"]))
            if scenario == "drift":
                rec = [seeds[k]["arms"][arm]["recovery"] for k in sorted(seeds)]
                d["accuracy_at_drift"] = [r["accuracy_at_drift"] for r in rec]
                for share in RECOVER:
                    d[f"recovery_labels@{share:g}"] = [r[f"{share:g}"]["labels"] for r in rec]
                    d[f"recovery_records@{share:g}"] = [r[f"{share:g}"]["records"] for r in rec]
        paired = {}
        for a, b in (
            TARGET_1,
            ("stream+boost", "random"),
            ("skactiveml.variable_uncertainty", "random"),
        ):
            if a in per_arm and b in per_arm:
                diff = np.subtract(per_arm[a]["final_accuracy"], per_arm[b]["final_accuracy"])
                paired[f"{a} - {b}"] = {
                    "mean": float(diff.mean()),
                    "sd": float(diff.std(ddof=1)) if diff.size > 1 else 0.0,
                    "seeds_at_least": int((diff >= 0).sum()),
                    "seeds": int(diff.size),
                }
        out[scenario] = {"arms": per_arm, "paired": paired}
        if scenario == "drift" and all(a in per_arm for a in TARGET_2):
            out[scenario]["target_2"] = {
                f"{share:g}": {
                    "seeds_fewer_labels": _fewer(per_arm, f"recovery_labels@{share:g}"),
                    "seeds_same_labels": _fewer(per_arm, f"recovery_labels@{share:g}", same=True),
                    "seeds_fewer_records": _fewer(per_arm, f"recovery_records@{share:g}"),
                    "seeds": len(per_arm[TARGET_2[0]]["final_accuracy"]),
                }
                for share in RECOVER
            }
    return out


def _fewer(per_arm: dict[str, Any], key: str, *, same: bool = False) -> int:
    """Seeds where the first arm of :data:`TARGET_2` needed fewer (or, ``same``, as
    many) than the second; never recovering counts as infinitely many."""
    a, b = ([math.inf if v is None else v for v in per_arm[x][key]] for x in TARGET_2)
    return int(sum((x == y) if same else (x < y) for x, y in zip(a, b, strict=True)))


# --------------------------------------------------------------------------- report


def _fmt_median(values: list[Any]) -> str:
    """Median over the seeds, never-recovered counted as infinitely many; how many
    seeds recovered in brackets when not all."""
    got = [v for v in values if v is not None]
    med = float(np.median([math.inf if v is None else v for v in values]))
    text = "never" if math.isinf(med) else f"{med:.0f}"
    return text if len(got) == len(values) else f"{text} ({len(got)}/{len(values)})"


def render(report: dict[str, Any]) -> str:
    """The results page."""
    cfg = report["config"]
    arms = report["arms"]
    seeds = report["seeds"]
    lines = [
        "# Stream selection: which served records to label",
        "",
        f"`OMP_NUM_THREADS=1 python bench/stream.py` — {len(seeds)} paired seeds, a stream of "
        f"{cfg['stream']:,} records after a champion trained on {cfg['init_labels']} random "
        f"labels; labeling rate {cfg['rate']:.0%} (control share {cfg['control_share']:.0%} "
        f"for the stream arms); retrain every {cfg['retrain_every']} new labels; "
        "StandardScaler + LogisticRegression. Drift scenario: from record "
        f"{cfg['stream'] // 2:,}, a seeded half of the classes {cfg['prior_weight']:g}× as likely "
        f"and a seeded third of the inputs moved by {cfg['feature_shift']:g} sd. Boost: "
        f"{cfg['boost']:g}× the rate for {cfg['boost_records']:,} records when the input_drift "
        f"trigger fires (checked every {cfg['rules']['drift_window']} records, PSI > "
        f"{cfg['rules']['psi_threshold']} or KS p < {cfg['rules']['ks_alpha']} with PSI > "
        f"{cfg['rules']['psi_threshold'] / 2:g}). Run time {report['seconds']:.0f} s.",
        "",
        "## Accuracy at the end of the stream (same labeling rate)",
        "",
        "Test accuracy (%) of the last model, on the regime the stream ends in; labels "
        "spent in brackets (the boost spends more). stream − random: paired mean (sd), "
        "seeds where stream ≥ random.",
        "",
        "| dataset | scenario | "
        + " | ".join(arms)
        + " | stream − random | seeds stream ≥ random |",
        "|---|---|" + "---|" * len(arms) + "---|---|",
    ]
    for name, d in report["datasets"].items():
        for scenario, sc in d["summary"].items():
            cells = [
                f"{sc['arms'][a]['mean_final_accuracy'] * 100:.2f} ({sc['arms'][a]['mean_labels']:.0f})"
                for a in arms
            ]
            p = sc["paired"].get("stream - random")
            tail = (
                f"{p['mean'] * 100:+.2f} ({p['sd'] * 100:.2f}) | {p['seeds_at_least']}/{p['seeds']}"
                if p
                else "– | –"
            )
            lines.append(f"| {name} | {scenario} | " + " | ".join(cells) + f" | {tail} |")
    lines += [
        "",
        "## Recovery after the drift",
        "",
        "*Recovered at q*: the first retrain after the drift whose accuracy on the drifted "
        "test split reaches q × the best final accuracy of any arm on the same seed "
        f"(q = {' and '.join(f'{q:g}' for q in RECOVER)}; 0.99 is about within a point). "
        "Labels and records counted from the drift: median over the seeds, a seed that "
        "never recovered counting as infinitely many (how many recovered in brackets "
        "when not all). Accuracy at drift: the model serving when "
        "the drift starts, on the drifted test split. Drift events: windows where "
        "input_drift fired (stationary: false alarms).",
        "",
        "| dataset | arm | accuracy at drift | "
        + " | ".join(f"labels to {q:g} | records to {q:g}" for q in RECOVER)
        + " | final accuracy | drift events (drift / stationary) |",
        "|---|---|---|" + "---|---|" * len(RECOVER) + "---|---|",
    ]
    for name, d in report["datasets"].items():
        sc = d["summary"]["drift"]["arms"]
        st = d["summary"].get("stationary", {}).get("arms", {})
        for a in arms:
            r = sc[a]
            ev = f"{np.mean(r['drift_events']):.1f} / " + (
                f"{np.mean(st[a]['drift_events']):.1f}" if a in st else "–"
            )
            rec = " | ".join(
                f"{_fmt_median(r[f'recovery_labels@{q:g}'])} | {_fmt_median(r[f'recovery_records@{q:g}'])}"
                for q in RECOVER
            )
            lines.append(
                f"| {name} | {a} | {np.mean(r['accuracy_at_drift']) * 100:.2f} | {rec} | "
                f"{r['mean_final_accuracy'] * 100:.2f} | {ev} |"
            )
    lines += ["", "## Targets", ""]
    for name, d in report["datasets"].items():
        for scenario, sc in d["summary"].items():
            p = sc["paired"].get("stream - random")
            if p:
                ok = p["mean"] >= 0
                lines.append(
                    f"- {name}, {scenario}: stream − random {p['mean'] * 100:+.2f} points "
                    f"({p['seeds_at_least']}/{p['seeds']} seeds ≥) — target 1 "
                    f"{'met' if ok else 'NOT met'} on the mean."
                )
        for q, t2 in d["summary"].get("drift", {}).get("target_2", {}).items():
            lines.append(
                f"- {name}, drift, recovery to {q}: stream+boost needs fewer labels than "
                f"stream on {t2['seeds_fewer_labels']}/{t2['seeds']} seeds "
                f"({t2['seeds_same_labels']} ties), fewer records on "
                f"{t2['seeds_fewer_records']}/{t2['seeds']}."
            )
    lines += ["", "## Notes", "", *NOTES]
    return "\n".join(lines) + "\n"


def run(
    names: list[str],
    seeds: list[int],
    cfg: Config,
    arms: tuple[str, ...] = ARMS,
    max_rows: int | None = None,
) -> dict[str, Any]:
    """The whole bench: every dataset, scenario, seed and arm."""
    t0 = time.time()
    report: dict[str, Any] = {
        "config": cfg.to_dict(),
        "seeds": seeds,
        "arms": list(arms),
        "recover": RECOVER,
        "datasets": {},
    }
    for name in names:
        data = datasets.load(name)
        if data.kind != "tabular":
            raise ValueError(f"{name} is {data.kind}; the stream bench replays tabular data")
        X, y = np.asarray(data.X, dtype=np.float64), np.asarray(data.y)
        if max_rows and len(y) > max_rows:
            keep, _ = train_test_split(
                np.arange(len(y)), train_size=max_rows, stratify=y, random_state=12345
            )
            X, y = X[np.sort(keep)], y[np.sort(keep)]
        t1 = time.time()
        cells = {
            scenario: {
                seed: run_cell(X, y, default_model(), seed, cfg, scenario == "drift", arms)
                for seed in seeds
            }
            for scenario in SCENARIOS
        }
        report["datasets"][name] = {
            "rows": len(y),
            "classes": int(np.unique(y).size),
            "summary": summarize(cells, arms),
            "cells": {sc: {str(k): v for k, v in c.items()} for sc, c in cells.items()},
            "seconds": round(time.time() - t1, 1),
        }
        print(f"{name}: {time.time() - t1:.0f} s", flush=True)
    report["seconds"] = round(time.time() - t0, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--datasets", nargs="+", default=DATASETS)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--stream", type=int, default=Config.stream)
    p.add_argument("--rate", type=float, default=Config.rate)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1 for comparable timings", file=sys.stderr)
    cfg = Config(stream=args.stream, rate=args.rate)
    report = run(args.datasets, list(range(args.seeds)), cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stream.json").write_text(json.dumps(report, indent=1, default=_plain))
    (args.out / "stream.md").write_text(render(report))
    print(render(report))
    print(f"wrote {args.out / 'stream.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
