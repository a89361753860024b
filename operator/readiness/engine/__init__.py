"""The pure policy engine: profile + observed Deployment -> desired apply, violations, status.

No framework, no API client, no clock: an import-linter contract keeps it so.
"""

from .evaluate import Evaluation, Taken, evaluate, taken_text
from .selector import matches
from .status import build_status, next_change, rollout_state, summarize
from .verdict import applied_at, judge, last_writers, last_written, target, written_last_by_us
from .view import DeploymentView, ManagedEntry

__all__ = [
    "DeploymentView",
    "Evaluation",
    "ManagedEntry",
    "Taken",
    "applied_at",
    "build_status",
    "evaluate",
    "judge",
    "last_writers",
    "last_written",
    "matches",
    "next_change",
    "rollout_state",
    "summarize",
    "taken_text",
    "target",
    "written_last_by_us",
]
