"""The campaign's position as a typed model: which cycle is open and the last stage it reached.

``state.json`` is this model as JSON. Older files (a plain dict, missing fields, or the
stages of earlier releases) still load: unknown keys are kept, missing ones take their
defaults. Reading and writing it is :mod:`storage.campaign`'s job; this module is pure.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CampaignState", "Stage", "now_iso"]


def now_iso() -> str:
    """Now, in UTC, as the ISO 8601 string the state and the ledgers record."""
    return dt.datetime.now(dt.UTC).isoformat()


class Stage(StrEnum):
    """Where a cycle stands, in the order a cycle passes through them.

    ``new`` — nothing done; ``started`` — the cycle is open (its batch is in);
    ``trained`` — the model is fit and logged; ``decided`` — the stopping rules ran;
    ``selected`` — the next batch is chosen; ``waiting`` — it is out with annotators;
    ``stopped`` — the campaign ended.
    """

    NEW = "new"
    STARTED = "started"
    TRAINED = "trained"
    DECIDED = "decided"
    SELECTED = "selected"
    WAITING = "waiting"
    STOPPED = "stopped"

    @property
    def before_first_model(self) -> bool:
        """True for the stages of a cold start that has not dispatched yet (with cycle ≤ 0)."""
        return self in (Stage.NEW, Stage.STARTED, Stage.SELECTED)


class CampaignState(BaseModel):
    """``state.json``: the open cycle, its stage, the learning-curve history and the open batch."""

    model_config = ConfigDict(extra="allow", use_enum_values=False, validate_assignment=True)

    cycle: int = -1
    stage: Stage = Stage.NEW
    history: list[dict[str, Any]] = Field(default_factory=list)
    rechecks: int = 0
    stopped: bool = False
    decision: dict[str, Any] | None = None
    open_batch: list[str] | None = None
    waiting_since: str | None = None
    next_run: dict[str, Any] | None = None
    project_id: int | None = None
    review_queue: int = 0
    updated_at: str | None = None

    @property
    def cold_start(self) -> bool:
        """True while the first batch has not gone out: bootstrap's work."""
        return self.cycle <= 0 and self.stage.before_first_model

    def moved(self, **changes: Any) -> CampaignState:
        """A copy with ``changes`` applied and ``updated_at`` set to now (validated)."""
        data = {**self.model_dump(mode="json"), **changes, "updated_at": now_iso()}
        return CampaignState.model_validate(data)

    def history_before(self, cycle: int) -> list[dict[str, Any]]:
        """The learning-curve rows of the cycles before ``cycle``."""
        return [h for h in self.history if h["cycle"] < cycle]
