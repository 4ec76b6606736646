"""Source files of an ingest: format, hash, encoding check, CSV dialect and header.

Everything here reads the file with Python before DuckDB sees it, so a problem
such as a duplicate header name is reported with the file, line and column
instead of as a reader error deep inside a query. A CSV file is checked for
UTF-8 only when DuckDB's read of it fails (`check_utf8`): DuckDB's CSV reader
validates the UTF-8 of every value it reads, so a typed read that succeeds
has no invalid byte, and one that fails gets this check's error, which names
the line and byte, before the file is read as text.
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from appliance.errors import IngestError
from appliance.storage._column_names import ascii_lower, clash_message
from appliance.storage._errors import short_error
from appliance.storage._sql import literal

READERS = {
    ".csv": "read_csv",
    ".tsv": "read_csv",
    ".txt": "read_csv",
    ".parquet": "read_parquet",
    ".pq": "read_parquet",
    ".jsonl": "read_json",
    ".ndjson": "read_json",
    ".json": "read_json",
}
_CHUNK = 1 << 20
SNIFF_ROWS = 2048
"""Rows the CSV sniffer reads. Column types are checked on every row later, so a
wrong guess from a short sample costs a second, text read, never a wrong type."""
_SNIFF_BUFFER = 2_000_000
"""Bytes the CSV sniffer reads at a time: DuckDB's default maximum line size, so
the sniff rejects the same overlong lines as with the default buffer. With
DuckDB 2.0.1's default buffer size, the sniff of the 34 MB flights file took
22 ms, and 15 ms with this one, with the same result. The sniffer reads
further buffers when its rows need them."""
_BOM = codecs.BOM_UTF8


@dataclass(frozen=True)
class SourceFile:
    """One input file with what was learned from reading its bytes."""

    path: Path
    reader: str
    """DuckDB table function: ``read_csv``, ``read_parquet`` or ``read_json``."""
    sha256: str
    dialect: Dialect | None = field(default=None, compare=False)
    """CSV dialect sniffed while the file was hashed. None when the file was not
    sniffed or the sniff failed, so that `_loading.load_sources` sniffs it."""

    @functools.cached_property
    def lines(self) -> int:
        """Count of lines in the file, counted on first use.

        That is the count of line feeds, plus one when the last line has
        none. Only the line numbers of quarantined rows need it, so a clean
        ingest does not read the file for it.

        Raises:
            IngestError: The file cannot be read.
        """
        lines, last = 0, b"\n"
        try:
            with self.path.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    lines += chunk.count(b"\n")
                    last = chunk[-1:]
        except OSError as exc:
            raise IngestError(f"{self.path}: cannot read file: {exc.strerror}") from exc
        return lines + (last != b"\n")


@dataclass(frozen=True)
class Dialect:
    """Dialect of a CSV file: delimiter, quoting, header and sniffed types."""

    delimiter: str
    quote: str
    escape: str
    columns: list[str]
    """Header names in file order."""
    sniffed_types: dict[str, str]
    """Column types DuckDB's sniffer guessed from the first rows."""
    date_format: str | None = None
    """strptime format the sniffer chose for DATE columns, if not ISO 8601."""
    timestamp_format: str | None = None
    """strptime format the sniffer chose for TIMESTAMP columns, if not ISO 8601."""


def open_source(path: Path, dataset: str, encoding: str = "utf-8") -> SourceFile:
    """Check that `path` is a readable, non-empty file of `dataset` and hash it.

    A JSON-lines file is also checked to be valid in `encoding` when that is
    UTF-8, so a stray byte is reported with its line and column. A CSV file
    is checked by `check_utf8` only when DuckDB cannot read it.

    Raises:
        IngestError: The file is a directory, missing, empty, of an unknown format,
            unreadable or not valid UTF-8.
    """
    if path.is_dir():
        raise IngestError(
            f"{path}: is a directory; name the files in it instead, such as "
            f"{path / '*.csv'}"
        )
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        known = ", ".join(sorted(READERS))
        raise IngestError(
            f"{path}: unsupported format {path.suffix or '(no extension)'!r}; "
            f"use a file ending in one of {known}"
        )
    if not path.exists():
        raise IngestError(f"{path}: file not found")
    if not path.is_file():
        raise IngestError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise IngestError(f"{path}: file is empty (0 bytes); nothing to ingest")
    if size == len(_BOM) and path.read_bytes() == _BOM:
        raise IngestError(
            f"{path}: file contains only a UTF-8 byte-order mark and no header; "
            "nothing to ingest"
        )
    utf8 = reader == "read_json" and encoding == "utf-8"
    return SourceFile(path, reader, _scan(path, utf8, dataset))


def check_distinct(sources: list[SourceFile]) -> None:
    """Raise when two sources have the same bytes, which would double their rows."""
    seen: dict[str, Path] = {}
    for source in sources:
        if source.sha256 in seen:
            raise IngestError(
                f"{source.path} has the same content as {seen[source.sha256]}; "
                "name each file once, or its rows are ingested twice"
            )
        seen[source.sha256] = source.path


def only_blank_lines(path: Path) -> bool:
    """Return whether `path` contains only ASCII whitespace, such as blank lines.

    DuckDB 2.0.1 reads such a CSV file as no column, which is a Binder Error,
    or with ``ignore_errors`` as one column of nulls. An unreadable file
    returns False, so the caller's read reports the error.
    """
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                if chunk.strip():
                    return False
    except OSError:
        return False
    return True


def check_utf8(path: Path, dataset: str) -> None:
    """Check that every byte of `path`, a file of `dataset`, is valid UTF-8.

    Raises:
        IngestError: A byte is not valid UTF-8 (naming its line and byte), or
            the file cannot be read.
    """
    _scan(path, True, dataset)


def check_line_breaks(path: Path, encoding: str, quote: str = '"') -> None:
    """Check that no line of a CSV file ends with a carriage return alone.

    Such a line break (``\\r`` without ``\\n``, as in files from classic
    Mac OS) makes DuckDB 2.0.1's CSV sniffer or reader fail with an error
    that names no line, so a failed read calls this first. A carriage return
    inside a quoted field is a value's text and passes.

    Raises:
        IngestError: A line ends with a carriage return alone (naming the
            first such line, counted by line feeds), or the file cannot be
            read.
    """
    if "\r".encode(encoding) != b"\r":
        return
    pattern = _bare_return_pattern(quote.encode(encoding))
    try:
        with (
            path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            for match in pattern.finditer(data):
                if match.group() == b"\r":
                    line = data[: match.start()].count(b"\n") + 1
                    break
            else:
                return
    except (OSError, ValueError) as exc:
        raise IngestError(f"{path}: cannot read file: {exc}") from exc
    raise IngestError(
        f"{path}, line {line}: a line ends with a carriage return (\\r) alone, "
        "as in files from classic Mac OS, and the CSV reader splits lines at "
        "line feeds (\\n or \\r\\n) only; convert the line breaks, such as with "
        f"perl -pe 's/\\r\\n?/\\n/g' < {path.name} > converted.csv, and ingest "
        "the converted file"
    )


def _bare_return_pattern(quote: bytes) -> re.Pattern[bytes]:
    """Return a pattern matching a quoted field or a carriage return alone."""
    bare = rb"\r(?!\n)"
    if not quote:
        return re.compile(bare)
    q = re.escape(quote)
    return re.compile(q + rb"[^" + q + rb"]*" + q + rb"|" + bare)


def _scan(path: Path, check_utf8: bool, dataset: str) -> str:
    """Return the SHA-256 of the file, decoding it as UTF-8 when `check_utf8`.

    An error about the encoding names the setting of `dataset` to change.
    """
    if not check_utf8:
        try:
            with path.open("rb") as handle:
                return hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError as exc:
            raise IngestError(f"{path}: cannot read file: {exc.strerror}") from exc
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                # An ASCII chunk is valid UTF-8 unless it completes a character
                # begun in the previous chunk, which the decoder still holds.
                if not (chunk.isascii() and not decoder.getstate()[0]):
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError as exc:
                        _raise_encoding(path, chunk, exc, newlines, dataset)
                newlines += chunk.count(b"\n")
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                raise IngestError(
                    f"{path}: the file ends inside a UTF-8 character: {exc}"
                ) from None
    except OSError as exc:
        raise IngestError(f"{path}: cannot read file: {exc.strerror}") from exc
    return digest.hexdigest()


def _raise_encoding(
    path: Path,
    chunk: bytes,
    exc: UnicodeDecodeError,
    newlines_before: int,
    dataset: str,
) -> None:
    # The decoder keeps at most 3 bytes of a partial character from the last
    # chunk, so the position is within this chunk or right before it.
    position = max(exc.start, 0)
    if newlines_before == 0 and position == 0:
        _check_utf16_mark(path, chunk, dataset)
    line = newlines_before + chunk.count(b"\n", 0, position) + 1
    line_start = chunk.rfind(b"\n", 0, position) + 1
    column = position - line_start + 1
    byte = chunk[position : position + 1].hex()
    raise IngestError(
        f"{path}, line {line}, byte {column}: 0x{byte} is not valid UTF-8; convert "
        "the file to UTF-8 or declare its encoding as "
        f"[datasets.{dataset}] encoding = 'latin-1' in the configuration"
    ) from None


def _check_utf16_mark(path: Path, start: bytes, dataset: str) -> None:
    """Raise for a file that starts with a UTF-16 byte order mark."""
    if start.startswith(codecs.BOM_UTF16_LE):
        raise IngestError(
            f"{path}: the file starts with a UTF-16 (little-endian) byte order "
            f"mark; declare [datasets.{dataset}] encoding = 'utf-16' in the "
            "configuration, or convert the file to UTF-8"
        )
    if start.startswith(codecs.BOM_UTF16_BE):
        raise IngestError(
            f"{path}: the file starts with a UTF-16 big-endian byte order mark, "
            "which the CSV reader does not read; convert the file to UTF-8, such "
            "as with 'iconv -f UTF-16 -t UTF-8'"
        )


def sniff_dialect(
    db: duckdb.DuckDBPyConnection,
    path: Path,
    delimiter: str | None,
    encoding: str,
    dataset: str,
) -> Dialect:
    """Detect the delimiter and quoting of a CSV file and check its header.

    The sniffer reads the first rows only; column types are not taken from it.
    An error about the encoding names the setting of `dataset` to change.

    Raises:
        IngestError: The header has an empty or a duplicate column name.
    """
    options = f", encoding={literal(encoding)}"
    if delimiter:
        options += f", delim={literal(delimiter)}"
    try:
        row = db.execute(
            "SELECT delimiter, quote, escape, columns, dateformat, timestampformat "
            f"FROM sniff_csv({literal(str(path))}, "
            f"header=true, ignore_errors=true, sample_size={SNIFF_ROWS}, "
            f"buffer_size={_SNIFF_BUFFER}{options})"
        ).fetchall()[0]
    except duckdb.Error as exc:
        if encoding == "utf-8":
            check_utf8(path, dataset)
        check_line_breaks(path, encoding)
        raise IngestError(
            f"{path}: cannot detect the CSV format: {short_error(exc)}; check that "
            f"it is a CSV text file in encoding {encoding!r}"
        ) from None
    assert row is not None
    found_delimiter, quote, escape, sniffed, date_format, timestamp_format = row
    quote = "" if quote == "(empty)" else quote
    escape = "" if escape == "(empty)" else escape
    delimiter = delimiter or found_delimiter
    columns = _header(path, delimiter, quote or '"', encoding, dataset)
    return Dialect(
        delimiter,
        quote or '"',
        escape or quote or '"',
        columns,
        {column["name"]: column["type"] for column in sniffed},
        date_format,
        timestamp_format,
    )


def _header(
    path: Path, delimiter: str, quote: str, encoding: str, dataset: str
) -> list[str]:
    python_encoding = "utf-8-sig" if encoding == "utf-8" else encoding
    try:
        with path.open("r", encoding=python_encoding, newline="") as handle:
            text = handle.read(_CHUNK)
    except UnicodeError as exc:
        if encoding == "utf-8":
            check_utf8(path, dataset)
        raise IngestError(
            f"{path}: the start of the file is not valid {encoding} text "
            f"({exc}); declare the file's encoding as [datasets.{dataset}] "
            "encoding in the configuration"
        ) from None
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quotechar=quote)
    try:
        names = next(reader)
    except (StopIteration, csv.Error) as exc:
        check_line_breaks(path, encoding, quote)
        raise IngestError(f"{path}, line 1: cannot read the header: {exc}") from None
    seen: dict[str, int] = {}
    for index, name in enumerate(names, start=1):
        if not name.strip():
            raise IngestError(
                f"{path}, line 1, column {index}: the header name is empty; name "
                "every column in the first line"
            )
        if "\x00" in name:
            shown = name.replace("\x00", "\\0")
            raise IngestError(
                f"{path}, line 1, column {index}: the header name '{shown}' contains "
                "a NUL byte (0x00); remove NUL bytes from the file"
            )
        key = ascii_lower(name)
        if key in seen:
            first = seen[key]
            where = f"in columns {first} and {index}"
            message = clash_message(names[first - 1], name, where)
            raise IngestError(f"{path}, line 1: {message}")
        seen[key] = index
    return names
