"""One campaign's durable records: its state, per-cycle checkpoints and ledgers, each key named here once.

Under ``<storage root>/<campaign name>``:

- ``state.json`` — :class:`loopwise.state.CampaignState`, replaced atomically;
- ``cycles/<n>/<stage>.json`` — what each stage of cycle ``n`` produced (a checkpoint:
  a re-run finds it and repeats nothing);
- the ledgers of a Label Studio project (append-only, see :class:`Ledgers`);
- ``stop_set.json``, ``reports/``, ``snapshots/``, ``quarantine/`` (see :class:`Store`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from loopwise.state import CampaignState, Stage
from storage.store import Store

__all__ = [
    "STATE",
    "STOP_SET",
    "Ledgers",
    "campaign_root",
    "campaign_store",
    "checkpoint",
    "checkpointed",
    "read_state",
    "save_checkpoint",
    "write_state",
]

T = TypeVar("T")
STATE = "state.json"
STOP_SET = "stop_set.json"
REPORT_JSON = "reports/report.json"
REPORT_HTML = "reports/report.html"

LedgerName = Literal["annotations", "labels", "dispatch", "closed", "review"]


def campaign_root(storage_root: str, campaign: str) -> str:
    """``<storage root>/<campaign name>``: a folder or an ``s3://`` prefix."""
    return f"{str(storage_root).rstrip('/')}/{campaign}"


def campaign_store(storage_root: str, campaign: str) -> Store:
    """The store of one campaign."""
    return Store(campaign_root(storage_root, campaign))


# ---------------------------------------------------------------- state and checkpoints


def read_state(store: Store) -> CampaignState:
    """The campaign state; a new campaign starts before cycle 0. Errors name the file."""
    raw = store.read_json(STATE)
    if raw is None:
        return CampaignState()
    try:
        return CampaignState.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ValueError(f"{store.uri(STATE)}: not a campaign state ({problems})") from err


def write_state(store: Store, state: CampaignState, **changes: Any) -> CampaignState:
    """Replace ``state.json`` atomically with ``state`` moved by ``changes``; return the new state."""
    new = state.moved(**changes)
    store.write_json(STATE, new.model_dump(mode="json"))
    return new


def _checkpoint_key(cycle: int, stage: str | Stage) -> str:
    return f"cycles/{cycle:04d}/{Stage(stage).value if isinstance(stage, Stage) else stage}.json"


def checkpoint(store: Store, cycle: int, stage: str | Stage) -> Any:
    """The checkpoint a stage of ``cycle`` left, or None."""
    return store.read_json(_checkpoint_key(cycle, stage))


def save_checkpoint(store: Store, cycle: int, stage: str | Stage, value: T) -> T:
    """Record a stage's result for ``cycle`` (atomic); return it."""
    store.write_json(_checkpoint_key(cycle, stage), value)
    return value


def checkpointed(
    store: Store,
    cycle: int,
    stage: str | Stage,
    compute: Callable[[], T],
    *,
    valid: Callable[[Any], bool] = lambda _: True,
) -> T:
    """The stage's checkpoint if one exists (and ``valid`` accepts it), else ``compute()`` saved.

    The one way a stage's side effect is made re-runnable: a run that died after the
    checkpoint finds it and repeats nothing; one that died before it computes again.
    """
    found = checkpoint(store, cycle, stage)
    if found is not None and valid(found):
        return found
    return save_checkpoint(store, cycle, stage, compute())


# ---------------------------------------------------------------- ledgers


class Ledgers:
    """The append-only ledgers of one Label Studio project, read from the store at most once.

    - ``annotations`` — every annotation version ever collected, with its status;
    - ``labels`` — one record per accepted item, with its provenance;
    - ``dispatch`` — ``intent`` before an import, ``sent`` (item → task id) after it;
    - ``closed`` — items still unresolved when their batch was closed;
    - ``review`` — items sent back for another annotation, with the reason.

    Per-project documents (replaced atomically): ``collect`` (the polling checkpoint)
    and ``quality`` (the latest annotator accuracy estimates).

    An instance caches what it read and extends the cache with what it appends, so one
    run lists each ledger once (on S3 a full listing of its segments).
    """

    _LEDGERS: Mapping[str, str] = {
        "annotations": "annotations/{p}.jsonl",
        "labels": "labels/{p}.jsonl",
        "dispatch": "dispatch/{p}.jsonl",
        "closed": "closed/{p}.jsonl",
        "review": "review/{p}.jsonl",
    }
    _DOCUMENTS: Mapping[str, str] = {"collect": "collect/{p}.json", "quality": "quality/{p}.json"}

    def __init__(self, store: Store, project_id: int) -> None:
        self.store = store
        self.project_id = int(project_id)
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def __repr__(self) -> str:
        return f"Ledgers({self.store!r}, project {self.project_id})"

    def key(self, name: LedgerName) -> str:
        """The store key of a ledger."""
        if name not in self._LEDGERS:
            raise ValueError(f"unknown ledger {name!r}; ledgers: {sorted(self._LEDGERS)}")
        return self._LEDGERS[name].format(p=self.project_id)

    def document_key(self, name: str) -> str:
        """The store key of a per-project document (``collect`` or ``quality``)."""
        if name not in self._DOCUMENTS:
            raise ValueError(f"unknown document {name!r}; documents: {sorted(self._DOCUMENTS)}")
        return self._DOCUMENTS[name].format(p=self.project_id)

    def read(self, name: LedgerName) -> list[dict[str, Any]]:
        """Every record of a ledger in append order (a copy of the list)."""
        if name not in self._cache:
            self._cache[name] = self.store.read_jsonl(self.key(name))
        return list(self._cache[name])

    def append(self, name: LedgerName, records: Iterable[Mapping[str, Any]]) -> int:
        """Append records (durable before returning); the number appended."""
        # As a reader would see them: JSON round-trip, the store's own encoding.
        rows = [json.loads(json.dumps(r, sort_keys=True, default=str)) for r in records]
        n = self.store.append_jsonl(self.key(name), rows)
        if name in self._cache:
            self._cache[name].extend(rows)
        return n

    # -- views the stages ask for

    def annotations(self, statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The latest version of each annotation (optionally only of some statuses)."""
        latest: dict[Any, dict[str, Any]] = {}
        for row in self.read("annotations"):
            latest[row["annotation_id"]] = row
        wanted = None if statuses is None else set(statuses)
        return [r for r in latest.values() if wanted is None or r["status"] in wanted]

    def answers_per_item(self) -> Counter[str]:
        """How many annotations (of any status) each item has."""
        return Counter(r["item_id"] for r in self.annotations())

    def paid_annotations(self) -> int:
        """Annotations that cost money: every submitted one (skips and cancellations are free)."""
        return len(self.annotations(["accepted", "rejected"]))

    def labeled_ids(self) -> set[str]:
        """Items with an accepted label."""
        return {r["item_id"] for r in self.read("labels")}

    def dispatched_ids(self) -> list[str]:
        """Every item ever sent to the project, in dispatch order."""
        return [r["item_id"] for r in self.read("dispatch") if r.get("event") == "sent"]
