"""Configuration: `config.toml` parsed once into frozen, validated dataclasses.

The file is chosen by ``--config PATH``, else ``APPLIANCE_CONFIG``, else the
`config.toml` beside the package. ``APPLIANCE_HOME`` overrides ``[storage] home``,
and ``APPLIANCE_API_KEY`` sets `Config.api_key`. Environment variables are read
in `load_config` and nowhere else.

A key the schema does not know, a value of the wrong type or an impossible
value raises `ConfigError` naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from appliance._contract_checks import check_datasets
from appliance._sensitive_checks import check_sensitive_columns
from appliance.errors import ConfigError, IngestError, shown

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.toml"

Task = Literal["classification", "regression"]

ALGORITHMS: dict[str, tuple[str, ...]] = {
    "classification": ("lightgbm", "random_forest", "logistic_regression"),
    "regression": ("lightgbm", "random_forest", "linear_regression"),
}


@dataclass(frozen=True)
class StorageConfig:
    """Storage location of the catalog, lake and models."""

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
    micro_batch: bool = True
    """Combine concurrent prediction requests into one onnxruntime call."""
    micro_batch_max_rows: int = 256
    """Maximum rows in one combined onnxruntime call."""
    micro_batch_max_wait_ms: float = 1.0
    """Maximum wait for requests already being received to join a batch, in
    milliseconds. The first request of an idle model never waits."""
    session_threads: int = 0
    """Threads that run onnxruntime sessions; 0 uses every CPU the process may
    run on."""
    catalog_memory_mb: int = 0
    """DuckDB ``memory_limit`` of the daemon's catalog connection, in MB; 0
    keeps DuckDB's default of 80% of the machine's RAM. Above the limit DuckDB
    evicts cached table blocks, which are read again from the file, and spills
    large joins and sorts to a temporary folder beside the catalog file.
    64 lowered the RSS after load from about 297 to 245 MB, but a 1,000,000-row
    Arrow request took 17.5 s instead of 9.5 s, so the default is no limit."""
    malloc_arenas: int = 2
    """glibc malloc arenas of the daemon (``M_ARENA_MAX``); 0 keeps glibc's
    default of 8 per CPU. Fewer arenas keep less freed memory."""
    malloc_trim_seconds: float = 60.0
    """Period at which the daemon returns freed glibc heap memory to the
    system with ``malloc_trim``, in seconds; 0 turns it off."""
    background_nice: int = 3
    """Added to the nice value of the daemon's background threads on Linux
    (DuckDB's workers, the prediction log writer, the monitors, the ingest
    buffer), so that a request thread that wakes up runs before them. 0
    leaves them at the process's priority. At 10 the monitors fell behind a
    core kept busy by requests and their queue dropped rows, and at 3 they
    did not."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be within 0..65535, got {self.port}")
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {self.max_rows}")
        if self.max_body_bytes < 1024:
            raise ValueError(
                f"max_body_bytes must be at least 1024, got {self.max_body_bytes}"
            )
        if self.micro_batch_max_rows < 1:
            raise ValueError(
                "micro_batch_max_rows must be at least 1, got "
                f"{self.micro_batch_max_rows}"
            )
        if not 0.0 <= self.micro_batch_max_wait_ms <= 1000.0:
            raise ValueError(
                "micro_batch_max_wait_ms must be within 0..1000, got "
                f"{self.micro_batch_max_wait_ms}"
            )
        if self.session_threads < 0:
            raise ValueError(
                f"session_threads must be 0 or more, got {self.session_threads}"
            )
        for name in ("catalog_memory_mb", "malloc_arenas"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.malloc_trim_seconds < 0:
            raise ValueError(
                f"malloc_trim_seconds must be 0 or more, got {self.malloc_trim_seconds}"
            )
        if not 0 <= self.background_nice <= 19:
            raise ValueError(
                f"background_nice must be within 0..19, got {self.background_nice}"
            )


@dataclass(frozen=True)
class PredictionsConfig:
    """The prediction log: every served prediction, kept in DuckDB and Parquet."""

    queue_max_rows: int = 100_000
    """Maximum rows waiting in memory for the writer; more go to a spill file."""
    batch_rows: int = 10_000
    """Maximum rows the writer inserts into DuckDB in one statement."""
    flush_seconds: float = 0.1
    """Maximum time a logged prediction waits in memory before it is written."""
    roll_rows: int = 500_000
    """Rows kept in the DuckDB table before the oldest are moved to Parquet."""
    journal_fsync_seconds: float = 1.0
    """Maximum time between fsyncs of the write-ahead journal, which bounds
    the acknowledged predictions a power loss can lose; 0 never fsyncs, so
    only a crash of the process is covered."""
    keep_days: int = 0
    """Days a rolled Parquet file is kept after its newest prediction; 0 keeps
    every file. The table's rows are not counted: they move to Parquet first."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.journal_fsync_seconds <= 3600.0:
            raise ValueError(
                "journal_fsync_seconds must be within [0, 3600], got "
                f"{self.journal_fsync_seconds}"
            )
        if self.keep_days < 0:
            raise ValueError(
                f"keep_days must be 0 (keep every file) or more, got {self.keep_days}"
            )
        for name in ("queue_max_rows", "batch_rows", "roll_rows"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"{name} must be at least 1, got {getattr(self, name)}"
                )
        if not 0.0 < self.flush_seconds <= 60.0:
            raise ValueError(
                f"flush_seconds must be within (0, 60], got {self.flush_seconds}"
            )


@dataclass(frozen=True)
class SplitConfig:
    """Split of the labelled rows into training and holdout sets."""

    method: Literal["random", "stratified", "time", "group"] = "random"
    """``random``; ``stratified`` on the target; ``time``, holding out the rows
    last in `column` order; or ``group``, keeping all rows with the same
    `column` value on one side."""
    column: str | None = None
    """Column that orders rows for a ``time`` split or groups them for a
    ``group`` split."""
    test_size: float = 0.2
    """Share of rows held out for evaluation and the parity check."""
    seed: int = 0
    """Seed of the random and stratified splits and of the estimators."""

    def __post_init__(self) -> None:
        if not 0.0 < self.test_size < 1.0:
            raise ValueError(f"test_size must be within (0, 1), got {self.test_size}")
        if self.method == "time" and not self.column:
            raise ValueError("method 'time' needs 'column', the column to order by")
        if self.method == "group" and not self.column:
            raise ValueError("method 'group' needs 'column', the column to group by")


@dataclass(frozen=True)
class PreprocessConfig:
    """Feature preprocessing of one model, exported to ONNX with the estimator."""

    numeric_impute: Literal["mean", "median", "most_frequent", "constant"] = "median"
    """Value that replaces a missing number: the training column's mean, median
    or most frequent value, or `numeric_fill`."""
    numeric_fill: float = 0.0
    """Fill value of ``numeric_impute = "constant"``."""
    scale: Literal["auto", "standard", "minmax", "none"] = "auto"
    """Scaling of numeric columns; ``auto`` standardizes for linear models only."""
    categorical_impute: Literal["none", "most_frequent", "constant"] = "none"
    """Value that replaces a missing category; ``none`` keeps missing as a
    category of its own (one-hot) or encodes it as `missing_value` (ordinal)."""
    categorical_fill: str = "missing"
    """Fill value of ``categorical_impute = "constant"``."""
    encoding: Literal["onehot", "ordinal"] = "onehot"
    """One column per category (all zeros for an unseen category), or one
    integer code per column (`unknown_value` for an unseen category)."""
    min_frequency: int | None = None
    """Categories seen in fewer training rows are grouped into one infrequent
    category."""
    unknown_value: int = -1
    """Ordinal code of a category unseen in training."""
    missing_value: int = -2
    """Ordinal code of a missing category when `categorical_impute` is ``none``."""

    def __post_init__(self) -> None:
        if self.min_frequency is not None and self.min_frequency < 1:
            raise ValueError(
                f"min_frequency must be at least 1, got {self.min_frequency}"
            )
        if self.unknown_value == self.missing_value:
            raise ValueError(
                f"unknown_value and missing_value are both {self.unknown_value}; "
                "give them different codes"
            )
        if self.unknown_value >= 0 or self.missing_value >= 0:
            raise ValueError(
                "unknown_value and missing_value must be negative, so they differ "
                "from the codes 0, 1, ... of the training categories"
            )
        if self.categorical_fill == "":
            raise ValueError(
                "categorical_fill must not be empty, because '' marks a missing value"
            )


_LIGHTGBM_OBJECTIVES = (
    "binary",
    "multiclass",
    "regression",
    "quantile",
    "huber",
    "poisson",
    "gamma",
    "tweedie",
)
"""Prefixes of the LightGBM objectives that onnxmltools 1.16 converts."""
_CATEGORICAL_FEATURE = (
    "categorical columns are encoded by the pipeline; list them in 'categorical' "
    "and set 'preprocess.encoding'"
)
_LINEAR_TREE = "onnxmltools cannot convert linear trees"
_UNEXPORTABLE_PARAMS = {
    "lightgbm": {
        # LightGBM 4.7 resolves each alias here to the parameter it stands for.
        "categorical_feature": _CATEGORICAL_FEATURE,
        "categorical_features": _CATEGORICAL_FEATURE,
        "categorical_column": _CATEGORICAL_FEATURE,
        "cat_feature": _CATEGORICAL_FEATURE,
        "cat_column": _CATEGORICAL_FEATURE,
        "linear_tree": _LINEAR_TREE,
        "linear_trees": _LINEAR_TREE,
        "linear_lambda": _LINEAR_TREE,
        "zero_as_missing": "onnxmltools does not convert the rule that zero means "
        "missing, so ONNX outputs would differ for zeros",
    },
}


CLASSIFICATION_METRICS = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "accuracy",
    "precision",
    "recall",
    "f1",
)
REGRESSION_METRICS = ("mae", "rmse", "r2", "mape")
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "mae", "rmse", "mape"})
"""Metrics where a smaller value is a better model."""
TARGET_UNIT_METRICS = frozenset({"mae", "rmse"})
"""Metrics in the units of the target, whose overfitting gap is checked
relative to the holdout value."""
OVERFIT_THRESHOLD = 0.05
"""Default `overfit_threshold` of a metric without units, such as ``roc_auc``
or ``r2``: a gap above 0.05 is flagged."""
RELATIVE_OVERFIT_THRESHOLD = 0.2
"""Default `overfit_threshold` of ``mae`` and ``rmse``: flagged when the
training error is lower than the holdout error by more than a fifth of the
holdout error, that is when the holdout error is more than 1.25 times the
training error. On scikit-learn's diabetes data (442 rows, 20 % holdout) a
linear regression's gap was 0.10 and LightGBM's with default parameters 0.68."""


@dataclass(frozen=True)
class CVConfig:
    """Cross-validation on the training rows, before the holdout is scored."""

    method: Literal["kfold", "stratified", "time"] = "kfold"
    """``kfold``, ``stratified`` on the target, or ``time`` (expanding window in
    row order, so folds only validate on rows after their training rows)."""
    folds: int = 5
    """Number of folds."""

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")


@dataclass(frozen=True)
class SearchConfig:
    """Hyperparameter search over the estimator's parameters."""

    method: Literal["grid", "random", "halving"] = "random"
    """``grid`` tries every combination, ``random`` samples `max_trials` of
    them, ``halving`` runs scikit-learn's successive halving."""
    space: dict[str, Any] = field(default_factory=dict)
    """Estimator parameter to a list of values, or to a table
    ``{low, high, log}`` sampled by ``random`` and ``halving``."""
    max_trials: int = 20
    """Maximum candidates evaluated; a larger grid is cut to a random sample
    of this many points, seeded by the split seed."""
    max_seconds: float | None = None
    """Time budget in seconds; no candidate starts after it, and a started one
    runs to its end."""
    factor: int = 3
    """Halving only: share of candidates kept at each round is 1 / factor."""

    def __post_init__(self) -> None:
        if not self.space:
            raise ValueError("space must name at least one parameter")
        if self.max_trials < 1:
            raise ValueError(f"max_trials must be at least 1, got {self.max_trials}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.factor < 2:
            raise ValueError(f"factor must be at least 2, got {self.factor}")
        for name, values in self.space.items():
            _check_space_entry(name, values, self.method)


def _check_space_entry(name: str, values: Any, method: str) -> None:
    if isinstance(values, list):
        if not values:
            raise ValueError(f"space.{name} is an empty list; give at least one value")
        return
    if isinstance(values, dict):
        if method == "grid":
            raise ValueError(
                f"space.{name} is a range, which method 'grid' cannot enumerate; "
                "give a list of values or use method 'random'"
            )
        unknown = set(values) - {"low", "high", "log"}
        if unknown or not {"low", "high"} <= set(values):
            raise ValueError(
                f"space.{name} must be a list or a table with low, high and an "
                f"optional log, got {values!r}"
            )
        if not values["low"] < values["high"]:
            raise ValueError(f"space.{name}: low must be below high, got {values!r}")
        if values.get("log") and values["low"] <= 0:
            raise ValueError(f"space.{name}: a log range needs low > 0")
        return
    raise ValueError(f"space.{name} must be a list or a table, got {values!r}")


MIN_TRAINING_ROWS = 2
"""Minimum training rows a model is fitted on; a classifier also needs one
row per class."""


@dataclass(frozen=True)
class RetrainConfig:
    """When and how a model retrains itself, as ``[models.NAME.retrain]``."""

    trigger: Literal["off", "drift", "schedule", "both"] = "off"
    """Trigger of a retraining: a drift alarm, the `schedule`, both, or nothing."""
    schedule: str | None = None
    """Cron expression (minute hour day month weekday, UTC) of scheduled runs."""
    cooldown_hours: float = 24.0
    """Minimum hours between two retrainings that trained a model, on the
    policy's clock; alarms inside it are only recorded."""
    retry_minutes: float = 60.0
    """Minutes on the wall clock after a failed run before a drift alarm or a
    scheduled tick starts the next run. A failed run starts no cool-down."""
    budget: int = 4
    """Most retrainings within any `budget_days` days."""
    budget_days: float = 30.0
    """Length of the period the budget covers, in days."""
    window: Literal["sliding", "expanding"] = "sliding"
    """``sliding`` keeps the latest `window_days` or `window_rows`; ``expanding``
    keeps every labelled row."""
    window_days: float | None = 90.0
    """Days of labelled data a sliding window keeps."""
    window_rows: int | None = None
    """Labelled rows a sliding window keeps; applied after `window_days`."""
    min_new_labels: int = 1000
    """Minimum number of labels received since the last retraining for a new one."""
    holdout_days: float = 7.0
    """Most recent days of labels that score champion and challenger alike."""
    metric: Literal["roc_auc", "log_loss", "accuracy", "mae"] = "roc_auc"
    """Metric that compares models and watches the live champion."""
    promote_margin: float = 0.002
    """How much better the challenger must score on the holdout to be promoted."""
    rollback_margin: float = 0.02
    """How much worse the new champion may score live than the old one did
    before it is rolled back."""
    refit: bool = True
    """Train a promoted challenger again on the whole window, holdout included,
    before it serves."""
    clock: Literal["wall", "event"] = "wall"
    """``wall``: the retraining's time is the clock's. ``event``: it is the
    latest event time among the stored labels, so a replay of historical
    data gets cool-downs and windows in data time."""

    def __post_init__(self) -> None:
        if self.trigger in ("schedule", "both") and not self.schedule:
            raise ValueError(f"trigger {self.trigger!r} needs 'schedule', a cron line")
        if self.schedule:
            _check_cron(self.schedule)
        if self.cooldown_hours < 0:
            raise ValueError(
                f"cooldown_hours must be at least 0, got {self.cooldown_hours}"
            )
        if self.retry_minutes < 0:
            raise ValueError(
                f"retry_minutes must be at least 0, got {self.retry_minutes}"
            )
        if self.budget < 1 or self.budget_days <= 0:
            raise ValueError(
                f"budget must be at least 1 and budget_days above 0, got "
                f"{self.budget} and {self.budget_days}"
            )
        if self.window_days is not None and self.window_days <= 0:
            raise ValueError(f"window_days must be above 0, got {self.window_days}")
        if self.window_rows is not None and self.window_rows < MIN_TRAINING_ROWS:
            raise ValueError(
                f"window_rows must be at least {MIN_TRAINING_ROWS}, got "
                f"{self.window_rows}, because a model is fitted on at least "
                f"{MIN_TRAINING_ROWS} training rows"
            )
        if self.min_new_labels < 0 or self.holdout_days <= 0:
            raise ValueError(
                "min_new_labels must be at least 0 and holdout_days above 0, got "
                f"{self.min_new_labels} and {self.holdout_days}"
            )
        if self.promote_margin < 0 or self.rollback_margin < 0:
            raise ValueError("promote_margin and rollback_margin must be at least 0")
        if self.clock not in ("wall", "event"):
            raise ValueError(f"clock must be 'wall' or 'event', got {self.clock!r}")


@dataclass(frozen=True)
class MonitoringConfig:
    """Drift detection, alerts and the webhook, as ``[monitoring]``."""

    drift_interval_seconds: int = 3600
    """Period of the batch drift check."""
    drift_window_rows: int = 50_000
    """Most recent predicted rows the batch drift check compares."""
    min_samples: int = 100
    """Minimum number of non-missing values per feature for a batch drift test."""
    psi_threshold: float = 0.2
    """PSI at or above which a feature drifts."""
    p_value: float = 0.01
    """KS and chi-squared p-value below which a batch test rejects."""
    ks_floor: float = 0.1
    """Smallest KS statistic that counts as drift."""
    cramers_v_floor: float = 0.1
    """Smallest Cramér's V that counts as drift."""
    streaming: bool = True
    """Whether predicted rows feed the streaming feature and prediction
    detectors. When false, labels still join predictions and feed the live
    metrics and the loss detector, and the batch drift check still runs."""
    stream_horizon: int = 1000
    """Values per window of the streaming detectors (rows for the feature and
    prediction detectors, labels for the loss detector). Set it to one full
    cycle of the traffic, such as a day of requests, so that patterns within
    a day (morning and evening traffic) raise no alarm."""
    stream_reference_cycles: int = 7
    """Windows that the streaming detectors compare each new window with; they
    stay silent for the first ``stream_horizon * stream_reference_cycles``
    values of a model version."""
    stream_p_value: float = 0.001
    """p-value of the streaming windowed tests."""
    stream_loss_reference_cycles: int = 28
    """Windows of mean loss that the streaming loss detector's reference keeps
    at most. It tests from ``stream_reference_cycles`` windows on, and a
    longer reference gives fewer false alarms."""
    stream_loss_allowance: float = 2.0
    """CUSUM allowance (k) of the streaming loss detector, in standard
    deviations of the reference windows' mean loss: each window adds its
    distance above the reference mean less k to the sum, which stays at 0 or
    above."""
    stream_loss_threshold: float = 4.0
    """CUSUM threshold (h) of the streaming loss detector, in the same standard
    deviations: the loss drifts when the sum exceeds it."""
    stream_loss_test: str = "cusum"
    """``cusum``: the CUSUM of window means above, for traffic with a daily
    cycle. ``adwin``: River's ADWIN on each label's loss, for traffic without
    a cycle, such as a machine that runs around the clock. ADWIN reacts
    within a few hundred labels, but on cyclic traffic it alarms almost
    daily."""
    stream_delta: float = 0.002
    """ADWIN confidence of the streaming loss detector with
    ``stream_loss_test = "adwin"``."""
    performance_drop: float = 0.05
    """Drop of the live metric below the model's holdout metric that alerts."""
    min_live_labels: int = 500
    """Minimum number of labels in the live window before performance is judged."""
    error_rate: float = 0.05
    """Share of prediction requests in the window that failed, above which an
    alert opens; client errors (4xx) and server errors (5xx) are judged apart."""
    latency_p99_ms: float = 500.0
    """99th percentile of successful prediction latency in the window, in
    milliseconds, above which an alert opens."""
    health_interval_seconds: int = 60
    """Period of the check of live performance, error rate, latency and the
    rollback watch."""
    health_window_seconds: int = 300
    """Sliding window of requests that the error rate and latency cover."""
    min_window_requests: int = 20
    """Minimum requests in the window before error rate and latency are judged."""
    webhook_url: str | None = None
    """HTTP(S) address that receives each new alert as JSON; none when unset."""
    webhook_retries: int = 3
    """Attempts after the first failed webhook delivery."""
    webhook_backoff_seconds: float = 1.0
    """Wait before the first retry; doubled at each further retry."""
    webhook_timeout_seconds: float = 5.0
    """Timeout of one webhook delivery."""
    recent_rows: int = 10_000
    """Predicted rows kept in memory to join labels to; labels of older rows
    are joined from the prediction log in DuckDB, where a row arrives about
    ``[predictions] flush_seconds`` after its prediction. A kept row of a
    single-row request uses about 500 bytes of Python objects, and one of an
    Arrow request about 8 bytes per class plus its event time. The newest
    request is kept whole even when it alone has more rows."""

    def __post_init__(self) -> None:
        if self.drift_interval_seconds < 1 or self.drift_window_rows < 1:
            raise ValueError(
                "drift_interval_seconds and drift_window_rows must be at least 1"
            )
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {self.min_samples}")
        if self.recent_rows < 0:
            raise ValueError(f"recent_rows must be 0 or more, got {self.recent_rows}")
        for name in ("health_interval_seconds", "health_window_seconds"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"{name} must be at least 1, got {getattr(self, name)}"
                )
        if self.min_live_labels < 1 or self.min_window_requests < 1:
            raise ValueError(
                "min_live_labels and min_window_requests must be at least 1, got "
                f"{self.min_live_labels} and {self.min_window_requests}"
            )
        if not 0.0 <= self.error_rate < 1.0 or self.latency_p99_ms <= 0:
            raise ValueError(
                "error_rate must be within [0, 1) and latency_p99_ms above 0, got "
                f"{self.error_rate} and {self.latency_p99_ms}"
            )
        if self.stream_loss_reference_cycles < self.stream_reference_cycles:
            raise ValueError(
                "stream_loss_reference_cycles must be at least "
                f"stream_reference_cycles ({self.stream_reference_cycles}), got "
                f"{self.stream_loss_reference_cycles}"
            )
        if self.stream_loss_test not in ("cusum", "adwin"):
            raise ValueError(
                f"stream_loss_test must be 'cusum' or 'adwin', got "
                f"{self.stream_loss_test!r}"
            )
        if not self.stream_loss_allowance >= 0.0 or not self.stream_loss_threshold > 0:
            raise ValueError(
                "stream_loss_allowance must be at least 0 and stream_loss_threshold "
                f"above 0, got {self.stream_loss_allowance} and "
                f"{self.stream_loss_threshold}"
            )
        for name in ("p_value", "stream_delta", "stream_p_value"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(
                    f"{name} must be within (0, 1), got {getattr(self, name)}"
                )
        if self.stream_horizon < 30 or self.stream_reference_cycles < 2:
            raise ValueError(
                "stream_horizon must be at least 30 and stream_reference_cycles "
                f"at least 2, got {self.stream_horizon} and "
                f"{self.stream_reference_cycles}"
            )
        if self.webhook_retries < 0 or self.webhook_backoff_seconds < 0:
            raise ValueError("webhook_retries and webhook_backoff_seconds must be >= 0")
        if self.webhook_url:
            _check_webhook_url(self.webhook_url)


def _check_cron(expression: str) -> None:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(expression, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"schedule {expression!r} is not a valid cron line: {exc}")


_WEBHOOK_EXAMPLE = "https://hooks.example.com/alerts"


def _check_webhook_url(url: str) -> None:
    """Reject a webhook URL that is not http:// or https:// with a host.

    A message shows the URL's scheme, or its text before the first ``:``,
    ``/``, ``@``, ``?`` or ``#``, and never the rest, because the rest may
    contain a password or a token.
    """
    scheme, separator, _ = url.partition("://")
    if not separator:
        head = re.split(r"[:/@?#]", url, maxsplit=1)[0]
        value = shown(head if head == url else f"{head}...")
        raise ValueError(
            f"webhook_url {value} is not a URL, because it does not start with "
            f"http:// or https://; give a URL such as {_WEBHOOK_EXAMPLE}"
        )
    if scheme not in ("http", "https"):
        raise ValueError(
            f"webhook_url has the scheme {shown(scheme)}, but only http:// and "
            f"https:// URLs are sent; give a URL such as {_WEBHOOK_EXAMPLE}"
        )
    try:
        host = urllib.parse.urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        raise ValueError(
            f"webhook_url starts with {scheme}:// but names no valid host after "
            f"it; give a URL such as {_WEBHOOK_EXAMPLE}"
        )


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
    date_format: str | tuple[str, ...] | None = None
    """strptime format of a DATE or TIMESTAMP column written in another form,
    or a list of them for a column that mixes formats. Each value is read in
    the first listed format that it matches, so ``01/02/2024`` under
    ``["%d/%m/%Y", "%m/%d/%Y"]`` is 1 February. A list of one format is
    stored as that format."""
    allow_infinity: bool = False
    """Whether a FLOAT or DOUBLE column keeps infinite values; when false they
    are quarantined. NaN is always read as a missing value."""

    @property
    def date_formats(self) -> tuple[str, ...]:
        """The strptime formats of the column in the order they are tried."""
        if self.date_format is None:
            return ()
        if isinstance(self.date_format, str):
            return (self.date_format,)
        return self.date_format

    def __post_init__(self) -> None:
        if isinstance(self.date_format, tuple):
            _check_format_list(self.date_format)
            if len(self.date_format) == 1:
                # The same contract as the single string, so the same version ids.
                object.__setattr__(self, "date_format", self.date_format[0])
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"min {self.min:g} is above max {self.max:g}, so every value "
                "would be quarantined; swap them"
            )
        if self.allowed is not None and not self.allowed:
            raise ValueError(
                "allowed is empty, so every value would be quarantined; list "
                "the allowed values or remove the key"
            )
        if self.regex is not None:
            _check_regex(self.regex)


def _check_format_list(formats: tuple[str, ...]) -> None:
    """Raise `ValueError` for an empty list of date formats or a repeated one."""
    if not formats:
        raise ValueError(
            "date_format is an empty list, so no value would parse; list the "
            "strptime formats, such as ['%d.%m.%Y', '%d/%m/%Y'], or remove the key"
        )
    repeated = sorted({fmt for fmt in formats if formats.count(fmt) > 1})
    if repeated:
        raise ValueError(
            f"date_format lists {repeated[0]!r} more than once; list each "
            "strptime format once, in the order they are tried"
        )


def _check_regex(pattern: str) -> None:
    """Raise `ValueError` unless DuckDB's regular expressions (RE2) compile `pattern`.

    The ingest matches values with DuckDB's ``regexp_full_match``, whose RE2
    syntax differs from Python's ``re``: RE2 rejects a backreference such as
    ``\\1``, for one.
    """
    import duckdb

    with duckdb.connect() as db:
        try:
            db.execute("SELECT regexp_full_match('', $1)", [pattern])
        except duckdb.Error as exc:
            reason = str(exc).splitlines()[0]
            raise ValueError(
                f"regex {pattern!r} is not a valid RE2 regular expression: {reason}"
            ) from None


@dataclass(frozen=True)
class ContractConfig:
    """Contract of a dataset: the rules every ingested row must keep."""

    columns: dict[str, ColumnRule] = field(default_factory=dict)
    """Rules by column name."""
    unique_key: tuple[str, ...] = ()
    """Columns whose values together identify a row; a repeated key is rejected."""


MAX_DATASET_NAME_LENGTH = 100
"""Maximum length of a dataset name in characters. The name is a folder in the
lake, and file systems limit a path component to 255 bytes."""
_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def dataset_name_problem(name: str) -> str | None:
    """Return why `name` cannot be a dataset name, or None when it can.

    A dataset name is a folder of the lake, a path segment of the HTTP API
    and an argument of the CLI. So it starts with an ASCII letter or digit,
    because a leading ``-`` reads as a command-line option, and contains
    only ASCII letters, digits, ``_`` and ``-``.
    """
    if len(name) > MAX_DATASET_NAME_LENGTH:
        return (
            f"invalid dataset name {name[:20]!r}... of {len(name)} characters; "
            f"use at most {MAX_DATASET_NAME_LENGTH}"
        )
    if not _DATASET_NAME.fullmatch(name):
        return (
            f"invalid dataset name {name!r}; start with a letter or digit and use "
            "only ASCII letters, digits, '_' and '-', such as 'flights_2024'"
        )
    return None


@dataclass(frozen=True)
class DatasetConfig:
    """Settings of one dataset, declared as ``[datasets.NAME]``."""

    name: str
    """Dataset name, taken from the table key."""
    partition_by: str | None = None
    """Column whose values name the Hive partitions of each version."""
    keep_versions: int | None = None
    """Newest versions kept; older ones are deleted after an ingest. None keeps all."""
    compact_after: int | None = None
    """After a flush of the HTTP ingest buffer, compact the append chain when
    the latest version reads the files of more than this many version
    folders (``appliance datasets compact``). None compacts only on request."""
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
    max_line_bytes: int | None = None
    """Maximum size in bytes of a CSV record that ingest reads as a row; a
    longer record is quarantined. Line breaks in quoted fields count, and so
    does the carriage return of a CRLF line end. 1,999,999 (DuckDB's
    default) when omitted."""
    contract: ContractConfig | None = None
    """Declared contract; the first version's schema is used when omitted."""
    sensitive: tuple[str, ...] = ()
    """Columns stored encrypted with the column key (AES-SIV, deterministic),
    such as ``["tailnum"]``. Applies to versions ingested after it is set."""
    subject_keys: tuple[str, ...] = ()
    """Columns that identify a data subject, such as ``tailnum``. When declared,
    ``appliance erase`` accepts only these columns in ``--where``. With a
    contract that lists columns, each must be one of them."""

    def __post_init__(self) -> None:
        problem = dataset_name_problem(self.name)
        if problem is not None:
            raise ValueError(problem)
        if self.keep_versions is not None and self.keep_versions < 1:
            raise ValueError(
                f"keep_versions must be at least 1, got {self.keep_versions}"
            )
        if self.compact_after is not None and self.compact_after < 2:
            raise ValueError(
                f"compact_after must be at least 2, got {self.compact_after}"
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
        if not self.null_values:
            raise ValueError(
                'null_values must list at least one value, such as [""] for '
                "empty fields only"
            )
        self._check_sensitive()
        self._check_subject_keys()

    def _check_sensitive(self) -> None:
        repeated = sorted({n for n in self.sensitive if self.sensitive.count(n) > 1})
        if repeated:
            raise ValueError(f"sensitive lists {repeated[0]!r} twice")
        if self.partition_by in self.sensitive:
            raise ValueError(
                f"sensitive column {self.partition_by!r} is also partition_by, and "
                "partition folders are named by plaintext values; partition by "
                "another column"
            )
        keys = self.contract.unique_key if self.contract else ()
        unique = [name for name in keys if name in self.sensitive]
        if unique:
            raise ValueError(
                f"sensitive column {unique[0]!r} is in contract.unique_key, whose "
                "check against earlier versions does not read ciphertext; remove "
                "it from one of the two"
            )

    def _check_subject_keys(self) -> None:
        if "" in self.subject_keys:
            raise ValueError(
                "subject_keys lists an empty column name; list the columns that "
                "identify a data subject, such as ['tailnum']"
            )
        keys = self.subject_keys
        repeated = sorted({name for name in keys if keys.count(name) > 1})
        if repeated:
            raise ValueError(
                f"subject_keys lists {repeated[0]!r} twice; list each column once"
            )
        declared = list(self.contract.columns) if self.contract else []
        unknown = [name for name in keys if declared and name not in declared]
        if unknown:
            raise ValueError(
                f"subject_keys lists {unknown[0]!r}, which is not a column of "
                f"[datasets.{self.name}.contract.columns] (declared: "
                f"{', '.join(declared)}); correct the name, or add the column to "
                "the contract"
            )


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
        from appliance.sqlcheck import check_expression, check_query

        check_query(self.sql)
        for name, expression in self.derive.items():
            check_expression(f"derive.{name}", expression)
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
class SecurityConfig:
    """Access control of the HTTP API and the keys of signatures and columns.

    A relative key path is taken from the folder of the configuration file.
    """

    require_keys: bool = False
    """Reject requests without a valid API key (401), except the health
    probes. When false, a request without a key may do anything, and a key
    that is sent is still checked. An ``Authorization`` header of another
    scheme than ``Bearer`` counts as no key. A daemon bound to an address other than a
    loopback one refuses to start unless this is true."""
    refused_audit_seconds: float = 60.0
    """Period, in seconds, of the audit entries that count refused requests
    (401 and 403): one entry per period that had any, so a flood of bad
    requests cannot flood the audit log."""

    signing_key: Path | None = None
    """Ed25519 private key (PEM, PKCS#8) that signs new model versions; None
    uses the home's own key, generated at first need."""
    trusted_keys: tuple[Path, ...] = ()
    """Ed25519 public keys (PEM) whose signatures are accepted besides the
    key that signs on this box, such as the key of the box that trains for a
    fleet."""
    column_key: Path | None = None
    """File with the base64 AES-SIV key of the datasets' sensitive columns.
    When None, ``HOME/keys/column.key`` is used, made at first need with mode
    0600."""

    def __post_init__(self) -> None:
        if self.refused_audit_seconds <= 0:
            raise ValueError(
                "refused_audit_seconds must be above 0, got "
                f"{self.refused_audit_seconds}"
            )


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
    """Columns computed by DuckDB SQL expressions, such as a label. A derived
    column listed in `features` is computed again over each request at serving,
    so it must be row-wise and deterministic."""
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    """Imputation, scaling and encoding of the features."""
    checks: dict[str, dict[str, float]] = field(default_factory=dict)
    """Allowed range of numeric features, such as ``income = {min = 0}``; a
    request value outside it is rejected, a training value fails the run."""
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    """Automatic retraining policy."""
    metric: str | None = None
    """Metric that ranks search candidates and measures overfitting; ``roc_auc``
    for classification and ``rmse`` for regression when omitted."""
    cv: CVConfig | None = None
    """Cross-validation of the training rows; per-fold metrics are recorded."""
    search: SearchConfig | None = None
    """Hyperparameter search; each candidate is recorded as a child run."""
    segments: tuple[str, ...] = ()
    """Categorical features whose values get their own holdout metrics."""
    overfit_threshold: float | None = None
    """Largest overfitting gap of `metric` (how much better it is on training
    rows than on holdout rows) that is not flagged. The gap of ``mae`` and
    ``rmse``, in target units, is divided by the holdout value first. When
    omitted, `OVERFIT_THRESHOLD` or `RELATIVE_OVERFIT_THRESHOLD` applies."""
    intended_use: str = ""
    """Intended use of the model and its limits, printed on the model card."""
    tags: dict[str, str] = field(default_factory=dict)
    """Labels copied to every run of the model."""

    feature_views: tuple[str, ...] = ()
    """Feature views joined to the dataset rows; the daemon fills their columns."""
    event_timestamp: str | None = None
    """Column of the label time that timestamped feature views are joined as of."""

    @property
    def overfit_limit(self) -> float:
        """Return `overfit_threshold`, or its default for the primary metric."""
        if self.overfit_threshold is not None:
            return self.overfit_threshold
        if self.primary_metric in TARGET_UNIT_METRICS:
            return RELATIVE_OVERFIT_THRESHOLD
        return OVERFIT_THRESHOLD

    @property
    def primary_metric(self) -> str:
        """Return the metric that ranks candidates."""
        if self.metric:
            return self.metric
        return "roc_auc" if self.task == "classification" else "rmse"

    def __post_init__(self) -> None:
        allowed = ALGORITHMS[self.task]
        if self.algorithm not in allowed:
            raise ValueError(
                f"algorithm {self.algorithm!r} is not available for task "
                f"{self.task!r}; use one of {', '.join(allowed)}"
            )
        metrics = (
            CLASSIFICATION_METRICS
            if self.task == "classification"
            else REGRESSION_METRICS
        )
        if self.metric is not None and self.metric not in metrics:
            raise ValueError(
                f"metric {self.metric!r} is not available for task {self.task!r}; "
                f"use one of {', '.join(metrics)}"
            )
        if self.overfit_threshold is not None and self.overfit_threshold < 0:
            raise ValueError(
                f"overfit_threshold must be 0 or more, got {self.overfit_threshold}"
            )
        if self.features is not None:
            outside = set(self.segments) - set(self.categorical)
            if outside:
                raise ValueError(
                    f"segments {sorted(outside)} must be listed in categorical"
                )
        if self.features is not None and self.target in self.features:
            raise ValueError(f"target {self.target!r} is also listed in features")
        self._check_sql()
        self._check_derived_features()
        self._check_params()
        self._check_checks()
        if self.split.method == "stratified" and self.task != "classification":
            raise ValueError("split method 'stratified' needs task 'classification'")
        if self.cv is not None and self.cv.method == "time":
            self._check_time_order()
        if self.retrain.clock == "event" and not self.event_timestamp:
            raise ValueError(
                "retrain.clock 'event' needs event_timestamp, the column of each "
                "row's event time"
            )
        if self.features is not None:
            unknown = set(self.categorical) - set(self.features)
            if unknown:
                raise ValueError(
                    f"categorical columns {sorted(unknown)} are not in features"
                )

    def _check_sql(self) -> None:
        from appliance.sqlcheck import check_expression

        for name, expression in self.derive.items():
            check_expression(f"derive.{name}", expression)
        if self.where is not None:
            check_expression("where", self.where)

    def _check_time_order(self) -> None:
        """Reject time folds over training rows that are not in time order.

        Only a ``time`` split orders the rows of ``appliance train`` by a
        column; other splits keep dataset order and shuffle the training rows.
        """
        if self.split.method == "time":
            return
        order = (
            f"set split.column to {self.event_timestamp!r}"
            if self.event_timestamp
            else "set split.column to the column of each row's time"
        )
        raise ValueError(
            f"cv method 'time' needs training rows in time order, but split "
            f"method {self.split.method!r} does not order them by time; set "
            f'[models.{self.name}.split] method = "time" and {order}, or use '
            "cv method 'kfold'"
        )

    @property
    def unused_derive(self) -> list[str]:
        """Derived columns that no feature, the target, the split column,
        `event_timestamp` or `where` reads, in declaration order."""
        from appliance.derive import unused_derived

        used = [*(self.features or ()), self.target]
        used += [name for name in (self.split.column, self.event_timestamp) if name]
        return unused_derived(self.derive, used, self.where)

    def _check_derived_features(self) -> None:
        from appliance.derive import ExpressionError, check_expression, derived_inputs

        try:
            derived_inputs(self.derive, list(self.features or ()))
        except ExpressionError as exc:
            raise ValueError(f"derive: {exc}") from None
        # An unused column is checked as a feature would be, so that listing it
        # in `features` later cannot turn a loaded config into a rejected one.
        for name in self.unused_derive:
            try:
                check_expression(name, self.derive[name])
            except ExpressionError as exc:
                raise ValueError(
                    f"derive: {exc}. No feature, target, split column or 'where' "
                    f"reads {name!r}; remove it if it is not needed"
                ) from None

    def _check_params(self) -> None:
        # Imported here, so that `python -m appliance.training._param_source`
        # can write the table even when the stored one does not import.
        from appliance._param_checks import check_params, check_search_space

        rejected = _UNEXPORTABLE_PARAMS.get(self.algorithm, {})
        for key in self.params:
            if key in rejected:
                raise ValueError(
                    f"params.{key} cannot be exported to ONNX: {rejected[key]}"
                )
        objective = self.params.get("objective")
        if self.algorithm == "lightgbm" and objective is not None:
            if not str(objective).startswith(_LIGHTGBM_OBJECTIVES):
                raise ValueError(
                    f"params.objective {objective!r} cannot be exported to ONNX; "
                    f"use one of {', '.join(_LIGHTGBM_OBJECTIVES)}"
                )
        keys = frozenset(f.name for f in dataclasses.fields(self)) - {"name"}
        check_params(self.name, self.algorithm, self.task, self.params, "params", keys)
        if self.search is not None:
            check_search_space(self.name, self.algorithm, self.task, self.search.space)

    def _check_checks(self) -> None:
        for column, bounds in self.checks.items():
            unknown = set(bounds) - {"min", "max"}
            if unknown:
                raise ValueError(
                    f"checks.{column} has unknown key {sorted(unknown)[0]!r}; "
                    "known keys: min, max"
                )
            if bounds.get("min", -math.inf) > bounds.get("max", math.inf):
                raise ValueError(f"checks.{column} has min above max")
            if column in self.categorical:
                raise ValueError(
                    f"checks.{column}: min and max apply to numeric features, and "
                    f"{column!r} is categorical"
                )
            if self.features is not None and column not in self.features:
                raise ValueError(f"checks.{column}: {column!r} is not in features")


@dataclass(frozen=True)
class Config:
    """The whole configuration of one appliance."""

    path: Path
    """File the configuration was read from."""
    storage: StorageConfig = field(default_factory=StorageConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    predictions: PredictionsConfig = field(default_factory=PredictionsConfig)
    models: dict[str, ModelConfig] = field(default_factory=dict)
    log_level: str = "INFO"
    """Lowest level of log records written to stderr."""
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    """Drift detection, alerts and the webhook."""
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    """Dataset settings by name; a dataset not declared uses the defaults."""
    feature_views: dict[str, FeatureViewConfig] = field(default_factory=dict)
    """Feature views by name."""
    ingest: IngestConfig = field(default_factory=IngestConfig)
    """HTTP ingest buffer."""
    security: SecurityConfig = field(default_factory=SecurityConfig)
    """Access control of the HTTP API and keys of signatures and columns."""
    api_key: str | None = field(default=None, repr=False)
    """Key the commands and the terminal UI send to the daemon, from
    ``APPLIANCE_API_KEY``; never read from the file."""
    home_origin: str = ""
    """Setting that `storage.home` came from, for messages: ``APPLIANCE_HOME``,
    or the ``[storage] home`` key of a file chosen by ``--config``,
    ``APPLIANCE_CONFIG`` or the default."""

    @property
    def sensitive_columns(self) -> frozenset[str]:
        """Column names that any dataset declares sensitive.

        Request rows and the prediction log encrypt every column of such a
        name, because a request does not say which dataset its columns come
        from.
        """
        return frozenset(n for d in self.datasets.values() for n in d.sensitive)

    def dataset(self, name: str) -> DatasetConfig:
        """Return the settings of dataset `name`, the defaults when undeclared.

        Raises:
            IngestError: `name` is not a valid dataset name.
        """
        declared = self.datasets.get(name)
        if declared is not None:
            return declared
        problem = dataset_name_problem(name)
        if problem is not None:
            raise IngestError(problem)
        return DatasetConfig(name=name)

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


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""Level names accepted by ``log_level`` and ``--log-level``, in any case."""


TOP_LEVEL_KEYS = frozenset(
    {
        "datasets",
        "feature_views",
        "ingest",
        "log_level",
        "models",
        "monitoring",
        "predictions",
        "security",
        "server",
        "storage",
    }
)
"""Keys and tables allowed at the top level of the configuration file."""


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate the configuration file.

    Args:
        path: File to read; ``APPLIANCE_CONFIG`` or the default file when None.

    Raises:
        ConfigError: The file is missing or unreadable, is not TOML or breaks
            the schema.
    """
    source = Path(path or os.environ.get("APPLIANCE_CONFIG") or DEFAULT_CONFIG)
    try:
        table = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {source} not found") from None
    except OSError as exc:
        # Such as a folder given as the file, or a file the user cannot read.
        raise ConfigError(
            f"configuration file {source} could not be read ({exc.strerror}); "
            "give a readable TOML file with --config or APPLIANCE_CONFIG"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None

    unknown = set(table) - TOP_LEVEL_KEYS
    if unknown:
        raise ConfigError(
            f"unknown key {sorted(unknown)[0]!r} in {source}; known keys: "
            f"{', '.join(sorted(TOP_LEVEL_KEYS))}"
        )
    storage = _build(StorageConfig, table.get("storage", {}), "storage", source)
    server = _build(ServerConfig, table.get("server", {}), "server", source)
    predictions = _build(
        PredictionsConfig, table.get("predictions", {}), "predictions", source
    )
    models = _build_named(ModelConfig, table.get("models", {}), "models", source)
    monitoring = _build(
        MonitoringConfig, table.get("monitoring", {}), "monitoring", source
    )
    log_level = _check_type(table.get("log_level", "INFO"), str, "log_level", source)
    if log_level.upper() not in LOG_LEVELS:
        raise ConfigError(
            f"invalid value {log_level!r} for 'log_level' in {source}; use one of "
            f"{', '.join(LOG_LEVELS)}"
        )
    datasets = _build_named(
        DatasetConfig, table.get("datasets", {}), "datasets", source
    )
    views = _build_named(
        FeatureViewConfig, table.get("feature_views", {}), "feature_views", source
    )
    ingest = _build(IngestConfig, table.get("ingest", {}), "ingest", source)
    security = _resolve_paths(
        _build(SecurityConfig, table.get("security", {}), "security", source),
        source.parent,
    )
    check_datasets(datasets, source)
    _check_feature_views(models, views, source)
    check_sensitive_columns(models, datasets, views, source)

    home = Path(os.environ.get("APPLIANCE_HOME") or storage.home).expanduser()
    if not home.is_absolute():
        base = Path.cwd() if "APPLIANCE_HOME" in os.environ else source.parent
        home = base / home
    if home.exists() and not home.is_dir():
        origin = "APPLIANCE_HOME" if "APPLIANCE_HOME" in os.environ else source
        raise ConfigError(
            f"storage home {home} (from {origin}) is a file, not a folder; "
            "point it at a folder, which is created when missing"
        )
    storage = dataclasses.replace(storage, home=home.resolve())
    return Config(
        source.resolve(),
        storage=storage,
        server=server,
        predictions=predictions,
        models=models,
        log_level=log_level,
        monitoring=monitoring,
        datasets=datasets,
        feature_views=views,
        ingest=ingest,
        security=security,
        api_key=os.environ.get("APPLIANCE_API_KEY") or None,
        home_origin=_home_origin(path, source),
    )


def _home_origin(path: str | Path | None, source: Path) -> str:
    """Describe where the home setting came from, such as ``APPLIANCE_HOME``."""
    if os.environ.get("APPLIANCE_HOME"):
        return "APPLIANCE_HOME"
    if path:
        chosen = "--config"
    elif os.environ.get("APPLIANCE_CONFIG"):
        chosen = "APPLIANCE_CONFIG"
    else:
        chosen = "the default configuration"
    return f"[storage] home in {source}, chosen by {chosen}"


def _resolve_paths(security: SecurityConfig, base: Path) -> SecurityConfig:
    """Return `security` with its key files taken from `base` when relative."""
    key, column = security.signing_key, security.column_key
    return dataclasses.replace(
        security,
        signing_key=None if key is None else base / key.expanduser(),
        trusted_keys=tuple(base / path.expanduser() for path in security.trusted_keys),
        column_key=None if column is None else base / column.expanduser(),
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


_DATASET_KEYS = {
    "security.subject_keys": '[datasets.flights] subject_keys = ["tailnum"]',
    "security.sensitive": '[datasets.flights] sensitive = ["tailnum"]',
}
"""Keys of ``[datasets.NAME]`` that are easy to put in ``[security]``, with an
example of their place."""


def _build(cls: type[Any], table: Any, where: str, source: Path) -> Any:
    """Build dataclass `cls` from a TOML table, checking keys and types."""
    if not isinstance(table, dict):
        raise ConfigError(f"'{where}' in {source} must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(table) - names
    if unknown:
        key = sorted(unknown)[0]
        example = _DATASET_KEYS.get(f"{where}.{key}")
        if example is not None:
            raise ConfigError(
                f"unknown key '{where}.{key}' in {source}; {key} is set per "
                f"dataset, so move it to the dataset's table, such as {example}"
            )
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
        return _convert_union(value, inner, key, source)
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
        return tuple(_convert(item, args[0], key, source) for item in items)
    if origin is dict:
        table = _check_type(value, dict, key, source)
        if args[1] is Any:
            return dict(table)
        return {
            sub: _convert(item, args[1], f"{key}.{sub}", source)
            for sub, item in table.items()
        }
    if hint is Path:
        return Path(_check_type(value, str, key, source))
    return _check_type(value, hint, key, source)


def _convert_union(value: Any, members: list[Any], key: str, source: Path) -> Any:
    """Convert `value` by the member of a union type that its TOML type matches,
    such as a list for ``str | tuple[str, ...]``."""
    if len(members) == 1:
        return _convert(value, members[0], key, source)
    for member in members:
        kind = typing.get_origin(member) or member
        if isinstance(value, list if kind is tuple else kind):
            return _convert(value, member, key, source)
    expected = " or ".join(_type_name(member) for member in members)
    raise ConfigError(f"'{key}' in {source} must be {expected}, got {value!r}")


def _type_name(hint: Any) -> str:
    """Return how an error names a value of type `hint`, such as "a string"."""
    if typing.get_origin(hint) is tuple:
        item = _TYPE_NAMES.get(typing.get_args(hint)[0], "a value")
        return f"a list of {item.split(' ', 1)[1]}s"
    return _TYPE_NAMES.get(hint, hint.__name__)


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
