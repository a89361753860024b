"""Field paths in fieldsV1 notation: flattening managedFields, who owns what, lookups, building applies."""

from __future__ import annotations

from typing import Any

import pytest

from readiness.engine import DeploymentView, ManagedEntry
from readiness.engine.fields import (
    POD_SPEC,
    TEMPLATE,
    FieldPath,
    build,
    container,
    flatten,
    human,
    is_missing,
    key,
    live_document,
    lookup,
    owned,
    owners,
)

APP = 'k:{"name":"app"}'
SIDECAR = 'k:{"name":"sidecar"}'
CONTAINERS: FieldPath = ("f:spec", "f:template", "f:spec", "f:containers")
HTTP_PORT = 'k:{"containerPort":8080,"protocol":"TCP"}'


def nest(path: FieldPath, leaf: dict[str, Any] | None = None) -> dict[str, Any]:
    """A fieldsV1 document owning ``path`` (and whatever ``leaf`` holds below it)."""
    node: dict[str, Any] = leaf if leaf is not None else {}
    for element in reversed(path):
        node = {element: node}
    return node


# What `kubectl apply` (client-side) records for a Deployment it created: structs and list
# items carry "." (the node itself is owned), leaves are empty objects.
KUBECTL_FIELDS: dict[str, Any] = {
    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
    "f:spec": {
        "f:replicas": {},
        "f:template": {
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:containers": {
                    APP: {
                        ".": {},
                        "f:name": {},
                        "f:image": {},
                        "f:ports": {HTTP_PORT: {".": {}, "f:containerPort": {}, "f:protocol": {}}},
                        "f:readinessProbe": {".": {}, "f:httpGet": {".": {}, "f:path": {}, "f:port": {}}},
                    }
                },
                "f:terminationGracePeriodSeconds": {},
            },
        },
    },
}
OPERATOR_FIELDS: dict[str, Any] = nest(
    CONTAINERS,
    {
        APP: {
            ".": {},
            "f:name": {},
            "f:env": {'k:{"name":"LOG_LEVEL"}': {".": {}, "f:name": {}, "f:value": {}}},
        }
    },
)


def view(*entries: dict[str, Any]) -> DeploymentView:
    return DeploymentView.from_body(
        {
            "metadata": {"name": "api", "namespace": "shop", "managedFields": list(entries)},
            "spec": {
                "template": {
                    "metadata": {"annotations": {"prometheus.io/port": "9090"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 30,
                        "containers": [
                            {
                                "name": "app",
                                "image": "x",
                                "ports": [{"containerPort": 8080, "protocol": "TCP", "name": "http"}],
                                "env": [{"name": "LOG_LEVEL", "value": "info"}],
                            },
                            {"name": "sidecar", "image": "y"},
                        ],
                    },
                }
            },
        }
    )


EDIT_FIELDS = nest((*CONTAINERS, APP, "f:readinessProbe", "f:httpGet", "f:path"))
KUBECTL: dict[str, Any] = {
    "manager": "kubectl-client-side-apply",
    "operation": "Update",
    "fieldsV1": KUBECTL_FIELDS,
}
OPERATOR: dict[str, Any] = {
    "manager": "readiness-operator",
    "operation": "Apply",
    "fieldsV1": OPERATOR_FIELDS,
}
EDIT: dict[str, Any] = {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": EDIT_FIELDS}
STATUS: dict[str, Any] = {
    "manager": "kube-controller-manager",
    "operation": "Update",
    "subresource": "status",
    "fieldsV1": {"f:status": {"f:replicas": {}}, **nest((*CONTAINERS, APP, "f:image"))},
}


@pytest.mark.parametrize(
    ("keys", "element"),
    [
        ({"name": "app"}, APP),
        ({"name": "OTEL_K8S_POD_NAME"}, 'k:{"name":"OTEL_K8S_POD_NAME"}'),
        ({"protocol": "TCP", "containerPort": "8080"}, 'k:{"containerPort":"8080","protocol":"TCP"}'),
    ],
)
def test_key(keys: dict[str, str], element: str) -> None:
    assert key(**keys) == element


def test_container_and_template_paths() -> None:
    assert TEMPLATE == ("f:spec", "f:template")
    assert POD_SPEC == ("f:spec", "f:template", "f:spec")
    assert container("app") == (*CONTAINERS, APP)


@pytest.mark.parametrize(
    ("fields", "paths"),
    [
        ({}, []),
        ({"f:replicas": {}}, [("f:replicas",)]),
        ({"f:labels": {".": {}, "f:app": {}}}, [("f:labels",), ("f:labels", "f:app")]),
        (
            {"f:containers": {APP: {".": {}, "f:name": {}, "f:image": {}}}},
            [("f:containers", APP), ("f:containers", APP, "f:name"), ("f:containers", APP, "f:image")],
        ),
        (
            {"f:a": {"f:b": {"f:c": {}}, "f:d": {}}},
            [("f:a", "f:b", "f:c"), ("f:a", "f:d")],
        ),
    ],
)
def test_flatten(fields: dict[str, Any], paths: list[FieldPath]) -> None:
    assert list(flatten(fields)) == paths


def test_flatten_a_kubectl_entry() -> None:
    flat = set(flatten(KUBECTL_FIELDS))
    probe = (*CONTAINERS, APP, "f:readinessProbe")
    assert {
        ("f:metadata", "f:labels"),  # "." of labels: the map itself
        (*CONTAINERS, APP),  # "." of the list item
        (*CONTAINERS, APP, "f:name"),
        (*CONTAINERS, APP, "f:ports", HTTP_PORT, "f:containerPort"),
        probe,
        (*probe, "f:httpGet"),
        (*probe, "f:httpGet", "f:path"),
        ("f:spec", "f:template", "f:spec", "f:terminationGracePeriodSeconds"),
    } <= flat
    assert not any("." in path for path in flat)
    assert ("f:spec",) not in flat, "a struct without '.' is not owned itself"
    assert owned(ManagedEntry("kubectl", "Update", KUBECTL_FIELDS)) == frozenset(flat)


def test_covered_holds_every_owned_path_and_its_prefixes() -> None:
    entry = ManagedEntry("kubectl-edit", "Update", EDIT_FIELDS)
    path = (*CONTAINERS, APP, "f:readinessProbe", "f:httpGet", "f:path")
    assert entry.covered == frozenset(path[:n] for n in range(1, len(path) + 1))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            (*CONTAINERS, APP, "f:readinessProbe", "f:httpGet", "f:path"),
            ["kubectl-client-side-apply", "kubectl-edit"],
        ),
        ((*CONTAINERS, APP, "f:readinessProbe"), ["kubectl-client-side-apply", "kubectl-edit"]),
        ((*CONTAINERS, APP, "f:readinessProbe", "f:httpGet", "f:port"), ["kubectl-client-side-apply"]),
        ((*CONTAINERS, APP), ["kubectl-client-side-apply", "kubectl-edit"]),
        ((*CONTAINERS, APP, "f:image"), ["kubectl-client-side-apply"]),  # not the status subresource
        ((*CONTAINERS, APP, "f:env", 'k:{"name":"LOG_LEVEL"}'), []),  # ours only
        ((*CONTAINERS, APP, "f:env", 'k:{"name":"LOG_LEVEL"}', "f:value"), []),
        ((*CONTAINERS, APP, "f:livenessProbe"), []),
        ((*CONTAINERS, SIDECAR), []),
        (("f:status", "f:replicas"), []),
    ],
)
def test_owners(path: FieldPath, expected: list[str]) -> None:
    assert owners(view(KUBECTL, OPERATOR, EDIT, STATUS), path, exclude="readiness-operator") == expected


def test_owners_excludes_the_given_manager_only() -> None:
    v = view(KUBECTL, OPERATOR, KUBECTL)
    env = (*CONTAINERS, APP, "f:env", 'k:{"name":"LOG_LEVEL"}')
    assert owners(v, env, exclude="kubectl-client-side-apply") == ["readiness-operator"]
    assert owners(v, (*CONTAINERS, APP), exclude="nobody") == [
        "kubectl-client-side-apply",
        "readiness-operator",
    ]


DOC: dict[str, Any] = {
    "spec": {
        "template": {
            "metadata": {"annotations": {"prometheus.io/port": "9090"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "ports": [
                            {"containerPort": 8080, "protocol": "TCP", "name": "http"},
                            {"containerPort": 8080, "protocol": "UDP", "name": "quic"},
                        ],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": ""}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
                    },
                    {"name": "sidecar", "image": "y"},
                ],
            },
        }
    }
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ((*CONTAINERS, APP, "f:readinessProbe", "f:httpGet", "f:path"), "/ready"),
        ((*CONTAINERS, APP, "f:env", 'k:{"name":"A"}', "f:value"), "1"),
        ((*CONTAINERS, APP, "f:env", 'k:{"name":"B"}', "f:value"), ""),
        ((*CONTAINERS, APP, "f:env", 'k:{"name":"B"}'), {"name": "B", "value": ""}),
        ((*CONTAINERS, SIDECAR, "f:image"), "y"),
        ((*CONTAINERS, APP, "f:ports", HTTP_PORT, "f:name"), "http"),
        ((*CONTAINERS, APP, "f:ports", 'k:{"containerPort":8080,"protocol":"UDP"}', "f:name"), "quic"),
        (("f:spec", "f:template", "f:metadata", "f:annotations", "f:prometheus.io/port"), "9090"),
    ],
)
def test_lookup(path: FieldPath, value: Any) -> None:
    assert lookup(DOC, path) == value
    assert not is_missing(lookup(DOC, path))


@pytest.mark.parametrize(
    "path",
    [
        (*CONTAINERS, APP, "f:livenessProbe"),
        (*CONTAINERS, 'k:{"name":"ghost"}'),
        (*CONTAINERS, 'k:{"name":"ghost"}', "f:image"),
        (*CONTAINERS, APP, "f:env", 'k:{"name":"C"}', "f:value"),
        (*CONTAINERS, APP, "f:ports", 'k:{"containerPort":9090,"protocol":"TCP"}'),
        ("f:spec", "f:template", 'k:{"name":"app"}'),  # a key where there is no list
        ((*CONTAINERS, APP, "f:readinessProbe", "f:httpGet", "f:path", "f:deeper")),  # below a scalar
        ("spec",),  # not fieldsV1 notation
    ],
)
def test_lookup_missing(path: FieldPath) -> None:
    assert is_missing(lookup(DOC, path))


def test_missing_is_not_none_or_empty() -> None:
    values: list[Any] = [None, "", 0, {}, []]
    assert [is_missing(v) for v in values] == [False] * len(values)


def test_build_makes_keyed_lists_with_their_key_fields_sorted() -> None:
    app = container("app")
    envoy = container("envoy")
    leaves: list[tuple[FieldPath, Any]] = [
        ((*app, "f:env", key(name="LOG_LEVEL"), "f:value"), "info"),
        ((*app, "f:env", key(name="GOMAXPROCS"), "f:value"), "2"),
        ((*app, "f:readinessProbe", "f:httpGet", "f:path"), "/ready"),
        ((*app, "f:readinessProbe", "f:httpGet", "f:port"), "http"),
        (
            (*app, "f:env", key(name="OTEL_K8S_POD_NAME"), "f:valueFrom"),
            {"fieldRef": {"fieldPath": "metadata.name"}},
        ),
        ((*envoy, "f:resources", "f:limits", "f:memory"), "64Mi"),
        ((*POD_SPEC, "f:terminationGracePeriodSeconds"), 30),
        ((*TEMPLATE, "f:metadata", "f:annotations", "f:prometheus.io/scrape"), "true"),
    ]
    assert build(leaves) == {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "env": [
                                {"name": "GOMAXPROCS", "value": "2"},
                                {"name": "LOG_LEVEL", "value": "info"},
                                {
                                    "name": "OTEL_K8S_POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                            ],
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
                        },
                        {"name": "envoy", "resources": {"limits": {"memory": "64Mi"}}},
                    ],
                    "terminationGracePeriodSeconds": 30,
                },
                "metadata": {"annotations": {"prometheus.io/scrape": "true"}},
            }
        }
    }


def test_build_sorts_env_and_keeps_the_containers_in_the_order_given() -> None:
    def leaves(names: str) -> list[tuple[tuple[str, ...], str]]:
        return [((*container(c), "f:env", key(name=n), "f:value"), f"{c}-{n}") for c in "ba" for n in names]

    built = build(leaves("ZYA"))["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in built] == ["b", "a"], "the Deployment's own order: SSA would reorder it"
    assert [e["name"] for e in built[0]["env"]] == ["A", "Y", "Z"]
    assert build(leaves("AYZ")) == build(leaves("ZYA")), "the order of the variables does not matter"


def test_build_multi_key_items() -> None:
    ports = (*container("app"), "f:ports")
    built = build([((*ports, 'k:{"containerPort":9090,"protocol":"TCP"}', "f:name"), "metrics")])
    assert built["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 9090, "protocol": "TCP", "name": "metrics"}
    ]


def test_build_nothing() -> None:
    assert build([]) == {}


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (container("app"), "spec.template.spec.containers[app]"),
        (
            (*container("app"), "f:env", key(name="LOG_LEVEL")),
            "spec.template.spec.containers[app].env[LOG_LEVEL]",
        ),
        (
            (*container("app"), "f:env", key(name="LOG_LEVEL"), "f:value"),
            "spec.template.spec.containers[app].env[LOG_LEVEL].value",
        ),
        (
            (*container("app"), "f:readinessProbe", "f:httpGet", "f:path"),
            "spec.template.spec.containers[app].readinessProbe.httpGet.path",
        ),
        ((*POD_SPEC, "f:terminationGracePeriodSeconds"), "spec.template.spec.terminationGracePeriodSeconds"),
        (
            (*TEMPLATE, "f:metadata", "f:annotations", "f:prometheus.io/port"),
            "spec.template.metadata.annotations.prometheus.io/port",
        ),
        ((*container("app"), "f:ports", HTTP_PORT), "spec.template.spec.containers[app].ports[8080,TCP]"),
    ],
)
def test_human(path: FieldPath, text: str) -> None:
    assert human(path) == text


def test_live_document_is_what_lookup_reads() -> None:
    doc = live_document(view())
    assert lookup(doc, (*CONTAINERS, APP, "f:env", 'k:{"name":"LOG_LEVEL"}', "f:value")) == "info"
    assert lookup(doc, ("f:spec", "f:template", "f:spec", "f:terminationGracePeriodSeconds")) == 30
    assert (
        lookup(doc, ("f:spec", "f:template", "f:metadata", "f:annotations", "f:prometheus.io/port")) == "9090"
    )
    assert lookup(doc, (*CONTAINERS, SIDECAR, "f:image")) == "y"
