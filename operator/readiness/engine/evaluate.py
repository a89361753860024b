"""Profile + live Deployment -> violations, conflicts and the one apply that fixes them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import FIELD_MANAGER
from ..models.profile import ServiceProfileSpec
from ..models.status import Conflict, Violation
from .defaults import TOOK
from .desired import plan
from .fields import (
    POD_SPEC,
    FieldPath,
    build,
    holding,
    human,
    is_missing,
    item_keys,
    key,
    live_document,
    lookup,
    ours,
    owned,
    owners,
    reverted,
    unchosen,
)
from .fragments import Fragment
from .quantity import QuantityError, parse_quantity, same_quantity
from .view import DeploymentView

_T = TypeVar("_T")
_PROBE_HANDLERS = ("httpGet", "grpc", "tcpSocket", "exec")
_LIFECYCLE_HANDLERS = ("sleep", "httpGet", "tcpSocket", "exec")
_SLEEP = ("f:lifecycle", "f:preStop", "f:sleep", "f:seconds")


@dataclass(frozen=True)
class Taken:
    """A field another manager holds only as an API default nobody chose: Report takes it."""

    field: str  # below spec.template.spec: terminationGracePeriodSeconds, containers[app].readinessProbe...
    value: Any
    managers: tuple[str, ...]
    last_applied: bool  # the Deployment has a last-applied configuration (which does not name it)

    def __str__(self) -> str:
        whose = " and ".join(self.managers)
        why = (
            f"not in {whose}'s last-applied configuration"
            if self.last_applied
            else f"held by {whose}, which keeps no last-applied configuration"
        )
        return f"{self.field}={json.dumps(self.value)} (API default, {why})"


def taken_text(taken: tuple[Taken, ...], verb: str) -> str:
    """``took terminationGracePeriodSeconds=30 (API default, ...)``, for status and Events."""
    return f"{verb} " + "; ".join(str(t) for t in taken) if taken else ""


@dataclass(frozen=True)
class Evaluation:
    """The engine's verdict on one Deployment under one profile."""

    violations: tuple[Violation, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    problems: tuple[Violation, ...] = ()  # the profile cannot apply here; nothing is written
    apply: Mapping[str, Any] | None = None  # set only when a write is needed
    force: bool = False
    changes: tuple[str, ...] = ()  # check ids the apply fixes
    notices: tuple[str, ...] = ()  # what a person should know that is not a violation
    taken: tuple[Taken, ...] = ()  # API defaults nobody chose that the apply takes (Report)
    took: tuple[str, ...] = ()  # defaults an earlier apply took that the operator still holds

    @property
    def compliant(self) -> bool:
        return not (self.violations or self.conflicts or self.problems)


def _same(path: FieldPath, live: Any, want: Any) -> bool:
    if is_missing(live) or live is None:
        return False
    if "f:resources" in path:
        return same_quantity(live, want)
    return bool(live == want)


def _violation(fragment: Fragment, current: Mapping[FieldPath, Any], diffs: list[FieldPath]) -> Violation:
    found = [current[p] for p, _ in fragment.leaves]
    if fragment.check == "shutdown.grace":
        grace = found[0] if not is_missing(found[0]) and found[0] is not None else 30
        wanted = fragment.leaves[0][1]
        suffix = "too-short" if int(grace) < int(wanted) else "mismatch"
        return Violation(
            check=f"shutdown.grace.{suffix}",
            field=fragment.field,
            message=f"terminationGracePeriodSeconds is {grace}; the profile wants {wanted}",
        )
    absent = all(is_missing(v) for v in found)
    missing = [_short(fragment, p) for p in diffs if is_missing(current[p])]
    differ = [_short(fragment, p) for p in diffs if not is_missing(current[p])]
    detail = (
        "missing"
        if absent
        else "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"differs {', '.join(differ)}" if differ else "",
            )
            if part
        )
    )
    return Violation(
        check=f"{fragment.check}.{'missing' if absent else 'mismatch'}",
        field=fragment.field,
        message=f"{detail}; the profile wants {fragment.wants}",
    )


def _short(fragment: Fragment, path: FieldPath) -> str:
    """The part of a field path below the fragment's own field: ``LOG_LEVEL``, ``httpGet.path``."""
    text = human(path)
    rest = text[len(fragment.field) :].lstrip(".") if text.startswith(fragment.field) else text
    if rest.startswith("["):  # an env variable: its name says it all
        return rest[1 : rest.index("]")]
    return rest or text.rsplit(".", 1)[-1]


def evaluate(spec: ServiceProfileSpec, view: DeploymentView) -> Evaluation:
    """Compare what ``spec`` wants with ``view``; decide the single apply, if any."""
    policy = spec.conflict_policy
    result = plan(spec, view)
    notes = tuple(Violation(check=p.check, field=p.field, message=p.message) for p in result.notes)
    if result.problems:
        # Once each: three probes on one unknown port are one thing to fix.
        problems = tuple(
            _unique([Violation(check=p.check, field=p.field, message=p.message) for p in result.problems])
        )
        return Evaluation(violations=notes, problems=problems, notices=tuple(result.notices))
    doc = live_document(view)
    violations: list[Violation] = list(notes)
    conflicts: list[Conflict] = []
    included: list[Fragment] = []
    kept: list[tuple[FieldPath, Any]] = []
    changes: list[str] = []
    taken: list[Taken] = []
    force = policy == "Force"
    for fragment in result.fragments:
        current = {p: lookup(doc, p) for p, _ in fragment.leaves}
        diffs = [p for p, want in fragment.leaves if not _same(p, current[p], want)]
        hard = _handler_conflicts(fragment, doc, view) + _env_form_conflicts(fragment, doc, view)
        # A field another manager holds is its choice, whatever the value (a value we would
        # only append to is still theirs, and taking it needs force), with one exception: an
        # API default that an Update-operation manager recorded without choosing it is free.
        soft: list[Conflict] = []
        defaults: list[Taken] = []
        for p in diffs:
            entries = [] if is_missing(current[p]) else holding(view, p, exclude=FIELD_MANAGER)
            holders = tuple(dict.fromkeys(e.manager for e in entries))
            if policy == "Report" and unchosen(view, p, current[p], entries):
                defaults.append(Taken(_below_pod(p), current[p], holders, view.last_applied is not None))
            else:
                soft.extend(Conflict(manager=m, field=human(p)) for m in holders)
        soft += _repeated_env(fragment, doc, view) if diffs else []
        if fragment.audit:  # reported, never written; what we set before stays ours
            if diffs:
                violations.append(_violation(fragment, current, diffs))
            kept.extend(
                (p, current[p])
                for p, _ in fragment.leaves
                if not is_missing(current[p]) and ours(view, p) and not owners(view, p, exclude=FIELD_MANAGER)
            )
            continue
        if any(reverted(view, p) for p in diffs):
            force = True  # the apiserver counts our revert as another manager; it is us
        if diffs:
            violations.append(_violation(fragment, current, diffs))
        if hard or (soft and policy == "Report"):
            conflicts.extend(hard or soft)
            # Left out of the apply, but what we already own of it stays as it is: an apply
            # without those fields would take them away (a probe left without its port).
            kept.extend(
                (p, current[p])
                for p, _ in fragment.leaves
                if not is_missing(current[p]) and ours(view, p) and not owners(view, p, exclude=FIELD_MANAGER)
            )
            continue
        included.append(fragment)
        taken.extend(defaults)
        if diffs:
            changes.append(fragment.check)
    misfits = [*_sleep_misfit(result.fragments, included, doc), *_resource_misfits(included, doc)]
    if misfits:  # the apiserver would refuse the apply: say why instead
        return Evaluation(
            violations=tuple(violations),
            conflicts=tuple(_unique(conflicts)),
            problems=tuple(misfits),
            notices=tuple(result.notices),
        )
    leaves = [leaf for fragment in included for leaf in fragment.leaves] + kept
    released = _released(view, [p for p, _ in leaves])
    apply = None
    if changes or released:
        metadata: dict[str, Any] = {"name": view.name, "namespace": view.namespace}
        if taken and not force and view.resource_version:
            # Taking defaults needs force, and force takes whatever the apply holds: the
            # object's version makes it take exactly what was decided here, or nothing (409).
            metadata["resourceVersion"] = view.resource_version
        record = _took_record(view, taken, [p for p, _ in leaves])
        if record:
            metadata["annotations"] = {TOOK: record}
        apply = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, **build(leaves)}
        if released and not changes:
            changes.append("released")
    return Evaluation(
        violations=tuple(violations),
        conflicts=tuple(_unique(conflicts)),
        apply=apply,
        force=force or bool(taken),
        changes=tuple(changes),
        notices=tuple(result.notices),
        taken=tuple(taken),
        took=_still_held(view, [p for f in included for p, _ in f.leaves]),
    )


def _took_record(view: DeploymentView, taken: list[Taken], desired: list[FieldPath]) -> str:
    """The TOOK annotation an apply carries: what it takes now, and what an earlier apply took
    that it still sets (an apply without it would drop the record)."""
    fields = {_below_pod(p) for p in desired}
    lines = {f: line for f, line in view.took.items() if f in fields}
    lines.update({t.field: str(t) for t in taken})
    return "\n".join(lines[f] for f in sorted(lines))


def _still_held(view: DeploymentView, desired: list[FieldPath]) -> tuple[str, ...]:
    """The recorded defaults the operator took and still holds: the status says so."""
    return tuple(view.took[f] for p in desired if (f := _below_pod(p)) in view.took and ours(view, p))


def _below_pod(path: FieldPath) -> str:
    """``containers[app].readinessProbe.periodSeconds``: a field named below the pod spec."""
    return human(path).removeprefix("spec.template.spec.")


def _sleep_misfit(
    fragments: list[Fragment], included: list[Fragment], doc: Mapping[str, Any]
) -> list[Violation]:
    """A preStop sleep must end before the pod's grace period does: the profile's when it is
    applied, else the one the Deployment keeps (30 when it sets none). A grace period the
    profile applies must also outlast the sleeps the containers keep as their own."""
    ours = {f.leaves[0][0]: int(f.leaves[0][1]) for f in included if f.check == "shutdown.prestop"}
    declared = next((f for f in fragments if f.check == "shutdown.grace"), None)
    if declared is not None and declared in included:
        listed = lookup(doc, (*POD_SPEC, "f:containers"))
        for item in listed if isinstance(listed, list) else ():
            path = (*POD_SPEC, "f:containers", key(name=str(item.get("name"))), *_SLEEP)
            live = lookup(doc, path)
            if path not in ours and isinstance(live, int):
                ours[path] = live
    sleeps = list(ours.values())
    if not sleeps:
        return []
    if declared is not None and declared in included:
        grace, whose = int(declared.leaves[0][1]), "the profile's"
    else:
        live = lookup(doc, (*POD_SPEC, "f:terminationGracePeriodSeconds"))
        grace = 30 if is_missing(live) or live is None else int(live)
        whose = "the Deployment's own" + (", which another manager holds" if declared else "")
    longest = max(sleeps)
    if longest < grace:
        return []
    return [
        Violation(
            check="shutdown.prestop.exceeds-grace",
            field="spec.template.spec.terminationGracePeriodSeconds",
            message=f"a preStop sleep of {longest}s does not end before terminationGracePeriodSeconds "
            f"{grace} ({whose}); declare shutdown.terminationGracePeriodSeconds above {longest}"
            + (" with conflictPolicy Force" if declared else "")
            + " or a shorter preStopSleepSeconds",
        )
    ]


def _resource_misfits(included: list[Fragment], doc: Mapping[str, Any]) -> list[Violation]:
    """A request above its limit, once our values meet the ones the container keeps."""
    wanted = {p: v for f in included for p, v in f.leaves if "f:resources" in p}
    found: list[Violation] = []
    for base in sorted({p[: p.index("f:resources")] for p in wanted}):
        name = dict(item_keys(base[-1])).get("name", "?")
        for resource in ("cpu", "memory"):
            request_path = (*base, "f:resources", "f:requests", f"f:{resource}")
            limit_path = (*base, "f:resources", "f:limits", f"f:{resource}")
            if request_path not in wanted and limit_path not in wanted:
                continue
            request = wanted.get(request_path, lookup(doc, request_path))
            limit = wanted.get(limit_path, lookup(doc, limit_path))
            if is_missing(request) or is_missing(limit) or request is None or limit is None:
                continue
            try:
                above = parse_quantity(request) > parse_quantity(limit)
            except QuantityError:
                continue
            if above:
                found.append(
                    Violation(
                        check="resources.request-above-limit",
                        field=f"spec.template.spec.containers[{name}].resources",
                        message=f"requests.{resource} {request} would be above limits.{resource} {limit} "
                        f"on container {name}; declare both in the profile (conflictPolicy Force takes "
                        "one another manager holds)",
                    )
                )
    return found


def _handler_conflicts(fragment: Fragment, doc: Mapping[str, Any], view: DeploymentView) -> list[Conflict]:
    """Another manager's probe/preStop handler of another type: a pod may have only one."""
    if fragment.handler_parent is None:
        return []
    current = lookup(doc, fragment.handler_parent)
    if is_missing(current) or not isinstance(current, Mapping):
        return []
    kinds = _LIFECYCLE_HANDLERS if "f:lifecycle" in fragment.handler_parent else _PROBE_HANDLERS
    found: list[Conflict] = []
    for other in kinds:
        if other == fragment.handler or other not in current:
            continue
        path = (*fragment.handler_parent, f"f:{other}")
        theirs = owners(view, path, exclude=FIELD_MANAGER)
        if not theirs and ours(view, path):
            continue  # our own earlier handler: the apply that sets the new one drops it
        for manager in theirs or ["unknown"]:
            found.append(Conflict(manager=manager, field=human(path)))
    return found


def _env_form_conflicts(fragment: Fragment, doc: Mapping[str, Any], view: DeploymentView) -> list[Conflict]:
    """An env variable holds a value or a valueFrom, never both: another manager's other form
    cannot be taken by an apply (it can only add ours beside it, which the apiserver refuses)."""
    found: list[Conflict] = []
    for path, want in fragment.leaves:
        at = next((i for i in range(len(path) - 2) if path[i] == "f:env"), None)
        if at is None or path[at + 2] not in ("f:value", "f:valueFrom"):
            continue
        others = [(*path[: at + 2], "f:valueFrom" if path[at + 2] == "f:value" else "f:value")]
        live = lookup(doc, path)
        if path[at + 2] == "f:valueFrom" and isinstance(live, Mapping) and isinstance(want, Mapping):
            # valueFrom merges field by field: their source would stay beside ours.
            others += [(*path, f"f:{source}") for source in live if source not in want]
        for other in others:
            if is_missing(lookup(doc, other)):
                continue
            theirs = owners(view, other, exclude=FIELD_MANAGER)
            if not theirs and ours(view, other):
                continue  # our own earlier form: the apply that sets the new one drops it
            found.extend(Conflict(manager=m, field=human(other)) for m in theirs or ["unknown"])
    return _unique(found)


def _repeated_env(fragment: Fragment, doc: Mapping[str, Any], view: DeploymentView) -> list[Conflict]:
    """A variable the container defines more than once: an apply of it replaces every
    definition (the apiserver collapses them), so whoever wrote them must agree (Force)."""
    found: list[Conflict] = []
    for path, _ in fragment.leaves:
        at = next((i for i in range(len(path) - 1) if path[i] == "f:env"), None)
        if at is None:
            continue
        name = dict(item_keys(path[at + 1])).get("name")
        env = lookup(doc, path[: at + 1])
        if (
            isinstance(env, list)
            and sum(1 for e in env if isinstance(e, Mapping) and e.get("name") == name) > 1
        ):
            item = path[: at + 2]
            holders = owners(view, item, exclude=FIELD_MANAGER) or ["unknown"]
            found.extend(
                Conflict(manager=m, field=f"{human(item)} (defined more than once)") for m in holders
            )
    return _unique(found)


def _released(view: DeploymentView, desired: list[FieldPath]) -> bool:
    """True when we own a spec field the profile no longer asks for (an apply drops it)."""
    mine = [e for e in view.managed if e.manager == FIELD_MANAGER and e.operation == "Apply"]
    if not mine:
        return False
    wanted = set(desired)
    above = {d[:i] for d in desired for i in range(1, len(d))}  # every proper prefix
    for entry in mine:
        for owned_path in owned(entry):
            if owned_path[:1] != ("f:spec",):
                continue
            path = owned_path
            if (
                len(path) >= 2
                and path[-2].startswith("k:")
                and any(path[-1][2:] == k for k, _ in item_keys(path[-2]))
            ):
                path = path[:-1]  # a list item's key field (f:name) lives and dies with the item
            # Released unless it is a desired path, above one, or below one.
            if path in wanted or path in above:
                continue
            if not any(path[:i] in wanted for i in range(1, len(path))):
                return True
    return False


def _unique(items: list[_T]) -> list[_T]:
    seen: list[_T] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
