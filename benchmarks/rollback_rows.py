"""Rollback watch on 2013 flights: same rows against each version's own window.

A promotion every 14 days from 15 April to 2 December 2013. At each one the
new champion is the flights model of `scripts/replay_in_process.py` fitted on
every earlier flight, and the previous champion is the one fitted 14 days
before. The watch judges the new champion on its first day of labels, about
900 flights, and again on its first 3 days. (The daemon judges once
`min_live_labels`, 500 by default, have arrived.) Both use `decide_rollback`
with a margin of 0.02 ROC AUC:

- windows: the new champion's labels against the previous champion's last
  `metrics_window` labelled flights before the promotion (how the watch
  judged before it scored the previous version again);
- same rows: both versions on the new champion's labels.

The reference is both versions on the 30 days after the promotion. A
rollback is harmful when the new champion scores higher there, and a needed
rollback is one where it scores lower by more than the margin. Each promotion
is judged twice: once with the refitted model, and once with a faulty one
fitted on the last 3 days of flights only (a training window set too short),
which the watch should roll back.

Run: .venv/bin/python benchmarks/rollback_rows.py [--estimators 60]
Writes the "Rollback watch" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from _page import write_section  # noqa: E402
from replay_in_process import fit, load_flights, model_config, score  # noqa: E402

from appliance.config import RetrainConfig  # noqa: E402
from appliance.monitoring import DetectorSettings, decide_rollback, roc_auc  # noqa: E402

FIRST = datetime(2013, 4, 15)
STEP = timedelta(days=14)
LAST = datetime(2013, 12, 2)
HORIZON = timedelta(days=30)
FAULTY_SPAN = timedelta(days=3)
JUDGED_DAYS = (timedelta(days=1), timedelta(days=3))
"""Days of the new champion's labels the watch judges on: about 900 and
2,700 flights."""


@dataclass(frozen=True)
class Judged:
    """One promotion and the verdict of each way of judging it."""

    day: datetime
    new: str
    """``refit`` or ``faulty``."""
    new_first_day: float
    old_window: float
    old_first_day: float
    new_month: float
    old_month: float
    windows: bool
    """Whether comparing each version's own window rolls back."""
    same_rows: bool
    """Whether comparing both on the same rows rolls back."""


def judge(frame: pd.DataFrame, estimators: int, window: int) -> dict[int, list[Judged]]:
    """Fit a version per promotion day and judge each promotion both ways.

    Returns:
        The verdicts by the number of days of labels the watch judged on.
    """
    cfg = model_config(estimators)
    policy = RetrainConfig(metric="roc_auc")
    days = []
    day = FIRST
    while day <= LAST:
        days.append(day)
        day += STEP
    previous = fit(cfg, frame[frame["day"] < FIRST - STEP])
    judged: dict[int, list[Judged]] = {}
    for day in days:
        current = fit(cfg, frame[frame["day"] < day])
        recent = frame[(frame["day"] >= day - FAULTY_SPAN) & (frame["day"] < day)]
        faulty = fit(cfg, recent)
        before = frame[frame["day"] < day].tail(window)
        month = frame[(frame["day"] >= day) & (frame["day"] < day + HORIZON)]
        for span in JUDGED_DAYS:
            first = frame[(frame["day"] >= day) & (frame["day"] < day + span)]
            old = (_auc(previous, before), _auc(previous, first))
            old_month = _auc(previous, month)
            for name, new in (("refit", current), ("faulty", faulty)):
                item = _judge(policy, day, name, new, (*old, old_month), first, month)
                judged.setdefault(span.days, []).append(item)
                print(span.days, _row(item), flush=True)
        previous = current
    return judged


def _judge(
    policy: RetrainConfig,
    day: datetime,
    name: str,
    new: object,
    old: tuple[float, float, float],
    first: pd.DataFrame,
    month: pd.DataFrame,
) -> Judged:
    """Judge one promotion by each version's own window and by the same rows."""
    new_first_day = _auc(new, first)
    windows = decide_rollback(policy, new_first_day, old[0])
    same = decide_rollback(policy, new_first_day, old[1])
    return Judged(
        day,
        name,
        new_first_day,
        *old[:2],
        _auc(new, month),
        old[2],
        windows.act,
        same.act,
    )


def _auc(pipeline: object, rows: pd.DataFrame) -> float:
    value = roc_auc(rows["late"].to_numpy(), score(pipeline, rows))
    return float("nan") if value is None else value


def _row(item: Judged) -> str:
    return (
        f"| {item.day:%Y-%m-%d} | {item.new} | {item.new_first_day:.4f} "
        f"| {item.old_window:.4f} "
        f"| {item.old_first_day:.4f} | {item.new_month:.4f} | {item.old_month:.4f} "
        f"| {_verdict(item.windows)} | {_verdict(item.same_rows)} |"
    )


def _verdict(rolled_back: bool) -> str:
    return "rollback" if rolled_back else "kept"


def summary(judged: dict[int, list[Judged]], margin: float) -> list[str]:
    """Count rollbacks, harmful ones and missed ones for each way of judging."""
    lines = []
    for days, items in judged.items():
        for name in ("windows", "same_rows"):
            rolled = [j for j in items if getattr(j, name)]
            harmful = [j for j in rolled if j.new_month > j.old_month]
            needed = [j for j in items if j.new_month < j.old_month - margin]
            missed = [j for j in needed if not getattr(j, name)]
            lines.append(
                f"| {days} | {name.replace('_', ' ')} | {len(rolled)} of {len(items)} "
                f"| {len(harmful)} | {len(missed)} of {len(needed)} |"
            )
    return [
        "| days judged | compared on | rolled back | harmful | needed, missed |",
        "| ---: | --- | ---: | ---: | ---: |",
        *lines,
    ]


def _page(
    judged: dict[int, list[Judged]], args: argparse.Namespace, seconds: float
) -> str:
    margin = RetrainConfig().rollback_margin
    header = (
        "| promoted | new | new, first day | previous, own window "
        "| previous, first day | new, next 30 days | previous, next 30 days "
        "| windows | same rows |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"
    )
    rows = "\n".join(_row(j) for j in judged[1])
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return "\n".join(
        [
            "## Rollback watch",
            "",
            "Written by `benchmarks/rollback_rows.py`.",
            "",
            f"- {platform.platform()}, Python {platform.python_version()}, "
            f"{os.cpu_count()} CPUs; load average at the end {load}; "
            f"{seconds:.0f} s.",
            f"- Flights model of `scripts/replay_in_process.py` with "
            f"{args.estimators} trees; a promotion every 14 days from "
            f"{FIRST:%d %B} to {LAST:%d %B} 2013. ROC AUC; margin {margin}. "
            "`refit` is the new champion fitted on every earlier flight, "
            "`faulty` one fitted on the 3 days before the promotion only. The "
            "previous champion is the `refit` of 14 days before; its own window "
            f"is its last {args.window} labelled flights before the promotion.",
            "- Harmful: rolled back although the new champion scored higher "
            "over the 30 days after the promotion. Needed: it scored lower by "
            "more than the margin there.",
            "",
            *summary(judged, margin),
            "",
            "Each promotion judged on the new champion's first day of labels:",
            "",
            header,
            rows,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", type=int, default=60)
    parser.add_argument("--window", type=int, default=DetectorSettings().metrics_window)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    frame = load_flights()
    judged = judge(frame, args.estimators, args.window)
    seconds = time.perf_counter() - started
    for line in summary(judged, RetrainConfig().rollback_margin):
        print(line)
    write_section("Rollback watch", _page(judged, args, seconds))
    print(f"done at {datetime.now(UTC):%H:%M} UTC", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
