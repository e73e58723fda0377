"""The stages of the stream flow and of a retrain (see :mod:`flows.stream`).

Each stage leaves its trace before the state moves: ``stream/runs/<n>.json`` holds what
run ``n`` read and decided (created once), the cursor moves only after its dispatch, and
a trigger's retrain run is created under an idempotency key before the trigger is
recorded. A run that died anywhere is run again and repeats nothing.
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from flows.stages.context import CampaignRun
from loopwise.inference_log import check_records
from loopwise.state import Stage, now_iso
from loopwise.stream_policy import StreamPolicy
from loopwise.streaming import (
    attribution,
    batch_record,
    feedback_annotation,
    is_stream_item,
    next_retrain,
)
from loopwise.triggers import (
    TRIGGER_ORDER,
    TriggerDecision,
    TriggerRules,
    accuracy_decay,
    input_drift,
    new_labels,
    online_accuracy,
    prediction_drift,
)
from storage.campaign import checkpoint
from storage.inference_log import FEEDBACK_PREFIX, read_new
from storage.store import Store
from tasks.evaluate import log_cycle
from tasks.labelstudio import dispatch_batch
from tasks.stream import (
    BOOST,
    QUARANTINE,
    REQUESTED,
    RETRAINS,
    SELECTED,
    STATE,
    TRIGGERS,
    WINDOWS,
    log_source,
    predict_missing,
    predict_reference,
    reference_key,
    request_retrain,
    run_key,
    served_key,
    window_key,
)
from tasks.train import fit, label_time_records, labeled_snapshot

__all__ = [
    "evaluate_and_request",
    "ingest_feedback",
    "read_and_decide",
    "record_and_dispatch",
    "retrain_now",
]

log = logging.getLogger("loopwise.stream")

PREDICTION = "__prediction__"  # the column of a kept window that holds the predictions
_FRESH = {"run": 0, "cursor": {}, "feedback_cursor": {}, "policy": None, "records": 0}


def stream_state(store: Store) -> dict[str, Any]:
    """The stream's state document (cursors, selector, open drift window)."""
    return {**_FRESH, **(store.read_json(STATE) or {})}


# ------------------------------------------------------------------ read and decide


def read_and_decide(run: CampaignRun) -> dict[str, Any]:
    """Stream run ``n``: the log records new since the cursor, validated (the bad ones
    quarantined with their reason), decided where no gateway decided, and the drift
    windows they complete. Written once as ``stream/runs/<n>.json``."""
    store = run.store
    st = stream_state(store)
    n = st["run"] + 1
    doc = store.read_json(run_key(n))
    if doc is None:
        doc = _decide_new(run, st, n)
        if doc["records"] == 0:  # nothing new: no checkpoint, the run number is not used
            return {**doc, "empty": True}
        if not store.create_json(run_key(n), doc):
            doc = store.read_json(run_key(n))  # a racing run wrote it first: use that
    return doc


def _decide_new(run: CampaignRun, st: dict[str, Any], n: int) -> dict[str, Any]:
    cfg, store = run.cfg, run.store
    source, prefix = log_source(cfg, store)
    new = read_new(source, st["cursor"], prefix=prefix, limit=cfg.stream.max_records_per_run)
    raws = [raw for _, _, raw in new.records]
    good, bad = check_records(raws)
    # Records another app logged without probabilities: the champion predicts them here.
    missing = [r for r in good if not r.get("proba")]
    if missing:
        where = {id(r): i for i, r in zip(_valid_positions(raws, bad), good, strict=True)}
        _, unreadable = predict_missing(cfg, missing)
        gone = {id(r) for r, _ in unreadable}
        bad = sorted([*bad, *((where[id(r)], r, why) for r, why in unreadable)], key=lambda b: b[0])
        good = [r for r in good if id(r) not in gone]
    _quarantine(store, n, new.records, bad)
    policy = _policy(run, st.get("policy"))
    for rec in good:
        if rec.get("decision") is None:  # logged by an app that does not decide: decide here
            d = policy.decide(np.asarray(list(rec["proba"].values()), dtype=float))
            rec.update(decision=d.decision, score=d.score, threshold=d.threshold)
            rec["decided_by"] = "stream flow"
    if good:
        _write_served(store, n, good)
    window, windows = _windows(run, st.get("window"), good)
    text = cfg.data.text_column
    selected = [
        batch_record(r, text_column=text) for r in good if r["decision"] in ("query", "control")
    ]
    return {
        "run": n,
        "time": now_iso(),
        "cursor_before": st["cursor"],
        "cursor": new.cursor,
        "records": len(raws),
        "valid": len(good),
        "quarantined": len(bad),
        "decisions": dict(Counter(r["decision"] for r in good)),
        "decided_here": sum(r.get("decided_by") == "stream flow" for r in good),
        "selected": selected,
        "policy": policy.state(),
        "window": window,
        "windows": windows,
    }


def _valid_positions(raws: list[Any], bad: list[tuple[int, Any, str]]) -> list[int]:
    """The positions in ``raws`` of the records :func:`check_records` found good, in order."""
    rejected = {i for i, _, _ in bad}
    return [i for i in range(len(raws)) if i not in rejected]


def _policy(run: CampaignRun, state: dict[str, Any] | None) -> StreamPolicy:
    s = run.cfg.stream
    params = {
        "target_rate": s.target_rate,
        "control_share": s.control_share,
        "utility": s.utility,
        "window": s.window,
        "boost": s.drift_boost,
        "boost_records": s.drift_boost_records,
        "random_state": run.cfg.seed,
    }
    if state:
        return StreamPolicy.from_state(params, state)
    return StreamPolicy(**params)


def _quarantine(store: Store, n: int, records: list, bad: list) -> None:
    """Bad log records, each with its segment, position and reason (once per record)."""
    if not bad:
        return
    held = {(r.get("segment"), r.get("position")) for r in store.read_jsonl(QUARANTINE)}
    rows = []
    for i, raw, reason in bad:
        segment, position, _ = records[i]
        if (segment, position) in held:
            continue
        rows.append(
            {
                "source": "inference log",
                "segment": segment,
                "position": position,
                "reason": reason,
                "values": raw,
                "stream_run": n,
                "time": now_iso(),
            }
        )
        log.warning("inference log %s record %s quarantined: %s", segment, position, reason)
    store.append_jsonl(QUARANTINE, rows)


def _write_served(store: Store, n: int, good: list[dict[str, Any]]) -> None:
    """The requests of run ``n``: what feedback is matched against (same content, same
    bytes: a re-run rewrites it identically)."""
    frame = pd.DataFrame(
        {
            "request_id": [r["request_id"] for r in good],
            "time": [r["time"] for r in good],
            "model_version": [r.get("model_version") for r in good],
            "prediction": [r.get("prediction") for r in good],
            "decision": [r.get("decision") for r in good],
            "inputs": [json.dumps(r.get("inputs") or {}, sort_keys=True) for r in good],
        }
    )
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    store.write_bytes(served_key(n), buf.getvalue())


# ------------------------------------------------------------------ drift windows


def _windows(
    run: CampaignRun, window: dict[str, Any] | None, good: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The open window after ``good``, and a summary of each window they complete
    (its inputs kept as ``stream/windows/<w>.parquet``, the reference of a later drift)."""
    size = run.cfg.stream.triggers.drift_window
    window = window or _new_window(0)
    done = []
    for r in good:
        window["inputs"].append(r.get("inputs") or {})
        window["predictions"].append(r.get("prediction"))
        window.setdefault("versions", []).append(r.get("model_version"))
        window["start"] = window["start"] or r["time"]
        if len(window["inputs"]) >= size:
            done.append(_close_window(run, window, r["time"]))
            window = _new_window(window["index"] + 1)
    return window, done


def _new_window(index: int) -> dict[str, Any]:
    return {"index": index, "inputs": [], "predictions": [], "versions": [], "start": None}


def _close_window(run: CampaignRun, window: dict[str, Any], end: str) -> dict[str, Any]:
    """A full window: its inputs and predictions kept (``stream/windows/<w>.parquet``, the
    reference after a drift), and the two drift rules' decisions on it."""
    cfg, store = run.cfg, run.store
    frame = pd.DataFrame(window["inputs"])
    predictions = [None if p is None else str(p) for p in window["predictions"]]
    kept = frame.assign(**{PREDICTION: predictions})
    store.write_bytes(window_key(window["index"]), _parquet(kept))
    served = Counter(v for v in window.get("versions", []) if v is not None).most_common(1)
    ref_inputs, ref_classes, ref_name = _reference(run, served[0][0] if served else None)
    rules = trigger_rules(cfg)
    numeric = [c for c in frame.columns if c in ref_inputs.columns]
    inputs = input_drift(
        ref_inputs[numeric] if numeric else None,
        frame[numeric] if numeric else None,
        window["index"],
        rules,
    )
    mix = prediction_drift(
        ref_classes or None, [p for p in predictions if p is not None], window["index"], rules
    )
    return {
        "window": window["index"],
        "start": window["start"],
        "end": end,
        "records": len(frame),
        "reference": ref_name,
        "input_drift": inputs.to_dict(),
        "prediction_drift": mix.to_dict(),
        "max_psi": inputs.numbers.get("max_psi"),
        "prediction_psi": mix.numbers.get("psi"),
        "class_mix": dict(Counter(p for p in predictions if p is not None)),
    }


def trigger_rules(cfg: Any) -> TriggerRules:
    """The campaign's ``stream.triggers`` as the rules' thresholds."""
    return TriggerRules(**cfg.stream.triggers.model_dump())


def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _reference(run: CampaignRun, version: str | None) -> tuple[pd.DataFrame, list[str], str]:
    """What a live window is compared with, and the predictions of the version that served
    the window on it (its class mix where nothing drifted; a new champion gets its own).

    The inputs: the holdout, a uniform sample of the population the model was built for
    (not the labeled snapshot: actively chosen rows are drifted from the stream by
    design); after a drift trigger, the window that fired it (the stream as it was when
    the campaign last adapted to it)."""
    store = run.store
    ref = stream_state(store).get("reference_window")
    name = "holdout" if ref is None else f"window {ref}"
    if version is None:
        return pd.DataFrame(), [], name
    key = reference_key(version, ref)
    if not store.exists(key):
        if ref is None:
            data, cfg = run.load_data(), run.cfg
            drop = [c for c in ("item_id", cfg.data.label_column, cfg.data.id_column) if c]
            frame = data.holdout.drop(columns=[c for c in drop if c in data.holdout])
        else:
            frame = store.read_parquet(window_key(ref)).drop(columns=PREDICTION)
        predicted = predict_reference(run.cfg, version, frame)
        store.write_bytes(key, _parquet(frame.assign(**{PREDICTION: predicted})))
    frame = store.read_parquet(key)
    return frame, frame.pop(PREDICTION).astype(str).tolist(), name


# ------------------------------------------------------------------ dispatch


def record_and_dispatch(run: CampaignRun, doc: dict[str, Any]) -> dict[str, Any]:
    """Record the selected records (attribution), send them to Label Studio in small
    batches, pre-annotated with the served prediction and version; then move the cursor."""
    if doc.get("empty"):
        return {"selected": 0, "created": 0}
    cfg, store, ledgers = run.cfg, run.store, run.ledgers()
    selected = doc["selected"]
    held = {r["item_id"] for r in store.read_jsonl(SELECTED)}
    store.append_jsonl(
        SELECTED,
        [{**s, "stream_run": doc["run"]} for s in selected if s["item_id"] not in held],
    )
    known = {w["window"] for w in store.read_jsonl(WINDOWS)}
    store.append_jsonl(WINDOWS, [w for w in doc["windows"] if w["window"] not in known])
    created = 0
    size = cfg.stream.dispatch_batch
    for start in range(0, len(selected), size):
        receipt = dispatch_batch(
            run.target,
            ledgers,
            selected[start : start + size],
            cycle=run.state.cycle,
            data_kind=cfg.data.kind,
            labels=cfg.labels,
            overlap=cfg.overlap_policy().initial,
        )
        created += receipt["created"]
    st = stream_state(store)
    if st["run"] < doc["run"]:
        st.update(
            run=doc["run"],
            cursor=doc["cursor"],
            policy=doc["policy"],
            window=doc["window"],
            records=st["records"] + doc["records"],
        )
        store.write_json(STATE, st)
    return {"selected": len(selected), "created": created}


# ------------------------------------------------------------------ feedback


def ingest_feedback(run: CampaignRun) -> dict[str, Any]:
    """Feedback from the production app as answers of ``feedback:<user>``: a correction is
    its label, a "correct" rating confirms the served prediction. Feedback on a request the
    log has not shown yet waits for it (kept in the state)."""
    cfg, store, ledgers = run.cfg, run.store, run.ledgers()
    st = stream_state(store)
    new = read_new(store, st["feedback_cursor"], prefix=FEEDBACK_PREFIX)
    waiting = list(st.get("feedback_waiting") or []) + [raw for _, _, raw in new.records]
    if not waiting:
        return {"new": 0, "waiting": 0}
    served = _served(store, {str(f.get("request_id")) for f in waiting})
    rows, still, items = [], [], []
    for fb in waiting:
        req = served.get(str(fb.get("request_id")))
        if req is None:
            still.append(fb)
            continue
        rows.append(feedback_annotation(fb, req.get("prediction"), cfg.labels))
        items.append(_feedback_item(req, cfg.data.text_column))
    held = {r["item_id"] for r in store.read_jsonl(SELECTED)}
    store.append_jsonl(
        SELECTED, [i for i in {i["item_id"]: i for i in items}.values() if i["item_id"] not in held]
    )
    added = ledgers.append("annotations", rows)
    st = stream_state(store)
    st.update(feedback_cursor=new.cursor, feedback_waiting=still)
    store.write_json(STATE, st)
    return {"new": added, "waiting": len(still)}


def _served(store: Store, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """The logged requests among ``wanted``, read from the runs' served tables."""
    found: dict[str, dict[str, Any]] = {}
    for key in reversed(store.list("stream/served")):
        frame = store.read_parquet(key)
        hit = frame[frame["request_id"].isin(wanted - found.keys())]
        for rec in hit.to_dict("records"):
            found[rec["request_id"]] = rec
        if found.keys() >= wanted:
            break
    return found


def _feedback_item(req: dict[str, Any], text_column: str | None) -> dict[str, Any]:
    """A request that got feedback, as a record of the selected ledger (its training row)."""
    rec = {
        "request_id": req["request_id"],
        "time": req["time"],
        "model_version": req["model_version"],
        "prediction": req["prediction"],
        "decision": "feedback",
        "inputs": json.loads(req["inputs"]),
    }
    return batch_record(rec, text_column=text_column, control=False)


# ------------------------------------------------------------------ triggers


def evaluate_and_request(run: CampaignRun, doc: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the retrain triggers and record every one that fires (``stream/triggers``).

    A drift adapts at once, whatever else is going on: the labeling rate is boosted and
    the drifted window becomes the reference. A retrain run is created only when none is
    pending (requested, not done): for the first trigger that fired since the last
    request, under an idempotency key naming its evidence (``stream/requested``). A
    retrain trains on every label there is when it starts, so the triggers that fired
    before its request are answered by it."""
    cfg, store = run.cfg, run.store
    retrains = store.read_jsonl(RETRAINS)
    asked = store.read_jsonl(TRIGGERS)
    fired = [d for d in _triggers(run, retrains, asked) if d.fired]
    known = {t["key"] for t in asked}
    new = [
        {
            "time": now_iso(),
            "rule": d.name,
            "sentence": d.sentence,
            "numbers": d.numbers,
            "key": f"{cfg.name}:retrain:{d.key}",
            "stream_run": doc["run"],
        }
        for d in fired
        if f"{cfg.name}:retrain:{d.key}" not in known
    ]
    store.append_jsonl(TRIGGERS, new)
    asked += new
    for t in new:
        print(f"trigger {t['rule']}: {t['sentence']}")
    _adapt_to_drift(run, asked)
    requested = store.read_jsonl(REQUESTED)
    pending, first = next_retrain(asked, requested, retrains)
    if pending is not None:
        return {"fired": bool(new), "pending": pending}
    if first is None:
        return {"fired": False}
    deployment = cfg.stream.retrain_deployment or f"retrain/{cfg.name}"
    created = request_retrain(
        deployment,
        {"campaign": run.params["campaign"], "key": first["key"], "reason": first["sentence"]},
        first["key"],
        ["loopwise", "retrain"],
    )
    record = {"time": now_iso(), "key": first["key"], "rule": first["rule"], **created}
    store.append_jsonl(REQUESTED, [record])
    print(
        f"retrain {first['key']} requested"
        + ("" if created.get("created") else f" ({created.get('reason')})")
    )
    return {"fired": True, "sentence": first["sentence"], **record}


def _triggers(
    run: CampaignRun, retrains: list[dict[str, Any]], asked: list[dict[str, Any]]
) -> list[TriggerDecision]:
    """Every rule on the evidence so far, in :data:`TRIGGER_ORDER`: accuracy decay of the
    version serving now (control labels only), drift in the oldest full window no trigger
    has answered yet, and the stream labels accepted since the last retrain."""
    rules, store = trigger_rules(run.cfg), run.store
    labels = run.ledgers().current_labels()
    attributed = attribution(store.read_jsonl(SELECTED), labels)
    online = online_accuracy(attributed)
    served = [a["model_version"] for a in attributed if a.get("model_version") is not None]
    version = served[-1] if served else None
    holdout = _holdout_accuracy(run, retrains).get(str(version))
    answered = {t["numbers"].get("window_index") for t in asked if "drift" in t["rule"]}
    ref = stream_state(store).get("reference_window")
    drift = {"input_drift": None, "prediction_drift": None}
    for w in store.read_jsonl(WINDOWS):
        # Windows measured against an older reference are history, not evidence now.
        stale = w["reference"] != ("holdout" if ref is None else f"window {ref}")
        if w["window"] in answered or stale:
            continue
        for rule in drift:
            if drift[rule] is None and w[rule]["fired"]:
                drift[rule] = TriggerDecision(**w[rule])
    stream_labels = sum(is_stream_item(i) for i in labels)
    since = stream_labels - (retrains[-1]["stream_labels"] if retrains else 0)
    decided = {
        "accuracy_decay": accuracy_decay(
            online, version, holdout, rules, retrain_count=len(retrains)
        ),
        "new_labels": new_labels(max(0, since), len(retrains), rules),
        **{
            rule: d or TriggerDecision(rule, False, f"no {rule.replace('_', ' ')} since the last")
            for rule, d in drift.items()
        },
    }
    return [decided[name] for name in TRIGGER_ORDER]


def _adapt_to_drift(run: CampaignRun, asked: list[dict[str, Any]]) -> None:
    """After a drift trigger: live windows are compared with the drifted one from now on,
    and the labeling rate is boosted (``stream/boost.json`` for the gateways, the state's
    selector for records decided here). Idempotent: keyed by the trigger's window."""
    drift = [t for t in asked if "drift" in t["rule"]]
    if not drift:
        return
    window = drift[-1]["numbers"].get("window_index")
    store, s = run.store, run.cfg.stream
    st = stream_state(store)
    if st.get("reference_window") == window:
        return
    if st.get("policy"):
        policy = _policy(run, st["policy"])
        policy.boost_for(s.drift_boost_records)
        st["policy"] = policy.state()
    st["reference_window"] = window
    store.write_json(
        BOOST,
        {
            "window": window,
            "factor": s.drift_boost,
            "records": s.drift_boost_records,
            # The trigger's own time: a rerun after a crash here writes the same boost, which
            # a gateway that applied it already does not apply again.
            "since": drift[-1]["time"],
        },
    )
    store.write_json(STATE, st)


def _holdout_accuracy(run: CampaignRun, retrains: list[dict[str, Any]]) -> dict[str, float]:
    """Model version → its holdout accuracy (cycles' and retrains' logged models)."""
    out: dict[str, float] = {}
    for k in range(run.state.cycle + 1):
        got = checkpoint(run.store, k, Stage.TRAINED) or {}
        version = (got.get("logged") or {}).get("model_version")
        if version is not None:
            out[str(version)] = float(got["metrics"]["accuracy"])
    for r in retrains:
        out[str(r["model_version"])] = float(r["accuracy"])
    return out


# ------------------------------------------------------------------ retrain


def retrain_now(run: CampaignRun, key: str, reason: str) -> dict[str, Any]:
    """Fit on every accepted label (pool and stream), log and gate the model; once per key."""
    cfg, store = run.cfg, run.store
    for r in store.read_jsonl(RETRAINS):
        if r["key"] == key:
            print(f"retrain {key} already done: model v{r['model_version']} ({r['gate']})")
            return {"status": "done before", **r}
    data = run.load_data()
    labels = run.ledgers().current_labels()
    records = label_time_records(store, run.state.cycle)
    snap = labeled_snapshot(
        store,
        run.state.cycle,
        data.sent_rows(),
        list(labels.values()),
        records,
        cfg.data.text_column,
    )
    snapshot = store.read_parquet(snap["key"])
    X_lab, X_hold, _ = data.inputs(cfg, snapshot, with_pool=False)
    model = fit(cfg, X_lab, snapshot["label"].to_numpy())
    from loopwise.model import evaluate_model

    y_hold = data.holdout[cfg.data.label_column].astype(str).to_numpy()
    metrics = evaluate_model(model, X_hold, y_hold, cfg.labels)
    paid = run.ledgers().paid_annotations()
    row = {
        "cycle": run.state.cycle,
        "labels": int(snap["rows"]),
        "annotations": paid,
        "cost": round(paid * cfg.budget.cost_per_annotation, 6),
        "metric": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "kappa": None,
    }
    logged = log_cycle(
        cfg,
        run.state.cycle,
        model,
        metrics,
        [*run.state.history, row],
        snapshot,
        snap,
        {},
        X_holdout=X_hold,
        y_holdout=y_hold,
        retrain=key,
        trigger=reason,
    )
    gate = logged.get("gate") or {}
    result = {
        "key": key,
        "reason": reason,
        "time": now_iso(),
        "model_version": logged["model_version"],
        "champion": logged["champion"],
        "gate": gate.get("decision"),
        "gate_reason": gate.get("reason"),
        "accuracy": metrics["accuracy"],
        "labels": int(snap["rows"]),
        "stream_labels": sum(is_stream_item(i) for i in labels),
        "snapshot": snap["key"],
        "run_id": logged["run_id"],
    }
    if key not in {r["key"] for r in store.read_jsonl(RETRAINS)}:
        store.append_jsonl(RETRAINS, [result])
    print(
        f"retrain {key}: {result['labels']} labels ({result['stream_labels']} from the stream), "
        f"holdout accuracy {metrics['accuracy']:.4f}, model v{result['model_version']}: "
        f"{result['gate']}"
    )
    return {"status": "retrained", **result}
