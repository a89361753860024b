"""Why the operator cannot start."""

from __future__ import annotations


class StartupFailure(Exception):
    """Something outside the operator stops it before it can start (credentials, a port)."""
