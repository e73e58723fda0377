"""Consensus methods on simulated annotator pools: which label is right, and who is good.

Every item of a pool gets ``overlap`` answers from distinct annotators drawn at random
from five (``loopwise.annotators.draw_answers``): an expert (accuracy 0.95), a good
annotator (0.85), a careless one (0.60), a spammer (answers uniformly at random:
accuracy 1/K) and a biased one (0.65, and when wrong always the next class,
k -> k+1 mod K). 1,000 items with uniformly drawn true classes; 2 and 3 answers per
item; 2, 4 and 10 classes; 5 paired seeds (every method sees the same answers).

Methods: every name of ``loopwise.consensus.METHODS`` through ``consensus.aggregate``,
and, to decide which implementation ``aggregate`` runs for them, crowd-kit's
``DawidSkene`` against the hand-written ``dawid_skene`` and crowd-kit's ``MajorityVote``
against the hand-written ``majority_vote`` (same wrapping: integer codes, seeded
tie-breaking). Per method:

- ``accuracy``: consensus label vs the truth, over all items;
- ``accept(min_agreement=0.66)``: share of items accepted and accuracy of the accepted
  labels (the campaign rule); and the posterior rule ``min_confidence=0.9``;
- ``MAE acc``: mean absolute error of the estimated annotator accuracy against the
  profile's accuracy, over the five annotators;
- ``fit s``: seconds per fit (median over the cells; 1,000 items).

Writes bench/results/consensus_methods.{json,md}. About 4 minutes with 2 jobs on a busy
2-core machine; MACE and GLAD take most of it.

    python bench/consensus_methods.py
    python bench/consensus_methods.py --seeds 2 --classes 4 --jobs 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from loopwise import consensus  # noqa: E402
from loopwise.annotators import AnnotatorProfile, draw_answers  # noqa: E402

RESULTS = HERE / "results"
MIN_AGREEMENT = 0.66
MIN_CONFIDENCE = 0.9

#: Arm name → how it is run on the encoded annotations (``enc``) with a seeded ``rng``.
ARMS = {
    "dawid_skene (hand-written)": lambda enc, rng: consensus._dawid_skene(
        enc, rng, max_iter=100, tol=1e-6, smoothing=0.01
    ),
    "dawid_skene (crowd-kit)": lambda enc, rng: consensus._crowdkit(enc, "dawid_skene", rng),
    "one_coin": lambda enc, rng: consensus._crowdkit(enc, "one_coin", rng),
    "glad": lambda enc, rng: consensus._crowdkit(enc, "glad", rng),
    "mace": lambda enc, rng: consensus._crowdkit(enc, "mace", rng),
    "wawa": lambda enc, rng: consensus._crowdkit(enc, "wawa", rng),
    "majority (hand-written)": lambda enc, rng: consensus._majority_result(enc, rng),
    "majority (crowd-kit)": lambda enc, rng: consensus._crowdkit(enc, "majority", rng),
}


def pool(n_classes: int) -> dict[str, AnnotatorProfile]:
    """The five annotators; their true accuracy is the profile's ``accuracy``."""
    shift = {k: (k + 1) % n_classes for k in range(n_classes)}
    return {
        "expert": AnnotatorProfile(0.95),
        "good": AnnotatorProfile(0.85),
        "careless": AnnotatorProfile(0.60),
        "spammer": AnnotatorProfile(1.0 / n_classes),  # right 1/K, else uniform: uniform
        "biased": AnnotatorProfile(0.65, confusion=shift),
    }


def simulate(
    n_items: int, n_classes: int, overlap: int, seed: int
) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Answers (item, annotator, label), the truth per item, the true accuracy per annotator."""
    profiles = pool(n_classes)
    names = list(profiles)
    rng = np.random.RandomState(seed)
    truth = rng.randint(n_classes, size=n_items)
    who = np.argsort(rng.random_sample((n_items, len(names))), axis=1)[:, :overlap]
    answers = draw_answers(list(profiles.values()), who, truth[:, None], range(n_classes), rng)
    table = pd.DataFrame(
        {
            "item": np.repeat(np.arange(n_items), overlap),
            "annotator": np.asarray(names)[who.ravel()],
            "label": answers.ravel(),
        }
    )
    true_accuracy = pd.Series({n: p.accuracy for n, p in profiles.items()})
    return table, pd.Series(truth), true_accuracy


def run_cell(n_items: int, n_classes: int, overlap: int, seed: int) -> list[dict]:
    """Every arm on one simulated pool."""
    table, truth, true_accuracy = simulate(n_items, n_classes, overlap, seed)
    enc = consensus._encode(table, list(range(n_classes)))
    import crowdkit.aggregation  # noqa: F401 (its ~1.5 s import is not a fit)

    rows = []
    for arm, run in ARMS.items():
        t0 = time.perf_counter()
        result = run(enc, np.random.RandomState(seed))
        seconds = time.perf_counter() - t0
        labels = result.labels
        right = labels["label"].to_numpy() == truth.loc[labels.index].to_numpy()
        row = {
            "classes": n_classes,
            "overlap": overlap,
            "seed": seed,
            "method": arm,
            "accuracy": float(right.mean()),
            "seconds": seconds,
        }
        error = (result.annotator_accuracy - true_accuracy).abs().loc[true_accuracy.index]
        row["mae_accuracy"] = float(error.mean())
        row["error_spammer"] = float(error["spammer"])
        for rule, kw in (
            ("agree", {"min_agreement": MIN_AGREEMENT}),
            ("conf", {"min_agreement": 0.0, "min_confidence": MIN_CONFIDENCE}),
        ):
            accepted, _ = consensus.accept(labels, **kw)
            ok = accepted["label"].to_numpy() == truth.loc[accepted.index].to_numpy()
            row[f"{rule}_share"] = len(accepted) / len(labels)
            row[f"{rule}_accuracy"] = float(ok.mean()) if len(accepted) else float("nan")
        rows.append(row)
    return rows


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def render(df: pd.DataFrame, args: argparse.Namespace, elapsed: float) -> str:
    arms = list(ARMS)
    cells = sorted({(o, k) for o, k in zip(df["overlap"], df["classes"], strict=True)})
    lines = [
        "# Consensus methods on simulated annotator pools",
        "",
        f"`python bench/consensus_methods.py` — {args.items} items, {args.seeds} paired "
        f"seeds, {len(cells)} cells (answers per item × classes). Five annotators: expert "
        "0.95, good 0.85, careless 0.60, spammer (uniform), biased 0.65 (errs to the next "
        "class); each item is answered by `overlap` of them drawn at random. Numbers are "
        f"percentages, mean over seeds. Run time {elapsed:.0f} s with {args.jobs} job(s).",
        "",
        "## Accuracy of the consensus label (all items)",
        "",
        "| method | " + " | ".join(f"{o} ans, K={k}" for o, k in cells) + " | mean | "
        "vs majority (paired, sd) |",
        "|---|" + "---|" * (len(cells) + 2),
    ]
    acc = df.pivot_table(index=["overlap", "classes", "seed"], columns="method", values="accuracy")
    for arm in arms:
        per_cell = [acc[arm].xs((o, k), level=("overlap", "classes")).mean() for o, k in cells]
        diff = acc[arm] - acc["majority (hand-written)"]
        lines.append(
            f"| {arm} | "
            + " | ".join(pct(v) for v in per_cell)
            + f" | {pct(acc[arm].mean())} | {100 * diff.mean():+.1f} ({100 * diff.std(ddof=1):.1f}) |"
        )
    lines += [
        "",
        f"## Accepted labels, over all cells: `accept(min_agreement={MIN_AGREEMENT})` and "
        f"`accept(min_confidence={MIN_CONFIDENCE})`",
        "",
        "| method | agree≥0.66: accepted share | accuracy of accepted | conf≥0.9: accepted "
        "share | accuracy of accepted | MAE of annotator accuracy | MAE, spammer | fit s (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in arms:
        d = df[df["method"] == arm]
        lines.append(
            f"| {arm} | {pct(d['agree_share'].mean())} | {pct(d['agree_accuracy'].mean())} | "
            f"{pct(d['conf_share'].mean())} | {pct(d['conf_accuracy'].mean())} | "
            f"{pct(d['mae_accuracy'].mean())} | {pct(d['error_spammer'].mean())} | "
            f"{d['seconds'].median():.2f} |"
        )
    lines += [
        "",
        "## MAE of the estimated annotator accuracy, per cell (points)",
        "",
        "| method | " + " | ".join(f"{o} ans, K={k}" for o, k in cells) + " |",
        "|---|" + "---|" * len(cells),
    ]
    mae = df.pivot_table(index=["overlap", "classes"], columns="method", values="mae_accuracy")
    for arm in arms:
        lines.append(f"| {arm} | " + " | ".join(pct(mae.loc[c, arm]) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--overlaps", type=int, nargs="+", default=[2, 3])
    p.add_argument("--classes", type=int, nargs="+", default=[2, 4, 10])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    t0 = time.time()
    jobs = [
        (args.items, k, o, s)
        for o in args.overlaps
        for k in args.classes
        for s in range(args.seeds)
    ]
    out = Parallel(n_jobs=args.jobs)(delayed(run_cell)(*j) for j in jobs)
    df = pd.DataFrame([row for rows in out for row in rows])
    elapsed = time.time() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "protocol": {
            "items": args.items,
            "seeds": list(range(args.seeds)),
            "overlaps": args.overlaps,
            "classes": args.classes,
            "min_agreement": MIN_AGREEMENT,
            "min_confidence": MIN_CONFIDENCE,
        },
        "seconds": round(elapsed, 1),
        "rows": df.to_dict(orient="records"),
    }
    (args.out / "consensus_methods.json").write_text(json.dumps(report, indent=1))
    md = render(df, args, elapsed)
    (args.out / "consensus_methods.md").write_text(md)
    print(md)
    print(f"wrote {args.out / 'consensus_methods.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
