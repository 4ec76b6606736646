"""The log formatter: one quoting rule for the values of key=value pairs."""

from __future__ import annotations

import logging

import pytest

from appliance.logs import KeyValueFormatter, quoted


def formatted(msg: str, *args: object) -> str:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, msg, args, None)
    return KeyValueFormatter("%(message)s").format(record)


@pytest.mark.parametrize(
    ("msg", "args", "line"),
    [
        (
            "daemon start failed error=%s",
            ("cannot open the catalog /h/catalog.duckdb",),
            'daemon start failed error="cannot open the catalog /h/catalog.duckdb"',
        ),
        (
            "request rejected reason=%s client=%s; counted",
            ("unknown key", "127.0.0.1"),
            'request rejected reason="unknown key" client=127.0.0.1; counted',
        ),
        ("a=%s b=%d c=%s", ("x=y", 3, ""), 'a="x=y" b=3 c=""'),
        ("value=%s", ('say "hi"\nnow',), 'value="say \\"hi\\"\\nnow"'),
        ("path=%s", ('"/v1/a b"',), 'path="/v1/a b"'),
        (
            "free text %s, done=%s",
            ("not a value", "yes"),
            "free text not a value, done=yes",
        ),
        ("rate=%d%% name=%s", (5, "a b"), 'rate=5% name="a b"'),
    ],
)
def test_formatter_quotes_values(msg: str, args: tuple, line: str) -> None:
    assert formatted(msg, *args) == line


def test_formatter_keeps_record_args() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "a=%s", ("b c",), None)
    KeyValueFormatter("%(message)s").format(record)
    assert record.args == ("b c",)


def test_quoted_plain_value_unchanged() -> None:
    assert quoted("flights") == "flights"
