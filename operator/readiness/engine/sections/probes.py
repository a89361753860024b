"""The profile's probes section: Liveness, readiness and startup probes."""

from __future__ import annotations

from typing import Any

from readiness.engine.fragments import (
    Fragment,
    Managed,
    Plan,
    Problem,
    SectionInput,
    SectionResult,
    each,
    leaves,
    ports,
    resolve_port,
)
from readiness.models.profile import (
    Probes,
    ProbeSpec,
)

_PROBE_KINDS = ("liveness", "readiness", "startup")


def probes(ctx: SectionInput) -> SectionResult:
    """Liveness, readiness and startup probes on each managed container; a probe port the
    container does not declare is a problem."""
    return each(ctx, ctx.spec.probes, _probes_of)


def _probes_of(ctx: SectionInput, c: Managed, declared: Probes) -> Plan:
    out = Plan()
    for kind in _PROBE_KINDS:
        probe: ProbeSpec | None = getattr(declared, kind)
        if probe is None:
            continue
        port = probe.port if probe.port is not None else declared.port
        number = resolve_port(c.live, port)
        if number is None:
            declared_ports = ", ".join(str(p.get("name") or p.get("containerPort")) for p in ports(c.live))
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
                leaves=tuple(leaves((*c.base, f"f:{field_name}"), _probe(probe, declared.port, number))),
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
