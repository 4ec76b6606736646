"""Quoting of names and text in the SQL that the storage modules build."""

from __future__ import annotations


def ident(name: str) -> str:
    """Return `name` as a quoted DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """Return `text` as a DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"
