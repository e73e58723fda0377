"""Reading the tables a campaign points at: CSV (plain, gzip, TSV) or Parquet, local or ``s3://``.

Broken CSV lines (more fields than the header) are set aside with their line number
instead of failing the whole file; errors name the file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.store import _s3_client, _s3_errors, _split_s3

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["read_table"]


def read_table(source: str | os.PathLike[str], format: str | None = None) -> pd.DataFrame:
    """A CSV (``.csv``, ``.csv.gz``, ``.tsv``) or Parquet (``.parquet``, ``.pq``) file.

    ``source`` is a local path or ``s3://bucket/key``; ``format`` (``"csv"`` or
    ``"parquet"``) overrides the guess from the file name. Errors name the file.
    """
    import pandas as pd

    src = os.fspath(source)
    name = src.lower()
    gz = name.endswith(".gz")
    base = name[: -len(".gz")] if gz else name
    if format is not None:
        if format.lower() not in {"csv", "parquet"}:
            raise ValueError(f"{src}: unknown table format {format!r} (csv or parquet)")
        kind = "CSV" if format.lower() == "csv" else "Parquet"
    elif base.endswith((".csv", ".tsv")):
        kind = "CSV"
    elif base.endswith((".parquet", ".pq")) and not gz:
        kind = "Parquet"
    else:
        raise ValueError(
            f"{src}: unknown table format (expected .csv, .csv.gz, .tsv or .parquet, "
            "or pass format='csv' / 'parquet')"
        )

    if src.startswith("s3://"):
        bucket, key = _split_s3(src)
        if not key:
            raise ValueError(f"{src}: no object key")
        with _s3_errors(src):
            data = _s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        handle: Any = io.BytesIO(data)
    else:
        if not Path(src).is_file():
            raise FileNotFoundError(f"{src}: no such file")
        handle = src
    sep = "\t" if base.endswith(".tsv") else ","
    try:
        if kind == "Parquet":
            return pd.read_parquet(handle, engine="pyarrow")
        return pd.read_csv(handle, sep=sep, compression="gzip" if gz else None)
    except pd.errors.ParserError as err:
        if isinstance(handle, io.BytesIO):
            handle.seek(0)
        bad = _broken_csv_lines(handle, sep, gz)
        if not bad:
            raise ValueError(f"{src}: cannot read as {kind} ({err})") from err
        if isinstance(handle, io.BytesIO):
            handle.seek(0)
        df = pd.read_csv(
            handle,
            sep=sep,
            compression="gzip" if gz else None,
            skiprows=[b["line"] - 1 for b in bad],
        )
        # Rows keep their place: the index is the data row (0-based) the row had in the file.
        gone = {b["row"] - 1 for b in bad}
        df.index = [i for i in range(len(df) + len(gone)) if i not in gone][: len(df)]
        df.attrs["bad_lines"] = bad
        return df
    except Exception as err:
        raise ValueError(f"{src}: cannot read as {kind} ({err})") from err


def _broken_csv_lines(handle: Any, sep: str, gz: bool) -> list[dict[str, Any]]:
    """Lines of a CSV with more fields than its header: line and data row (1-based), text."""
    import csv
    import gzip

    if isinstance(handle, io.BytesIO):
        raw = gzip.decompress(handle.getvalue()) if gz else handle.getvalue()
        text = io.StringIO(raw.decode("utf-8", errors="replace"), newline="")
    else:
        opener = gzip.open if gz else open
        text = opener(handle, "rt", newline="", encoding="utf-8", errors="replace")
    bad = []
    with text:
        reader = csv.reader(text, delimiter=sep)
        header = next(reader, [])
        row = 0
        for fields in reader:
            row += 1
            if len(fields) > len(header):
                bad.append(
                    {
                        "line": reader.line_num,
                        "row": row,
                        "fields": len(fields),
                        "expected": len(header),
                        "text": sep.join(fields)[:500],
                    }
                )
    return bad
