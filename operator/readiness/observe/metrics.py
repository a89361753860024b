"""Prometheus metrics: what the operator does, and what SREs read about each profile."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

_STATES = ("Compliant", "Violating", "Conflicted", "Ambiguous", "Invalid", "Error")


class Metrics:
    """Every series lives in one registry built at start-up (no module globals)."""

    def __init__(self, registry: CollectorRegistry | None = None, version: str = "") -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # process_* (CPU, memory, open files) and python_info, as every Prometheus client exports.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        Info("readiness_build", "The running operator's version and Python.", registry=r).info(
            {"version": version or "unknown", "python": platform.python_version()}
        )
        self.active = Gauge(
            "readiness_active",
            "1 when this replica is the one acting (standalone, or leading its peering), 0 on standby.",
            registry=r,
        )
        self.reconciles = Counter(
            "readiness_reconciles",
            "Reconciles by result: one per Deployment decided, invalid profiles apart.",
            ["result"],
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "readiness_reconcile_duration_seconds",
            "Time to reconcile one Deployment (decision and apply).",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.applies = Counter(
            "readiness_deployment_applies",
            "Server-side applies sent to Deployments, by result.",
            ["result"],
            registry=r,
        )
        self.drift_corrections = Counter(
            "readiness_drift_corrections", "Applies that restored a Deployment someone changed.", registry=r
        )
        self.conflicts = Counter(
            "readiness_conflicts", "Targets found in conflict with another field manager.", registry=r
        )
        self.api_errors = Counter(
            "readiness_api_errors", "Failed API calls by HTTP status code.", ["code"], registry=r
        )
        self.status_writes = Counter("readiness_status_writes", "ServiceProfile status patches.", registry=r)
        self.rollouts = Counter(
            "readiness_rollouts",
            "Rollouts a profile started, and how they ended: started, completed, failed, reverted.",
            ["profile_namespace", "profile", "result"],
            registry=r,
        )
        self.apiserver_up = Gauge(
            "readiness_apiserver_up",
            "1 when the last readiness check reached the apiserver, 0 when it could not.",
            registry=r,
        )
        self.queue_depth = Gauge(
            "readiness_queue_depth",
            "Work items (Deployments, profile statuses) waiting for a worker.",
            registry=r,
        )
        self.workers_busy = Gauge("readiness_workers_busy", "Workers reconciling right now.", registry=r)
        self.workers = Gauge("readiness_workers", "Configured reconcile workers.", registry=r)
        self.targets = Gauge(
            "readiness_profile_targets",
            "Deployments matched by a profile, by state.",
            ["profile_namespace", "profile", "state"],
            registry=r,
        )
        self.violations = Gauge(
            "readiness_profile_violations",
            "Open violations of a profile's targets, by check id.",
            ["profile_namespace", "profile", "check"],
            registry=r,
        )
        self.compliance = Gauge(
            "readiness_profile_compliance_ratio",
            "Compliant share of a profile's targets (0-1).",
            ["profile_namespace", "profile"],
            registry=r,
        )
        self.admissions = Counter(
            "readiness_admission_reviews",
            "Deployment creates and updates the webhook answered, by outcome (Mutated, Compliant, "
            "Skipped) and reason.",
            ["outcome", "reason"],
            registry=r,
        )
        self.admission_seconds = Histogram(
            "readiness_admission_duration_seconds",
            "Time the webhook took to decide one admission request (profiles read included).",
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self._checks: dict[tuple[str, str], set[str]] = {}

    def observe_profile(
        self, namespace: str, profile: str, states: Iterable[str], checks: Iterable[str], score: int
    ) -> None:
        counts = dict.fromkeys(_STATES, 0)
        for state in states:
            counts[state] = counts.get(state, 0) + 1
        for state, count in counts.items():
            self.targets.labels(namespace, profile, state).set(count)
        by_check: dict[str, int] = {}
        for check in checks:
            by_check[check] = by_check.get(check, 0) + 1
        for gone in self._checks.get((namespace, profile), set()) - set(by_check):
            self.violations.remove(namespace, profile, gone)
        for check, count in by_check.items():
            self.violations.labels(namespace, profile, check).set(count)
        self._checks[(namespace, profile)] = set(by_check)
        self.compliance.labels(namespace, profile).set(score / 100)

    def profiles(self) -> list[tuple[str, str]]:
        """The profiles this replica exports series for."""
        return list(self._checks)

    def forget_profile(self, namespace: str, profile: str) -> None:
        """Drop a deleted profile's series so dashboards do not show ghosts."""
        for state in _STATES:
            with contextlib.suppress(KeyError):
                self.targets.remove(namespace, profile, state)
        for check in self._checks.pop((namespace, profile), set()):
            self.violations.remove(namespace, profile, check)
        with contextlib.suppress(KeyError):
            self.compliance.remove(namespace, profile)
