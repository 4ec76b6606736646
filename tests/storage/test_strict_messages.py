"""Advice of a strict ingest rejection, by what the ingest found in the files."""

from __future__ import annotations

import pytest
from support import WriteFile

from appliance.errors import IngestError
from appliance.storage import Catalog, ingest

LATE_TEXT = "a\n" + "".join(f"{i}\n" for i in range(3000)) + "warm\n"
"""A column of numbers with one word after the first rows. Without a contract it
gets a warning and no row is quarantined."""


def test_strict_warnings_only_no_quarantine_advice(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("late.csv", LATE_TEXT)

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "late", [path], strict=True)

    message = str(raised.value)
    assert "column 'a' looks like BIGINT" in message
    assert "without --strict to quarantine" not in message
    assert message.endswith(
        "fix the file or ingest without --strict to store the rows with these warnings"
    )


def test_strict_quarantined_rows_keep_advice(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("bad.jsonl", 'not json\n{"a": 1}\n')

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "bad", [path], strict=True)

    assert str(raised.value).endswith(
        "fix the file or ingest without --strict to quarantine"
    )


def test_strict_stored_warnings_point_to_show(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("late.csv", LATE_TEXT)
    stored = ingest(catalog, "late", [path])

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "late", [path], strict=True)

    message = str(raised.value)
    reference = f"late@{stored.version.version}"
    assert stored.quarantined == 0
    assert f"were ingested before as {reference}, where column 'a'" in message
    assert "datasets quarantine" not in message
    assert f"see 'appliance datasets show {reference}'" in message


def test_strict_stored_quarantine_points_to_it(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("bad.jsonl", 'not json\n{"a": 1}\n')
    stored = ingest(catalog, "bad", [path])

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "bad", [path], strict=True)

    version = stored.version.version
    assert "1 row was quarantined" in str(raised.value)
    assert f"see 'appliance datasets quarantine bad --version {version}'" in str(
        raised.value
    )
