"""Durable state under one storage root: append-only JSONL ledgers, atomic JSON, snapshots.

Every write goes through :class:`Store` so that the rules hold everywhere:
ledgers (``annotations/``, ``labels/``, ``dispatch/``, ``quarantine/``) are only
ever appended to, JSON documents (``state.json``, checkpoints) are replaced
atomically, never edited in place, and Parquet snapshots are content-addressed,
written once. Nothing is ever deleted.

``Store(root)`` takes a local folder (default ``.loopwise/store``) or an
``s3://bucket/prefix`` URI; both backends behave the same behind the same methods.

S3 layout (``<p>`` is the root's prefix):

* ``<p>/<key>`` -- JSON documents, raw bytes, snapshots: one object each.
* ``<p>/<key>.d/<seq>.jsonl`` -- a ledger: S3 cannot append, so each
  :meth:`Store.append_jsonl` writes one new segment, ``seq`` a 12-digit
  zero-padded counter. Segments are created with ``If-None-Match: *``, so two
  writers that pick the same number cannot overwrite each other: the loser
  re-lists and takes the next one. Readers concatenate ``<p>/<key>`` (a legacy
  single object, if any) then the segments in name order. This needs a server
  with conditional writes (AWS S3 since 2024, MinIO, moto).

S3 client configuration (created lazily, on first use):

* endpoint: ``LOOPWISE_S3_ENDPOINT_URL``, else boto3's own ``AWS_ENDPOINT_URL_S3`` /
  ``AWS_ENDPOINT_URL``, else AWS;
* ``LOOPWISE_S3_ADDRESSING_STYLE`` (``path``/``virtual``/``auto``, optional; MinIO
  behind a host name usually needs ``path``);
* credentials and region: the standard AWS chain (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``,
  profiles, instance roles). They are never logged or shown in ``repr``;
* transient errors are retried by botocore (``retries`` mode ``standard``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_ROOT", "StorageError", "Store", "open_store"]

DEFAULT_ROOT = Path(".loopwise/store")
ENDPOINT_ENV = "LOOPWISE_S3_ENDPOINT_URL"
ADDRESSING_ENV = "LOOPWISE_S3_ADDRESSING_STYLE"
SEGMENT_SUFFIX = ".d"  # a ledger <key> lives in <key>.d/<seq>.jsonl on S3
_SEGMENT_RE = re.compile(r"^\d{12}\.jsonl$")
_LEDGER_SEGMENT_RE = re.compile(r"^(?P<key>.+)\.d/\d{12}\.jsonl$")
_APPEND_ID = "loopwise-append-id"  # object metadata: which append call wrote a segment
_APPEND_ATTEMPTS = 50
log = logging.getLogger(__name__)


class StorageError(OSError):
    """A storage operation failed; the message names the object or file."""


# ---------------------------------------------------------------- keys and JSON


def _check_key(key: str | os.PathLike[str], *, allow_empty: bool = False) -> str:
    """The normalised '/'-separated form of a relative key; ValueError for anything else."""
    raw = os.fspath(key)
    if not isinstance(raw, str):
        raise ValueError(f"storage key must be a string, got {key!r}")
    p = PurePosixPath(raw)
    if (
        p.is_absolute()
        or raw.startswith("\\")
        or ".." in p.parts
        or "\x00" in raw
        or (not p.parts and not allow_empty)
        or raw.startswith("s3://")
    ):
        raise ValueError(f"storage key must be a relative path inside the root, got {raw!r}")
    return "/".join(p.parts)


def _parse_jsonl(text: str, where: str, *, tolerate_cut_tail: bool) -> list[dict[str, Any]]:
    """Records of one JSONL text; a cut last line is skipped if ``tolerate_cut_tail``."""
    out: list[dict[str, Any]] = []
    lines = text.splitlines(keepends=True)
    for n, line in enumerate(lines, start=1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            if tolerate_cut_tail and n == len(lines) and not line.endswith("\n"):
                log.warning("%s line %d: incomplete last line ignored (%s)", where, n, err)
                continue
            raise ValueError(f"{where} line {n}: not valid JSON ({err})") from err
    return out


def _source_name(source: str) -> str:
    """A ledger-safe name for a data source: its file name without data extensions."""
    name = re.split(r"[/\\]", source.rstrip("/\\"))[-1]
    while True:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and ext.lower() in {"csv", "tsv", "parquet", "pq", "gz", "json", "jsonl"}:
            name = stem
        else:
            break
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return name or "source"


# ---------------------------------------------------------------- S3 plumbing


def _split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix``)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, rest = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"s3 URI without a bucket: {uri!r}")
    return bucket, rest


def _s3_client(*, connect_timeout: float = 10, read_timeout: float = 60, attempts: int = 8):
    """A new boto3 S3 client configured from the environment (see the module docstring)."""
    import boto3
    from botocore.config import Config

    s3_opts = {}
    if style := os.environ.get(ADDRESSING_ENV):
        s3_opts["addressing_style"] = style
    config = Config(
        retries={"mode": "standard", "max_attempts": attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        s3=s3_opts or None,
    )
    # None lets botocore apply AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / the config file itself.
    endpoint = os.environ.get(ENDPOINT_ENV) or None
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def _error_code(err: Exception) -> tuple[str, int]:
    resp = getattr(err, "response", None) or {}
    code = str(resp.get("Error", {}).get("Code", ""))
    status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _is_missing(err: Exception) -> bool:
    code, status = _error_code(err)
    return code in {"NoSuchKey", "404", "NotFound", "NoSuchBucket"} or status == 404


def _is_write_conflict(err: Exception) -> bool:
    """The object already exists (412), or a concurrent conditional write is in flight (409)."""
    code, status = _error_code(err)
    return code in {"PreconditionFailed", "ConditionalRequestConflict"} or status in {409, 412}


@contextmanager
def _s3_errors(uri: str) -> Iterator[None]:
    """Turn botocore errors into FileNotFoundError / StorageError naming ``uri``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as err:
        code, status = _error_code(err)
        if _is_missing(err):
            raise FileNotFoundError(f"{uri}: no such object ({code or status})") from err
        raise StorageError(f"{uri}: S3 error {code or status}: {err}") from err
    except BotoCoreError as err:
        raise StorageError(f"{uri}: S3 request failed: {err}") from err


# ---------------------------------------------------------------- backends


class _LocalBackend:
    """Files under a folder; ledgers are single files appended to with fsync."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def uri(self, key: str) -> str:
        return str(self.path(key)) if key else str(self.root)

    def append(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def read_ledger(self, key: str) -> list[dict[str, Any]]:
        path = self.path(key)
        if not path.is_file():
            return []
        text = path.read_text(encoding="utf-8")
        return _parse_jsonl(text, str(path), tolerate_cut_tail=True)

    def write(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        path = self.path(key)
        if if_absent and path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if not if_absent:
                os.replace(tmp, path)
                return True
            try:  # atomic create: a hard link fails if the name exists (two writers: one wins)
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                Path(tmp).unlink(missing_ok=True)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    def read(self, key: str) -> bytes:
        path = self.path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{path}: no such file") from err
        except IsADirectoryError as err:
            raise FileNotFoundError(f"{path}: is a folder, not a stored object") from err

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self.path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        keys = []
        for p in base.rglob("*"):
            if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".tmp")):
                keys.append(p.relative_to(self.root).as_posix())
        return sorted(keys)


class _S3Backend:
    """Objects under ``s3://bucket/prefix``; ledgers are folders of write-once segments."""

    def __init__(self, uri: str) -> None:
        self.bucket, prefix = _split_s3(uri)
        prefix = _check_key(prefix.strip("/"), allow_empty=True)  # no '..' in the root either
        self.prefix = f"{prefix}/" if prefix else ""
        self._client = None
        self._lock = threading.Lock()
        self._seq_hint: dict[str, int] = {}  # segment folder -> last sequence number seen

    def __getstate__(self) -> dict[str, Any]:  # picklable: no client, no lock
        return {"bucket": self.bucket, "prefix": self.prefix}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(f"s3://{state['bucket']}/{state['prefix']}")

    @property
    def client(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = _s3_client()
        return self._client

    def obj(self, key: str) -> str:
        return self.prefix + key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.obj(key)}"

    # -- ledgers

    def _segments(self, seg_prefix: str, start_after: str | None = None) -> list[str]:
        """Object names of the segments under ``seg_prefix``, in order."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": seg_prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        names = []
        with _s3_errors(f"s3://{self.bucket}/{seg_prefix}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
                for item in page.get("Contents", []):
                    name = item["Key"][len(seg_prefix) :]
                    if _SEGMENT_RE.match(name):
                        names.append(item["Key"])
                    else:
                        log.warning(
                            "s3://%s/%s: not a ledger segment, ignored", self.bucket, item["Key"]
                        )
        return sorted(names)

    def _next_seq(self, seg_prefix: str) -> int:
        hint = self._seq_hint.get(seg_prefix)
        after = f"{seg_prefix}{hint:012d}.jsonl" if hint is not None else None
        names = self._segments(seg_prefix, after)
        if names:
            return int(names[-1][len(seg_prefix) : -len(".jsonl")]) + 1
        return 0 if hint is None else hint + 1

    def append(self, key: str, data: bytes) -> None:
        from botocore.exceptions import ClientError

        seg_prefix = self.obj(key) + SEGMENT_SUFFIX + "/"
        append_id = uuid.uuid4().hex
        for attempt in range(_APPEND_ATTEMPTS):
            seq = self._next_seq(seg_prefix)
            name = f"{seg_prefix}{seq:012d}.jsonl"
            uri = f"s3://{self.bucket}/{name}"
            with _s3_errors(uri):
                try:
                    self.client.put_object(
                        Bucket=self.bucket,
                        Key=name,
                        Body=data,
                        IfNoneMatch="*",
                        ContentType="application/x-ndjson",
                        Metadata={_APPEND_ID: append_id},
                    )
                except ClientError as err:
                    if not _is_write_conflict(err):
                        raise
                    # 412: taken -- by another writer, or by this very call when botocore
                    # retried a put whose first response was lost; only the latter is done.
                    # 409: another write of that name is in flight and may still fail, so
                    # the number is not known to be used: try it again rather than skip it
                    # (a later fill of a skipped number would insert mid-ledger).
                    code, status = _error_code(err)
                    if status != 409 and code != "ConditionalRequestConflict":
                        self._seq_hint[seg_prefix] = seq  # it exists
                        if self._written_by(name, append_id):
                            return
                    time.sleep(random.uniform(0, 0.02 * min(attempt + 1, 10)))
                    continue
            self._seq_hint[seg_prefix] = seq
            return
        raise StorageError(
            f"s3://{self.bucket}/{seg_prefix}: no free segment after {_APPEND_ATTEMPTS} attempts "
            "(too many concurrent writers?)"
        )

    def _written_by(self, name: str, append_id: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as err:
            if _is_missing(err):
                return False
            raise
        return head.get("Metadata", {}).get(_APPEND_ID) == append_id

    def read_ledger(self, key: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        try:
            legacy = self._get(self.obj(key))
        except FileNotFoundError:
            pass
        else:  # a ledger written as one object (copied from a local store)
            out.extend(_parse_jsonl(legacy.decode("utf-8"), self.uri(key), tolerate_cut_tail=True))
        seg_prefix = self.obj(key) + SEGMENT_SUFFIX + "/"
        names = self._segments(seg_prefix)
        if names:
            self._seq_hint[seg_prefix] = int(names[-1][len(seg_prefix) : -len(".jsonl")])
        if len(names) <= 4:
            blobs = [self._get(n) for n in names]
        else:
            with ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:
                blobs = list(pool.map(self._get, names))
        for name, blob in zip(names, blobs, strict=True):
            # a segment is written in one put: a cut line is damage, not a crash
            out.extend(
                _parse_jsonl(
                    blob.decode("utf-8"), f"s3://{self.bucket}/{name}", tolerate_cut_tail=False
                )
            )
        return out

    # -- objects

    def _get(self, name: str) -> bytes:
        with _s3_errors(f"s3://{self.bucket}/{name}"):
            return self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read()

    def write(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        from botocore.exceptions import ClientError

        extra = {"IfNoneMatch": "*"} if if_absent else {}
        with _s3_errors(self.uri(key)):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.obj(key), Body=data, **extra)
            except ClientError as err:
                if if_absent and _is_write_conflict(err):
                    return False
                raise
        return True

    def read(self, key: str) -> bytes:
        return self._get(self.obj(key))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        with _s3_errors(self.uri(key)):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self.obj(key))
                return True
            except ClientError as err:
                if not _is_missing(err):
                    raise
            seg_prefix = self.obj(key) + SEGMENT_SUFFIX + "/"
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=seg_prefix, MaxKeys=1)
            return bool(page.get("KeyCount", len(page.get("Contents", []))))

    def delete(self, key: str) -> None:
        with _s3_errors(self.uri(key)):
            self.client.delete_object(Bucket=self.bucket, Key=self.obj(key))

    def list(self, prefix: str) -> list[str]:
        full = self.obj(prefix) + "/" if prefix else self.prefix
        keys: set[str] = set()
        with _s3_errors(f"s3://{self.bucket}/{full}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            ):
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) :]
                    m = _LEDGER_SEGMENT_RE.match(key)
                    keys.add(m["key"] if m else key)
        return sorted(keys)


# ---------------------------------------------------------------- the store


class Store:
    """A storage root: a local folder or ``s3://bucket/prefix``.

    Keys are relative, '/'-separated names inside the root; absolute keys and
    ``..`` are refused. There is no delete: state is append-only.
    """

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT) -> None:
        if isinstance(root, Store):
            root = root.uri("")
        raw = os.fspath(root)
        self._backend: _LocalBackend | _S3Backend
        if isinstance(raw, str) and raw.startswith("s3://"):
            self._backend = _S3Backend(raw)
            self.root: Path | str = self._backend.uri("").rstrip("/")
        else:
            self.root = Path(raw)
            self._backend = _LocalBackend(self.root)

    def probe(self, timeout: float = 5.0) -> None:
        """Check the store answers within ``timeout`` seconds (one try; S3: the bucket is
        reachable and readable); an error naming the store otherwise."""
        if self.is_local:
            return
        backend = self._backend
        client = _s3_client(connect_timeout=timeout, read_timeout=timeout, attempts=1)
        with _s3_errors(backend.uri("")):
            client.list_objects_v2(Bucket=backend.bucket, Prefix=backend.obj(""), MaxKeys=1)

    @property
    def is_local(self) -> bool:
        return isinstance(self._backend, _LocalBackend)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- names

    def path(self, key: str) -> Path:
        """The file of ``key`` (local stores only; use :meth:`uri` for any store)."""
        k = _check_key(key)
        if not isinstance(self._backend, _LocalBackend):
            raise TypeError(f"{self!r} is not a local folder; use uri({key!r})")
        return self._backend.path(k)

    def uri(self, key: str) -> str:
        """Where ``key`` lives: a file path, or ``s3://bucket/prefix/key``."""
        return self._backend.uri(_check_key(key, allow_empty=True))

    # -- ledgers (append-only JSONL)

    def append_jsonl(
        self, key: str, records: Iterable[Mapping[str, Any]], *, compact: bool = False
    ) -> int:
        """Append records as JSON lines, durable before returning; the number appended.

        Local: one fsync'd append to the file. S3: one new segment object. ``compact``
        encodes with orjson (no spaces; NaN and infinities as null): about ten times
        faster, for the inference log's hot path, whose records are validated JSON.
        """
        k = _check_key(key)
        if compact:
            import orjson

            option = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
            data = b"".join(orjson.dumps(r, option=option, default=str) for r in records)
            if data:
                self._backend.append(k, data)
            return data.count(b"\n")
        lines = [json.dumps(r, sort_keys=True, default=str) + "\n" for r in records]
        if not lines:
            return 0
        self._backend.append(k, "".join(lines).encode("utf-8"))
        return len(lines)

    def read_jsonl(self, key: str) -> list[dict[str, Any]]:
        """Every record of a ledger, in append order ([] if it does not exist).

        A last line cut short by a crash mid-append (local file) is reported and
        skipped; a bad line anywhere else is an error naming the file and line.
        """
        return self._backend.read_ledger(_check_key(key))

    # -- documents

    def write_json(self, key: str, obj: Any) -> None:
        """Replace a JSON document atomically (local: temp file, fsync, rename; S3: one put)."""
        data = json.dumps(obj, indent=1, sort_keys=True, default=str).encode("utf-8")
        self.write_bytes(key, data)

    def read_json(self, key: str, default: Any = None) -> Any:
        """A JSON document, or ``default`` if it does not exist."""
        try:
            data = self.read_bytes(key)
        except FileNotFoundError:
            return default
        try:
            return json.loads(data)
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.uri(key)}: not valid JSON ({err})") from err

    def create_json(self, key: str, obj: Any) -> bool:
        """Create a JSON document only if none exists, atomically on both backends (local: a
        hard link; S3: ``If-None-Match: *``); whether this call created it."""
        k = _check_key(key)
        data = json.dumps(obj, indent=1, sort_keys=True, default=str).encode("utf-8")
        return self._backend.write(k, data, if_absent=True)

    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace an object atomically with ``data``."""
        k = _check_key(key)
        if _LEDGER_SEGMENT_RE.match(k):
            raise ValueError(f"{key!r} names a ledger segment; use append_jsonl")
        self._backend.write(k, bytes(data))

    def read_bytes(self, key: str) -> bytes:
        """An object's bytes; FileNotFoundError naming it if it does not exist."""
        return self._backend.read(_check_key(key))

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object (or a ledger with at least one append)."""
        return self._backend.exists(_check_key(key))

    def delete(self, key: str) -> None:
        """Remove an object (not a ledger: ledgers are append-only); no error if absent."""
        k = _check_key(key)
        if _LEDGER_SEGMENT_RE.match(k) or k.endswith(".jsonl"):
            raise ValueError(f"{key!r} is a ledger: ledgers are never deleted")
        self._backend.delete(k)

    def list(self, prefix: str = "") -> list[str]:
        """Every key under the folder ``prefix`` ('' for the whole store), sorted.

        A ledger is listed once under its own key, whatever its S3 segments.
        """
        return self._backend.list(_check_key(prefix, allow_empty=True))

    # -- snapshots

    def write_snapshot(self, prefix: str, df: pd.DataFrame) -> str:
        """Write ``df`` as Parquet at ``<prefix>/<hash>.parquet``; the key.

        ``hash`` is the first 16 hex digits of the SHA-256 of the Parquet bytes, so
        the same frame (with the same pandas/pyarrow) always gets the same key and
        is written only once.
        """
        p = _check_key(prefix, allow_empty=True)
        buf = io.BytesIO()
        df.to_parquet(buf, engine="pyarrow")
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest()[:16]
        key = f"{p}/{digest}.parquet" if p else f"{digest}.parquet"
        if self._backend.write(key, data, if_absent=True):
            log.info("snapshot %s written (%d rows)", self.uri(key), len(df))
        return key

    def read_parquet(self, key: str) -> pd.DataFrame:
        """A Parquet object as a DataFrame; errors name the object."""
        import pandas as pd

        data = self.read_bytes(key)
        try:
            return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
        except Exception as err:
            raise ValueError(f"{self.uri(key)}: cannot read as Parquet ({err})") from err

    # -- quarantine

    def quarantine(
        self,
        source: str,
        rows: pd.DataFrame,
        reasons: list[str] | pd.Series | str,
        *,
        cycle: int | None,
    ) -> int:
        """Record rows set aside from ``source``, one reason each; the number recorded.

        Appends to the ledger ``quarantine/<source-name>.jsonl`` one record per row:
        ``source``, ``row`` (the index label), ``id`` (the ``item_id``/``id`` column
        if present), ``reason``, ``values`` (the row, JSON-safe), ``cycle``, ``time``.
        ``reasons`` is a list in row order, a Series on the same index (or of the
        same length), or one string for every row.
        """
        import pandas as pd

        from loopwise.jsonsafe import json_safe
        from loopwise.state import now_iso

        n = len(rows)
        if isinstance(reasons, str):
            why = [reasons] * n
        elif isinstance(reasons, pd.Series):
            if reasons.index.equals(rows.index) or (
                reasons.index.is_unique
                and rows.index.is_unique
                and set(reasons.index) == set(rows.index)
            ):
                why = reasons.reindex(rows.index).tolist()
            elif len(reasons) == n:
                why = reasons.tolist()
            else:
                raise ValueError(f"quarantine {source}: {len(reasons)} reasons for {n} rows")
        else:
            why = list(reasons)
            if len(why) != n:
                raise ValueError(f"quarantine {source}: {len(why)} reasons for {n} rows")
        if n == 0:
            return 0
        now = now_iso()
        id_col = next((c for c in ("item_id", "id") if c in rows.columns), None)
        records = []
        for (label, row), reason in zip(rows.iterrows(), why, strict=True):
            values = {str(c): json_safe(v) for c, v in row.items()}
            records.append(
                {
                    "source": source,
                    "row": json_safe(label),
                    "id": values.get(id_col) if id_col else json_safe(label),
                    "reason": None if reason is None else str(reason),
                    "values": values,
                    "cycle": cycle,
                    "time": now,
                }
            )
        return self.append_jsonl(quarantine_key(source), records)


def quarantine_key(source: str) -> str:
    """The quarantine ledger of a data source: ``quarantine/<source-name>.jsonl``."""
    return f"quarantine/{_source_name(source)}.jsonl"


def open_store(root: str | os.PathLike[str] | Store | None = None) -> Store:
    """A :class:`Store` for ``root`` (a folder or ``s3://``; default ``.loopwise/store``)."""
    if isinstance(root, Store):
        return root
    return Store(DEFAULT_ROOT if root is None else root)
