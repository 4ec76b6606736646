"""Replay April to December 2013 flights through a running daemon's HTTP API.

The script creates a fresh appliance home with its own config: the
``flights_late`` model on the replay's features, with a retraining policy
triggered by drift alarms on an event clock (cool-downs and windows count in
data time). It ingests January to March, trains the static champion with
``appliance train``, and starts ``appliance serve`` on 127.0.0.1. Then, day by
day in time order, it sends the day's flights to the predict route, waits for
the streaming monitor and any retraining its alarms start, appends the
labelled rows to the dataset through ``POST /v1/datasets/flights/rows``, sends
the labels (arrival more than 15 minutes late) to the feedback route in one
batch, and waits for any retraining again. The served version of each row
comes from the predict responses.

The dataset holds the flights with the origin's weather joined as of the
scheduled hour by this script, so request rows carry every feature and the
model has no feature views for the daemon to fill.

Printed per month: the versions served, AUC and log loss of what was served,
the AUC of three references computed in this process on the same features
(the static champion, which is the daemon's version 1; a blind schedule with
as many retrainings as the daemon ran, on evenly spaced days through the same
gate and refit; a hindsight model retrained on the first of every month on
all earlier labels), and the days with drift alerts, the alarms recorded
without a run, the runs, the promotions and the rollbacks. Then the timeline of
runs and rollbacks. A full run replaces the section of docs/benchmarks.md.

Usage:
    .venv/bin/python scripts/replay.py [--estimators 60] [--days N] ...
"""

from __future__ import annotations

import argparse
import logging
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _replay_daemon import (
    MODEL,
    SETTLE_SECONDS,
    PolicySettings,
    ReplayDaemon,
    ReplayHome,
    request_rows,
)
from replay_in_process import (
    CATEGORICAL,
    NUMERIC,
    Options,
    Served,
    auc,
    blind_days,
    fit,
    hindsight,
    load_flights,
    model_config,
    monthly_table,
    replay,
    score,
)

from appliance.config import ModelConfig, RetrainConfig, load_config
from appliance.serving import OnnxModel
from appliance.serving._inputs import columns_to_feed
from appliance.signing import trusted_keys

ROOT = Path(__file__).resolve().parents[1]
FIRST_DAY = pd.Timestamp(2013, 4, 1)
FEATURES = NUMERIC + CATEGORICAL
DATASET_COLUMNS = ["time_hour", *FEATURES, "late"]
REQUEST_COLUMNS = ["time_hour", *FEATURES]

logger = logging.getLogger("replay")


@dataclass
class DaemonTimeline:
    """Events of the daemon during the replay, by replayed day."""

    events: list[tuple[pd.Timestamp, str, str]] = field(default_factory=list)
    """Replayed day, kind (``alert``, ``skip``, ``retrain`` or ``rollback``) and
    text."""
    retrainings: list[dict[str, Any]] = field(default_factory=list)
    """Retraining runs (not skips), oldest first."""
    seen: set[str] = field(default_factory=set)
    """Ids of the retraining records already in the timeline."""
    skips: int = 0
    """Alarms the policy recorded without a run (cool-down, budget, labels)."""
    alerts: dict[str, int] = field(default_factory=dict)
    """Count of each alert, by kind and subject, after the latest day."""
    alert_days: int = 0
    """Replayed days that raised or repeated a drift alert."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of the replay's phases, by phase."""

    def add(self, day: pd.Timestamp, kind: str, text: str) -> None:
        """Record one event of `day`."""
        self.events.append((day, kind, text))

    def by_month(self) -> pd.DataFrame:
        """Return per month the days with drift alerts, skips, runs, promotions."""
        events = pd.DataFrame(self.events, columns=["day", "kind", "text"])
        # A replay without events gives an object column, which has no .dt.
        events["day"] = pd.to_datetime(events["day"])
        months = events["day"].dt.month
        counts = {
            "alert_days": events[events["kind"] == "alert"].groupby(months).size(),
            "skips": events[events["kind"] == "skip"].groupby(months).size(),
            "runs": events[events["kind"] == "retrain"].groupby(months).size(),
            "promoted": events[events["text"].str.contains(" promoted ")]
            .groupby(months)
            .size(),
            "rollbacks": events[_rolled_back(events)].groupby(months).size(),
        }
        table = pd.DataFrame(counts).fillna(0).astype(int)
        table.index.name = "month"
        return table


def _rolled_back(events: pd.DataFrame) -> pd.Series:
    """Return which events are rollbacks made, not rollbacks that failed."""
    rollback = events["kind"] == "rollback"
    return rollback & events["text"].str.contains(" rolled back from ")


class PhaseClock:
    """Wall time spent in each phase of the replay, summed over days."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        """Add the time spent in the ``with`` block to `phase`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - started
            self.seconds[phase] = self.seconds.get(phase, 0.0) + spent

    def summary(self) -> str:
        """Return the seconds of every phase, and their total, as text."""
        total = sum(self.seconds.values())
        parts = [f"{name} {value:.0f} s" for name, value in self.seconds.items()]
        return f"{total:.0f} s so far: " + ", ".join(parts)


class OnnxScorer:
    """A registered ONNX version with the ``predict_proba`` of a pipeline."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        """Return the class probabilities of `rows`."""
        return self.model.run(columns_to_feed(self.model.inputs, rows))


def replay_days(
    daemon: ReplayDaemon, frame: pd.DataFrame, days: list[pd.Timestamp]
) -> tuple[pd.DataFrame, DaemonTimeline]:
    """Send each day's flights, rows and labels to the daemon, in time order.

    Returns:
        The served predictions (day, label, score, version) and the timeline.
    """
    timeline = DaemonTimeline()
    by_day = frame.groupby("day").indices
    # The daemon keeps one monitor per model and starts a fresh one whenever
    # the served version changes, after a promotion or a rollback alike.
    monitor_version, monitored_rows = 0, 0
    outputs = []
    clock = PhaseClock()
    for day in days:
        rows = frame.iloc[by_day[day]]
        if day.day == 1:
            logger.warning("replaying %s, %s", f"{day:%Y-%m}", clock.summary())
        with clock("predict"):
            response = daemon.predict(request_rows(rows, REQUEST_COLUMNS))
        version = int(response["version"])
        scores = [p["probabilities"]["1"] for p in response["predictions"]]
        outputs.append(
            pd.DataFrame(
                {
                    "day": rows["day"].to_numpy(),
                    "late": rows["late"].to_numpy(),
                    "score": scores,
                    "version": version,
                }
            )
        )
        if version != monitor_version:
            monitor_version, monitored_rows = version, 0
        monitored_rows += len(rows)
        with clock("monitor"):
            daemon.wait_monitored(version, monitored_rows)
        with clock("retrain"):
            _record_retrainings(daemon.wait_retrain(SETTLE_SECONDS), day, timeline)

        with clock("rows"):
            daemon.append_rows(request_rows(rows, DATASET_COLUMNS))
        with clock("labels"):
            daemon.send_labels(response["request_id"], rows["late"].tolist())
        with clock("retrain"):
            _record_retrainings(daemon.wait_retrain(), day, timeline)
        with clock("alerts"):
            _record_alerts(daemon.alerts(), day, timeline)
    timeline.seconds = clock.seconds
    return pd.concat(outputs, ignore_index=True), timeline


def _record_retrainings(
    status: dict[str, Any], day: pd.Timestamp, timeline: DaemonTimeline
) -> None:
    """Add the records of `status` not seen before to the timeline, oldest first."""
    for record in reversed(status["history"]):
        if record["id"] in timeline.seen:
            continue
        timeline.seen.add(record["id"])
        if record["outcome"] == "skipped":
            timeline.skips += 1
            timeline.add(day, "skip", f"({record['trigger']}) {record['reason']}")
            continue
        timeline.retrainings.append(record)
        timeline.add(day, "retrain", _retrain_text(record))


def _retrain_text(record: dict[str, Any]) -> str:
    """Return one line on a retraining run: trigger, outcome, scores, reason."""
    text = f"retrain ({record['trigger']}) {record['outcome']}"
    if record.get("promoted_version"):
        text += f" v{record['promoted_version']}"
    as_of = str(record.get("as_of") or "")[:16]
    return f"{text} as of {as_of}: {record['reason']}"


def _record_alerts(
    alerts: list[dict[str, Any]], day: pd.Timestamp, timeline: DaemonTimeline
) -> None:
    """Add the drift alerts raised or repeated on `day`, and any rollback."""
    counts = {f"{a['kind']}:{a['subject']}": int(a.get("count", 1)) for a in alerts}
    raised = {
        key for key, count in counts.items() if count > timeline.alerts.get(key, 0)
    }
    timeline.alerts = counts
    drift = sorted(key for key in raised if key.startswith("drift:"))
    if drift:
        timeline.alert_days += 1
        timeline.add(day, "alert", ", ".join(drift))
    for alert in alerts:
        if alert["kind"] == "rollback" and f"rollback:{alert['subject']}" in raised:
            timeline.add(day, "rollback", alert["message"])


def retrain_policy(settings: PolicySettings) -> RetrainConfig:
    """Return the in-process policy equal to the daemon's ``[retrain]`` table."""
    return RetrainConfig(
        trigger="drift",
        cooldown_hours=settings.cooldown_days * 24,
        budget=settings.budget,
        budget_days=settings.budget_days,
        window=settings.window,  # type: ignore[arg-type]
        window_days=settings.window_days,
        min_new_labels=settings.min_new_labels,
        holdout_days=settings.holdout_days,
        metric="roc_auc",
        promote_margin=settings.promote_margin,
    )


@dataclass(frozen=True)
class Summary:
    """Mean monthly AUCs and the goal's checks."""

    served: float
    static: float
    blind: float
    hindsight: float
    retrainings: int
    promotions: int
    static_in_process: float = float("nan")
    """Mean AUC of a static model fit in process on all of January to March."""

    @property
    def recovered(self) -> float:
        """Share of the static-to-hindsight gap that the served model recovered."""
        return self._recovered(self.static)

    def _recovered(self, static: float) -> float:
        gap = self.hindsight - static
        return (self.served - static) / gap if gap else float("nan")

    def lines(self) -> list[str]:
        """Return the summary as printable lines."""
        means = (
            f"mean AUC: served {self.served:.4f}, static {self.static:.4f}, blind "
            f"schedule {self.blind:.4f}, hindsight {self.hindsight:.4f}"
        )
        goal = (
            f"gap recovered: {self.recovered:.1%} (goal >= 90%); retrainings: "
            f"{self.retrainings} (goal <= 20), promotions: {self.promotions}"
        )
        blind = (
            f"served matches or beats the blind schedule: {self.served >= self.blind}"
        )
        other = (
            "against a static model fit in process on all of January to March "
            f"(mean AUC {self.static_in_process:.4f}): gap recovered "
            f"{self._recovered(self.static_in_process):.1%}"
        )
        return [means, goal, blind, other]


def summarize(
    table: pd.DataFrame, timeline: DaemonTimeline, static_in_process: float
) -> Summary:
    """Return the means of `table` with the daemon's retraining counts."""
    means = table[["served_auc", "static_auc", "blind_auc", "hindsight_auc"]].mean()
    return Summary(
        static_in_process=static_in_process,
        served=float(means["served_auc"]),
        static=float(means["static_auc"]),
        blind=float(means["blind_auc"]),
        hindsight=float(means["hindsight_auc"]),
        retrainings=len(timeline.retrainings),
        promotions=sum(_promoted(r) for r in timeline.retrainings),
    )


def _promoted(record: dict[str, Any]) -> bool:
    return record["outcome"] == "promoted"


def main(argv: list[str] | None = None) -> int:
    """Run the replay through the daemon and print the table and the timeline."""
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    started = time.perf_counter()
    frame = load_flights()
    days = sorted(d for d in frame["day"].unique() if d >= FIRST_DAY)[: args.days]
    frame = frame[frame["day"] <= days[-1]]
    settings = _policy(args)
    cfg = model_config(args.estimators)

    served, timeline, static = _replay_through_daemon(args, frame, days, settings)
    replay_seconds = time.perf_counter() - started
    blind, blind_timeline = replay(
        frame,
        cfg,
        retrain_policy(settings),
        Served(1, static, "static"),
        blind_days(len(timeline.retrainings), days[0], days[-1]),
        Options(check_parity=False, refit=settings.refit),
    )
    replayed = frame[frame["day"] >= FIRST_DAY]
    months = sorted({int(d.month) for d in days})
    table = monthly_table(
        served,
        static.predict_proba(replayed)[:, 1],
        blind,
        hindsight(frame, cfg, months),
    )
    activity = timeline.by_month().reindex(table["month"], fill_value=0)
    table = table.join(activity, on="month")
    summary = summarize(table, timeline, _static_in_process(frame, cfg))
    print(_report(table, summary, timeline, blind_timeline.promotions, args.verbose))
    total = time.perf_counter() - started
    print(
        f"\nhome and replay through the daemon {replay_seconds:.0f} s; total {total:.0f} s"
    )
    if args.days is None and not args.no_docs:
        _write_docs(table, summary, timeline, settings, args, replay_seconds, total)
    return 0


def _static_in_process(frame: pd.DataFrame, cfg: ModelConfig) -> float:
    """Return the mean monthly AUC of a model fit on every row before April."""
    model = fit(cfg, frame[frame["day"] < FIRST_DAY])
    replayed = frame[frame["day"] >= FIRST_DAY]
    aucs = [
        auc(part["late"].to_numpy(), score(model, part))
        for _, part in replayed.groupby(replayed["day"].dt.month)
    ]
    return float(np.mean(aucs))


def _replay_through_daemon(
    args: argparse.Namespace,
    frame: pd.DataFrame,
    days: list[pd.Timestamp],
    settings: PolicySettings,
) -> tuple[pd.DataFrame, DaemonTimeline, OnnxScorer]:
    """Create the home, run the daemon over `days`; return what it served.

    Returns:
        The served predictions, the daemon's timeline, and the static
        champion (version 1) loaded from the home.
    """
    first = frame[frame["day"] < FIRST_DAY]
    if args.first_quarter_from:
        first = first[first["day"] >= pd.Timestamp(args.first_quarter_from)]
    params = dict(model_config(args.estimators).params)
    home_dir = (
        Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="replay-"))
    )
    home = ReplayHome(
        home_dir, NUMERIC, CATEGORICAL, params, settings, args.stream_horizon
    )
    try:
        started = time.perf_counter()
        home.create(first[DATASET_COLUMNS])
        print(
            f"home {home_dir}: static champion in {time.perf_counter() - started:.0f} s"
        )
        with ReplayDaemon(home) as daemon:
            served, timeline = replay_days(daemon, frame, days)
        trusted = trusted_keys(load_config(home.config))
        static = OnnxScorer(
            OnnxModel.load(home_dir / "models" / MODEL / "1", trusted=trusted)
        )
    finally:
        if not args.home and not args.keep_home:
            shutil.rmtree(home_dir, ignore_errors=True)
    return served, timeline, static


def _report(
    table: pd.DataFrame,
    summary: Summary,
    timeline: DaemonTimeline,
    blind_promotions: int,
    verbose: bool,
) -> str:
    with pd.option_context(
        "display.width", 120, "display.float_format", "{:.4f}".format
    ):
        lines = [table.to_string(index=False), ""]
    lines += summary.lines()
    lines.append(f"blind schedule promotions: {blind_promotions}")
    lines.append(
        "\ntimeline (replayed day; with --verbose also every drift alert and skip):"
    )
    for day, kind, text in timeline.events:
        if kind in ("retrain", "rollback"):
            lines.append(f"  {day:%Y-%m-%d}  {text}")
        elif verbose:
            lines.append(f"  {day:%Y-%m-%d}  {kind} {text}")
    lines.append(f"  ({timeline.alert_days} days raised or repeated a drift alert)")
    lines.append(f"  ({timeline.skips} alarms recorded without a run)")
    lines.append(f"\nwall time through the daemon by step: {_phases(timeline)}")
    return "\n".join(lines)


def _write_docs(
    table: pd.DataFrame,
    summary: Summary,
    timeline: DaemonTimeline,
    settings: PolicySettings,
    args: argparse.Namespace,
    replay_seconds: float,
    total: float,
) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _page import write_section

    timeline_lines = [
        f"- {day:%Y-%m-%d}: {text}"
        for day, kind, text in timeline.events
        if kind in ("retrain", "rollback")
    ]
    body = "\n".join(
        [
            "## Replay of April to December 2013 through the daemon",
            "",
            (
                f"`.venv/bin/python scripts/replay.py --estimators {args.estimators}` "
                f"({replay_seconds / 60:.1f} minutes through the daemon, "
                f"{total / 60:.1f} minutes in all, on {_machine()})."
            ),
            "",
            _policy_text(settings),
            "",
            _markdown(table),
            "",
            *(f"- {line}" for line in summary.lines()),
            f"- {timeline.alert_days} replayed days raised or repeated a drift alert.",
            f"- Wall time through the daemon by step: {_phases(timeline)}.",
            f"- CPU minutes of the script and its subprocesses: {_cpu_minutes():.1f}.",
            _VARIATION,
            "",
            "Retrainings, promotions and rollbacks, by replayed day:",
            "",
            *timeline_lines,
        ]
    )
    write_section("Replay of April to December 2013 through the daemon", body)


_VARIATION = (
    "- Runs differ from one replay to the next. An alarm of a day's "
    "predictions can reach the retraining service before or after the day's "
    "labels arrive, so a run's `as of` is the day before or the day itself. "
    "The rollback watch runs with the health check every "
    "`health_interval_seconds` of wall time, so how many labels a promoted "
    "version has when it is judged depends on how fast the days are replayed."
)


def _phases(timeline: DaemonTimeline) -> str:
    return ", ".join(f"{k} {v:.0f} s" for k, v in timeline.seconds.items())


def _cpu_minutes() -> float:
    """Return the CPU minutes of this process and its waited-for subprocesses."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return seconds / 60


def _markdown(table: pd.DataFrame) -> str:
    """Return `table` as a Markdown table, floats to 4 decimals."""
    lines = [
        "| " + " | ".join(table.columns) + " |",
        "| " + " | ".join("---" for _ in table.columns) + " |",
    ]
    for row in table.itertuples(index=False):
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _policy_text(settings: PolicySettings) -> str:
    window = (
        "expanding window"
        if settings.window == "expanding"
        else f"sliding window of {settings.window_days:g} days"
    )
    return (
        "Policy (`[models.flights_late.retrain]`): trigger drift, clock event, "
        f"{settings.cooldown_days:g}-day cool-down, at most {settings.budget} "
        f"retrainings per {settings.budget_days:g} days, {window}, at least "
        f"{settings.min_new_labels} new labels, champion and challenger scored on "
        f"the last {settings.holdout_days:g} days of labels, promotion margin "
        f"{settings.promote_margin} AUC plus the ONNX parity check, "
        f"`refit = {str(settings.refit).lower()}` (a promoted challenger is trained "
        "again on the whole window, holdout included). A detection of any "
        "streaming detector is an alarm: the 14 features, the prediction, and the "
        "loss (a CUSUM of the mean log loss of each window of labels). Static: "
        "the daemon's "
        "version 1, trained by `appliance train` on the first 80% of January to "
        "March by time (the model's time split). Blind schedule: as many "
        "retrainings as the daemon ran, on evenly spaced days, in process, through "
        "the same gate and refit (without the parity check). Hindsight: retrained "
        "in process on the first of each month on all earlier labels, so its April "
        "model is trained on all of January to March. Columns `alert_days`, "
        "`skips`, `runs` and `promoted` count the replayed days with a new or "
        "repeated drift alert, the alarms the policy recorded without a run "
        "(cool-down, budget, too few labels), the runs and the promotions. Column "
        "`rollbacks` counts the promotions that the rollback watch undid, because "
        "the new version scored worse live than the one before by more than "
        "`rollback_margin` (0.02 AUC)."
    )


def _machine() -> str:
    import os
    import platform

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, load average {load} at the end"
    )


def _policy(args: argparse.Namespace) -> PolicySettings:
    return PolicySettings(
        cooldown_days=args.cooldown_days,
        budget=args.budget,
        window=args.window,
        window_days=args.window_days,
        min_new_labels=args.min_new_labels,
        holdout_days=args.holdout_days,
        promote_margin=args.margin,
        refit=not args.no_refit,
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", type=int, default=60, help="LightGBM trees")
    parser.add_argument(
        "--days",
        type=int,
        default=None,
        help="replay only the first N days of April on",
    )
    parser.add_argument(
        "--first-quarter-from",
        default=None,
        help="train the static champion on days from this date (YYYY-MM-DD) only",
    )
    parser.add_argument("--home", default=None, help="home folder (default: a temp)")
    parser.add_argument("--keep-home", action="store_true", help="keep the temp home")
    parser.add_argument("--cooldown-days", type=float, default=14.0)
    parser.add_argument("--budget", type=int, default=3, help="retrainings per 30 days")
    parser.add_argument(
        "--window", choices=["sliding", "expanding"], default="expanding"
    )
    parser.add_argument("--window-days", type=float, default=None)
    parser.add_argument("--holdout-days", type=float, default=7.0)
    parser.add_argument("--min-new-labels", type=int, default=5000)
    parser.add_argument("--margin", type=float, default=0.002, help="promotion margin")
    parser.add_argument(
        "--no-refit", action="store_true", help="serve a challenger without refit"
    )
    parser.add_argument(
        "--no-docs",
        action="store_true",
        help="leave docs/benchmarks.md as it is; a run with --days never writes it",
    )
    parser.add_argument(
        "--stream-horizon",
        type=int,
        default=None,
        help="labels and rows per window of the streaming detectors "
        "(default: the daemon's 1000); they are silent for the first 7 windows",
    )
    parser.add_argument("--verbose", action="store_true", help="print every alert day")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
