"""The prediction gateway: serves the campaign's champion over HTTP, decides inline which
requests to ask people about, and logs every request durably before answering.

``POST /predict`` takes one record (``{"request_id"?, "inputs": {...}}``) or a batch
(``{"records": [...]}``), validates the inputs against the columns the model was trained
on (a 422 names the bad field, ``inputs.x3``), predicts, lets the process's
:class:`~loopwise.stream_policy.StreamPolicy` decide ``query`` / ``control`` / ``skip``,
and appends one inference-log record per input through a group-committing
:class:`~storage.inference_log.LogWriter`: the response is the acknowledgement, so a
request answered 200 is in the log even if the process is killed the next instant.
``POST /feedback`` logs a user's label or rating of a served prediction the same way,
under ``stream/feedback``. ``GET /health`` says what is served and how much was logged.

Replicas share nothing but the store: each process writes its own segments (its writer
id), so several gateways may serve one campaign.
"""
# No ``from __future__ import annotations`` here: FastAPI reads the request models made in
# create_app from the endpoints' annotations, which must therefore be objects, not strings.

import datetime as dt
import logging
import math
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from loopwise.config import CampaignConfig, load_campaign
from loopwise.inference_log import SCHEMA_VERSION, validate_record
from loopwise.stream_policy import StreamPolicy, rate_for_budget
from serving.champion import ChampionWatcher
from serving.inputs import InputSchema
from storage.campaign import campaign_store
from storage.inference_log import DEFAULT_PREFIX as LOG_PREFIX
from storage.inference_log import FEEDBACK_PREFIX, LogWriter, new_writer_id
from storage.store import Store
from tasks.evaluate import model_name
from tasks.stream import BOOST

__all__ = ["FEEDBACK_PREFIX", "LOG_PREFIX", "GatewaySettings", "create_app", "serve"]

log = logging.getLogger("loopwise.serving")

#: A caller's request id: what the inference log accepts.
RequestId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")]


@dataclass(frozen=True)
class GatewaySettings:
    """The gateway's part of the campaign's ``stream:`` settings (defaults: the spec's)."""

    target_rate: float = 0.05
    labels_per_hour: float | None = None
    control_share: float = 0.2
    utility: str = "margin"
    window: int | None = None
    commit_interval_ms: float = 0.0
    reload_seconds: float = 5.0
    drift_boost: float = 3.0
    drift_boost_records: int = 1000
    max_batch: int = 1000
    #: labels_per_hour: the request rate is measured over at least this long before use
    rate_warmup_seconds: float = 30.0

    @classmethod
    def from_config(cls, cfg: CampaignConfig) -> "GatewaySettings":
        """Read ``cfg.stream`` where the campaign has one; the defaults otherwise."""
        stream = cfg.stream
        return cls(
            **{f.name: getattr(stream, f.name) for f in fields(cls) if hasattr(stream, f.name)}
        )


def create_app(
    cfg: CampaignConfig,
    *,
    store: Store | None = None,
    watcher: ChampionWatcher | None = None,
    log_requests: bool = True,
    policy: StreamPolicy | None = None,
    settings: GatewaySettings | None = None,
) -> FastAPI:
    """The gateway of one campaign as a FastAPI app.

    Learns the model's input columns from the campaign's pool and loads the champion now
    (errors name what is missing); the champion is then followed in the background.
    ``log_requests=False`` serves without logging (the bench's baseline only: nothing it
    serves can be labeled). ``store``, ``watcher``, ``policy`` and ``settings`` replace
    the campaign's own (tests, benches).
    """
    gw = _Gateway.start(cfg, store, watcher, log_requests, policy, settings)
    PredictBody, FeedbackBody = _request_models(gw.schema, cfg.labels, gw.settings.max_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        gw.close()

    app = FastAPI(
        title=f"Loopwise gateway: {cfg.name}",
        description="Predictions of the campaign's champion; every request logged before the answer.",
        lifespan=lifespan,
    )
    app.state.gateway = gw

    @app.post("/predict")
    def predict(body: PredictBody) -> dict[str, Any]:
        """Predict one record (``inputs``) or a batch (``records``)."""
        if body.records is None:
            return gw.predict([(body.request_id, body.inputs)])[0]
        return {"records": gw.predict([(r.request_id, r.inputs) for r in body.records])}

    @app.post("/feedback")
    def feedback(body: FeedbackBody) -> dict[str, Any]:
        """A user's label for a served request, or whether its prediction was right."""
        return gw.feedback(body)

    @app.get("/health")
    def health() -> dict[str, Any]:
        """What is served, and how much was logged."""
        return gw.health()

    return app


def serve(campaign_path: str, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the gateway of a campaign file with uvicorn until interrupted."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(load_campaign(campaign_path))
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="info")


# ---------------------------------------------------------------- request models


def _request_models(
    schema: InputSchema, labels: list[str], max_batch: int
) -> tuple[type[BaseModel], type[BaseModel]]:
    """The bodies of /predict and /feedback for this campaign's inputs and labels."""
    Inputs = schema.pydantic_model()
    allowed = frozenset(labels)

    class Record(BaseModel):
        model_config = ConfigDict(extra="forbid")
        request_id: RequestId | None = None
        inputs: Inputs

    class PredictBody(BaseModel):
        model_config = ConfigDict(extra="forbid")
        request_id: RequestId | None = None
        inputs: Inputs | None = None
        records: Annotated[list[Record], Field(min_length=1, max_length=max_batch)] | None = None

        @model_validator(mode="after")
        def _one_or_batch(self) -> "PredictBody":
            if (self.inputs is None) == (self.records is None):
                raise ValueError("give either inputs (one record) or records (a batch)")
            if self.records is not None and self.request_id is not None:
                raise ValueError("a batch takes request_id per record, not at the top level")
            if self.records is not None:
                ids = [r.request_id for r in self.records if r.request_id is not None]
                if len(ids) != len(set(ids)):
                    raise ValueError("request_id repeated within the batch")
            return self

    class FeedbackBody(BaseModel):
        model_config = ConfigDict(extra="forbid")
        request_id: RequestId
        label: str | None = None
        correct: Annotated[bool, Field(strict=True)] | None = None
        user: Annotated[str, Field(min_length=1, max_length=200)] | None = None
        time: AwareDatetime | None = None

        @field_validator("label")
        @classmethod
        def _known(cls, v: str | None) -> str | None:
            if v is not None and v not in allowed:
                shown = ", ".join(labels[:30]) + (", ..." if len(labels) > 30 else "")
                raise ValueError(f"unknown label {v!r}; the campaign's labels are {shown}")
            return v

        @model_validator(mode="after")
        def _label_or_rating(self) -> "FeedbackBody":
            if (self.label is None) == (self.correct is None):
                raise ValueError("give either label (a correction) or correct (a rating)")
            return self

    return PredictBody, FeedbackBody


# ---------------------------------------------------------------- the process's state


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class _Gateway:
    """What one process serves with: the model, the input schema, the policy, the writers."""

    cfg: CampaignConfig
    settings: GatewaySettings
    schema: InputSchema
    watcher: ChampionWatcher
    policy: StreamPolicy
    writer_id: str
    log_writer: LogWriter | None
    feedback_writer: LogWriter
    started: float
    lock: threading.Lock
    n_records: int = 0
    n_logged: int = 0
    n_feedback: int = 0
    n_query: int = 0
    n_control: int = 0
    own_watcher: bool = True
    store: Store | None = None
    boost_seen: Any = None  # the ``since`` of the last drift boost applied (or found at start)
    boosts: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(
        cls,
        cfg: CampaignConfig,
        store: Store | None,
        watcher: ChampionWatcher | None,
        log_requests: bool,
        policy: StreamPolicy | None,
        settings: GatewaySettings | None,
    ) -> "_Gateway":
        from tasks.data import pool_head

        settings = settings or GatewaySettings.from_config(cfg)
        schema = InputSchema.from_pool(cfg, pool_head(cfg))
        own = watcher is None
        if watcher is None:
            watcher = ChampionWatcher(
                cfg,
                reload_seconds=settings.reload_seconds,
                accept=lambda model, _version: schema.mismatch(model),
            )
        else:
            reason = schema.mismatch(watcher.current()[0])
            if reason:
                raise ValueError(
                    f"{watcher.name} v{watcher.current()[1]} cannot be served: {reason}"
                )
        if policy is None:
            policy = StreamPolicy(
                target_rate=settings.target_rate,
                control_share=settings.control_share,
                utility=settings.utility,
                window=settings.window,
                boost=settings.drift_boost,
                boost_records=settings.drift_boost_records,
                random_state=secrets.randbits(31),  # replicas draw their controls independently
            )
        store = store or campaign_store(cfg.storage_root, cfg.name)
        writer_id = new_writer_id()  # host, pid, random: a restart is a new writer
        interval = settings.commit_interval_ms / 1000
        writers = {
            prefix: LogWriter(store, prefix=prefix, writer_id=writer_id, commit_interval=interval)
            for prefix in ((LOG_PREFIX,) if log_requests else ()) + (FEEDBACK_PREFIX,)
        }
        log.info(
            "gateway of %s: writer %s, inputs %s, logging %s",
            cfg.name,
            writer_id,
            list(schema.fields)[:10],
            "on" if log_requests else "OFF",
        )
        return cls(
            cfg,
            settings,
            schema,
            watcher,
            policy,
            writer_id,
            writers.get(LOG_PREFIX),
            writers[FEEDBACK_PREFIX],
            time.monotonic(),
            threading.Lock(),
            own_watcher=own,
            store=store,
        )._follow_boosts()

    def predict(self, batch: list[tuple[str | None, BaseModel]]) -> list[dict[str, Any]]:
        """Predict, decide and log ``(request_id, inputs)`` records; their answers."""
        inputs = [i.model_dump(by_alias=True) for _, i in batch]
        model, version = self.watcher.current()
        proba = np.asarray(model.predict_proba(self.schema.rows(inputs)), dtype=np.float64)
        classes = [str(c) for c in model.classes_]
        with self.lock:
            self._retune(len(batch))
            decisions = self.policy.decide_many(proba)
            self.n_query += sum(d.decision == "query" for d in decisions)
            self.n_control += sum(d.decision == "control" for d in decisions)
        when, name = _now(), model_name(self.cfg)
        records = []
        for (rid, _), row, p, d in zip(batch, inputs, proba, decisions, strict=True):
            records.append(
                {
                    "request_id": rid or uuid.uuid4().hex,
                    "time": when,
                    "model_name": name,
                    "model_version": version,
                    "inputs": row,
                    "proba": dict(zip(classes, map(float, p), strict=True)),
                    "prediction": classes[int(np.argmax(p))],
                    "decision": d.decision,
                    "score": d.score,
                    "threshold": d.threshold,
                    "writer": self.writer_id,
                    "schema": SCHEMA_VERSION,
                }
            )
        if self.log_writer is not None:
            # Each record is valid by construction (inputs through the strict request model,
            # proba from the model, the rest made here); checking one per request catches a
            # systematic fault (a model's odd classes or probabilities) at a 32nd of the
            # cost of checking all, which would double the CPU of a batch.
            validate_record(records[0])
            self._write(self.log_writer, records)
            with self.lock:
                self.n_logged += len(records)
        return [
            {k: r[k] for k in ("request_id", "prediction", "proba", "model_version", "decision")}
            for r in records
        ]

    def feedback(self, body: BaseModel) -> dict[str, Any]:
        """Log one feedback durably; what was logged."""
        record = {
            "request_id": body.request_id,
            "label": body.label,
            "correct": body.correct,
            "user": body.user,
            "time": _utc(body.time) if body.time else _now(),
            "received": _now(),
            "feedback_id": uuid.uuid4().hex,
            "writer": self.writer_id,
            "schema": SCHEMA_VERSION,
        }
        self._write(self.feedback_writer, [record])
        with self.lock:
            self.n_feedback += 1
        return {"request_id": body.request_id, "logged": True}

    def health(self) -> dict[str, Any]:
        """Campaign, model, and the counts so far."""
        _, version = self.watcher.current()
        elapsed = time.monotonic() - self.started
        with self.lock:
            n = self.n_records
            return {
                "status": "ok",
                "campaign": self.cfg.name,
                "model_name": model_name(self.cfg),
                "model_version": version,
                "writer": self.writer_id,
                "logging": self.log_writer is not None,
                "records_served": n,
                "records_logged": self.n_logged,
                "feedback_logged": self.n_feedback,
                "query_rate": self.n_query / n if n else 0.0,
                "boosts": self.boosts,
                "rate_now": float(self.policy.rate_),
                "control_rate": self.n_control / n if n else 0.0,
                "target_rate": float(self.policy.target_rate),
                "records_per_hour": 3600 * n / elapsed if elapsed > 0 else 0.0,
                "uptime_seconds": round(elapsed, 3),
            }

    def _follow_boosts(self) -> "_Gateway":
        """Check ``stream/boost.json`` every ``reload_seconds``: a drift trigger the stream
        flow wrote after this process started raises the labeling rate (``boost_for``) for
        the next ``drift_boost_records`` requests this replica serves. A boost written
        before the start is history, not applied."""
        self.boost_seen = (self._read_boost() or {}).get("since")

        def follow() -> None:
            while not self._stop.wait(self.settings.reload_seconds):
                self.check_boost()

        threading.Thread(target=follow, name="loopwise-boost", daemon=True).start()
        return self

    def _read_boost(self) -> dict[str, Any] | None:
        try:
            return self.store.read_json(BOOST) if self.store is not None else None
        except Exception as exc:  # the store is down: serving goes on at the current rate
            log.warning("cannot read %s: %s: %s", BOOST, type(exc).__name__, exc)
            return None

    def check_boost(self) -> bool:
        """One check of the boost document; whether a new boost was applied."""
        doc = self._read_boost()
        if not doc or doc.get("since") == self.boost_seen:
            return False
        with self.lock:
            self.policy.boost_for(int(doc.get("records") or self.settings.drift_boost_records))
            self.boost_seen = doc.get("since")
            self.boosts += 1
        log.info(
            "drift in window %s: labeling rate boosted %sx", doc.get("window"), doc.get("factor")
        )
        return True

    def close(self) -> None:
        """Flush and close the writers; stop the champion watcher this gateway started."""
        self._stop.set()
        if self.own_watcher:
            self.watcher.stop()
        for writer in (self.log_writer, self.feedback_writer):
            if writer is not None:
                writer.close()

    def _retune(self, n: int) -> None:
        """Count ``n`` more records; with a labels-per-hour budget, aim the policy at the
        rate that spends it at the request rate measured so far (under the lock)."""
        self.n_records += n
        budget = self.settings.labels_per_hour
        elapsed = time.monotonic() - self.started
        if budget is None or elapsed < self.settings.rate_warmup_seconds:
            return
        rate = rate_for_budget(budget, 3600 * self.n_records / elapsed)
        if math.isfinite(rate) and rate != self.policy.target_rate:
            self.policy.target_rate = min(rate, 0.5)

    @staticmethod
    def _write(writer: LogWriter, records: list[Mapping[str, Any]]) -> None:
        """Append durably, or answer 503: a request that was not logged is not acknowledged."""
        try:
            writer.write(records)
        except Exception as exc:
            log.error("cannot log %d record(s): %s: %s", len(records), type(exc).__name__, exc)
            raise HTTPException(503, "the request could not be logged; it was not served") from None


def _utc(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
