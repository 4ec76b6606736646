"""The appliance home: the folder of the catalog, the lake and the models."""

from __future__ import annotations

from pathlib import Path

from appliance.errors import StorageError


def create_home(home: Path) -> None:
    """Create the home folder and its parents, unless it exists.

    Raises:
        StorageError: The folder cannot be created. The message names the
            file that blocks the path, if there is one.
    """
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        blocker = next((p for p in (home, *home.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            reason = f"{blocker} is a file, not a folder"
        raise StorageError(
            f"cannot create the appliance home {home} ({reason}); set "
            "APPLIANCE_HOME, or home in the [storage] section of the configuration, "
            "to a folder that this user can write"
        ) from None
