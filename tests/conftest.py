"""Fixtures shared by every test; the helpers live in support.py."""

from support import *  # noqa: F403
