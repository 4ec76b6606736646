"""CSV records with too few or too many fields: one quarantine entry each.

DuckDB stores a reject per missing or extra field of such a record, and each
entry must stay on the line that contains its value, so the counts add up to
the file's data rows.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.storage import Catalog, ingest

_READINGS = ContractConfig(
    unique_key=["sensor"],
    columns={
        "sensor": ColumnRule(type="VARCHAR", nullable=False, regex="S-[0-9]{4}"),
        "celsius": ColumnRule(type="DOUBLE", min=-60, max=150),
    },
)
_READINGS_FILE = (
    "sensor,taken_on,celsius,status\n"
    "S-0012,07.01.2024\n"
    "S-0001,01.01.2024,20.5,ok\n"
    "S-00123,08.01.2024,5,ok\n"
    "S-0002,01.01.2024,999,ok\n"
)
_READINGS_CONFIG = """
[datasets.readings]
date_formats = ["%d.%m.%Y"]

[datasets.readings.contract]
unique_key = ["sensor"]

[datasets.readings.contract.columns.sensor]
type = "VARCHAR"
nullable = false
regex = "S-[0-9]{4}"

[datasets.readings.contract.columns.celsius]
type = "DOUBLE"
min = -60
max = 150
"""


def quarantine_of(catalog: Catalog) -> list[tuple]:
    return catalog.db.execute(
        "SELECT line, column_name, value, reason FROM quarantine "
        "ORDER BY line, column_name"
    ).fetchall()


def test_short_row_one_entry(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("r2.csv", _READINGS_FILE)
    settings = DatasetConfig("readings", date_formats=["%d.%m.%Y"], contract=_READINGS)

    result = ingest(catalog, "readings", [path], settings=settings)

    assert result.accepted == 1
    assert result.quarantined == 3
    assert quarantine_of(catalog) == [
        (
            2,
            "celsius",
            "S-0012,07.01.2024",
            "too few fields (2; the header has 4 columns)",
        ),
        (4, "sensor", "S-00123", 'value "S-00123" does not match S-[0-9]{4}'),
        (5, "celsius", "999", 'value "999" is above the maximum 150'),
    ]


def test_long_row_one_entry(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("long.csv", "a,b,c,d\n1,x,y,z\n2,x,y,z,v,w\n3,x,y,z\n50,x,y,z\n")
    contract = ContractConfig(columns={"a": ColumnRule(type="BIGINT", max=10)})

    result = ingest(
        catalog, "long", [path], settings=DatasetConfig("long", contract=contract)
    )

    assert result.accepted == 2
    assert result.quarantined == 2
    assert quarantine_of(catalog) == [
        (3, None, "2,x,y,z,v,w", "too many fields (6; the header has 4 columns)"),
        (5, "a", "50", 'value "50" is above the maximum 10'),
    ]


def test_row_of_two_broken_rules_counted_once(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("two.csv", _READINGS_FILE + "S-01,02.01.2024,200,ok\n")
    settings = DatasetConfig("readings", date_formats=["%d.%m.%Y"], contract=_READINGS)

    result = ingest(catalog, "readings", [path], settings=settings)

    entries = quarantine_of(catalog)
    assert result.accepted == 1
    assert result.quarantined == 4
    assert [(line, column) for line, column, _, _ in entries] == [
        (2, "celsius"),
        (4, "sensor"),
        (5, "celsius"),
        (6, "celsius"),
        (6, "sensor"),
    ]


_WIDE_HEADER = ",".join(f"c{i}" for i in range(1, 10))


def _wide_file(rows: int, gaps: bool) -> tuple[str, int, int]:
    """Return a 9-column CSV text with short, long and out-of-range rows.

    With `gaps`, blank lines and a quoted field with a line break move the
    later rows down, so each record's line is found by scanning the file.
    Returns the text, its data rows and the rows with a broken rule.
    """
    lines = [_WIDE_HEADER]
    bad = 0
    for n in range(1, rows + 1):
        fields = [str(n)] + [f"v{n}_{i}" for i in range(2, 10)]
        if n % 13 == 0:
            fields = fields[:3]
        elif n % 17 == 0:
            fields += ["extra", "more"]
        elif n % 11 == 0:
            fields[0] = str(10_000 + n)
        if gaps and n % 50 == 0:
            lines.append("")
        if gaps and n % 70 == 0 and len(fields) == 9:
            fields[4] = f'"two\nlines {n}"'
        bad += n % 11 == 0 or n % 13 == 0 or n % 17 == 0
        lines.append(",".join(fields))
    return "\n".join(lines) + "\n", rows, bad


@pytest.mark.parametrize("gaps", [False, True], ids=["plain", "gaps"])
def test_ragged_rows_entries_on_their_lines(
    catalog: Catalog, write_file: WriteFile, gaps: bool
) -> None:
    text, rows, bad = _wide_file(400, gaps)
    path = write_file("wide.csv", text)
    contract = ContractConfig(columns={"c1": ColumnRule(type="BIGINT", max=1_000)})

    result = ingest(
        catalog, "wide", [path], settings=DatasetConfig("wide", contract=contract)
    )

    entries = quarantine_of(catalog)
    file_lines = text.split("\n")
    assert result.accepted + result.quarantined == rows
    assert result.quarantined == bad
    assert len(entries) == bad
    assert len({line for line, *_ in entries}) == bad
    for line, _, value, _ in entries:
        assert value.split("\n")[0] in file_lines[line - 1], (line, value)
    short = [e for e in entries if e[3].startswith("too few fields")]
    assert {e[3] for e in short} == {"too few fields (3; the header has 9 columns)"}
    long = [e for e in entries if e[3].startswith("too many fields")]
    assert {e[3] for e in long} == {"too many fields (11; the header has 9 columns)"}


def test_short_row_counts_from_cli(
    tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(_READINGS_CONFIG)
    path = tmp_path / "r2.csv"
    path.write_text(_READINGS_FILE)

    ingested = cli(config, tmp_path / "home", "ingest", "readings", str(path))
    listed = cli(
        config, tmp_path / "home", "datasets", "quarantine", "readings", "--json"
    )

    assert ingested.returncode == 0, ingested.stderr
    assert "rows=1 mode=replace accepted=1 quarantined=3 " in ingested.stdout
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(row["line"], row["column"]) for row in rows] == [
        (2, "celsius"),
        (4, "sensor"),
        (5, "celsius"),
    ]
