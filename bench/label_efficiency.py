"""Label efficiency: Loopwise strategies beside modAL and scikit-activeml, one process.

Follows ../shared/BENCHMARK_PROTOCOL.md: stratified 70/30 split per seed, 2 seed
labels per class shared by every arm, StandardScaler + LogisticRegression
(TF-IDF + LogisticRegression for text), random as the control. A *cell* is a
dataset at a batch size (``digits@1``): the four public datasets at batch sizes 1,
10 and 50, the text sets and the synthetic regimes of
:data:`loopwise.datasets.REGIMES` at 10. Writes
bench/results/label_efficiency.{json,md} (one table per cell and a summary
table: default − random, − margin, − best peer, per cell) and one PNG of
learning curves per cell.

    python bench/label_efficiency.py                       # every cell (~75 min on 2 cores)
    python bench/label_efficiency.py --cells digits@1 trec@10 --seeds 10
    python bench/label_efficiency.py --all-arms --cells digits@10   # every strategy and peer
    python bench/label_efficiency.py --quick               # 3 seeds, budget 150, 4 cells
    python bench/label_efficiency.py --replot             # tables and PNGs from the JSON
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
MAX_ROWS = 3000
#: Loopwise strategies benchmarked (cold_start needs no model and is for cycle 0).
LOOPWISE = [n for n in strategies.names() if n not in ("random", "cold_start")]
#: The arms of the wide run: the default, margin, the previous default, and the
#: strongest peers of the batch-10 bench (TypiClust, FALCUN, BADGE, ranked batch).
CORE_ARMS = [strategies.DEFAULT, "margin", "cluster_margin"]
CORE_PEERS = [
    "skactiveml.typiclust",
    "skactiveml.falcun",
    "skactiveml.badge",
    "modal.ranked_batch",
]
PUBLIC = ["digits", "letter", "adult", "trec"]
#: Every cell of the wide run: public data at batch 1, 10 and 50; text and synthetic at 10.
CELLS = [
    *(f"{d}@{b}" for b in (10, 1, 50) for d in PUBLIC),
    "sst2@10",
    "agnews@10",
    *(f"{r}@10" for r in datasets.REGIMES),
]
#: One cell per regime family, for a quick look (``--quick``).
QUICK = ["digits@10", "trec@10", "digits@1", "syn-imbalance-1to20@10"]
#: Label budget at batch size 1 (one retrain per label): the costly-expert regime.
BUDGET_AT_BATCH_1 = 150


def parse_cell(cell: str) -> tuple[str, int]:
    """``"digits@10"`` → ``("digits", 10)``."""
    name, _, batch = cell.partition("@")
    if not batch.isdigit() or int(batch) < 1 or name not in datasets.names():
        raise ValueError(f"a cell is DATASET@BATCH with a known dataset, got {cell!r}")
    return name, int(batch)


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
    p.add_argument("--cells", nargs="+", default=CELLS, help="DATASET@BATCH, e.g. letter@1")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument(
        "--budget", type=int, default=300, help=f"labels ({BUDGET_AT_BATCH_1} at batch 1)"
    )
    p.add_argument("--max-rows", type=int, default=MAX_ROWS)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--all-arms", action="store_true", help="every Loopwise strategy and peer")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"3 seeds, budget 150, cells {QUICK}, into results/quick/",
    )
    p.add_argument("--no-peers", action="store_true", help="Loopwise strategies only")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--replot", action="store_true", help="redraw the PNGs and the tables from the JSON"
    )
    args = p.parse_args()
    if args.quick:  # never over the full run's results
        args.seeds, args.budget, args.cells = 3, 150, QUICK
        args.out = args.out / "quick" if args.out == RESULTS else args.out
    out_json = args.out / "label_efficiency.json"
    if args.replot:
        report = json.loads(out_json.read_text())
        for cell, d in report["cells"].items():
            plot(cell, d, args.out, len(report["protocol"]["seeds"]))
        (args.out / "label_efficiency.md").write_text(render(report))
        return
    cells = [(c, *parse_cell(c)) for c in args.cells]
    args.out.mkdir(parents=True, exist_ok=True)
    arms = _arms(args.all_arms, args.no_peers)
    report = {
        "protocol": {
            "seeds": list(range(args.seeds)),
            "budget": args.budget,
            "budget_at_batch_1": BUDGET_AT_BATCH_1,
            "seed_labels_per_class": 2,
            "test_size": 0.3,
            "max_rows": args.max_rows,
            "blas_threads": os.environ.get("OMP_NUM_THREADS"),
            "default": strategies.DEFAULT,
        },
        "cells": {},
    }
    if out_json.exists():  # keep the cells of an earlier (partial) run of the same protocol
        earlier = json.loads(out_json.read_text())
        same = {k: v for k, v in earlier.get("protocol", {}).items() if k != "blas_threads"}
        if same == {k: v for k, v in report["protocol"].items() if k != "blas_threads"}:
            report["cells"] = earlier.get("cells", {})
    for cell, name, batch in cells:
        X, y, model, note = prepare(name, args.max_rows)
        budget = min(args.budget, BUDGET_AT_BATCH_1) if batch == 1 else args.budget
        t0 = time.time()
        print(f"== {cell}: {len(y):,} rows, {len(np.unique(y))} classes; {note}", flush=True)
        result = run_simulation(
            X,
            y,
            arms,
            model=model,
            seeds=range(args.seeds),
            batch_size=batch,
            budget=budget,
            n_jobs=args.jobs,
        )
        d = summarize(cell, result, note, time.time() - t0)
        d.update(dataset=name, batch_size=batch, budget=budget)
        report["cells"][cell] = d
        plot(cell, d, args.out, args.seeds)
        out_json.write_text(json.dumps(report, indent=1, default=float))
        print(render_dataset(cell, d), flush=True)
    (args.out / "label_efficiency.md").write_text(render(report))
    print(f"wrote {out_json} and {args.out / 'label_efficiency.md'}")


def _arms(all_arms: bool, no_peers: bool) -> dict:
    """Arm name → strategy name or seeded peer factory."""
    names = LOOPWISE if all_arms else CORE_ARMS
    arms: dict = {name: name for name in names}
    peer_names = sorted(make_peers(0)) if all_arms else CORE_PEERS
    for name in [] if no_peers else peer_names:
        arms[name] = functools.partial(peer, name)
    return arms


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
        out / f"learning_curves_{name.replace('@', '_b')}.png",
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
        "default_minus_margin": result.paired_difference(default, "margin")
        if "margin" in result.arms
        else None,
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
        if arm in result.arms
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


def _pts(d: dict | None) -> str:
    if not d:
        return "–"
    return f"{100 * d['mean']:+.2f} ± {100 * d['std']:.2f} ({d['wins']}/{d['n']})"


def summary_rows(report: dict) -> tuple[list[str], dict[str, float]]:
    """The summary table (one row per cell) and every arm's AULC averaged over all cells."""
    lines = [
        "| cell | default AULC | − random | − margin | best peer | − best peer |",
        "|---|---|---|---|---|---|",
    ]
    per_arm: dict[str, list[float]] = {}
    for cell, d in report["cells"].items():
        c = d["checks"]
        aulc = {r["arm"]: r["aulc"] for r in d["summary"]}
        for arm, v in aulc.items():
            per_arm.setdefault(arm, []).append(v)
        lines.append(
            f"| {cell} | {aulc[report['protocol']['default']]:.4f} | {_pts(c['default_minus_random'])} "
            f"| {_pts(c.get('default_minus_margin'))} | {c['best_peer'] or '–'} "
            f"| {_pts(c['default_minus_best_peer'])} |"
        )
    n = len(report["cells"])
    means = {a: float(np.mean(v)) for a, v in per_arm.items() if len(v) == n}
    return lines, means


def targets(report: dict, means: dict[str, float]) -> list[str]:
    """The issue's targets, each checked on the figures above."""
    default = report["protocol"]["default"]
    floor_random, floor_margin = [], []
    for cell, d in report["cells"].items():
        c = d["checks"]
        if c["default_minus_random"]["mean"] < -0.003:
            floor_random.append(f"{cell} ({100 * c['default_minus_random']['mean']:+.2f})")
        if c.get("default_minus_margin") and c["default_minus_margin"]["mean"] < -0.005:
            floor_margin.append(f"{cell} ({100 * c['default_minus_margin']['mean']:+.2f})")
    peers = {a: v for a, v in means.items() if "." in a}
    best = max(peers, key=peers.get) if peers else None
    lines = [
        "- every cell: default ≥ random − 0.3 pts — "
        + ("met" if not floor_random else "missed on " + ", ".join(floor_random)),
        "- every cell: default ≥ margin − 0.5 pts — "
        + ("met" if not floor_margin else "missed on " + ", ".join(floor_margin)),
    ]
    if best:
        gap = 100 * (means[default] - peers[best])
        lines.append(
            f"- averaged over all {len(report['cells'])} cells: default {means[default]:.4f} vs best single peer "
            f"{best} {peers[best]:.4f} ({gap:+.2f} pts) — {'met' if gap >= 0 else 'missed'}"
        )
    trec = report["cells"].get("trec@10")
    if trec:
        aulc = {r["arm"]: r["aulc"] for r in trec["summary"]}
        if "skactiveml.typiclust" in aulc:
            gap = 100 * (aulc[default] - aulc["skactiveml.typiclust"])
            lines.append(
                f"- TREC at batch 10: default − TypiClust {gap:+.2f} pts — {'met' if gap >= 0 else 'missed'}"
            )
    return lines


def render(report: dict) -> str:
    """The whole markdown report: protocol, summary, targets, one table per cell."""
    p = report["protocol"]
    table, means = summary_rows(report)
    ranked = sorted(means.items(), key=lambda kv: -kv[1])
    head = [
        "# Label efficiency: Loopwise vs modAL vs scikit-activeml",
        "",
        f"Seeds {p['seeds'][0]}–{p['seeds'][-1]} (paired: same split and seed set for every arm), "
        f"budget {p['budget']} labels ({p['budget_at_batch_1']} at batch size 1), 2 seed labels per class, "
        f"70/30 split, at most {p['max_rows']:,} rows per dataset (stratified subsample), "
        f"default strategy **{p['default']}**. A cell is DATASET@BATCH_SIZE. AULC = mean test "
        "accuracy over the label counts from the seed set to the budget. Differences are paired "
        "AULC points: mean ± sd over seeds (wins/seeds). Produced by `python bench/label_efficiency.py`.",
        "",
        "## Summary",
        "",
        *table,
        "",
        "Mean AULC over all cells: " + ", ".join(f"{a} {v:.4f}" for a, v in ranked),
        "",
        "## Targets",
        "",
        *targets(report, means),
        "",
        "## Cells",
        "",
    ]
    return "\n".join(head + [render_dataset(n, d) + "\n" for n, d in report["cells"].items()])


if __name__ == "__main__":
    main()
