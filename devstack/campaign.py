"""A campaign answered by simulated annotators: what ``make demo``, ``loopwise annotate``
and the browser test share.

The annotators answer from the data's label column (:func:`ground_truth`) through Label
Studio's API, as distinct users (:mod:`devstack.annotators`); :func:`play` reads the
campaign's state and lets them answer each batch that is out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from loopwise.state import CampaignState, Stage

__all__ = ["annotate_campaign", "campaign_project_id", "campaign_state", "ground_truth", "play"]


def campaign_state(cfg) -> tuple[Any, CampaignState]:
    """The campaign's store and its state (a new campaign: stage ``new``)."""
    from storage.campaign import campaign_store, read_state

    store = campaign_store(cfg.storage_root, cfg.name)
    return store, read_state(store)


def ground_truth(cfg) -> dict[str, str]:
    """item id → the data's label column: what simulated annotators answer from."""
    from tasks.data import load_pool

    df = load_pool.fn(cfg)
    return dict(zip(df["item_id"], df[cfg.data.label_column].astype(str), strict=True))


def campaign_project_id(cfg, token: str) -> int | None:
    """The campaign's Label Studio project, or None before its first dispatch."""
    from tasks.labelstudio import connect

    client = connect(cfg.labelstudio.url, token)
    for p in client.projects.list(title=cfg.project_title):
        if p.title == cfg.project_title:
            return int(p.id)
    return None


def annotate_campaign(
    cfg, token: str, project_id: int, truth: dict[str, str], profiles: Sequence, seed: int
) -> dict:
    """One round of simulated annotators on the campaign's open tasks (seeded)."""
    from devstack.annotators import simulate_annotators

    return simulate_annotators(
        cfg.labelstudio.url,
        token,
        project_id,
        truth,
        profiles,
        labels=cfg.labels,
        data_kind=cfg.data.kind,
        random_state=seed,
    )


def play(
    cfg, token: str, profiles: Sequence, *, poll_seconds: float = 1.0
) -> Iterator[dict[str, Any]]:
    """Yield the campaign's state every ``poll_seconds``, forever; the caller stops.

    Whenever the state says its batch is out (stage ``waiting``), the annotators answer
    one round (seeds 1, 2, ...) before the next read.
    """
    truth = ground_truth(cfg)
    project_id, seed = None, 0
    while True:
        _, state = campaign_state(cfg)
        yield state
        if project_id is None:
            project_id = campaign_project_id(cfg, token)
        if project_id is not None and state.stage is Stage.WAITING:
            seed += 1
            annotate_campaign(cfg, token, project_id, truth, profiles, seed)
        time.sleep(poll_seconds)
