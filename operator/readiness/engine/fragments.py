"""The shape of what a profile section asks of a Deployment, and the helpers sections share.

A fragment knows its stable check id, the field it concerns, the exact leaves it sets and how
to describe itself; a section answers a ``SectionInput`` with a ``SectionResult``: a ``Plan``
for each managed container and one for the pod.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from readiness import FIELD_MANAGER
from readiness.engine.fields import TEMPLATE, FieldPath, container, key, ours, owners
from readiness.engine.quantity import same_quantity
from readiness.engine.view import DeploymentView
from readiness.models.profile import (
    ServiceProfileSpec,
)

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


def each(
    ctx: SectionInput, section: _S | None, build: Callable[[SectionInput, Managed, _S], Plan]
) -> SectionResult:
    """A section that asks things of containers: ``build`` for each managed one, in order;
    nothing when the profile leaves the section out."""
    if section is None:
        return SectionResult.empty(ctx)
    return SectionResult([build(ctx, c, section) for c in ctx.containers])


# ---- Shared helpers ----


def leaves(prefix: FieldPath, value: Mapping[str, Any]) -> Iterator[tuple[FieldPath, Any]]:
    for name, child in value.items():
        path = (*prefix, f"f:{name}")
        if isinstance(child, Mapping) and child:
            yield from leaves(path, child)
        else:
            yield path, child


def ports(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(spec.get("ports") or [])


def resolve_port(container_spec: Mapping[str, Any], port: int | str) -> int | None:
    """The number of a named or numbered port the container declares, else None."""
    for entry in ports(container_spec):
        if isinstance(port, int) and entry.get("containerPort") == port:
            return port
        if isinstance(port, str) and entry.get("name") == port:
            return int(entry["containerPort"])
    return None


def annotations_fragment(check: str, values: Mapping[str, str], wants: str) -> Fragment:
    """A fragment of pod template annotations (what scrapers and profilers discover pods by)."""
    annotations = (*TEMPLATE, "f:metadata", "f:annotations")
    return Fragment(
        check=check,
        field="spec.template.metadata.annotations",
        leaves=tuple(((*annotations, f"f:{k}"), v) for k, v in values.items()),
        wants=wants,
    )


def pod_port(ctx: SectionInput, port: int | str, section: str, result: SectionResult) -> int | None:
    """The number of ``port`` on the first managed container that declares it, for a pod
    annotation; else None, and ``result`` gets the problem."""
    numbers = (resolve_port(c.live, port) for c in ctx.containers)
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


def env_leaf(
    base: FieldPath, name: str, value: str | None = None, value_from: Any = None
) -> tuple[FieldPath, Any]:
    path = (*base, "f:env", key(name=name))
    if value_from is not None:
        return (*path, "f:valueFrom"), value_from
    return (*path, "f:value"), value


def user_owned(view: DeploymentView, path: FieldPath, present: bool) -> bool:
    """A variable is the user's when it exists and is not ours alone."""
    if not present:
        return False
    return not ours(view, path) or bool(owners(view, path, exclude=FIELD_MANAGER))


def derived(ctx: SectionInput, c: Managed, var: str, value: str, out: Plan) -> tuple[FieldPath, Any] | None:
    """A value the profile derives rather than declares: the user's own setting wins, also
    one the container may get through envFrom (a ConfigMap or Secret the operator does not
    read): an env entry would shadow it, so none is added, and ``out`` gets a notice."""
    env = c.env
    if user_owned(ctx.view, (*c.base, "f:env", key(name=var)), var in env):
        return None
    if c.live.get("envFrom") and var not in env:
        out.notices.append(
            f"{var} is not set on container {c.name}: it may come from its envFrom, which the "
            "operator does not read; set it in the container's env (or declare it) to decide"
        )
        return None
    return env_leaf(c.base, var, value)


def kept_quantity(ctx: SectionInput, c: Managed, group: str, resource: str) -> str | int | None:
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
