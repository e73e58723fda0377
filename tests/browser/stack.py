"""The browser test's campaign: the dev stack on private ports and folders, and a short
real campaign on it.

The servers are :mod:`devstack.stack`'s, as ``make demo`` runs them, but on free ports of
127.0.0.1 with every pid file, log and database under a temporary folder: the user's own
servers (4200, 5000, 8080) and their pid files under ``.loopwise/run/`` are never touched,
and every process is stopped by its process id when the context manager exits, whatever
happened. What is the test's own: the campaign (scikit-learn's digits, written by
``loopwise init`` and registered by ``loopwise deploy``), its polling with patience for a
busy server (:func:`api_json`), and the failures it watches for.

    python -m tests.browser.stack /tmp/somewhere   # start it, run the campaign, keep it up
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from devstack.stack import Folders, Ports, Stack
from devstack.stack import running_stack as running_dev_stack

REPO = Path(__file__).resolve().parents[2]
CAMPAIGN = "digits-demo"  # `loopwise deploy` registers cycle/digits-demo

__all__ = ["REPO", "Stack", "api_json", "run_campaign", "running_stack"]


def campaign_yaml(tmp: Path, ls_url: str, mlflow_db: Path) -> Path:
    """A short private campaign on scikit-learn's bundled digits (no dataset download, no
    ``../shared``), its config and suite written by ``loopwise init`` as a user would."""
    from sklearn.datasets import load_digits
    from typer.testing import CliRunner

    from flows.cli import app

    digits = load_digits()
    frame = pd.DataFrame(digits.data.astype(int), columns=[f"px{i}" for i in range(64)])
    frame["digit"] = [f"d{v}" for v in digits.target]
    source = tmp / f"{CAMPAIGN}.csv"
    frame.to_csv(source, index=False)
    done = CliRunner().invoke(
        app,
        [
            "init",
            str(source),
            "--label-column",
            "digit",
            "--configs-dir",
            str(tmp),
            "--expectations-dir",
            str(tmp),
        ],
        env={"LABEL_STUDIO_URL": ls_url},
    )
    if done.exit_code != 0:
        raise RuntimeError(f"loopwise init failed:\n{done.output}")
    path = tmp / f"{CAMPAIGN}.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg.update(
        cold_start_size=30,
        batch_size=30,
        stop_set_size=500,
        annotators_per_item=2,
        max_annotations_per_item=4,
    )
    # Stops after two cycles: the currency budget (0.08 an annotation, 2 per item) leaves
    # room for the second batch but not the third.
    cfg["budget"] = {
        "labels": 90,
        "currency": 15.0,
        "cost_per_annotation": 0.08,
        "value_per_point": 4.0,
    }
    cfg["storage_root"] = str(tmp / "store")
    cfg["mlflow"] = {
        "tracking_uri": f"sqlite:///{mlflow_db}",
        "artifact_location": (tmp / "mlartifacts").as_uri(),
    }
    cfg["schedule"] = {"recheck_seconds": 3}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@contextlib.contextmanager
def running_stack(tmp: Path, ls_work_dir: Path | None = None) -> Iterator[tuple[Stack, Path]]:
    """The dev stack on free ports with its data under ``tmp``, and the campaign file.

    The campaign is registered on this Prefect server by ``loopwise deploy``
    (``cycle/digits-demo``) and a process worker serves it. Everything is stopped by
    process id on exit.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    folders = Folders.private(tmp, ls_work_dir)
    # The worker asks for scheduled runs every 2 s (default 10): a short campaign.
    quick = {"PREFECT_WORKER_QUERY_SECONDS": "2"}
    with running_dev_stack(Ports.free(), folders, quick) as stack:
        campaign = campaign_yaml(tmp, stack.labelstudio.url, folders.mlflow_db)
        stack.ensure_work_pool("loopwise")
        stack.run("loopwise", "deploy", str(campaign), "--pool", "loopwise")
        stack.start_worker("loopwise")
        yield stack, campaign


# A server on a loaded 2-core machine (SQLite under the Prefect server, a flow run training
# beside it) can stall for tens of seconds: one slow answer is not a failure, only one
# that stays away for ``API_PATIENCE`` seconds is.
API_PATIENCE = 240.0


def api_json(
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    patience: float = API_PATIENCE,
) -> Any:
    """GET (or POST ``body`` as JSON) and decode the answer, asking again through timeouts,
    refused connections and 5xx answers for up to ``patience`` seconds."""
    data = None if body is None else json.dumps(body).encode()
    deadline = time.monotonic() + patience
    delay = 1.0
    while True:
        req = urllib.request.Request(
            url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                raise
            error: Exception = exc
        except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
            error = exc
        if time.monotonic() + delay > deadline:
            raise TimeoutError(f"{url} did not answer for {patience:.0f} s: {error!r}") from error
        time.sleep(delay)
        delay = min(delay * 2, 15.0)


def _runs_in(stack: Stack, states: list[str]) -> list[tuple[str, str]]:
    """(name, state) of every flow run in one of ``states`` on this Prefect server."""
    body = {"flow_runs": {"state": {"type": {"any_": states}}}}
    try:
        runs = api_json(f"{stack.prefect_api}/flow_runs/filter", body)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{stack.logs()}") from exc
    return [(run["name"], run["state_name"]) for run in runs]


def run_campaign(stack: Stack, campaign_file: Path, timeout: float = 600.0) -> dict[str, Any]:
    """Start the campaign and play the annotators until its state says stopped (as ``make demo``)."""
    from devstack.annotators import load_profiles
    from devstack.campaign import campaign_project_id, play
    from loopwise.config import load_campaign

    cfg = load_campaign(campaign_file)
    stack.prefect("deployment", "run", cfg.deployment, "--param", f"campaign={campaign_file}")
    token = stack.labelstudio.token
    profiles = load_profiles(REPO / "configs" / "annotators.yaml")
    start = last_check = time.monotonic()
    for state in play(cfg, token, profiles):
        # Stopped, and the run that stopped it finished too (it writes the report last).
        if state.stopped and not _runs_in(stack, ["RUNNING", "PENDING"]):
            break
        if time.monotonic() - start > timeout:
            raise TimeoutError(
                f"the campaign did not stop in {timeout:.0f} s; state {state}\n{stack.logs()}"
            )
        # The store is read every second; the Prefect server, busy with the flow run on a
        # 2-core machine, is asked about failures every 10 s.
        if time.monotonic() - last_check > 10:
            last_check = time.monotonic()
            failed = _runs_in(stack, ["FAILED", "CRASHED"])
            if failed:
                raise RuntimeError(f"flow runs failed: {failed}\n{stack.logs()}")
    return {
        "cfg": cfg,
        "state": state.model_dump(mode="json"),
        "project_id": campaign_project_id(cfg, token),
        "seconds": time.monotonic() - start,
    }


def main() -> int:  # pragma: no cover - a manual helper
    tmp = Path(sys.argv[1])
    with running_stack(tmp) as (stack, campaign):
        print(
            "prefect",
            stack.prefect_url,
            "mlflow",
            stack.mlflow_url,
            "ls",
            stack.labelstudio.url,
            flush=True,
        )
        out = run_campaign(stack, campaign)
        print(
            "stopped after",
            f"{out['seconds']:.0f} s",
            out["state"]["decision"]["reason"],
            flush=True,
        )
        (tmp / "ready").write_text(
            f"{stack.prefect_url}\n{stack.mlflow_url}\n{stack.labelstudio.url}\n{out['project_id']}\n"
        )
        while not (tmp / "done").exists():
            time.sleep(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
