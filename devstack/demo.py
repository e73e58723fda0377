"""`make demo`: the real loop on the embedded defaults, to its stopping decision.

Starts (or reuses) the dev stack (:mod:`devstack.stack`): a local Label Studio, a
Prefect server, a process worker and the MLflow UI, all on 127.0.0.1; deploys
``prefect.yaml``; starts the campaign of ``configs/demo.yaml``; and plays the annotators
(``configs/annotators.yaml``) in Label Studio while the scheduled runs collect, retrain,
decide and dispatch. Progress is printed as the campaign's state moves; at the end it
prints where to look. ``make down`` stops every server by its process id.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from devstack import labelstudio_server as lss
from devstack.servers import REPO
from devstack.stack import Folders, Ports, Stack
from loopwise.state import CampaignState, Stage
from storage.campaign import REPORT_HTML, STATE

PORTS = Ports()  # Prefect 4200 (the server `loopwise run` shares), MLflow 5000, Label Studio 8080


def start_stack() -> Stack:
    """Label Studio, Prefect server, MLflow UI, ``prefect.yaml`` deployed and a worker."""
    stack = Stack(PORTS, Folders.demo()).start(say=lambda line: print(line, flush=True))
    print("• work pool, deployments and worker...", flush=True)
    stack.ensure_work_pool("loopwise")
    stack.prefect("--no-prompt", "deploy", "--all")
    stack.start_worker("loopwise")
    return stack


def run_demo(campaign: str, timeout: float) -> int:
    from devstack.annotators import load_profiles
    from devstack.campaign import campaign_project_id, campaign_state, play
    from loopwise.config import load_campaign

    cfg = load_campaign(campaign)
    stack = start_stack()
    os.environ.update(stack.env)
    token = stack.env["LABEL_STUDIO_API_KEY"]
    store, state = campaign_state(cfg)
    if state.stopped:
        print(f"\nThe campaign {cfg.name} already stopped: {(state.decision or {}).get('reason')}")
        print("(`make demo-clean` forgets it and its servers' data, to run it again.)")
    else:
        out = stack.prefect("deployment", "run", cfg.deployment)
        print("• started:", out.stdout.strip().splitlines()[0] if out.stdout else cfg.deployment)
        profiles = load_profiles(REPO / "configs" / "annotators.yaml")
        shown: set = set()
        start = time.monotonic()
        for state in play(cfg, token, profiles):
            _report(state, shown)
            if state.stopped:
                break
            if time.monotonic() - start >= timeout:
                print(
                    f"\nThe campaign did not stop within {timeout:.0f} s; "
                    "it goes on in the background."
                )
                break
    _where_to_look(stack, cfg, campaign, store, campaign_project_id(cfg, token))
    return 0


def _where_to_look(stack: Stack, cfg, campaign: str, store, project_id: int | None) -> None:
    print(
        "\nWhere to look (the servers keep running; `make down` stops them):\n"
        f"  Prefect UI    {stack.prefect_url}  (deployment {cfg.deployment}, flow runs, "
        "summary artifacts)\n"
        f"  MLflow UI     {stack.mlflow_url}  (experiment {cfg.experiment}, "
        f"model loopwise-{cfg.name}@champion)\n"
        f"  Label Studio  {cfg.labelstudio.url}/projects/{project_id}  (login {lss.USERNAME}; "
        f"password in {stack.folders.labelstudio_data}/.loopwise-credentials.json)\n"
        f"  State         {store.uri(STATE)}\n"
        f"  Report        {store.uri(REPORT_HTML)}  (written at the stop; "
        f"`uv run loopwise report {campaign}` rebuilds it)"
    )


def _report(state: CampaignState, shown: set) -> None:
    """Print what is new in the campaign's state: trained cycles, decisions, open batches."""
    for h in state.history:
        if ("trained", h["cycle"]) not in shown:
            shown.add(("trained", h["cycle"]))
            print(
                f"  cycle {h['cycle']}: {h['labels']} labels, {h['annotations']} annotations, "
                f"cost {h['cost']:.2f}, holdout accuracy {h['metric']:.4f}",
                flush=True,
            )
    d, k = state.decision, state.cycle
    decided = (Stage.DECIDED, Stage.SELECTED, Stage.WAITING, Stage.STOPPED)
    if d and state.stage in decided and ("decided", k) not in shown:
        shown.add(("decided", k))
        print(f"  cycle {k}: {'STOP' if d['stop'] else 'go on'} — {d['reason'][:400]}", flush=True)
    if state.stage is Stage.WAITING and ("waiting", k) not in shown:
        shown.add(("waiting", k))
        print(
            f"  cycle {k}: batch of {len(state.open_batch or [])} out with annotators",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--campaign", default="configs/demo.yaml")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds, default %(default)s"
    )
    args = parser.parse_args(argv)
    return run_demo(args.campaign, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
