"""What the command groups share: the two consoles, failing with a message, the spinner."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from loopwise.config import CampaignConfig, ConfigError, load_campaign

err = Console(stderr=True)
out = Console()

CampaignArg = Annotated[Path, typer.Argument(help="the campaign config (YAML)")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (2: the user's input)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr."""
    err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def steps() -> Progress:
    """A transient spinner on stderr, one line per step."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def load(campaign: Path) -> CampaignConfig:
    """The campaign config, or exit 2 with the file's problem."""
    try:
        return load_campaign(campaign)
    except (ConfigError, FileNotFoundError) as e:
        fail(str(e), 2)
