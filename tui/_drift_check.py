"""Text of the drift screen's lines on the scheduled batch drift check."""

from __future__ import annotations

from typing import Any

from textual.markup import escape

from tui._format import timestamp

TITLE = "Scheduled drift check"


def scheduled_check_text(
    model: str, check: dict[str, Any] | None, scores_at: str | None
) -> str:
    """Return Textual markup on the newest scheduled drift check of `model`.

    Args:
        model: The model on show.
        check: ``scheduled_check`` of the daemon's drift report; None from a
            daemon that does not report it.
        scores_at: Time of the newest stored scores, where the charts end.
    """
    if check is None:
        return f"{TITLE}: not reported by this daemon"
    rerun = f"appliance drift {model} --check"
    next_run = f"next run {timestamp(check.get('next_run_at'))}"
    last = check.get("last_run")
    if last is None:
        text = f"{TITLE}: no run has ended yet; {next_run}. Run one now: {rerun}"
    elif last.get("outcome") == "failed":
        text = _failed(check, last, scores_at, rerun, next_run)
    else:
        text = (
            f"{TITLE}: [green]succeeded[/] at {timestamp(last.get('finished_at'))}: "
            f"{_result(last.get('detail'))}; {next_run}."
        )
    if check.get("running_since"):
        text += f"\nA run is in progress since {timestamp(check['running_since'])}."
    return text


def _result(detail: Any) -> str:
    """Describe what a finished run scored, or why it scored nothing."""
    if not isinstance(detail, dict):
        return "no detail recorded"
    if detail.get("skipped"):
        return escape(f"skipped, {detail['skipped']}")
    drifted = ", ".join(detail.get("drifted") or []) or "none"
    text = (
        f"{detail.get('rows', 0)} rows against version {detail.get('version')}, "
        f"{detail.get('tested', 0)} features tested, drifted: {drifted}"
    )
    unfit = detail.get("unfit_rows")
    if unfit:
        text += f", {unfit} rows left out because they do not fit the request types"
    return escape(text)


def _failed(
    check: dict[str, Any],
    last: dict[str, Any],
    scores_at: str | None,
    rerun: str,
    next_run: str,
) -> str:
    """Describe a failing check: since when, its error and what to do."""
    failed = int(check.get("failed_runs") or 1)
    runs = "1 failed run" if failed == 1 else f"{failed} failed runs in a row"
    head = (
        f"{TITLE}: [b red]FAILED[/] at {timestamp(last.get('finished_at'))}, "
        f"failing since {timestamp(check.get('failing_since'))} ({runs})"
    )
    alert = check.get("alert")
    if isinstance(alert, dict):
        head += f"; job alert {alert.get('id')} {alert.get('status')} (screen 6)"
    error = escape(str(last.get("error") or "no error recorded"))
    charts = timestamp(scores_at) if scores_at else "none stored yet"
    advice = (
        f"The charts end at the last stored scores: {charts}. Fix the cause, "
        f"then run '{rerun}' to check now and see the error; the next scheduled "
        f"run that succeeds resolves the alert ({next_run})."
    )
    return f"{head}\nError: {error}\n{advice}"
