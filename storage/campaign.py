"""One campaign's durable records: its state, per-cycle checkpoints and ledgers, each key named here once.

Under ``<storage root>/<campaign name>``:

- ``state.json`` — :class:`loopwise.state.CampaignState`, replaced atomically;
- ``cycles/<n>/<stage>.json`` — what each stage of cycle ``n`` produced (a checkpoint:
  a re-run finds it and repeats nothing);
- the ledgers of a Label Studio project (append-only, see :class:`Ledgers`);
- ``stop_set.json``, ``reports/``, ``snapshots/``, ``quarantine/`` (see :class:`Store`).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from loopwise.state import CampaignState, Stage
from storage.store import Store

__all__ = [
    "LEASES",
    "STATE",
    "STOP_SET",
    "CampaignBusy",
    "Lease",
    "Ledgers",
    "acquire_lease",
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

LedgerName = Literal["annotations", "labels", "dispatch", "closed", "review", "edits"]


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


#: The natural id of a ledger record (None: not keyed, e.g. a dispatch intent, which is
#: logged at every attempt).
_NATURAL_IDS: Mapping[str, Callable[[Mapping[str, Any]], Any]] = {
    "annotations": lambda r: (r.get("annotation_id"), r.get("updated_at")),
    # A correction is a later version of the item's label (``supersedes`` the previous one).
    "labels": lambda r: (r.get("item_id"), r.get("version") or 1),
    "dispatch": lambda r: ("sent", r.get("item_id")) if r.get("event") == "sent" else None,
    "closed": lambda r: (r.get("item_id"), r.get("cycle")),
    "review": lambda r: (r.get("item_id"), r.get("cycle"), r.get("overlap")),
    "edits": lambda r: (r.get("item_id"), r.get("kind"), r.get("digest")),
}


class Ledgers:
    """The append-only ledgers of one Label Studio project, read from the store at most once.

    - ``annotations`` — every annotation version ever collected, with its status;
    - ``labels`` — a record per accepted item, with its provenance; a later record of the
      item (``version`` 2, 3, …, with ``supersedes`` and ``reason``) corrects it: an
      expert's answer, or the consensus of more answers. Nothing is ever rewritten;
      :meth:`current_labels` is what training reads;
    - ``dispatch`` — ``intent`` before an import, ``sent`` (item → task id) after it;
    - ``closed`` — items still unresolved when their batch was closed;
    - ``review`` — items sent back for another annotation, with the reason;
    - ``edits`` — items sent to annotators that a pool edit removed or changed, each once.

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
        "edits": "edits/{p}.jsonl",
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
        """Append the records whose natural id the ledger does not hold yet (durable before
        returning); the number appended. A replay of an append writes nothing twice."""
        # As a reader would see them: JSON round-trip, the store's own encoding.
        rows = [json.loads(json.dumps(r, sort_keys=True, default=str)) for r in records]
        natural = _NATURAL_IDS[name]
        seen = {natural(r) for r in self.read(name)} - {None}
        fresh = []
        for r in rows:
            key = natural(r)
            if key is None or key not in seen:
                fresh.append(r)
                seen.add(key)
        n = self.store.append_jsonl(self.key(name), fresh)
        self._cache[name].extend(fresh)
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

    def current_labels(self) -> dict[str, dict[str, Any]]:
        """Item → its latest label record (the highest ``version``; corrections supersede)."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.read("labels"):
            held = out.get(r["item_id"])
            if held is None or (r.get("version") or 1) > (held.get("version") or 1):
                out[r["item_id"]] = r
        return out

    def corrections(self) -> list[dict[str, Any]]:
        """Every label record that superseded an earlier one, in append order."""
        return [r for r in self.read("labels") if r.get("supersedes") is not None]

    def dispatched_ids(self) -> list[str]:
        """Every item ever sent to the project, in dispatch order."""
        return [r["item_id"] for r in self.read("dispatch") if r.get("event") == "sent"]


# ---------------------------------------------------------------- one run per campaign

LEASES = "lease"


class CampaignBusy(RuntimeError):
    """Another run holds the campaign's lease; ``holder`` is its lease record."""

    def __init__(self, holder: Mapping[str, Any]) -> None:
        self.holder = dict(holder)
        super().__init__(
            f"held by {holder.get('holder')} since {holder.get('acquired_at')} "
            f"(lease until {holder.get('expires_at')})"
        )


def _lease_key(seq: int) -> str:
    return f"{LEASES}/{seq:012d}.json"


def _lease_active(record: Mapping[str, Any] | None, now: dt.datetime) -> bool:
    return bool(
        record
        and not record.get("released")
        and dt.datetime.fromisoformat(record["expires_at"]) > now
    )


@dataclass
class Lease:
    """The campaign's lease, held by one run: ``lease/<seq>.json``, created atomically.

    A run takes the next number with an atomic create (a hard link on a local disk,
    ``If-None-Match`` on S3), so two runs can never both hold it. A lease expires
    ``ttl_seconds`` after its last renewal: the lease of a run that died lapses and the
    next run takes over. Only its holder ever rewrites a lease (to renew or release it).
    """

    store: Store
    seq: int
    holder: str
    ttl_seconds: float
    acquired_at: str
    nested: bool = False  # the holder had it already (a subflow): the outer run releases it
    _renewed: float = field(default_factory=time.monotonic, repr=False)

    def _record(self, *, released: bool = False) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        until = now if released else now + dt.timedelta(seconds=self.ttl_seconds)
        return {
            "holder": self.holder,
            "acquired_at": self.acquired_at,
            "renewed_at": now.isoformat(),
            "expires_at": until.isoformat(),
            "released": released,
        }

    def renew(self) -> None:
        """Push the expiry ``ttl_seconds`` from now; an error if another run took over."""
        if self.store.exists(_lease_key(self.seq + 1)):
            raise CampaignBusy(self.store.read_json(_lease_key(self.seq + 1)) or {})
        self.store.write_json(_lease_key(self.seq), self._record())
        self._renewed = time.monotonic()

    def renew_if_due(self) -> None:
        """Renew once a third of the lease has passed (not on every state change)."""
        if time.monotonic() - self._renewed > self.ttl_seconds / 3:
            self.renew()

    def release(self) -> None:
        """Give the campaign up (a later run takes the next lease at once)."""
        if not self.nested and not self.store.exists(_lease_key(self.seq + 1)):
            self.store.write_json(_lease_key(self.seq), self._record(released=True))


def acquire_lease(store: Store, holder: str, ttl_seconds: float, *, attempts: int = 5) -> Lease:
    """Take the campaign's lease for ``holder``, or raise :class:`CampaignBusy` naming the
    run that holds it. Re-entrant: a holder that already has the lease gets it renewed."""
    if ttl_seconds <= 0:
        raise ValueError(f"ttl_seconds must be > 0, got {ttl_seconds}")
    current: dict[str, Any] | None = None
    for _ in range(attempts):
        seqs = [int(k.rsplit("/", 1)[-1].split(".")[0]) for k in store.list(LEASES)]
        seq = max(seqs, default=0)
        current = store.read_json(_lease_key(seq)) if seq else None
        if _lease_active(current, dt.datetime.now(dt.UTC)):
            if current["holder"] != holder:
                raise CampaignBusy(current)
            lease = Lease(store, seq, holder, ttl_seconds, current["acquired_at"], nested=True)
            lease.renew()
            return lease
        lease = Lease(store, seq + 1, holder, ttl_seconds, dt.datetime.now(dt.UTC).isoformat())
        if store.create_json(_lease_key(seq + 1), lease._record()):
            return lease
    raise CampaignBusy(current or {"holder": "another run (the lease kept changing hands)"})
