"""The price of the control share: the default strategy with and without a random tenth.

Every batch of a campaign draws ``control_fraction`` of its items at random (the
control: an unbiased accuracy estimate and the counterfactual of random labeling).
Those labels are not chosen by the strategy, so they may buy less accuracy. This runs
the label-efficiency protocol (``label_efficiency.py``: 5 paired seeds, batches of 10,
budget 500) with three arms: the default strategy, the default with its control share
(``loopwise.batch.control_count`` / ``draw_control``: a uniform draw, as the cycle's own (which draws by item-id hash keys)), and
random. Writes bench/results/control_share.{json,md}.

    python bench/control_share.py
    python bench/control_share.py --datasets digits --fraction 0.2
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from label_efficiency import MAX_ROWS, prepare  # noqa: E402

from loopwise import strategies  # noqa: E402
from loopwise.batch import control_count, draw_control  # noqa: E402
from loopwise.simulate import run_simulation  # noqa: E402

RESULTS = HERE / "results"


class WithControl:
    """A strategy whose batches keep ``fraction`` for uniformly drawn rows (the cycle's rule)."""

    def __init__(self, base: str, fraction: float, random_state: int = 0) -> None:
        self.base = strategies.get(base, random_state=random_state)
        self.fraction = fraction
        self.random_state = random_state
        self._calls = 0

    def query(self, clf, X_pool, n, **kw):
        k = control_count(n, self.fraction)
        picked = [int(i) for i in self.base.query(clf, X_pool, n - k, **kw)]
        self._calls += 1
        control = draw_control(
            X_pool.shape[0], picked, k, self.random_state * 100_003 + self._calls
        )
        return np.asarray(picked + control, dtype=int)


def with_control(base: str, fraction: float, random_state: int) -> WithControl:
    return WithControl(base, fraction, random_state)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--datasets", nargs="+", default=["digits", "letter", "adult"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--budget", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    default = strategies.DEFAULT
    controlled = f"{default}+control{round(args.fraction * 100)}"
    arms = {default: default, controlled: functools.partial(with_control, default, args.fraction)}
    report = {
        "protocol": {
            "seeds": list(range(args.seeds)),
            "budget": args.budget,
            "batch_size": args.batch_size,
            "control_fraction": args.fraction,
            "control_per_batch": control_count(args.batch_size, args.fraction),
        },
        "datasets": {},
    }
    lines = [
        "# The price of the control share",
        "",
        f"`python bench/control_share.py` — {args.seeds} paired seeds, budget {args.budget}, "
        f"batches of {args.batch_size} of which {control_count(args.batch_size, args.fraction)} "
        "drawn at random. AULC = mean test accuracy over the learning curve (points).",
        "",
        f"| dataset | {default} | {controlled} | random | control − default (paired, sd) | seeds control ≥ default |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.datasets:
        X, y, model, note = prepare(name, MAX_ROWS)
        t0 = time.time()
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
        curves = result.curves
        aulc = curves.groupby(["arm", "seed"])["accuracy"].mean().unstack("arm") * 100
        diff = aulc[controlled] - aulc[default]
        d = {
            "note": note,
            "aulc": {arm: float(aulc[arm].mean()) for arm in aulc.columns},
            "control_minus_default": {"mean": float(diff.mean()), "sd": float(diff.std(ddof=1))},
            "per_seed": {arm: aulc[arm].round(4).tolist() for arm in aulc.columns},
            "seconds": round(time.time() - t0, 1),
        }
        report["datasets"][name] = d
        lines.append(
            f"| {name} | {d['aulc'][default]:.2f} | {d['aulc'][controlled]:.2f} | "
            f"{d['aulc']['random']:.2f} | {diff.mean():+.2f} ({diff.std(ddof=1):.2f}) | "
            f"{int((diff >= 0).sum())}/{len(diff)} |"
        )
        print(lines[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "control_share.json").write_text(json.dumps(report, indent=1))
    (args.out / "control_share.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'control_share.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
