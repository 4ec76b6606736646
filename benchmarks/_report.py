"""Helpers of the benchmarks: machine facts and sections of docs/benchmarks.md.

Each benchmark owns one section of the page, which starts at its ``## ``
heading; a script rewrites only its own section.
"""

from __future__ import annotations

import os
import platform
import statistics
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "benchmarks.md"
TITLE = "# Benchmarks\n\nMeasured numbers of the appliance, each next to its peer.\n"


def machine() -> str:
    """Return one line about the machine, its load and the Python version."""
    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        cpu = model
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average {load} at the start "
        f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)"
    )


def median(values: list[float]) -> float:
    """Return the median of the measured values."""
    return statistics.median(values)


def write_section(name: str, body: str) -> None:
    """Replace the section of the benchmarks page that `body` starts.

    `body` begins with its ``## `` heading; `name` is kept for the callers'
    logs. Sections are delimited by their headings, as in `_page`.
    """
    from _page import write_section as write_heading_section

    heading = body.strip().splitlines()[0].removeprefix("## ").strip()
    write_heading_section(heading, body)
