"""The engine's section functions, one table each: a profile section and a few containers in,
the fragments, problems, notes and notices that section asks for out.

Each row calls the section function directly (``probes(ctx)``...); the tables in
test_evaluate_*.py check what ``evaluate`` makes of the whole chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from readiness import FIELD_MANAGER
from readiness.engine import DeploymentView, ManagedEntry
from readiness.engine.desired import plan
from readiness.engine.fields import FieldPath, container, human, key
from readiness.engine.fragments import Managed, Plan, SectionInput, SectionResult
from readiness.engine.sections import SECTIONS
from readiness.engine.sections.logs import logging as logs_section
from readiness.engine.sections.metrics import metrics
from readiness.engine.sections.probes import probes
from readiness.engine.sections.resources import resources
from readiness.engine.sections.runtime import runtime
from readiness.engine.sections.shutdown import shutdown
from readiness.engine.sections.tracing import tracing
from readiness.models import ServiceProfileSpec

ENDPOINT = "http://otel-collector.observability:4317"
ATTRIBUTES = "k8s.namespace.name=shop,k8s.deployment.name=api,k8s.pod.name=$(OTEL_K8S_POD_NAME)"
POD_NAME = {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}
ENV_FROM = [{"configMapRef": {"name": "settings"}}]
LIMITED = {"limits": {"memory": "1Gi", "cpu": "1500m"}}

Fragments = list[tuple[str, str, dict[str, Any], str]]  # check, field, leaves, wants
Found = list[tuple[str, str, str]]  # check, field, message


def ctr(
    name: str = "app", ports: tuple[tuple[str, int], ...] = (("http", 8080), ("metrics", 9090)), **fields: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports],
        **fields,
    }


def ctx(
    sections: Mapping[str, Any], *containers: Mapping[str, Any], ours: tuple[FieldPath, ...] = ()
) -> SectionInput:
    """The input of every section: the profile, a Deployment ``api`` labelled
    app.kubernetes.io/name=shop-api with ``containers`` (all managed), the fields in ``ours``
    recorded as the operator's."""
    spec = ServiceProfileSpec.model_validate({"selector": {"matchLabels": {"app": "api"}}, **sections})
    live = containers or (ctr(),)
    view = DeploymentView(
        namespace="shop",
        name="api",
        labels={"app.kubernetes.io/name": "shop-api"},
        containers=tuple(live),
        managed=tuple(ManagedEntry(FIELD_MANAGER, "Apply", fields_v1(path)) for path in ours),
    )
    return SectionInput(spec, view, tuple(Managed.of(str(c["name"]), c) for c in live))


def fields_v1(path: FieldPath) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for element in reversed(path):
        node = {element: node}
    return node


def short(path: str) -> str:
    return path.removeprefix("spec.template.spec.").removeprefix("spec.template.")


def env(name: str = "app", **values: Any) -> dict[str, Any]:
    """Env leaves of container ``name``: a dict value is a valueFrom."""
    return {
        f"containers[{name}].env[{var}].{'valueFrom' if isinstance(value, dict) else 'value'}": value
        for var, value in values.items()
    }


def run(section: Any, context: SectionInput) -> tuple[Fragments, Found, Found, list[str]]:
    """The section's result as plan() merges it: each container's part, in order, then the pod's."""
    result: SectionResult = section(context)
    assert len(result.containers) == len(context.containers)
    merged = Plan()
    for part in (*result.containers, result.pod):
        merged.extend(part)
    for f in merged.fragments:  # probes and preStop: one handler, below the fragment's own field
        assert (f.handler_parent is None) == (f.handler is None)
        assert f.handler_parent is None or human(f.handler_parent) == f.field
    return (
        [
            (f.check, short(f.field), {short(human(p)): v for p, v in f.leaves}, f.wants)
            for f in merged.fragments
        ],
        [(p.check, short(p.field), p.message) for p in merged.problems],
        [(p.check, short(p.field), p.message) for p in merged.notes],
        merged.notices,
    )


def check_leaf_order(section: Any, context: SectionInput, fragments: Fragments) -> None:
    """Leaves come in the order the rows list them (the apply's own order)."""
    got = [list(leaves) for _, _, leaves, _ in run(section, context)[0]]
    assert got == [list(leaves) for _, _, leaves, _ in fragments]


# ---- probes ----

PROBES = [
    pytest.param(
        {"port": "http", "liveness": {"type": "httpGet", "path": "/healthz", "periodSeconds": 10}},
        [ctr()],
        [
            (
                "probes.liveness",
                "containers[app].livenessProbe",
                {
                    "containers[app].livenessProbe.httpGet.path": "/healthz",
                    "containers[app].livenessProbe.httpGet.port": "http",
                    "containers[app].livenessProbe.periodSeconds": 10,
                },
                "liveness probe httpGet on port http path /healthz",
            )
        ],
        [],
        id="httpGet on a named port",
    ),
    pytest.param(
        {"port": "grpc", "readiness": {"type": "grpc"}},
        [ctr(ports=(("grpc", 50051),))],
        [
            (
                "probes.readiness",
                "containers[app].readinessProbe",
                {"containers[app].readinessProbe.grpc.port": 50051},
                "readiness probe grpc on port grpc",
            )
        ],
        [],
        id="grpc takes the port's number",
    ),
    pytest.param(
        {
            "port": "http",
            "startup": {"type": "tcpSocket", "initialDelaySeconds": 5},
            "readiness": {"type": "httpGet", "path": "/ready", "port": 9090, "failureThreshold": 3},
            "liveness": {"type": "tcpSocket", "timeoutSeconds": 2},
        },
        [ctr()],
        [
            (
                "probes.liveness",
                "containers[app].livenessProbe",
                {
                    "containers[app].livenessProbe.tcpSocket.port": "http",
                    "containers[app].livenessProbe.timeoutSeconds": 2,
                },
                "liveness probe tcpSocket on port http",
            ),
            (
                "probes.readiness",
                "containers[app].readinessProbe",
                {
                    "containers[app].readinessProbe.httpGet.path": "/ready",
                    "containers[app].readinessProbe.httpGet.port": 9090,
                    "containers[app].readinessProbe.failureThreshold": 3,
                },
                "readiness probe httpGet on port 9090 path /ready",
            ),
            (
                "probes.startup",
                "containers[app].startupProbe",
                {
                    "containers[app].startupProbe.tcpSocket.port": "http",
                    "containers[app].startupProbe.initialDelaySeconds": 5,
                },
                "startup probe tcpSocket on port http",
            ),
        ],
        [],
        id="liveness, readiness, startup in that order; a probe's own port",
    ),
    pytest.param(
        {"port": "http", "liveness": {"type": "tcpSocket"}, "readiness": {"type": "tcpSocket"}},
        [ctr(), ctr("sidecar", ports=())],
        [
            (
                "probes.liveness",
                "containers[app].livenessProbe",
                {"containers[app].livenessProbe.tcpSocket.port": "http"},
                "liveness probe tcpSocket on port http",
            ),
            (
                "probes.readiness",
                "containers[app].readinessProbe",
                {"containers[app].readinessProbe.tcpSocket.port": "http"},
                "readiness probe tcpSocket on port http",
            ),
        ],
        [
            (
                "probes.port.unknown",
                "containers[sidecar].ports",
                "probe port 'http' is not a port of container sidecar (declared: none)",
            )
        ]
        * 2,
        id="an unknown port is a problem of its container, once per probe",
    ),
    pytest.param(
        {"port": "web", "liveness": {"type": "httpGet", "path": "/healthz"}},
        [ctr()],
        [],
        [
            (
                "probes.port.unknown",
                "containers[app].ports",
                "probe port 'web' is not a port of container app (declared: http, metrics)",
            )
        ],
        id="an unknown port names the declared ones",
    ),
    pytest.param(None, [ctr()], [], [], id="absent"),
]


@pytest.mark.parametrize(("section", "containers", "fragments", "problems"), PROBES)
def test_probes(
    section: dict[str, Any] | None, containers: list[dict[str, Any]], fragments: Fragments, problems: Found
) -> None:
    context = ctx({"probes": section} if section else {}, *containers)
    assert run(probes, context) == (fragments, problems, [], [])
    check_leaf_order(probes, context, fragments)
    result = probes(context)
    assert [f.handler for p in result.containers for f in p.fragments] == [
        next(iter(leaves)).split(".")[2] for _, _, leaves, _ in fragments
    ]


# ---- resources ----


def quantity(name: str, group: str, resource: str, value: str) -> tuple[str, str, dict[str, Any], str]:
    field = f"containers[{name}].resources.{group}.{resource}"
    return (f"resources.{group}.{resource}", field, {field: value}, f"{group}.{resource}={value}")


RESOURCES = [
    pytest.param(
        {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": 1, "memory": "256Mi"}},
        [ctr()],
        [
            quantity("app", "requests", "cpu", "100m"),
            quantity("app", "requests", "memory", "128Mi"),
            quantity("app", "limits", "cpu", "1"),  # `cpu: 1` is applied as the quantity "1"
            quantity("app", "limits", "memory", "256Mi"),
        ],
        id="requests then limits, cpu then memory",
    ),
    pytest.param(
        {"limits": {"memory": "256Mi"}},
        [ctr(), ctr("sidecar")],
        [quantity("app", "limits", "memory", "256Mi"), quantity("sidecar", "limits", "memory", "256Mi")],
        id="each managed container",
    ),
    pytest.param({}, [ctr()], [], id="empty"),
    pytest.param(None, [ctr()], [], id="absent"),
]


@pytest.mark.parametrize(("section", "containers", "fragments"), RESOURCES)
def test_resources(
    section: dict[str, Any] | None, containers: list[dict[str, Any]], fragments: Fragments
) -> None:
    context = ctx({} if section is None else {"resources": section}, *containers)
    assert run(resources, context) == (fragments, [], [], [])


# ---- shutdown ----


def pre_stop(name: str, seconds: int) -> tuple[str, str, dict[str, Any], str]:
    field = f"containers[{name}].lifecycle.preStop"
    return ("shutdown.prestop", field, {f"{field}.sleep.seconds": seconds}, f"preStop sleep {seconds}s")


GRACE = (
    "shutdown.grace",
    "terminationGracePeriodSeconds",
    {"terminationGracePeriodSeconds": 45},
    "terminationGracePeriodSeconds=45",
)
SHUTDOWN = [
    pytest.param(
        {"terminationGracePeriodSeconds": 45, "preStopSleepSeconds": 5},
        [ctr(), ctr("sidecar")],
        [pre_stop("app", 5), pre_stop("sidecar", 5), GRACE],
        id="preStop on each container, then the pod's grace period",
    ),
    pytest.param({"terminationGracePeriodSeconds": 45}, [ctr()], [GRACE], id="grace period only"),
    pytest.param({"preStopSleepSeconds": 10}, [ctr()], [pre_stop("app", 10)], id="preStop only"),
    pytest.param(None, [ctr()], [], id="absent"),
]


@pytest.mark.parametrize(("section", "containers", "fragments"), SHUTDOWN)
def test_shutdown(
    section: dict[str, Any] | None, containers: list[dict[str, Any]], fragments: Fragments
) -> None:
    context = ctx({} if section is None else {"shutdown": section}, *containers)
    assert run(shutdown, context) == (fragments, [], [], [])
    result = shutdown(context)
    assert all(f.handler == "sleep" for p in result.containers for f in p.fragments)
    assert all(f.check == "shutdown.grace" for f in result.pod.fragments)


# ---- metrics ----


def scrape(port: str, path: str = "/metrics", scheme: str = "http") -> tuple[str, str, dict[str, Any], str]:
    leaves = {"scrape": "true", "port": port, "path": path, "scheme": scheme}
    return (
        "metrics.annotations",
        "metadata.annotations",
        {f"metadata.annotations.prometheus.io/{k}": v for k, v in leaves.items()},
        f"prometheus.io/* scrape annotations for port {port}{path}",
    )


METRICS = [
    pytest.param({"port": "metrics"}, [ctr()], [scrape("9090")], [], id="a named port, as its number"),
    pytest.param({"port": 9090}, [ctr()], [scrape("9090")], [], id="a numbered port"),
    pytest.param(
        {"port": "admin", "path": "/stats", "scheme": "https"},
        [ctr(), ctr("envoy", ports=(("admin", 9901),))],
        [scrape("9901", "/stats", "https")],
        [],
        id="the first managed container that declares it",
    ),
    pytest.param(
        {"port": "prom"},
        [ctr()],
        [],
        [
            (
                "metrics.port.unknown",
                "containers[*].ports",
                "metrics port 'prom' is not a port of any managed container",
            )
        ],
        id="an unknown port is a problem",
    ),
    pytest.param(None, [ctr()], [], [], id="absent"),
]


@pytest.mark.parametrize(("section", "containers", "fragments", "problems"), METRICS)
def test_metrics(
    section: dict[str, Any] | None, containers: list[dict[str, Any]], fragments: Fragments, problems: Found
) -> None:
    context = ctx({} if section is None else {"metrics": section}, *containers)
    assert run(metrics, context) == (fragments, problems, [], [])
    assert not any(p.fragments or p.problems for p in metrics(context).containers)  # the pod's


# ---- tracing ----


def otel(name: str = "app", **values: Any) -> tuple[str, str, dict[str, Any], str]:
    return (
        "tracing.env",
        f"containers[{name}].env",
        env(name, **values),
        f"OpenTelemetry env exporting to {ENDPOINT}",
    )


DEFAULTS = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT,
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
}
DERIVED_NAME = (*container("app"), "f:env", key(name="OTEL_SERVICE_NAME"))
TRACING = [
    pytest.param(
        {"endpoint": ENDPOINT},
        [ctr()],
        (),
        [
            otel(
                **DEFAULTS,
                OTEL_SERVICE_NAME="shop-api",
                OTEL_K8S_POD_NAME=POD_NAME,
                OTEL_RESOURCE_ATTRIBUTES=ATTRIBUTES,
            )
        ],
        [],
        id="defaults; the service name from the app.kubernetes.io/name label",
    ),
    pytest.param(
        {
            "endpoint": ENDPOINT,
            "protocol": "http/protobuf",
            "sampler": "traceidratio",
            "samplerArg": "0.25",
            "serviceName": "checkout",
            "propagators": ["tracecontext", "baggage"],
        },
        [ctr()],
        (),
        [
            otel(
                OTEL_EXPORTER_OTLP_ENDPOINT=ENDPOINT,
                OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                OTEL_TRACES_SAMPLER="traceidratio",
                OTEL_SERVICE_NAME="checkout",
                OTEL_TRACES_SAMPLER_ARG="0.25",
                OTEL_PROPAGATORS="tracecontext,baggage",
                OTEL_K8S_POD_NAME=POD_NAME,
                OTEL_RESOURCE_ATTRIBUTES=ATTRIBUTES,
            )
        ],
        [],
        id="everything declared",
    ),
    pytest.param(
        {"endpoint": ENDPOINT},
        [
            ctr(
                env=[
                    {"name": "OTEL_SERVICE_NAME", "value": "mine"},
                    {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "team=shop,k8s.pod.name=old"},
                ]
            )
        ],
        (),
        [
            otel(
                **DEFAULTS,
                OTEL_K8S_POD_NAME=POD_NAME,
                OTEL_RESOURCE_ATTRIBUTES=f"team=shop,{ATTRIBUTES}",
            )
        ],
        [],
        id="the user's own service name and resource attributes are kept",
    ),
    pytest.param(
        {"endpoint": ENDPOINT},
        [ctr(env=[{"name": "OTEL_SERVICE_NAME", "value": "old"}])],
        (DERIVED_NAME,),
        [
            otel(
                **DEFAULTS,
                OTEL_SERVICE_NAME="shop-api",
                OTEL_K8S_POD_NAME=POD_NAME,
                OTEL_RESOURCE_ATTRIBUTES=ATTRIBUTES,
            )
        ],
        [],
        id="a service name that is ours alone is derived again",
    ),
    pytest.param(
        {"endpoint": ENDPOINT},
        [ctr(envFrom=ENV_FROM)],
        (),
        [otel(**DEFAULTS, OTEL_K8S_POD_NAME=POD_NAME, OTEL_RESOURCE_ATTRIBUTES=ATTRIBUTES)],
        [
            "OTEL_SERVICE_NAME is not set on container app: it may come from its envFrom, which the "
            "operator does not read; set it in the container's env (or declare it) to decide"
        ],
        id="envFrom may hold the service name: a notice, no entry",
    ),
    pytest.param(None, [ctr()], (), [], [], id="absent"),
]


@pytest.mark.parametrize(("section", "containers", "ours", "fragments", "notices"), TRACING)
def test_tracing(
    section: dict[str, Any] | None,
    containers: list[dict[str, Any]],
    ours: tuple[FieldPath, ...],
    fragments: Fragments,
    notices: list[str],
) -> None:
    context = ctx({} if section is None else {"tracing": section}, *containers, ours=ours)
    assert run(tracing, context) == (fragments, [], [], notices)
    check_leaf_order(tracing, context, fragments)


# ---- runtime ----


def go(**values: str) -> tuple[str, str, dict[str, Any], str]:
    return (
        "runtime.go.env",
        "containers[app].env",
        env(**values),
        "GOMEMLIMIT/GOMAXPROCS derived from the container's limits",
    )


NO_LIMIT = (
    "runtime.go.memory-limit.missing",
    "containers[app].resources.limits.memory",
    "GOMEMLIMIT needs a memory limit on container app; declare resources.limits.memory",
)
ENV_FROM_NOTICE = (
    "{} is not set on container app: it may come from its envFrom, which the operator does not read; "
    "set it in the container's env (or declare it) to decide"
)
RUNTIME = [
    pytest.param(
        {"runtime": {"go": {}}},
        [ctr(resources=LIMITED)],
        [go(GOMEMLIMIT="966367641", GOMAXPROCS="2")],  # 0.9 of 1Gi; 1500m rounded up
        [],
        [],
        id="from the live limits",
    ),
    pytest.param(
        {
            "runtime": {"go": {"memoryLimitRatio": 0.5}},
            "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "512Mi"}},
        },
        [ctr(resources={"limits": {"memory": "1Gi"}})],
        [go(GOMEMLIMIT="268435456", GOMAXPROCS="1")],
        [],
        [],
        id="the limits the profile declares win; no cpu limit: the request",
    ),
    pytest.param(
        {"runtime": {"go": {}}},
        [ctr(resources={"requests": {"cpu": "2"}})],
        [go(GOMAXPROCS="2")],
        [NO_LIMIT],
        [],
        id="no memory limit: a note",
    ),
    pytest.param(
        {"runtime": {"go": {}}},
        [ctr(resources=LIMITED, env=[{"name": "GOMEMLIMIT", "value": "700MiB"}])],
        [go(GOMAXPROCS="2")],
        [],
        [],
        id="the user's own GOMEMLIMIT is kept",
    ),
    pytest.param(
        {"runtime": {"go": {}}},
        [ctr(resources=LIMITED, envFrom=ENV_FROM)],
        [],
        [],
        [ENV_FROM_NOTICE.format("GOMEMLIMIT"), ENV_FROM_NOTICE.format("GOMAXPROCS")],
        id="envFrom may hold them: notices, no entries",
    ),
    pytest.param({"runtime": {}}, [ctr(resources=LIMITED)], [], [], [], id="runtime without go"),
    pytest.param({}, [ctr(resources=LIMITED)], [], [], [], id="absent"),
]


@pytest.mark.parametrize(("sections", "containers", "fragments", "notes", "notices"), RUNTIME)
def test_runtime(
    sections: dict[str, Any],
    containers: list[dict[str, Any]],
    fragments: Fragments,
    notes: Found,
    notices: list[str],
) -> None:
    context = ctx(sections, *containers)
    assert run(runtime, context) == (fragments, [], notes, notices)
    check_leaf_order(runtime, context, fragments)


# ---- logging ----


def log(wants: str, **values: str) -> tuple[str, str, dict[str, Any], str]:
    return ("logging.env", "containers[app].env", env(**values), wants)


LOGGING = [
    pytest.param(
        {"format": "json", "level": "info"},
        [ctr()],
        [log("LOG_FORMAT=json LOG_LEVEL=info", LOG_FORMAT="json", LOG_LEVEL="info")],
        id="format and level",
    ),
    pytest.param({"level": "debug"}, [ctr()], [log("LOG_LEVEL=debug", LOG_LEVEL="debug")], id="level only"),
    pytest.param(
        {"level": "warn"},
        [ctr(env=[{"name": "LOG_LEVEL", "value": "debug"}], envFrom=ENV_FROM)],
        [log("LOG_LEVEL=warn", LOG_LEVEL="warn")],
        id="declared, not derived: the user's value and envFrom do not hold it back",
    ),
    pytest.param({}, [ctr()], [], id="empty"),
    pytest.param(None, [ctr()], [], id="absent"),
]


@pytest.mark.parametrize(("section", "containers", "fragments"), LOGGING)
def test_logging(
    section: dict[str, Any] | None, containers: list[dict[str, Any]], fragments: Fragments
) -> None:
    context = ctx({} if section is None else {"logging": section}, *containers)
    assert run(logs_section, context) == (fragments, [], [], [])
    check_leaf_order(logs_section, context, fragments)


# ---- the chain ----

NOT_SECTIONS = {"selector", "mode", "conflict_policy", "containers", "rollout"}  # rollout paces writes


def test_the_chain_has_every_profile_section_once() -> None:
    """A new optional section of the profile needs its function in SECTIONS, named after it."""
    fields = ServiceProfileSpec.model_fields
    optional = {name for name, info in fields.items() if info.default is None}
    assert optional == set(fields) - NOT_SECTIONS
    names = [section.__name__ for section in SECTIONS]
    assert sorted(names) == sorted(optional)
    assert len(names) == len(set(names))


def test_plan_lists_each_container_then_the_pod() -> None:
    sections = {
        "probes": {"port": "http", "liveness": {"type": "tcpSocket"}},
        "resources": {"limits": {"memory": "256Mi"}},
        "shutdown": {"terminationGracePeriodSeconds": 45, "preStopSleepSeconds": 5},
        "metrics": {"port": "metrics"},
        "tracing": {"endpoint": ENDPOINT},
        "runtime": {"go": {}},
        "logging": {"level": "info"},
    }
    context = ctx(sections, ctr("side"), ctr())  # the Deployment's order, not the names'
    each = [
        "probes.liveness",
        "resources.limits.memory",
        "shutdown.prestop",
        "tracing.env",
        "runtime.go.env",
        "logging.env",
    ]
    result = plan(context.spec, context.view)
    assert [f.check for f in result.fragments] == [*each, *each, "shutdown.grace", "metrics.annotations"]
    assert [f.field.split(".")[3] for f in result.fragments[:12]] == ["containers[side]"] * 6 + [
        "containers[app]"
    ] * 6
