"""Durable state under one storage root: append-only JSONL ledgers and atomic JSON.

Every write goes through :class:`Store` so that the rules hold everywhere:
ledgers (``annotations/``, ``labels/``, ``dispatch/``) are only ever appended to,
and JSON documents (``state.json``, checkpoints) are replaced atomically, never
edited in place. This is the local-folder implementation; the S3 one arrives with
the cycle flow behind the same methods.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_ROOT", "Store"]

DEFAULT_ROOT = Path(".loopwise/store")
log = logging.getLogger(__name__)


class Store:
    """A storage root on the local file system."""

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """The file of ``key`` (a relative, '/'-separated name inside the root)."""
        parts = Path(key).parts
        if not parts or Path(key).is_absolute() or ".." in parts:
            raise ValueError(f"storage key must be a relative path inside the root, got {key!r}")
        return self.root.joinpath(*parts)

    def append_jsonl(self, key: str, records: Iterable[Mapping[str, Any]]) -> int:
        """Append records as JSON lines and make them durable (fsync) before returning."""
        lines = [json.dumps(r, sort_keys=True, default=str) + "\n" for r in records]
        if not lines:
            return 0
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
        return len(lines)

    def read_jsonl(self, key: str) -> list[dict[str, Any]]:
        """Every record of a ledger, in append order ([] if it does not exist).

        A last line cut short by a crash mid-append is reported and skipped; a bad
        line anywhere else is an error naming the file and line.
        """
        path = self.path(key)
        if not path.exists():
            return []
        out: list[dict[str, Any]] = []
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
        for n, line in enumerate(lines, start=1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                if n == len(lines) and not line.endswith("\n"):
                    log.warning("%s line %d: incomplete last line ignored (%s)", path, n, err)
                    continue
                raise ValueError(f"{path} line {n}: not valid JSON ({err})") from err
        return out

    def write_json(self, key: str, obj: Any) -> None:
        """Replace a JSON document atomically (write a temporary file, fsync, rename)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(obj, f, indent=1, sort_keys=True, default=str)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read_json(self, key: str, default: Any = None) -> Any:
        """A JSON document, or ``default`` if it does not exist."""
        path = self.path(key)
        if not path.exists():
            return default
        with open(path, encoding="utf-8") as f:
            return json.load(f)
