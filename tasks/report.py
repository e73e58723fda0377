"""What users see in Prefect: a markdown summary per run and a table of the dispatched batch."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from loopwise.config import CampaignConfig

__all__ = ["publish_batch", "publish_summary", "summary_markdown"]


def _key(cfg: CampaignConfig, what: str) -> str:
    # Artifact keys: lowercase letters, digits and dashes only.
    return f"{cfg.name}-{what}".replace("_", "-").lower()


def summary_markdown(cfg: CampaignConfig, s: dict[str, Any]) -> str:
    """The run summary: labels, cost, metric, decision and reason, links."""
    lines = [f"# Loopwise campaign `{cfg.name}` — cycle {s.get('cycle')}", ""]
    lines.append(f"**Status:** {s.get('status', '')}")
    lines.append("")
    lines.append("| | |")
    lines.append("|---|---|")
    for key, label in (
        ("labels", "labels accepted"),
        ("annotations", "annotations paid"),
        ("cost", "cost spent"),
        ("metric", "holdout accuracy"),
        ("macro_f1", "holdout macro-F1"),
        ("batch_progress", "open batch"),
        ("quarantined", "rows quarantined this run"),
    ):
        if s.get(key) is not None:
            value = s[key]
            if isinstance(value, float):
                value = f"{value:.4f}" if key in ("metric", "macro_f1") else f"{value:.2f}"
            lines.append(f"| {label} | {value} |")
    if s.get("decision"):
        d = s["decision"]
        lines += ["", f"**Decision:** {'stop' if d['stop'] else 'go on'} (`{d['rule']}`)", ""]
        lines.append(f"> {d['reason']}")
    if s.get("next_run"):
        lines += ["", f"**Next run:** {s['next_run']}"]
    lines += ["", "**Links**", ""]
    if s.get("run_url"):
        lines.append(f"- MLflow run: {s['run_url']}")
    if s.get("project_id") is not None:
        lines.append(f"- Label Studio project: {cfg.labelstudio.url}/projects/{s['project_id']}")
    return "\n".join(lines)


@task
def publish_summary(cfg: CampaignConfig, summary: dict[str, Any]) -> str:
    """Publish the run summary as a markdown artifact."""
    text = summary_markdown(cfg, summary)
    create_markdown_artifact(text, key=_key(cfg, "summary"), description="Loopwise cycle summary")
    return text


@task
def publish_batch(cfg: CampaignConfig, cycle: int, batch: list[dict[str, Any]]) -> None:
    """Publish the dispatched batch, best first, as a table artifact."""
    rows = [
        {
            "rank": i + 1,
            "item_id": b["item_id"],
            "query_score": None if b["query_score"] is None else round(b["query_score"], 4),
            "model_guess": b["prediction_label"],
            "model_confidence": None
            if b["prediction_score"] is None
            else round(b["prediction_score"], 4),
        }
        for i, b in enumerate(batch)
    ]
    create_table_artifact(
        rows, key=_key(cfg, "batch"), description=f"cycle {cycle}: batch sent to Label Studio"
    )
