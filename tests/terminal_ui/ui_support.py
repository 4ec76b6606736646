"""Helpers of the terminal UI tests: a trained home, daemons, screen text."""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from support import (
    Daemon,
    make_binary,
    model_table,
    start_daemon,
    write_config_file,
)

from appliance.config import load_config
from appliance.monitoring import (
    AlertCandidate,
    DriftReport,
    FeatureDrift,
    MonitoringStore,
)
from appliance.storage import Catalog, ingest
from appliance.training import train_model
from tui import ApplianceApp, UiClient

MODEL = "tumour"
"""The one model of the home: a small LightGBM classifier, trained twice."""
DATASET = "binary"
SIZES = {"small": (80, 24), "large": (120, 40)}
"""Terminal sizes of the snapshots, as (columns, rows)."""
WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class UiHome:
    """A config and home with two versions of `MODEL`, never served itself."""

    config_path: Path
    home: Path
    frame: pd.DataFrame


_HOMES: dict[str, UiHome] = {}


def shared_home(factory: Any) -> UiHome:
    """Return the home built once per test session, from any test module.

    Args:
        factory: The session's ``tmp_path_factory``.
    """
    if "home" not in _HOMES:
        _HOMES["home"] = build_home(factory.mktemp("ui-home"))
    return _HOMES["home"]


def build_home(root: Path) -> UiHome:
    """Ingest the binary dataset and train `MODEL` twice (versions 1 and 2)."""
    home = root / "home"
    table = model_table(DATASET, "malignant", "classification", "lightgbm")
    config_path = write_config_file(root / "config.toml", home, {MODEL: table})
    config = load_config(config_path)
    frame = make_binary()
    source = root / "binary.csv"
    frame.to_csv(source, index=False)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, DATASET, [source])
    train_model(config, MODEL)
    train_model(config, MODEL)
    seed_monitoring(config.storage.home)
    return UiHome(config_path, config.storage.home, frame)


DRIFT_CHECKS = 4
"""Drift checks recorded in the home: PSI grows by `DRIFT_STEP` per check."""
DRIFT_STEP = {"radius": 0.05, "site": 0.01}


def seed_monitoring(home: Path) -> None:
    """Record drift checks and one open alert, as the monitoring jobs would."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with MonitoringStore(home) as store:
        for check in range(1, DRIFT_CHECKS + 1):
            report = DriftReport(
                [
                    FeatureDrift(
                        feature,
                        "numeric",
                        "drift" if step * check > 0.1 else "ok",
                        step * check,
                        None,
                        None,
                        100,
                        100,
                    )
                    for feature, step in DRIFT_STEP.items()
                ]
            )
            store.record_drift(MODEL, report, now=start + timedelta(days=check))
        store.record_alert(
            AlertCandidate(
                MODEL,
                "drift",
                "radius",
                "warning",
                "radius drifted: PSI 0.20",
                0.2,
                0.1,
            ),
            now=start,
        )


def copy_home(template: UiHome, root: Path) -> UiHome:
    """Copy the home and its config so that a test may change them."""
    root.mkdir(parents=True, exist_ok=True)
    home = root / "home"
    shutil.copytree(template.home, home)
    text = template.config_path.read_text(encoding="utf-8")
    config_path = root / "config.toml"
    config_path.write_text(
        text.replace(str(template.home), str(home)), encoding="utf-8"
    )
    return UiHome(config_path, home, template.frame)


def serve(ui_home: UiHome, root: Path) -> Daemon:
    """Start a daemon on a copy of `ui_home` under `root`."""
    copy = copy_home(ui_home, root)
    return start_daemon(copy.config_path, copy.home, root / "daemon.log")


def run_app(
    base_url: str,
    scenario: Callable[[ApplianceApp, Any], Awaitable[None]],
    size: tuple[int, int] = SIZES["small"],
    refresh_seconds: float = 0.5,
    api_key: str | None = None,
) -> None:
    """Run the app headless against `base_url` and drive it with `scenario`.

    The app's client sends `api_key` as a bearer token when it is set.
    """

    async def main() -> None:
        client = UiClient(base_url, api_key=api_key)
        app = ApplianceApp(client, refresh_seconds=refresh_seconds)
        async with app.run_test(size=size) as pilot:
            await scenario(app, pilot)

    asyncio.run(main())


async def wait_for(
    pilot: Any, condition: Callable[[], bool], what: str, seconds: float = WAIT_SECONDS
) -> None:
    """Let the app run until `condition()` holds.

    Raises:
        AssertionError: `condition` did not hold within `seconds`.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def screen_text(app: ApplianceApp) -> str:
    """Return the current screen as plain text, one line per terminal row.

    NOTE: this mirrors `App.export_screenshot`, which reaches the screen's
    compositor the same way, but records text instead of SVG.
    """
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        record=True,
        legacy_windows=False,
        safe_box=False,
        color_system=None,
    )
    render = app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens
    )
    console.print(render)
    return console.export_text(styles=False)


async def shown_text(pilot: Any) -> str:
    """Return the screen as text once pending updates are drawn.

    A data table measures its columns when the app is idle after rows are
    added, so one pause is not always enough.
    """
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause(0.2)
    await pilot.pause()
    return screen_text(pilot.app)


def notifications(app: ApplianceApp) -> list[str]:
    """Return the messages of the notifications on show."""
    return [str(n.message) for n in app._notifications]


_DIGITS = re.compile(r"\d")
_HEX = re.compile(r"[0-9a-f]")
_MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), _DIGITS),
    (re.compile(r"\b\d\d:\d\d:\d\d\b"), _DIGITS),
    (re.compile(r"\b\d\d-\d\d \d\d:\d\d\b"), _DIGITS),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"\bpid \d+"), "pid <pid>"),
    (re.compile(r"\b[0-9a-f]{8,}\b"), _HEX),
    (re.compile(r"(?<![\d.]) *\d+\.\d+(?![\d.])"), "float"),
    (re.compile(r"\b\d+[dhms]( \d+[hms])?\b"), "<duration>"),
    (re.compile(r"Prediction log: .*"), _DIGITS),
]


def _mask_float(match: re.Match[str]) -> str:
    """Mask a float and the spaces before it, right-aligned in the same width."""
    number = match.group().strip()
    decimals = len(number.split(".")[1])
    return ("#." + "#" * decimals).rjust(len(match.group()))


def mask(text: str) -> str:
    """Replace values that change from run to run, mostly keeping their width.

    Digits (and hex digits of ids) become ``#``, so a layout change still shows.
    """
    for pattern, replacement in _MASKS:
        if replacement == "float":
            text = pattern.sub(_mask_float, text)
        elif isinstance(replacement, str):
            text = pattern.sub(replacement, text)
        else:
            chars = replacement
            text = pattern.sub(lambda m, c=chars: c.sub("#", m.group()), text)
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
