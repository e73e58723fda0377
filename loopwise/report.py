"""The campaign report: what the labels bought, what random labeling would have bought.

Everything here is computed from the campaign's own records (its history, the batches
it selected, the accepted labels and the annotations), so the report can be rebuilt at
any time and checked against the ledgers.

The control share (``control_fraction`` of every batch, drawn at random) gives two
things without a separate experiment:

- an unbiased estimate of the current model's accuracy on the pool: the model's
  guess on each control item was recorded when the batch was selected, before anyone
  labeled it, and the control items are a uniform sample of the unlabeled pool;
- the counterfactual of random labeling: models trained on the control labels alone
  are trained on a random sample, so their holdout accuracy is the random-labeling
  learning curve, at a tenth of the labels. An inverse power law fitted to it tells
  how many random labels would have reached the campaign's accuracy.
"""

from __future__ import annotations

import base64
import functools
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from loopwise import strategies
from loopwise.config import CampaignConfig
from loopwise.features import model_inputs
from loopwise.model import build_model
from loopwise.stopping import fit_learning_curve

__all__ = [
    "annotator_table",
    "build_report",
    "control_estimates",
    "cost_per_point",
    "gate_summary",
    "overlap_saving",
    "pool_edit_summary",
    "random_curve",
    "random_equivalent",
    "render_html",
]


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def control_estimates(
    batches: Mapping[int, Sequence[Mapping[str, Any]]], accepted: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Per cycle, the model's accuracy on its batch's labeled control items (95 % Wilson CI).

    ``batches`` maps a cycle to the batch selected in it (records with ``item_id``,
    ``control`` and ``prediction_label``, the model's guess at selection time);
    ``accepted`` maps an item to its consensus label. The cold-start batch has no model
    and gives no estimate.
    """
    out = []
    for k in sorted(batches):
        pairs = [
            (b["prediction_label"], accepted[b["item_id"]])
            for b in batches[k]
            if b.get("control")
            and b.get("prediction_label") is not None
            and b["item_id"] in accepted
        ]
        if not pairs:
            continue
        correct = sum(p == y for p, y in pairs)
        lo, hi = _wilson(correct, len(pairs))
        out.append(
            {
                "cycle": k,
                "n": len(pairs),
                "correct": correct,
                "accuracy": correct / len(pairs),
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return out


def pooled_control_estimate(estimates: Sequence[Mapping[str, Any]], last: int = 3) -> dict | None:
    """The control estimate of the latest models, pooled over the last ``last`` cycles."""
    recent = list(estimates)[-last:]
    n = sum(e["n"] for e in recent)
    if n == 0:
        return None
    correct = sum(e["correct"] for e in recent)
    lo, hi = _wilson(correct, n)
    return {
        "cycles": [e["cycle"] for e in recent],
        "n": n,
        "accuracy": correct / n,
        "ci_low": lo,
        "ci_high": hi,
    }


def random_curve(
    cfg: CampaignConfig,
    pool: pd.DataFrame,
    holdout: pd.DataFrame,
    batches: Mapping[int, Sequence[Mapping[str, Any]]],
    labels: Sequence[Mapping[str, Any]],
    cycles: Sequence[int],
) -> list[dict[str, Any]]:
    """Holdout accuracy of models trained on the control labels alone, cycle by cycle.

    At cycle ``k`` the campaign had the labels accepted before it (ledger cycle < k); the
    control ones among them are a random sample of the pool, so the model trained on
    them is what random labeling would have bought with that many labels.
    """
    control_items = {b["item_id"] for batch in batches.values() for b in batch if b.get("control")}
    rows = [r for r in labels if r["item_id"] in control_items]
    by_id = pool.set_index("item_id", drop=False)
    y_hold = (
        holdout[cfg.data.label_column].astype(str).to_numpy() if cfg.data.label_column else None
    )
    if y_hold is None or len(holdout) == 0:
        return []
    out, seen = [], None
    for k in sorted(cycles):
        have = [r for r in rows if r["cycle"] < k and r["item_id"] in by_id.index]
        ids = sorted({r["item_id"] for r in have})
        if len(ids) < 2 or ids == seen:
            continue
        seen = ids
        label_of = {r["item_id"]: str(r["label"]) for r in have}
        y = np.array([label_of[i] for i in ids])
        if np.unique(y).size < 2:
            # One class seen: what random labeling bought is a model that predicts it.
            acc = float(np.mean(y_hold == y[0]))
            out.append({"cycle": k, "labels": len(ids), "accuracy": acc})
            continue
        frame = by_id.loc[ids].reset_index(drop=True)
        X_lab, X_hold = model_inputs(cfg, frame, holdout)
        model = build_model(cfg.model.build(), kind=cfg.data.kind, scale=cfg.model.scale)
        model.fit(X_lab, y)
        acc = float(np.mean(model.predict(X_hold).astype(str) == y_hold))
        out.append({"cycle": k, "labels": len(ids), "accuracy": acc})
    return out


def random_equivalent(
    history: Sequence[Mapping[str, Any]],
    random_points: Sequence[Mapping[str, Any]],
    pool_size: int | None = None,
) -> dict[str, Any] | None:
    """How many random labels the campaign's accuracy is worth, from what was measured.

    Random labeling was measured only up to the control labels (a tenth of the
    campaign's), so its curve cannot be extrapolated to the campaign's accuracy: on a
    learning curve far from saturation the asymptote is not identifiable, and such
    extrapolations run to absurd label counts. Instead the comparison is made where
    both were measured. At the largest control count ``n_r``, random labeling reached
    ``acc_r`` (the inverse power law fitted to the control-only models, which smooths
    one model's noise); the campaign's own fitted curve reaches ``acc_r`` with ``n_c``
    labels. ``ratio = n_c / n_r`` is the campaign's label efficiency there, and the
    estimate assumes it holds up to the current accuracy: random labeling would need
    ``labels / ratio``. Active learning's advantage usually grows with the labels
    (bench/label_efficiency.py), so this errs low. Capped at ``pool_size``.

    Returns None until both curves have 3 distinct label counts.
    """
    if len({h["labels"] for h in history}) < 3 or len({p["labels"] for p in random_points}) < 3:
        return None
    campaign = fit_learning_curve([h["labels"] for h in history], [h["metric"] for h in history])
    rand = fit_learning_curve(
        [p["labels"] for p in random_points], [p["accuracy"] for p in random_points]
    )
    n_r = max(p["labels"] for p in random_points)
    acc_r = float(rand.predict(n_r))
    labels = int(history[-1]["labels"])
    out: dict[str, Any] = {
        "control_labels": n_r,
        "random_accuracy": acc_r,
        "campaign_fit": campaign.to_dict(),
        "random_fit": rand.to_dict(),
        "campaign_labels_for_it": None,
        "ratio": None,
        "labels": None,
        "beyond_pool": False,
    }
    if not (campaign.b > 0 and campaign.a > acc_r):
        return out
    n_c = float((campaign.b / (campaign.a - acc_r)) ** (1.0 / campaign.c))
    ratio = n_c / n_r
    out.update(campaign_labels_for_it=n_c, ratio=ratio)
    if ratio >= 1.0:  # no better than random where both were measured: no saving claimed
        return out
    needed = labels / ratio
    if pool_size is not None and needed > pool_size:
        out.update(labels=float(pool_size), beyond_pool=True)
    else:
        out["labels"] = needed
    return out


def annotator_table(
    annotations: Sequence[Mapping[str, Any]],
    accepted: Mapping[str, str],
    estimated_accuracy: Mapping[str, float] | None = None,
    names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Per annotator: annotations submitted, skipped, agreement with the consensus label.

    ``names`` maps a Label Studio user id to what people call that user (``name``; None
    when unknown)."""
    stats: dict[str, Counter] = defaultdict(Counter)
    for a in annotations:
        who = str(a.get("annotator"))
        s = stats[who]
        if a.get("status") in ("accepted", "rejected"):
            s["submitted"] += 1
            if a.get("item_id") in accepted and a.get("status") == "accepted":
                s["on_consensus_items"] += 1
                s["agree"] += int(a.get("label") == accepted[a["item_id"]])
        else:
            s["skipped"] += 1
    est = estimated_accuracy or {}
    out = []
    for who in sorted(stats):
        s = stats[who]
        out.append(
            {
                "annotator": who,
                "name": (names or {}).get(who),
                "submitted": s["submitted"],
                "skipped": s["skipped"],
                "agreement": s["agree"] / s["on_consensus_items"]
                if s["on_consensus_items"]
                else None,
                "estimated_accuracy": est.get(who),
            }
        )
    return out


def build_report(
    cfg: CampaignConfig,
    *,
    history: Sequence[Mapping[str, Any]],
    batches: Mapping[int, Sequence[Mapping[str, Any]]],
    labels: Sequence[Mapping[str, Any]],
    annotations: Sequence[Mapping[str, Any]],
    decisions: Mapping[int, Mapping[str, Any]],
    random_points: Sequence[Mapping[str, Any]],
    quality: Mapping[str, float] | None = None,
    stopped: bool = False,
    pool_size: int | None = None,
    annotator_names: Mapping[str, str] | None = None,
    edits: Sequence[Mapping[str, Any]] = (),
    gate: Mapping[str, Any] | None = None,
    corrections: int | None = None,
    stream: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every number of the report, as plain JSON types (``pool_size`` caps the estimates;
    ``annotator_names`` maps Label Studio user ids to names; ``edits`` is the ledger of
    items sent to annotators that a pool edit removed or changed; ``gate`` is the latest
    champion-gate decision, as ``tasks.evaluate.log_cycle`` returns it; ``corrections``
    is how many labels were corrected, default: the ``labels`` records with a
    ``supersedes``; ``stream`` is :func:`loopwise.streaming.stream_summary` when the
    campaign has a production stream)."""
    accepted = {r["item_id"]: str(r["label"]) for r in labels}
    if corrections is None:
        corrections = sum(r.get("supersedes") is not None for r in labels)
    paid = sum(a.get("status") in ("accepted", "rejected") for a in annotations)
    spent = paid * cfg.budget.cost_per_annotation
    last = dict(history[-1]) if history else None
    estimates = control_estimates(batches, accepted)
    control_items = [b["item_id"] for batch in batches.values() for b in batch if b.get("control")]
    out: dict[str, Any] = {
        "campaign": cfg.name,
        "strategy": {
            "name": cfg.strategy.name,
            "params": dict(cfg.strategy.params),
            "summary": strategies.describe(cfg.strategy.name),
            "default": cfg.strategy.name == strategies.DEFAULT,
        },
        "stopped": stopped,
        "cycles": len(history),
        "labels": len(accepted),
        "annotations": paid,
        "spent": round(spent, 6),
        "cost_per_annotation": cfg.budget.cost_per_annotation,
        "cost_per_label": spent / len(accepted) if accepted else None,
        "control_fraction": cfg.control_fraction,
        "control_items_sent": len(control_items),
        "control_items_labeled": sum(i in accepted for i in control_items),
        "metric": last["metric"] if last else None,
        "metric_labels": last["labels"] if last else None,
        "history": [dict(h) for h in history],
        "control_estimates": estimates,
        "control_estimate": pooled_control_estimate(estimates),
        "random_curve": [dict(p) for p in random_points],
        "random_needed": None,
        "saved_labels": None,
        "saved_money": None,
        "annotators": annotator_table(annotations, accepted, quality, annotator_names),
        "decisions": [
            {
                "cycle": k,
                "stop": bool(d.get("stop")),
                "rule": d.get("rule"),
                "reason": d.get("reason"),
            }
            for k, d in sorted(decisions.items())
        ],
        "drift": [
            _drift_row(k, d["drift"]) for k, d in sorted(decisions.items()) if d.get("drift")
        ],
        "pool_edits": pool_edit_summary(edits),
        "corrections": int(corrections),
        "cost_per_point": cost_per_point(history),
        "overlap": overlap_saving(cfg, len(accepted), spent),
        "gate": gate_summary(gate),
        "stream": dict(stream) if stream else None,
    }
    if last is not None:
        reach = random_equivalent(history, random_points, pool_size)
        out["random_needed"] = reach
        if reach and reach["labels"] is not None and out["cost_per_label"] is not None:
            saved = reach["labels"] - last["labels"]
            out["saved_labels"] = saved
            out["saved_money"] = saved * out["cost_per_label"]
    return out


def cost_per_point(history: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """What one point (0.01) of holdout accuracy cost, measured from the first model.

    The money spent after the first model was trained, over the points of holdout
    accuracy gained since it: the cold start's money bought the first model and is not
    charged to the gain after it. ``value`` is None without a gain; the whole result is
    None before a second model.
    """
    if len(history) < 2 or history[0].get("metric") is None or history[-1].get("metric") is None:
        return None
    first, last = history[0], history[-1]
    points = 100.0 * (float(last["metric"]) - float(first["metric"]))
    money = float(last["cost"]) - float(first["cost"])
    return {
        "from_cycle": first["cycle"],
        "from_metric": float(first["metric"]),
        "to_metric": float(last["metric"]),
        "points": points,
        "money": money,
        "value": money / points if points > 0 else None,
    }


def overlap_saving(cfg: CampaignConfig, accepted: int, spent: float) -> dict[str, Any]:
    """What the campaign's overlap policy saved against a fixed overlap, for the same labels.

    A fixed policy buys every accepted label with ``annotators_per_item`` annotations:
    ``accepted × annotators_per_item × cost_per_annotation``; the saving is that minus
    the money spent (negative when the policy cost more). Only for a policy other than
    ``fixed`` (``saved`` is None for a fixed one).
    """
    policy = cfg.overlap.policy
    fixed = accepted * cfg.annotators_per_item * cfg.budget.cost_per_annotation
    return {
        "policy": policy,
        "fixed_annotators_per_item": cfg.annotators_per_item,
        "fixed_cost": None if policy == "fixed" else fixed,
        "saved": None if policy == "fixed" else fixed - spent,
    }


_GATE_KEYS = (
    "cycle",
    "decision",
    "version",
    "champion_version",
    "challenger_version",
    "previous_champion",
    "fallback",
    "test",
    "alpha",
    "p_value",
    "accuracy_delta",
    "interval",
    "interval_level",
    "champion_only",
    "challenger_only",
    "reason",
)


def gate_summary(gate: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The latest champion-gate decision's fields the report shows (missing ones None)."""
    if not gate:
        return None
    return {k: gate.get(k) for k in _GATE_KEYS}


def pool_edit_summary(edits: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The pool edits that touched items sent to annotators: counts and one row per edit
    (cycle found, item, kind, changed columns, whether the item was labeled)."""
    rows = [
        {
            "cycle": e.get("cycle"),
            "item_id": str(e["item_id"]),
            "kind": str(e["kind"]),
            "columns": [str(c) for c in e.get("columns") or []],
            "labeled": bool(e.get("labeled")),
        }
        for e in edits
    ]
    return {
        "items": len({r["item_id"] for r in rows}),
        "removed": len({r["item_id"] for r in rows if r["kind"] == "removed"}),
        "changed": len({r["item_id"] for r in rows if r["kind"] == "changed"}),
        "labeled": len({r["item_id"] for r in rows if r["labeled"]}),
        "edits": rows,
    }


def _drift_row(cycle: int, drift: Mapping[str, Any]) -> dict[str, Any]:
    scored = [f for f in drift.get("features") or [] if f.get("psi") is not None]
    worst = max(scored, key=lambda f: f["psi"])["name"] if scored else None
    return {
        "cycle": cycle,
        "drifted": bool(drift.get("drifted")),
        "max_psi": drift.get("max_psi"),
        "worst_feature": worst,
        "drifted_features": list(drift.get("drifted_features") or []),
    }


# --------------------------------------------------------------------------- HTML


def _num(v: Any, spec: str = ".4f") -> str:
    """``format(v, spec)``, or a dash for a missing or non-finite number."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return format(v, spec)


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("loopwise", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = format
    env.filters["num"] = _num
    return env.get_template("report.html.j2")


def _saving_case(report: Mapping[str, Any]) -> str:
    """Which claim the report can make about the labels saved against random labeling.

    ``"saved"``: a saving was estimated; ``"no_gain"``: where both were measured the
    campaign did no better than random; ``"random_above"``: random labeling's fitted
    curve is above the campaign's; ``"short"``: not enough points for either curve.
    """
    need = report.get("random_needed") or {}
    if report.get("saved_labels") is not None:
        return "saved"
    if need and need.get("ratio") is not None:
        return "no_gain"
    return "random_above" if need else "short"


def render_html(
    report: Mapping[str, Any], figures: Mapping[str, bytes], links: Mapping[str, str] | None = None
) -> str:
    """One self-contained page: the figures are embedded PNGs, nothing is fetched.

    The page is ``loopwise/templates/report.html.j2``; every value from the records is
    HTML-escaped.
    """
    return _template().render(
        report=report,
        saving=_saving_case(report),
        images={k: base64.b64encode(v).decode() for k, v in figures.items()},
        estimates_by_cycle={x["cycle"]: x for x in report.get("control_estimates", [])},
        random_by_cycle={x["cycle"]: x for x in report.get("random_curve", [])},
        links=links or {},
    )
