"""Operator settings, from READINESS_* environment variables, validated at start-up."""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import sys
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="READINESS_", frozen=True, extra="ignore")

    namespaces: str = Field(
        default="",
        description="Namespaces to watch: comma-separated names or globs, any of which admits a namespace, "
        "less those a '!' glob excludes (e.g. 'shop,payments-*,!payments-dev'); empty watches the whole cluster.",
    )
    resync_seconds: float = Field(
        default=300.0, ge=5, description="Periodic re-check of every profile, as a backstop to watches."
    )
    workers: int = Field(
        default=32,
        ge=1,
        le=128,
        description="Deployments reconciled concurrently: at most this many server-side applies in flight "
        "(never two for one Deployment).",
    )
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="Port of /metrics (0 disables).")
    health_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of /healthz and /readyz (0 disables)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    log_format: Literal["json", "console"] = Field(default="json", description="json, or console for people.")
    peering: str = Field(
        default="", description="kopf peering name for HA (needs the peering CRDs); empty runs standalone."
    )
    peering_priority: int = Field(
        default=0,
        ge=0,
        description="This replica's peering priority; 0 draws a random one so replicas never tie.",
    )
    peering_lifetime_seconds: int = Field(
        default=30, ge=5, description="How long a silent peer counts as alive; bounds the failover time."
    )
    max_corrections: int = Field(
        default=5, ge=1, description="Applies to one Deployment per window before it is left Conflicted."
    )
    correction_window_seconds: float = Field(
        default=600.0, ge=1, description="Window over which corrections are counted."
    )
    shutdown_seconds: float = Field(
        default=20.0, ge=0, description="How long in-flight reconciles may finish after SIGTERM."
    )
    tracing_endpoint: str = Field(
        default="",
        description="OTLP/HTTP endpoint for the operator's own traces (e.g. http://collector:4318); empty disables.",
    )

    webhook: Literal["off", "cluster", "local"] = Field(
        default="off",
        description="Mutating admission webhook, so a Deployment is stored compliant from its first pod: off; "
        "cluster (HTTPS on webhook_port with the certificate in webhook_cert_dir, registered by deploy/webhook/); "
        "local (a certificate of its own on 127.0.0.1, and a MutatingWebhookConfiguration it registers and "
        "removes: for a control plane on this machine).",
    )
    webhook_port: int = Field(
        default=9443, ge=0, le=65535, description="Port of the admission webhook; 0 picks a free one."
    )
    webhook_cert_dir: str = Field(
        default="/etc/readiness/webhook",
        description="Directory holding tls.crt and tls.key for READINESS_WEBHOOK=cluster (a Secret, e.g. "
        "cert-manager's); a renewed certificate is served without a restart.",
    )

    def watches(self, namespace: str) -> bool:
        """Whether READINESS_NAMESPACES covers ``namespace``: any glob admits it, no '!' glob
        takes it out."""
        return _covers(self.namespaces, namespace)

    def exact_namespaces(self) -> list[str] | None:
        """The namespaces named, when READINESS_NAMESPACES names them exactly (no glob, no
        exclusion): each is watched on its own, with a namespace's permissions. None otherwise:
        the whole cluster is watched and filtered."""
        names = [g.strip() for g in self.namespaces.split(",") if g.strip()]
        if not names or any(c in g for g in names for c in "*?[!"):
            return None
        return list(dict.fromkeys(names))

    def kopf_namespaces(self) -> list[str]:
        """The same as kopf's namespace patterns: one per admitting glob, each with every
        exclusion. (In a single kopf pattern only the first glob admits, so "shop,payments"
        handed over whole would serve shop alone.)"""
        if not self.namespaces.strip():
            return []
        included, excluded = _globs(self.namespaces)
        return [",".join([g, *(f"!{x}" for x in excluded)]) for g in included]


def _globs(namespaces: str) -> tuple[list[str], list[str]]:
    globs = [g.strip() for g in namespaces.split(",") if g.strip()]
    excluded = [g[1:] for g in globs if g.startswith("!")]
    return [g for g in globs if not g.startswith("!")] or ["*"], excluded


@lru_cache(maxsize=16384)
def _covers(namespaces: str, namespace: str) -> bool:
    """Asked for every watch event of a cluster-wide watch: decided once per namespace."""
    included, excluded = _globs(namespaces)
    return any(fnmatch.fnmatchcase(namespace, g) for g in included) and not any(
        fnmatch.fnmatchcase(namespace, g) for g in excluded
    )


def load_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    """Settings from the environment, or one clear line per bad variable and exit code 2.
    A misspelled READINESS_* variable is an error too: silently ignored, it would leave the
    operator doing something other than what its installer asked for."""
    lines = [
        f"readiness: unknown {name}" + (f" (did you mean {close[0]}?)" if close else "")
        for name in sorted(unknown_variables(environ))
        for close in [difflib.get_close_matches(name, known_variables(), n=1, cutoff=0.6)]
    ]
    try:
        settings = Settings()
    except ValidationError as error:
        for problem in error.errors():
            variable = "READINESS_" + str(problem["loc"][0]).upper() if problem["loc"] else "READINESS_*"
            lines.append(f"readiness: invalid {variable}: {problem['msg']}")
    if lines:
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2)
    return settings


def known_variables() -> list[str]:
    return [f"READINESS_{name.upper()}" for name in Settings.model_fields]


# Variables that share the prefix but are not settings: the kubelet's service links for a
# Service whose name starts with "readiness" (READINESS_OPERATOR_SERVICE_HOST, ..._PORT_9090_TCP,
# ..._PORT=tcp://...) and the test control plane's own (READINESS_TESTBED_DIR).
_SERVICE_LINK = re.compile(r"READINESS_.*_(SERVICE_HOST|SERVICE_PORT(_.+)?|PORT_\d+_(TCP|UDP|SCTP)(_.+)?)")
_LINK_URL = re.compile(r"(tcp|udp|sctp)://.*")


def unknown_variables(environ: Mapping[str, str]) -> set[str]:
    known = set(known_variables())
    return {
        name
        for name, value in environ.items()
        if name.startswith("READINESS_")
        and name not in known
        and not name.startswith("READINESS_TESTBED_")
        and not _SERVICE_LINK.fullmatch(name)
        and not (name.endswith("_PORT") and _LINK_URL.fullmatch(value))
    }
