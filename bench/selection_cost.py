"""Selection cost: time and added memory of one query of k = 1,000 rows from a large pool.

Follows ../shared/BENCHMARK_PROTOCOL.md ("Selection cost"): a pool of N × 50 float32
rows from 10 Gaussian classes, a LogisticRegression fitted on 1,000 labeled rows
(not timed), a batch of k = 1,000. Each case runs in its own process with one BLAS
thread; it reports the wall time of the selection call and the peak resident memory
the call adds (peak during the call minus the RSS just before it; the pool, the
model and any layout a peer needs are built before that reading, and glibc's freed
heap is trimmed first so that the call cannot reuse it unseen). A case is run
once on a 2,048-row slice first, so that lazy imports are not counted.

    python bench/selection_cost.py                 # every case (~10 min on 2 cores)
    python bench/selection_cost.py --quick         # skip scikit-activeml at N = 1,000,000
    python bench/selection_cost.py --case loopwise.margin --n 1000000   # one case, JSON line

Writes bench/results/selection_cost.json and bench/results/selection_cost.md.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

N_FEATURES = 50
N_CLASSES = 10
N_LABELED = 1_000
K = 1_000
#: Rows per predict_proba call in the floors.
CHUNK = 65_536
#: Rows of the warm-up call made before the measured one.
WARMUP_ROWS = 2_048
#: A case whose first run takes longer than this is not repeated.
REPEAT_BELOW_S = 30.0
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

UNCERTAINTY_CASES = [
    "proba_floor",
    "entropy_floor",
    "loopwise.margin",
    "loopwise.entropy",
    "loopwise.diverse_margin",
    "modal.entropy",
    "modal.margin",
    "skactiveml.entropy",
]
CORESET_CASES = ["kcenter_floor", "loopwise.coreset", "skactiveml.coreset"]
#: (case, N) in the order they run.
PLAN = [(c, 1_000_000) for c in UNCERTAINTY_CASES] + [
    (c, n) for n in (50_000, 1_000_000) for c in CORESET_CASES
]


# ----------------------------------------------------------------------------- data


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool (n × 50 float32), labeled rows and their labels, from 10 Gaussian classes."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 0.5, size=(N_CLASSES, N_FEATURES)).astype(np.float32)

    def draw(rows: int) -> tuple[np.ndarray, np.ndarray]:
        X = np.empty((rows, N_FEATURES), dtype=np.float32)
        y = rng.integers(N_CLASSES, size=rows)
        for start in range(0, rows, CHUNK):  # in chunks: no float64 N × 50 temporary
            stop = min(start + CHUNK, rows)
            X[start:stop] = rng.standard_normal((stop - start, N_FEATURES), dtype=np.float32)
            X[start:stop] += centers[y[start:stop]]
        return X, y

    X_labeled, y_labeled = draw(N_LABELED)
    X_pool, _ = draw(n)
    return X_pool, X_labeled, y_labeled


# ---------------------------------------------------------------------------- cases


def _entropy_floor(clf: Any, X: np.ndarray, k: int) -> np.ndarray:
    """Chunked predict_proba, entropy, argpartition of the top k, sorted."""
    tiny = np.finfo(np.float32).tiny
    scores = np.empty(X.shape[0], dtype=np.float32)
    for start in range(0, X.shape[0], CHUNK):
        p = clf.predict_proba(X[start : start + CHUNK])
        scores[start : start + CHUNK] = -np.einsum("ij,ij->i", p, np.log(np.maximum(p, tiny)))
    top = np.argpartition(scores, scores.size - k)[-k:]
    return top[np.argsort(-scores[top], kind="stable")]


def _kcenter_floor(X: np.ndarray, centers: np.ndarray, k: int) -> np.ndarray:
    """Farthest-first traversal in float32: one matvec and one minimum per pick."""
    sq = np.einsum("ij,ij->i", X, X)
    c_sq = np.einsum("ij,ij->i", centers, centers)
    min_d = np.empty(X.shape[0], dtype=np.float32)
    step = 4_096  # 4,096 × 1,000 float32 = 16 MB of distances at a time
    for start in range(0, X.shape[0], step):
        block = X[start : start + step] @ centers.T
        block *= -2.0
        block += c_sq
        min_d[start : start + step] = block.min(axis=1)
    min_d += sq
    buf = np.empty(X.shape[0], dtype=np.float32)
    picks = np.empty(k, dtype=np.intp)
    for t in range(k):
        i = int(np.argmax(min_d))
        picks[t] = i
        np.dot(X, -2.0 * X[i], out=buf)
        buf += sq
        buf += sq[i]
        np.minimum(min_d, buf, out=min_d)
        min_d[i] = -np.inf
    return picks


def prepare(
    case: str, clf: Any, X: np.ndarray, XL: np.ndarray, yL: np.ndarray, k: int
) -> Callable[[], Any]:
    """The call to time for ``case``, with everything it needs built beforehand."""
    if case == "proba_floor":

        def run() -> None:
            for start in range(0, X.shape[0], CHUNK):
                clf.predict_proba(X[start : start + CHUNK])

        return run
    if case == "entropy_floor":
        return lambda: _entropy_floor(clf, X, k)
    if case == "kcenter_floor":
        return lambda: _kcenter_floor(X, XL, k)
    if case.startswith("loopwise."):
        from loopwise import strategies

        s = strategies.get(case.split(".", 1)[1], random_state=0)
        if case == "loopwise.coreset":
            return lambda: s.query(clf, X, k, X_labeled=XL, y_labeled=yL)
        return lambda: s.query(clf, X, k)
    if case.startswith("modal."):
        from modAL.uncertainty import entropy_sampling, margin_sampling

        fn = {"modal.entropy": entropy_sampling, "modal.margin": margin_sampling}[case]
        return lambda: fn(clf, X, n_instances=k)[0]
    if case.startswith("skactiveml."):
        import skactiveml.pool

        sys.path.insert(0, str(HERE))
        from peers import MISSING, Layout

        lay = Layout.build(clf, X, XL, yL)  # the stacked layout the library wants (not timed)
        if case == "skactiveml.entropy":
            qs = skactiveml.pool.UncertaintySampling(
                method="entropy", missing_label=MISSING, random_state=0
            )
            wrapped = lay.wrap(clf, random_state=0)  # fitted on the labeled rows, not timed
            return lambda: lay.to_pool(
                qs.query(
                    lay.X,
                    lay.y,
                    clf=wrapped,
                    fit_clf=False,
                    candidates=lay.candidates,
                    batch_size=k,
                )
            )
        if case == "skactiveml.coreset":
            qs = skactiveml.pool.CoreSet(missing_label=MISSING, random_state=0)
            return lambda: lay.to_pool(
                qs.query(lay.X, lay.y, candidates=lay.candidates, batch_size=k)
            )
    raise ValueError(f"unknown case {case!r}")


# ------------------------------------------------------------------------ measuring


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc), so that building the pool does not
    leave resident free memory that the measured call would reuse unseen."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: measure as is
        pass


class PeakRSS:
    """Context manager: RSS before, and the peak RSS during the block (5 ms sampling + ru_maxrss)."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self._stop = threading.Event()
        self.before = self.peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        gc.collect()
        _malloc_trim()
        self.maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.before = self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if maxrss_after > self.maxrss_before:  # the process peak was reached during the block
            self.peak = max(self.peak, maxrss_after)

    @property
    def added_mb(self) -> float:
        """Peak during the block minus RSS before it, in MB (10^6 bytes)."""
        return max(0, self.peak - self.before) / 1e6


def run_case(case: str, n: int, k: int) -> dict[str, Any]:
    """Build the pool and model, warm up, then time one selection and measure its memory."""
    from sklearn.linear_model import LogisticRegression

    X, XL, yL = make_data(n)
    clf = LogisticRegression(max_iter=1000).fit(XL, yL)
    w = min(WARMUP_ROWS, n)
    prepare(case, clf, X[:w], XL, yL, min(16, w))()
    call = prepare(case, clf, X, XL, yL, k)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = call()
        seconds = time.perf_counter() - t0
    status = "ok"
    if out is not None:
        idx = np.asarray(out).ravel()
        if idx.size != k or np.unique(idx).size != k or idx.min() < 0 or idx.max() >= n:
            status = "invalid"
    return {
        "case": case,
        "n": n,
        "k": k,
        "seconds": seconds,
        "added_mb": mem.added_mb,
        "status": status,
    }


# --------------------------------------------------------------------------- driver


def spawn(case: str, n: int, k: int, timeout: float) -> dict[str, Any]:
    """Run one case in a fresh process with one BLAS thread; its last stdout line is JSON."""
    env = {**os.environ, **THREAD_ENV}
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--case",
        case,
        "--n",
        str(n),
        "--k",
        str(k),
    ]
    row: dict[str, Any] = {"case": case, "n": n, "k": k, "seconds": None, "added_mb": None}
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**row, "status": "timeout"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        return {**row, "status": f"error (rc {proc.returncode}): {tail[0][:200]}"}
    return json.loads(lines[-1])


def measure(case: str, n: int, k: int, timeout: float, repeats: int) -> dict[str, Any]:
    """Median over ``repeats`` fresh processes, or the single run if it exceeds 30 s."""
    runs = [spawn(case, n, k, timeout)]
    if runs[0]["status"] == "ok" and runs[0]["seconds"] < REPEAT_BELOW_S:
        runs += [spawn(case, n, k, timeout) for _ in range(repeats - 1)]
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return {**runs[0], "repeats": len(runs)}
    return {
        "case": case,
        "n": n,
        "k": k,
        "seconds": statistics.median(r["seconds"] for r in ok),
        "added_mb": statistics.median(r["added_mb"] for r in ok),
        "status": "ok",
        "repeats": len(ok),
    }


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.3f}" if s < 10 else f"{s:.1f}"


def _fmt_mb(mb: float | None) -> str:
    if mb is None:
        return "–"
    return f"{mb:,.0f}" if mb >= 10 else f"{mb:.1f}"


def report(rows: list[dict[str, Any]], quick: bool) -> str:
    """The markdown table and the target ratios."""
    by = {(r["case"], r["n"]): r for r in rows}

    def sec(case: str, n: int) -> float | None:
        r = by.get((case, n))
        return r["seconds"] if r and r["status"] == "ok" else None

    lines = [
        "# Selection cost",
        "",
        f"One query of k = {K:,} from N × {N_FEATURES} float32 rows (10 Gaussian classes), "
        f"LogisticRegression fitted on {N_LABELED:,} labeled rows (not timed). Each case in a "
        "fresh process, one BLAS thread, after a warm-up call on 2,048 rows; median of 3 "
        f"processes (1 if the first took over {REPEAT_BELOW_S:.0f} s). Added memory: peak RSS "
        "during the call minus RSS before it (freed heap returned to the OS with `malloc_trim` first). Peers are called directly (modAL "
        "`entropy_sampling`/`margin_sampling`; scikit-activeml with the stacked labeled + pool "
        "layout and the wrapped classifier built before the timer, `fit_clf=False`).",
        "",
        "| case | N | time (s) | × proba floor | added memory (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        floor = sec("proba_floor", r["n"])
        s = r["seconds"] if r["status"] == "ok" else None
        ratio = f"{s / floor:.2f}×" if s is not None and floor else "–"
        t = _fmt_s(s) if r["status"] == "ok" else r["status"]
        lines.append(f"| {r['case']} | {r['n']:,} | {t} | {ratio} | {_fmt_mb(r['added_mb'])} |")
    if quick:
        lines += ["", "`--quick`: scikit-activeml at N = 1,000,000 skipped."]

    lines += ["", "## Targets", ""]
    floor = sec("proba_floor", 1_000_000)
    for name in ("loopwise.margin", "loopwise.entropy"):
        s = sec(name, 1_000_000)
        if s is not None and floor:
            verdict = "met" if s / floor <= 1.2 else "MISSED"
            lines.append(
                f"- {name} at N = 1,000,000: {s:.3f} s = {s / floor:.2f}× proba floor "
                f"({floor:.3f} s); target ≤ 1.2× — {verdict}"
            )
    margin, default = sec("loopwise.margin", 1_000_000), sec("loopwise.diverse_margin", 1_000_000)
    if margin and default is not None:
        verdict = "met" if default / margin <= 3 else "MISSED"
        lines.append(
            f"- loopwise.diverse_margin (the default) at N = 1,000,000: {default:.3f} s = "
            f"{default / margin:.2f}× plain margin ({margin:.3f} s); target ≤ 3× — {verdict}"
        )
    lw, sk = sec("loopwise.coreset", 50_000), sec("skactiveml.coreset", 50_000)
    if lw is not None and sk is not None:
        verdict = "met" if sk / lw >= 5 else "MISSED"
        lines.append(
            f"- loopwise.coreset at N = 50,000: {lw:.3f} s vs scikit-activeml CoreSet {sk:.2f} s "
            f"= {sk / lw:.1f}× faster; target ≥ 5× — {verdict}"
        )
    small, big = by.get(("loopwise.coreset", 50_000)), by.get(("loopwise.coreset", 1_000_000))
    if small and big and small["status"] == big["status"] == "ok":
        a, b = small["added_mb"], big["added_mb"]
        per_row = [1e6 * m / n for m, n in ((a, 50_000), (b, 1_000_000))]
        growth = b / a if a > 0 else float("inf")
        verdict = "met" if growth <= 20 * 1.25 else "MISSED"
        lines.append(
            f"- loopwise.coreset added memory: {a:.1f} MB at 50,000 rows, {b:.1f} MB at "
            f"1,000,000 ({per_row[0]:.0f} → {per_row[1]:.0f} bytes per pool row); "
            f"{growth:.1f}× for 20× the rows; target linear in N (≤ 20×, 25 % slack) — {verdict}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--case", help="run one case in this process and print a JSON line")
    p.add_argument("--n", type=int, default=1_000_000, help="pool rows (with --case)")
    p.add_argument("--k", type=int, default=K, help="batch size")
    p.add_argument("--quick", action="store_true", help="skip scikit-activeml at N = 1,000,000")
    p.add_argument("--timeout", type=float, default=400.0, help="seconds per case process")
    p.add_argument("--repeats", type=int, default=3, help="processes per case under 30 s")
    p.add_argument("--cases", nargs="+", help="only these cases (driver mode)")
    p.add_argument("--out", type=Path, default=RESULTS, help="output directory")
    args = p.parse_args()

    if args.case:
        print(json.dumps(run_case(args.case, args.n, args.k)), flush=True)
        return

    rows = []
    for case, n in PLAN:
        if args.cases and case not in args.cases:
            continue
        if args.quick and case.startswith("skactiveml.") and n >= 1_000_000:
            continue
        t0 = time.perf_counter()
        row = measure(case, n, args.k, args.timeout, args.repeats)
        rows.append(row)
        print(
            f"{case:20s} N={n:>9,}  {_fmt_s(row['seconds']):>8} s  {_fmt_mb(row['added_mb']):>7} MB  "
            f"{row['status']}  ({time.perf_counter() - t0:.0f} s wall)",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    earlier = args.out / "selection_cost.json"
    if args.cases and earlier.exists():  # a partial run replaces only the cases it ran
        ran = {(r["case"], r["n"]) for r in rows}
        kept = [r for r in json.loads(earlier.read_text()) if (r["case"], r["n"]) not in ran]
        order = {key: i for i, key in enumerate(PLAN)}
        rows = sorted(kept + rows, key=lambda r: order.get((r["case"], r["n"]), len(order)))
    (args.out / "selection_cost.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "selection_cost.md").write_text(report(rows, args.quick))
    print(f"wrote {args.out / 'selection_cost.json'} and {args.out / 'selection_cost.md'}")


if __name__ == "__main__":
    main()
