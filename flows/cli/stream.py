"""The production stream from the command line: ``serve`` (the gateway), ``stream`` (one
stream run now), ``retrain`` (by hand) and ``deploy-stream`` (the two deployments)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from flows.cli._console import CampaignArg, fail, load, out, steps
from flows.cli._prefect import prefect_api
from flows.cli.run import REPO, _ensure_work_pool
from loopwise.config import ConfigError

app = typer.Typer()


@app.command()
def serve(
    campaign: CampaignArg,
    host: Annotated[str, typer.Option(help="the address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="the port")] = 8000,
) -> None:
    """Serve the campaign's champion over HTTP (POST /predict, POST /feedback, GET /health),
    log every request to the inference log, and ask for labels inline."""
    load(campaign)
    from serving.gateway import serve as run_gateway

    run_gateway(str(campaign), host=host, port=port)


@app.command()
def stream(campaign: CampaignArg) -> None:
    """One stream run now: read the log since the cursor, dispatch, collect, triggers."""
    cfg = load(campaign)
    from flows.stream import stream as stream_flow

    with prefect_api(), steps() as progress:
        progress.add_task(f"reading the inference log of {cfg.name}", total=None)
        try:
            result: dict[str, Any] = stream_flow(campaign=str(campaign))
        except ConfigError as e:
            fail(str(e), 2)
        except Exception as e:  # the flow run logged the traceback above
            fail(f"the run failed ({type(e).__name__}: {e}); run it again: nothing is lost")
    out.print(f"{cfg.name}: {result.get('status')}", highlight=False)


@app.command()
def retrain(
    campaign: CampaignArg,
    key: Annotated[
        str, typer.Option(help="idempotency key: a second run with it trains nothing")
    ] = "manual",
) -> None:
    """Retrain now on every accepted label; the champion gate decides what is served."""
    cfg = load(campaign)
    from flows.stream import retrain as retrain_flow

    with prefect_api(), steps() as progress:
        progress.add_task(f"retraining {cfg.name}", total=None)
        try:
            result: dict[str, Any] = retrain_flow(
                campaign=str(campaign), key=key, reason="started by hand"
            )
        except ConfigError as e:
            fail(str(e), 2)
    out.print(
        f"{cfg.name}: model v{result.get('model_version')} ({result.get('gate')})", highlight=False
    )


@app.command("deploy-stream")
def deploy_stream(
    campaign: CampaignArg,
    pool: Annotated[
        str, typer.Option(help="the Prefect work pool (created as a process pool if missing)")
    ] = "loopwise",
    every: Annotated[float, typer.Option(min=5, help="seconds between stream runs")] = 60,
) -> None:
    """Register the stream deployment (every ``--every`` seconds) and the retrain
    deployment the triggers run."""
    cfg = load(campaign)
    from flows.stream import retrain as retrain_flow
    from flows.stream import stream as stream_flow

    try:
        campaign_param = str(campaign.resolve().relative_to(REPO))
    except ValueError:
        campaign_param = str(campaign.resolve())
    retrain_name = (cfg.stream.retrain_deployment or f"retrain/{cfg.name}").partition("/")[2]
    with prefect_api(for_workers=True):
        _ensure_work_pool(pool)
        with steps() as progress:
            progress.add_task(f"registering stream/{cfg.name} and retrain", total=None)
            for flow_, entry, name, interval in (
                (stream_flow, "flows/stream.py:stream", cfg.name, every),
                (retrain_flow, "flows/stream.py:retrain", retrain_name, None),
            ):
                flow_.from_source(source=str(REPO), entrypoint=entry).deploy(
                    name=name,
                    work_pool_name=pool,
                    parameters={"campaign": campaign_param},
                    tags=["loopwise", cfg.name, "stream"],
                    description=f"Loopwise stream of {cfg.name}: {flow_.name}.",
                    interval=interval,
                    concurrency_limit=1,
                    build=False,
                    push=False,
                    print_next_steps=False,
                    ignore_warnings=True,
                )
    out.print(
        f"deployments stream/{cfg.name} (every {every:g} s) and retrain/{retrain_name} on work "
        f"pool {pool}\nstart a worker:   prefect worker start --pool {pool}",
        highlight=False,
    )
