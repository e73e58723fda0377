"""The ``loopwise`` command line: start a campaign on your own data, watch it, report it.

    loopwise init DATA_FILE        a campaign config and a validation suite from the data
    loopwise run CAMPAIGN          one cycle now, in this process (outside any schedule)
    loopwise deploy CAMPAIGN       register the campaign's Prefect deployment
    loopwise status CAMPAIGN       cycle, labels, money, metric, open batch, last decision
    loopwise report CAMPAIGN       the HTML report (also logged to MLflow and Prefect)
    loopwise annotate CAMPAIGN     simulated annotators answer the open tasks (to try it out)
    loopwise strategies            the query strategies
    loopwise simulate              a simulated campaign on a bundled dataset

Only ``run`` needs Label Studio (its token in the variable the config names); ``status``
reads the campaign's store alone.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from loopwise.cli import app as _library_app
from loopwise.config import ConfigError, load_campaign

__all__ = ["app"]

app = typer.Typer(
    help="Loopwise: active learning that spends labels where they buy the most accuracy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.registered_commands.extend(_library_app.registered_commands)
app.registered_groups.extend(_library_app.registered_groups)


@app.callback()
def _offline() -> None:
    """Loopwise command line."""
    # Nothing phones home from a command (the Makefile sets the same for its targets).
    for key, value in (
        ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
        ("DO_NOT_TRACK", "1"),
        ("GX_ANALYTICS_ENABLED", "false"),
    ):
        os.environ.setdefault(key, value)


err = Console(stderr=True)
out = Console()

CampaignArg = Annotated[Path, typer.Argument(help="the campaign config (YAML)")]


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _steps() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def _load(campaign: Path):
    try:
        return load_campaign(campaign)
    except (ConfigError, FileNotFoundError) as e:
        _fail(str(e), 2)


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return s or "campaign"


@app.command()
def init(
    data_file: Annotated[
        str, typer.Argument(help="CSV or Parquet, a local path or s3://bucket/key")
    ],
    name: Annotated[
        str | None, typer.Option(help="campaign name; default: from the file name")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option(help="the ground-truth column, if not inferred")
    ] = None,
    id_column: Annotated[
        str | None, typer.Option(help="the unique id column, if not inferred")
    ] = None,
    text_column: Annotated[
        str | None, typer.Option(help="the text to label, if not inferred")
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help="the label set, comma-separated, if not inferred")
    ] = None,
    holdout: Annotated[
        str | None, typer.Option(help="a labeled holdout file (for unlabeled data)")
    ] = None,
    configs_dir: Annotated[Path, typer.Option(help="where the campaign config goes")] = Path(
        "configs"
    ),
    expectations_dir: Annotated[Path, typer.Option(help="where the validation suite goes")] = Path(
        "expectations"
    ),
    force: Annotated[bool, typer.Option(help="overwrite existing files")] = False,
) -> None:
    """Write a campaign config and a great-expectations suite inferred from DATA_FILE."""
    from loopwise import infer
    from storage.tables import read_table

    campaign = _slug(name or Path(data_file.split("?")[0]).name.split(".")[0])
    config_path = configs_dir / f"{campaign}.yaml"
    suite_path = expectations_dir / f"{campaign}.json"
    if not force:
        for p in (config_path, suite_path):
            if p.exists():
                _fail(
                    f"{p} exists; pass --force to overwrite it, or --name for another campaign", 2
                )
    with _steps() as progress:
        step = progress.add_task(f"reading {data_file}", total=None)
        try:
            df = read_table(data_file)
        except (ValueError, FileNotFoundError) as e:
            _fail(str(e), 2)
        bad = df.attrs.get("bad_lines") or []
        progress.update(
            step, description=f"read {len(df):,} rows, {df.shape[1]} columns of {data_file}"
        )
        progress.stop_task(step)
        step = progress.add_task("inferring the columns and the label set", total=None)
        try:
            inf = infer.infer_columns(
                df,
                source=data_file,
                label_column=label_column,
                id_column=id_column,
                text_column=text_column,
                labels=[v.strip() for v in labels.split(",") if v.strip()] if labels else None,
            )
        except infer.InferenceError as e:
            _fail(str(e), 2)
        if inf.label_column is None and holdout is None:
            _fail(
                f"{data_file}: no label column, so the holdout must come from a labeled file: "
                "pass --holdout FILE (with the same columns and a label column)",
                2,
            )
        progress.stop_task(step)
        step = progress.add_task(f"writing {suite_path} and {config_path}", total=None)
        suite = infer.expectation_suite(inf, campaign)
        text = infer.campaign_yaml(
            inf,
            name=campaign,
            source=data_file,
            suite_path=str(suite_path),
            holdout=holdout,
            # the Label Studio of `source .loopwise/labelstudio.env`, when there is one
            labelstudio_url=os.environ.get("LABEL_STUDIO_URL") or "http://127.0.0.1:8080",
        )
        import json

        suite_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.parent.mkdir(parents=True, exist_ok=True)
        suite_path.write_text(json.dumps(suite, indent=2) + "\n")
        config_path.write_text(text)
        try:
            load_campaign(config_path)
        except ConfigError as e:  # a bug of ours, not the user's: say so with the file
            _fail(f"the config written to {config_path} does not load: {e}")
        progress.stop_task(step)
    for b in bad:
        err.print(
            f"[yellow]warning:[/] {data_file}, line {b['line']} (row {b['row']}): {b['fields']} "
            f"fields where the header has {b['expected']}; the campaign quarantines it",
            highlight=False,
            soft_wrap=True,
        )
    for w in inf.warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    kind = (
        f"text column {inf.text_column!r}"
        if inf.text_column
        else (f"{len(inf.numeric)} numeric and {len(inf.categorical)} categorical features")
    )
    out.print(
        f"{data_file}: {len(df):,} rows; id {inf.id_column or '(row number)'}, label "
        f"{inf.label_column or '(none)'} with {len(inf.labels)} labels, {kind}"
        + (
            f"; ignored {', '.join(f'{c} ({why})' for c, why in inf.ignored.items())}"
            if inf.ignored
            else ""
        ),
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"wrote {config_path} and {suite_path} ({len(suite['expectations'])} expectations)")
    out.print(
        "next: edit the budget and costs in the config, then\n"
        f"  loopwise run {config_path}        # one cycle now (needs Label Studio, see README)\n"
        f"  loopwise deploy {config_path}     # or let Prefect run the cycles",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def status(campaign: CampaignArg) -> None:
    """Cycle, labels bought, money spent, metric, open batch, last decision and its reason."""
    from tasks.report import campaign_records
    from tasks.state import campaign_store

    cfg = _load(campaign)
    store = campaign_store(cfg.storage_root, cfg.name)
    rec = campaign_records(store)
    state = rec["state"]
    table = Table(title=f"campaign {cfg.name}", show_header=False, title_justify="left", box=None)
    table.add_column(style="bold")
    table.add_column()
    if state["stage"] == "new":
        table.add_row("status", "not started (loopwise run, or a deployment run)")
        out.print(table)
        return
    accepted = {r["item_id"] for r in rec["labels"]}
    paid = sum(a["status"] in ("accepted", "rejected") for a in rec["annotations"])
    last = rec["history"][-1] if rec["history"] else None
    table.add_row("cycle", f"{state['cycle']} ({state['stage']})")
    table.add_row("labels bought", f"{len(accepted):,}")
    table.add_row("annotations paid", f"{paid:,}")
    table.add_row("money spent", f"{paid * cfg.budget.cost_per_annotation:,.2f}")
    table.add_row(
        "holdout accuracy",
        "—"
        if last is None
        else f"{last['metric']:.4f} (cycle {last['cycle']}, {last['labels']} labels)",
    )
    if state.get("open_batch"):
        items = state["open_batch"]
        done = sum(i in accepted for i in items)
        table.add_row("open batch", f"{done}/{len(items)} items labeled and accepted")
        timeout = cfg.schedule.batch_timeout_seconds
        if state.get("waiting_since") and timeout is not None:
            closes = dt.datetime.fromisoformat(state["waiting_since"]) + dt.timedelta(
                seconds=timeout
            )
            table.add_row(
                "batch closes",
                f"{closes.isoformat(timespec='seconds')} (or now: loopwise run --close-batch)",
            )
    if state.get("review_queue"):
        table.add_row(
            "review queue",
            f"{state['review_queue']} dispute(s) for labelstudio.reviewers "
            f"(Prefect artifact {cfg.name.replace('_', '-').lower()}-review)",
        )
    d = state.get("decision")
    if d:
        table.add_row(
            "last decision", f"{'STOP' if d['stop'] else 'go on'} ({d['rule']}): {d['reason']}"
        )
    nxt = state.get("next_run") or {}
    if nxt.get("flow_run_name") and not state.get("stopped"):
        table.add_row("next run", f"{nxt['flow_run_name']} at {nxt.get('scheduled_time')}")
    table.add_row("state", store.uri("state.json"))
    out.print(table)


@app.command()
def report(
    campaign: CampaignArg,
    output: Annotated[Path | None, typer.Option(help="also copy the HTML page here")] = None,
) -> None:
    """Write the campaign report: one HTML page, also logged to MLflow and as a Prefect artifact."""
    cfg = _load(campaign)
    with _steps() as progress:
        progress.add_task(
            f"building the report of {cfg.name} (one model per cycle on the control labels)"
        )
        from flows.report import report as report_flow

        result = report_flow(campaign=str(campaign))
    r = result["report"]
    where = result["uri"]
    if output is not None:
        from tasks.state import campaign_store

        output.write_bytes(
            campaign_store(cfg.storage_root, cfg.name).read_bytes("reports/report.html")
        )
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


@app.command()
def run(
    campaign: CampaignArg,
    batch_size: Annotated[int | None, typer.Option(min=1, help="override the batch size")] = None,
    strategy: Annotated[str | None, typer.Option(help="override the query strategy")] = None,
    close_batch: Annotated[
        bool,
        typer.Option(
            help="stop waiting for the open batch: retrain on what was accepted "
            "(late answers still count)"
        ),
    ] = False,
) -> None:
    """Run one cycle now, in this process, outside any schedule (for debugging).

    A campaign waiting for its batch only collects and reports progress, unless the
    batch is past ``schedule.batch_timeout_seconds`` or ``--close-batch`` is given.
    """
    cfg = _load(campaign)
    from flows.cycle import cycle

    with _steps() as progress:
        progress.add_task(f"running the next step of {cfg.name}", total=None)
        try:
            result: dict[str, Any] = cycle(
                campaign=str(campaign),
                batch_size=batch_size,
                strategy=strategy,
                close_batch=close_batch,
            )
        except ConfigError as e:
            _fail(str(e), 2)
        except Exception as e:  # the flow run logged the traceback above
            _fail(
                f"the run failed ({type(e).__name__}: {e}); run it again once fixed: nothing is lost"
            )
    out.print(f"{cfg.name}: {result.get('status')}", highlight=False)


@app.command()
def deploy(
    campaign: CampaignArg,
    pool: Annotated[
        str, typer.Option(help="the Prefect work pool (created as a process pool if missing)")
    ] = "loopwise",
    cron: Annotated[str | None, typer.Option(help="also start a run on this cron schedule")] = None,
) -> None:
    """Register the campaign's Prefect deployment (the flow schedules its own next runs)."""
    cfg = _load(campaign)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    from flows.cycle import cycle

    flow_name, _, dep_name = cfg.deployment.partition("/")
    if flow_name != cycle.name:
        _fail(f"schedule.deployment must be 'cycle/<name>', got {cfg.deployment!r}", 2)
    repo = Path(__file__).resolve().parents[1]
    try:
        campaign_param = str(campaign.resolve().relative_to(repo))
    except ValueError:
        campaign_param = str(campaign.resolve())
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:
            pass
    with _steps() as progress:
        progress.add_task(f"registering {cfg.deployment} on work pool {pool}", total=None)
        dep_id = cycle.from_source(source=str(repo), entrypoint="flows/cycle.py:cycle").deploy(
            name=dep_name,
            work_pool_name=pool,
            parameters={"campaign": campaign_param},
            tags=["loopwise", cfg.name],
            description=f"Loopwise campaign {cfg.name}: one active-learning cycle per run.",
            cron=cron,
            build=False,
            push=False,
            print_next_steps=False,
            ignore_warnings=True,
        )
    out.print(
        f"deployment {cfg.deployment} ({dep_id}) on work pool {pool}, campaign {campaign_param}\n"
        f"start a worker:   prefect worker start --pool {pool}\n"
        f"start the first run:   prefect deployment run {cfg.deployment}",
        highlight=False,
    )


@app.command()
def annotate(
    campaign: CampaignArg,
    profiles: Annotated[Path, typer.Option(help="the simulated annotators")] = Path(
        "configs/annotators.yaml"
    ),
    seed: Annotated[int, typer.Option(help="seeds the annotators' answers")] = 0,
) -> None:
    """Let simulated annotators answer the campaign's open Label Studio tasks.

    For trying a campaign without people: each annotator answers from the data's label
    column with its own accuracy (see ``configs/annotators.yaml``).
    """
    import os

    from devstack.annotators import load_profiles
    from devstack.demo import annotate_campaign, campaign_project_id, ground_truth

    cfg = _load(campaign)
    if cfg.data.label_column is None:
        _fail(
            f"{campaign}: simulated annotators answer from data.label_column, and there is none", 2
        )
    token = os.environ.get(cfg.labelstudio.token_env)
    if not token:
        _fail(
            f"environment variable {cfg.labelstudio.token_env} is not set (the Label Studio token)",
            2,
        )
    pid = campaign_project_id(cfg, token)
    if pid is None:
        _fail(
            f"no Label Studio project {cfg.project_title!r} yet: `loopwise run {campaign}` first", 2
        )
    with _steps() as progress:
        progress.add_task(f"annotating the open tasks of project {pid}", total=None)
        done = annotate_campaign(cfg, token, pid, ground_truth(cfg), load_profiles(profiles), seed)
    if done["starved"]:
        err.print(
            f"[yellow]warning:[/] {len(done['starved'])} task(s) want more answers than the "
            f"{len(done['per_annotator'])} annotators of {profiles} can give "
            f"({', '.join(done['starved'][:5])}): set max_annotations_per_item to at most "
            "the number of annotators, or add annotators",
            highlight=False,
            soft_wrap=True,
        )
    who = ", ".join(f"{k} {v}" for k, v in done["per_annotator"].items())
    out.print(
        f"{cfg.name}: {done['posted']} answers posted ({done['skipped']} skips): {who}",
        highlight=False,
        soft_wrap=True,
    )


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
