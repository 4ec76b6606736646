"""JSON objects that repeat a key are quarantined, from files and from HTTP rows."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from support import WriteFile

from appliance.config import load_config
from appliance.errors import IngestError
from appliance.serving._body import decode_repeated_keys
from appliance.storage import (
    Catalog,
    IngestBuffer,
    ingest,
    keep_repeats,
    list_quarantine,
    scan_sql,
)
from appliance.storage._repeated_keys import RepeatedKeysObject, encode_as_sent

LINES = (
    '{"a": 1, "b": "x"}\n'
    '{"a": 2, "a": 3.50, "b": "y"}\n'
    '{"a": 4, "b": "z", "c": {"d": 1, "d": 2}}\n'
    '{"a": 5, "b": "v"}\n'
)


def test_file_rows_quarantined(catalog: Catalog, write_file: WriteFile) -> None:
    result = ingest(catalog, "events", [write_file("events.jsonl", LINES)])

    rows = catalog.db.execute(scan_sql(result.version) + " ORDER BY a").fetchall()
    quarantined = list_quarantine(catalog, "events")
    assert (result.accepted, result.quarantined) == (2, 2)
    assert [row[:2] for row in rows] == [(1, "x"), (5, "v")]
    assert [(q.line, q.column, q.value) for q in quarantined] == [
        (2, "a", "2, 3.50"),
        (3, "c.d", "1, 2"),
    ]
    assert quarantined[0].reason == (
        "key 'a' appears 2 times in the object, with the values 2, 3.50; send "
        "each key once"
    )


def test_repeats_logged_once_per_file(
    catalog: Catalog, write_file: WriteFile, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="appliance.storage._loading"):
        ingest(catalog, "events", [write_file("events.jsonl", LINES)])

    logged = [r for r in caplog.records if "repeat keys" in r.getMessage()]
    assert len(logged) == 1


def test_strict_ingest_names_key(catalog: Catalog, write_file: WriteFile) -> None:
    with pytest.raises(IngestError, match="key 'a' appears 2 times"):
        ingest(catalog, "events", [write_file("e.jsonl", LINES)], strict=True)


def test_body_keeps_repeated_pairs() -> None:
    body = b'{"rows": [{"a": 1, "a" : 2}, {"a": "x\\":", "b": 3}]}'
    decoded = json.loads(body)["rows"]

    rows = decode_repeated_keys(body, decoded)

    assert isinstance(rows[0], RepeatedKeysObject)
    assert rows[0].pairs == [("a", 1), ("a", 2)]
    assert rows[1] == {"a": 'x":', "b": 3}
    assert not isinstance(rows[1], RepeatedKeysObject)


def test_body_without_repeats_unchanged() -> None:
    # A string that ends in a backslash, and one that looks like a key.
    body = b'{"rows": [{"a": "\\\\", "b": "c\\":"}], "other": {"x": 1}}'
    decoded = json.loads(body)["rows"]

    assert decode_repeated_keys(body, decoded) == decoded


def test_buffer_segment_quarantines_row(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[storage]\nhome = "home"\n')
    config = load_config(path)
    buffer = IngestBuffer(config)
    repeated = json.loads('{"id": 1, "v": 1, "v": 2}', object_pairs_hook=keep_repeats)

    buffer.append("events", [repeated, {"id": 2, "v": 3}])
    wal = config.storage.home / "buffer" / "events" / "wal.jsonl"
    written = wal.read_text().splitlines()
    buffer.flush("events")

    assert written == ['{"id":1,"v":1,"v":2}', '{"id":2,"v":3}']
    with Catalog(config.storage.home) as catalog:
        quarantined = list_quarantine(catalog, "events")
    assert [(q.line, q.column, q.value) for q in quarantined] == [(1, "v", "1, 2")]


def test_encode_nested_repeats() -> None:
    body = b'{"rows": [{"c": [{"d": 1, "d": 2}], "e": 1.5}, {"c": 1}]}'

    rows = decode_repeated_keys(body, json.loads(body)["rows"])

    assert encode_as_sent(rows[0]) == '{"c":[{"d":1,"d":2}],"e":1.5}'
    assert encode_as_sent(rows[1]) == '{"c":1}'
