"""``loopwise doctor``: check a campaign's store and services against Loopwise's invariants,
and with ``--repair`` rebuild what can be rebuilt."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from flows.cli._console import CampaignArg, err, fail, load, out, steps
from loopwise.invariants import Finding

app = typer.Typer()

_SHOWN_IDS = 8


def _line(f: Finding) -> str:
    ids = ""
    if f.ids:
        more = f", … ({len(f.ids)} in all)" if len(f.ids) > _SHOWN_IDS else ""
        ids = f" [{', '.join(f.ids[:_SHOWN_IDS])}{more}]"
    fix = f" — repair: {f.repair}" if f.repair else " — not repairable by doctor"
    return f"  {f.code}: {f.message}{ids}{fix}"


def _show(name: str, exam, heading: str) -> None:
    for what in exam.unchecked:
        err.print(f"not checked: {what}", highlight=False, soft_wrap=True)
    if not exam.findings:
        out.print(f"{name}: {heading}: no problem found", highlight=False)
        return
    out.print(f"{name}: {heading}: {len(exam.findings)} problem(s)", highlight=False)
    for f in exam.findings:
        out.print(_line(f), highlight=False, soft_wrap=True)


@app.command()
def doctor(
    campaign: CampaignArg,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="rebuild what can be rebuilt (appends to ledgers, replaces state.json, "
            "releases a lapsed lease, cancels surplus next runs; never deletes a record)",
        ),
    ] = False,
) -> None:
    """Check the campaign's store, Label Studio, MLflow and Prefect against Loopwise's
    invariants. Exit 0 when healthy, 1 when a problem is found (with ``--repair``: 0 when
    every problem found was repaired)."""
    from flows.cli import doctor_checks as checks
    from storage.campaign import CampaignBusy, campaign_store

    cfg = load(campaign)
    token = os.environ.get(cfg.labelstudio.token_env, "")
    store = campaign_store(cfg.storage_root, cfg.name)
    try:
        with steps() as progress:
            progress.add_task(f"checking {cfg.name}", total=None)
            exam = checks.examine(cfg, store, token)
        _show(cfg.name, exam, "checked")
        if not exam.findings or not repair:
            raise typer.Exit(1 if exam.findings else 0)
        with steps() as progress:
            progress.add_task(f"repairing {cfg.name}", total=None)
            done = checks.repair(cfg, store, exam, token)
        for line in done:
            out.print(f"  repaired: {line}", highlight=False, soft_wrap=True)
        with steps() as progress:
            progress.add_task(f"checking {cfg.name} again", total=None)
            after = checks.examine(cfg, store, token)
        _show(cfg.name, after, "after the repair")
    except CampaignBusy as busy:
        fail(f"campaign {cfg.name} is {busy}: nothing was repaired; try again when it is done")
    except typer.Exit:
        raise
    except Exception as e:  # doctor never shows a traceback: it says what stopped it
        fail(f"doctor stopped: {type(e).__name__}: {e}")
    raise typer.Exit(1 if after.findings else 0)
