"""Count false alarms and detection delays of the streaming loss detector on flights.

The model is ``flights_late`` as `config.toml` declares it (LightGBM, 300
trees of 7 leaves, at least 400 rows per leaf) on the 14 features of
`scripts/replay.py`, fit by the appliance's training pipeline. Each labelled
flight, in time order, gives the log loss of the true class as
`StreamMonitor.observe_label` computes it. The same losses go to the previous
detector (ADWIN with delta 0.002, River's ``river.drift.ADWIN``, whose
detection indices the daemon's ADWIN matched) and to the current one,
`LossDriftDetector` with the default settings and with other `sigmas`.

False alarms: the stable stretches of `benchmarks/calibrate_detectors.py`.
8 to 28 July is scored by a model fit on 1 January to 30 June. 7 to 27
January is scored by a model fit on 1 February to 30 April, because no
labelled flights come before January 2013. And 8 July to 31 December is
scored by the July model, which ages over those months, as 1 April to 31
December is by the model of January to March, the replay's version 1.

Detection: rows from the change to the first detection. The cases run on
8 July to 4 August, scored by the model fit up to 30 June, with the change
at row 15,000, after a reference of two weeks. From that row either the
labels of a seeded random share of rows are flipped, or one feature is stuck
at its value in that row. The season case is the model fit on January to
March, scored on 1 to 14 April and then on 8 to 21 July. The cases leave
out the week of 4 July: in a one-off check its holiday days had the lowest
daily losses of July, which would start the reference low.

Usage: .venv/bin/python benchmarks/calibrate_loss_detector.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from river.drift import ADWIN

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from replay import CATEGORICAL, NUMERIC, load_flights  # noqa: E402

from appliance.config import ModelConfig  # noqa: E402
from appliance.monitoring import LossDriftDetector  # noqa: E402
from appliance.monitoring._performance import row_loss  # noqa: E402
from appliance.training._pipeline import build_pipeline  # noqa: E402

CHANGE_ROW = 15_000
SETTINGS = (
    (28, 2.0, 4.0),
    (7, 2.0, 4.0),
    (28, 1.0, 4.0),
    (28, 1.5, 5.0),
    (28, 2.0, 3.0),
)
"""`LossDriftDetector` max_cycles, allowance and threshold compared; the first
are the defaults."""
FLIP_SEED = 0


def main() -> int:
    report_synthetic_false_alarms()
    frame = load_flights()
    july_model = fit(days(frame, "2013-01-01", "2013-06-30"))
    january_model = fit(days(frame, "2013-02-01", "2013-04-30"))
    print(header())
    for label, model, first, last in (
        ("8-28 July", july_model, "2013-07-08", "2013-07-28"),
        ("7-27 January", january_model, "2013-01-07", "2013-01-27"),
    ):
        rows = days(frame, first, last)
        report_false_alarms(label, rows, losses(model, rows))

    aging = days(frame, "2013-07-08", "2013-12-31")
    report_false_alarms("8 July-31 December", aging, losses(july_model, aging))

    base = days(frame, "2013-07-08", "2013-08-04")
    probability = score(july_model, base)
    for share in (0.1, 0.25, 0.5):
        flipped = flip_labels(base["late"].to_numpy(), share)
        report_delays(
            f"labels flipped, {share:.0%} of rows",
            log_losses(flipped, probability),
            CHANGE_ROW,
        )
    for column in ("temp", "sched_dep_time"):
        stuck = base.copy()
        stuck.loc[CHANGE_ROW:, column] = stuck.loc[CHANGE_ROW, column]
        report_delays(f"{column} stuck", losses(july_model, stuck), CHANGE_ROW)

    spring_model = fit(days(frame, "2013-01-01", "2013-03-31"))
    served = days(frame, "2013-04-01", "2013-12-31")
    report_false_alarms(
        "1 April-31 December, January-March model",
        served,
        losses(spring_model, served),
    )
    april = days(frame, "2013-04-01", "2013-04-14")
    july = days(frame, "2013-07-08", "2013-07-21")
    season = pd.concat([april, july], ignore_index=True)
    report_delays(
        "January-March model, April then July",
        losses(spring_model, season),
        len(april),
    )
    return 0


def report_synthetic_false_alarms(runs: int = 100, windows: int = 365) -> None:
    """Print the windows per false detection on windows of normal means.

    Each window has 30 values: its level, drawn for the window, plus noise.
    The CUSUM's false detections come from a reference mean and spread
    estimated from few windows, which this isolates from the flights data.
    """
    print(f"independent normal window means, {runs} runs of {windows} windows:")
    for max_cycles, allowance, threshold in SETTINGS:
        count = 0
        for seed in range(runs):
            rng = np.random.default_rng(seed)
            levels = np.repeat(rng.normal(0.5, 0.08, windows), 30)
            stream = levels + rng.normal(0.0, 0.1, levels.size)
            detector = LossDriftDetector(
                30, 7, max_cycles, allowance=allowance, threshold=threshold
            )
            count += len(detector.update_many(stream))
        per = runs * windows / count if count else float("inf")
        print(
            f"  CUSUM max_cycles={max_cycles} k={allowance:g} h={threshold:g}: "
            f"{count} detections, one per {per:.0f} windows"
        )


def days(frame: pd.DataFrame, first: str, last: str) -> pd.DataFrame:
    """Return the rows of the days from `first` to `last`, in time order."""
    within = (frame["day"] >= first) & (frame["day"] <= last)
    return frame[within].reset_index(drop=True)


def fit(rows: pd.DataFrame):
    """Fit ``flights_late`` with the parameters of `config.toml` on `rows`."""
    config = ModelConfig(
        name="flights_late",
        dataset="flights",
        target="late",
        task="classification",
        algorithm="lightgbm",
        features=tuple(NUMERIC + CATEGORICAL),
        categorical=tuple(CATEGORICAL),
        params={
            "n_estimators": 300,
            "learning_rate": 0.05,
            "num_leaves": 7,
            "min_child_samples": 400,
        },
    )
    pipeline = build_pipeline(config, NUMERIC, CATEGORICAL)
    pipeline.fit(rows[NUMERIC + CATEGORICAL], rows["late"].to_numpy())
    return pipeline


def score(model, rows: pd.DataFrame) -> np.ndarray:
    """Return the probability of a late arrival of each row."""
    return model.predict_proba(rows[NUMERIC + CATEGORICAL])[:, 1]


def log_losses(labels: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """Return each row's loss as the daemon's monitor computes it."""
    return np.array(
        [
            row_loss("classification", label, [1.0 - p, p])
            for label, p in zip(labels, probability, strict=True)
        ]
    )


def losses(model, rows: pd.DataFrame) -> np.ndarray:
    """Return the loss of each row of `rows` scored by `model`."""
    return log_losses(rows["late"].to_numpy(), score(model, rows))


def flip_labels(labels: np.ndarray, share: float) -> np.ndarray:
    """Return `labels` with a seeded random `share` flipped from `CHANGE_ROW`."""
    rng = np.random.default_rng(FLIP_SEED)
    flipped = labels.copy()
    chosen = rng.random(labels.size) < share
    chosen[:CHANGE_ROW] = False
    flipped[chosen] = 1 - flipped[chosen]
    return flipped


def detectors() -> dict[str, object]:
    """Return fresh detectors by name: ADWIN, then one per `SETTINGS` entry."""
    found: dict[str, object] = {"ADWIN": ADWIN(delta=0.002)}
    for max_cycles, allowance, threshold in SETTINGS:
        name = f"CUSUM max_cycles={max_cycles} k={allowance:g} h={threshold:g}"
        found[name] = LossDriftDetector(
            max_cycles=max_cycles, allowance=allowance, threshold=threshold
        )
    return found


def header() -> str:
    return "detectors: " + ", ".join(detectors())


def detections(stream: np.ndarray) -> dict[str, list[int]]:
    """Return the detection indices of each fresh detector fed `stream`."""
    found = {}
    for name, detector in detectors().items():
        indices = []
        for index, value in enumerate(stream):
            detector.update(float(value))
            if detector.drift_detected:
                indices.append(index)
        found[name] = indices
    return found


def report_false_alarms(label: str, rows: pd.DataFrame, stream: np.ndarray) -> None:
    """Print the detections per day of each detector on a stretch without drift."""
    day_count = rows["day"].nunique()
    daily = pd.Series(stream).groupby(rows["day"]).mean()
    error = stream.std() / np.sqrt(len(rows) / day_count)
    print(
        f"{label}: {len(rows)} rows, {day_count} days, mean log loss "
        f"{stream.mean():.3f}, sd of the daily means {daily.std():.3f}, "
        f"standard error of a day's mean from its losses {error:.3f}"
    )
    for name, indices in detections(stream).items():
        alarm_days = rows.loc[indices, "day"].nunique()
        print(
            f"  {name}: {len(indices)} alarms, {len(indices) / day_count:.2f} "
            f"per day, on {alarm_days} days"
        )


def report_delays(label: str, stream: np.ndarray, change: int) -> None:
    """Print each detector's alarms before `change` and rows to a detection."""
    rise = stream[change:].mean() - stream[:change].mean()
    print(
        f"{label}: change at row {change} of {len(stream)}, mean log loss "
        f"{stream[:change].mean():.3f} before, {rise:+.3f} after"
    )
    for name, indices in detections(stream).items():
        before = sum(index < change for index in indices)
        after = [index - change for index in indices if index >= change]
        first = after[0] if after else "none"
        print(f"  {name}: {before} alarms before, rows to detection {first}")


if __name__ == "__main__":
    sys.exit(main())
