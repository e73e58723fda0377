"""Label efficiency: every Loopwise strategy beside modAL and scikit-activeml, one process.

Follows ../shared/BENCHMARK_PROTOCOL.md: stratified 70/30 split per seed, 2 seed
labels per class shared by every arm, batches of 10, budget min(500, pool),
StandardScaler + LogisticRegression (TF-IDF + LogisticRegression for TREC),
random as the control. Writes bench/results/label_efficiency.{json,md} and one
PNG of learning curves per dataset.

    python bench/label_efficiency.py                 # the full run (~30 min on 2 cores)
    python bench/label_efficiency.py --quick         # 3 seeds, budget 200
    python bench/label_efficiency.py --datasets digits --seeds 10
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from peers import PEER_COUNTERPART, make_peers  # noqa: E402

from loopwise import datasets, strategies  # noqa: E402
from loopwise.plots import plot_learning_curves  # noqa: E402
from loopwise.simulate import default_model, run_simulation  # noqa: E402

RESULTS = HERE / "results"
#: Larger tables are subsampled (stratified, fixed seed) so that every peer,
#: including the ones that build N × N kernels, runs in the time of one session.
MAX_ROWS = 6000
#: Loopwise strategies benchmarked (cold_start needs no model and is for cycle 0).
LOOPWISE = [n for n in strategies.names() if n not in ("random", "cold_start")]


def peer(name: str, random_state: int):
    """A peer adapter by name, seeded (module level so that it pickles)."""
    return make_peers(random_state)[name]


def prepare(name: str, max_rows: int):
    """Features, labels and model of a dataset, as every arm will see them."""
    data = datasets.load(name)
    X, y, model = data.X, data.y, data.model
    note = ""
    if data.kind == "text":
        # TF-IDF fitted once on all texts (unsupervised), dense float32, so that the
        # peers, which need numeric arrays, see exactly the features our model sees.
        X = TfidfVectorizer(sublinear_tf=True, min_df=2).fit_transform(X).astype(np.float32)
        X = X.toarray()
        model = LogisticRegression(max_iter=1000)
        note = f"TF-IDF ({X.shape[1]} terms, min_df=2, sublinear tf) + LogisticRegression"
    else:
        model = default_model()
        note = "StandardScaler + LogisticRegression(max_iter=1000)"
    if len(y) > max_rows:
        keep, _ = train_test_split(
            np.arange(len(y)), train_size=max_rows, stratify=y, random_state=12345
        )
        X, y = X[np.sort(keep)], y[np.sort(keep)]
        note += f"; stratified subsample of {max_rows:,} of {len(data.y):,} rows"
    return X, y, model, note


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--datasets", nargs="+", default=["digits", "letter", "adult", "trec"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--budget", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--max-rows", type=int, default=MAX_ROWS)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--no-peers", action="store_true", help="Loopwise strategies only")
    p.add_argument("--quick", action="store_true", help="3 seeds, budget 200")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--replot", action="store_true", help="redraw the PNGs and the table from the JSON"
    )
    args = p.parse_args()
    if args.replot:
        report = json.loads((args.out / "label_efficiency.json").read_text())
        for name, d in report["datasets"].items():
            plot(name, d, args.out, len(report["protocol"]["seeds"]))
        (args.out / "label_efficiency.md").write_text(render(report))
        return
    if args.quick:
        args.seeds, args.budget = 3, 200
    args.out.mkdir(parents=True, exist_ok=True)

    arms: dict = {name: name for name in LOOPWISE}
    peer_names = [] if args.no_peers else sorted(make_peers(0))
    for name in peer_names:
        arms[name] = functools.partial(peer, name)

    report = {
        "protocol": {
            "seeds": list(range(args.seeds)),
            "budget": args.budget,
            "batch_size": args.batch_size,
            "seed_labels_per_class": 2,
            "test_size": 0.3,
            "max_rows": args.max_rows,
            "blas_threads": os.environ.get("OMP_NUM_THREADS"),
            "default": strategies.DEFAULT,
        },
        "datasets": {},
    }
    out_json = args.out / "label_efficiency.json"
    if out_json.exists():  # keep datasets from an earlier partial run
        report["datasets"] = json.loads(out_json.read_text()).get("datasets", {})
    for name in args.datasets:
        X, y, model, note = prepare(name, args.max_rows)
        t0 = time.time()
        print(
            f"== {name}: {len(y):,} rows, {len(np.unique(y))} classes, {len(arms) + 1} arms; {note}",
            flush=True,
        )
        result = run_simulation(
            X,
            y,
            arms,
            model=model,
            seeds=range(args.seeds),
            batch_size=args.batch_size,
            budget=args.budget,
            n_jobs=args.jobs,
        )
        report["datasets"][name] = summarize(name, result, note, time.time() - t0)
        plot_learning_curves(
            result.mean_curves(),
            args.out / f"learning_curves_{name}.png",
            title=f"{name}: mean test accuracy over {args.seeds} seeds",
            highlight=strategies.DEFAULT,
        )
        out_json.write_text(json.dumps(report, indent=1, default=float))
        print(render_dataset(name, report["datasets"][name]), flush=True)
    (args.out / "label_efficiency.md").write_text(render(report))
    print(f"wrote {out_json} and {args.out / 'label_efficiency.md'}")


def plot(name: str, d: dict, out: Path, seeds: int, top: int = 6) -> None:
    """Learning curves of the default, random, and the ``top`` best other arms (all in the JSON)."""
    import pandas as pd

    ranked = [r["arm"] for r in sorted(d["summary"], key=lambda r: -r["aulc"])]
    keep = [
        strategies.DEFAULT,
        "random",
        *[a for a in ranked if a not in (strategies.DEFAULT, "random")][:top],
    ]
    curves = pd.DataFrame(d["mean_curves"])
    curves = curves[curves["arm"].isin(keep)]
    plot_learning_curves(
        curves,
        out / f"learning_curves_{name}.png",
        title=f"{name}: mean test accuracy over {seeds} seeds (default, random, {top} best others)",
        highlight=strategies.DEFAULT,
    )


def summarize(name, result, note, seconds) -> dict:
    """The figures of one dataset: per-arm summary, paired differences, target checks."""
    summary = result.summary()
    summary.insert(
        1, "library", [a.split(".")[0] if "." in a else "loopwise" for a in summary["arm"]]
    )
    default = strategies.DEFAULT
    peers = [a for a in result.arms if "." in a]
    aulc = summary.set_index("arm")["aulc"]
    best_peer = max(peers, key=aulc.get) if peers else None
    labels99 = result.labels_to_reach(0.99)
    checks = {
        "default_minus_random": result.paired_difference(default, "random"),
        "best_peer": best_peer,
        "default_minus_best_peer": result.paired_difference(default, best_peer)
        if best_peer
        else None,
        "labels_to_99pct": {"default": labels99[default], "random": labels99["random"]},
    }
    counterparts = {
        arm: {
            p: result.paired_difference(arm, p) for p in PEER_COUNTERPART.get(arm, []) if p in peers
        }
        for arm in LOOPWISE
    }
    return {
        "note": note,
        "seconds": seconds,
        "full_pool_accuracy": float(np.mean(list(result.full_pool_accuracy.values()))),
        "summary": json.loads(summary.to_json(orient="records")),
        "checks": checks,
        "counterparts": counterparts,
        "mean_curves": json.loads(result.mean_curves().to_json(orient="records")),
    }


def _fmt_labels(v):
    return "–" if v is None else str(int(v))


def render_dataset(name: str, d: dict) -> str:
    """Markdown table of one dataset, sorted by AULC."""
    rows = sorted(d["summary"], key=lambda r: -r["aulc"])
    rand = next(r["aulc"] for r in rows if r["arm"] == "random")
    lines = [
        f"### {name}",
        "",
        f"{d['note']}; whole-pool accuracy {d['full_pool_accuracy']:.3f}; run {d['seconds']:.0f} s",
        "",
        "| arm | library | AULC ± sd | Δ vs random (pts) | final acc | labels to 95 / 98 / 99 % | ms / query |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        arm = f"**{r['arm']}**" if r["arm"] == strategies.DEFAULT else r["arm"]
        lines.append(
            f"| {arm} | {r['library']} | {r['aulc']:.4f} ± {r['aulc_std']:.4f} | {100 * (r['aulc'] - rand):+.2f} "
            f"| {r['final_accuracy']:.3f} | {_fmt_labels(r['labels_to_95pct'])} / {_fmt_labels(r['labels_to_98pct'])} / "
            f"{_fmt_labels(r['labels_to_99pct'])} | {1000 * r['query_seconds']:.1f} |"
        )
    c = d["checks"]
    dr, dp = c["default_minus_random"], c["default_minus_best_peer"]
    lines += [
        "",
        f"- default − random: {100 * dr['mean']:+.2f} pts AULC (sd {100 * dr['std']:.2f}, wins {dr['wins']}/{dr['n']} seeds)",
    ]
    if dp:
        lines.append(
            f"- default − best peer ({c['best_peer']}): {100 * dp['mean']:+.2f} pts AULC (sd {100 * dp['std']:.2f}, wins {dp['wins']}/{dp['n']} seeds)"
        )
    l99 = c["labels_to_99pct"]
    if l99["default"] is not None and l99["random"] is not None:
        lines.append(
            f"- labels to 99 % of whole-pool accuracy: default {l99['default']}, random {l99['random']} (ratio {l99['default'] / l99['random']:.2f})"
        )
    else:
        lines.append(
            f"- labels to 99 % of whole-pool accuracy: default {_fmt_labels(l99['default'])}, random {_fmt_labels(l99['random'])} (– = not reached within the budget)"
        )
    return "\n".join(lines)


def render(report: dict) -> str:
    """The whole markdown report."""
    p = report["protocol"]
    head = [
        "# Label efficiency: Loopwise vs modAL vs scikit-activeml",
        "",
        f"Seeds {p['seeds'][0]}–{p['seeds'][-1]} (paired: same split and seed set for every arm), batch {p['batch_size']}, "
        f"budget {p['budget']} labels, 2 seed labels per class, 70/30 split, default strategy **{p['default']}**. "
        "AULC = mean test accuracy over the label counts from the seed set to the budget. Produced by `python bench/label_efficiency.py`.",
        "",
    ]
    return "\n".join(head + [render_dataset(n, d) + "\n" for n, d in report["datasets"].items()])


if __name__ == "__main__":
    main()
