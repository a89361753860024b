"""What a profile wants of one Deployment, as fragments: one per check, each a set of fields.

A fragment knows its stable check id, the field it concerns, the exact leaves it sets and
how to describe itself. Fragments are computed from the profile and the live Deployment
only (level-triggered), then merged into one apply configuration by ``evaluate``.

Each profile section has one function here (``probes``, ``resources``, ...), all with the same
signature: a ``SectionInput`` in, a ``SectionResult`` out. ``SECTIONS`` holds them in order and
``plan`` runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TypeVar

from .. import FIELD_MANAGER
from ..models.profile import (
    GoRuntime,
    Images,
    Logging,
    Probes,
    ProbeSpec,
    Resources,
    Secrets,
    Security,
    ServiceProfileSpec,
    Tracing,
)
from .fields import POD_SPEC, TEMPLATE, FieldPath, container, key, ours, owners
from .quantity import QuantityError, ceil_cores, parse_quantity, same_quantity
from .secrets import secret_reason
from .view import DeploymentView

POD_NAME_ENV = "OTEL_K8S_POD_NAME"  # sorts before OTEL_RESOURCE_ATTRIBUTES, so $(...) expands
_PROBE_KINDS = ("liveness", "readiness", "startup")
_OUR_ATTRIBUTES = ("k8s.namespace.name=", "k8s.deployment.name=", "k8s.pod.name=")
_S = TypeVar("_S")


@dataclass(frozen=True)
class Fragment:
    check: str
    field: str
    leaves: tuple[tuple[FieldPath, Any], ...]
    wants: str
    # For probes and preStop: the parent that admits a single handler, and ours.
    handler_parent: FieldPath | None = None
    handler: str | None = None
    # Reported when it differs, never written (a section in mode Audit).
    audit: bool = False


@dataclass(frozen=True)
class Problem:
    """Something only the operator can see that makes the profile inapplicable here."""

    check: str
    field: str
    message: str


@dataclass
class Plan:
    fragments: list[Fragment] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)  # violations that no write can fix
    notices: list[str] = field(default_factory=list)  # what a person should know; not a violation

    def extend(self, other: Plan) -> None:
        self.fragments.extend(other.fragments)
        self.problems.extend(other.problems)
        self.notes.extend(other.notes)
        self.notices.extend(other.notices)


@dataclass(frozen=True)
class Managed:
    """A container the profile manages: its name, its live spec, and where it is."""

    name: str
    live: Mapping[str, Any]
    base: FieldPath  # its field path, in fieldsV1 notation
    where: str  # its field, as violations name it

    @classmethod
    def of(cls, name: str, live: Mapping[str, Any]) -> Managed:
        return cls(name, live, container(name), f"spec.template.spec.containers[{name}]")

    @property
    def env(self) -> dict[str, Mapping[str, Any]]:
        return {str(e.get("name")): e for e in self.live.get("env") or ()}


@dataclass(frozen=True)
class SectionInput:
    spec: ServiceProfileSpec
    view: DeploymentView
    containers: tuple[Managed, ...]  # the managed ones, in the Deployment's own order


@dataclass
class SectionResult:
    """What one section asks: of each managed container (aligned with ``SectionInput.containers``),
    and of the pod."""

    containers: list[Plan]
    pod: Plan = field(default_factory=Plan)

    @classmethod
    def empty(cls, ctx: SectionInput) -> SectionResult:
        return cls([Plan() for _ in ctx.containers])


Section = Callable[[SectionInput], SectionResult]


def plan(spec: ServiceProfileSpec, view: DeploymentView) -> Plan:
    """Every fragment the profile asks of this Deployment, and what blocks it: for each managed
    container what each section asks of it, then what each section asks of the pod."""
    names = [str(c.get("name")) for c in view.containers]
    wanted = list(spec.containers) or names
    missing = [n for n in wanted if n not in names]
    if missing:
        return Plan(
            problems=[
                Problem(
                    "containers.unknown",
                    "spec.template.spec.containers",
                    f"container(s) {', '.join(missing)} named by the profile do not exist (have: {', '.join(names)})",
                )
            ]
        )
    live = {str(c.get("name")): c for c in view.containers}
    managed = tuple(Managed.of(n, live[n]) for n in names if n in wanted)  # the Deployment's order
    ctx = SectionInput(spec, view, managed)
    results = [section(ctx) for section in SECTIONS]
    out = Plan()
    for index in range(len(managed)):
        for result in results:
            out.extend(result.containers[index])
    for result in results:
        out.extend(result.pod)
    return out


def _each(
    ctx: SectionInput, section: _S | None, build: Callable[[SectionInput, Managed, _S], Plan]
) -> SectionResult:
    """A section that asks things of containers: ``build`` for each managed one, in order;
    nothing when the profile leaves the section out."""
    if section is None:
        return SectionResult.empty(ctx)
    return SectionResult([build(ctx, c, section) for c in ctx.containers])


# ---- Shared helpers ----


def _leaves(prefix: FieldPath, value: Mapping[str, Any]) -> Iterator[tuple[FieldPath, Any]]:
    for name, child in value.items():
        path = (*prefix, f"f:{name}")
        if isinstance(child, Mapping) and child:
            yield from _leaves(path, child)
        else:
            yield path, child


def _ports(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(spec.get("ports") or [])


def _resolve_port(container_spec: Mapping[str, Any], port: int | str) -> int | None:
    """The number of a named or numbered port the container declares, else None."""
    for entry in _ports(container_spec):
        if isinstance(port, int) and entry.get("containerPort") == port:
            return port
        if isinstance(port, str) and entry.get("name") == port:
            return int(entry["containerPort"])
    return None


def _pod_port(ctx: SectionInput, port: int | str, section: str, result: SectionResult) -> int | None:
    """The number of ``port`` on the first managed container that declares it, for a pod
    annotation; else None, and ``result`` gets the problem."""
    numbers = (_resolve_port(c.live, port) for c in ctx.containers)
    number = next((n for n in numbers if n is not None), None)
    if number is None:
        result.pod.problems.append(
            Problem(
                f"{section}.port.unknown",
                "spec.template.spec.containers[*].ports",
                f"{section} port {port!r} is not a port of any managed container",
            )
        )
    return number


def _env(
    base: FieldPath, name: str, value: str | None = None, value_from: Any = None
) -> tuple[FieldPath, Any]:
    path = (*base, "f:env", key(name=name))
    if value_from is not None:
        return (*path, "f:valueFrom"), value_from
    return (*path, "f:value"), value


def _user_owned(view: DeploymentView, path: FieldPath, present: bool) -> bool:
    """A variable is the user's when it exists and is not ours alone."""
    if not present:
        return False
    return not ours(view, path) or bool(owners(view, path, exclude=FIELD_MANAGER))


def _derived(ctx: SectionInput, c: Managed, var: str, value: str, out: Plan) -> tuple[FieldPath, Any] | None:
    """A value the profile derives rather than declares: the user's own setting wins, also
    one the container may get through envFrom (a ConfigMap or Secret the operator does not
    read): an env entry would shadow it, so none is added, and ``out`` gets a notice."""
    env = c.env
    if _user_owned(ctx.view, (*c.base, "f:env", key(name=var)), var in env):
        return None
    if c.live.get("envFrom") and var not in env:
        out.notices.append(
            f"{var} is not set on container {c.name}: it may come from its envFrom, which the "
            "operator does not read; set it in the container's env (or declare it) to decide"
        )
        return None
    return _env(c.base, var, value)


def _kept_quantity(ctx: SectionInput, c: Managed, group: str, resource: str) -> str | int | None:
    """The quantity the container will have after our apply, which the runtime env follows:
    the profile's, unless Report leaves another manager's value; the live one, unless it is
    ours and no longer declared (the same apply releases it)."""
    spec, view = ctx.spec, ctx.view
    declared_group = getattr(spec.resources, group, None) if spec.resources is not None else None
    declared: str | int | None = getattr(declared_group, resource, None) if declared_group else None
    live = (c.live.get("resources", {}).get(group, {}) or {}).get(resource)
    path = (*c.base, "f:resources", f"f:{group}", f"f:{resource}")
    theirs = owners(view, path, exclude=FIELD_MANAGER)
    if declared is not None:
        held = live is not None and theirs and not same_quantity(live, declared)
        return live if held and spec.conflict_policy == "Report" else declared
    if live is not None and not theirs and ours(view, path):
        return None
    return live if isinstance(live, (str, int)) else None


# ---- probes ----


def probes(ctx: SectionInput) -> SectionResult:
    """Liveness, readiness and startup probes on each managed container; a probe port the
    container does not declare is a problem."""
    return _each(ctx, ctx.spec.probes, _probes_of)


def _probes_of(ctx: SectionInput, c: Managed, declared: Probes) -> Plan:
    out = Plan()
    for kind in _PROBE_KINDS:
        probe: ProbeSpec | None = getattr(declared, kind)
        if probe is None:
            continue
        port = probe.port if probe.port is not None else declared.port
        number = _resolve_port(c.live, port)
        if number is None:
            declared_ports = ", ".join(str(p.get("name") or p.get("containerPort")) for p in _ports(c.live))
            out.problems.append(
                Problem(
                    "probes.port.unknown",
                    f"{c.where}.ports",
                    f"probe port {port!r} is not a port of container {c.name} "
                    f"(declared: {declared_ports or 'none'})",
                )
            )
            continue
        field_name = f"{kind}Probe"
        out.fragments.append(
            Fragment(
                check=f"probes.{kind}",
                field=f"{c.where}.{field_name}",
                leaves=tuple(_leaves((*c.base, f"f:{field_name}"), _probe(probe, declared.port, number))),
                wants=f"{kind} probe {probe.type} on port {port}"
                + (f" path {probe.path}" if probe.path else ""),
                handler_parent=(*c.base, f"f:{field_name}"),
                handler=probe.type,
            )
        )
    return out


def _probe(probe: ProbeSpec, default_port: int | str, number: int) -> dict[str, Any]:
    port = probe.port if probe.port is not None else default_port
    handler: dict[str, Any]
    if probe.type == "httpGet":
        handler = {"path": probe.path, "port": port}
    elif probe.type == "grpc":
        handler = {"port": number}  # gRPC probes take a number only
    else:
        handler = {"port": port}
    body: dict[str, Any] = {probe.type: handler}
    for attr, name in (
        ("initial_delay_seconds", "initialDelaySeconds"),
        ("period_seconds", "periodSeconds"),
        ("timeout_seconds", "timeoutSeconds"),
        ("failure_threshold", "failureThreshold"),
    ):
        value = getattr(probe, attr)
        if value is not None:
            body[name] = value
    return body


# ---- resources ----


def resources(ctx: SectionInput) -> SectionResult:
    """Requests and limits on each managed container, one fragment per quantity."""
    return _each(ctx, ctx.spec.resources, _resources_of)


def _resources_of(ctx: SectionInput, c: Managed, declared: Resources) -> Plan:
    out = Plan()
    for group in ("requests", "limits"):
        values = getattr(declared, group)
        if values is None:
            continue
        for resource in ("cpu", "memory"):
            value = getattr(values, resource)
            if value is None:
                continue
            path = (*c.base, "f:resources", f"f:{group}", f"f:{resource}")
            out.fragments.append(
                Fragment(
                    check=f"resources.{group}.{resource}",
                    field=f"{c.where}.resources.{group}.{resource}",
                    leaves=((path, str(value)),),  # `cpu: 1` is applied as the quantity "1"
                    wants=f"{group}.{resource}={value}",
                )
            )
    return out


# ---- shutdown ----


def shutdown(ctx: SectionInput) -> SectionResult:
    """A preStop sleep on each managed container; terminationGracePeriodSeconds on the pod."""
    declared = ctx.spec.shutdown
    sleep = declared.pre_stop_sleep_seconds if declared is not None else None
    result = _each(ctx, sleep, _pre_stop_of)
    grace = declared.termination_grace_period_seconds if declared is not None else None
    if grace is not None:
        result.pod.fragments.append(
            Fragment(
                check="shutdown.grace",
                field="spec.template.spec.terminationGracePeriodSeconds",
                leaves=(((*POD_SPEC, "f:terminationGracePeriodSeconds"), grace),),
                wants=f"terminationGracePeriodSeconds={grace}",
            )
        )
    return result


def _pre_stop_of(ctx: SectionInput, c: Managed, seconds: int) -> Plan:
    parent = (*c.base, "f:lifecycle", "f:preStop")
    fragment = Fragment(
        check="shutdown.prestop",
        field=f"{c.where}.lifecycle.preStop",
        leaves=(((*parent, "f:sleep", "f:seconds"), seconds),),
        wants=f"preStop sleep {seconds}s",
        handler_parent=parent,
        handler="sleep",
    )
    return Plan(fragments=[fragment])


# ---- metrics ----


def metrics(ctx: SectionInput) -> SectionResult:
    """Prometheus scrape annotations on the pod template, for a port of the first managed
    container that declares it; no such port is a problem."""
    result = SectionResult.empty(ctx)
    declared = ctx.spec.metrics
    if declared is None:
        return result
    number = _pod_port(ctx, declared.port, "metrics", result)
    if number is None:
        return result
    annotations = (*TEMPLATE, "f:metadata", "f:annotations")
    values = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(number),
        "prometheus.io/path": declared.path,
        "prometheus.io/scheme": declared.scheme,
    }
    result.pod.fragments.append(
        Fragment(
            check="metrics.annotations",
            field="spec.template.metadata.annotations",
            leaves=tuple(((*annotations, f"f:{k}"), v) for k, v in values.items()),
            wants=f"prometheus.io/* scrape annotations for port {number}{declared.path}",
        )
    )
    return result


# ---- tracing ----


def tracing(ctx: SectionInput) -> SectionResult:
    """The OpenTelemetry SDK environment on each managed container. OTEL_SERVICE_NAME, unless
    declared, is derived (the user's own value wins); OTEL_RESOURCE_ATTRIBUTES is appended to."""
    return _each(ctx, ctx.spec.tracing, _tracing_of)


def _tracing_of(ctx: SectionInput, c: Managed, t: Tracing) -> Plan:
    out = Plan()
    leaves: list[tuple[FieldPath, Any]] = [
        _env(c.base, "OTEL_EXPORTER_OTLP_ENDPOINT", t.endpoint),
        _env(c.base, "OTEL_EXPORTER_OTLP_PROTOCOL", t.protocol),
        _env(c.base, "OTEL_TRACES_SAMPLER", t.sampler),
    ]
    if t.service_name is not None:
        leaves.append(_env(c.base, "OTEL_SERVICE_NAME", t.service_name))
    elif leaf := _derived(ctx, c, "OTEL_SERVICE_NAME", _default_service_name(ctx.view), out):
        leaves.append(leaf)
    if t.sampler_arg is not None:
        leaves.append(_env(c.base, "OTEL_TRACES_SAMPLER_ARG", t.sampler_arg))
    if t.propagators:
        leaves.append(_env(c.base, "OTEL_PROPAGATORS", ",".join(t.propagators)))
    pod_name = {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}
    leaves.append(_env(c.base, POD_NAME_ENV, value_from=pod_name))
    leaves.append(_resource_attributes(ctx.view, c))
    out.fragments.append(
        Fragment(
            check="tracing.env",
            field=f"{c.where}.env",
            leaves=tuple(leaves),
            wants=f"OpenTelemetry env exporting to {t.endpoint}",
        )
    )
    return out


def _default_service_name(view: DeploymentView) -> str:
    return (
        view.labels.get("app.kubernetes.io/name")
        or view.template_labels.get("app.kubernetes.io/name")
        or view.name
    )


def _resource_attributes(view: DeploymentView, c: Managed) -> tuple[FieldPath, Any]:
    """OTEL_RESOURCE_ATTRIBUTES, appended to, never replaced: whatever else the variable holds
    is kept as it is."""
    ours = (
        f"k8s.namespace.name={view.namespace},k8s.deployment.name={view.name},k8s.pod.name=$({POD_NAME_ENV})"
    )
    existing = str(c.env.get("OTEL_RESOURCE_ATTRIBUTES", {}).get("value") or "")
    kept = [item for item in existing.split(",") if item and not item.startswith(_OUR_ATTRIBUTES)]
    return (*c.base, "f:env", key(name="OTEL_RESOURCE_ATTRIBUTES"), "f:value"), ",".join([*kept, ours])


# ---- runtime ----


def runtime(ctx: SectionInput) -> SectionResult:
    """GOMEMLIMIT and GOMAXPROCS on each managed container, derived from the limits it will
    have (the user's own values win); no memory limit is a note, a violation no write fixes."""
    go = ctx.spec.runtime.go if ctx.spec.runtime is not None else None
    return _each(ctx, go, _go_of)


def _go_of(ctx: SectionInput, c: Managed, go: GoRuntime) -> Plan:
    out = Plan()
    memory = _kept_quantity(ctx, c, "limits", "memory")
    cpu = _kept_quantity(ctx, c, "limits", "cpu") or _kept_quantity(ctx, c, "requests", "cpu")
    if memory is None:
        out.notes.append(
            Problem(
                "runtime.go.memory-limit.missing",
                f"{c.where}.resources.limits.memory",
                f"GOMEMLIMIT needs a memory limit on container {c.name}; declare resources.limits.memory",
            )
        )
    values = (
        ("GOMEMLIMIT", _go_memory_limit(memory, go.memory_limit_ratio)),
        ("GOMAXPROCS", _go_max_procs(cpu)),
    )
    leaves = [
        leaf for var, value in values if value is not None and (leaf := _derived(ctx, c, var, value, out))
    ]
    if leaves:
        out.fragments.append(
            Fragment(
                check="runtime.go.env",
                field=f"{c.where}.env",
                leaves=tuple(leaves),
                wants="GOMEMLIMIT/GOMAXPROCS derived from the container's limits",
            )
        )
    return out


def _go_memory_limit(memory: str | int | None, ratio: float) -> str | None:
    if memory is None:
        return None
    try:
        return str(int(parse_quantity(memory) * Decimal(str(ratio))))
    except QuantityError:
        return None


def _go_max_procs(cpu: str | int | None) -> str | None:
    if cpu is None:
        return None
    try:
        return str(ceil_cores(cpu))
    except QuantityError:
        return None


# ---- logging ----


def logging(ctx: SectionInput) -> SectionResult:
    """LOG_FORMAT and LOG_LEVEL on each managed container, as declared."""
    return _each(ctx, ctx.spec.logging, _logging_of)


def _logging_of(ctx: SectionInput, c: Managed, declared: Logging) -> Plan:
    pairs = [(k, v) for k, v in (("LOG_FORMAT", declared.format), ("LOG_LEVEL", declared.level)) if v]
    if not pairs:
        return Plan()
    fragment = Fragment(
        check="logging.env",
        field=f"{c.where}.env",
        leaves=tuple(_env(c.base, k, v) for k, v in pairs),
        wants=" ".join(f"{k}={v}" for k, v in pairs),
    )
    return Plan(fragments=[fragment])


# The chain, one function per optional section of ServiceProfileSpec, named after it. The order is
# visible output: ``plan`` lists, for each managed container, what each section asks of it in this
# order, then what each asks of the pod (shutdown's grace period, then metrics), and violations
# follow that order. It is the order the profile declares its sections in; keep it when adding one.
# ---- security ----


def security(ctx: SectionInput) -> SectionResult:
    """securityContext settings on each managed container, and the pod's service account token;
    under mode Audit (the section's, else the profile's) reported and never written."""
    declared = ctx.spec.security
    result = _each(ctx, declared, _security_of)
    if declared is None:
        return result
    token = declared.automount_service_account_token
    if token is not None:
        result.pod.fragments.append(
            Fragment(
                check="security.automountServiceAccountToken",
                field="spec.template.spec.automountServiceAccountToken",
                leaves=(((*POD_SPEC, "f:automountServiceAccountToken"), token),),
                wants=f"automountServiceAccountToken={str(token).lower()}",
            )
        )
    if (declared.mode or ctx.spec.mode) == "Audit":
        for plan_ in (*result.containers, result.pod):
            plan_.fragments = [replace(f, audit=True) for f in plan_.fragments]
    return result


def _security_of(ctx: SectionInput, c: Managed, declared: Security) -> Plan:
    base = (*c.base, "f:securityContext")
    own = c.live.get("securityContext") or {}
    pod = ctx.view.pod_security_context

    def inherited(name: str, value: Any) -> bool:
        # The pod's own securityContext already gives the container this value (runAsNonRoot
        # and seccompProfile exist at both levels): nothing to set.
        return name not in own and pod.get(name) == value

    wanted: list[tuple[str, str, FieldPath, Any, str]] = []
    for name, value in (
        ("runAsNonRoot", declared.run_as_non_root),
        ("allowPrivilegeEscalation", declared.allow_privilege_escalation),
        ("readOnlyRootFilesystem", declared.read_only_root_filesystem),
    ):
        if value is not None and not inherited(name, value):
            wanted.append((name, name, (*base, f"f:{name}"), value, f"{name}={str(value).lower()}"))
    if declared.drop_all_capabilities:
        path = (*base, "f:capabilities", "f:drop")
        wanted.append(("capabilities", "capabilities.drop", path, ["ALL"], "capabilities.drop [ALL]"))
    if declared.seccomp_profile is not None and not inherited(
        "seccompProfile", {"type": declared.seccomp_profile}
    ):
        path = (*base, "f:seccompProfile", "f:type")
        profile = declared.seccomp_profile
        wanted.append(("seccompProfile", "seccompProfile.type", path, profile, f"seccompProfile {profile}"))
    return Plan(
        fragments=[
            Fragment(
                check=f"security.{check}",
                field=f"{c.where}.securityContext.{where}",
                leaves=((path, value),),
                wants=wants,
            )
            for check, where, path, value, wants in wanted
        ]
    )


# ---- images and secrets: findings only ----

# The check ids of findings no write fixes: the team changes the manifest.
FINDINGS = ("images.latest", "images.digest", "secrets.literal")


def images(ctx: SectionInput) -> SectionResult:
    """Image references that do not say exactly what runs. Never written: a violation each."""
    return _each(ctx, ctx.spec.images, _images_of)


def _images_of(ctx: SectionInput, c: Managed, declared: Images) -> Plan:
    image = str(c.live.get("image") or "")
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    out = Plan()
    if declared.forbid_latest and not digest and tag in (None, "latest"):
        out.notes.append(
            Problem(
                "images.latest",
                f"{c.where}.image",
                f"container {c.name} runs image {image!r}, "
                + ("tagged latest" if tag else "with no tag (latest)")
                + ": what runs changes without a change here; pin a version tag or a digest",
            )
        )
    if declared.require_digest and not digest.startswith("sha256:"):
        out.notes.append(
            Problem(
                "images.digest",
                f"{c.where}.image",
                f"container {c.name} runs image {image!r} without a digest; the profile requires @sha256:...",
            )
        )
    return out


def secrets(ctx: SectionInput) -> SectionResult:
    """Literal env values that look like secrets. Never written, never quoted: a violation each,
    naming the container and the variable."""
    return _each(ctx, ctx.spec.secrets, _secrets_of)


def _secrets_of(ctx: SectionInput, c: Managed, declared: Secrets) -> Plan:
    out = Plan()
    if not declared.forbid_literal_values:
        return out
    for name, entry in c.env.items():
        value = entry.get("value")
        reason = secret_reason(name, value) if isinstance(value, str) else None
        if reason is not None:
            out.notes.append(
                Problem(
                    "secrets.literal",
                    f"{c.where}.env[{name}]",
                    f"container {c.name}: {name} holds a literal value that looks like a secret ({reason}); "
                    "take it from a Secret (valueFrom.secretKeyRef)",
                )
            )
    return out


# ---- profiling ----

# Each profile's pprof endpoint below profiling.path, as Go's net/http/pprof (and fgprof) serve them.
PROFILE_ENDPOINTS = {
    "cpu": "profile",
    "memory": "allocs",
    "goroutine": "goroutine",
    "block": "block",
    "mutex": "mutex",
    "fgprof": "fgprof",
}


def profiling(ctx: SectionInput) -> SectionResult:
    """Grafana Alloy / Pyroscope annotations on the pod template (profiles.grafana.com/<profile>.*)
    for a port of a managed container; no such port is a problem."""
    result = SectionResult.empty(ctx)
    declared = ctx.spec.profiling
    if declared is None:
        return result
    number = _pod_port(ctx, declared.port, "profiling", result)
    if number is None:
        return result
    annotations = (*TEMPLATE, "f:metadata", "f:annotations")
    port = ("port_name", declared.port) if isinstance(declared.port, str) else ("port", str(number))
    values: dict[str, str] = {}
    for kind in declared.profiles:
        prefix = f"profiles.grafana.com/{kind}"
        values[f"{prefix}.scrape"] = "true"
        values[f"{prefix}.{port[0]}"] = port[1]
        values[f"{prefix}.path"] = f"{declared.path.rstrip('/')}/{PROFILE_ENDPOINTS[kind]}"
    result.pod.fragments.append(
        Fragment(
            check="profiling.annotations",
            field="spec.template.metadata.annotations",
            leaves=tuple(((*annotations, f"f:{k}"), v) for k, v in values.items()),
            wants=f"profiles.grafana.com/* annotations for {', '.join(declared.profiles)} on port {declared.port}",
        )
    )
    return result


SECTIONS: tuple[Section, ...] = (
    probes,
    resources,
    shutdown,
    metrics,
    tracing,
    runtime,
    logging,
    security,
    images,
    secrets,
    profiling,
)
