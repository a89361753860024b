"""API failures the reconciler can reason about, independent of the client library."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldCause:
    field: str
    message: str
    manager: str = ""


@dataclass
class ApiError(Exception):
    """A failed API call: ``status`` is the HTTP code (0 when the server was not reached)."""

    status: int
    reason: str
    message: str
    causes: list[FieldCause] = field(default_factory=list)
    retry_after: float | None = None  # seconds, from a 429's (or 503's) Retry-After header

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"

    @property
    def retryable(self) -> bool:
        """Worth the same request again later. A 409 without field causes is a precondition
        (the object changed since it was read): the next decision reads the newer object."""
        return self.status in (0, 408, 429, 500, 502, 503, 504) or (self.status == 409 and not self.causes)

    @property
    def conflict(self) -> bool:
        """A server-side apply field conflict (409 with FieldManagerConflict causes)."""
        return self.status == 409 and bool(self.causes)
