"""The inference log: segments written with group commit, read incrementally with a cursor.

Layout in a :class:`storage.store.Store` (a local folder or ``s3://``)::

    <prefix>/<writer_id>/<seq:06d>.jsonl     one segment, appended to with Store.append_jsonl
    <prefix>/<writer_id>/closed.json         written by LogWriter.close(): no more segments

``prefix`` defaults to ``stream/log``; ``writer_id`` is ``<hostname>-<pid>-<8 hex>``, new
for every process, so two processes never append to one segment. A writer rolls to the
next segment after ``segment_records`` records, and after a failed append (whatever
bytes a failed local append left behind stay the last line of a segment nobody appends
to again). Segments are never rewritten. A segment is *sealed* once its writer has
rolled past it (a higher ``seq`` exists in the writer's folder) or has closed: it can
no longer grow.

:class:`LogWriter` does group commit: ``write()`` enqueues records and blocks until a
background thread has appended them, together with whatever else arrived within
``commit_interval``, in one ``Store.append_jsonl`` call (local: one fsync'd append;
S3: one new object); if that append fails, every ``write()`` of the group raises.

:func:`read_new` reads what is new since a cursor, from our own segments in a Store or
from a team's own folder / ``s3://`` prefix of ``*.jsonl``, ``*.jsonl.gz`` and
``*.parquet`` files. The cursor is a JSON-safe dict (:class:`LogCursor`)::

    {"segments": {"<name>": {"records": 1200, "offset": 389120, "sealed": true}, ...},
     "closed": ["<writer_id>", ...]}

``<name>`` is the segment's path relative to the source (``<writer_id>/<seq>.jsonl``,
or the file's path inside the team's folder). Per segment: ``records`` -- records
consumed (the position of the next one); ``offset`` -- JSONL: the byte just after the
last consumed line (the next read starts there); ``size`` -- gzip/Parquet: the file's
size when every record in it was consumed (unchanged size: nothing to read);
``sealed`` -- our own segment, sealed and consumed to its end: never read or listed
again. ``closed``: writers that closed and whose segments are all sealed and consumed
(on S3, their folders are not even listed). ``{}`` is the empty cursor.

Cost of a read: local -- one directory walk, one ``stat`` per segment not sealed, and
the new bytes of the segments that grew; S3 -- one LIST of the writer folders, one
LIST per writer not closed (starting after its sealed segments), and one ranged GET
per new object. A last line without its newline (a write in progress, or a crash
mid-append) is not consumed while the segment can grow, and is skipped (with a
warning, not counted) once it is sealed. The reader does not validate records
(:func:`loopwise.inference_log.check_records` does); a line that is not JSON is
returned as its text, so that the validation quarantines it instead of stopping the
stream.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from storage.store import StorageError, Store, _s3_client, _s3_errors, _split_s3

__all__ = [
    "DEFAULT_PREFIX",
    "FEEDBACK_PREFIX",
    "LogCursor",
    "LogWriter",
    "NewRecords",
    "SegmentPosition",
    "new_writer_id",
    "read_new",
]

DEFAULT_PREFIX = "stream/log"
FEEDBACK_PREFIX = "stream/feedback"  # the gateway's feedback log, in the same layout
CLOSED = "closed.json"  # the marker LogWriter.close() leaves in its folder
_SEGMENT_RE = re.compile(r"^(?P<seq>\d{6,})\.jsonl$")
_OWN_KEY_RE = re.compile(r"^(?P<writer>[^/]+)/(?P<seq>\d{6,})\.jsonl$")
# an object of our own log on S3, relative to its writer folder: a part of a segment
_OWN_PART_RE = re.compile(r"^(?P<segment>\d{6,}\.jsonl)(\.d/\d{12}\.jsonl)?$")
_WRITER_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_EXTERNAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
_PARALLEL_GETS = 16
log = logging.getLogger(__name__)


def new_writer_id() -> str:
    """``<hostname>-<pid>-<8 hex random>``: a writer id no other process uses."""
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname()).strip(".-")[:60] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------ the writer


class _Request:
    """One ``write()`` call waiting for its group to be appended."""

    __slots__ = ("done", "error", "records")

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.done = threading.Event()
        self.error: BaseException | None = None


class LogWriter:
    """Append inference-log records to segments of a Store, with group commit.

    Parameters
    ----------
    store : Store
        Where the log lives (local folder or ``s3://``).
    prefix : str, default "stream/log"
        The log's folder inside the store.
    writer_id : str or None
        The folder of this writer's segments; default :func:`new_writer_id`. Reusing an
        id continues after its last segment (a new segment, never an old one).
    commit_interval : float, default 0.005
        Seconds the commit thread waits after the first record of a group for others
        to join it. 0 commits whatever is queued as soon as the thread is free.
    segment_records : int, default 10_000
        Records after which the writer rolls to a new segment. A group never spans
        two segments; one ``write()`` larger than the room left fills a segment alone.

    ``write()`` is thread-safe and blocks until its records are durable; ``close()``
    (or leaving the ``with`` block) commits what is queued and stops the thread.
    """

    def __init__(
        self,
        store: Store,
        prefix: str = DEFAULT_PREFIX,
        writer_id: str | None = None,
        commit_interval: float = 0.005,
        segment_records: int = 10_000,
    ) -> None:
        if not isinstance(store, Store):
            raise TypeError(f"store must be a storage.store.Store, got {type(store).__name__}")
        if commit_interval < 0:
            raise ValueError(f"commit_interval must be >= 0 seconds, got {commit_interval}")
        if segment_records < 1:
            raise ValueError(f"segment_records must be >= 1, got {segment_records}")
        writer_id = new_writer_id() if writer_id is None else writer_id
        if not _WRITER_ID_RE.match(writer_id):
            raise ValueError(f"writer_id must match [A-Za-z0-9._-]{{1,200}}, got {writer_id!r}")
        self.store = store
        self.prefix = prefix.strip("/")
        self.writer_id = writer_id
        self.commit_interval = float(commit_interval)
        self.segment_records = int(segment_records)
        self._folder = f"{self.prefix}/{writer_id}" if self.prefix else writer_id
        self._seq = self._first_seq()
        self._in_segment = 0
        self._pending: list[_Request] = []
        self._cond = threading.Condition()
        self._closing = False
        self._closed = False
        self._stats = {"records": 0, "commits": 0, "failures": 0, "segments": 0}
        self._thread = threading.Thread(
            target=self._run, name=f"loopwise-log-{writer_id}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"LogWriter({self.store!r}, {self._folder!r})"

    def _first_seq(self) -> int:
        names = [key.rsplit("/", 1)[-1] for key in self.store.list(self._folder)]
        if CLOSED in names:  # readers stop looking at a closed writer's folder
            raise ValueError(
                f"writer_id {self.writer_id!r} was closed in {self.store.uri(self._folder)}; "
                "use a new id"
            )
        seqs = [int(m["seq"]) for n in names if (m := _SEGMENT_RE.match(n))]
        return max(seqs) + 1 if seqs else 0

    @property
    def segment(self) -> str:
        """The store key of the segment the next group goes to."""
        return f"{self._folder}/{self._seq:06d}.jsonl"

    @property
    def stats(self) -> dict[str, int]:
        """Records appended, commits (appends) made, failed commits, segments rolled."""
        with self._cond:
            return dict(self._stats)

    # -- the public side

    def write(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Append ``records`` durably (with whatever else is queued); the number written.

        Blocks until the group holding them is appended. ``writer`` is set to this
        writer's id where it is missing or null. Raises :class:`StorageError` if the
        append failed (then none of them may be acknowledged), RuntimeError once closed.
        """
        if isinstance(records, Mapping) or not isinstance(records, Sequence):
            raise TypeError(f"records must be a list of dicts, got {type(records).__name__}")
        batch = []
        for i, r in enumerate(records):
            if not isinstance(r, Mapping):
                raise TypeError(f"records[{i}] is a {type(r).__name__}, not a dict")
            rec = dict(r)
            if rec.get("writer") is None:
                rec["writer"] = self.writer_id
            batch.append(rec)
        if not batch:
            return 0
        req = _Request(batch)
        with self._cond:
            if self._closing:
                raise RuntimeError(f"{self!r} is closed")
            self._pending.append(req)
            self._cond.notify_all()
        req.done.wait()
        if req.error is not None:
            raise StorageError(
                f"inference log {self.store.uri(self._folder)}: append failed, "
                f"{len(batch)} records not written: {req.error}"
            ) from req.error
        return len(batch)

    def close(self) -> None:
        """Commit what is queued, stop the commit thread, mark the writer closed."""
        with self._cond:
            if self._closing:
                already = True
            else:
                already = False
                self._closing = True
                self._cond.notify_all()
        self._thread.join()
        if already or self._closed:
            return
        self._closed = True
        stats = self.stats
        if not stats["records"] and not stats["failures"]:
            return  # wrote nothing: leave no folder behind
        try:  # only a shortcut for readers: a failure here loses nothing
            self.store.create_json(
                f"{self._folder}/{CLOSED}",
                {"writer": self.writer_id, "last_segment": self.segment, **stats},
            )
        except Exception as err:
            log.warning("inference log %s: closed marker not written: %s", self._folder, err)

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the commit thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return  # closing, nothing left
                deadline = time.monotonic() + self.commit_interval
                while not self._closing and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                group = self._take_group()
            self._commit(group)

    def _take_group(self) -> list[_Request]:
        """Whole requests, in arrival order, that fit in the current segment (at least one)."""
        room = self.segment_records - self._in_segment
        if self._pending and len(self._pending[0].records) > room and self._in_segment:
            self._roll()  # a write larger than the room left starts a segment of its own
            room = self.segment_records
        group, n = [], 0
        while self._pending and (not group or n + len(self._pending[0].records) <= room):
            req = self._pending.pop(0)
            group.append(req)
            n += len(req.records)
        return group

    def _roll(self) -> None:
        self._seq += 1
        self._in_segment = 0
        self._stats["segments"] += 1

    def _commit(self, group: list[_Request]) -> None:
        records = [r for req in group for r in req.records]
        error: BaseException | None = None
        try:
            self.store.append_jsonl(self.segment, records, compact=True)
        except BaseException as err:  # handed to every waiter of the group
            error = err
            log.warning(
                "inference log %s: append of %d records failed: %s", self.segment, len(records), err
            )
        with self._cond:
            if error is None:
                self._stats["records"] += len(records)
                self._stats["commits"] += 1
                self._in_segment += len(records)
            else:
                self._stats["failures"] += 1
            if error is not None or self._in_segment >= self.segment_records:
                self._roll()
        for req in group:
            req.error = error
            req.done.set()


# ------------------------------------------------------------------ the cursor


class SegmentPosition(TypedDict, total=False):
    """How far the reader got in one segment (see the module docstring)."""

    records: int
    offset: int
    size: int
    sealed: bool


class LogCursor(TypedDict, total=False):
    """Where :func:`read_new` stopped: per segment, and the closed writers read to the end."""

    segments: dict[str, SegmentPosition]
    closed: list[str]


@dataclass(frozen=True)
class NewRecords:
    """What :func:`read_new` found.

    ``records``: (segment name, position in the segment, raw record) in order --
    segments sorted by name, positions ascending; a raw record is the parsed JSON
    value (a dict, unless the line was not one) or, for a line that is not JSON, its
    text. ``cursor``: the cursor just after them. ``fetched``: the segments whose bytes
    were read in this call (what it cost).
    """

    records: list[tuple[str, int, Any]]
    cursor: LogCursor
    fetched: tuple[str, ...] = field(default=())


@dataclass
class _Segment:
    """One segment or file as listed: its name, size, kind and how to read its bytes."""

    name: str
    size: int
    kind: str  # "jsonl", "gz" or "parquet"
    read: Callable[[int, int | None], bytes]  # (offset, lines wanted or None) -> bytes
    sealed: bool = False
    writer: str | None = None


def _parse_cursor(cursor: Mapping[str, Any] | None) -> tuple[dict[str, dict], set[str]]:
    if not cursor:
        return {}, set()
    if not isinstance(cursor, Mapping) or not isinstance(cursor.get("segments", {}), Mapping):
        raise ValueError(
            "cursor must be {} or {'segments': {name: {'records': ..., ...}}, 'closed': [...]}, "
            f"got {str(cursor)[:200]}"
        )
    segments = {str(k): dict(v) for k, v in cursor.get("segments", {}).items()}
    for name, pos in segments.items():
        if not isinstance(pos.get("records", 0), int) or pos.get("records", 0) < 0:
            raise ValueError(f"cursor segment {name!r}: 'records' is not a count: {pos!r}")
    return segments, set(cursor.get("closed", []))


# ------------------------------------------------------------------ listing: our own log


def _own_local(store: Store, prefix: str, positions: dict, closed: set[str]) -> list[_Segment]:
    base = f"{prefix}/" if prefix else ""
    by_writer: dict[str, list[str]] = {}
    closing = set()
    for key in store.list(prefix):
        rel = key[len(base) :]
        if (m := _OWN_KEY_RE.match(rel)) and m["writer"] not in closed:
            by_writer.setdefault(m["writer"], []).append(rel)
        elif rel.endswith(f"/{CLOSED}"):
            closing.add(rel.split("/", 1)[0])
    segments = [
        _Segment(f"{w}/", 0, "closed", _nothing, sealed=True, writer=w) for w in closing - closed
    ]
    for writer, names in by_writer.items():
        names.sort(key=lambda n: int(_OWN_KEY_RE.match(n)["seq"]))
        for i, name in enumerate(names):
            if positions.get(name, {}).get("sealed"):
                continue
            path = store.path(base + name)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            sealed = i < len(names) - 1 or writer in closing
            segments.append(
                _Segment(name, size, "jsonl", _local_reader(path), sealed=sealed, writer=writer)
            )
    return segments


def _own_s3(store: Store, prefix: str, positions: dict, closed: set[str]) -> list[_Segment]:
    backend = store._backend
    client = backend.client
    root = backend.obj(prefix) + "/" if prefix else backend.prefix
    writers = []
    with _s3_errors(f"s3://{backend.bucket}/{root}"):
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=backend.bucket, Prefix=root, Delimiter="/"
        ):
            for p in page.get("CommonPrefixes", []):
                writer = p["Prefix"][len(root) :].rstrip("/")
                if writer not in closed:
                    writers.append(writer)

    def one_writer(writer: str) -> list[_Segment]:
        folder = f"{root}{writer}/"
        done = [n for n, p in positions.items() if p.get("sealed") and n.startswith(writer + "/")]
        after = f"{root}{max(done)}.d/~" if done else None  # past every part of those
        parts: dict[str, list[tuple[str, int]]] = {}
        is_closed = False
        kwargs: dict[str, Any] = {"Bucket": backend.bucket, "Prefix": folder}
        if after:
            kwargs["StartAfter"] = after
        with _s3_errors(f"s3://{backend.bucket}/{folder}"):
            for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
                for item in page.get("Contents", []):
                    rel = item["Key"][len(folder) :]
                    if rel == CLOSED:
                        is_closed = True
                    elif m := _OWN_PART_RE.match(rel):
                        parts.setdefault(m["segment"], []).append((item["Key"], item["Size"]))
        names = sorted(parts, key=lambda n: int(n.split(".", 1)[0]))
        out = []
        for i, seg in enumerate(names):
            objs = sorted(parts[seg])  # the plain object (if any) sorts before its .d/ parts
            out.append(
                _Segment(
                    f"{writer}/{seg}",
                    sum(size for _, size in objs),
                    "jsonl",
                    _s3_parts_reader(client, backend.bucket, objs),
                    sealed=i < len(names) - 1 or is_closed,
                    writer=writer,
                )
            )
        if is_closed:
            out.append(_Segment(f"{writer}/", 0, "closed", _nothing, sealed=True, writer=writer))
        return out

    if len(writers) <= 1:
        lists = [one_writer(w) for w in writers]
    else:
        with ThreadPoolExecutor(max_workers=min(_PARALLEL_GETS, len(writers))) as pool:
            lists = list(pool.map(one_writer, writers))
    return [s for group in lists for s in group]


# ------------------------------------------------------------------ listing: a team's files


def _kind_of(name: str) -> str | None:
    low = name.lower()
    if low.endswith(".jsonl"):
        return "jsonl"
    if low.endswith(".jsonl.gz"):
        return "gz"
    if low.endswith(".parquet"):
        return "parquet"
    return None


def _external_local(folder: str) -> list[_Segment]:
    base = Path(folder)
    if not base.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (the inference log to read)")
    out = []
    for path in base.rglob("*"):
        rel = path.relative_to(base).as_posix()
        kind = _kind_of(rel)
        if kind and path.is_file() and not any(p.startswith(".") for p in rel.split("/")):
            out.append(_Segment(rel, path.stat().st_size, kind, _local_reader(path)))
    return out


def _external_s3(uri: str) -> list[_Segment]:
    bucket, prefix = _split_s3(uri)
    prefix = prefix.strip("/")
    root = f"{prefix}/" if prefix else ""
    client = _s3_client()
    out = []
    with _s3_errors(uri):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root):
            for item in page.get("Contents", []):
                rel = item["Key"][len(root) :]
                kind = _kind_of(rel)
                if kind and not any(p.startswith(".") for p in rel.split("/")):
                    reader = _s3_parts_reader(client, bucket, [(item["Key"], item["Size"])])
                    out.append(_Segment(rel, item["Size"], kind, reader))
    return out


# ------------------------------------------------------------------ reading bytes


def _nothing(offset: int, want: int | None) -> bytes:
    return b""


def _local_reader(path: Path) -> Callable[[int, int | None], bytes]:
    def read(offset: int, want: int | None) -> bytes:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()

    return read


def _s3_parts_reader(
    client: Any, bucket: str, objs: list[tuple[str, int]]
) -> Callable[[int, int | None], bytes]:
    """The bytes from ``offset`` of objects read as one stream (a segment's parts, or a file)."""

    def get(job: tuple[str, int]) -> bytes:
        key, start = job
        extra = {"Range": f"bytes={start}-"} if start else {}
        with _s3_errors(f"s3://{bucket}/{key}"):
            return client.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()

    def read(offset: int, want: int | None) -> bytes:
        jobs, start = [], 0
        for key, size in objs:
            if start + size > offset:
                jobs.append((key, max(0, offset - start)))
            start += size
        chunks: list[bytes] = []
        lines = 0
        # a small `want` reads a few parts at a time instead of every new one
        step = len(jobs) if want is None else _PARALLEL_GETS
        for i in range(0, len(jobs), max(step, 1)):
            batch = jobs[i : i + step]
            if len(batch) == 1:
                got = [get(batch[0])]
            else:
                with ThreadPoolExecutor(max_workers=min(_PARALLEL_GETS, len(batch))) as pool:
                    got = list(pool.map(get, batch))
            chunks.extend(got)
            lines += sum(c.count(b"\n") for c in got)
            if want is not None and lines >= want:
                break
        return b"".join(chunks)

    return read


def _loads(line: bytes) -> Any:
    """A parsed JSON line, or its text if it is not JSON (for the quarantine)."""
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return line.decode("utf-8", errors="replace").rstrip("\r\n")


def _take_lines(data: bytes, want: int | None, *, final: bool, where: str) -> tuple[list[Any], int]:
    """Records of JSONL bytes (at most ``want``) and how many bytes they used up.

    A last piece without its newline is a record if it is a whole JSON object (only the
    newline is missing); otherwise it is left for later, or skipped if ``final`` (the
    segment cannot grow: a crash cut it).
    """
    out: list[Any] = []
    pos = 0
    while want is None or len(out) < want:
        nl = data.find(b"\n", pos)
        if nl < 0:
            tail = data[pos:]
            if tail.strip():
                rec = _loads(tail)
                if isinstance(rec, dict):
                    out.append(rec)
                    pos = len(data)
                elif final:
                    log.warning("%s: incomplete last line skipped (%d bytes)", where, len(tail))
                    pos = len(data)
            elif final:
                pos = len(data)
            break
        line = data[pos:nl]
        pos = nl + 1
        if line.strip():
            out.append(_loads(line))
    return out, pos


def _gunzip(data: bytes) -> tuple[bytes, bool]:
    """What decompresses of (possibly several, possibly cut) gzip members; whether complete."""
    out, rest = [], data
    while rest:
        d = zlib.decompressobj(wbits=31)
        try:
            out.append(d.decompress(rest))
        except zlib.error:
            return b"".join(out), False
        if not d.eof:
            return b"".join(out), False  # cut short: being written
        rest = d.unused_data
    return b"".join(out), True


def _parquet_rows(data: bytes) -> list[dict[str, Any]]:
    """Rows of a Parquet file as records: maps and JSON strings of inputs/proba as dicts."""
    import datetime as dt

    import pyarrow.parquet as pq

    rows = pq.read_table(io.BytesIO(data)).to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, dt.datetime | dt.date):
                row[key] = value.isoformat()
            elif key in ("inputs", "proba"):
                if isinstance(value, str) and value.lstrip().startswith("{"):
                    row[key] = _loads(value.encode("utf-8"))
                elif isinstance(value, list) and all(
                    isinstance(p, tuple) and len(p) == 2 for p in value
                ):
                    row[key] = dict(value)  # a Parquet map
    return rows


def _read_segment(
    seg: _Segment, pos: dict[str, Any], want: int | None
) -> tuple[list[Any], dict[str, Any]]:
    """New records of one segment from ``pos`` (at most ``want``) and its new position."""
    done = pos.get("records", 0)
    if seg.kind == "jsonl":
        offset = pos.get("offset", 0)
        data = seg.read(offset, want)
        records, used = _take_lines(data, want, final=seg.sealed, where=seg.name)
        new = {"records": done + len(records), "offset": offset + used}
        if seg.sealed and offset + used >= seg.size:
            new["sealed"] = True
        return records, new
    data = seg.read(0, None)
    if seg.kind == "gz":
        text, complete = _gunzip(data)
        every, _ = _take_lines(text, None, final=complete, where=seg.name)
    else:
        try:
            every, complete = _parquet_rows(data), True
        except Exception as err:  # still being written, or damaged
            log.warning(
                "%s: not readable as Parquet yet (%s); tried again next time", seg.name, err
            )
            return [], dict(pos)
    records = every[done:] if want is None else every[done : done + want]
    new = {"records": done + len(records)}
    if complete and done + len(records) >= len(every):
        new["size"] = seg.size
    return records, new


def _unchanged(seg: _Segment, pos: Mapping[str, Any]) -> bool:
    """Whether nothing can be new in ``seg`` since ``pos`` (no need to read it)."""
    if pos.get("sealed") or seg.kind == "closed":
        return True
    if seg.kind == "jsonl":
        return pos.get("offset", 0) >= seg.size and not seg.sealed
    return pos.get("size") == seg.size


# ------------------------------------------------------------------ read_new


def read_new(
    source: Store | str | os.PathLike[str],
    cursor: Mapping[str, Any] | None,
    *,
    prefix: str = DEFAULT_PREFIX,
    limit: int | None = None,
) -> NewRecords:
    """The records written since ``cursor``, and the cursor after them.

    Parameters
    ----------
    source : Store, str or path
        A :class:`Store`: our own segments under ``prefix``. A folder or an
        ``s3://bucket/prefix``: a team's own ``*.jsonl``, ``*.jsonl.gz`` and
        ``*.parquet`` files under it (subfolders included, hidden names skipped;
        Parquet rows are records, ``inputs``/``proba`` as maps, structs or JSON text).
    cursor : dict or None
        What an earlier call returned (:class:`LogCursor`), or ``{}`` / None to start.
    prefix : str, default "stream/log"
        The log's folder in a Store source (ignored for a folder or ``s3://``).
    limit : int or None
        At most this many records; the cursor stops just after them.

    Returns
    -------
    NewRecords
        Every record exactly once across calls that chain their cursors.
    """
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    positions, closed = _parse_cursor(cursor)
    if isinstance(source, Store):
        p = prefix.strip("/")
        lister = _own_local if source.is_local else _own_s3
        segments = lister(source, p, positions, closed)
    else:
        src = os.fspath(source)
        segments = _external_s3(src) if src.startswith("s3://") else _external_local(src)
    segments.sort(key=lambda s: s.name)
    out: list[tuple[str, int, Any]] = []
    fetched: list[str] = []
    for seg in segments:
        if limit is not None and len(out) >= limit:
            break
        pos = positions.get(seg.name, {})
        if _unchanged(seg, pos):
            continue
        if seg.sealed and seg.kind == "jsonl" and pos.get("offset", 0) >= seg.size:
            positions[seg.name] = {**pos, "sealed": True}  # read to its end before it sealed
            continue
        want = None if limit is None else limit - len(out)
        records, new = _read_segment(seg, pos, want)
        fetched.append(seg.name)
        start = pos.get("records", 0)
        out.extend((seg.name, start + i, r) for i, r in enumerate(records))
        positions[seg.name] = new
    closed |= _closed_writers(segments, positions)
    new_cursor: LogCursor = {"segments": positions}
    if closed:
        new_cursor["closed"] = sorted(closed)
    return NewRecords(out, new_cursor, tuple(fetched))


def _closed_writers(segments: list[_Segment], positions: dict) -> set[str]:
    """Writers whose closed marker is listed and whose listed segments are all read to the end."""
    marked = {s.writer for s in segments if s.kind == "closed"}
    for seg in segments:
        if seg.writer in marked and seg.kind != "closed":
            if not positions.get(seg.name, {}).get("sealed"):
                marked.discard(seg.writer)
    return {w for w in marked if w is not None}
