"""The data subject of an erasure: a dataset and the key values that name it.

A subject is one or more ``COLUMN=VALUE`` pairs, all of which a row must
match. Values are text, as typed on the command line. Dataset rows compare
them in the column's recorded type, and JSON rows (the prediction log, the
ingest buffer, the quarantine) compare the JSON value's text: ``"N12345"``
and ``N12345`` match the text ``N12345``, and the number ``2013`` matches
``2013``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from appliance.errors import RequestError
from appliance.storage._sql import ident, literal


@dataclass(frozen=True)
class Subject:
    """The rows to erase: those of `dataset` whose `keys` all match."""

    dataset: str
    keys: tuple[tuple[str, str], ...]
    """Column names and values, in the order given."""

    @property
    def digest(self) -> str:
        """SHA-256 of the dataset and keys, the only form logs and receipts keep.

        NOTE: a key of few possible values, such as a 4-digit number, can be
        found again from its hash by trying every value.
        """
        text = json.dumps([self.dataset, sorted(self.keys)], ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def columns(self) -> list[str]:
        """Names of the key columns."""
        return [name for name, _ in self.keys]

    def redact(self, text: str) -> str:
        """Return `text` with each key value replaced by ``<erased>``."""
        for _, value in self.keys:
            if value:
                text = text.replace(value, "<erased>")
        return text

    def matches_json(self, row: Any) -> bool:
        """Tell whether a JSON object row contains every key value."""
        if not isinstance(row, dict):
            return False
        return all(
            name in row and json_text(row[name]) == value for name, value in self.keys
        )

    def json_sql(self, column: str) -> str:
        """Return a SQL condition true for rows whose JSON text `column` matches."""
        return " AND ".join(
            f"json_extract_string({column}, {literal(_json_path(name))}) = "
            f"{literal(value)}"
            for name, value in self.keys
        )


def parse_subject(dataset: str, pairs: Sequence[str]) -> Subject:
    """Return the subject of ``COLUMN=VALUE`` texts, such as ``--where`` gives.

    Raises:
        RequestError: No pair, a text without ``=``, an empty column name or
            value, or a column given twice.
    """
    if not pairs:
        raise RequestError(
            f"no key given for the erasure from dataset {dataset!r}; give "
            "--where COLUMN=VALUE, once per key column"
        )
    keys: dict[str, str] = {}
    for pair in pairs:
        name, sign, value = pair.partition("=")
        if not sign or not name:
            # The text may be the value alone, so the message leaves it out.
            raise RequestError(
                f"a key for the erasure from dataset {dataset!r} has no column "
                "name or no '='; write each key as COLUMN=VALUE, such as "
                "tailnum=N14228"
            )
        if not value:
            raise RequestError(
                f"column {name!r} has an empty value in the erasure from dataset "
                f"{dataset!r}; give the subject's value, such as {name}=N14228"
            )
        if name in keys:
            raise RequestError(
                f"column {name!r} is given twice for the erasure from dataset "
                f"{dataset!r}; give each key column once"
            )
        keys[name] = value
    return Subject(dataset, tuple(keys.items()))


def check_subject_keys(subject: Subject, declared: Sequence[str]) -> None:
    """Check the key columns against the dataset's declared `subject_keys`.

    Raises:
        RequestError: `declared` is not empty and a key column is not in it.
    """
    if not declared:
        return
    for name in subject.columns:
        if name not in declared:
            raise RequestError(
                f"column {name!r} is not a subject key of dataset "
                f"{subject.dataset!r}; [datasets.{subject.dataset}] subject_keys "
                f"declares {', '.join(declared)}, so erase by one of those"
            )


def subject_from_keys(dataset: str, keys: Mapping[str, str]) -> Subject:
    """Return the subject of a mapping of column names to values."""
    return parse_subject(dataset, [f"{name}={value}" for name, value in keys.items()])


def typed_sql(subject: Subject, schema: Mapping[str, str]) -> str:
    """Return a SQL condition true for dataset rows of `schema` that match.

    Each value is cast to its column's recorded type, so ``2013`` matches the
    BIGINT 2013 and ``2013-01-01`` the DATE.

    Raises:
        RequestError: A key column is not in `schema`.
    """
    clauses = []
    for name, value in subject.keys:
        if name not in schema:
            raise RequestError(
                f"column {name!r} is not in dataset {subject.dataset!r}; its "
                f"columns are {', '.join(schema)}"
            )
        # TRY_CAST: an encrypted key's text matches no older plaintext
        # version of another type, rather than failing on it.
        cast = f"TRY_CAST({literal(value)} AS {schema[name]})"
        clauses.append(f"{ident(name)} = {cast}")
    return " AND ".join(clauses)


def check_values(
    db: duckdb.DuckDBPyConnection, subject: Subject, schema: Mapping[str, str]
) -> None:
    """Check that every key value reads as its column's recorded type.

    The messages leave the values out, because the daemon logs every error
    it returns.

    Raises:
        RequestError: A key column is not in `schema`, or its value does not
            read as the column's type.
    """
    typed_sql(subject, schema)
    for name, value in subject.keys:
        kind = schema[name]
        (cast,) = db.execute(f"SELECT TRY_CAST(? AS {kind})", [value]).fetchall()[0]
        if cast is None:
            raise RequestError(
                f"the value given for column {name!r} is not a valid {kind}, the "
                f"column's type in dataset {subject.dataset!r}; give a {kind} value"
            )


def json_text(value: Any) -> str:
    """Return the text a JSON value is compared by: a string as is, others as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _json_path(name: str) -> str:
    return "$." + json.dumps(name)
