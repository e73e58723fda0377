"""The run summary artifact."""

from __future__ import annotations

import pytest

from loopwise.config import CampaignConfig
from tasks.report import summary_markdown


@pytest.fixture
def cfg() -> CampaignConfig:
    return CampaignConfig.model_validate(
        {
            "name": "shoes",
            "data": {"source": "pool.csv"},
            "labels": ["a", "b"],
            "labelstudio": {"url": "http://ls.example:8080"},
        }
    )


# --- summary_markdown -----------------------------------------------------------------------


FULL = {
    "cycle": 3,
    "status": "batch dispatched",
    "labels": 120,
    "annotations": 250,
    "cost": 19.2,
    "metric": 0.912345,
    "macro_f1": 0.87654,
    "batch_progress": "4/10 items resolved",
    "quarantined": 2,
    "decision": {"stop": True, "rule": "plateau", "reason": "accuracy gained 0.001 over 3 cycles"},
    "next_run": "none",
    "run_url": "http://mlflow.example/#/experiments/1/runs/abc",
    "project_id": 42,
}


def rows_of(text: str) -> dict[str, str]:
    """The summary table as {label: value}."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 2 and cells[0]:
            out[cells[0]] = cells[1]
    return out


def test_summary_has_every_number_formatted(cfg):
    text = summary_markdown(cfg, FULL)
    assert text.startswith("# Loopwise campaign `shoes` — cycle 3")
    assert "**Status:** batch dispatched" in text
    assert rows_of(text) == {
        "labels accepted": "120",
        "annotations paid": "250",
        "cost spent": "19.20",
        "holdout accuracy": "0.9123",
        "holdout macro-F1": "0.8765",
        "open batch": "4/10 items resolved",
        "rows quarantined this run": "2",
    }


def test_summary_has_the_decision_rule_and_reason(cfg):
    text = summary_markdown(cfg, FULL)
    assert "**Decision:** stop (`plateau`)" in text
    assert "> accuracy gained 0.001 over 3 cycles" in text
    go_on = summary_markdown(
        cfg, {**FULL, "decision": {"stop": False, "rule": "continue", "reason": "r"}}
    )
    assert "**Decision:** go on (`continue`)" in go_on


def test_summary_has_the_links_and_next_run(cfg):
    text = summary_markdown(cfg, FULL)
    assert "- MLflow run: http://mlflow.example/#/experiments/1/runs/abc" in text
    assert "- Label Studio project: http://ls.example:8080/projects/42" in text
    assert "**Next run:** none" in text


def test_summary_omits_absent_keys(cfg):
    text = summary_markdown(cfg, {"cycle": 0, "status": "waiting", "labels": 0, "project_id": 7})
    assert rows_of(text) == {"labels accepted": "0"}
    for absent in ("cost spent", "holdout accuracy", "Decision", "Next run", "MLflow run"):
        assert absent not in text
    assert "/projects/7" in text


def test_summary_omits_keys_given_as_none_but_keeps_zero(cfg):
    text = summary_markdown(cfg, {**FULL, "metric": None, "run_url": None, "cost": 0.0})
    rows = rows_of(text)
    assert "holdout accuracy" not in rows
    assert rows["cost spent"] == "0.00"
    assert "MLflow run" not in text


def test_summary_without_a_project_has_no_project_link(cfg):
    text = summary_markdown(cfg, {"cycle": 0, "status": "new"})
    assert "projects/None" not in text


HOSTILE = '<img src=x onerror="alert(1)">&amp'


def test_a_label_name_with_html_reaches_no_artifact_as_html(cfg):
    from tasks.report import table_rows

    decision = {"stop": False, "rule": "continue", "reason": f"only {HOSTILE!r} is labeled"}
    text = summary_markdown(cfg, {"cycle": 1, "status": HOSTILE, "decision": decision})
    assert "<img" not in text and "&lt;img" in text, text
    assert "&amp;amp" in text, "an ampersand is escaped too, so no entity sneaks in"
    rows = table_rows([{"rank": 1, "model_guess": HOSTILE, "model_confidence": 0.5}])
    assert rows == [
        {
            "rank": 1,
            "model_guess": '&lt;img src=x onerror="alert(1)">&amp;amp',
            "model_confidence": 0.5,
        }
    ]


# --- report_markdown ------------------------------------------------------------------------


def test_the_report_artifact_has_the_money_and_the_champion_gate(cfg):
    from loopwise import report as rp
    from tasks.report import report_markdown

    history = [
        {"cycle": 0, "labels": 10, "annotations": 10, "cost": 0.0, "metric": 0.5},
        {"cycle": 1, "labels": 20, "annotations": 20, "cost": 0.0, "metric": 0.7},
    ]
    gate = {
        "decision": "promoted",
        "champion_version": "2",
        "challenger_version": None,
        "p_value": 0.001,
        "interval": [0.05, 0.3],
        "reason": "v2 becomes the champion over v1. <b>",
    }
    labels = [
        {"item_id": f"i{i}", "label": "a", "supersedes": "x" if i < 2 else None} for i in range(20)
    ]
    r = rp.build_report(
        cfg,
        history=history,
        batches={},
        labels=labels,
        annotations=[],
        decisions={},
        random_points=[],
        gate=gate,
    )
    text = report_markdown(cfg, r, "reports/report.html")
    assert "| cost per accepted label | 0.00 |" in text
    assert (
        "| cost per point of accuracy since the first model | 0.00 (0.00 for 20.00 points) |"
        in text
    )
    assert "| labels corrected | 2 |" in text
    assert "| champion model | v2 (p = 0.001; Δ +5.00 to +30.00 points): v2 becomes" in text
    assert "<b>" not in text
    assert "overlap" not in text  # a fixed policy: no saving to show
