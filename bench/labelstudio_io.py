"""Label Studio I/O cost and adaptive overlap, measured against a real local server.

- Dispatch: ``tasks.labelstudio.dispatch_batch`` of N tasks (payload building,
  dedupe check, ledger writes, chunks of ``tasks.labelstudio.CHUNK``) vs one raw
  ``import_tasks`` of the same payload, each into a fresh project; median of
  ``--repeats``.
- Collect: ``tasks.labelstudio.collect_annotations`` (first poll: export, parse,
  check every annotation, append to the ledger) of N finished tasks vs a raw JSON
  export of the same project; and an incremental poll after 20 new annotations.
- Adaptive overlap: accepted-label accuracy and annotations paid, full overlap (3
  per item) vs adaptive, with simulated annotators and a real model's confidences.

Each Loopwise call is what a fresh run does: a new :class:`storage.campaign.Ledgers` on
the project's store (nothing cached from an earlier call).

Writes labelstudio_io.{json,md} to ``--out`` (default bench/results).
``python bench/labelstudio_io.py``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from devstack import labelstudio_server as lss  # noqa: E402
from loopwise.consensus import AdaptiveOverlap, AnnotatorProfile, simulate_adaptive_overlap  # noqa: E402
from loopwise.labelstudio import task_payload  # noqa: E402
from loopwise.simulate import default_model  # noqa: E402
from storage.campaign import Ledgers  # noqa: E402
from storage.store import Store  # noqa: E402
from tasks import labelstudio as ls  # noqa: E402

LABELS = ["neg", "pos", "neutral"]


def _batch(n: int) -> list[dict]:
    return [
        {
            "item_id": f"item-{i:06d}",
            "data": {"text": f"record {i}: " + "lorem ipsum " * 8},
            "prediction_label": LABELS[i % 3],
            "prediction_score": 0.5 + (i % 50) / 100,
            "query_score": 1.0 - i / n,
        }
        for i in range(n)
    ]


def _ledgers(store_root: Path, project_id: int) -> Ledgers:
    """The project's ledgers as a new run opens them (nothing read yet)."""
    return Ledgers(Store(store_root), project_id)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_dispatch(info, n: int, repeats: int, tmp: Path) -> dict:
    server = ls.LabelStudioTarget(info.url, info.token)
    client = server.client()
    batch = _batch(n)
    payload = [
        task_payload(
            b["item_id"],
            b["data"],
            prediction_label=b["prediction_label"],
            prediction_score=b["prediction_score"],
            query_score=b["query_score"],
            model_version="m1",
            labels=LABELS,
            to_name="text",
        )
        for b in batch
    ]
    raw, ours = [], []
    for r in range(repeats):
        p_raw = ls.ensure_project.fn(server, f"raw-{r}", LABELS, "text")
        p_ours = ls.ensure_project.fn(server, f"ours-{r}", LABELS, "text")
        store = tmp / f"store-d{r}"
        raw.append(
            _timed(
                lambda p=p_raw: client.projects.import_tasks(
                    id=p, request=payload, return_task_ids=True
                )
            )
        )
        ours.append(
            _timed(
                lambda p=p_ours, store=store: ls.dispatch_batch.fn(
                    server.for_project(p),
                    _ledgers(store, p),
                    batch,
                    cycle=1,
                    model_version="m1",
                    labels=LABELS,
                )
            )
        )
        again = _timed(
            lambda p=p_ours, store=store: ls.dispatch_batch.fn(
                server.for_project(p), _ledgers(store, p), batch, cycle=1, labels=LABELS
            )
        )
    return {
        "n": n,
        "raw_import_s": statistics.median(raw),
        "dispatch_s": statistics.median(ours),
        "ratio": statistics.median(ours) / statistics.median(raw),
        "rerun_s": again,
        "raw_all": raw,
        "dispatch_all": ours,
    }


def bench_collect(info, n: int, repeats: int, tmp: Path) -> dict:
    server = ls.LabelStudioTarget(info.url, info.token)
    client = server.client()
    me = client.users.whoami().id
    pid = ls.ensure_project.fn(server, "collect", LABELS, "text")
    target = server.for_project(pid)
    tasks = []
    for b in _batch(n):
        t = task_payload(b["item_id"], b["data"])
        t["annotations"] = [
            {
                "result": [
                    {
                        "from_name": "label",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": [LABELS[int(b["item_id"][-1]) % 3]]},
                    }
                ],
                "completed_by": me,
            }
        ]
        tasks.append(t)
    for s in range(0, n, 500):
        client.projects.import_tasks(id=pid, request=tasks[s : s + 500])
    # Label Studio finishes its own post-import bookkeeping (task counters) in the
    # background and bumps the tasks' updated_at as it does; let it settle so that the
    # incremental poll below measures 20 new annotations, not that bookkeeping.
    time.sleep(5)
    raw, ours = [], []
    for r in range(repeats):
        raw.append(
            _timed(
                lambda: json.loads(
                    b"".join(
                        client.projects.exports.download_sync(
                            pid, export_type="JSON", download_all_tasks=True
                        )
                    )
                )
            )
        )
        store = tmp / f"store-c{r}"
        out = {}
        ours.append(
            _timed(
                lambda store=store, out=out: out.update(
                    ls.collect_annotations.fn(target, _ledgers(store, pid), LABELS)
                )
            )
        )
        assert out["new"] == n, out
    # incremental: 20 new annotations after the checkpoint
    ids = [t.id for t in client.tasks.list(project=pid, fields="task_only", page_size=1000)][:20]
    time.sleep(1.5)
    for tid in ids:
        client.annotations.create(
            id=tid,
            result=[
                {
                    "from_name": "label",
                    "to_name": "text",
                    "type": "choices",
                    "value": {"choices": ["pos"]},
                }
            ],
            completed_by=me,
        )
    out = {}
    inc = _timed(
        lambda: out.update(ls.collect_annotations.fn(target, _ledgers(store, pid), LABELS))
    )
    return {
        "n": n,
        "raw_export_s": statistics.median(raw),
        "collect_s": statistics.median(ours),
        "ratio": statistics.median(ours) / statistics.median(raw),
        "incremental_s": inc,
        "incremental_mode": out["mode"],
        "incremental_tasks_read": out["tasks_read"],
        "incremental_new": out["new"],
        "raw_all": raw,
        "collect_all": ours,
    }


def bench_adaptive(seeds: int) -> dict:
    """Real model confidences: LogisticRegression on 100 digits labels, scored on the pool."""
    X, y = load_digits(return_X_y=True)
    profiles = [
        AnnotatorProfile(0.9),
        AnnotatorProfile(0.85),
        AnnotatorProfile(0.8),
        AnnotatorProfile(0.75),
        AnnotatorProfile(0.6, confusion={1: 7}),
    ]
    rows = []
    for seed in range(seeds):
        X_lab, X_pool, y_lab, y_pool = train_test_split(
            X, y, train_size=100, stratify=y, random_state=seed
        )
        clf = default_model().fit(X_lab, y_lab)
        proba = clf.predict_proba(X_pool)
        out = simulate_adaptive_overlap(
            y_pool,
            clf.classes_[proba.argmax(1)],
            proba.max(1),
            profiles,
            policy=AdaptiveOverlap(confidence_threshold=0.9, max_annotations=3),
            max_annotations=3,
            random_state=seed,
        )
        rows.append(
            {
                "seed": seed,
                "model_accuracy": float((clf.classes_[proba.argmax(1)] == y_pool).mean()),
                **{
                    f"{arm}_{k}": float(out.loc[arm, k])
                    for arm in ("full", "adaptive")
                    for k in ("accepted_accuracy", "n_annotations", "accuracy")
                },
            }
        )
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "seed"}
    mean["annotation_ratio"] = mean["adaptive_n_annotations"] / mean["full_n_annotations"]
    mean["accepted_accuracy_gap_pts"] = 100 * (
        mean["adaptive_accepted_accuracy"] - mean["full_accepted_accuracy"]
    )
    return {"per_seed": rows, "mean": mean}


def render(r: dict) -> str:
    d, c, a = r["dispatch"], r["collect"], r["adaptive"]["mean"]
    return (
        "\n".join(
            [
                "# Label Studio I/O and adaptive overlap",
                "",
                f"Label Studio {r['server']} on 127.0.0.1 (SQLite), median of {r['repeats']} runs. Produced by `python bench/labelstudio_io.py`.",
                "",
                "| measure | Loopwise | raw SDK call | ratio (target ≤ 1.2) |",
                "|---|---|---|---|",
                f"| dispatch {d['n']:,} tasks | {d['dispatch_s']:.2f} s | {d['raw_import_s']:.2f} s (`import_tasks`) | {d['ratio']:.2f} |",
                f"| collect {c['n']:,} finished tasks | {c['collect_s']:.2f} s | {c['raw_export_s']:.2f} s (JSON export) | {c['ratio']:.2f} |",
                "",
                f"- re-running the same dispatch: {d['rerun_s']:.2f} s, 0 tasks created",
                f"- incremental poll after 20 new annotations: {c['incremental_s']:.2f} s, mode {c['incremental_mode']}, "
                f"{c['incremental_tasks_read']} tasks read, {c['incremental_new']} new",
                "",
                f"Adaptive overlap (digits, LogisticRegression on 100 labels, real confidences; 5 simulated annotators, one biased; "
                f"threshold 0.9, up to 3 per item; mean of {len(r['adaptive']['per_seed'])} seeds):",
                "",
                "| arm | annotations | accepted-label accuracy |",
                "|---|---|---|",
                f"| full overlap (3 per item) | {a['full_n_annotations']:.0f} | {a['full_accepted_accuracy']:.4f} |",
                f"| adaptive | {a['adaptive_n_annotations']:.0f} | {a['adaptive_accepted_accuracy']:.4f} |",
                "",
                f"Annotation ratio {a['annotation_ratio']:.2f}; accuracy gap {a['accepted_accuracy_gap_pts']:+.2f} points (target: within 1 point).",
            ]
        )
        + "\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lw-bench-ls-") as tmp:
        tmp = Path(tmp)
        info = lss.start(data_dir=tmp / "ls", state_file=tmp / "server.json")
        try:
            report = {
                "server": "1.23.2",
                "repeats": args.repeats,
                "dispatch": bench_dispatch(info, args.n, args.repeats, tmp),
                "collect": bench_collect(info, args.n, args.repeats, tmp),
            }
        finally:
            lss.stop(info)
    report["adaptive"] = bench_adaptive(args.seeds)
    (args.out / "labelstudio_io.json").write_text(json.dumps(report, indent=1))
    (args.out / "labelstudio_io.md").write_text(render(report))
    print(render(report))


if __name__ == "__main__":
    main()
