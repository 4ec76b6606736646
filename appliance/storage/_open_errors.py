"""Messages for a DuckDB file of the home that fails to open.

DuckDB raises `duckdb.IOException` for three causes that need different
next steps: another process holds the file's lock, this user may not read
or write the file, or the file is damaged. Moving a file away is the fix
only for the last one, so each cause gets its own message.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from appliance.storage._errors import short_error

_PERMISSION_TEXTS = ("Permission denied", "Operation not permitted", "Read-only")


def is_lock_conflict(exc: duckdb.Error) -> bool:
    """Tell whether `exc` reports that another process holds the file's lock."""
    return "lock" in str(exc).lower()


def is_permission_error(exc: duckdb.Error) -> bool:
    """Tell whether `exc` reports that the file may not be read or written."""
    return any(text in str(exc) for text in _PERMISSION_TEXTS)


def open_failure(name: str, path: Path, exc: duckdb.Error, loses: str) -> str:
    """Return the message for a DuckDB file of the home that failed to open.

    Args:
        name: What the file is, such as ``the catalog``.
        loses: What moving a damaged file away loses, as a clause.
    """
    error = short_error(exc)
    if is_lock_conflict(exc):
        return (
            f"cannot open {name} {path}: {error}. Another appliance process may "
            "hold it; stop it or wait for it to finish"
        )
    if is_permission_error(exc):
        return permission_failure(name, path, error)
    return (
        f"cannot open {name} {path}: {error}. The file is damaged or not a DuckDB "
        f"database; restore it from a backup, or move it away to start with an "
        f"empty one, which loses {loses}"
    )


def permission_failure(name: str, path: Path, error: str) -> str:
    """Return the message for a file of the home that this user may not change."""
    return (
        f"cannot open {name} {path}: {error}. The user {_user()} may not write "
        f"the file or its folder {path.parent}; the file is not damaged. Give "
        "that user write permission (check ls -l and lsattr for the immutable "
        "flag) and retry"
    )


def _user() -> str:
    uid = os.getuid()
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"
