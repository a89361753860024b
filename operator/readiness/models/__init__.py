"""Pydantic models of the ServiceProfile CRD; ``crds/`` is generated from them."""

from .profile import ServiceProfileSpec
from .status import Condition, Conflict, ServiceProfileStatus, Summary, Target, Violation

__all__ = [
    "Condition",
    "Conflict",
    "ServiceProfileSpec",
    "ServiceProfileStatus",
    "Summary",
    "Target",
    "Violation",
]
