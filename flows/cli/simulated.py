"""Simulated annotators, to try a campaign without people: ``loopwise annotate`` and
``loopwise annotators simulate``. They come from the dev stack (:mod:`devstack`), imported
only when one of these commands runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from flows.cli._console import CampaignArg, fail, load, out, steps, warn

app = typer.Typer()
annotators_app = typer.Typer(
    help="Simulated annotators for demos, tests and benchmarks.", no_args_is_help=True
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
    from devstack.annotators import load_profiles
    from devstack.campaign import annotate_campaign, campaign_project_id, ground_truth

    cfg = load(campaign)
    if cfg.data.label_column is None:
        fail(
            f"{campaign}: simulated annotators answer from data.label_column, and there is none", 2
        )
    token = os.environ.get(cfg.labelstudio.token_env)
    if not token:
        fail(
            f"environment variable {cfg.labelstudio.token_env} is not set (the Label Studio token)",
            2,
        )
    pid = campaign_project_id(cfg, token)
    if pid is None:
        fail(
            f"no Label Studio project {cfg.project_title!r} yet: `loopwise run {campaign}` first", 2
        )
    with steps() as progress:
        progress.add_task(f"annotating the open tasks of project {pid}", total=None)
        done = annotate_campaign(cfg, token, pid, ground_truth(cfg), load_profiles(profiles), seed)
    if done["starved"]:
        warn(
            f"{len(done['starved'])} task(s) want more answers than the "
            f"{len(done['per_annotator'])} annotators of {profiles} can give "
            f"({', '.join(done['starved'][:5])}): set max_annotations_per_item to at most "
            "the number of annotators, or add annotators"
        )
    who = ", ".join(f"{k} {v}" for k, v in done["per_annotator"].items())
    out.print(
        f"{cfg.name}: {done['posted']} answers posted ({done['skipped']} skips): {who}",
        highlight=False,
        soft_wrap=True,
    )


@annotators_app.command("simulate")
def annotators_simulate(
    project_id: Annotated[int, typer.Option("--project-id", help="Label Studio project id")],
    profiles: Annotated[
        Path,
        typer.Option(
            help="YAML/JSON file: annotators with accuracy, confusion, latency, skip_rate"
        ),
    ],
    truth: Annotated[Path, typer.Option(help="CSV with columns item_id,label (the ground truth)")],
    url: Annotated[
        str, typer.Option(envvar="LABEL_STUDIO_URL", help="Label Studio URL")
    ] = "http://127.0.0.1:8080",
    token_env: Annotated[
        str, typer.Option(help="environment variable that holds the API token")
    ] = "LABEL_STUDIO_API_KEY",
    data_kind: Annotated[str, typer.Option(help="text, tabular or image")] = "text",
    seed: Annotated[int, typer.Option(help="seeds the annotators' answers")] = 0,
) -> None:
    """Annotate a project's open tasks through the API as several simulated users."""
    import pandas as pd

    from devstack.annotators import load_profiles, simulate_annotators
    from loopwise.labelstudio import labels_of_config
    from tasks.labelstudio import connect

    token = os.environ.get(token_env)
    if not token:
        raise typer.BadParameter(
            f"environment variable {token_env} is not set (it holds the API token)"
        )
    try:
        specs = load_profiles(profiles)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    table = pd.read_csv(truth, dtype=str)
    missing = {"item_id", "label"} - set(table.columns)
    if missing:
        raise typer.BadParameter(
            f"{truth}: missing column(s) {sorted(missing)}; found {list(table.columns)}"
        )
    labels = labels_of_config(connect(url, token).projects.get(id=project_id).label_config)
    done = simulate_annotators(
        url,
        token,
        project_id,
        dict(zip(table["item_id"], table["label"], strict=True)),
        specs,
        labels=labels,
        data_kind=data_kind,
        random_state=seed,
    )
    typer.echo(
        f"posted {done['posted']} annotations ({done['skipped']} skips): {done['per_annotator']}"
    )
