"""Just enough of the apiserver, in memory: the one simulator every test-side server-side apply
goes through (the engine tables and properties directly, the reconciler's tests through the Twin).

- Field sets: ``fields_v1`` is the fieldsV1 the apiserver records for an object; ``paths`` and
  ``unpaths`` turn one into the set of owned paths and back.
- ``merge``: an apply configuration merged into the live object as server-side apply merges it.
- ``server_side_apply``: the apply itself under one field manager, with the apiserver's conflict
  rule (another manager's field holding another value is refused unless forced; forcing moves
  the field), the release of fields the manager applied before and no longer applies, the
  apiserver's defaults, a new generation when the spec changed, and the manager's Apply entry.
- ``api_defaults``: the defaulting and normalisation the apiserver does on what these tests write.

It is the oracle the engine is checked against, so it keeps to its own code: nothing here comes
from ``readiness`` (its fields, merge or mutation). What it leaves out: validation (one handler
per probe, value or valueFrom, requests within limits: the property tests check those apart),
the apply's ``metadata`` (only its spec is merged and recorded), and the order of list items the
apply and the live object share but sort differently (the live order is kept; the apiserver
follows the apply's).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

FieldPath = tuple[str, ...]
OPERATOR = "readiness-operator"  # the field manager an apply is made under unless told otherwise
ABSENT = object()  # what value_at finds where there is nothing
PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
# Quantities as the apiserver stores them: the spellings these tests write, canonical.
CANONICAL = {"0.1": "100m", "0.25": "250m", "1024Mi": "1Gi", "1000m": "1", "2000m": "2", "0.5": "500m"}


# ---- Field sets ----


def item_key(item: Mapping[str, Any]) -> str:
    """The fieldsV1 key of a list item: ports by (containerPort, protocol), conditions by type, the rest by name."""
    if "containerPort" in item:
        keys: dict[str, Any] = {
            "containerPort": item["containerPort"],
            "protocol": item.get("protocol", "TCP"),
        }
    else:
        keys = {"name": item["name"]} if "name" in item else {"type": item["type"]}
    return "k:" + json.dumps(keys, separators=(",", ":"))


def keyed(items: Sequence[Any]) -> bool:
    """Whether a list merges item by item: every item has its key. Otherwise (envFrom, command)
    the list is atomic: one field, replaced whole."""
    return all(isinstance(i, Mapping) and ("containerPort" in i or "name" in i or "type" in i) for i in items)


def fields_v1(obj: Mapping[str, Any], *, dots: bool, depth: int = 0) -> dict[str, Any]:
    """fieldsV1 of ``obj``. List items always own themselves ("."); with ``dots`` nested structs too,
    as Update entries record them; an Apply entry has "." on list items only."""
    out: dict[str, Any] = {}
    for name, value in obj.items():
        if isinstance(value, Mapping) and value:
            inner = fields_v1(value, dots=dots, depth=depth + 1)
            out[f"f:{name}"] = {".": {}, **inner} if dots and depth > 0 else inner
        elif isinstance(value, list) and value and keyed(value):
            out[f"f:{name}"] = {item_key(v): {".": {}, **fields_v1(v, dots=dots, depth=2)} for v in value}
        else:
            out[f"f:{name}"] = {}
    return out


def fields_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """fieldsV1 of an object's content, as an Apply entry records it: all but apiVersion, kind and metadata."""
    return fields_v1(
        {k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")}, dots=False
    )


def paths(fields: Mapping[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
    """The paths a fieldsV1 document owns: its leaves, and every node marked "." (owned itself)."""
    found: set[FieldPath] = set()
    for name, child in fields.items():
        if name == ".":
            found.add(prefix)
        elif isinstance(child, Mapping) and child:
            found |= paths(child, (*prefix, name))
        else:
            found.add((*prefix, name))
    return found


def unpaths(owned: set[FieldPath]) -> dict[str, Any]:
    """The fieldsV1 document owning exactly ``owned``."""
    tree: dict[str, Any] = {}
    for path in owned:
        node = tree
        for element in path:
            node = node.setdefault(element, {})

    def mark(node: dict[str, Any], prefix: FieldPath) -> None:
        for name, child in node.items():
            if name != ".":
                if child and (*prefix, name) in owned:
                    child["."] = {}
                mark(child, (*prefix, name))

    mark(tree, ())
    return tree


def value_at(doc: Any, path: FieldPath) -> Any:
    """The value at a fieldsV1 path (f:field, k:{...} list items) of an object, or ABSENT."""
    node = doc
    for element in path:
        if element.startswith("f:") and isinstance(node, Mapping) and element[2:] in node:
            node = node[element[2:]]
        elif element.startswith("k:") and isinstance(node, list):
            wanted = json.loads(element[2:])
            node = next((i for i in node if all(i.get(k) == v for k, v in wanted.items())), ABSENT)
        else:
            return ABSENT
    return node


def remove_at(doc: Any, path: FieldPath) -> None:
    parent, last = value_at(doc, path[:-1]), path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(parent, list):
        wanted = json.loads(last[2:])
        parent[:] = [i for i in parent if not all(i.get(k) == v for k, v in wanted.items())]


def is_key_field(path: FieldPath) -> bool:
    """A list item's key field (an env entry's name): it goes with the item, never alone."""
    return len(path) >= 2 and path[-2].startswith("k:") and path[-1][2:] in json.loads(path[-2][2:])


# ---- Merging and defaulting ----


def merge(live: Any, patch: Any) -> Any:
    """Maps merge; lists of keyed items (containers, env, ports) merge item by item, the live order
    kept and new items appended; anything else (atomic lists too) is replaced."""
    if isinstance(live, Mapping) and isinstance(patch, Mapping):
        out = dict(live)
        for k, v in patch.items():
            out[k] = merge(live[k], v) if k in live else copy.deepcopy(v)
        return out
    if isinstance(live, list) and isinstance(patch, list) and keyed(patch) and keyed(live):
        by_key = {item_key(p): p for p in patch}
        keys = [item_key(i) for i in live]
        merged: list[Any] = []
        for key_, item in zip(keys, live, strict=True):
            if keys.count(key_) > 1 and key_ in by_key:
                # Duplicates of an applied key (env names may repeat): the apiserver replaces
                # them all with the applied item, as the testbed shows.
                if key_ not in [item_key(m) for m in merged]:
                    merged.append(copy.deepcopy(by_key[key_]))
                continue
            merged.append(merge(item, by_key[key_]) if key_ in by_key else item)
        return merged + [copy.deepcopy(p) for p in patch if item_key(p) not in keys]
    return copy.deepcopy(patch)


def api_defaults(body: dict[str, Any]) -> dict[str, Any]:
    """The apiserver's defaulting and normalisation of what these tests write."""
    pod = body["spec"]["template"]["spec"]
    pod.setdefault("terminationGracePeriodSeconds", 30)
    for c in pod["containers"]:
        for port in c.get("ports", []):
            port.setdefault("protocol", "TCP")
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            if kind in c:
                c[kind] = {**PROBE_DEFAULTS, **c[kind]}
                if "httpGet" in c[kind]:
                    c[kind]["httpGet"].setdefault("scheme", "HTTP")
        for group in c.get("resources", {}).values():
            for resource, quantity in group.items():
                group[resource] = CANONICAL.get(str(quantity), str(quantity))
    return body


# ---- Server-side apply ----


class Refused(AssertionError):
    """The apiserver's 409 for an unforced apply: ``conflicts`` holds (manager, path) for every
    field another manager owns with another value. An AssertionError: in the engine's tests, a
    refused apply is the engine asking for what the apiserver refuses."""

    def __init__(self, conflicts: list[tuple[str, FieldPath]]) -> None:
        self.conflicts = conflicts
        by_manager: dict[str, list[FieldPath]] = {}
        for manager, path in conflicts:
            by_manager.setdefault(manager, []).append(path)
        super().__init__(
            "the apiserver would refuse: "
            + "; ".join(f"{manager} owns {sorted(taken)}" for manager, taken in by_manager.items())
        )


def differs(live: Any, apply: Mapping[str, Any], path: FieldPath) -> bool:
    """Whether the apply would change the live value at ``path`` (quantities compared canonical)."""
    have, want = value_at(live, path), value_at(apply, path)
    if have is ABSENT:
        return False
    if "f:resources" in path:
        return bool(CANONICAL.get(str(have), str(have)) != CANONICAL.get(str(want), str(want)))
    return bool(have != want)


def server_side_apply(
    live: Mapping[str, Any],
    apply: Mapping[str, Any],
    *,
    force: bool,
    manager: str = OPERATOR,
    time: str | None = None,
) -> dict[str, Any]:
    """What the apiserver holds after ``apply`` under field manager ``manager`` (``live`` is left as it is).

    Refuses (``Refused``) to change a field another manager owns unless forced; forcing moves
    the field to ``manager``. Fields ``manager`` applied last time and not this time are removed
    unless someone else owns them (with the structs that held only them). Records its Apply
    entry (with ``time`` when given), last.
    """
    body = copy.deepcopy(dict(live))
    meta = body["metadata"]
    applied = fields_v1({"spec": apply["spec"]} if "spec" in apply else {}, dots=False)
    mine = paths(applied)
    before: set[FieldPath] = set()
    entries: list[dict[str, Any]] = []
    conflicts: list[tuple[str, FieldPath]] = []
    for entry in meta.get("managedFields", []):
        theirs = paths(entry["fieldsV1"])
        if entry["manager"] == manager:
            before |= theirs if entry["operation"] == "Apply" else set()
            continue
        taken = set()
        if not entry.get("subresource"):
            taken = {p for p in mine & theirs if not p[-1].startswith("k:") and differs(body, apply, p)}
            conflicts += [(entry["manager"], p) for p in sorted(taken)]
        if theirs - taken:
            entries.append({**entry, "fieldsV1": unpaths(theirs - taken)} if taken else entry)
    if conflicts and not force:
        raise Refused(conflicts)
    kept = mine.union(*(paths(e["fieldsV1"]) for e in entries if not e.get("subresource")))
    for released in sorted(before - mine, key=len, reverse=True):
        path = released
        # Below the pod template's spec/metadata only: those always stay.
        while len(path) >= 4 and not is_key_field(path) and not any(q[: len(path)] == path for q in kept):
            remove_at(body, path)
            path = path[:-1] if path[-2].startswith("f:") else ()  # up to the struct or list holding it
    body["spec"] = merge(body["spec"], apply.get("spec", {}))
    api_defaults(body)
    if body["spec"] != live["spec"]:
        meta["generation"] = meta.get("generation", 1) + 1  # an object made without one is at 1
    ours: dict[str, Any] = {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "fieldsV1": applied,
    }
    if time is not None:
        ours["time"] = time
    meta["managedFields"] = [*entries, ours]
    return body
