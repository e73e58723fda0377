"""``loopwise init``: infer a campaign from the data, write its files, print what was inferred."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress

from flows.cli._console import fail, out, steps, warn
from loopwise.config import ConfigError, load_campaign

if TYPE_CHECKING:
    import pandas as pd

    from loopwise.infer import Inference

app = typer.Typer()


@dataclass(frozen=True)
class _Hints:
    """What the user told ``init`` instead of letting it guess."""

    label_column: str | None
    id_column: str | None
    text_column: str | None
    labels: list[str] | None
    holdout: str | None
    encoding: str | None


@dataclass(frozen=True)
class _Files:
    """The two files ``init`` writes."""

    config: Path
    suite: Path


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
    encoding: Annotated[
        str | None,
        typer.Option(help="text encoding of a CSV that is not UTF-8, e.g. latin-1 or cp1252"),
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
    campaign = _slug(name or Path(data_file.split("?")[0]).name.split(".")[0])
    files = _Files(configs_dir / f"{campaign}.yaml", expectations_dir / f"{campaign}.json")
    if not force:
        for p in (files.config, files.suite):
            if p.exists():
                fail(f"{p} exists; pass --force to overwrite it, or --name for another campaign", 2)
    given = [v.strip() for v in labels.split(",") if v.strip()] if labels else None
    hints = _Hints(label_column, id_column, text_column, given, holdout, encoding)
    if encoding is not None:
        import codecs

        try:
            codecs.lookup(encoding)
        except LookupError:
            fail(f"--encoding {encoding!r}: unknown; try latin-1, cp1252 or utf-16", 2)
    with steps() as progress:
        df, inf = _infer(progress, data_file, hints)
        suite = _write(progress, inf, campaign, data_file, hints, files)
    _print_summary(data_file, df, inf, suite, files)


def _infer(progress: Progress, data_file: str, hints: _Hints) -> tuple[pd.DataFrame, Inference]:
    """Read the data and infer the id, label, text and feature columns and the label set."""
    import pandas as pd

    from loopwise import infer
    from storage.tables import read_table

    step = progress.add_task(f"reading {data_file}", total=None)
    try:
        df = read_table(data_file, encoding=hints.encoding)
        label = infer.find_label_column(df.columns, hints.label_column)
        if label is not None and not pd.api.types.is_string_dtype(df[label]):
            # Read the label column as the campaign will: as its text ('0', 'true'), so the
            # label set and the suite list the values the pool holds.
            df = read_table(data_file, encoding=hints.encoding, string_columns=[label])
    except (ValueError, FileNotFoundError) as e:
        fail(str(e), 2)
    progress.update(
        step, description=f"read {len(df):,} rows, {df.shape[1]} columns of {data_file}"
    )
    progress.stop_task(step)
    step = progress.add_task("inferring the columns and the label set", total=None)
    try:
        inf = infer.infer_columns(
            df,
            source=data_file,
            label_column=hints.label_column,
            id_column=hints.id_column,
            text_column=hints.text_column,
            labels=hints.labels,
        )
    except infer.InferenceError as e:
        fail(str(e), 2)
    if inf.label_column is None and hints.holdout is None:
        fail(
            f"{data_file}: no label column, so the holdout must come from a labeled file: "
            "pass --holdout FILE (with the same columns and a label column)",
            2,
        )
    progress.stop_task(step)
    return df, inf


def _write(
    progress: Progress,
    inf: Inference,
    campaign: str,
    data_file: str,
    hints: _Hints,
    files: _Files,
) -> dict[str, Any]:
    """Write the validation suite and the campaign config, and check the config loads."""
    from loopwise import infer

    step = progress.add_task(f"writing {files.suite} and {files.config}", total=None)
    suite = infer.expectation_suite(inf, campaign)
    text = infer.campaign_yaml(
        inf,
        name=campaign,
        source=data_file,
        suite_path=str(files.suite),
        holdout=hints.holdout,
        encoding=hints.encoding,
        # the Label Studio of `source .loopwise/labelstudio.env`, when there is one
        labelstudio_url=os.environ.get("LABEL_STUDIO_URL") or "http://127.0.0.1:8080",
    )
    files.suite.parent.mkdir(parents=True, exist_ok=True)
    files.config.parent.mkdir(parents=True, exist_ok=True)
    files.suite.write_text(json.dumps(suite, indent=2) + "\n")
    files.config.write_text(text)
    try:
        load_campaign(files.config)
    except ConfigError as e:  # a bug of ours, not the user's: say so with the file
        fail(f"the config written to {files.config} does not load: {e}")
    progress.stop_task(step)
    return suite


def _print_summary(
    data_file: str, df: pd.DataFrame, inf: Inference, suite: dict[str, Any], files: _Files
) -> None:
    """The warnings on stderr; what was inferred, what was written and what next on stdout."""
    for b in df.attrs.get("bad_lines") or []:
        warn(
            f"{data_file}, line {b['line']} (row {b['row']}): {b['fields']} "
            f"fields where the header has {b['expected']}; the campaign quarantines it"
        )
    for w in inf.warnings:
        warn(w)
    kind = (
        f"text column {inf.text_column!r}"
        if inf.text_column
        else (f"{len(inf.numeric)} numeric and {len(inf.categorical)} categorical features")
    )
    ignored = (
        f"; ignored {', '.join(f'{c} ({why})' for c, why in inf.ignored.items())}"
        if inf.ignored
        else ""
    )
    out.print(
        f"{data_file}: {len(df):,} rows; id {inf.id_column or '(a fingerprint of each row)'}, label "
        f"{inf.label_column or '(none)'} with {len(inf.labels)} labels, {kind}{ignored}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"wrote {files.config} and {files.suite} ({len(suite['expectations'])} expectations)")
    out.print(
        "next: edit the budget and costs in the config, then\n"
        f"  loopwise run {files.config}        # one cycle now (needs Label Studio, see README)\n"
        f"  loopwise deploy {files.config}     # or let Prefect run the cycles",
        highlight=False,
        soft_wrap=True,
    )
