"""Reading the tables a campaign points at: CSV (plain, gzip, TSV) or Parquet, local or ``s3://``.

Broken CSV lines (more fields than the header) are set aside with their line number
instead of failing the whole file; errors name the file. A CSV is read in one text
encoding (UTF-8 unless told): a byte that does not decode is an error naming its offset
and line and the option to pass. Columns read as strings (the label column) keep their
text, missing cells stay missing; Parquet list columns of numbers become float columns
(:func:`loopwise.infer.expand_vectors`).
"""

from __future__ import annotations

import codecs
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.store import _s3_client, _s3_errors, _split_s3

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["read_table"]


def read_table(
    source: str | os.PathLike[str],
    format: str | None = None,
    *,
    encoding: str | None = None,
    string_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """A CSV (``.csv``, ``.csv.gz``, ``.tsv``) or Parquet (``.parquet``, ``.pq``) file.

    ``source`` is a local path or ``s3://bucket/key``; ``format`` (``"csv"`` or
    ``"parquet"``) overrides the guess from the file name. ``encoding`` is the text
    encoding of a CSV (default UTF-8). ``string_columns`` (those present) are read as
    strings: a CSV's text as it is, a Parquet column through
    :func:`loopwise.infer.as_strings`; missing cells stay missing. Errors name the file.
    """
    src = os.fspath(source)
    kind, gz, sep = _format_of(src, format)
    handle = _open(src)
    if kind == "Parquet":
        return _read_parquet(src, handle, string_columns)
    return _read_csv(
        src, handle, sep=sep, gz=gz, encoding=encoding or "utf-8", strings=string_columns
    )


def _format_of(src: str, format: str | None) -> tuple[str, bool, str]:
    """("CSV" or "Parquet", gzip-compressed, separator) from ``format`` or the file name."""
    name = src.lower()
    gz = name.endswith(".gz")
    base = name[: -len(".gz")] if gz else name
    sep = "\t" if base.endswith(".tsv") else ","
    if format is not None:
        if format.lower() not in {"csv", "parquet"}:
            raise ValueError(f"{src}: unknown table format {format!r} (csv or parquet)")
        return ("CSV" if format.lower() == "csv" else "Parquet"), gz, sep
    if base.endswith((".csv", ".tsv")):
        return "CSV", gz, sep
    if base.endswith((".parquet", ".pq")) and not gz:
        return "Parquet", gz, sep
    raise ValueError(
        f"{src}: unknown table format (expected .csv, .csv.gz, .tsv or .parquet, "
        "or pass format='csv' / 'parquet')"
    )


def _open(src: str) -> Any:
    """A local path as it is, or the bytes of an ``s3://`` object; errors name the source."""
    if src.startswith("s3://"):
        bucket, key = _split_s3(src)
        if not key:
            raise ValueError(f"{src}: no object key")
        with _s3_errors(src):
            return io.BytesIO(_s3_client().get_object(Bucket=bucket, Key=key)["Body"].read())
    if not Path(src).is_file():
        raise FileNotFoundError(f"{src}: no such file")
    return src


def _read_parquet(src: str, handle: Any, strings: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    from loopwise.infer import as_strings, expand_vectors

    try:
        df = pd.read_parquet(handle, engine="pyarrow")
    except Exception as err:
        raise ValueError(f"{src}: cannot read as Parquet ({err})") from err
    for c in strings:
        if c in df.columns:
            df[c] = as_strings(df[c])
    return expand_vectors(df)


def _read_csv(
    src: str, handle: Any, *, sep: str, gz: bool, encoding: str, strings: Sequence[str]
) -> pd.DataFrame:
    """A CSV; lines with more fields than the header are set aside in ``attrs["bad_lines"]``."""
    import pandas as pd

    options: dict[str, Any] = {
        "sep": sep,
        "compression": "gzip" if gz else None,
        "encoding": encoding,
        "dtype": {c: str for c in strings},
    }
    rewind = handle.seek if isinstance(handle, io.BytesIO) else (lambda _: None)
    try:
        return pd.read_csv(handle, **options)
    except UnicodeDecodeError as err:
        rewind(0)
        raise ValueError(_decode_error(src, handle, gz, encoding)) from err
    except pd.errors.ParserError as err:
        rewind(0)
        bad = _broken_csv_lines(handle, sep, gz, encoding)
        if not bad:
            raise ValueError(f"{src}: cannot read as CSV ({err})") from err
        rewind(0)
        df = pd.read_csv(handle, skiprows=[b["line"] - 1 for b in bad], **options)
        # Rows keep their place: the index is the data row (0-based) the row had in the file.
        gone = {b["row"] - 1 for b in bad}
        df.index = [i for i in range(len(df) + len(gone)) if i not in gone][: len(df)]
        df.attrs["bad_lines"] = bad
        return df
    except Exception as err:
        raise ValueError(f"{src}: cannot read as CSV ({err})") from err


def _decode_error(src: str, handle: Any, gz: bool, encoding: str) -> str:
    """Where the first byte that ``encoding`` cannot decode is, and what to pass instead."""
    import gzip

    if isinstance(handle, io.BytesIO):
        raw: Any = gzip.GzipFile(fileobj=handle) if gz else handle
    else:
        raw = gzip.open(handle, "rb") if gz else open(handle, "rb")
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, line = 0, 1
    with raw:
        while chunk := raw.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                where = offset + err.start
                line += chunk[: err.start].count(b"\n")
                byte = chunk[err.start : err.start + 1].hex()
                break
            offset += len(chunk)
            line += chunk.count(b"\n")
        else:
            where, byte = offset, ""
    what = (
        f"byte 0x{byte} at offset {where}" if byte else f"an incomplete character at offset {where}"
    )
    return (
        f"{src}: not {encoding} text: {what} (line {line}) does not decode (offsets count from 0). Pass the file's "
        "encoding: `loopwise init --encoding latin-1` (or cp1252, ...), or data.encoding in "
        "the campaign config"
    )


def _broken_csv_lines(handle: Any, sep: str, gz: bool, encoding: str) -> list[dict[str, Any]]:
    """Lines of a CSV with more fields than its header: line and data row (1-based), text."""
    import csv
    import gzip

    if isinstance(handle, io.BytesIO):
        raw = gzip.decompress(handle.getvalue()) if gz else handle.getvalue()
        text = io.StringIO(raw.decode(encoding, errors="replace"), newline="")
    else:
        opener = gzip.open if gz else open
        text = opener(handle, "rt", newline="", encoding=encoding, errors="replace")
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
