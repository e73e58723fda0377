"""The campaign's position (``state.json``) and its per-cycle checkpoints.

``state.json`` says which cycle is open and the last stage it reached; each stage
leaves a checkpoint under ``cycles/<n>/`` before the state moves on, so a run
that dies anywhere is re-run from the last checkpoint: nothing is selected,
dispatched, logged or scheduled twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from storage.store import Store

__all__ = [
    "STAGES",
    "campaign_store",
    "checkpoint",
    "now_iso",
    "read_state",
    "save_checkpoint",
    "write_state",
]

#: The stages of one cycle, in order (``waiting`` = its batch is out with annotators).
STAGES = ("started", "trained", "decided", "selected", "dispatched", "waiting", "stopped")


def campaign_store(storage_root: str, campaign: str) -> Store:
    """The store of one campaign: ``<storage root>/<campaign name>``."""
    return Store(f"{str(storage_root).rstrip('/')}/{campaign}")


def now_iso() -> str:
    """Now, in UTC, as the ISO 8601 string the state and ledgers record."""
    return dt.datetime.now(dt.UTC).isoformat()


def read_state(store: Store) -> dict[str, Any]:
    """The campaign state; a new campaign starts before cycle 0."""
    return store.read_json(
        "state.json",
        {"cycle": -1, "stage": "new", "history": [], "rechecks": 0, "stopped": False},
    )


def write_state(store: Store, state: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Replace ``state.json`` atomically with ``state`` updated by ``changes``; return it."""
    new = {**state, **changes, "updated_at": now_iso()}
    store.write_json("state.json", new)
    return new


def checkpoint(store: Store, cycle: int, stage: str) -> Any:
    """The checkpoint a stage of ``cycle`` left, or None."""
    return store.read_json(f"cycles/{cycle:04d}/{stage}.json")


def save_checkpoint(store: Store, cycle: int, stage: str, value: Any) -> Any:
    """Record a stage's result for ``cycle`` (atomic); return it."""
    store.write_json(f"cycles/{cycle:04d}/{stage}.json", value)
    return value
