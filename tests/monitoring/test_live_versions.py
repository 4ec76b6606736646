"""Live metrics per version, the live metric choice and the promotion lookup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from appliance.config import ModelConfig, RetrainConfig
from appliance.errors import StorageError
from appliance.monitoring import VersionMetrics, last_promotion, live_metric
from appliance.storage import AliasEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(version: int, previous: int | None, action: str = "set") -> AliasEvent:
    return AliasEvent(
        "m",
        "champion",
        version,
        previous,
        action,
        "op",
        "",
        T0 + timedelta(hours=version),
    )


def test_last_promotion_cases() -> None:
    promoted = [event(1, 2), event(3, 1)]
    rolled_back = [*promoted, event(1, 3, "rollback")]
    same = [event(2, 2)]

    assert last_promotion([]) is None
    assert last_promotion(promoted) == promoted[-1]
    assert last_promotion(rolled_back) is None
    assert last_promotion(same) is None


def test_version_metrics_apart_and_restored() -> None:
    versions = VersionMetrics(window=10)
    for _ in range(4):
        versions.update("m", 1, "classification", 1, [0.2, 0.8])
        versions.update("m", 2, "classification", 0, [0.2, 0.8])

    restored = VersionMetrics.from_bytes(versions.to_bytes())

    assert restored.metrics("m", 1, 1)["accuracy"] == 1.0
    assert restored.metrics("m", 2, 1)["accuracy"] == 0.0
    assert restored.metrics("m", 3) is None
    assert restored.versions("m") == [1, 2]


def test_version_metrics_keeps_recent_versions() -> None:
    versions = VersionMetrics(window=10)
    for version in range(1, 12):
        versions.update("m", version, "regression", 1.0, 1.5)

    assert versions.versions("m") == list(range(4, 12))
    assert versions.metrics("m", 11)["mae"] == pytest.approx(0.5)


def test_version_metrics_unreadable_bytes() -> None:
    with pytest.raises(StorageError, match="delete them to start empty windows"):
        VersionMetrics.from_bytes(b"not a pickle")


def test_live_metric_follows_retrain_metric() -> None:
    def model(task: str, metric: str) -> ModelConfig:
        return ModelConfig(
            name="m",
            dataset="d",
            target="y",
            task=task,
            retrain=RetrainConfig(metric=metric),
        )

    assert live_metric(model("classification", "log_loss"), "classification") == (
        "log_loss"
    )
    assert live_metric(model("regression", "roc_auc"), "regression") == "mae"
    assert live_metric(None, "classification") == "roc_auc"
    assert live_metric(None, "classification", classes=3) == "log_loss"
    assert live_metric(model("classification", "accuracy"), "classification", 3) == (
        "accuracy"
    )
