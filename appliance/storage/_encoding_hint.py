"""A warning for a UTF-8 file that a dataset declares to be latin-1.

Every byte sequence is valid latin-1, so such a file loads without an error,
but each character outside ASCII turns into two or three others, such as
``é`` into ``Ã©``. UTF-8 follows each byte above 0x7F with bytes from 0x80
to 0xBF, which latin-1 text rarely has after a letter such as ``é``, so a
file that decodes as UTF-8 points to a wrong setting.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from appliance.storage._sources import InputFile

_CHUNK = 1 << 20


def utf8_warning(source: InputFile, dataset: str, encoding: str) -> str | None:
    """Return a warning when `encoding` is latin-1 and the file reads as UTF-8.

    Only a file with at least one byte outside ASCII gets the warning, and an
    unreadable file gets none, because the read itself reports it.
    """
    if encoding != "latin-1" or not _utf8_outside_ascii(source.read_path):
        return None
    return (
        f"{source.path} is valid UTF-8 with characters outside ASCII, but "
        f"[datasets.{dataset}] encoding = 'latin-1' reads each of them as two "
        "or three others, such as 'é' as 'Ã©'; remove that setting to read the "
        "file as UTF-8, and ingest it again"
    )


def _utf8_outside_ascii(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    outside = False
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                outside = outside or not chunk.isascii()
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except (OSError, UnicodeDecodeError):
        return False
    return outside
