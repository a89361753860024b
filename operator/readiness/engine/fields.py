"""Field paths in server-side apply's own notation (fieldsV1), and who owns them.

A path is a tuple such as ``("f:spec", "f:template", "f:spec", "f:containers",
'k:{"name":"app"}', "f:livenessProbe")``. Using the apiserver's notation lets the engine
compare what it wants with what ``metadata.managedFields`` says each manager owns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from .. import FIELD_MANAGER, REVERT_MANAGER
from .defaults import EVERYTHING, is_default
from .view import DeploymentView, ManagedEntry

FieldPath = tuple[str, ...]
TEMPLATE: FieldPath = ("f:spec", "f:template")
POD_SPEC: FieldPath = (*TEMPLATE, "f:spec")
_MISSING = object()


@lru_cache(maxsize=8192)
def key(**keys: str) -> str:
    """A list-item key element, encoded as the apiserver encodes it."""
    return "k:" + json.dumps(keys, separators=(",", ":"), sort_keys=True)


def container(name: str) -> FieldPath:
    return (*POD_SPEC, "f:containers", key(name=name))


def flatten(fields: Mapping[str, Any], prefix: FieldPath = ()) -> Iterator[FieldPath]:
    """Every path a fieldsV1 document names (leaves and owned list items/maps)."""
    for name, child in fields.items():
        if name == ".":
            yield prefix
            continue
        path = (*prefix, name)
        if isinstance(child, Mapping) and child:
            yield from flatten(child, path)
        else:
            yield path


def owned(entry: ManagedEntry) -> frozenset[FieldPath]:
    return frozenset(flatten(entry.fields))


def reverted(view: DeploymentView, path: FieldPath) -> bool:
    """True when our revert of a failed rollout holds ``path`` (or something below it)."""
    return any(e.manager == REVERT_MANAGER and path in e.covered for e in view.managed)


def ours(view: DeploymentView, path: FieldPath) -> bool:
    """True when the operator's own field manager owns ``path`` or anything below it."""
    return any(e.manager == FIELD_MANAGER and path in e.covered for e in view.managed)


def holding(view: DeploymentView, path: FieldPath, exclude: str) -> list[ManagedEntry]:
    """The managedFields entries of managers other than ``exclude`` that own ``path`` or anything
    below it. Excluding us excludes our revert too: what it put back was ours to put back."""
    return [
        entry
        for entry in view.managed
        if entry.manager != exclude
        and not entry.subresource
        and not (exclude == FIELD_MANAGER and entry.manager == REVERT_MANAGER)
        and path in entry.covered
    ]


def owners(view: DeploymentView, path: FieldPath, exclude: str) -> list[str]:
    """The managers of ``holding``, once each."""
    return list(dict.fromkeys(entry.manager for entry in holding(view, path, exclude)))


def unchosen(view: DeploymentView, path: FieldPath, value: Any, holders: Sequence[ManagedEntry]) -> bool:
    """True when ``value`` at ``path`` is a default nobody chose: the API server's default for
    the field, held (``holders``, of ``holding``) only by Update-operation managers, which
    record the defaults of the whole objects they send, and not named by the last-applied
    configuration, if there is one. A server-side applier chose every field it holds."""
    if not holders or any(e.operation != "Update" for e in holders) or not is_default(path, value):
        return False
    written = view.last_applied
    if written is None:
        return True
    return EVERYTHING not in written and is_missing(lookup(written, path))


@lru_cache(maxsize=8192)
def item_keys(element: str) -> tuple[tuple[str, Any], ...]:
    """The keys a ``k:`` element names, as pairs: parsed once per distinct element (a fleet
    has a few dozen), not once per lookup."""
    return tuple(json.loads(element[2:]).items())


def lookup(document: Mapping[str, Any], path: Iterable[str]) -> Any:
    """The value at ``path`` in an API object, or ``MISSING``."""
    node: Any = document
    for field, keys in _steps(path if type(path) is tuple else tuple(path)):
        if field is not None:
            # type() first: documents are plain dicts, and an ABC check costs ten times more.
            if type(node) is dict:
                node = node.get(field, _MISSING)
                if node is _MISSING:
                    return _MISSING
            elif isinstance(node, Mapping) and field in node:
                node = node[field]
            else:
                return _MISSING
        elif keys is None or type(node) is not list:
            return _MISSING
        else:
            node = _item(node, keys)
            if node is _MISSING:
                return _MISSING
    return node


Step = tuple[str | None, tuple[tuple[str, Any], ...] | None]


@lru_cache(maxsize=8192)
def _steps(path: FieldPath) -> tuple[Step, ...]:
    """``path`` decoded once per distinct path (an evaluation looks up about seventy, the
    same for every Deployment of a fleet): a field name, a list item's keys, or neither (an
    element no document can hold)."""
    return tuple(
        (e[2:], None) if e.startswith("f:") else (None, item_keys(e) if e.startswith("k:") else None)
        for e in path
    )


def _item(items: list[Any], keys: tuple[tuple[str, Any], ...]) -> Any:
    """The last item with ``keys``: a variable defined twice takes its last value in the pod."""
    if len(keys) == 1:
        ((name, value),) = keys
        for item in reversed(items):
            if item.get(name) == value:
                return item
        return _MISSING
    for item in reversed(items):
        if all(item.get(k) == v for k, v in keys):
            return item
    return _MISSING


def is_missing(value: Any) -> bool:
    return value is _MISSING


def build(leaves: Iterable[tuple[FieldPath, Any]]) -> dict[str, Any]:
    """An apply configuration holding exactly ``leaves`` (keyed list items keep their keys)."""
    tree: dict[str, Any] = {}
    for path, value in leaves:
        node = tree
        for element in path[:-1]:
            node = node.setdefault(element, {})
        node[path[-1]] = value
    return _materialise(tree)


def _materialise(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for element, child in node.items():
        name = element[2:]
        if isinstance(child, dict) and child and all(k.startswith("k:") for k in child):
            # Containers keep the order they were given in (the live order: server-side apply
            # would reorder the user's containers otherwise); env is sorted, so the same
            # variables always make the same apply.
            items = sorted(child.items()) if element == "f:env" else list(child.items())
            out[name] = [{**dict(item_keys(item)), **_materialise(grandchild)} for item, grandchild in items]
        elif isinstance(child, dict) and any(k.startswith(("f:", "k:")) for k in child):
            out[name] = _materialise(child)
        else:
            out[name] = child
    return out


def live_document(view: DeploymentView) -> dict[str, Any]:
    """The view as a Deployment-shaped document, for ``lookup``."""
    return {
        "spec": {
            "template": {
                "metadata": {"annotations": dict(view.template_annotations)},
                "spec": {
                    "terminationGracePeriodSeconds": view.termination_grace_period_seconds,
                    **(
                        {"automountServiceAccountToken": view.automount_service_account_token}
                        if view.automount_service_account_token is not None
                        else {}
                    ),
                    "containers": [dict(c) for c in view.containers],
                },
            }
        }
    }


@lru_cache(maxsize=8192)
def human(path: FieldPath) -> str:
    """``spec.template.spec.containers[app].env[LOG_LEVEL]`` for people and status (the same
    few hundred paths come back for every Deployment of a fleet: each is spelled once)."""
    parts: list[str] = []
    for element in path:
        if element.startswith("f:"):
            parts.append(element[2:])
        elif element.startswith("k:"):
            parts[-1] += "[" + ",".join(str(v) for _, v in item_keys(element)) + "]"
    return ".".join(parts)
