"""The policy engine, table-driven: profile + Deployment -> violations, conflicts and the one apply.

Deployments are plain dicts shaped as the API returns them (defaults filled in, managedFields in
fieldsV1 form). ``server_side_apply`` below is just enough of the apiserver to check the engine's
central promise: apply what it asks, evaluate again, and nothing is left to write.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from readiness.engine import DeploymentView, Evaluation, evaluate, matches, target
from readiness.engine.defaults import LAST_APPLIED
from readiness.models import ServiceProfileSpec

ROOT = Path(__file__).resolve().parents[2]
NS = "shop"
OPERATOR = "readiness-operator"
KUBECTL = "kubectl-client-side-apply"
SELECT = {"matchLabels": {"app": "api"}}
PORTS = (("http", 8080), ("metrics", 9090))
APP = "spec.template.spec.containers[app]"
CONTAINER_APP = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"app"}')
ENDPOINT = "http://otel-collector.observability:4317"
POD_NAME = {
    "name": "OTEL_K8S_POD_NAME",
    "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
}
OURS = "k8s.namespace.name=shop,k8s.deployment.name=api,k8s.pod.name=$(OTEL_K8S_POD_NAME)"
FieldPath = tuple[str, ...]


# ---- Deployments as the API returns them ----


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


def fields_v1(obj: Mapping[str, Any], *, dots: bool, depth: int = 0) -> dict[str, Any]:
    """fieldsV1 of ``obj``. List items always own themselves ("."); with ``dots`` nested structs too,
    as Update entries record them; an Apply entry has "." on list items only."""
    out: dict[str, Any] = {}
    for name, value in obj.items():
        if isinstance(value, Mapping) and value:
            inner = fields_v1(value, dots=dots, depth=depth + 1)
            out[f"f:{name}"] = {".": {}, **inner} if dots and depth > 0 else inner
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            out[f"f:{name}"] = {item_key(v): {".": {}, **fields_v1(v, dots=dots, depth=2)} for v in value}
        else:
            out[f"f:{name}"] = {}
    return out


def ctr(name: str = "app", *, ports: tuple[tuple[str, int], ...] = PORTS, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": f"registry.example/shop/{name}:1.0",
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports],
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        **fields,
    }


def deployment(
    *containers: dict[str, Any],
    labels: dict[str, str] | None = None,
    grace: int = 30,
    annotations: dict[str, str] | None = None,
    init_containers: list[dict[str, Any]] | None = None,
    creator: str | None = KUBECTL,
) -> dict[str, Any]:
    """An apps/v1 Deployment created by ``creator`` (who owns every field it holds, defaults too)."""
    labels = {"app": "api"} if labels is None else labels
    template_meta: dict[str, Any] = {"labels": dict(labels)}
    if annotations:
        template_meta["annotations"] = dict(annotations)
    pod: dict[str, Any] = {
        "containers": list(containers) or [ctr()],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "terminationGracePeriodSeconds": grace,
    }
    if init_containers:
        pod["initContainers"] = init_containers
    spec = {
        "replicas": 2,
        "selector": {"matchLabels": dict(labels)},
        "template": {"metadata": template_meta, "spec": pod},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    }
    return with_creator(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "api",
                "namespace": NS,
                "uid": "uid-api",
                "generation": 1,
                "resourceVersion": "1000",
                "labels": dict(labels),
            },
            "spec": spec,
        },
        creator,
    )


def with_creator(body: dict[str, Any], creator: str | None) -> dict[str, Any]:
    """Add what the apiserver and the Deployment controller add: annotations, status, managedFields."""
    meta = body["metadata"]
    meta.setdefault("annotations", {})["deployment.kubernetes.io/revision"] = "1"
    replicas = body["spec"].get("replicas", 1)
    body["status"] = {
        "observedGeneration": meta["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
    }
    managed: list[dict[str, Any]] = []
    if creator is not None:
        owned = {"metadata": {"labels": meta.get("labels", {})}, "spec": body["spec"]}
        managed.append(
            {
                "manager": creator,
                "operation": "Update",
                "apiVersion": "apps/v1",
                "fieldsV1": fields_v1(owned, dots=True),
            }
        )
    managed += [
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "fieldsV1": {
                "f:metadata": {"f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}}}
            },
        },
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "subresource": "status",
            "fieldsV1": {"f:status": fields_v1(body["status"], dots=True, depth=1)},
        },
    ]
    meta["managedFields"] = managed
    return body


def owner(manager: str, *path: str) -> dict[str, Any]:
    """A managedFields Update entry for ``manager`` owning the field at ``path``."""
    node: dict[str, Any] = {}
    for element in reversed(path):
        node = {element: node}
    return {"manager": manager, "operation": "Update", "apiVersion": "apps/v1", "fieldsV1": node}


def profile(**sections: Any) -> ServiceProfileSpec:
    return ServiceProfileSpec.model_validate({"selector": SELECT, **sections})


def run(spec: ServiceProfileSpec, body: Mapping[str, Any]) -> Evaluation:
    return evaluate(spec, DeploymentView.from_body(body))


# ---- Just enough server-side apply ----

ABSENT = object()
PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
CANONICAL = {"0.1": "100m", "0.25": "250m", "1024Mi": "1Gi", "1000m": "1", "2000m": "2", "0.5": "500m"}


def paths(fields: Mapping[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
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
    return len(path) >= 2 and path[-2].startswith("k:") and path[-1][2:] in json.loads(path[-2][2:])


def merge(live: Any, patch: Any) -> Any:
    """Maps merge; containers and env (lists of named items) merge item by item by name."""
    if isinstance(live, Mapping) and isinstance(patch, Mapping):
        out = dict(live)
        for k, v in patch.items():
            out[k] = merge(live[k], v) if k in live else copy.deepcopy(v)
        return out
    if isinstance(live, list) and isinstance(patch, list) and all(isinstance(p, Mapping) for p in patch):
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


def differs(live: Any, apply: Mapping[str, Any], path: FieldPath) -> bool:
    have, want = value_at(live, path), value_at(apply, path)
    if have is ABSENT:
        return False
    if "f:resources" in path:
        return bool(CANONICAL.get(str(have), str(have)) != CANONICAL.get(str(want), str(want)))
    return bool(have != want)


def server_side_apply(live: Mapping[str, Any], apply: Mapping[str, Any], *, force: bool) -> dict[str, Any]:
    """What the apiserver holds after our apply under field manager readiness-operator.

    Refuses (AssertionError) to change a field another manager owns unless forced; forcing moves
    the field to us. Fields we applied last time and not this time are removed unless someone else
    owns them (with the structs that held only them). Records our Apply entry.
    """
    body = copy.deepcopy(dict(live))
    meta = body["metadata"]
    applied = fields_v1({"spec": apply["spec"]} if "spec" in apply else {}, dots=False)
    mine = paths(applied)
    before: set[FieldPath] = set()
    entries: list[dict[str, Any]] = []
    for entry in meta["managedFields"]:
        theirs = paths(entry["fieldsV1"])
        if entry["manager"] == OPERATOR:
            before |= theirs if entry["operation"] == "Apply" else set()
            continue
        taken = set()
        if not entry.get("subresource"):
            taken = {p for p in mine & theirs if not p[-1].startswith("k:") and differs(body, apply, p)}
            assert force or not taken, f"the apiserver would refuse: {entry['manager']} owns {sorted(taken)}"
        if theirs - taken:
            entries.append({**entry, "fieldsV1": unpaths(theirs - taken)} if taken else entry)
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
        meta["generation"] += 1
    meta["managedFields"] = [
        *entries,
        {"manager": OPERATOR, "operation": "Apply", "apiVersion": "apps/v1", "fieldsV1": applied},
    ]
    return body


def converge(spec: ServiceProfileSpec, body: dict[str, Any]) -> tuple[Evaluation, dict[str, Any]]:
    """Evaluate, apply what the engine asks; return the first verdict and the resulting Deployment."""
    first = run(spec, body)
    assert first.apply is not None
    return first, server_side_apply(body, first.apply, force=first.force)


def containers(ev: Evaluation) -> dict[str, dict[str, Any]]:
    assert ev.apply is not None
    return {c["name"]: c for c in ev.apply["spec"]["template"]["spec"]["containers"]}


def env(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def checks(ev: Evaluation) -> list[str]:
    return [v.check for v in ev.violations]


def leaves(doc: Any, prefix: str = "") -> set[str]:
    """Every leaf of an apply body as a human path (list items by name)."""
    found: set[str] = set()
    if isinstance(doc, Mapping) and doc:
        for k, v in doc.items():
            found |= leaves(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(doc, list) and doc and all(isinstance(i, Mapping) and "name" in i for i in doc):
        for i in doc:
            found |= leaves({k: v for k, v in i.items() if k != "name"}, f"{prefix}[{i['name']}]")
    else:
        found.add(prefix)
    return found


def test_the_helper_refuses_what_the_apiserver_refuses() -> None:
    body = deployment(ctr(env=[{"name": "LOG_LEVEL", "value": "debug"}]))
    apply = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "app", "env": [{"name": "LOG_LEVEL", "value": "info"}]}]}
            }
        }
    }
    with pytest.raises(AssertionError, match="kubectl-client-side-apply owns"):
        server_side_apply(body, apply, force=False)
    taken = server_side_apply(body, apply, force=True)
    assert env(taken["spec"]["template"]["spec"]["containers"][0]) == {"LOG_LEVEL": "info"}
    kubectl = next(m for m in taken["metadata"]["managedFields"] if m["manager"] == KUBECTL)
    value = (*CONTAINER_APP, "f:env", 'k:{"name":"LOG_LEVEL"}', "f:value")
    assert value not in paths(kubectl["fieldsV1"]), "forcing moves the field to us"
    assert value[:-1] in paths(kubectl["fieldsV1"]), "the item itself stays theirs too"


def test_the_fields_recorded_for_our_apply() -> None:
    apply = {
        "spec": {
            "template": {
                "metadata": {"annotations": {"prometheus.io/scrape": "true"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "env": [{"name": "LOG_LEVEL", "value": "info"}],
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
                        }
                    ]
                },
            }
        }
    }
    assert fields_v1(apply, dots=False) == {
        "f:spec": {
            "f:template": {
                "f:metadata": {"f:annotations": {"f:prometheus.io/scrape": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"app"}': {
                            ".": {},
                            "f:name": {},
                            "f:env": {'k:{"name":"LOG_LEVEL"}': {".": {}, "f:name": {}, "f:value": {}}},
                            "f:readinessProbe": {"f:httpGet": {"f:path": {}, "f:port": {}}},
                        }
                    }
                },
            }
        }
    }
    owned = paths(fields_v1(apply, dots=False))
    assert unpaths(owned) == fields_v1(apply, dots=False)
    assert (*CONTAINER_APP, "f:readinessProbe", "f:httpGet", "f:path") in owned
    assert CONTAINER_APP in owned, "a list item owns itself"


# ---- Each section: its violations and exactly the fields it applies ----


def app(**fields: Any) -> dict[str, Any]:
    return {"name": "app", **fields}


def pod(
    *containers: dict[str, Any], grace: int | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    template: dict[str, Any] = {}
    if annotations:
        template["metadata"] = {"annotations": annotations}
    if containers or grace is not None:
        template["spec"] = {}
    if containers:
        template["spec"]["containers"] = list(containers)
    if grace is not None:
        template["spec"]["terminationGracePeriodSeconds"] = grace
    return {"template": template}


def env_list(*pairs: tuple[str, str] | dict[str, Any]) -> list[dict[str, Any]]:
    return [p if isinstance(p, dict) else {"name": p[0], "value": p[1]} for p in pairs]


GRPC = ctr(ports=(("grpc", 50051), ("metrics", 9090)))
LIMITED = ctr(resources={"limits": {"memory": "1Gi", "cpu": "1500m"}})
TRACING_ENV = env_list(
    ("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    POD_NAME,
    ("OTEL_RESOURCE_ATTRIBUTES", OURS),
    ("OTEL_SERVICE_NAME", "api"),
    ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
)

SECTIONS: list[Any] = [
    pytest.param(
        {
            "probes": {
                "port": "http",
                "readiness": {"path": "/ready", "periodSeconds": 5, "failureThreshold": 3},
            }
        },
        ctr(),
        ["probes.readiness.missing"],
        pod(
            app(
                readinessProbe={
                    "httpGet": {"path": "/ready", "port": "http"},
                    "periodSeconds": 5,
                    "failureThreshold": 3,
                }
            )
        ),
        id="probe-httpGet-port-name",
    ),
    pytest.param(
        {"probes": {"port": 8080, "liveness": {"path": "/healthz"}}},
        ctr(),
        ["probes.liveness.missing"],
        pod(app(livenessProbe={"httpGet": {"path": "/healthz", "port": 8080}})),
        id="probe-httpGet-port-number",
    ),
    pytest.param(
        {"probes": {"port": "grpc", "startup": {"type": "grpc", "failureThreshold": 30}}},
        GRPC,
        ["probes.startup.missing"],
        pod(app(startupProbe={"grpc": {"port": 50051}, "failureThreshold": 30})),
        id="probe-grpc-port-name-resolved-to-number",
    ),
    pytest.param(
        {"probes": {"port": 50051, "readiness": {"type": "grpc", "periodSeconds": 5}}},
        GRPC,
        ["probes.readiness.missing"],
        pod(app(readinessProbe={"grpc": {"port": 50051}, "periodSeconds": 5})),
        id="probe-grpc-port-number",
    ),
    pytest.param(
        {
            "probes": {
                "port": "http",
                "liveness": {"type": "tcpSocket", "initialDelaySeconds": 5, "timeoutSeconds": 2},
            }
        },
        ctr(),
        ["probes.liveness.missing"],
        pod(
            app(livenessProbe={"tcpSocket": {"port": "http"}, "initialDelaySeconds": 5, "timeoutSeconds": 2})
        ),
        id="probe-tcpSocket-port-name",
    ),
    pytest.param(
        {"probes": {"port": 8080, "readiness": {"type": "tcpSocket"}}},
        ctr(),
        ["probes.readiness.missing"],
        pod(app(readinessProbe={"tcpSocket": {"port": 8080}})),
        id="probe-tcpSocket-port-number",
    ),
    pytest.param(
        {
            "probes": {
                "port": "http",
                "liveness": {"path": "/healthz", "periodSeconds": 10},
                "readiness": {"path": "/metrics-ready", "port": "metrics"},
                "startup": {"type": "tcpSocket", "port": 9090, "failureThreshold": 30},
            }
        },
        ctr(),
        ["probes.liveness.missing", "probes.readiness.missing", "probes.startup.missing"],
        pod(
            app(
                livenessProbe={"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
                readinessProbe={"httpGet": {"path": "/metrics-ready", "port": "metrics"}},
                startupProbe={"tcpSocket": {"port": 9090}, "failureThreshold": 30},
            )
        ),
        id="probes-all-three-with-per-probe-ports",
    ),
    pytest.param(
        {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}},
        ctr(),
        [
            "resources.requests.cpu.missing",
            "resources.requests.memory.missing",
            "resources.limits.memory.missing",
        ],
        pod(app(resources={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}})),
        id="resources",
    ),
    pytest.param(
        {"resources": {"limits": {"cpu": 1, "memory": 268435456}}},
        ctr(),
        ["resources.limits.cpu.missing", "resources.limits.memory.missing"],
        pod(app(resources={"limits": {"cpu": "1", "memory": "268435456"}})),
        id="resources-integers-as-quantity-strings",
    ),
    pytest.param(
        # kubectl holds the defaulted grace period: only Force takes it (see the Report tests).
        {"shutdown": {"terminationGracePeriodSeconds": 60}, "conflictPolicy": "Force"},
        ctr(),
        ["shutdown.grace.too-short"],
        pod(grace=60),
        id="shutdown-grace",
    ),
    pytest.param(
        {"shutdown": {"preStopSleepSeconds": 5}},
        ctr(),
        ["shutdown.prestop.missing"],
        pod(app(lifecycle={"preStop": {"sleep": {"seconds": 5}}})),
        id="shutdown-prestop-sleep",
    ),
    pytest.param(
        {
            "shutdown": {"terminationGracePeriodSeconds": 45, "preStopSleepSeconds": 10},
            "conflictPolicy": "Force",
        },
        ctr(),
        ["shutdown.prestop.missing", "shutdown.grace.too-short"],
        pod(app(lifecycle={"preStop": {"sleep": {"seconds": 10}}}), grace=45),
        id="shutdown-both",
    ),
    pytest.param(
        {"metrics": {"port": "metrics"}},
        ctr(),
        ["metrics.annotations.missing"],
        pod(
            annotations={
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
                "prometheus.io/path": "/metrics",
                "prometheus.io/scheme": "http",
            }
        ),
        id="metrics-port-name-resolved-to-number",
    ),
    pytest.param(
        {"metrics": {"port": 9090, "path": "/prom", "scheme": "https"}},
        ctr(),
        ["metrics.annotations.missing"],
        pod(
            annotations={
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
                "prometheus.io/path": "/prom",
                "prometheus.io/scheme": "https",
            }
        ),
        id="metrics-port-number",
    ),
    pytest.param(
        {"tracing": {"endpoint": ENDPOINT}},
        ctr(),
        ["tracing.env.missing"],
        pod(app(env=TRACING_ENV)),
        id="tracing-defaults",
    ),
    pytest.param(
        {
            "tracing": {
                "endpoint": "https://collector:4318",
                "protocol": "http/protobuf",
                "sampler": "traceidratio",
                "samplerArg": "0.25",
                "serviceName": "checkout",
                "propagators": ["tracecontext", "baggage", "b3"],
            }
        },
        ctr(),
        ["tracing.env.missing"],
        pod(
            app(
                env=env_list(
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                    POD_NAME,
                    ("OTEL_PROPAGATORS", "tracecontext,baggage,b3"),
                    ("OTEL_RESOURCE_ATTRIBUTES", OURS),
                    ("OTEL_SERVICE_NAME", "checkout"),
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
                )
            )
        ),
        id="tracing-everything",
    ),
    pytest.param(
        {"runtime": {"go": {"memoryLimitRatio": 0.5}}},
        LIMITED,
        ["runtime.go.env.missing"],
        pod(app(env=env_list(("GOMAXPROCS", "2"), ("GOMEMLIMIT", "536870912")))),
        id="runtime-go",
    ),
    pytest.param(
        {"logging": {"format": "json", "level": "info"}},
        ctr(),
        ["logging.env.missing"],
        pod(app(env=env_list(("LOG_FORMAT", "json"), ("LOG_LEVEL", "info")))),
        id="logging",
    ),
    pytest.param(
        {"logging": {"level": "warn"}},
        ctr(),
        ["logging.env.missing"],
        pod(app(env=env_list(("LOG_LEVEL", "warn")))),
        id="logging-level-only",
    ),
]


@pytest.mark.parametrize(("sections", "container", "expected_checks", "expected_spec"), SECTIONS)
def test_each_section(
    sections: dict[str, Any],
    container: dict[str, Any],
    expected_checks: list[str],
    expected_spec: dict[str, Any],
) -> None:
    ev = run(profile(**sections), deployment(container))
    assert checks(ev) == expected_checks
    assert all(v.message for v in ev.violations)
    assert not ev.conflicts
    assert not ev.problems
    assert not ev.compliant
    assert ev.apply is not None
    assert dict(ev.apply) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": NS},
        "spec": expected_spec,
    }, "only the fields the profile declares"
    assert set(ev.changes) == {c.rsplit(".", 1)[0] for c in expected_checks}


@pytest.mark.parametrize(("sections", "container", "expected_checks", "expected_spec"), SECTIONS)
def test_each_section_is_idempotent(
    sections: dict[str, Any],
    container: dict[str, Any],
    expected_checks: list[str],
    expected_spec: dict[str, Any],
) -> None:
    spec = profile(**sections)
    _, after = converge(spec, deployment(container))
    assert after["metadata"]["generation"] == 2, "one write, one new generation"
    second = run(spec, after)
    assert second.apply is None
    assert second.violations == ()
    assert second.conflicts == ()
    assert second.problems == ()
    assert second.compliant
    assert run(spec, after) == second, "deterministic"


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ("probes.readiness.missing", f"{APP}.readinessProbe"),
        ("resources.limits.memory.missing", f"{APP}.resources.limits.memory"),
        ("shutdown.grace.too-short", "spec.template.spec.terminationGracePeriodSeconds"),
        ("shutdown.prestop.missing", f"{APP}.lifecycle.preStop"),
        ("metrics.annotations.missing", "spec.template.metadata.annotations"),
        ("tracing.env.missing", f"{APP}.env"),
        ("logging.env.missing", f"{APP}.env"),
    ],
)
def test_violations_name_the_deployment_field(check: str, field: str) -> None:
    spec = profile(
        probes={"port": "http", "readiness": {"path": "/ready"}},
        resources={"limits": {"memory": "256Mi"}},
        shutdown={"terminationGracePeriodSeconds": 60, "preStopSleepSeconds": 5},
        metrics={"port": "metrics"},
        tracing={"endpoint": ENDPOINT},
        logging={"level": "info"},
    )
    by_check = {v.check: v for v in run(spec, deployment()).violations}
    assert by_check[check].field == field


@pytest.mark.parametrize(
    ("container", "sections", "expected"),
    [
        (
            ctr(readinessProbe={"httpGet": {"path": "/old", "port": "http"}, **PROBE_DEFAULTS}),
            {"probes": {"port": "http", "readiness": {"path": "/ready"}}},
            (
                "probes.readiness.mismatch",
                "differs httpGet.path; the profile wants readiness probe httpGet on port http path /ready",
            ),
        ),
        (
            ctr(resources={"limits": {"memory": "128Mi"}}),
            {"resources": {"limits": {"memory": "256Mi"}}},
            ("resources.limits.memory.mismatch", "differs memory; the profile wants limits.memory=256Mi"),
        ),
        (
            ctr(env=[{"name": "LOG_FORMAT", "value": "json"}]),
            {"logging": {"format": "json", "level": "info"}},
            ("logging.env.mismatch", "missing LOG_LEVEL; the profile wants LOG_FORMAT=json LOG_LEVEL=info"),
        ),
        (
            ctr(env=[{"name": "LOG_FORMAT", "value": "text"}]),
            {"logging": {"format": "json"}},
            ("logging.env.mismatch", "differs LOG_FORMAT; the profile wants LOG_FORMAT=json"),
        ),
    ],
)
def test_a_partly_matching_field_is_a_mismatch(
    container: dict[str, Any], sections: dict[str, Any], expected: tuple[str, str]
) -> None:
    ev = run(profile(conflictPolicy="Force", **sections), deployment(container))
    assert [(v.check, v.message) for v in ev.violations] == [expected]


@pytest.mark.parametrize(
    ("live", "wanted", "check"),
    [
        (30, 60, "shutdown.grace.too-short"),
        (0, 30, "shutdown.grace.too-short"),
        (90, 60, "shutdown.grace.mismatch"),
    ],
)
def test_grace_period_violation(live: int, wanted: int, check: str) -> None:
    ev = run(
        profile(conflictPolicy="Force", shutdown={"terminationGracePeriodSeconds": wanted}),
        deployment(grace=live),
    )
    assert [(v.check, v.message) for v in ev.violations] == [
        (check, f"terminationGracePeriodSeconds is {live}; the profile wants {wanted}")
    ]


@pytest.mark.parametrize(
    ("container", "sections"),
    [
        (
            ctr(
                readinessProbe={
                    "httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"},
                    **PROBE_DEFAULTS,
                }
            ),
            {"probes": {"port": "http", "readiness": {"path": "/ready"}}},
        ),
        (
            ctr(resources={"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}}),
            {"resources": {"requests": {"cpu": "0.1"}, "limits": {"memory": "1024Mi"}}},
        ),
        (ctr(resources={"limits": {"cpu": "2"}}), {"resources": {"limits": {"cpu": 2}}}),
        (ctr(resources={"limits": {"cpu": "500m"}}), {"resources": {"limits": {"cpu": "0.5"}}}),
        (
            ctr(env=[{"name": "LOG_LEVEL", "value": "info"}, {"name": "LOG_FORMAT", "value": "json"}]),
            {"logging": {"format": "json", "level": "info"}},
        ),
        (ctr(lifecycle={"preStop": {"sleep": {"seconds": 5}}}), {"shutdown": {"preStopSleepSeconds": 5}}),
    ],
)
def test_what_already_matches_is_not_written(container: dict[str, Any], sections: dict[str, Any]) -> None:
    """Equal as the API means it (quantities, defaults), even owned by another manager: nothing to do."""
    ev = run(profile(**sections), deployment(container))
    assert ev.apply is None
    assert ev.compliant
    assert ev.violations == ()


# ---- Derived values: runtime tuning, OpenTelemetry service name and resource attributes ----


@pytest.mark.parametrize(
    ("resources", "sections", "gomemlimit", "gomaxprocs"),
    [
        ({"limits": {"memory": "256Mi", "cpu": "1500m"}}, {}, "241591910", "2"),
        ({"limits": {"memory": "1Gi"}}, {"memoryLimitRatio": 0.5}, "536870912", None),
        ({"limits": {"memory": "1G"}, "requests": {"cpu": "250m"}}, {}, "900000000", "1"),
        (
            {"limits": {"memory": "512Mi", "cpu": "2"}, "requests": {"cpu": "500m"}},
            {"memoryLimitRatio": 0.75},
            "402653184",
            "2",
        ),
        ({"limits": {"memory": "100Mi", "cpu": "4"}}, {"memoryLimitRatio": 1}, "104857600", "4"),
        ({"limits": {"memory": "1Gi", "cpu": "2001m"}}, {"memoryLimitRatio": 0.95}, "1020054732", "3"),
    ],
)
def test_go_runtime_from_the_live_limits(
    resources: dict[str, Any], sections: dict[str, Any], gomemlimit: str, gomaxprocs: str | None
) -> None:
    ev = run(profile(runtime={"go": sections}), deployment(ctr(resources=resources)))
    values = env(containers(ev)["app"])
    assert values.get("GOMEMLIMIT") == gomemlimit
    assert values["GOMEMLIMIT"].isdigit(), "a plain byte count is a valid GOMEMLIMIT literal"
    assert values.get("GOMAXPROCS") == gomaxprocs
    assert set(values) <= {"GOMEMLIMIT", "GOMAXPROCS"}


@pytest.mark.parametrize(
    ("live", "declared", "gomemlimit", "gomaxprocs"),
    [
        ({}, {"limits": {"memory": "512Mi"}}, "483183820", None),
        ({"requests": {"cpu": "3"}}, {"limits": {"memory": "512Mi"}}, "483183820", "3"),
        (
            {"limits": {"memory": "1Gi", "cpu": "1"}},
            {"limits": {"memory": "512Mi", "cpu": "1500m"}},
            "483183820",
            "2",
        ),
        ({"limits": {"memory": "1Gi"}}, {"requests": {"cpu": "2500m"}}, "966367641", "3"),
        (
            {"limits": {"memory": "1Gi"}, "requests": {"cpu": "100m"}},
            {"requests": {"cpu": "2"}},
            "966367641",
            "2",
        ),
    ],
)
def test_go_runtime_follows_the_limits_the_profile_declares(
    live: dict[str, Any], declared: dict[str, Any], gomemlimit: str, gomaxprocs: str | None
) -> None:
    """GOMAXPROCS from the CPU limit, else the request; the profile's own values first (they are applied too)."""
    ev = run(profile(resources=declared, runtime={"go": {}}), deployment(ctr(resources=live), creator=None))
    values = env(containers(ev)["app"])
    assert (values.get("GOMEMLIMIT"), values.get("GOMAXPROCS")) == (gomemlimit, gomaxprocs)


@pytest.mark.parametrize(("resources", "gomaxprocs"), [({}, None), ({"requests": {"cpu": "1200m"}}, "2")])
def test_go_runtime_without_a_memory_limit(resources: dict[str, Any], gomaxprocs: str | None) -> None:
    ev = run(profile(runtime={"go": {}}), deployment(ctr(resources=resources)))
    assert [(v.check, v.field) for v in ev.violations][:1] == [
        ("runtime.go.memory-limit.missing", f"{APP}.resources.limits.memory")
    ]
    assert not ev.compliant, "no write can fix it: the team must declare a memory limit"
    if gomaxprocs is None:
        assert ev.apply is None
    else:
        assert env(containers(ev)["app"]) == {"GOMAXPROCS": gomaxprocs}


@pytest.mark.parametrize(
    ("labels", "service_name", "expected"),
    [
        ({"app": "api", "app.kubernetes.io/name": "checkout"}, None, "checkout"),
        ({"app": "api"}, None, "api"),
        ({"app": "api", "app.kubernetes.io/name": "checkout"}, "storefront", "storefront"),
        ({"app": "api"}, "storefront", "storefront"),
    ],
)
def test_default_service_name(labels: dict[str, str], service_name: str | None, expected: str) -> None:
    tracing: dict[str, Any] = {"endpoint": ENDPOINT}
    if service_name:
        tracing["serviceName"] = service_name
    ev = run(profile(tracing=tracing), deployment(labels=labels))
    assert env(containers(ev)["app"])["OTEL_SERVICE_NAME"] == expected


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (None, OURS),
        ("team=checkout", f"team=checkout,{OURS}"),
        ("team=checkout,tier=api", f"team=checkout,tier=api,{OURS}"),
        ("team=checkout,k8s.deployment.name=old,k8s.pod.name=x", f"team=checkout,{OURS}"),
        (f"team=checkout,{OURS}", f"team=checkout,{OURS}"),
    ],
    ids=["unset", "user-value", "two-user-values", "stale-k8s-attributes-replaced", "already-appended"],
)
def test_resource_attributes_are_appended_to_the_users_value(user: str | None, expected: str) -> None:
    user_env = [{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": user}] if user is not None else []
    ev = run(profile(conflictPolicy="Force", tracing={"endpoint": ENDPOINT}), deployment(ctr(env=user_env)))
    values = env(containers(ev)["app"])
    assert values["OTEL_RESOURCE_ATTRIBUTES"] == expected
    assert values["OTEL_K8S_POD_NAME"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}
    assert ev.force is True


@pytest.mark.parametrize("user", ["team=checkout", "team=checkout,k8s.pod.name=x"])
def test_appending_to_a_variable_another_manager_holds_is_a_conflict_under_report(user: str) -> None:
    """Appending changes the holder's value: Report names the holder and takes nothing."""
    body = deployment(ctr(env=[{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": user}]))
    ev = run(profile(conflictPolicy="Report", tracing={"endpoint": ENDPOINT}), body)
    assert [(c.manager, c.field) for c in ev.conflicts] == [
        (KUBECTL, f"{APP}.env[OTEL_RESOURCE_ATTRIBUTES].value")
    ]
    assert ev.force is False
    assert ev.apply is None


def test_appending_is_stable_once_applied() -> None:
    spec = profile(conflictPolicy="Force", tracing={"endpoint": ENDPOINT})
    _, after = converge(
        spec, deployment(ctr(env=[{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "team=checkout"}]))
    )
    (live,) = after["spec"]["template"]["spec"]["containers"]
    assert env(live)["OTEL_RESOURCE_ATTRIBUTES"] == f"team=checkout,{OURS}"
    assert run(spec, after).apply is None


# ---- Env is sorted; containers are merged by name ----


def test_env_is_sorted_and_the_pod_name_comes_before_its_use() -> None:
    spec = profile(
        tracing={"endpoint": ENDPOINT, "samplerArg": "0.1", "propagators": ["tracecontext"]},
        runtime={"go": {}},
        logging={"format": "json", "level": "info"},
    )
    ev = run(spec, deployment(LIMITED))
    names = [e["name"] for e in containers(ev)["app"]["env"]]
    assert names == sorted(names)
    assert set(names) == {
        "GOMAXPROCS",
        "GOMEMLIMIT",
        "LOG_FORMAT",
        "LOG_LEVEL",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_K8S_POD_NAME",
        "OTEL_PROPAGATORS",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
    }
    assert names.index("OTEL_K8S_POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES"), (
        "$(...) expands only earlier vars"
    )


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_the_apply_does_not_depend_on_the_live_env_order(order: tuple[int, int, int]) -> None:
    user = [
        {"name": "ZONE", "value": "a"},
        {"name": "LOG_FORMAT", "value": "text"},
        {"name": "APP_MODE", "value": "x"},
    ]
    spec = profile(
        conflictPolicy="Force", logging={"format": "json", "level": "info"}, tracing={"endpoint": ENDPOINT}
    )
    reference = run(spec, deployment(ctr(env=user)))
    assert run(spec, deployment(ctr(env=[user[i] for i in order]))) == reference
    assert reference.apply is not None


def test_every_container_by_default_never_init_containers() -> None:
    body = deployment(
        ctr("app"),
        ctr("worker", ports=(("http", 8081),)),
        init_containers=[ctr("migrate", ports=())],
    )
    ev = run(profile(logging={"format": "json"}), body)
    assert set(containers(ev)) == {"app", "worker"}
    assert "initContainers" not in ev.apply["spec"]["template"]["spec"]  # type: ignore[index]
    assert checks(ev) == ["logging.env.missing", "logging.env.missing"]
    assert {v.field for v in ev.violations} == {f"{APP}.env", "spec.template.spec.containers[worker].env"}


def test_only_the_named_containers() -> None:
    body = deployment(ctr("app"), ctr("envoy", ports=(("admin", 9901),)))
    ev = run(
        profile(
            containers=["app"],
            probes={"port": "http", "readiness": {"path": "/ready"}},
            logging={"format": "json"},
        ),
        body,
    )
    assert set(containers(ev)) == {"app"}, "the sidecar is left alone (and needs no http port)"
    _, after = converge(profile(containers=["app"], logging={"format": "json"}), body)
    envoy = after["spec"]["template"]["spec"]["containers"][1]
    assert envoy == body["spec"]["template"]["spec"]["containers"][1]


def test_metrics_port_may_be_on_any_managed_container() -> None:
    body = deployment(ctr("app", ports=(("http", 8080),)), ctr("exporter", ports=(("metrics", 9102),)))
    ev = run(profile(metrics={"port": "metrics"}), body)
    assert ev.apply is not None
    assert ev.apply["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9102"


def test_the_apply_keeps_the_live_container_order() -> None:
    body = deployment(ctr("web"), ctr("envoy", ports=(("admin", 9901),)))
    ev = run(profile(logging={"format": "json"}), body)
    assert list(containers(ev)) == ["web", "envoy"]


# ---- Ownership: another manager's fields ----

METRICS = {"port": "metrics"}
CONFLICTS: list[Any] = [
    pytest.param(
        {
            "container": ctr(
                readinessProbe={
                    "httpGet": {"path": "/mine", "port": "http", "scheme": "HTTP"},
                    **PROBE_DEFAULTS,
                }
            )
        },
        {"probes": {"port": "http", "readiness": {"path": "/ready"}}, "metrics": METRICS},
        f"{APP}.readinessProbe.httpGet.path",
        f"{APP}.readinessProbe",
        "probes.readiness.mismatch",
        id="probe-path",
    ),
    pytest.param(
        {
            "container": ctr(
                readinessProbe={
                    "httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"},
                    **PROBE_DEFAULTS,
                    "periodSeconds": 15,
                }
            )
        },
        {"probes": {"port": "http", "readiness": {"path": "/ready", "periodSeconds": 5}}, "metrics": METRICS},
        f"{APP}.readinessProbe.periodSeconds",
        f"{APP}.readinessProbe",
        "probes.readiness.mismatch",
        id="probe-period-not-the-default",
    ),
    pytest.param(
        {"container": ctr(resources={"limits": {"memory": "512Mi"}})},
        {"resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}, "metrics": METRICS},
        f"{APP}.resources.limits.memory",
        f"{APP}.resources.limits.memory",
        "resources.limits.memory.mismatch",
        id="memory-limit",
    ),
    pytest.param(
        {"container": ctr(env=[{"name": "LOG_LEVEL", "value": "debug"}])},
        {"logging": {"level": "info"}, "metrics": METRICS},
        f"{APP}.env[LOG_LEVEL].value",
        f"{APP}.env",
        "logging.env.mismatch",
        id="declared-env",
    ),
    pytest.param(
        {"container": ctr(env=[{"name": "OTEL_SERVICE_NAME", "value": "mine"}])},
        {"tracing": {"endpoint": ENDPOINT, "serviceName": "checkout"}, "metrics": METRICS},
        f"{APP}.env[OTEL_SERVICE_NAME].value",
        f"{APP}.env",
        "tracing.env.mismatch",
        id="declared-service-name",
    ),
    pytest.param(
        {"annotations": {"prometheus.io/port": "8080"}},
        {"metrics": METRICS, "logging": {"format": "json"}},
        "spec.template.metadata.annotations.prometheus.io/port",
        "spec.template.metadata",
        "metrics.annotations.mismatch",
        id="scrape-annotation",
    ),
    pytest.param(
        {"grace": 10},
        {"shutdown": {"terminationGracePeriodSeconds": 60}, "metrics": METRICS},
        "spec.template.spec.terminationGracePeriodSeconds",
        "spec.template.spec.terminationGracePeriodSeconds",
        "shutdown.grace.too-short",
        id="grace-not-the-default",
    ),
]


def make(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(kwargs)
    return deployment(kwargs.pop("container", ctr()), **kwargs)


@pytest.mark.parametrize(("live", "sections", "field", "fragment", "check"), CONFLICTS)
def test_report_leaves_another_managers_field_alone(
    live: dict[str, Any], sections: dict[str, Any], field: str, fragment: str, check: str
) -> None:
    ev = run(profile(conflictPolicy="Report", **sections), make(live))
    assert [(c.manager, c.field) for c in ev.conflicts] == [(KUBECTL, field)]
    assert check in checks(ev), "still reported as a violation"
    assert ev.force is False
    assert ev.apply is not None, "the rest of the profile is applied"
    assert not {leaf for leaf in leaves(ev.apply["spec"], "spec") if leaf.startswith(fragment)}, (
        "that fragment left out"
    )
    after = server_side_apply(make(live), ev.apply, force=False)  # the apiserver accepts it unforced
    again = run(profile(conflictPolicy="Report", **sections), after)
    assert again.apply is None
    assert again.conflicts == ev.conflicts
    assert not again.compliant


@pytest.mark.parametrize(("live", "sections", "field", "fragment", "check"), CONFLICTS)
def test_force_takes_another_managers_field(
    live: dict[str, Any], sections: dict[str, Any], field: str, fragment: str, check: str
) -> None:
    spec = profile(conflictPolicy="Force", **sections)
    ev = run(spec, make(live))
    assert ev.conflicts == ()
    assert check in checks(ev)
    assert ev.force is True
    assert ev.apply is not None
    assert {leaf for leaf in leaves(ev.apply["spec"], "spec") if leaf.startswith(fragment)}, (
        "that fragment included"
    )
    after = server_side_apply(make(live), ev.apply, force=True)
    again = run(spec, after)
    assert again.apply is None
    assert again.compliant


def test_only_what_a_managers_fields_list_is_theirs() -> None:
    body = deployment(ctr(env=[{"name": "LOG_LEVEL", "value": "debug"}]), creator=None)
    body["metadata"]["managedFields"].insert(
        0,
        {
            "manager": KUBECTL,
            "operation": "Update",
            "fieldsV1": {
                "f:spec": {
                    "f:template": {
                        "f:spec": {
                            "f:containers": {'k:{"name":"app"}': {".": {}, "f:name": {}, "f:image": {}}}
                        }
                    }
                }
            },
        },
    )
    spec = profile(conflictPolicy="Report", logging={"level": "info"})
    ev = run(spec, body)
    assert ev.conflicts == (), "nobody owns env[LOG_LEVEL]: the apiserver lets us set it"
    assert env(containers(ev)["app"]) == {"LOG_LEVEL": "info"}
    assert ev.force is False
    body["metadata"]["managedFields"].append(
        owner("kubectl-edit", *CONTAINER_APP, "f:env", 'k:{"name":"LOG_LEVEL"}', "f:value")
    )
    assert [(c.manager, c.field) for c in run(spec, body).conflicts] == [
        ("kubectl-edit", f"{APP}.env[LOG_LEVEL].value")
    ]


GRACE_60 = {"shutdown": {"terminationGracePeriodSeconds": 60}}
PROBE_TIMINGS = {
    "probes": {
        "port": "http",
        "readiness": {"path": "/ready", "periodSeconds": 5, "failureThreshold": 5, "timeoutSeconds": 2},
    }
}
DEFAULTED_PROBE = ctr(
    readinessProbe={"httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"}, **PROBE_DEFAULTS}
)


def last_applied(body: dict[str, Any], pod: dict[str, Any] | str) -> dict[str, Any]:
    """``body`` as client-side apply leaves it: its manifest's pod spec (or raw text) recorded."""
    raw = pod if isinstance(pod, str) else json.dumps({"spec": {"template": {"spec": pod}}})
    body["metadata"].setdefault("annotations", {})[LAST_APPLIED] = raw
    return body


def ssa_created(live: dict[str, Any]) -> dict[str, Any]:
    body = make({**live, "creator": None})
    body["metadata"]["managedFields"] = [
        {
            "manager": "flux",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "fieldsV1": fields_v1({"spec": body["spec"]}, dots=True),
        }
    ]
    return body


# Who holds the defaulted value, and what Report does with it (docs/ownership-and-gitops.md, "Field ownership").
OWNERSHIP = [
    pytest.param(
        lambda: make({"grace": 30, "creator": "kubectl-create"}),
        GRACE_60,
        ["terminationGracePeriodSeconds"],
        id="create-grace-default",
    ),
    pytest.param(
        lambda: make({"grace": 30, "creator": "helm"}),
        GRACE_60,
        ["terminationGracePeriodSeconds"],
        id="helm-grace-default",
    ),
    pytest.param(
        lambda: last_applied(make({"grace": 30}), {"containers": [{"name": "app", "image": "x"}]}),
        GRACE_60,
        ["terminationGracePeriodSeconds"],
        id="client-side-apply-not-named",
    ),
    pytest.param(
        lambda: make({"container": DEFAULTED_PROBE, "creator": "argocd-controller"}),
        PROBE_TIMINGS,
        [
            "containers[app].readinessProbe.periodSeconds",
            "containers[app].readinessProbe.timeoutSeconds",
            "containers[app].readinessProbe.failureThreshold",
        ],
        id="argocd-probe-timings",
    ),
    pytest.param(
        lambda: last_applied(make({"grace": 30}), {"terminationGracePeriodSeconds": 30}),
        GRACE_60,
        [],
        id="client-side-apply-named-default",
    ),
    pytest.param(
        lambda: last_applied(
            make({"container": DEFAULTED_PROBE}),
            {"containers": [{"name": "app", "readinessProbe": {"periodSeconds": 10}}]},
        ),
        PROBE_TIMINGS,
        [],
        id="client-side-apply-named-probe-timing",
    ),
    pytest.param(lambda: make({"grace": 45, "creator": "helm"}), GRACE_60, [], id="helm-not-a-default"),
    pytest.param(
        lambda: last_applied(make({"grace": 30}), "{not json"), GRACE_60, [], id="unreadable-last-applied"
    ),
    pytest.param(lambda: ssa_created({"grace": 30}), GRACE_60, [], id="server-side-applier-default"),
]


@pytest.mark.parametrize(("body", "sections", "taken"), OWNERSHIP)
def test_report_takes_only_defaults_nobody_chose(
    body: Any, sections: dict[str, Any], taken: list[str]
) -> None:
    """A field an Update-operation manager holds at its API default, which its last-applied
    configuration (if any) does not name, is a default nobody chose: Report takes exactly those
    fields, forced under the object's resourceVersion, and the result is compliant. Any other
    held value is its holder's choice: Conflicted, nothing forced. Force takes either."""
    live = body()
    report = run(profile(conflictPolicy="Report", **sections), live)
    assert sorted(t.field for t in report.taken) == sorted(taken)
    if taken:
        assert (report.conflicts, report.force) == ((), True)
        assert report.apply is not None
        assert report.apply["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
        assert "API default" in target(DeploymentView.from_body(live), report).message
        after = server_side_apply(live, report.apply, force=True)
        again = run(profile(conflictPolicy="Report", **sections), after)
        assert (again.apply, again.compliant) == (None, True)
    else:
        assert report.conflicts
        assert report.force is False
        assert "resourceVersion" not in (report.apply or {}).get("metadata", {})
        force = profile(conflictPolicy="Force", **sections)
        _, after = converge(force, live)
        assert run(force, after).apply is None
    unheld = make({"grace": 30, "container": DEFAULTED_PROBE, "creator": None})
    free = run(profile(conflictPolicy="Report", **sections), unheld)
    assert (free.conflicts, free.force, free.taken) == ((), False, ())
    assert free.apply is not None
    server_side_apply(unheld, free.apply, force=False)


@pytest.mark.parametrize("policy", ["Report", "Force"])
@pytest.mark.parametrize(
    ("container", "sections", "field"),
    [
        pytest.param(
            ctr(livenessProbe={"exec": {"command": ["/bin/check"]}, **PROBE_DEFAULTS}),
            {"probes": {"port": "http", "liveness": {"path": "/healthz"}}},
            f"{APP}.livenessProbe.exec",
            id="probe-exec",
        ),
        pytest.param(
            ctr(readinessProbe={"tcpSocket": {"port": "http"}, **PROBE_DEFAULTS}),
            {"probes": {"port": "http", "readiness": {"path": "/ready"}}},
            f"{APP}.readinessProbe.tcpSocket",
            id="probe-tcpSocket",
        ),
        pytest.param(
            ctr(lifecycle={"preStop": {"exec": {"command": ["sleep", "5"]}}}),
            {"shutdown": {"preStopSleepSeconds": 5}},
            f"{APP}.lifecycle.preStop.exec",
            id="prestop-exec",
        ),
    ],
)
def test_another_handler_is_a_conflict_even_under_force(
    policy: str, container: dict[str, Any], sections: dict[str, Any], field: str
) -> None:
    """A probe or hook takes one handler: adding ours would make the pod template invalid."""
    ev = run(profile(conflictPolicy=policy, logging={"format": "json"}, **sections), deployment(container))
    assert [(c.manager, c.field) for c in ev.conflicts] == [(KUBECTL, field)]
    handler_field = field.rsplit(".", 1)[0]
    assert ev.apply is not None
    assert not {leaf for leaf in leaves(ev.apply["spec"], "spec") if leaf.startswith(handler_field)}
    assert {leaf for leaf in leaves(ev.apply["spec"], "spec") if leaf.startswith(f"{APP}.env")}, (
        "the rest applies"
    )
    assert not ev.compliant


def test_another_handler_alone_means_no_write() -> None:
    body = deployment(ctr(livenessProbe={"exec": {"command": ["true"]}, **PROBE_DEFAULTS}))
    ev = run(profile(conflictPolicy="Force", probes={"port": "http", "liveness": {"path": "/healthz"}}), body)
    assert ev.apply is None
    assert [c.field for c in ev.conflicts] == [f"{APP}.livenessProbe.exec"]


# ---- User values win where the profile is silent ----


@pytest.mark.parametrize("policy", ["Report", "Force"])
@pytest.mark.parametrize(
    ("user_env", "resources", "sections", "kept", "applied"),
    [
        pytest.param(
            [("OTEL_SERVICE_NAME", "mine")],
            {},
            {"tracing": {"endpoint": ENDPOINT}},
            "OTEL_SERVICE_NAME",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            id="service-name",
        ),
        pytest.param(
            [("GOMEMLIMIT", "100MiB")],
            {"limits": {"memory": "1Gi", "cpu": "2"}},
            {"runtime": {"go": {}}},
            "GOMEMLIMIT",
            "GOMAXPROCS",
            id="gomemlimit",
        ),
        pytest.param(
            [("GOMAXPROCS", "8")],
            {"limits": {"memory": "1Gi", "cpu": "2"}},
            {"runtime": {"go": {}}},
            "GOMAXPROCS",
            "GOMEMLIMIT",
            id="gomaxprocs",
        ),
        pytest.param(
            [("LOG_LEVEL", "debug")],
            {},
            {"logging": {"format": "json"}},
            "LOG_LEVEL",
            "LOG_FORMAT",
            id="log-level",
        ),
    ],
)
def test_user_values_win_where_the_profile_is_silent(
    policy: str,
    user_env: list[tuple[str, str]],
    resources: dict[str, Any],
    sections: dict[str, Any],
    kept: str,
    applied: str,
) -> None:
    body = deployment(ctr(env=env_list(*user_env), resources=resources))
    spec = profile(conflictPolicy=policy, **sections)
    ev = run(spec, body)
    values = env(containers(ev)["app"])
    assert kept not in values
    assert applied in values
    assert ev.conflicts == ()
    _, after = converge(spec, body)
    (live,) = after["spec"]["template"]["spec"]["containers"]
    assert env(live)[kept] == dict(user_env)[kept], "the user's value is untouched"
    again = run(spec, after)
    assert again.apply is None
    assert again.compliant


@pytest.mark.parametrize(
    ("change", "variable", "value"),
    [
        pytest.param(
            {"labels": {"app": "api", "app.kubernetes.io/name": "shop-api"}},
            "OTEL_SERVICE_NAME",
            "shop-api",
            id="label",
        ),
        pytest.param(
            {"container": ctr(resources={"limits": {"memory": "2Gi", "cpu": "3"}})},
            "GOMEMLIMIT",
            "1932735283",
            id="memory",
        ),
        pytest.param(
            {"container": ctr(resources={"limits": {"memory": "1Gi", "cpu": "3"}})},
            "GOMAXPROCS",
            "3",
            id="cpu",
        ),
    ],
)
def test_derived_values_we_own_follow_the_deployment(
    change: dict[str, Any], variable: str, value: str
) -> None:
    spec = profile(tracing={"endpoint": ENDPOINT}, runtime={"go": {}})
    base = {"container": ctr(resources={"limits": {"memory": "1Gi", "cpu": "1"}})}
    _, after = converge(spec, make(base))
    assert run(spec, after).apply is None
    # The team changes its own fields (labels, limits: its kubectl owns them); ours stay ours.
    changed = make({**base, **change})
    live = copy.deepcopy(after)
    live["metadata"]["labels"] = changed["metadata"]["labels"]
    (container,) = live["spec"]["template"]["spec"]["containers"]
    container["resources"] = changed["spec"]["template"]["spec"]["containers"][0]["resources"]
    ev = run(spec, live)
    assert env(containers(ev)["app"])[variable] == value
    assert ev.conflicts == ()


# ---- Fields we own and no longer want are released ----

FULL = {
    "conflictPolicy": "Force",  # the grace period is kubectl's (a default it recorded)
    "probes": {"port": "http", "readiness": {"path": "/ready", "periodSeconds": 5}},
    "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
    "shutdown": {"terminationGracePeriodSeconds": 45, "preStopSleepSeconds": 5},
    "metrics": {"port": "metrics"},
    "tracing": {"endpoint": ENDPOINT},
    "runtime": {"go": {}},
    "logging": {"format": "json", "level": "info"},
}


@pytest.mark.parametrize(
    ("dropped", "gone"),
    [
        pytest.param({"probes": None}, f"{APP}.readinessProbe", id="probes"),
        pytest.param(
            {"resources": {"requests": {"cpu": "100m"}}, "runtime": None},
            f"{APP}.resources.limits.memory",
            id="memory-limit",
        ),
        pytest.param({"shutdown": {"terminationGracePeriodSeconds": 45}}, f"{APP}.lifecycle", id="prestop"),
        pytest.param({"metrics": None}, "spec.template.metadata.annotations", id="metrics"),
        pytest.param({"tracing": None}, f"{APP}.env[OTEL_EXPORTER_OTLP_ENDPOINT]", id="tracing"),
        pytest.param({"logging": {"format": "json"}}, f"{APP}.env[LOG_LEVEL]", id="log-level"),
        pytest.param({"runtime": None}, f"{APP}.env[GOMEMLIMIT]", id="runtime"),
    ],
)
def test_a_field_the_profile_no_longer_declares_is_released(dropped: dict[str, Any], gone: str) -> None:
    body = deployment(ctr(resources={"requests": {"cpu": "100m"}}))
    _, after = converge(profile(**FULL), body)
    assert run(profile(**FULL), after).apply is None
    smaller = profile(**{k: v for k, v in {**FULL, **dropped}.items() if v is not None})
    ev = run(smaller, after)
    assert ev.apply is not None, "we own a field nobody asks for any more: one apply drops it"
    assert ev.changes == ("released",)
    assert ev.compliant, "nothing is wrong with the Deployment"
    assert not {leaf for leaf in leaves(ev.apply["spec"], "spec") if leaf.startswith(gone)}
    released = server_side_apply(after, ev.apply, force=ev.force)
    assert not {leaf for leaf in leaves(released["spec"], "spec") if leaf.startswith(gone)}
    assert run(smaller, released).apply is None, "and then nothing more"


def test_dropping_every_section_releases_everything() -> None:
    body = deployment()
    _, after = converge(profile(**FULL), body)
    ev = run(profile(), after)
    assert ev.apply == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": NS},
    }
    released = server_side_apply(after, ev.apply, force=False)
    assert (
        released["spec"]["template"]["spec"]["containers"] == body["spec"]["template"]["spec"]["containers"]
    )
    assert run(profile(), released).apply is None


def test_a_profile_change_is_one_apply() -> None:
    _, after = converge(profile(**FULL), deployment())
    changed = profile(
        **{
            **FULL,
            "probes": {"port": "http", "readiness": {"path": "/ready", "periodSeconds": 7}},
            "logging": None,
        }
    )
    ev = run(changed, after)
    assert set(ev.changes) == {"probes.readiness"}
    final = server_side_apply(after, ev.apply or {}, force=ev.force)
    assert final["metadata"]["generation"] == after["metadata"]["generation"] + 1
    (live,) = final["spec"]["template"]["spec"]["containers"]
    assert live["readinessProbe"]["periodSeconds"] == 7
    assert "LOG_LEVEL" not in env(live)
    assert "LOG_FORMAT" not in env(live)
    assert run(changed, final).apply is None


def test_fields_another_manager_applied_are_not_ours_to_release() -> None:
    body = deployment(ctr(env=[{"name": "LOG_LEVEL", "value": "info"}]))
    body["metadata"]["managedFields"].append(
        {
            "manager": "helm",
            "operation": "Apply",
            "fieldsV1": {
                "f:spec": {
                    "f:template": {
                        "f:spec": {
                            "f:containers": {
                                'k:{"name":"app"}': {
                                    ".": {},
                                    "f:name": {},
                                    "f:env": {
                                        'k:{"name":"LOG_LEVEL"}': {".": {}, "f:name": {}, "f:value": {}}
                                    },
                                }
                            }
                        }
                    }
                }
            },
        }
    )
    assert run(profile(metrics={"port": "metrics"}), body).changes == ("metrics.annotations",)
    assert run(profile(), body).apply is None


# ---- What only the operator can see blocks the write ----


@pytest.mark.parametrize(
    ("sections", "check", "mentions"),
    [
        pytest.param(
            {"probes": {"port": "web", "readiness": {"path": "/ready"}}},
            "probes.port.unknown",
            "'web'",
            id="probe-port-name",
        ),
        pytest.param(
            {"probes": {"port": 1234, "liveness": {"type": "tcpSocket"}}},
            "probes.port.unknown",
            "1234",
            id="probe-port-number",
        ),
        pytest.param(
            {"probes": {"port": "http", "startup": {"type": "grpc", "port": "grpc"}}},
            "probes.port.unknown",
            "'grpc'",
            id="probe-own-port",
        ),
        pytest.param({"metrics": {"port": "prom"}}, "metrics.port.unknown", "'prom'", id="metrics-port-name"),
        pytest.param({"metrics": {"port": 9999}}, "metrics.port.unknown", "9999", id="metrics-port-number"),
        pytest.param({"containers": ["sidecar"]}, "containers.unknown", "sidecar", id="container"),
    ],
)
def test_an_invalid_reference_is_a_problem_and_nothing_is_written(
    sections: dict[str, Any], check: str, mentions: str
) -> None:
    spec = profile(logging={"format": "json"}, shutdown={"terminationGracePeriodSeconds": 60}, **sections)
    ev = run(spec, deployment())
    assert [p.check for p in ev.problems] == [check]
    assert mentions in ev.problems[0].message
    assert ev.apply is None, "the Deployment is not touched, not even for the valid sections"
    assert not ev.compliant
    assert ev.changes == ()


def test_a_probe_port_must_exist_on_every_managed_container() -> None:
    body = deployment(ctr("app"), ctr("envoy", ports=(("admin", 9901),)))
    ev = run(profile(probes={"port": "http", "readiness": {"path": "/ready"}}), body)
    assert [(p.check, p.field) for p in ev.problems] == [
        ("probes.port.unknown", "spec.template.spec.containers[envoy].ports")
    ]
    assert ev.apply is None


# ---- The examples: apply what the engine asks, and there is nothing left to write ----


def example_pairs() -> list[Any]:
    profiles = [d for d in yaml.safe_load_all((ROOT / "examples" / "20-profiles.yaml").read_text()) if d]
    manifests = [d for d in yaml.safe_load_all((ROOT / "examples" / "10-deployments.yaml").read_text()) if d]
    pairs = [
        pytest.param(p, d, id=f"{p['metadata']['name']}/{d['metadata']['name']}")
        for p in profiles
        for d in manifests
        if matches(ServiceProfileSpec.model_validate(p["spec"]).selector, d["metadata"]["labels"])
    ]
    assert len(pairs) == 3
    return pairs


def created(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest as `kubectl apply` creates it: defaulted, owned by kubectl-client-side-apply."""
    body = api_defaults(copy.deepcopy(manifest))
    body["metadata"] |= {"uid": "uid", "generation": 1, "resourceVersion": "1"}
    return with_creator(body, KUBECTL)


@pytest.mark.parametrize(("profile_doc", "manifest"), example_pairs())
def test_examples_converge_in_one_write(profile_doc: dict[str, Any], manifest: dict[str, Any]) -> None:
    spec = ServiceProfileSpec.model_validate(profile_doc["spec"])
    body = created(manifest)
    first = run(spec, body)
    assert first.violations
    assert not first.problems
    assert first.apply is not None
    assert first.conflicts == (), "the examples are written to converge"
    after = server_side_apply(body, first.apply, force=first.force)
    assert after["metadata"]["generation"] == 2
    second = run(spec, after)
    assert second.apply is None, "zero needless writes"
    assert (second.violations, second.conflicts, second.problems) == ((), (), ())
    assert second.compliant
    assert run(spec, after) == second


def test_the_checkout_example_in_detail() -> None:
    profiles = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((ROOT / "examples" / "20-profiles.yaml").read_text())
        if d
    }
    manifests = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((ROOT / "examples" / "10-deployments.yaml").read_text())
        if d
    }
    spec = ServiceProfileSpec.model_validate(profiles["checkout"]["spec"])
    body = created(manifests["checkout-api"])
    ev = run(spec, body)
    assert ev.force, "conflictPolicy Force takes kubectl's terminationGracePeriodSeconds: 0"
    assert set(checks(ev)) == {
        "probes.liveness.missing",
        "probes.readiness.missing",
        "probes.startup.missing",
        "resources.requests.cpu.missing",
        "resources.requests.memory.missing",
        "resources.limits.memory.missing",
        "shutdown.prestop.missing",
        "shutdown.grace.too-short",
        "metrics.annotations.missing",
        "tracing.env.mismatch",
        "runtime.go.env.missing",
        "logging.env.missing",
    }
    assert ev.apply is not None
    template = ev.apply["spec"]["template"]
    assert template["spec"]["terminationGracePeriodSeconds"] == 30
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    (c,) = template["spec"]["containers"]
    values = env(c)
    assert values["OTEL_SERVICE_NAME"] == "checkout", "from the app.kubernetes.io/name label"
    assert values["OTEL_RESOURCE_ATTRIBUTES"] == (
        "team=checkout,k8s.namespace.name=shop,k8s.deployment.name=checkout-api,k8s.pod.name=$(OTEL_K8S_POD_NAME)"
    )
    assert values["GOMEMLIMIT"] == str(int(256 * 2**20 * 0.9))
    assert values["GOMAXPROCS"] == "1", "no CPU limit: the 100m request, rounded up"
    assert (values["LOG_FORMAT"], values["LOG_LEVEL"]) == ("json", "info")
    assert set(c) == {
        "name",
        "env",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "resources",
        "lifecycle",
    }


# ---- Suspected engine bugs: the correct behaviour, marked until the engine is fixed ----


def test_changing_the_type_of_a_probe_we_own_is_one_apply() -> None:
    _, after = converge(profile(probes={"port": "http", "readiness": {"path": "/ready"}}), deployment())
    grpc = profile(probes={"port": "http", "readiness": {"type": "grpc"}})
    ev = run(grpc, after)
    assert ev.conflicts == ()
    assert containers(ev)["app"]["readinessProbe"] == {"grpc": {"port": 8080}}
    final = server_side_apply(after, ev.apply or {}, force=ev.force)
    assert "httpGet" not in final["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert run(grpc, final).apply is None


def test_a_conflict_on_a_fragment_we_applied_before_writes_nothing() -> None:
    spec = profile(probes={"port": "http", "readiness": {"path": "/ready", "periodSeconds": 5}})
    _, after = converge(spec, deployment())
    # `kubectl edit` changes the path: the apiserver moves that one field to kubectl-edit.
    path = (*CONTAINER_APP, "f:readinessProbe", "f:httpGet", "f:path")
    after["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/mine"
    ours = next(m for m in after["metadata"]["managedFields"] if m["manager"] == OPERATOR)
    ours["fieldsV1"] = unpaths(paths(ours["fieldsV1"]) - {path})
    after["metadata"]["managedFields"].append(owner("kubectl-edit", *path))
    ev = run(spec, after)
    assert [(c.manager, c.field) for c in ev.conflicts] == [
        ("kubectl-edit", f"{APP}.readinessProbe.httpGet.path")
    ]
    assert ev.apply is None


def test_gomemlimit_follows_the_limit_the_container_keeps() -> None:
    body = deployment(ctr(resources={"limits": {"memory": "256Mi"}}))
    ev = run(profile(resources={"limits": {"memory": "1Gi"}}, runtime={"go": {}}), body)
    assert [c.field for c in ev.conflicts] == [f"{APP}.resources.limits.memory"]
    values = env(containers(ev)["app"]) if ev.apply is not None else {}
    assert values.get("GOMEMLIMIT") in (None, str(int(256 * 2**20 * 0.9)))


def test_releasing_the_memory_limit_releases_gomemlimit_in_the_same_apply() -> None:
    spec = profile(resources={"limits": {"memory": "256Mi"}}, runtime={"go": {}})
    _, after = converge(spec, deployment())
    smaller = profile(runtime={"go": {}})
    ev = run(smaller, after)
    assert ev.apply is not None
    final = server_side_apply(after, ev.apply, force=ev.force)
    assert "resources" not in json.dumps(ev.apply), "the limit is released..."
    assert "GOMEMLIMIT" not in env(final["spec"]["template"]["spec"]["containers"][0]), "...with it"
    again = run(smaller, final)
    assert again.apply is None
    assert checks(again) == ["runtime.go.memory-limit.missing"]


@pytest.mark.parametrize("policy", ["Report", "Force"])
@pytest.mark.parametrize(
    ("variable", "value_from", "sections"),
    [
        pytest.param(
            "OTEL_SERVICE_NAME",
            {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels['app']"}},
            {"tracing": {"endpoint": ENDPOINT, "serviceName": "checkout"}},
            id="service-name",
        ),
        pytest.param(
            "LOG_LEVEL",
            {"configMapKeyRef": {"name": "logging", "key": "level"}},
            {"logging": {"format": "json", "level": "info"}},
            id="log-level",
        ),
        pytest.param(
            "OTEL_RESOURCE_ATTRIBUTES",
            {"configMapKeyRef": {"name": "otel", "key": "attributes"}},
            {"tracing": {"endpoint": ENDPOINT}},
            id="resource-attributes",
        ),
    ],
)
def test_a_declared_variable_set_with_value_from_is_a_conflict(
    variable: str, value_from: dict[str, Any], sections: dict[str, Any], policy: str
) -> None:
    """A value beside the user's valueFrom is invalid, and an apply cannot remove theirs: even
    Force reports it rather than writing what the apiserver refuses."""
    body = deployment(ctr(env=[{"name": variable, "valueFrom": value_from}]))
    ev = run(profile(conflictPolicy=policy, **sections), body)
    assert any(c.manager == KUBECTL and c.field.startswith(f"{APP}.env[{variable}]") for c in ev.conflicts)
    applied = containers(ev)["app"].get("env", []) if ev.apply is not None and "spec" in ev.apply else []
    assert not [e for e in applied if e["name"] == variable and "value" in e]


@pytest.mark.parametrize(
    ("grace", "shutdown"),
    [
        pytest.param(30, {"preStopSleepSeconds": 40}, id="sleep-longer-than-the-live-grace"),
        pytest.param(
            0, {"terminationGracePeriodSeconds": 30, "preStopSleepSeconds": 5}, id="grace-conflicted"
        ),
    ],
)
def test_a_prestop_sleep_must_fit_the_grace_period_the_pod_keeps(
    grace: int, shutdown: dict[str, Any]
) -> None:
    """The apiserver refuses a sleep past the grace period: a problem naming the fix, no write."""
    ev = run(profile(conflictPolicy="Report", shutdown=shutdown), deployment(grace=grace))
    assert ev.apply is None
    assert [(p.check, p.field) for p in ev.problems] == [
        ("shutdown.prestop.exceeds-grace", "spec.template.spec.terminationGracePeriodSeconds")
    ]
    (problem,) = ev.problems
    assert f"terminationGracePeriodSeconds {grace}" in problem.message
    assert "declare shutdown.terminationGracePeriodSeconds above" in problem.message
    assert target(DeploymentView.from_body(deployment(grace=grace)), ev).state == "Invalid"


def test_a_prestop_sleep_that_fits_the_grace_the_profile_sets_is_applied() -> None:
    spec = profile(
        conflictPolicy="Force", shutdown={"terminationGracePeriodSeconds": 60, "preStopSleepSeconds": 40}
    )
    ev, after = converge(spec, deployment(grace=30))
    assert ev.problems == ()
    assert after["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    assert run(spec, after).apply is None


def test_a_problem_is_said_once_not_once_per_probe() -> None:
    probes = {"port": "healthz", **{kind: {"path": "/x"} for kind in ("liveness", "readiness", "startup")}}
    ev = run(profile(probes=probes), deployment())
    assert [p.check for p in ev.problems] == ["probes.port.unknown"]
    assert ev.apply is None


@pytest.mark.parametrize(
    ("live", "sections"),
    [
        pytest.param(
            {"requests": {"memory": "256Mi"}}, {"limits": {"memory": "128Mi"}}, id="limit-below-request"
        ),
        pytest.param({"limits": {"cpu": "500m"}}, {"requests": {"cpu": "1"}}, id="request-above-limit"),
    ],
)
@pytest.mark.parametrize("policy", ["Report", "Force"])
def test_a_request_above_its_limit_is_a_problem_not_a_refused_write(
    live: dict[str, Any], sections: dict[str, Any], policy: str
) -> None:
    ev = run(profile(conflictPolicy=policy, resources=sections), deployment(ctr(resources=live)))
    assert [p.check for p in ev.problems] == ["resources.request-above-limit"]
    assert "declare both in the profile" in ev.problems[0].message
    assert ev.apply is None


def test_another_managers_value_from_source_is_a_conflict_even_under_force() -> None:
    """valueFrom merges field by field: forcing ours would leave two sources in one variable."""
    source = {"configMapKeyRef": {"name": "settings", "key": "pod"}}
    body = deployment(ctr(env=[{"name": "OTEL_K8S_POD_NAME", "valueFrom": source}]))
    ev = run(profile(conflictPolicy="Force", tracing={"endpoint": ENDPOINT}), body)
    assert (KUBECTL, f"{APP}.env[OTEL_K8S_POD_NAME].valueFrom.configMapKeyRef") in [
        (c.manager, c.field) for c in ev.conflicts
    ]
    assert ev.apply is None


@pytest.mark.parametrize("policy", ["Report", "Force"])
def test_a_variable_defined_twice_is_replaced_only_under_force(policy: str) -> None:
    """The apiserver replaces every definition of an applied name with ours (seen on the
    testbed): the team's definitions go, so Report leaves them and names the holder."""
    twice = [{"name": "LOG_FORMAT", "value": "debug"}, {"name": "LOG_FORMAT", "value": "text"}]
    body = deployment(ctr(env=twice))
    ev = run(profile(conflictPolicy=policy, logging={"format": "json"}), body)
    if policy == "Report":
        fields = [(c.manager, c.field) for c in ev.conflicts]
        assert (KUBECTL, f"{APP}.env[LOG_FORMAT] (defined more than once)") in fields
        assert ev.apply is None
        return
    assert ev.force
    after = server_side_apply(body, ev.apply or {}, force=True)
    assert env(after["spec"]["template"]["spec"]["containers"][0]) == {"LOG_FORMAT": "json"}
    assert run(profile(conflictPolicy=policy, logging={"format": "json"}), after).apply is None
