"""Configuration: `config.toml` parsed once into frozen, validated dataclasses.

The file is chosen by ``--config PATH``, else ``APPLIANCE_CONFIG``, else the
`config.toml` beside the package. ``APPLIANCE_HOME`` overrides ``[storage] home``.
Environment variables are read in `load_config` and nowhere else.

A key the schema does not know, a value of the wrong type or an impossible
value raises `ConfigError` naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from appliance.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.toml"

Task = Literal["classification", "regression"]

ALGORITHMS: dict[str, tuple[str, ...]] = {
    "classification": ("lightgbm", "random_forest", "logistic_regression"),
    "regression": ("lightgbm", "random_forest", "linear_regression"),
}


@dataclass(frozen=True)
class StorageConfig:
    """Where the appliance keeps its catalog, lake and models."""

    home: Path = Path("~/.local/share/edge-appliance")
    """Folder for everything the appliance stores; created on first use."""


@dataclass(frozen=True)
class ServerConfig:
    """The daemon's HTTP listener and request limits."""

    host: str = "127.0.0.1"
    """Address to bind; keep the loopback address unless a proxy fronts it."""
    port: int = 8765
    """TCP port to listen on."""
    max_rows: int = 10_000
    """Most rows accepted in one prediction request."""
    max_body_bytes: int = 10_000_000
    """Largest request body accepted, in bytes."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be within 0..65535, got {self.port}")
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {self.max_rows}")
        if self.max_body_bytes < 1024:
            raise ValueError(
                f"max_body_bytes must be at least 1024, got {self.max_body_bytes}"
            )


@dataclass(frozen=True)
class SplitConfig:
    """How the labelled rows are split into training and holdout sets."""

    method: Literal["random", "stratified", "time"] = "random"
    """``random``, ``stratified`` on the target, or ``time`` ordered by `column`."""
    column: str | None = None
    """Column that orders rows for a ``time`` split."""
    test_size: float = 0.2
    """Share of rows held out for evaluation and the parity check."""
    seed: int = 0
    """Seed of the random and stratified splits and of the estimators."""

    def __post_init__(self) -> None:
        if not 0.0 < self.test_size < 1.0:
            raise ValueError(f"test_size must be within (0, 1), got {self.test_size}")
        if self.method == "time" and not self.column:
            raise ValueError("method 'time' needs 'column', the column to order by")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Convert a duration such as ``90s``, ``15m``, ``3h`` or ``2d`` to seconds.

    Raises:
        ValueError: The text is not a whole number followed by s, m, h or d.
    """
    number, unit = text[:-1], text[-1:]
    if unit not in _DURATION_UNITS or not number.isdigit():
        raise ValueError(
            f"invalid duration {text!r}; write a whole number followed by s, m, h "
            "or d, such as '3h'"
        )
    return int(number) * _DURATION_UNITS[unit]


@dataclass(frozen=True)
class ColumnRule:
    """Contract of one column, declared as ``[datasets.NAME.contract.columns.COL]``."""

    type: str | None = None
    """DuckDB type such as ``BIGINT``, ``DOUBLE``, ``VARCHAR``, ``DATE``."""
    nullable: bool = True
    """Whether a missing value is allowed."""
    min: float | None = None
    """Smallest allowed value of a numeric column."""
    max: float | None = None
    """Largest allowed value of a numeric column."""
    allowed: tuple[str, ...] | None = None
    """Allowed values, compared as text."""
    regex: str | None = None
    """Regular expression that every text value must match in full."""
    date_format: str | None = None
    """strptime format of a DATE or TIMESTAMP column written in another form."""


@dataclass(frozen=True)
class ContractConfig:
    """Contract of a dataset: the rules every ingested row must keep."""

    columns: dict[str, ColumnRule] = field(default_factory=dict)
    """Rules by column name."""
    unique_key: tuple[str, ...] = ()
    """Columns whose values together identify a row; a repeated key is rejected."""


@dataclass(frozen=True)
class DatasetConfig:
    """Settings of one dataset, declared as ``[datasets.NAME]``."""

    name: str
    """Dataset name, taken from the table key."""
    partition_by: str | None = None
    """Column whose values name the Hive partitions of each version."""
    keep_versions: int | None = None
    """Newest versions kept; older ones are deleted after an ingest. None keeps all."""
    delimiter: str | None = None
    """CSV delimiter; detected when omitted."""
    decimal_separator: str | None = None
    """Decimal separator of CSV numbers, ``.`` or ``,``; detected when omitted."""
    encoding: str = "utf-8"
    """Text encoding of CSV files: ``utf-8``, ``latin-1`` or ``utf-16``."""
    date_formats: tuple[str, ...] = ()
    """strptime formats tried on text columns besides ISO 8601, such as ``%d-%b-%Y``."""
    null_values: tuple[str, ...] = ("", "NA", "null", "NULL")
    """CSV values read as missing."""
    contract: ContractConfig | None = None
    """Declared contract; the first version's schema is used when omitted."""

    def __post_init__(self) -> None:
        if self.keep_versions is not None and self.keep_versions < 1:
            raise ValueError(
                f"keep_versions must be at least 1, got {self.keep_versions}"
            )
        if self.decimal_separator not in (None, ".", ","):
            raise ValueError(
                f"decimal_separator must be '.' or ',', got {self.decimal_separator!r}"
            )
        if self.encoding not in ("utf-8", "latin-1", "utf-16"):
            raise ValueError(
                f"encoding must be utf-8, latin-1 or utf-16, got {self.encoding!r}"
            )
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {self.delimiter!r}")


@dataclass(frozen=True)
class FeatureViewConfig:
    """A feature view, declared as ``[feature_views.NAME]``.

    The SQL selects from datasets by name (their latest versions). A view with
    a `timestamp` is joined as of the label time; one without is static.
    """

    name: str
    """View name, taken from the table key."""
    sql: str
    """Query over datasets that returns the entity keys, timestamp and features."""
    entities: tuple[str, ...]
    """Entity key columns, such as ``origin`` or ``tailnum``."""
    timestamp: str | None = None
    """Event time column of the feature values; None for a static view."""
    ttl: str | None = None
    """Age beyond which a value is treated as missing, such as ``3h``."""
    delay: str = "0s"
    """Time after its event time before a value is available, such as ``1h``."""
    derive: dict[str, str] = field(default_factory=dict)
    """Columns computed after the join by SQL expressions over the view and the
    label row, such as ``plane_age = "year(time_hour) - year_built"``."""

    def __post_init__(self) -> None:
        if not self.entities:
            raise ValueError("entities must name at least one key column")
        if self.ttl is not None:
            parse_duration(self.ttl)
        parse_duration(self.delay)
        if self.timestamp is None and (self.ttl is not None or self.delay != "0s"):
            raise ValueError("ttl and delay need 'timestamp', the event time column")

    @property
    def ttl_seconds(self) -> int | None:
        """Time-to-live in seconds, or None."""
        return None if self.ttl is None else parse_duration(self.ttl)

    @property
    def delay_seconds(self) -> int:
        """Availability delay in seconds."""
        return parse_duration(self.delay)


@dataclass(frozen=True)
class IngestConfig:
    """The HTTP ingest buffer of the daemon."""

    flush_rows: int = 10_000
    """Buffered rows of one dataset that trigger a flush to a new version."""
    flush_seconds: float = 60.0
    """Age of the oldest buffered row that triggers a flush, in seconds."""

    def __post_init__(self) -> None:
        if self.flush_rows < 1:
            raise ValueError(f"flush_rows must be at least 1, got {self.flush_rows}")
        if self.flush_seconds <= 0:
            raise ValueError(f"flush_seconds must be above 0, got {self.flush_seconds}")


@dataclass(frozen=True)
class ModelConfig:
    """One model declared as ``[models.NAME]``."""

    name: str
    """Model name, taken from the table key."""
    dataset: str
    """Dataset whose latest version the model is trained on."""
    target: str
    """Column to predict, possibly one defined in `derive`."""
    task: Task
    """``classification`` or ``regression``."""
    algorithm: str = "lightgbm"
    """Estimator; the allowed names depend on `task`."""
    features: tuple[str, ...] | None = None
    """Input columns; every other column of the dataset when omitted."""
    categorical: tuple[str, ...] = ()
    """Features encoded as categories; other features are numeric."""
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the estimator."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Holdout split."""
    where: str | None = None
    """SQL predicate that selects the training rows, such as ``month <= 3``."""
    derive: dict[str, str] = field(default_factory=dict)
    """Columns computed at training by SQL expressions, such as a label."""
    feature_views: tuple[str, ...] = ()
    """Feature views joined to the dataset rows; the daemon fills their columns."""
    event_timestamp: str | None = None
    """Column of the label time that timestamped feature views are joined as of."""

    def __post_init__(self) -> None:
        allowed = ALGORITHMS[self.task]
        if self.algorithm not in allowed:
            raise ValueError(
                f"algorithm {self.algorithm!r} is not available for task "
                f"{self.task!r}; use one of {', '.join(allowed)}"
            )
        if self.features is not None and self.target in self.features:
            raise ValueError(f"target {self.target!r} is also listed in features")
        derived_features = set(self.features or ()) & set(self.derive)
        if derived_features:
            # NOTE: the daemon has no SQL engine on the request path yet, so a
            # derived column can define the target or a filter but not an input.
            raise ValueError(
                f"derived columns {sorted(derived_features)} cannot be features; "
                "add them to the dataset instead"
            )
        if self.features is not None:
            unknown = set(self.categorical) - set(self.features)
            if unknown:
                raise ValueError(
                    f"categorical columns {sorted(unknown)} are not in features"
                )


@dataclass(frozen=True)
class Config:
    """The whole configuration of one appliance."""

    path: Path
    """File the configuration was read from."""
    storage: StorageConfig = field(default_factory=StorageConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    models: dict[str, ModelConfig] = field(default_factory=dict)
    log_level: str = "INFO"
    """Lowest level of log records written to stderr."""
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    """Dataset settings by name; a dataset not declared uses the defaults."""
    feature_views: dict[str, FeatureViewConfig] = field(default_factory=dict)
    """Feature views by name."""
    ingest: IngestConfig = field(default_factory=IngestConfig)
    """HTTP ingest buffer."""

    def dataset(self, name: str) -> DatasetConfig:
        """Return the settings of dataset `name`, the defaults when undeclared."""
        return self.datasets.get(name) or DatasetConfig(name=name)

    def model(self, name: str) -> ModelConfig:
        """Return the model declared as ``[models.NAME]``."""
        try:
            return self.models[name]
        except KeyError:
            declared = ", ".join(sorted(self.models)) or "none"
            raise ConfigError(
                f"model {name!r} is not declared in {self.path}; "
                f"declared models: {declared}"
            ) from None


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate the configuration file.

    Args:
        path: File to read; ``APPLIANCE_CONFIG`` or the default file when None.

    Raises:
        ConfigError: The file is missing, is not TOML or breaks the schema.
    """
    source = Path(path or os.environ.get("APPLIANCE_CONFIG") or DEFAULT_CONFIG)
    try:
        table = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {source} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None

    known = {"storage", "server", "models", "log_level", "datasets"}
    unknown = set(table) - known - {"feature_views", "ingest"}
    if unknown:
        raise ConfigError(f"unknown key {sorted(unknown)[0]!r} in {source}")
    storage = _build(StorageConfig, table.get("storage", {}), "storage", source)
    server = _build(ServerConfig, table.get("server", {}), "server", source)
    models = _build_named(ModelConfig, table.get("models", {}), "models", source)
    log_level = _check_type(table.get("log_level", "INFO"), str, "log_level", source)
    datasets = _build_named(
        DatasetConfig, table.get("datasets", {}), "datasets", source
    )
    views = _build_named(
        FeatureViewConfig, table.get("feature_views", {}), "feature_views", source
    )
    ingest = _build(IngestConfig, table.get("ingest", {}), "ingest", source)
    _check_feature_views(models, views, source)

    home = Path(os.environ.get("APPLIANCE_HOME") or storage.home).expanduser()
    if not home.is_absolute():
        base = Path.cwd() if "APPLIANCE_HOME" in os.environ else source.parent
        home = base / home
    storage = dataclasses.replace(storage, home=home.resolve())
    return Config(
        source.resolve(),
        storage,
        server,
        models,
        log_level,
        datasets,
        views,
        ingest,
    )


def _build_named(cls: type[Any], table: Any, where: str, source: Path) -> dict:
    """Build one `cls` per sub-table of ``[WHERE.NAME]``, named by its key."""
    if not isinstance(table, dict):
        raise ConfigError(f"'{where}' in {source} must be a table of [{where}.NAME]")
    built = {}
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"'{where}.{name}' in {source} must be a table")
        built[name] = _build(cls, {"name": name, **entry}, f"{where}.{name}", source)
    return built


def _check_feature_views(
    models: dict[str, ModelConfig],
    views: dict[str, FeatureViewConfig],
    source: Path,
) -> None:
    """Check that every view a model names is declared and has its label time."""
    for model in models.values():
        for view in model.feature_views:
            if view not in views:
                declared = ", ".join(sorted(views)) or "none"
                raise ConfigError(
                    f"feature view {view!r} of 'models.{model.name}' in {source} is "
                    f"not declared; declared views: {declared}"
                )
            if views[view].timestamp and not model.event_timestamp:
                raise ConfigError(
                    f"'models.{model.name}' in {source} joins the timestamped view "
                    f"{view!r} and needs 'event_timestamp', the label time column"
                )


def _build(cls: type[Any], table: Any, where: str, source: Path) -> Any:
    """Build dataclass `cls` from a TOML table, checking keys and types."""
    if not isinstance(table, dict):
        raise ConfigError(f"'{where}' in {source} must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(table) - names
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(
            f"unknown key '{where}.{key}' in {source}; known keys: "
            f"{', '.join(sorted(names - {'name'}))}"
        )
    values = {}
    for name, value in table.items():
        key = where if name == "name" else f"{where}.{name}"
        values[name] = _convert(value, hints[name], key, source)
    try:
        return cls(**values)
    except TypeError as exc:
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(
                f"missing key '{where}.{missing[0]}' in {source}"
            ) from None
        raise ConfigError(f"invalid '{where}' in {source}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"invalid '{where}' in {source}: {exc}") from None


def _convert(value: Any, hint: Any, key: str, source: Path) -> Any:
    """Check `value` against type `hint` and convert lists and tables."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key, source)
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(
                f"invalid value {value!r} for '{key}' in {source}; use one of {allowed}"
            )
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, source)
    if origin is tuple:
        items = _check_type(value, list, key, source)
        return tuple(_check_type(item, args[0], key, source) for item in items)
    if origin is dict:
        table = _check_type(value, dict, key, source)
        if dataclasses.is_dataclass(args[1]):
            return {
                sub: _build(args[1], item, f"{key}.{sub}", source)
                for sub, item in table.items()
            }
        if args[1] is not Any:
            for sub, item in table.items():
                _check_type(item, args[1], f"{key}.{sub}", source)
        return dict(table)
    if hint is Path:
        return Path(_check_type(value, str, key, source))
    return _check_type(value, hint, key, source)


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


def _check_type(value: Any, expected: type[Any], key: str, source: Path) -> Any:
    ok = isinstance(value, expected) and not (
        expected in (int, float) and isinstance(value, bool)
    )
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        wanted = _TYPE_NAMES.get(expected, expected.__name__)
        raise ConfigError(f"'{key}' in {source} must be {wanted}, got {value!r}")
    return value
