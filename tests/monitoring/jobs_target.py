"""Job targets for the scheduler tests, importable by reference."""

from __future__ import annotations

import time


def tick(label: str) -> dict[str, str]:
    """Return the label, so the run's detail names the caller."""
    return {"label": label}


def slow(seconds: float) -> None:
    """Sleep, so a test can stop the process in the middle of a run."""
    time.sleep(seconds)
