"""End to end, in headless Chromium: the three UIs after a short real demo campaign.

One module-scoped campaign (``stack.py``): the dev stack of ``make demo``
(:mod:`devstack.stack`: Label Studio, Prefect server, MLflow server and process worker)
on free ports of 127.0.0.1 with private folders; scikit-learn's digits as the user's
CSV, its campaign written by ``loopwise init`` and registered by ``loopwise deploy``
(``cycle/digits-demo``; 30 items a batch, stopped by its currency budget after two
cycles), with the simulated annotators of ``make demo`` playing between runs. Then each
UI is opened in Debian's Chromium, driven by Playwright's bundled driver (no browser
download, ever), the page's text is checked, and a screenshot goes to
``.loopwise/screenshots/`` (or ``$LOOPWISE_SCREENSHOTS``;
``LOOPWISE_SCREENSHOTS=docs/screenshots`` refreshes the README's pictures).

    uv run --locked --no-sync pytest tests/browser -m browser
"""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.stack import REPO, Stack, api_json, run_campaign, running_stack

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("LOOPWISE_SCREENSHOTS") or REPO / ".loopwise" / "screenshots")
# What the machine's closed network needs (see the Makefile's `chromium` target).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Single-page apps on a shared 2-core machine: generous waits for text, never sleeps.
UI_TIMEOUT_MS = 90_000
# MLflow's first-visit pop-ups (assistant panel, registry promo), dismissed as a user would.
MLFLOW_SEEN = {
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
    "mlflow.assistant.panelOpen_v1": "false",
    "_mlflow_model_registry_promo_modal_dismissed_v1": "true",
}


# --------------------------------------------------------------------------- REST helpers


def _ls(stack: Stack, path: str, body: Any = None) -> Any:
    return api_json(f"{stack.labelstudio.url}{path}", body, stack.labelstudio.auth_header)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict]]:
    """The stack, after a short campaign ran to its stop decision."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (`make chromium` installs Debian's chromium)")
    work_dir = Path(os.environ.get("LOOPWISE_WORK_DIR") or REPO / ".loopwise")
    with running_stack(tmp_path_factory.mktemp("browser"), work_dir) as (stack, campaign_file):
        result = run_campaign(stack, campaign_file, timeout=600)
        yield stack, result


@pytest.fixture(scope="module")
def browser(campaign) -> Iterator[Any]:
    """A persistent Chromium context with a fresh, empty profile."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        ctx = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 1000},
        )
        ctx.set_default_timeout(UI_TIMEOUT_MS)
        ctx.add_init_script(
            "try {"
            + "".join(f"localStorage.setItem({k!r}, {v!r});" for k, v in MLFLOW_SEEN.items())
            + "} catch (e) {}"
        )
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.fixture
def page(browser) -> Iterator[Any]:
    page = browser.new_page()
    try:
        yield page
    finally:
        page.close()


def _see(page, *texts: str) -> None:
    """Wait until each text is shown on the page."""
    from playwright.sync_api import expect

    for text in texts:
        expect(page.get_by_text(text, exact=False).first).to_be_visible(timeout=UI_TIMEOUT_MS)


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / name), full_page=True)


def _positions(body: str, needles: list[str]) -> list[int]:
    return [body.index(n) for n in needles]


# --------------------------------------------------------------------------- the campaign


def test_campaign_stopped_after_cycles(campaign) -> None:
    _, result = campaign
    state = result["state"]
    assert state["stopped"] and state["decision"]["stop"]
    assert len(state["history"]) >= 2, state["history"]


# --------------------------------------------------------------------------- Prefect


def _prefect_api(stack: Stack, path: str, body: Any) -> Any:
    return api_json(f"{stack.prefect_api}{path}", body)


def test_prefect_ui(campaign, page) -> None:
    stack, result = campaign
    cfg = result["cfg"]
    flow_name, deployment_name = cfg.deployment.split("/")
    (deployment,) = [
        d for d in _prefect_api(stack, "/deployments/filter", {}) if d["name"] == deployment_name
    ]
    runs = _prefect_api(
        stack,
        "/flow_runs/filter",
        {"deployments": {"id": {"any_": [deployment["id"]]}}, "sort": "START_TIME_DESC"},
    )
    assert runs and all(r["state_type"] == "COMPLETED" for r in runs), [
        (r["name"], r["state_type"]) for r in runs
    ]

    # The deployment, its flow and pool, its runs: completed.
    page.goto(f"{stack.prefect_url}/deployments/deployment/{deployment['id']}")
    _see(page, deployment_name, flow_name, "loopwise", runs[0]["name"], "Completed")
    _shot(page, "prefect-deployment.png")

    # Every run of the campaign in the runs list, newest first, all completed.
    page.goto(f"{stack.prefect_url}/runs")
    _see(page, "Completed", *(r["name"] for r in runs[:8]))
    body = page.inner_text("body")
    assert _positions(body, [r["name"] for r in runs[:8]]) == sorted(
        _positions(body, [r["name"] for r in runs[:8]])
    )
    assert "Failed" not in body and "Crashed" not in body
    _shot(page, "prefect-runs.png")

    # The last summary artifact: the stop decision, rendered from markdown.
    key = f"{cfg.name}-summary"
    (artifact,) = _prefect_api(
        stack,
        "/artifacts/filter",
        {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1},
    )
    page.goto(f"{stack.prefect_url}/artifacts/artifact/{artifact['id']}")
    last = result["state"]["history"][-1]
    _see(page, key, f"Loopwise campaign {cfg.name}", "Decision:", "stop", str(last["labels"]))
    _shot(page, "prefect-artifact.png")


# --------------------------------------------------------------------------- MLflow


def test_mlflow_ui(campaign, page) -> None:
    stack, result = campaign
    cfg = result["cfg"]
    api = f"{stack.mlflow_url}/api/2.0/mlflow"
    name = urllib.parse.quote(cfg.experiment)
    exp = api_json(f"{api}/experiments/get-by-name?experiment_name={name}")["experiment"]
    runs = api_json(
        f"{api}/runs/search",
        {"experiment_ids": [exp["experiment_id"]], "order_by": ["attributes.start_time DESC"]},
    )["runs"]
    cycles = [h["cycle"] for h in result["state"]["history"]]
    run_names = [f"cycle-{c:03d}" for c in cycles]
    assert sorted(r["info"]["run_name"] for r in runs) == run_names

    # The experiment's training runs: one per cycle.
    page.goto(f"{stack.mlflow_url}/#/experiments/{exp['experiment_id']}/runs")
    _see(page, cfg.experiment, *run_names)
    _shot(page, "mlflow-runs.png")

    # The learning curve among the last run's artifacts, and the image really loaded.
    last = runs[0]["info"]
    page.goto(
        f"{stack.mlflow_url}/#/experiments/{exp['experiment_id']}/runs/{last['run_id']}"
        "/artifacts/learning_curve.png"
    )
    _see(page, last["run_name"], "confusion_matrix.png", "learning_curve.png")
    page.wait_for_function(
        "() => { const i = document.querySelector('img[alt=\"learning_curve.png\"]');"
        " return i !== null && i.complete && i.naturalWidth > 0; }",
        timeout=UI_TIMEOUT_MS,
    )
    _shot(page, "mlflow-figure.png")

    # The registered model and its champion alias (on the version the gate last promoted).
    model = f"loopwise-{cfg.name}"
    champion = api_json(
        f"{api}/registered-models/alias?name={urllib.parse.quote(model)}&alias=champion"
    )["model_version"]["version"]
    page.goto(f"{stack.mlflow_url}/#/models/{urllib.parse.quote(model)}")
    _see(page, model, "champion", f"Version {champion}", f"Version {len(cycles)}")
    _shot(page, "mlflow-model.png")


# --------------------------------------------------------------------------- Label Studio


def test_labelstudio_ui(campaign, page) -> None:
    stack, result = campaign
    cfg, project_id = result["cfg"], result["project_id"]
    tasks = _ls(stack, f"/api/tasks?project={project_id}&page_size=1000&fields=all")
    tasks = sorted(tasks["tasks"] if isinstance(tasks, dict) else tasks, key=lambda t: t["id"])
    predicted = [t for t in tasks if t.get("total_predictions")]
    assert predicted, "no task was dispatched with a pre-annotation"
    # The first batch a model chose: imported best first (highest query score first).
    first = [t for t in predicted if t["data"].get("query_score") is not None][:5]
    scores = [t["data"]["query_score"] for t in first]
    assert scores == sorted(scores, reverse=True), scores

    # A tab of the data manager with the pre-annotated tasks in import order.
    hide = [
        "tasks:data.record", "tasks:inner_id", "tasks:completed_at", "tasks:cancelled_annotations",
        "tasks:annotations_results", "tasks:annotations_ids", "tasks:predictions_model_versions",
        "tasks:file_upload", "tasks:storage_filename", "tasks:created_at", "tasks:updated_at",
        "tasks:updated_by", "tasks:avg_lead_time", "tasks:draft_exists",
    ]  # fmt: skip
    view = _ls(
        stack,
        "/api/dm/views",
        {
            "project": project_id,
            "data": {
                "title": "Pre-annotated, best first",
                "type": "list",
                "target": "tasks",
                "ordering": ["tasks:id"],
                "filters": {
                    "conjunction": "and",
                    "items": [
                        {
                            "filter": "filter:tasks:total_predictions",
                            "operator": "greater",
                            "type": "Number",
                            "value": 0,
                        }
                    ],
                },
                "hiddenColumns": {"explore": hide, "labeling": []},
                "columnsWidth": {"tasks:predictions_results": 520},
            },
        },
    )

    # Log in as the admin the server module created (password in its data dir, 0600).
    page.goto(f"{stack.labelstudio.url}/user/login")
    page.fill("input[name=email]", stack.labelstudio.username)
    page.fill("input[name=password]", stack.labelstudio.password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/user/login" not in url, timeout=UI_TIMEOUT_MS)

    page.goto(f"{stack.labelstudio.url}/projects/{project_id}/data?tab={view['id']}")
    _see(
        page,
        cfg.project_title,
        "Pre-annotated, best first",
        f"Tasks: {len(predicted)} / {len(tasks)}",
        "Prediction score",
        "Prediction results",
        *(t["data"]["item_id"] for t in first),
    )
    body = page.inner_text("body")
    # Shown in the order they were dispatched: most informative first.
    order = _positions(body, [t["data"]["item_id"] for t in first])
    assert order == sorted(order), order
    guess = first[0]["predictions"][0]["result"][0]["value"]["choices"][0]
    assert f"choices: [{guess}]" in body
    _shot(page, "labelstudio-tasks.png")


# --------------------------------------------------------------------------- the report


def test_report_page(campaign, page) -> None:
    """The campaign report written at the stop: one self-contained page, figures loaded."""
    import time

    from storage.campaign import campaign_store

    _, result = campaign
    cfg = result["cfg"]
    store = campaign_store(cfg.storage_root, cfg.name)
    deadline = time.monotonic() + 180  # the report flow runs right after the state says stopped
    while not store.exists("reports/report.json"):
        assert time.monotonic() < deadline, "no report after the stop"
        time.sleep(1)
    r = store.read_json("reports/report.json")
    page.goto(store.path("reports/report.html").as_uri())
    _see(
        page,
        f"Loopwise report — {cfg.name}",
        "What the labels bought",
        "Stop decisions",
        "Annotators",
        f"{r['spent']:,.2f}",
    )
    assert r["labels"] == result["state"]["history"][-1]["labels"]
    widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
    assert len(widths) == 2 and min(widths) > 0, widths
    _shot(page, "report.png")
