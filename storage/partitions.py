"""A partitioned pool's files: the Parquet partitions under a folder or an ``s3://`` prefix
(or those a single CSV or Parquet source is converted into, in the campaign store), read
by whoever scores them, and the check file kept per partition content.

A partition is named by a :class:`PartitionRef` (the store it lives in and its key), which
pickles to a few bytes: a Dask worker opens the partition itself. Its *content hash* (of
its bytes) names what was computed from it once (:data:`CHECKED`), so an unchanged
partition is never read for validation again, and a changed one is, alone.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.store import Store, open_store

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "CHECKED",
    "MANIFEST",
    "PARTS",
    "PartitionRef",
    "convert_source",
    "list_partitions",
    "pool_partitions",
    "read_partition",
]

log = logging.getLogger("loopwise.partitions")

#: The conversion's record: the source it read, how far, and the partitions it wrote.
MANIFEST = "pool/manifest.json"
#: Where a single-file source's partitions are written.
PARTS = "pool/parts"
#: ``<CHECKED>/<hash>.parquet``: one row per row of a partition of that content (ids,
#: validity, holdout hash, draw key); written once, read by every later cycle.
CHECKED = "pool/checked"


@dataclass(frozen=True, order=True)
class PartitionRef:
    """One partition: the root of the store that holds it and its key there."""

    root: str
    key: str

    @property
    def uri(self) -> str:
        """Where the partition is, as a path or ``s3://`` URI (what errors name)."""
        return open_store(self.root).uri(self.key)

    def read_bytes(self) -> bytes:
        return open_store(self.root).read_bytes(self.key)


def list_partitions(source: str) -> list[PartitionRef]:
    """The ``*.parquet`` files under a folder or an ``s3://`` prefix, in key order (hive
    folders such as ``day=2026-12-01/`` included); a clear error when there are none."""
    root = source.rstrip("/") if source.startswith("s3://") else os.fspath(Path(source))
    store = open_store(root)
    keys = [k for k in store.list("") if k.lower().endswith((".parquet", ".pq"))]
    if not keys:
        raise FileNotFoundError(f"{source}: no Parquet partition (*.parquet) under it")
    return [PartitionRef(root, k) for k in keys]


def read_partition(data: bytes, where: str) -> pa.Table:
    """A partition's table from its bytes; ``ValueError`` naming it when it is not Parquet."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(io.BytesIO(data))
    except Exception as err:
        raise ValueError(f"{where}: cannot read as Parquet ({err})") from err


def content_hash(data: bytes) -> str:
    """The partition's content hash: 32 hex digits of BLAKE2b over its bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def pool_partitions(
    source: str, store: Store, *, single_file: bool, **convert: Any
) -> list[PartitionRef]:
    """The pool's partitions: those of a folder or prefix source as they are, or the ones a
    single file is converted into (:func:`convert_source`)."""
    if not single_file:
        return list_partitions(source)
    return convert_source(source, store, **convert)


def convert_source(
    source: str,
    store: Store,
    *,
    rows_per_partition: int,
    read_chunks: Any,
) -> list[PartitionRef]:
    """Partitions of ``rows_per_partition`` rows of a single-file source, in the campaign store.

    Done once: the manifest (:data:`MANIFEST`) records the source's size and version tag
    (mtime, or S3 ETag), a digest of what was read and the partitions written. When the
    source is unchanged, nothing is read. When it only grew (a local CSV whose first
    ``size`` bytes are the same), only the new bytes are converted, into new partitions.
    Any other change converts it again: the partitions whose rows did not change get the
    same bytes, hence the same content hash, and are not validated again.

    ``read_chunks(source, offset)`` yields DataFrames of at most ``rows_per_partition``
    rows, read from byte ``offset`` (0: the whole file).
    """
    size, tag = _fingerprint(source)
    manifest = store.read_json(MANIFEST) or {}
    same = manifest.get("source") == source
    same = same and manifest.get("rows_per_partition") == rows_per_partition
    if same and manifest.get("size") == size and manifest.get("tag") == tag:
        return [PartitionRef(str(store.root), k) for k in manifest["parts"]]
    old = int(manifest.get("size") or 0)
    grew = bool(same and manifest.get("appendable") and size > old)
    grew = grew and manifest.get("head") == _head_of(source, old)
    parts: list[str] = list(manifest["parts"]) if grew else []
    version = int(manifest.get("version", 0)) + (0 if grew else 1)
    if grew:
        log.info("%s grew from %d to %d bytes: converting only the new rows", source, old, size)
    for i, frame in enumerate(read_chunks(source, old if grew else 0), start=len(parts)):
        key = f"{PARTS}/v{version}/part-{i:06d}.parquet"
        buf = io.BytesIO()
        frame.to_parquet(buf, engine="pyarrow", index=False)
        store.write_bytes(key, buf.getvalue())
        parts.append(key)
    store.write_json(
        MANIFEST,
        {
            "source": source,
            "rows_per_partition": rows_per_partition,
            "size": size,
            "tag": tag,
            "head": _head_of(source, size),
            "appendable": _appendable(source),
            "parts": parts,
            "version": version,
        },
    )
    if not grew:  # the previous conversion's partitions (their check files stay)
        for stale in store.list(PARTS):
            if not stale.startswith(f"{PARTS}/v{version}/"):
                store.delete(stale)
    return [PartitionRef(str(store.root), k) for k in parts]


def _appendable(source: str) -> bool:
    """A local plain CSV that ends with a newline: rows appended to it can be read alone."""
    if source.startswith("s3://") or not source.lower().endswith((".csv", ".tsv")):
        return False
    with open(source, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _fingerprint(source: str) -> tuple[int, str]:
    """(size, version tag: the S3 ETag or the file's mtime) of the source."""
    if source.startswith("s3://"):
        from storage.store import _s3_client, _s3_errors, _split_s3

        bucket, key = _split_s3(source)
        with _s3_errors(source):
            head = _s3_client().head_object(Bucket=bucket, Key=key)
        return int(head["ContentLength"]), str(head.get("ETag"))
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise FileNotFoundError(f"{source}: no such file") from None
    return st.st_size, str(st.st_mtime_ns)


def _head_of(source: str, size: int) -> str | None:
    """A digest of a local source's first ``size`` bytes, read in 1 MiB blocks (the flow
    never holds the file); None for S3 (whole objects only: no append)."""
    if source.startswith("s3://"):
        return None
    h = hashlib.blake2b(digest_size=16)
    left = size
    with open(source, "rb") as f:
        while left > 0 and (block := f.read(min(left, 1 << 20))):
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def csv_chunks(
    source: str,
    offset: int,
    *,
    rows: int,
    encoding: str | None,
    string_columns: list[str],
    bad_lines: list[dict[str, Any]],
) -> Iterator[pd.DataFrame]:
    """Chunks of at most ``rows`` rows of a CSV read from byte ``offset`` (0: after the
    header) without holding the file; a Parquet or ``s3://`` file is read whole, then cut.
    Lines with more fields than the header are skipped and reported in ``bad_lines`` (what
    pandas says of them: the line number, counted from ``offset``'s line)."""
    import pandas as pd

    if source.lower().endswith((".parquet", ".pq")) or source.startswith("s3://"):
        from storage.tables import read_table

        df = read_table(source, encoding=encoding, string_columns=string_columns)
        for start in range(0, len(df), rows):
            yield df.iloc[start : start + rows].reset_index(drop=True)
        return
    sep = "\t" if source.lower().endswith(".tsv") else ","
    with open(source, "rb") as f:
        header = f.readline()
        if offset:
            f.seek(offset)
        text = io.TextIOWrapper(
            io.BufferedReader(_Joined(header, f)), encoding=encoding or "utf-8", newline=""
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            reader = pd.read_csv(
                text,
                sep=sep,
                chunksize=rows,
                dtype=dict.fromkeys(string_columns, str),
                on_bad_lines="warn",
            )
            for chunk in reader:
                yield chunk.reset_index(drop=True)
        where = source + (f" (rows appended after byte {offset})" if offset else "")
        for w in caught:
            for line in str(w.message).strip().splitlines():
                bad_lines.append({"source": where, "reason": line.strip()})


class _Joined(io.RawIOBase):
    """The header line, then the rest of a file from where it stands."""

    def __init__(self, header: bytes, rest: Any) -> None:
        self._head = header
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)
