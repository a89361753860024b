"""The ServiceProfile v1alpha1 spec: the single source of truth for the CRD schema.

Every docstring below becomes the field's description in ``kubectl explain``; every
``x-kubernetes-validations`` rule is enforced by the apiserver at admission.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, field_validator

from .base import Model, cel

Quantity = Annotated[
    int | str,
    Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "isQuantity(string(self)) && !quantity(string(self)).isLessThan(quantity('0'))",
                    "must be a non-negative Kubernetes quantity such as 100m, 0.5, 128Mi or 1Gi",
                    message_expression="'must be a non-negative Kubernetes quantity such as 100m, 0.5, 128Mi "
                    "or 1Gi, not ' + string(self)",
                ),
            ]
        }
    ),
]
Path = Annotated[
    str,
    StringConstraints(max_length=1024),
    Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.matches('^/[^\\\\s]*$')",
                    "must be an absolute HTTP path starting with '/', without spaces",
                ),
            ]
        }
    ),
]
PortRef = Annotated[
    int | str,
    Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "type(self) == int ? (self >= 1 && self <= 65535) : self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self) <= 15",
                    "must be a port number (1-65535) or an IANA port name (lowercase, at most 15 characters)",
                    message_expression="'must be a port number (1-65535) or an IANA port name (lowercase, "
                    "at most 15 characters), not ' + string(self)",
                ),
            ]
        }
    ),
]


class LabelSelectorRequirement(Model):
    key: Annotated[str, StringConstraints(min_length=1, max_length=316)]
    """The label key the requirement applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values."""
    values: list[str] = []
    """Values for In and NotIn; must be empty for Exists and DoesNotExist."""


class LabelSelector(Model):
    """Which Deployments of the profile's namespace it manages. Must not be empty."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "(has(self.matchLabels) && size(self.matchLabels) > 0) || "
                    "(has(self.matchExpressions) && size(self.matchExpressions) > 0)",
                    "selector must not be empty: set matchLabels or matchExpressions "
                    "(an empty selector would select every Deployment in the namespace)",
                ),
            ]
        }
    )
    match_labels: dict[str, str] = {}
    """Labels a Deployment must carry, all of them."""
    match_expressions: list[LabelSelectorRequirement] = []
    """Set-based requirements, all of which must hold."""


class ProbeSpec(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.type != 'httpGet' || has(self.path)",
                    "an httpGet probe needs a path",
                ),
                cel(
                    "self.type == 'httpGet' || !has(self.path)",
                    "path is only allowed for httpGet probes",
                ),
            ]
        }
    )
    type: Literal["httpGet", "grpc", "tcpSocket"] = "httpGet"
    """The probe handler: httpGet (needs path), grpc (standard gRPC health service) or tcpSocket."""
    path: Path | None = None
    """HTTP path for httpGet probes; must start with '/'."""
    port: PortRef | None = None
    """Port for this probe only; defaults to probes.port."""
    initial_delay_seconds: Annotated[int, Field(ge=0, le=3600)] | None = None
    """Seconds after the container starts before the first probe."""
    period_seconds: Annotated[int, Field(ge=1, le=3600)] | None = None
    """How often to probe, in seconds."""
    timeout_seconds: Annotated[int, Field(ge=1, le=3600)] | None = None
    """Seconds after which one probe attempt times out."""
    failure_threshold: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Consecutive failures after which the probe counts as failed."""


class Probes(Model):
    port: PortRef
    """Container port name or number the probes target; it must exist on every managed container."""
    liveness: ProbeSpec | None = None
    """Restarts the container when it fails."""
    readiness: ProbeSpec | None = None
    """Takes the pod out of Service endpoints while it fails."""
    startup: ProbeSpec | None = None
    """Holds the other probes back until the container has started."""


class ResourceList(Model):
    cpu: Quantity | None = None
    """CPU, in cores or millicores (100m)."""
    memory: Quantity | None = None
    """Memory, in bytes with a suffix (128Mi, 1Gi)."""


class Resources(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.requests) || !has(self.limits) || !has(self.requests.cpu) || !has(self.limits.cpu) "
                    "|| !isQuantity(string(self.requests.cpu)) || !isQuantity(string(self.limits.cpu)) "
                    "|| quantity(string(self.requests.cpu)).compareTo(quantity(string(self.limits.cpu))) <= 0",
                    "requests.cpu must not exceed limits.cpu",
                ),
                cel(
                    "!has(self.requests) || !has(self.limits) || !has(self.requests.memory) || !has(self.limits.memory) "
                    "|| !isQuantity(string(self.requests.memory)) || !isQuantity(string(self.limits.memory)) "
                    "|| quantity(string(self.requests.memory)).compareTo(quantity(string(self.limits.memory))) <= 0",
                    "requests.memory must not exceed limits.memory",
                ),
            ]
        }
    )
    requests: ResourceList | None = None
    """What the scheduler reserves for each container."""
    limits: ResourceList | None = None
    """Hard caps per container. A CPU limit is optional, never required."""


class Shutdown(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.preStopSleepSeconds) || !has(self.terminationGracePeriodSeconds) "
                    "|| self.terminationGracePeriodSeconds > self.preStopSleepSeconds",
                    "terminationGracePeriodSeconds must be longer than preStopSleepSeconds",
                ),
            ]
        }
    )
    termination_grace_period_seconds: Annotated[int, Field(ge=1, le=3600)] | None = None
    """Seconds the pod gets between SIGTERM and SIGKILL."""
    pre_stop_sleep_seconds: Annotated[int, Field(ge=1, le=600)] | None = None
    """Native preStop sleep, so endpoints drain before SIGTERM reaches the app."""


class MetricsScrape(Model):
    port: PortRef
    """Port Prometheus scrapes; a port name is resolved to its number on the container."""
    path: Path = "/metrics"
    """HTTP path of the metrics endpoint."""
    scheme: Literal["http", "https"] = "http"
    """Scheme Prometheus uses."""


Sampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]
Propagator = Literal["tracecontext", "baggage", "b3", "b3multi", "jaeger", "xray", "ottrace", "none"]


class Tracing(Model):
    endpoint: Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+(/\S*)?$", max_length=2048)]
    """OTLP collector URL (OTEL_EXPORTER_OTLP_ENDPOINT), http:// or https://."""
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    """OTLP transport (OTEL_EXPORTER_OTLP_PROTOCOL)."""
    sampler: Sampler = "parentbased_traceidratio"
    """Trace sampler (OTEL_TRACES_SAMPLER)."""
    sampler_arg: (
        Annotated[
            str,
            Field(
                json_schema_extra={
                    "x-kubernetes-validations": [
                        cel(
                            "self.matches('^(0(\\\\.[0-9]+)?|1(\\\\.0+)?|\\\\.[0-9]+)$')",
                            'samplerArg must be a number between 0 and 1, such as "0.1"',
                        ),
                    ]
                }
            ),
        ]
        | None
    ) = None
    """Sampler argument, a ratio between 0 and 1 for the ratio samplers (OTEL_TRACES_SAMPLER_ARG)."""
    service_name: Annotated[str, StringConstraints(min_length=1, max_length=253)] | None = None
    """OTEL_SERVICE_NAME; defaults to the app.kubernetes.io/name label, else the Deployment name."""
    propagators: list[Propagator] = []
    """Context propagators (OTEL_PROPAGATORS); empty leaves the SDK default."""


class GoRuntime(Model):
    memory_limit_ratio: Annotated[float, Field(gt=0, le=1)] = 0.9
    """GOMEMLIMIT = this ratio of the container's memory limit. GOMAXPROCS follows the CPU limit, else the request."""


class Runtime(Model):
    go: GoRuntime | None = None
    """Go runtime tuning derived from the container's limits."""


class Logging(Model):
    format: Literal["json", "text", "logfmt"] | None = None
    """LOG_FORMAT env."""
    level: Literal["debug", "info", "warn", "error"] | None = None
    """LOG_LEVEL env."""


class Security(Model):
    """The pod's and each managed container's securityContext: enforced like any section, or only reported (mode Audit) while teams get ready."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.runAsNonRoot) || has(self.allowPrivilegeEscalation) || has(self.dropAllCapabilities) "
                    "|| has(self.readOnlyRootFilesystem) || has(self.seccompProfile) "
                    "|| has(self.automountServiceAccountToken)",
                    "security needs at least one setting (runAsNonRoot, allowPrivilegeEscalation, "
                    "dropAllCapabilities, readOnlyRootFilesystem, seccompProfile, automountServiceAccountToken)",
                ),
            ]
        }
    )
    mode: Literal["Enforce", "Audit"] | None = None
    """Enforce sets these fields; Audit only reports what differs (roll a new rule out as Audit first). Default: the profile's mode."""
    run_as_non_root: bool | None = None
    """securityContext.runAsNonRoot on each managed container: the kubelet refuses to start an image that runs as root."""
    allow_privilege_escalation: bool | None = None
    """securityContext.allowPrivilegeEscalation on each managed container."""
    drop_all_capabilities: bool | None = None
    """true: securityContext.capabilities.drop [ALL] on each managed container; capabilities the team adds stay theirs."""
    read_only_root_filesystem: bool | None = None
    """securityContext.readOnlyRootFilesystem on each managed container."""
    seccomp_profile: Literal["RuntimeDefault"] | None = None
    """securityContext.seccompProfile.type on each managed container."""
    automount_service_account_token: bool | None = None
    """The pod's automountServiceAccountToken (false: no API token in pods that do not call the API)."""


class Images(Model):
    """Findings only: the operator never rewrites an image."""

    forbid_latest: bool = True
    """An image tagged ':latest', or with no tag and no digest, is a violation (images.latest)."""
    require_digest: bool = False
    """An image without '@sha256:...' is a violation (images.digest)."""


class Secrets(Model):
    """Findings only: the operator never rewrites an env value."""

    forbid_literal_values: bool = True
    """A literal env value whose variable's name says it is a secret (password, passwd, secret, token, api key, private key, credentials), or a URL with a password in it, is a violation (secrets.literal). Findings name the container and the variable, never the value."""


ProfileType = Literal["cpu", "memory", "goroutine", "block", "mutex", "fgprof"]


class Profiling(Model):
    """Continuous profiling: Grafana Alloy / Pyroscope pod annotations (profiles.grafana.com/*), as metrics does for Prometheus."""

    port: PortRef
    """The port serving pprof; a name or number that must exist on a managed container."""
    path: Path = "/debug/pprof"
    """Where the pprof handlers are served; each profile's endpoint is below it (profile, allocs, goroutine, block, mutex, fgprof)."""
    profiles: Annotated[
        list[ProfileType], Field(min_length=1, json_schema_extra={"x-kubernetes-list-type": "set"})
    ] = ["cpu", "memory", "goroutine"]
    """The profiles to collect: any of cpu, memory, goroutine, block, mutex, fgprof."""

    @field_validator("profiles")
    @classmethod
    def _once_each(cls, value: list[ProfileType]) -> list[ProfileType]:
        twice = next((p for i, p in enumerate(value) if p in value[:i]), None)
        if twice is not None:
            raise ValueError(f'Duplicate value: "{twice}"')
        return value


Budget = Annotated[
    int | str,
    Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "type(self) == int ? int(self) >= 1 : "
                    "string(self).matches('^[0-9]+%$') && int(string(self).replace('%', '')) >= 1 "
                    "&& int(string(self).replace('%', '')) <= 100",
                    "must be a whole number of Deployments (at least 1) or a percentage from 1% to 100%",
                    message_expression="'must be a whole number of Deployments (at least 1) or a percentage "
                    "from 1% to 100%, not ' + string(self)",
                ),
            ]
        }
    ),
]


class Rollout(Model):
    """How a change of this profile goes out to its Deployments."""

    max_concurrent: Budget = "25%"
    """How many matched Deployments may be mid-rollout because of this profile at once: a number, or a percentage of the matched Deployments (rounded up, at least 1). Deployments scaled to 0 take no slot."""
    on_failure: Literal["Revert", "Pause"] = "Revert"
    """When a rollout this profile started fails (ProgressDeadlineExceeded): Revert puts the Deployment's previous pod template back, Pause leaves it; either way the profile halts until its generation or the Deployment's own template changes."""
    trigger: Literal["Immediate", "NextChange"] = "Immediate"
    """When an existing Deployment gets what it lacks. Immediate: the operator rolls it out now, in waves. NextChange: the operator never starts a rollout itself (the target waits as Pending); the admission webhook (READINESS_WEBHOOK) sets the profile's fields the next time the team changes the pod template, on the team's own rollout. New Deployments are set at admission either way."""

    @field_validator("max_concurrent")
    @classmethod
    def _budget(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value >= 1:
            return value
        if isinstance(value, str) and re.fullmatch(r"[0-9]+%", value) and 1 <= int(value[:-1]) <= 100:
            return value
        raise ValueError(
            f"must be a whole number of Deployments (at least 1) or a percentage from 1% to 100%, not {value}"
        )


class ServiceProfileSpec(Model):
    """How the selected Deployments must run. Every section but selector is optional."""

    selector: LabelSelector
    """Selects Deployments in the profile's own namespace. Required and non-empty."""
    mode: Literal["Enforce", "Audit"] = "Enforce"
    """Enforce applies the profile; Audit only reports and never writes a Deployment."""
    conflict_policy: Literal["Report", "Force"] = "Report"
    """Report never takes a value another manager chose (a field a server-side applier holds,
    or one an Update-operation manager holds unless it is an API default its last-applied
    configuration does not name); Force takes it."""
    containers: list[Annotated[str, StringConstraints(min_length=1, max_length=63)]] = []
    """Names of the containers to manage; empty means every container (init containers never)."""
    probes: Probes | None = None
    """Health probes."""
    resources: Resources | None = None
    """Resource requests and limits."""
    shutdown: Shutdown | None = None
    """Graceful termination."""
    metrics: MetricsScrape | None = None
    """Prometheus scrape annotations on the pod template."""
    tracing: Tracing | None = None
    """OpenTelemetry SDK environment."""
    runtime: Runtime | None = None
    """Runtime tuning derived from limits."""
    logging: Logging | None = None
    """Structured logging settings (LOG_FORMAT, LOG_LEVEL)."""
    security: Security | None = None
    """Container hardening: non-root, no privilege escalation, no capabilities, read-only root filesystem, RuntimeDefault seccomp, no service account token."""
    images: Images | None = None
    """Image references that say exactly what runs (findings only)."""
    secrets: Secrets | None = None
    """Secrets kept out of literal env values (findings only)."""
    profiling: Profiling | None = None
    """Continuous profiling annotations (Grafana Alloy / Pyroscope)."""
    rollout: Rollout = Rollout()
    """Waves: how many Deployments change at once, what happens when a rollout fails, and whether changes wait for the team's next rollout."""
