"""Count false alarms of the streaming detectors on a stationary flights stream.

January to March 2013 flights (77,911 labelled rows, the 14 replay features)
are shuffled with a fixed seed, so the stream has no drift by construction,
and fed through a `StreamMonitor` with its default settings. For comparison,
River's `KSWIN` and `PageHinkley` with their library defaults run on each
numeric feature over the first 20,000 rows.

Usage: .venv/bin/python benchmarks/calibrate_detectors.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from replay import CATEGORICAL, NUMERIC, load_flights  # noqa: E402
from river.drift import KSWIN, PageHinkley  # noqa: E402

from appliance.monitoring import StreamMonitor  # noqa: E402

RIVER_ROWS = 20_000


def main() -> int:
    frame = load_flights()
    winter = frame[frame["day"] < "2013-04-01"].sample(frac=1.0, random_state=0)
    records = winter[NUMERIC + CATEGORICAL].to_dict("records")
    monitor = StreamMonitor("classification", NUMERIC, CATEGORICAL)
    events = []
    for record in records:
        events += monitor.observe_prediction(record, [0.5, 0.5])
    values = len(records) * (len(NUMERIC) + len(CATEGORICAL))
    print(f"appliance: {len(events)} alarms in {len(records)} rows ({values} values)")
    for event in events:
        print(f"  {event.subject} ({event.cause}) at row {event.index}")

    kswin = page_hinkley = checked = 0
    for name in NUMERIC:
        detectors = (KSWIN(seed=1), PageHinkley())
        for record in records[:RIVER_ROWS]:
            value = record[name]
            if value is None or math.isnan(value):
                continue
            checked += 1
            for detector in detectors:
                detector.update(value)
            kswin += detectors[0].drift_detected
            page_hinkley += detectors[1].drift_detected
    print(
        f"River defaults on {checked} numeric values: KSWIN {kswin}, "
        f"PageHinkley {page_hinkley} alarms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
