"""Count false alarms and detection delays of the streaming detectors on flights.

Rows go to a `StreamMonitor` with its default settings in time order, as the
daemon receives them, with the 14 features of `scripts/replay.py`.

False alarms: three weeks without a seasonal level shift. 8 to 28 July and
7 to 27 January 2013 lie at the top and the bottom of New York's yearly
temperature curve, where the climate normals change least; 7 January is the
first Monday after the New Year holidays and 8 July the first Monday after
Independence Day. The weather still changes from day to day, so the alarms
are given per feature and per day. For comparison, January to March
shuffled with a fixed seed, which hides the daily cycle.

Detection: rows from the change to the first detection of the changed feature
in four cases: 7 to 20 January followed by 8 to 21 July, the temperature stuck
at one value from a row on, a new carrier code for United Airlines, and a new
code for the EWR origin. The stuck and new-code cases run on 1 to 28 July
from row 15,000, after the reference of a week is full.

Usage: .venv/bin/python benchmarks/calibrate_detectors.py
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from replay import CATEGORICAL, NUMERIC, load_flights  # noqa: E402

from appliance.monitoring import StreamMonitor  # noqa: E402

CHANGE_ROW = 15_000
WEATHER = ["temp", "dewp", "humid", "wind_speed", "pressure", "visib"]


def main() -> int:
    frame = load_flights()
    for label, first, last in (
        ("8-28 July", "2013-07-08", "2013-07-28"),
        ("7-27 January", "2013-01-07", "2013-01-27"),
    ):
        report_false_alarms(label, days(frame, first, last))
    shuffled = days(frame, "2013-01-01", "2013-03-31").sample(frac=1.0, random_state=0)
    report_false_alarms("January to March shuffled", shuffled)

    january = days(frame, "2013-01-07", "2013-01-20")
    july = days(frame, "2013-07-08", "2013-07-21")
    season = pd.concat([january, july], ignore_index=True)
    report_delays("January then July", season, len(january), WEATHER)

    base = days(frame, "2013-07-01", "2013-07-28")
    stuck = base.copy()
    stuck.loc[CHANGE_ROW:, "temp"] = stuck.loc[CHANGE_ROW, "temp"]
    report_delays("temp stuck", stuck, CHANGE_ROW, ["temp"])
    for column, old, new in (("carrier", "UA", "ZZ"), ("origin", "EWR", "XXX")):
        renamed = base.copy()
        later = (renamed.index >= CHANGE_ROW) & (renamed[column] == old)
        renamed.loc[later, column] = new
        share = (base[column] == old).mean()
        label = f"new {column} code for {old} ({share:.1%} of rows)"
        report_delays(label, renamed, CHANGE_ROW, [column])
    return 0


def days(frame: pd.DataFrame, first: str, last: str) -> pd.DataFrame:
    """Return the rows of the days from `first` to `last`, in time order."""
    within = (frame["day"] >= first) & (frame["day"] <= last)
    return frame[within].reset_index(drop=True)


def feed(rows: pd.DataFrame) -> list:
    """Return the detections of a fresh monitor fed `rows` in 1000-row batches."""
    records = rows[NUMERIC + CATEGORICAL].to_dict("records")
    monitor = StreamMonitor("classification", NUMERIC, CATEGORICAL)
    events = []
    for start in range(0, len(records), 1000):
        batch = records[start : start + 1000]
        events += monitor.observe_predictions(batch, [[0.5, 0.5]] * len(batch))
    return events


def report_false_alarms(label: str, rows: pd.DataFrame) -> None:
    """Print the alarms per feature and per day of a stretch without drift."""
    events = feed(rows)
    day_count = rows["day"].nunique()
    print(
        f"{label}: {len(rows)} rows, {day_count} days, {len(events)} alarms, "
        f"{len(events) / day_count:.2f} per day"
    )
    by_feature = Counter(event.subject for event in events)
    for name in NUMERIC + CATEGORICAL:
        count = by_feature.get(name, 0)
        if count:
            print(f"  {name}: {count} ({count / day_count:.2f} per day)")


def report_delays(label: str, rows: pd.DataFrame, change: int, names: list) -> None:
    """Print the alarms before `change` and the rows from it to a detection."""
    events = feed(rows)
    before = sum(event.index < change for event in events)
    delays = []
    for name in names:
        after = [e.index - change for e in events if e.subject == name]
        after = [delay for delay in after if delay >= 0]
        delays.append(f"{name} {after[0] if after else 'none'}")
    print(f"{label}: change at row {change} of {len(rows)}, {before} alarms before")
    print(f"  rows to detection: {', '.join(delays)}")


if __name__ == "__main__":
    sys.exit(main())
