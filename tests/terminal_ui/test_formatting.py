"""Pure parts of the terminal UI and of the overview route: formatting, traffic."""

from __future__ import annotations

import doctest
import math
from types import ModuleType

import pytest
from textual.content import Content

import tui
from appliance.serving import _traffic
from appliance.serving._traffic import (
    TrafficSample,
    TrafficWindow,
    compare,
    histogram_quantile,
)
from tui import _data, _format, _html, _monitoring
from tui._drift_check import scheduled_check_text


@pytest.mark.parametrize("module", [_data, _format, _html, _monitoring, _traffic])
def test_docstring_examples_hold(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


def test_public_names_exported() -> None:
    for name in tui.__all__:
        assert hasattr(tui, name), name


def test_quantile_in_inf_bucket_is_last_bound() -> None:
    buckets = ((0.1, 0.0), (0.5, 1.0), (math.inf, 10.0))
    assert histogram_quantile(0.99, buckets) == 0.5


def test_quantile_interpolates_in_first_bucket() -> None:
    buckets = ((0.01, 4.0), (math.inf, 4.0))
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.005)


def sample(at: float, requests: float, errors: float = 0.0) -> TrafficSample:
    """Return a sample whose requests all took between 1 and 2 ms."""
    good = requests - errors
    return TrafficSample(
        at, requests, errors, ((0.001, 0.0), (0.002, good), (math.inf, good))
    )


def test_compare_rates_and_errors() -> None:
    stats = compare(sample(0.0, 10.0, 1.0), sample(10.0, 30.0, 3.0))
    assert stats.requests == 20
    assert stats.requests_per_second == pytest.approx(2.0)
    assert stats.error_rate == pytest.approx(0.1)
    assert stats.p50_ms is not None
    assert 1.0 <= stats.p50_ms <= 2.0


def test_compare_without_requests_has_no_rates() -> None:
    stats = compare(sample(0.0, 5.0), sample(4.0, 5.0))
    assert stats.requests_per_second == 0.0
    assert stats.error_rate is None
    assert stats.p50_ms is None


def test_window_drops_samples_older_than_window() -> None:
    window = TrafficWindow(TrafficSample(0.0, 0.0, 0.0, ()), seconds=60.0)
    for at in range(0, 200, 10):
        stats = window.observe(sample(float(at), float(at)))
    assert window.samples[0].at == 130.0
    assert stats.seconds == pytest.approx(60.0)
    assert stats.requests_per_second == pytest.approx(1.0)


def test_window_first_call_covers_uptime() -> None:
    window = TrafficWindow(TrafficSample(0.0, 0.0, 0.0, ()))
    stats = window.observe(sample(5.0, 10.0))
    assert stats.seconds == pytest.approx(5.0)
    assert stats.requests == 10


def test_check_text_older_daemon_not_reported() -> None:
    text = scheduled_check_text("m", None, None)

    assert text == "Scheduled drift check: not reported by this daemon"


def test_check_text_no_run_names_command() -> None:
    check = {"last_run": None, "failed_runs": 0, "next_run_at": None}

    text = scheduled_check_text("m", check, None)

    assert text.startswith("Scheduled drift check: no run has ended yet")
    assert "Run one now: appliance drift m --check" in text


def test_check_text_counts_unfit_rows() -> None:
    detail = {"version": 1, "rows": 60, "tested": 4, "drifted": [], "unfit_rows": 4}
    check = {
        "last_run": {
            "outcome": "finished",
            "finished_at": "2026-01-02T03:04:05+00:00",
            "detail": detail,
        },
        "failed_runs": 0,
        "next_run_at": None,
    }

    text = scheduled_check_text("m", check, None)

    assert "60 rows against version 1" in text
    assert "4 rows left out because they do not fit the request types" in text


def test_check_text_failure_escapes_error() -> None:
    check = {
        "last_run": {
            "outcome": "failed",
            "finished_at": "2026-01-02T03:04:05+00:00",
            "error": "OSError: [Errno 2] no file [b]",
        },
        "failed_runs": 1,
        "failing_since": "2026-01-02T03:04:00+00:00",
        "running_since": "2026-01-02T04:04:00+00:00",
        "alert": None,
        "next_run_at": None,
    }

    text = scheduled_check_text("m", check, None)
    lines = Content.from_markup(text).plain.splitlines()

    assert lines[0].endswith("failing since 2026-01-02 03:04:00 (1 failed run)")
    assert lines[1] == "Error: OSError: [Errno 2] no file [b]"
    assert "last stored scores: none stored yet" in lines[2]
    assert lines[3] == "A run is in progress since 2026-01-02 04:04:00."
