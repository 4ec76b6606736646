"""The daemon lock: one running daemon per home, and where to reach it.

The daemon holds an exclusive `fcntl.flock` on ``HOME/daemon.lock`` for its
whole life and writes its pid, host and port into the file, with the path and
SHA-256 of the configuration file it runs with. The kernel drops
the lock when the process dies, so a stale file left by a crash never blocks a
new daemon. Clients read the file to find the daemon's port, and test the lock
to know that the daemon is still running.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from appliance.errors import DaemonRunningError, StorageError
from appliance.home import create_home

logger = logging.getLogger(__name__)

LOCK_FILE = "daemon.lock"


@dataclass(frozen=True)
class DaemonAddress:
    """Where a running daemon listens, as written in its lock file."""

    pid: int
    host: str
    port: int
    config: str | None = None
    """Path of the configuration file the daemon runs with."""
    config_sha256: str | None = None
    """SHA-256 of that file's bytes when the daemon read it."""

    @property
    def base_url(self) -> str:
        """URL of the daemon's HTTP API, through the loopback address when the
        daemon binds every address."""
        host = self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


class HomeLock:
    """An exclusive lock on the home held by the running daemon.

    Raises:
        DaemonRunningError: On enter, when another process holds the lock.
        StorageError: On enter, when this user may not write the lock file.
    """

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> HomeLock:
        create_home(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError as exc:
            from appliance.storage import permission_failure

            raise StorageError(
                permission_failure("the daemon lock", self.path, exc.strerror or "")
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_address(self.path.parent)
            owner = f"pid {holder.pid} on port {holder.port}" if holder else "a process"
            raise DaemonRunningError(
                f"another daemon ({owner}) already runs on home {self.path.parent}; "
                "stop it first or use another APPLIANCE_HOME"
            ) from None
        self._fd = fd
        self.record("", 0, None)
        logger.info("home locked path=%s pid=%d", self.path, os.getpid())
        return self

    def record(self, host: str, port: int, config: Path | None) -> None:
        """Write this process's pid, the address it listens on and the path and
        SHA-256 of its configuration file (when it was read from one)."""
        assert self._fd is not None, "enter the lock before recording an address"
        fields = {"pid": os.getpid(), "host": host, "port": port}
        if config is not None:
            fields["config"] = str(config.resolve())
            fields["config_sha256"] = file_sha256(config)
        text = json.dumps(fields)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text.encode(), 0)
        os.fsync(self._fd)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        logger.info("home unlocked path=%s", self.path)


def read_address(home: Path) -> DaemonAddress | None:
    """Return the address of the daemon running on `home`, or None.

    A daemon counts as running only while it holds the lock, so a file left
    behind by a killed daemon returns None. The port is 0 while the daemon
    starts and has not bound its socket yet.
    """
    path = home / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        text = os.pread(fd, 4096, 0)
    finally:
        os.close(fd)
    try:
        record = json.loads(text)
        address = DaemonAddress(
            int(record["pid"]),
            str(record["host"]),
            int(record["port"]),
            record.get("config"),
            record.get("config_sha256"),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return address


def file_sha256(path: Path) -> str | None:
    """Return the SHA-256 of the file at `path`, or None if it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
