"""Fixtures of the daemon tests; the helpers live in daemon_support.py."""

from daemon_support import *  # noqa: F403
