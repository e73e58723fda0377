"""What users see: a markdown summary per run and a table of the dispatched batch in Prefect,
and the campaign report (one self-contained HTML page, also logged to MLflow)."""

from __future__ import annotations

import logging
import os
from typing import Any

import pandas as pd
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from loopwise import report as lw_report
from loopwise.config import CampaignConfig
from loopwise.plots import report_figures
from loopwise.state import CampaignState, Stage
from storage.campaign import REPORT_HTML, REPORT_JSON, Ledgers, checkpoint, read_state
from storage.store import Store
from tasks import step_task

log = logging.getLogger(__name__)

__all__ = [
    "annotator_names",
    "campaign_records",
    "no_html",
    "publish_batch",
    "publish_review",
    "publish_summary",
    "report_markdown",
    "summary_markdown",
    "table_rows",
    "write_report",
]


def no_html(value: Any) -> Any:
    """A string as text that no artifact renderer can take for HTML (``<`` and ``&``
    escaped: no tag can open); other values as they are. Label names, reasons and item
    ids come from data files and annotators."""
    if isinstance(value, str):
        return value.replace("&", "&amp;").replace("<", "&lt;")
    return value


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for a table artifact, every string cell passed through :func:`no_html`."""
    return [{k: no_html(v) for k, v in row.items()} for row in rows]


def _key(cfg: CampaignConfig, what: str) -> str:
    # Artifact keys: lowercase letters, digits and dashes only.
    return f"{cfg.name}-{what}".replace("_", "-").lower()


def summary_markdown(cfg: CampaignConfig, s: dict[str, Any]) -> str:
    """The run summary: labels, cost, metric, decision and reason, links."""
    lines = [f"# Loopwise campaign `{cfg.name}` — cycle {s.get('cycle')}", ""]
    lines.append(f"**Status:** {no_html(s.get('status', ''))}")
    lines.append("")
    lines.append("| | |")
    lines.append("|---|---|")
    for key, label in (
        ("labels", "labels accepted"),
        ("annotations", "annotations paid"),
        ("cost", "cost spent"),
        ("metric", "holdout accuracy"),
        ("macro_f1", "holdout macro-F1"),
        ("batch_progress", "open batch"),
        ("quarantined", "rows quarantined this run"),
    ):
        if s.get(key) is not None:
            value = no_html(s[key])
            if isinstance(value, float):
                value = f"{value:.4f}" if key in ("metric", "macro_f1") else f"{value:.2f}"
            lines.append(f"| {label} | {value} |")
    if s.get("decision"):
        d = s["decision"]
        lines += ["", f"**Decision:** {'stop' if d['stop'] else 'go on'} (`{d['rule']}`)", ""]
        lines.append(f"> {no_html(d['reason'])}")
    if s.get("next_run"):
        lines += ["", f"**Next run:** {no_html(s['next_run'])}"]
    lines += ["", "**Links**", ""]
    if s.get("run_url"):
        lines.append(f"- MLflow run: {s['run_url']}")
    if s.get("project_id") is not None:
        lines.append(f"- Label Studio project: {cfg.labelstudio.url}/projects/{s['project_id']}")
    return "\n".join(lines)


@step_task
def publish_summary(cfg: CampaignConfig, summary: dict[str, Any]) -> str:
    """Publish the run summary as a markdown artifact."""
    text = summary_markdown(cfg, summary)
    create_markdown_artifact(text, key=_key(cfg, "summary"), description="Loopwise cycle summary")
    return text


@step_task
def publish_review(cfg: CampaignConfig, project_id: int, queue: list[dict[str, Any]]) -> None:
    """Publish the review queue (disputes for an expert) as a table artifact, with the link
    that opens each task in Label Studio."""
    base = f"{cfg.labelstudio.url.rstrip('/')}/projects/{project_id}/data?task="
    rows = table_rows([{**q, "open": f"{base}{q['task_id']}"} for q in queue])
    create_table_artifact(
        rows or [{"item_id": "—", "task_id": None, "answers": 0, "labels": "", "open": ""}],
        key=_key(cfg, "review"),
        description=f"{len(rows)} dispute(s) for an expert reviewer (labelstudio.reviewers)",
    )


@step_task
def publish_batch(cfg: CampaignConfig, cycle: int, batch: list[dict[str, Any]]) -> None:
    """Publish the dispatched batch, best first, as a table artifact."""
    rows = [
        {
            "rank": i + 1,
            "item_id": b["item_id"],
            "query_score": None if b["query_score"] is None else round(b["query_score"], 4),
            "model_guess": b["prediction_label"],
            "model_confidence": None
            if b["prediction_score"] is None
            else round(b["prediction_score"], 4),
        }
        for i, b in enumerate(batch)
    ]
    create_table_artifact(
        table_rows(rows),
        key=_key(cfg, "batch"),
        description=f"cycle {cycle}: batch sent to Label Studio",
    )


def _project_id(store: Store, state: CampaignState) -> int | None:
    if state.project_id is not None:
        return int(state.project_id)
    ids = [
        int(k.split("/")[-1].split(".")[0]) for k in store.list("dispatch") if k.endswith(".jsonl")
    ]
    return max(ids) if ids else None


def _cycle_checkpoints(store: Store, last: int) -> tuple[dict[int, Any], dict[int, Any]]:
    """(batch of each cycle, decision of each cycle) from the checkpoints."""
    batches, decisions = {}, {}
    for k in range(last + 1):
        sel = checkpoint(store, k, Stage.SELECTED)
        if sel is not None:
            batches[k] = sel["batch"]
        dec = checkpoint(store, k, Stage.DECIDED)
        if dec is not None:
            decisions[k] = dec
    return batches, decisions


def campaign_records(store: Store) -> dict[str, Any]:
    """Everything the report is computed from, read from the campaign's store."""
    state = read_state(store)
    pid = _project_id(store, state)
    last = max(state.cycle, 0)
    batches, decisions = _cycle_checkpoints(store, last)
    trained = checkpoint(store, last, Stage.TRAINED) or {}
    ledgers = Ledgers(store, pid) if pid is not None else None
    quality = store.read_json(ledgers.document_key("quality"), {}) if ledgers else {}
    gate = (trained.get("logged") or {}).get("gate")
    return {
        "state": state,
        "project_id": pid,
        "history": state.history,
        "batches": batches,
        "decisions": decisions,
        "labels": list(ledgers.current_labels().values()) if ledgers else [],
        "corrections": len(ledgers.corrections()) if ledgers else 0,
        "annotations": ledgers.annotations() if ledgers else [],
        "edits": ledgers.read("edits") if ledgers else [],
        "quality": (quality or {}).get("annotator_accuracy") or {},
        "run_id": (trained.get("logged") or {}).get("run_id"),
        "run_url": (trained.get("logged") or {}).get("run_url"),
        "gate": {**gate, "cycle": last} if gate else None,
        "stream": _stream_records(store, ledgers),
    }


def _stream_records(store: Store, ledgers: Ledgers | None) -> dict[str, Any] | None:
    """The stream section's numbers (None for a campaign without a stream)."""
    from loopwise.streaming import attribution, stream_summary
    from tasks.stream import REQUESTED, RETRAINS, SELECTED, TRIGGERS, WINDOWS

    runs = [store.read_json(k) for k in store.list("stream/runs")]
    if not runs:
        return None
    labels = ledgers.current_labels() if ledgers else {}
    return stream_summary(
        runs,
        attribution(store.read_jsonl(SELECTED), labels),
        store.read_jsonl(WINDOWS),
        store.read_jsonl(TRIGGERS),
        store.read_jsonl(RETRAINS),
        store.read_jsonl(REQUESTED),
    )


def report_markdown(cfg: CampaignConfig, r: dict[str, Any], where: str) -> str:
    """The report's headline numbers, for the Prefect artifact."""
    ce = r.get("control_estimate")
    metric = "—" if r["metric"] is None else f"{r['metric']:.4f}"
    control = (
        "—"
        if not ce
        else f"{ce['accuracy']:.4f} ({ce['ci_low']:.3f}–{ce['ci_high']:.3f}, n={ce['n']})"
    )
    saved = (
        "—"
        if r.get("saved_labels") is None
        else f"{r['saved_labels']:,.0f} labels ≈ {r['saved_money']:,.2f}"
    )
    lines = [
        f"# Loopwise report — `{cfg.name}`",
        "",
        "| | |",
        "|---|---|",
        f"| cycles | {r['cycles']} |",
        f"| labels accepted | {r['labels']:,} |",
        f"| paid annotations | {r['annotations']:,} |",
        f"| money spent | {r['spent']:,.2f} |",
        f"| cost per accepted label | {_money(r.get('cost_per_label'))} |",
        f"| cost per point of accuracy since the first model | {_per_point(r)} |",
        f"| holdout accuracy | {metric} |",
        f"| control estimate on the pool | {control} |",
        f"| saved against random labeling | {saved} |",
    ]
    overlap = r.get("overlap") or {}
    if overlap.get("saved") is not None:
        lines.append(
            f"| saved by the `{no_html(overlap['policy'])}` overlap against a fixed "
            f"{overlap['fixed_annotators_per_item']} per item | {overlap['saved']:,.2f} |"
        )
    if r.get("corrections"):
        lines.append(f"| labels corrected | {r['corrections']:,} |")
    gate = r.get("gate")
    if gate:
        lines.append(f"| champion model | {_champion_line(gate)} |")
    if r.get("strategy"):
        lines.append(
            f"| strategy | `{r['strategy']['name']}`: {no_html(r['strategy']['summary'])} |"
        )
    edits = r.get("pool_edits") or {}
    if edits.get("items"):
        lines.append(
            f"| items sent, then removed or changed in the pool | {edits['items']} "
            f"({edits['labeled']} labeled: labels kept) |"
        )
    st = r.get("stream")
    if st:
        rate = "—" if st["labeling_rate"] is None else f"{st['labeling_rate']:.2%}"
        lines.append(
            f"| stream: requests read, labeling rate, labels | {st['records']:,}, {rate}, "
            f"{st['labels']:,} |"
        )
        for v, a in st["online_accuracy"].items():
            lines.append(
                f"| online accuracy of v{no_html(v)} (control labels) | {a['accuracy']:.3f} "
                f"({a['low']:.3f}–{a['high']:.3f}, n={a['n']}) |"
            )
        lines.append(
            f"| stream triggers, retrains | {len(st['triggers'])}, {len(st['retrains'])} |"
        )
    if r.get("decisions"):
        d = r["decisions"][-1]
        lines += [
            "",
            f"**Last decision** (cycle {d['cycle']}): {'stop' if d['stop'] else 'go on'} — "
            f"{no_html(d['reason'])}",
        ]
    lines += ["", f"The whole report (figures, annotators, drift): `{where}`"]
    return "\n".join(lines)


def _money(v: float | None) -> str:
    return "—" if v is None else f"{v:,.2f}"


def _per_point(r: dict[str, Any]) -> str:
    cpp = r.get("cost_per_point")
    if not cpp:
        return "—"
    if cpp["value"] is None:
        return f"no gain ({cpp['from_metric']:.4f} → {cpp['to_metric']:.4f})"
    return f"{cpp['value']:,.2f} ({cpp['money']:,.2f} for {cpp['points']:.2f} points)"


def _champion_line(gate: dict[str, Any]) -> str:
    """The latest gate decision in one table cell."""
    champ = f"v{gate.get('champion_version')}"
    if gate.get("challenger_version"):
        champ += f", challenger v{gate['challenger_version']}"
    numbers = []
    if gate.get("p_value") is not None:
        numbers.append(f"p = {gate['p_value']:.3g}")
    if gate.get("interval"):
        low, high = gate["interval"]
        numbers.append(f"Δ {100 * low:+.2f} to {100 * high:+.2f} points")
    tail = f" ({'; '.join(numbers)})" if numbers else ""
    return f"{champ}{tail}: {no_html(gate.get('reason') or '')}"


@step_task
def annotator_names(cfg: CampaignConfig) -> dict[str, str]:
    """Label Studio user id → "First Last" (else the e-mail), for the report's annotator table.

    The report is worth having without them: a server that is down, or no token in the
    environment, gives ``{}`` and the table shows the user ids.
    """
    token = os.environ.get(cfg.labelstudio.token_env)
    if not token:
        return {}
    from tasks.labelstudio import LabelStudioTarget

    try:
        users = list(LabelStudioTarget(cfg.labelstudio.url, token).client().users.list())
    except Exception as exc:  # any failure only costs the names
        log.warning("annotator names not read from Label Studio (%s): the report shows ids", exc)
        return {}
    out = {}
    for u in users:
        full = " ".join(x for x in (u.first_name, u.last_name) if x)
        name = full or u.email or u.username
        if name:
            out[str(u.id)] = str(name)
    return out


def write_report(
    cfg: CampaignConfig,
    store: Store,
    pool: pd.DataFrame,
    holdout: pd.DataFrame,
    pool_size: int | None = None,
) -> dict[str, Any]:
    """Build the campaign report; write it to the store, log it to MLflow and to Prefect.

    ``pool`` needs only the rows of the items sent to annotators (the random baseline
    trains on the control ones); ``pool_size`` is the pool's size when it holds fewer."""
    rec = campaign_records(store)
    cycles = [h["cycle"] for h in rec["history"]]
    points = lw_report.random_curve(cfg, pool, holdout, rec["batches"], rec["labels"], cycles)
    r = lw_report.build_report(
        cfg,
        history=rec["history"],
        batches=rec["batches"],
        labels=rec["labels"],
        annotations=rec["annotations"],
        decisions=rec["decisions"],
        random_points=points,
        quality=rec["quality"],
        stopped=rec["state"].stopped,
        pool_size=len(pool) if pool_size is None else pool_size,
        annotator_names=annotator_names(cfg),
        edits=rec["edits"],
        gate=rec["gate"],
        corrections=rec["corrections"],
        stream=rec["stream"],
    )
    links = {}
    if rec["run_url"]:
        links["MLflow (last cycle)"] = rec["run_url"]
    if rec["project_id"] is not None:
        links["Label Studio project"] = f"{cfg.labelstudio.url}/projects/{rec['project_id']}"
    page = lw_report.render_html(r, report_figures(r), links)
    store.write_bytes(REPORT_HTML, page.encode())
    store.write_json(REPORT_JSON, r)
    where = store.uri(REPORT_HTML)
    if rec["run_id"]:
        from tasks.evaluate import _client

        _, client = _client(cfg)
        client.log_text(rec["run_id"], page, "report/report.html")
        client.set_tag(rec["run_id"], "loopwise.report", "report/report.html")
    create_markdown_artifact(
        report_markdown(cfg, r, where),
        key=_key(cfg, "report"),
        description="Loopwise campaign report",
    )
    return {"uri": where, "report": r}
