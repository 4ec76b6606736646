"""Source files of an ingest: format, hash, encoding check, CSV dialect and header.

A compressed text file (``.csv.gz``, ``.jsonl.zst``, ...) is decompressed
once into a copy (`_compressed`): each source carries the path as given,
which messages name, and the path of the bytes to read (`InputFile`).

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
from appliance.storage._compressed import (
    COMPRESSIONS,
    DecompressedFiles,
    check_available,
    decompress,
    decompress_command,
    readable_suffixes,
)
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
_PARQUET = "read_parquet"
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
_LINE_SIZE = re.compile(r"Maximum line size of (\d+) bytes exceeded")
_BOM = codecs.BOM_UTF8


@dataclass(frozen=True)
class InputFile:
    """A file named for an ingest, and the file its bytes are read from."""

    path: Path
    """The path as given, which messages, the quarantine and the catalog name."""
    read_path: Path
    """The file to read: `path` itself, or the decompressed copy of a
    compressed file."""


@dataclass(frozen=True)
class SourceFile(InputFile):
    """One input file with what was learned from reading its bytes."""

    reader: str
    """DuckDB table function: ``read_csv``, ``read_parquet`` or ``read_json``."""
    sha256: str
    """SHA-256 of the file as given, compressed or not."""
    content_sha256: str = field(default="", compare=False)
    """SHA-256 of the decompressed bytes of a compressed file. Empty for a
    file that is not compressed, whose bytes `sha256` hashes."""
    dialect: Dialect | None = field(default=None, compare=False)
    """CSV dialect sniffed while the file was hashed. None when the file was not
    sniffed or the sniff failed, so that `_loading.load_sources` sniffs it."""
    nul_free: bool = field(default=False, compare=False)
    """The file has no 0x00 byte, so no value that a CSV read takes from it
    contains a NUL. False when that is unknown, because only an uncompressed
    CSV file is searched, while it is hashed."""

    @functools.cached_property
    def lines(self) -> int:
        """Count of lines in the file (decompressed), counted on first use.

        That is the count of line feeds, plus one when the last line has
        none. Only the line numbers of quarantined rows need it, so a clean
        ingest does not read the file for it.

        Raises:
            IngestError: The file cannot be read.
        """
        lines, last = 0, b"\n"
        try:
            with self.read_path.open("rb") as handle:
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


def source_reader(path: Path) -> str:
    """Return the DuckDB table function that reads `path`, from its suffixes.

    A text format's suffix may be followed by a compression's, such as
    ``.csv.gz``. The reader then reads the copy that `open_source` writes.

    Raises:
        IngestError: The suffix is of no known format, of a compressed
            Parquet file, or of a compression this Python cannot read.
    """
    suffix = path.suffix.lower()
    compressed = suffix in COMPRESSIONS
    inner = path.with_suffix("").suffix.lower() if compressed else suffix
    reader = READERS.get(inner)
    if compressed and reader == _PARQUET:
        raise IngestError(
            f"{path}: a Parquet file compresses its own data, so a compressed "
            f"Parquet file ({inner}{suffix}) is not read; ingest the "
            f"{path.with_suffix('').name} inside it"
        )
    if reader is None:
        known = ", ".join(sorted(READERS))
        found = f"{inner}{suffix}" if compressed else suffix or "(no extension)"
        raise IngestError(
            f"{path}: unsupported format {found!r}; use a file ending in one of "
            f"{known}, or a CSV or JSON-lines one followed by "
            f"{' or '.join(readable_suffixes())} when compressed"
        )
    if compressed:
        check_available(path)
    return reader


def open_source(
    path: Path,
    dataset: str,
    encoding: str = "utf-8",
    copies: DecompressedFiles | None = None,
) -> SourceFile:
    """Check that `path` is a readable, non-empty file of `dataset` and hash it.

    A JSON-lines file is also checked to be valid in `encoding` when that is
    UTF-8, so a stray byte is reported with its line and column. A CSV file
    is checked by `check_utf8` only when DuckDB cannot read it. A compressed
    file is decompressed into `copies`, which it needs, and checked there.

    Raises:
        IngestError: The file is a directory, missing, empty, of an unknown format,
            unreadable, not a complete compressed file or not valid UTF-8.
        StorageError: The decompressed copy cannot be written.
    """
    if path.is_dir():
        raise IngestError(
            f"{path}: is a directory; name the files in it instead, such as "
            f"{path / '*.csv'}"
        )
    reader = source_reader(path)
    if not path.exists():
        raise IngestError(f"{path}: file not found")
    if not path.is_file():
        raise IngestError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise IngestError(f"{path}: file is empty (0 bytes); nothing to ingest")
    utf8 = reader == "read_json" and encoding == "utf-8"
    if path.suffix.lower() in COMPRESSIONS:
        if copies is None:
            raise ValueError(f"{path} is compressed and no folder for its copy given")
        return _open_compressed(path, reader, dataset if utf8 else None, copies)
    _check_not_only_bom(path, path)
    if reader == "read_csv":
        sha256, nul_free = _hash_csv(path)
        return SourceFile(path, path, reader, sha256, nul_free=nul_free)
    return SourceFile(path, path, reader, _scan(path, utf8, dataset))


def _open_compressed(
    path: Path, reader: str, utf8_dataset: str | None, copies: DecompressedFiles
) -> SourceFile:
    """Decompress `path` into `copies` and return its source.

    Args:
        utf8_dataset: The dataset, when the text must be checked to be UTF-8.
    """
    copy = copies.copy_path(path)
    check = _Utf8Check(path, utf8_dataset) if utf8_dataset is not None else None
    found = decompress(path, copy, check.feed if check else None)
    if check is not None:
        check.finish()
    if found.size == 0:
        raise IngestError(
            f"{path}: the file is empty once decompressed (0 bytes); nothing to ingest"
        )
    _check_not_only_bom(path, copy)
    return SourceFile(path, copy, reader, found.sha256, found.content_sha256)


def _check_not_only_bom(path: Path, read_path: Path) -> None:
    if read_path.stat().st_size == len(_BOM) and read_path.read_bytes() == _BOM:
        raise IngestError(
            f"{path}: file contains only a UTF-8 byte-order mark and no header; "
            "nothing to ingest"
        )


def check_distinct(sources: list[SourceFile]) -> None:
    """Raise when two sources have the same bytes, which would double their rows.

    A compressed file is compared by its decompressed bytes, so a file and
    its gzip copy count as the same.
    """
    seen: dict[str, Path] = {}
    for source in sources:
        content = source.content_sha256 or source.sha256
        if content in seen:
            raise IngestError(
                f"{source.path} has the same content as {seen[content]}; "
                "name each file once, or its rows are ingested twice"
            )
        seen[content] = source.path


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


def check_utf8(file: InputFile, dataset: str) -> None:
    """Check that every byte of `file`, a file of `dataset`, is valid UTF-8.

    Raises:
        IngestError: A byte is not valid UTF-8 (naming its line and byte), or
            the file cannot be read.
    """
    check = _Utf8Check(file.path, dataset)
    try:
        with file.read_path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                check.feed(chunk)
    except OSError as exc:
        raise IngestError(f"{file.path}: cannot read file: {exc.strerror}") from exc
    check.finish()


def check_line_breaks(file: InputFile, encoding: str, quote: str = '"') -> None:
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
    path = file.path
    pattern = _bare_return_pattern(quote.encode(encoding))
    try:
        with (
            file.read_path.open("rb") as handle,
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
    convert = f"perl -pe 's/\\r\\n?/\\n/g' < {path.name}"
    decompressing = decompress_command(path)
    if decompressing is not None:
        convert = f"{decompressing} | perl -pe 's/\\r\\n?/\\n/g'"
    raise IngestError(
        f"{path}, line {line}: a line ends with a carriage return (\\r) alone, "
        "as in files from classic Mac OS, and the CSV reader splits lines at "
        "line feeds (\\n or \\r\\n) only; convert the line breaks, such as with "
        f"{convert} > converted.csv, and ingest the converted file"
    )


def _bare_return_pattern(quote: bytes) -> re.Pattern[bytes]:
    """Return a pattern matching a quoted field or a carriage return alone."""
    bare = rb"\r(?!\n)"
    if not quote:
        return re.compile(bare)
    q = re.escape(quote)
    return re.compile(q + rb"[^" + q + rb"]*" + q + rb"|" + bare)


def _hash_csv(path: Path) -> tuple[str, bool]:
    """Return the SHA-256 of a CSV file and whether it has no 0x00 byte.

    The search adds about 0.002 CPU s to the 0.022 of hashing the 34 MB
    flights file, and spares the ingest a scan of every text value for a
    NUL (one-off runs, Python 3.11, shared 2-core machine).
    """
    digest = hashlib.sha256()
    nul_free = True
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                nul_free = nul_free and b"\0" not in chunk
    except OSError as exc:
        raise IngestError(f"{path}: cannot read file: {exc.strerror}") from exc
    return digest.hexdigest(), nul_free


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
    check = _Utf8Check(path, dataset)
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                check.feed(chunk)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read file: {exc.strerror}") from exc
    check.finish()
    return digest.hexdigest()


class _Utf8Check:
    """A check that the chunks fed to it, in file order, are valid UTF-8.

    Its errors name `path`, the line and byte, and the setting of `dataset`
    that declares another encoding.
    """

    def __init__(self, path: Path, dataset: str) -> None:
        self._path = path
        self._dataset = dataset
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._newlines = 0

    def feed(self, chunk: bytes) -> None:
        """Check the next chunk of the file."""
        # An ASCII chunk is valid UTF-8 unless it completes a character
        # begun in the previous chunk, which the decoder still holds.
        if not (chunk.isascii() and not self._decoder.getstate()[0]):
            try:
                self._decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                _raise_encoding(self._path, chunk, exc, self._newlines, self._dataset)
        self._newlines += chunk.count(b"\n")

    def finish(self) -> None:
        """Check that the file does not end inside a character."""
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise IngestError(
                f"{self._path}: the file ends inside a UTF-8 character: {exc}"
            ) from None


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
    file: InputFile,
    delimiter: str | None,
    encoding: str,
    dataset: str,
    max_line_bytes: int | None = None,
) -> Dialect:
    """Detect the delimiter and quoting of a CSV file and check its header.

    The sniffer reads the first rows only; column types are not taken from it.
    An error about the encoding names the setting of `dataset` to change.
    The sniffer reads records of up to `max_line_bytes`, and of up to
    DuckDB's default maximum line size when that is larger, so that the
    read quarantines a longer record after the sample as it does one in it.

    Raises:
        IngestError: The header has an empty or a duplicate column name, or
            a record in the sample is longer than the sniffer reads.
    """
    options = f", encoding={literal(encoding)}"
    if delimiter:
        options += f", delim={literal(delimiter)}"
    buffer = _SNIFF_BUFFER
    if max_line_bytes is not None and line_size_option(max_line_bytes) > buffer:
        # DuckDB 2.0.1 requires a buffer larger than the maximum line size.
        buffer = line_size_option(max_line_bytes) + 1
        options += f", max_line_size={line_size_option(max_line_bytes)}"
    try:
        row = db.execute(
            "SELECT delimiter, quote, escape, columns, dateformat, timestampformat "
            f"FROM sniff_csv({literal(str(file.read_path))}, "
            f"header=true, ignore_errors=true, sample_size={SNIFF_ROWS}, "
            f"buffer_size={buffer}{options})"
        ).fetchall()[0]
    except duckdb.Error as exc:
        if encoding == "utf-8":
            check_utf8(file, dataset)
        check_line_breaks(file, encoding)
        check_long_records(file, exc, (encoding, delimiter or ""), dataset)
        raise IngestError(
            f"{file.path}: cannot detect the CSV format: {file_error(exc, file)}; "
            f"check that it is a CSV text file in encoding {encoding!r}"
        ) from None
    assert row is not None
    found_delimiter, quote, escape, sniffed, date_format, timestamp_format = row
    quote = "" if quote == "(empty)" else quote
    escape = "" if escape == "(empty)" else escape
    delimiter = delimiter or found_delimiter
    columns = _header(file, delimiter, quote or '"', encoding, dataset)
    return Dialect(
        delimiter,
        quote or '"',
        escape or quote or '"',
        columns,
        {column["name"]: column["type"] for column in sniffed},
        date_format,
        timestamp_format,
    )


def line_size_option(max_line_bytes: int) -> int:
    """Return the ``max_line_size`` that reads records of `max_line_bytes` bytes.

    DuckDB 2.0.1 rejects a record of ``max_line_size`` bytes or more, and
    counts the carriage return of a CRLF line break but not the line feed.
    NOTE: it may count line feeds of the blank lines before a record too, so
    such a record of exactly `max_line_bytes` bytes can be rejected.
    """
    return max_line_bytes + 1


def check_long_records(
    file: InputFile, exc: duckdb.Error, text: tuple[str, str], dataset: str
) -> None:
    """Name the record that made the CSV sniffer exceed its maximum line size.

    DuckDB 2.0.1's sniffer reports such a record on line 1, wherever it is.
    The scan that finds the record takes ``"`` as quote and escape, because
    the sniff that detects them failed.

    Args:
        exc: The sniffer's error.
        text: The file's encoding and delimiter, ``""`` when not declared.

    Raises:
        IngestError: `exc` is a maximum line size error; the message names
            the record's line and size, and the limit.
    """
    found = _LINE_SIZE.search(str(exc))
    if found is None:
        return
    from appliance.storage._lines import long_record  # _lines imports this module

    limit = int(found.group(1)) - 1
    encoding, delimiter = text
    record = long_record(file.read_path, encoding, ('"', '"', delimiter), limit)
    what = f"{file.path}: a record is"
    if record is not None:
        what = f"{file.path}, line {record[0]}: the record of {record[1]} bytes is"
    raise IngestError(
        f"{what} longer than the maximum of {limit} bytes, so the CSV "
        f"format of the file cannot be detected; set [datasets.{dataset}] "
        "max_line_bytes to the record's size or more, or shorten or remove the record"
    )


def file_error(exc: duckdb.Error, file: InputFile) -> str:
    """Return `short_error` of a DuckDB error from reading `file`, naming its path.

    DuckDB names the file it read, which for a compressed file is the copy.
    """
    return short_error(exc).replace(str(file.read_path), str(file.path))


def _header(
    file: InputFile, delimiter: str, quote: str, encoding: str, dataset: str
) -> list[str]:
    path = file.path
    python_encoding = "utf-8-sig" if encoding == "utf-8" else encoding
    try:
        with file.read_path.open("r", encoding=python_encoding, newline="") as handle:
            text = handle.read(_CHUNK)
    except UnicodeError as exc:
        if encoding == "utf-8":
            check_utf8(file, dataset)
        raise IngestError(
            f"{path}: the start of the file is not valid {encoding} text "
            f"({exc}); declare the file's encoding as [datasets.{dataset}] "
            "encoding in the configuration"
        ) from None
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quotechar=quote)
    try:
        names = next(reader)
    except (StopIteration, csv.Error) as exc:
        check_line_breaks(file, encoding, quote)
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
