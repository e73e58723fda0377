"""``loopwise run`` and ``loopwise deploy``: one cycle now, or the campaign's deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli._console import CampaignArg, fail, load, out, steps
from flows.cli._prefect import prefect_api
from loopwise.config import ConfigError

app = typer.Typer()

REPO = Path(__file__).resolve().parents[2]


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
    Without ``PREFECT_API_URL`` the run goes to the local Prefect server, started by
    the first command that needs it and reused afterwards.
    """
    cfg = load(campaign)
    from flows.cycle import cycle

    with prefect_api(), steps() as progress:
        progress.add_task(f"running the next step of {cfg.name}", total=None)
        try:
            result: dict[str, Any] = cycle(
                campaign=str(campaign),
                batch_size=batch_size,
                strategy=strategy,
                close_batch=close_batch,
            )
        except ConfigError as e:
            fail(str(e), 2)
        except Exception as e:  # the flow run logged the traceback above
            fail(
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
    cfg = load(campaign)
    from flows.cycle import cycle

    flow_name, _, dep_name = cfg.deployment.partition("/")
    if flow_name != cycle.name:
        fail(f"schedule.deployment must be 'cycle/<name>', got {cfg.deployment!r}", 2)
    try:
        campaign_param = str(campaign.resolve().relative_to(REPO))
    except ValueError:
        campaign_param = str(campaign.resolve())
    with prefect_api(for_workers=True):
        _ensure_work_pool(pool)
        with steps() as progress:
            progress.add_task(f"registering {cfg.deployment} on work pool {pool}", total=None)
            dep_id = cycle.from_source(source=str(REPO), entrypoint="flows/cycle.py:cycle").deploy(
                name=dep_name,
                work_pool_name=pool,
                parameters={"campaign": campaign_param},
                tags=["loopwise", cfg.name],
                description=f"Loopwise campaign {cfg.name}: one active-learning cycle per run.",
                cron=cron,
                # One run of a campaign at a time; a second waits for the slot (the lease
                # in the store holds it off as well, for runs started outside a worker).
                concurrency_limit=1,
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


def _ensure_work_pool(pool: str) -> None:
    """A process work pool named ``pool``, created if missing."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:
            pass
