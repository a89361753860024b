"""What a profile wants of one Deployment, as fragments: one per check, each a set of fields.

A fragment knows its stable check id, the field it concerns, the exact leaves it sets and
how to describe itself. Fragments are computed from the profile and the live Deployment
only (level-triggered), then merged into one apply configuration by ``evaluate``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .. import FIELD_MANAGER
from ..models.profile import ProbeSpec, ServiceProfileSpec
from .fields import POD_SPEC, TEMPLATE, FieldPath, container, key, owners
from .quantity import QuantityError, ceil_cores, parse_quantity, same_quantity
from .view import DeploymentView

POD_NAME_ENV = "OTEL_K8S_POD_NAME"  # sorts before OTEL_RESOURCE_ATTRIBUTES, so $(...) expands


@dataclass(frozen=True)
class Fragment:
    check: str
    field: str
    leaves: tuple[tuple[FieldPath, Any], ...]
    wants: str
    # For probes and preStop: the parent that admits a single handler, and ours.
    handler_parent: FieldPath | None = None
    handler: str | None = None


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


def _probe(kind: str, probe: ProbeSpec, default_port: int | str, number: int) -> dict[str, Any]:
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
    ours = any(e.manager == FIELD_MANAGER and path in e.covered for e in view.managed)
    return not ours or bool(owners(view, path, exclude=FIELD_MANAGER))


def _kept_quantity(
    spec: ServiceProfileSpec,
    view: DeploymentView,
    current: Mapping[str, Any],
    base: FieldPath,
    group: str,
    resource: str,
) -> str | int | None:
    """The quantity the container will have after our apply, which the runtime env follows:
    the profile's, unless Report leaves another manager's value; the live one, unless it is
    ours and no longer declared (the same apply releases it)."""
    declared_group = getattr(spec.resources, group, None) if spec.resources is not None else None
    declared: str | int | None = getattr(declared_group, resource, None) if declared_group else None
    live = (current.get("resources", {}).get(group, {}) or {}).get(resource)
    path = (*base, "f:resources", f"f:{group}", f"f:{resource}")
    theirs = owners(view, path, exclude=FIELD_MANAGER)
    if declared is not None:
        held = live is not None and theirs and not same_quantity(live, declared)
        return live if held and spec.conflict_policy == "Report" else declared
    if (
        live is not None
        and not theirs
        and any(e.manager == FIELD_MANAGER and path in e.covered for e in view.managed)
    ):
        return None
    return live if isinstance(live, (str, int)) else None


def plan(spec: ServiceProfileSpec, view: DeploymentView) -> Plan:
    """Every fragment the profile asks of this Deployment, and what blocks it."""
    result = Plan()
    names = [str(c.get("name")) for c in view.containers]
    wanted = list(spec.containers) or names
    missing = [n for n in wanted if n not in names]
    if missing:
        result.problems.append(
            Problem(
                "containers.unknown",
                "spec.template.spec.containers",
                f"container(s) {', '.join(missing)} named by the profile do not exist (have: {', '.join(names)})",
            )
        )
        return result
    live = {str(c.get("name")): c for c in view.containers}
    managed = [n for n in names if n in wanted]  # in the Deployment's own order
    for name in managed:
        _container_fragments(spec, view, name, live[name], result)
    _pod_fragments(spec, view, [live[n] for n in managed], result)
    return result


def _container_fragments(
    spec: ServiceProfileSpec, view: DeploymentView, name: str, current: Mapping[str, Any], out: Plan
) -> None:
    base = container(name)
    where = f"spec.template.spec.containers[{name}]"
    if spec.probes is not None:
        for kind in ("liveness", "readiness", "startup"):
            probe: ProbeSpec | None = getattr(spec.probes, kind)
            if probe is None:
                continue
            port = probe.port if probe.port is not None else spec.probes.port
            number = _resolve_port(current, port)
            if number is None:
                out.problems.append(
                    Problem(
                        "probes.port.unknown",
                        f"{where}.ports",
                        f"probe port {port!r} is not a port of container {name} "
                        f"(declared: {', '.join(str(p.get('name') or p.get('containerPort')) for p in _ports(current)) or 'none'})",
                    )
                )
                continue
            field_name = f"{kind}Probe"
            body = _probe(kind, probe, spec.probes.port, number)
            out.fragments.append(
                Fragment(
                    check=f"probes.{kind}",
                    field=f"{where}.{field_name}",
                    leaves=tuple(_leaves((*base, f"f:{field_name}"), body)),
                    wants=f"{kind} probe {probe.type} on port {port}"
                    + (f" path {probe.path}" if probe.path else ""),
                    handler_parent=(*base, f"f:{field_name}"),
                    handler=probe.type,
                )
            )
    if spec.resources is not None:
        for group in ("requests", "limits"):
            values = getattr(spec.resources, group)
            if values is None:
                continue
            for resource in ("cpu", "memory"):
                value = getattr(values, resource)
                if value is None:
                    continue
                path = (*base, "f:resources", f"f:{group}", f"f:{resource}")
                out.fragments.append(
                    Fragment(
                        check=f"resources.{group}.{resource}",
                        field=f"{where}.resources.{group}.{resource}",
                        leaves=((path, str(value)),),  # `cpu: 1` is applied as the quantity "1"
                        wants=f"{group}.{resource}={value}",
                    )
                )
    if spec.shutdown is not None and spec.shutdown.pre_stop_sleep_seconds is not None:
        parent = (*base, "f:lifecycle", "f:preStop")
        seconds = spec.shutdown.pre_stop_sleep_seconds
        out.fragments.append(
            Fragment(
                check="shutdown.prestop",
                field=f"{where}.lifecycle.preStop",
                leaves=(((*parent, "f:sleep", "f:seconds"), seconds),),
                wants=f"preStop sleep {seconds}s",
                handler_parent=parent,
                handler="sleep",
            )
        )
    _env_fragments(spec, view, name, current, base, where, out)


def _env_fragments(
    spec: ServiceProfileSpec,
    view: DeploymentView,
    name: str,
    current: Mapping[str, Any],
    base: FieldPath,
    where: str,
    out: Plan,
) -> None:
    env = {str(e.get("name")): e for e in current.get("env") or ()}

    def derived(var: str, value: str) -> tuple[FieldPath, Any] | None:
        """A value the profile derives rather than declares: the user's own setting wins, also
        one the container may get through envFrom (a ConfigMap or Secret the operator does not
        read): an env entry would shadow it, so none is added."""
        path = (*base, "f:env", key(name=var))
        if _user_owned(view, path, var in env):
            return None
        if current.get("envFrom") and var not in env:
            out.notices.append(
                f"{var} is not set on container {name}: it may come from its envFrom, which the "
                "operator does not read; set it in the container's env (or declare it) to decide"
            )
            return None
        return _env(base, var, value)

    if spec.tracing is not None:
        t = spec.tracing
        leaves: list[tuple[FieldPath, Any]] = [
            _env(base, "OTEL_EXPORTER_OTLP_ENDPOINT", t.endpoint),
            _env(base, "OTEL_EXPORTER_OTLP_PROTOCOL", t.protocol),
            _env(base, "OTEL_TRACES_SAMPLER", t.sampler),
        ]
        if t.service_name is not None:
            leaves.append(_env(base, "OTEL_SERVICE_NAME", t.service_name))
        else:
            default = (
                view.labels.get("app.kubernetes.io/name")
                or view.template_labels.get("app.kubernetes.io/name")
                or view.name
            )
            leaf = derived("OTEL_SERVICE_NAME", default)
            if leaf:
                leaves.append(leaf)
        if t.sampler_arg is not None:
            leaves.append(_env(base, "OTEL_TRACES_SAMPLER_ARG", t.sampler_arg))
        if t.propagators:
            leaves.append(_env(base, "OTEL_PROPAGATORS", ",".join(t.propagators)))
        leaves.append(
            _env(
                base,
                POD_NAME_ENV,
                value_from={"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            )
        )
        ours = (
            f"k8s.namespace.name={view.namespace},k8s.deployment.name={view.name},"
            f"k8s.pod.name=$({POD_NAME_ENV})"
        )
        attrs_path = (*base, "f:env", key(name="OTEL_RESOURCE_ATTRIBUTES"), "f:value")
        # Appended to, never replaced: whatever else the variable holds is kept as it is.
        existing = str(env.get("OTEL_RESOURCE_ATTRIBUTES", {}).get("value") or "")
        kept = [
            item
            for item in existing.split(",")
            if item and not item.startswith(("k8s.namespace.name=", "k8s.deployment.name=", "k8s.pod.name="))
        ]
        value = ",".join([*kept, ours])
        leaves.append((attrs_path, value))
        out.fragments.append(
            Fragment(
                check="tracing.env",
                field=f"{where}.env",
                leaves=tuple(leaves),
                wants=f"OpenTelemetry env exporting to {t.endpoint}",
            )
        )
    if spec.runtime is not None and spec.runtime.go is not None:
        go_leaves: list[tuple[FieldPath, Any]] = []
        memory = _kept_quantity(spec, view, current, base, "limits", "memory")
        cpu = _kept_quantity(spec, view, current, base, "limits", "cpu") or _kept_quantity(
            spec, view, current, base, "requests", "cpu"
        )
        if memory is None:
            out.notes.append(
                Problem(
                    "runtime.go.memory-limit.missing",
                    f"{where}.resources.limits.memory",
                    f"GOMEMLIMIT needs a memory limit on container {name}; declare resources.limits.memory",
                )
            )
        else:
            try:
                limit = int(parse_quantity(memory) * Decimal(str(spec.runtime.go.memory_limit_ratio)))
                leaf = derived("GOMEMLIMIT", str(limit))
                if leaf:
                    go_leaves.append(leaf)
            except QuantityError:
                pass
        if cpu is not None:
            try:
                leaf = derived("GOMAXPROCS", str(ceil_cores(cpu)))
                if leaf:
                    go_leaves.append(leaf)
            except QuantityError:
                pass
        if go_leaves:
            out.fragments.append(
                Fragment(
                    check="runtime.go.env",
                    field=f"{where}.env",
                    leaves=tuple(go_leaves),
                    wants="GOMEMLIMIT/GOMAXPROCS derived from the container's limits",
                )
            )
    if spec.logging is not None and (spec.logging.format or spec.logging.level):
        log_leaves = []
        if spec.logging.format:
            log_leaves.append(_env(base, "LOG_FORMAT", spec.logging.format))
        if spec.logging.level:
            log_leaves.append(_env(base, "LOG_LEVEL", spec.logging.level))
        out.fragments.append(
            Fragment(
                check="logging.env",
                field=f"{where}.env",
                leaves=tuple(log_leaves),
                wants=" ".join(
                    f"{k}={v}"
                    for k, v in (("LOG_FORMAT", spec.logging.format), ("LOG_LEVEL", spec.logging.level))
                    if v
                ),
            )
        )


def _pod_fragments(
    spec: ServiceProfileSpec, view: DeploymentView, containers: list[Mapping[str, Any]], out: Plan
) -> None:
    if spec.shutdown is not None and spec.shutdown.termination_grace_period_seconds is not None:
        seconds = spec.shutdown.termination_grace_period_seconds
        out.fragments.append(
            Fragment(
                check="shutdown.grace",
                field="spec.template.spec.terminationGracePeriodSeconds",
                leaves=(((*POD_SPEC, "f:terminationGracePeriodSeconds"), seconds),),
                wants=f"terminationGracePeriodSeconds={seconds}",
            )
        )
    if spec.metrics is not None:
        number = next(
            (n for n in (_resolve_port(c, spec.metrics.port) for c in containers) if n is not None), None
        )
        if number is None:
            out.problems.append(
                Problem(
                    "metrics.port.unknown",
                    "spec.template.spec.containers[*].ports",
                    f"metrics port {spec.metrics.port!r} is not a port of any managed container",
                )
            )
            return
        annotations = (*TEMPLATE, "f:metadata", "f:annotations")
        values = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(number),
            "prometheus.io/path": spec.metrics.path,
            "prometheus.io/scheme": spec.metrics.scheme,
        }
        out.fragments.append(
            Fragment(
                check="metrics.annotations",
                field="spec.template.metadata.annotations",
                leaves=tuple(((*annotations, f"f:{k}"), v) for k, v in values.items()),
                wants=f"prometheus.io/* scrape annotations for port {number}{spec.metrics.path}",
            )
        )
