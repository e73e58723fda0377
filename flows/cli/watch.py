"""``loopwise status`` and ``loopwise report``: where a campaign stands, and its report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.cli._console import CampaignArg, fail, load, out, steps
from flows.cli._prefect import prefect_api
from loopwise.config import CampaignConfig
from loopwise.state import CampaignState, Stage

app = typer.Typer()


@app.command()
def status(campaign: CampaignArg) -> None:
    """Cycle, labels bought, money spent, metric, open batch, last decision and its reason."""
    from storage.campaign import STATE, campaign_store
    from tasks.report import campaign_records

    cfg = load(campaign)
    store = campaign_store(cfg.storage_root, cfg.name)
    try:
        rec = campaign_records(store)
    except (ValueError, OSError) as e:  # a damaged state.json or ledger, a store that is down
        fail(f"{e}; nothing was changed", 1)
    table = Table(title=f"campaign {cfg.name}", show_header=False, title_justify="left", box=None)
    table.add_column(style="bold")
    table.add_column()
    if rec["state"].stage is Stage.NEW:
        table.add_row("status", "not started (loopwise run, or a deployment run)")
    else:
        for row in _status_rows(cfg, rec):
            table.add_row(*row)
        table.add_row("state", store.uri(STATE))
    out.print(table)


def _stream_rows(st: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The production stream in three rows (none for a campaign without one)."""
    if not st:
        return []
    rate = "—" if st["labeling_rate"] is None else f"{st['labeling_rate']:.1%}"
    online = ", ".join(
        f"v{v} {a['accuracy']:.3f} ({a['low']:.3f}–{a['high']:.3f}, n={a['n']})"
        for v, a in st["online_accuracy"].items()
    )
    last = st["triggers"][-1] if st["triggers"] else None
    return [
        (
            "stream",
            f"{st['records']:,} request(s) read ({st['quarantined']:,} quarantined), "
            f"{rate} asked about, {st['labels']:,} labeled",
        ),
        ("online accuracy", online or "— (no control label yet)"),
        (
            "last trigger",
            "—"
            if last is None
            else f"{last['rule']}: {last['sentence']} ({len(st['retrains'])} retrain(s) done)",
        ),
    ]


def _status_rows(cfg: CampaignConfig, rec: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of ``status`` for a started campaign, from its records."""
    state: CampaignState = rec["state"]
    accepted = {r["item_id"] for r in rec["labels"]}
    paid = sum(a["status"] in ("accepted", "rejected") for a in rec["annotations"])
    last = rec["history"][-1] if rec["history"] else None
    rows = [
        ("cycle", f"{state.cycle} ({state.stage.value})"),
        ("labels bought", f"{len(accepted):,}"),
        ("annotations paid", f"{paid:,}"),
        ("corrections", f"{rec.get('corrections', 0):,} accepted label(s) superseded"),
        ("money spent", f"{paid * cfg.budget.cost_per_annotation:,.2f}"),
        (
            "holdout accuracy",
            "—"
            if last is None
            else f"{last['metric']:.4f} (cycle {last['cycle']}, {last['labels']} labels)",
        ),
    ]
    if rec.get("edits"):
        rows.append(("pool edits", _edits_line(rec["edits"])))
    rows += _stream_rows(rec.get("stream"))
    if state.open_batch:
        rows += _open_batch_rows(cfg, state, accepted)
    if state.review_queue:
        rows.append(
            (
                "review queue",
                f"{state.review_queue} dispute(s) for labelstudio.reviewers "
                f"(Prefect artifact {cfg.name.replace('_', '-').lower()}-review)",
            )
        )
    d = state.decision
    if d:
        verdict = "STOP" if d["stop"] else "go on"
        rows.append(("last decision", f"{verdict} ({d['rule']}): {d['reason']}"))
    nxt = state.next_run or {}
    if nxt.get("flow_run_name") and not state.stopped:
        rows.append(("next run", f"{nxt['flow_run_name']} at {nxt.get('scheduled_time')}"))
    return rows


def _edits_line(edits: list[dict[str, Any]]) -> str:
    """Items sent to annotators that an edit of the pool file removed or changed."""
    items = list(dict.fromkeys(e["item_id"] for e in edits))
    removed = len({e["item_id"] for e in edits if e["kind"] == "removed"})
    changed = len({e["item_id"] for e in edits if e["kind"] == "changed"})
    labeled = len({e["item_id"] for e in edits if e.get("labeled")})
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    return (
        f"{removed} sent item(s) removed from the pool, {changed} changed ({labeled} labeled: "
        f"labels kept, trained on the values labeled): {', '.join(items[:5])}{more}"
    )


def _open_batch_rows(
    cfg: CampaignConfig, state: CampaignState, accepted: set[str]
) -> list[tuple[str, str]]:
    """How much of the open batch is in, and when it closes."""
    items = state.open_batch or []
    done = sum(i in accepted for i in items)
    rows = [("open batch", f"{done}/{len(items)} items labeled and accepted")]
    timeout = cfg.schedule.batch_timeout_seconds
    if state.waiting_since and timeout is not None:
        closes = dt.datetime.fromisoformat(state.waiting_since) + dt.timedelta(seconds=timeout)
        rows.append(
            (
                "batch closes",
                f"{closes.isoformat(timespec='seconds')} (or now: loopwise run --close-batch)",
            )
        )
    return rows


@app.command()
def report(
    campaign: CampaignArg,
    output: Annotated[Path | None, typer.Option(help="also copy the HTML page here")] = None,
) -> None:
    """Write the campaign report: one HTML page, also logged to MLflow and as a Prefect artifact."""
    cfg = load(campaign)
    with prefect_api(), steps() as progress:
        progress.add_task(
            f"building the report of {cfg.name} (one model per cycle on the control labels)"
        )
        from flows.report import report as report_flow

        result = report_flow(campaign=str(campaign))
    r = result["report"]
    where = result["uri"]
    if output is not None:
        from storage.campaign import REPORT_HTML, campaign_store

        output.write_bytes(campaign_store(cfg.storage_root, cfg.name).read_bytes(REPORT_HTML))
        where = str(output)
    saved = (
        "—"
        if r.get("saved_labels") is None
        else f"{r['saved_labels']:,.0f} labels ≈ {r['saved_money']:,.2f}"
    )
    ce = r.get("control_estimate")
    out.print(
        f"{cfg.name}: {r['cycles']} cycles, {r['labels']:,} labels, {r['spent']:,.2f} spent, holdout "
        f"accuracy {'—' if r['metric'] is None else format(r['metric'], '.4f')}; control estimate "
        f"{'—' if not ce else format(ce['accuracy'], '.3f') + ' (n=' + str(ce['n']) + ')'}; "
        f"saved against random labeling: {saved}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"report: {where}", highlight=False, soft_wrap=True)
