"""Configuration of datasets, contracts, feature views and the ingest buffer."""

from __future__ import annotations

from pathlib import Path

import pytest

import appliance.features
import appliance.storage
from appliance.config import load_config
from appliance.errors import ConfigError

BASE = """
[storage]
home = "home"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(BASE + text)
    return path


def test_dataset_contract_parsed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[datasets.flights]
partition_by = "month"
keep_versions = 3
date_formats = ["%d-%b-%Y"]

[datasets.flights.contract]
unique_key = ["id"]

[datasets.flights.contract.columns.carrier]
allowed = ["UA", "AA"]
nullable = false

[datasets.flights.contract.columns.month]
""",
    )

    config = load_config(path)

    flights = config.dataset("flights")
    assert flights.partition_by == "month"
    assert flights.keep_versions == 3
    assert flights.date_formats == ("%d-%b-%Y",)
    assert flights.contract is not None
    assert flights.contract.unique_key == ("id",)
    assert flights.contract.columns["carrier"].allowed == ("UA", "AA")
    assert flights.contract.columns["carrier"].nullable is False
    assert config.dataset("other").partition_by is None


def test_unknown_contract_key_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, '[datasets.d.contract.columns.x]\nkind = "BIGINT"\n')

    with pytest.raises(
        ConfigError, match=r"unknown key 'datasets.d.contract.columns.x.kind'"
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        (
            'regex = "["',
            "regex '[' is not a valid RE2 regular expression: Invalid Input "
            "Error: missing ]: [",
        ),
        (
            "min = 10\nmax = 1",
            "min 10 is above max 1, so every value would be quarantined; swap them",
        ),
        (
            "allowed = []",
            "allowed is empty, so every value would be quarantined; list the "
            "allowed values or remove the key",
        ),
    ],
    ids=["regex", "range", "allowed"],
)
def test_contract_rule_rejected(tmp_path: Path, rule: str, reason: str) -> None:
    path = write(tmp_path, f"[datasets.d.contract.columns.x]\n{rule}\n")

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert str(raised.value) == (
        f"invalid 'datasets.d.contract.columns.x' in {path}: {reason}"
    )


def _column(rule: str) -> str:
    return f"[datasets.readings.contract.columns.celsius]\n{rule}\n"


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (
            _column('type = "NOTATYPE"'),
            [
                "[datasets.readings.contract.columns.celsius] type = 'NOTATYPE' in ",
                "is not a type that contracts support (Catalog Error: Type with "
                "name NOTATYPE does not exist!)",
                "use one of TINYINT, SMALLINT, INTEGER, BIGINT,",
                "DECIMAL, BOOLEAN, VARCHAR, DATE, TIME, TIMESTAMP, TIMESTAMPTZ,",
                "such as INT or TEXT",
            ],
        ),
        (
            _column('type = "INTEGER[]"'),
            ["type = 'INTEGER[]' in ", "is not a type that contracts support;"],
        ),
        (
            _column('type = "DECIMAL(50,2)"'),
            ["type = 'DECIMAL(50,2)'", "width must be between 1 and 38"],
        ),
        (
            _column('type = "DATE"\ndate_format = "%Q"'),
            [
                "[datasets.readings.contract.columns.celsius] date_format '%Q' in ",
                "is not a valid strptime format: Failed to parse format "
                "specifier %Q: Unrecognized format for strftime/strptime: %Q",
                "as in '%d.%m.%Y'",
            ],
        ),
        (
            _column('type = "DATE"\ndate_format = ["%d.%m.%Y", "%Q"]'),
            [
                "[datasets.readings.contract.columns.celsius] date_format '%Q' in ",
                "is not a valid strptime format: Failed to parse format specifier %Q",
            ],
        ),
        (
            _column('type = "DATE"\ndate_format = []'),
            [
                "invalid 'datasets.readings.contract.columns.celsius' in ",
                "date_format is an empty list, so no value would parse; list the "
                "strptime formats, such as ['%d.%m.%Y', '%d/%m/%Y'], or remove "
                "the key",
            ],
        ),
        (
            _column('type = "DATE"\ndate_format = ["%d.%m.%Y", "%d.%m.%Y"]'),
            [
                "date_format lists '%d.%m.%Y' more than once; list each strptime "
                "format once, in the order they are tried",
            ],
        ),
        (
            _column('type = "DATE"\ndate_format = 5'),
            [
                "'datasets.readings.contract.columns.celsius.date_format' in ",
                "must be a string or a list of strings, got 5",
            ],
        ),
        (
            _column('type = "DATE"\ndate_format = ["%d.%m.%Y", 5]'),
            ["date_format' in ", "must be a string, got 5"],
        ),
        (
            _column('type = "VARCHAR"\nmin = 1'),
            [
                "[datasets.readings.contract.columns.celsius] min = 1 in ",
                "applies only to the numeric types (TINYINT,",
                "FLOAT, DOUBLE, DECIMAL), and the column's type is VARCHAR",
                "remove min, or use allowed or regex",
            ],
        ),
        (
            _column('type = "DATE"\nmax = 3.5'),
            ["celsius] max = 3.5 in ", "the column's type is DATE; remove max"],
        ),
        (
            '[datasets.readings]\ndelimiter = ","\ndecimal_separator = ","\n',
            [
                "[datasets.readings] delimiter = ',' and decimal_separator = ',' in ",
                "are the same character, so a number such as 1,5 would read as "
                "two fields; set delimiter = ';'",
            ],
        ),
        (
            '[datasets.readings]\ndate_formats = ["%d.%m.%Y", "%Q"]\n',
            [
                "[datasets.readings] date_formats '%Q' in ",
                "is not a valid strptime format: Failed to parse format specifier %Q",
            ],
        ),
        (
            '[datasets.readings]\ndate_formats = ["%Y-%m-%"]\n',
            ["date_formats '%Y-%m-%' in ", "Trailing format character %"],
        ),
        (
            "[datasets.readings]\nmax_line_bytes = 0\n",
            [
                "[datasets.readings] max_line_bytes = 0 in ",
                "is out of range; set a number of bytes from 1 to 1099511627776",
            ],
        ),
        (
            "[datasets.readings]\nmax_line_bytes = 1099511627777\n",
            ["max_line_bytes = 1099511627777 in ", "is out of range"],
        ),
        (
            '[datasets.readings]\nmax_line_bytes = "2MB"\n',
            ["'datasets.readings.max_line_bytes' in ", "got '2MB'"],
        ),
    ],
    ids=[
        "unknown-type",
        "nested-type",
        "decimal-width",
        "date-format",
        "date-format-list",
        "empty-format-list",
        "repeated-format",
        "format-not-text",
        "format-item-not-text",
        "min-on-text",
        "max-on-date",
        "delimiter",
        "date-formats",
        "trailing-percent",
        "max-line-zero",
        "max-line-huge",
        "max-line-text",
    ],
)
def test_bad_dataset_value_rejected(
    tmp_path: Path, text: str, parts: list[str]
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    message = str(raised.value)
    assert str(path) in message
    for part in parts:
        assert part in message


def test_max_line_bytes_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "[datasets.readings]\nmax_line_bytes = 4096\n")

    config = load_config(path)

    assert config.dataset("readings").max_line_bytes == 4096
    assert config.dataset("other").max_line_bytes is None


def test_date_format_list_loads(tmp_path: Path) -> None:
    rules = {
        "mixed": 'type = "DATE"\ndate_format = ["%d.%m.%Y", "%d/%m/%Y"]',
        "single": 'type = "DATE"\ndate_format = "%d.%m.%Y"',
        "one_item": 'type = "DATE"\ndate_format = ["%d.%m.%Y"]',
    }
    text = "".join(
        f"[datasets.r.contract.columns.{name}]\n{rule}\n"
        for name, rule in rules.items()
    )

    contract = load_config(write(tmp_path, text)).dataset("r").contract

    assert contract is not None
    columns = contract.columns
    assert columns["mixed"].date_format == ("%d.%m.%Y", "%d/%m/%Y")
    assert columns["mixed"].date_formats == ("%d.%m.%Y", "%d/%m/%Y")
    assert columns["single"].date_format == "%d.%m.%Y"
    assert columns["single"].date_formats == ("%d.%m.%Y",)
    assert columns["one_item"].date_format == "%d.%m.%Y"
    assert columns["one_item"] == columns["single"]


def test_partition_outside_partial_contract_loads(tmp_path: Path) -> None:
    text = '[datasets.readings]\npartition_by = "region"\n' + _column("")
    path = write(tmp_path, text)

    config = load_config(path)

    assert config.dataset("readings").partition_by == "region"


def test_contract_type_aliases_accepted(tmp_path: Path) -> None:
    columns = {
        "a": 'type = "int"',
        "b": 'type = "TEXT"',
        "c": 'type = "DECIMAL(10, 2)"\nmin = 0',
        "d": 'type = "timestamp with time zone"\ndate_format = "%d.%m.%Y %H:%M"',
        "e": 'type = "TIMESTAMPTZ"',
        "f": 'type = "BIGINT"\nmax = 5',
    }
    text = '[datasets.r]\npartition_by = "a"\ndate_formats = ["%d-%b-%Y"]\n'
    for name, rule in columns.items():
        text += f"[datasets.r.contract.columns.{name}]\n{rule}\n"
    path = write(tmp_path, text)

    config = load_config(path)

    contract = config.dataset("r").contract
    assert contract is not None
    assert contract.columns["a"].type == "int"
    assert contract.columns["c"].min == 0


def test_contract_numeric_types_match_storage() -> None:
    from appliance._contract_checks import CONTRACT_TYPES, NUMERIC_TYPES
    from appliance.storage._types import FLOAT_TYPES, INTEGER_TYPES

    assert set(NUMERIC_TYPES) == {*INTEGER_TYPES, *FLOAT_TYPES, "DECIMAL"}
    assert set(NUMERIC_TYPES) <= set(CONTRACT_TYPES)


def test_keep_versions_below_one_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "[datasets.d]\nkeep_versions = 0\n")

    with pytest.raises(ConfigError, match="keep_versions must be at least 1, got 0"):
        load_config(path)


def test_empty_null_values_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "[datasets.d]\nnull_values = []\n")

    with pytest.raises(ConfigError, match="null_values must list at least one"):
        load_config(path)


def test_undeclared_feature_view_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[models.m]
dataset = "d"
target = "y"
task = "classification"
feature_views = ["weather"]
""",
    )

    with pytest.raises(
        ConfigError, match="feature view 'weather' of 'models.m'.*not declared"
    ):
        load_config(path)


def test_timestamped_view_needs_event_time(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[feature_views.weather]
sql = "SELECT * FROM weather"
entities = ["origin"]
timestamp = "time_hour"

[models.m]
dataset = "d"
target = "y"
task = "classification"
feature_views = ["weather"]
""",
    )

    with pytest.raises(ConfigError, match="needs 'event_timestamp'"):
        load_config(path)


def test_invalid_ttl_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[feature_views.weather]
sql = "SELECT * FROM weather"
entities = ["origin"]
timestamp = "time_hour"
ttl = "3 hours"
""",
    )

    with pytest.raises(ConfigError, match="invalid duration '3 hours'"):
        load_config(path)


def test_default_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPLIANCE_CONFIG", raising=False)
    config = load_config()

    model = config.model("flights_late")
    assert model.feature_views == ("weather", "planes")
    assert config.feature_views["weather"].ttl_seconds == 3 * 3600
    assert config.dataset("flights").partition_by == "month"
    assert config.dataset("flights").sensitive == ("tailnum",)
    assert config.dataset("planes").sensitive == ("tailnum",)


@pytest.mark.parametrize("package", [appliance.storage, appliance.features])
def test_public_names_exported(package: object) -> None:
    for name in package.__all__:  # type: ignore[attr-defined]
        assert hasattr(package, name), name
