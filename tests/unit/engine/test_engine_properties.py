"""The policy engine, property-based: generated profiles against generated, odd Deployments.

The table tests (test_evaluate_*.py) pin the engine's behaviour case by case; these look for
the cases nobody wrote down. Deployments are built with the tables' helpers and shaped as the API
returns them (defaulted, managedFields filled in by their creator); applies go through the same
simulator, ``server_side_apply`` (tests/support/apiserver.py). Strategies draw plain dicts (a profile's sections, a
Deployment "recipe"), so a falsifying example prints as something to paste into ``profile(**...)``
and ``created(...)``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from tests.support.apiserver import (
    OPERATOR,
    api_defaults,
    differs,
    fields_v1,
    item_key,
    paths,
    server_side_apply,
)
from tests.support.engine_table import KUBECTL, ctr, deployment, profile, run, with_creator

from readiness.engine import DeploymentView, Evaluation, evaluate, judge
from readiness.engine.fields import human
from readiness.engine.quantity import parse_quantity
from readiness.models import ServiceProfileSpec

# Each property runs this many generated cases; no deadline: a case with hundreds of env
# variables is slower, not wrong, and the machine is shared.
PROPERTY = settings(max_examples=150, deadline=None)

# ---- Names both sides draw from, so that profiles and Deployments meet ----

CONTAINER_NAMES = ("app", "worker", "envoy")
ALL_NAMES = (*CONTAINER_NAMES, "migrate")  # "migrate" is only ever an init container
PORT_NAMES = ("http", "metrics", "grpc", "admin")
PORT_NUMBERS = (8080, 8081, 9090, 9901, 50051)
SSA_CREATOR = "kubectl"  # `kubectl apply --server-side`: owns what its manifest says, no API defaults

# Quantities as the apiserver stores them (canonical): what a live Deployment holds.
CPU_LIVE = ("100m", "250m", "500m", "1", "1500m", "2", "4")
MEMORY_LIVE = ("128Mi", "256Mi", "512Mi", "1G", "1Gi", "2Gi")
# What a profile may say: other spellings too, but only those the simulator canonicalises as the
# apiserver does (its CANONICAL table), and a plain byte count no live value equals. Any other
# spelling of a live value would make the simulator, not the engine, see a difference.
CPU_SPELLINGS: tuple[int | str, ...] = (*CPU_LIVE, "0.1", "0.25", "0.5", "1000m", "2000m", 1, 2, 4)
MEMORY_SPELLINGS: tuple[int | str, ...] = (*MEMORY_LIVE, "1024Mi", 300000000)

# Mostly the ports most containers declare (else most cases would stop at a problem), then any.
COMMON_PORTS = (("http", 8080), ("metrics", 9090))
PORT_REFS = st.one_of(
    st.sampled_from(("http", "metrics", 8080, 9090)),
    st.sampled_from((*PORT_NAMES, "web", *PORT_NUMBERS)),  # "web": a name no container declares
    st.integers(1, 65535),
)
# The CRD's Path rule: absolute, no whitespace.
PATHS = st.one_of(
    st.sampled_from(("/healthz", "/ready", "/metrics", "/")), st.from_regex(r"\A/[!-~]{0,24}\Z")
)


# ---- Profiles: sections that pass the model and the CRD's CEL rules ----


@st.composite
def quantities(
    draw: st.DrawFn, cpu: Sequence[int | str], memory: Sequence[int | str]
) -> dict[str, dict[str, int | str]]:
    """requests and limits, each resource optional in each, a request never above its limit (a
    CEL rule of the profile, and the apiserver's rule for a container)."""
    out: dict[str, dict[str, int | str]] = {}
    for resource, values in (("cpu", cpu), ("memory", memory)):
        request, limit = draw(st.none() | st.sampled_from(values)), draw(st.none() | st.sampled_from(values))
        if request is not None and limit is not None and parse_quantity(request) > parse_quantity(limit):
            request, limit = limit, request
        for group, value in (("requests", request), ("limits", limit)):
            if value is not None:
                out.setdefault(group, {})[resource] = value
    return out


@st.composite
def probe_specs(draw: st.DrawFn) -> dict[str, Any]:
    """One probe: httpGet needs a path, the other types may not have one (CEL rules)."""
    probe: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "port": PORT_REFS,
                "initialDelaySeconds": st.integers(0, 3600),
                "periodSeconds": st.integers(1, 3600),
                "timeoutSeconds": st.integers(1, 3600),
                "failureThreshold": st.integers(1, 1000),
            },
        )
    )
    kind = draw(st.sampled_from(("httpGet", "grpc", "tcpSocket")))  # the model has no exec probe
    if kind == "httpGet":
        probe["path"] = draw(PATHS)
        if draw(st.booleans()):
            probe["type"] = "httpGet"  # the default, said or not
    else:
        probe["type"] = kind
    return probe


@st.composite
def shutdowns(draw: st.DrawFn) -> dict[str, int]:
    """Grace and preStop sleep, each optional; the grace longer than the sleep (CEL rule)."""
    grace = draw(st.none() | st.integers(1, 3600))
    sleep = draw(st.none() | st.integers(1, 600))
    if grace is not None and sleep is not None and grace <= sleep:
        grace, sleep = sleep + 1, grace
    out = {"terminationGracePeriodSeconds": grace, "preStopSleepSeconds": sleep}
    return {k: v for k, v in out.items() if v is not None}


TRACING = st.fixed_dictionaries(
    {"endpoint": st.from_regex(r"\Ahttps?://[a-z0-9.-]{1,20}(:[0-9]{2,5})?(/[a-z0-9/]{0,10})?\Z")},
    optional={
        "protocol": st.sampled_from(("grpc", "http/protobuf")),
        "sampler": st.sampled_from(
            (
                "always_on",
                "always_off",
                "traceidratio",
                "parentbased_always_on",
                "parentbased_always_off",
                "parentbased_traceidratio",
            )
        ),
        "samplerArg": st.sampled_from(("0", "0.1", "0.25", "1", "1.0", ".5")),
        "serviceName": st.from_regex(r"\A[a-z][a-z0-9-]{0,20}\Z"),
        "propagators": st.lists(
            st.sampled_from(
                ("tracecontext", "baggage", "b3", "b3multi", "jaeger", "xray", "ottrace", "none")
            ),
            unique=True,
            max_size=3,
        ),
    },
)

SECTIONS = st.fixed_dictionaries(
    {},
    optional={
        "mode": st.sampled_from(("Enforce", "Audit")),
        "conflictPolicy": st.sampled_from(("Report", "Force")),
        # The CRD admits any names, repeated too; init container and unknown names are problems.
        "containers": st.just([]) | st.lists(st.sampled_from(ALL_NAMES), max_size=2),
        "probes": st.fixed_dictionaries(
            {"port": PORT_REFS},
            optional={"liveness": probe_specs(), "readiness": probe_specs(), "startup": probe_specs()},
        ),
        "resources": quantities(CPU_SPELLINGS, MEMORY_SPELLINGS),
        "shutdown": shutdowns(),
        "metrics": st.fixed_dictionaries(
            {"port": PORT_REFS}, optional={"path": PATHS, "scheme": st.sampled_from(("http", "https"))}
        ),
        "tracing": TRACING,
        # The model has Go only (no JVM section).
        "runtime": st.fixed_dictionaries(
            {
                "go": st.fixed_dictionaries(
                    {}, optional={"memoryLimitRatio": st.floats(0, 1, exclude_min=True)}
                )
            }
        ),
        "logging": st.fixed_dictionaries(
            {},
            optional={
                "format": st.sampled_from(("json", "text", "logfmt")),
                "level": st.sampled_from(("debug", "info", "warn", "error")),
            },
        ),
        # The CRD wants at least one setting in security: runAsNonRoot is always drawn.
        "security": st.fixed_dictionaries(
            {"runAsNonRoot": st.booleans()},
            optional={
                "mode": st.sampled_from(("Enforce", "Audit")),
                "allowPrivilegeEscalation": st.booleans(),
                "dropAllCapabilities": st.booleans(),
                "readOnlyRootFilesystem": st.booleans(),
                "seccompProfile": st.just("RuntimeDefault"),
                "automountServiceAccountToken": st.booleans(),
            },
        ),
        "images": st.fixed_dictionaries(
            {}, optional={"forbidLatest": st.booleans(), "requireDigest": st.booleans()}
        ),
        "secrets": st.fixed_dictionaries({}, optional={"forbidLiteralValues": st.booleans()}),
        "profiling": st.fixed_dictionaries(
            {"port": PORT_REFS},
            optional={
                "path": PATHS,
                "profiles": st.lists(
                    st.sampled_from(("cpu", "memory", "goroutine", "block", "mutex", "fgprof")),
                    min_size=1,
                    max_size=3,
                    unique=True,
                ),
            },
        ),
    },
)


@st.composite
def profile_edits(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A profile and the same profile edited: some sections kept, some dropped, some new."""
    earlier, fresh = draw(SECTIONS), draw(SECTIONS)
    kept = {k: v for k, v in earlier.items() if draw(st.booleans())}
    return earlier, {**kept, **{k: v for k, v in fresh.items() if draw(st.booleans())}}


# ---- Deployments: recipes for odd but admissible ones ----

# Variables the profile sets or derives, and some of the team's own.
ENV_NAMES = (
    "LOG_LEVEL",
    "LOG_FORMAT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_K8S_POD_NAME",
    "GOMEMLIMIT",
    "GOMAXPROCS",
    "APP_MODE",
    "DATABASE_URL",
)
ENV_VALUES = st.one_of(
    st.sampled_from(("debug", "json", "team=checkout", "team=a,k8s.pod.name=x,tier=web", "100MiB", "8")),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
)
VALUE_FROM = st.one_of(
    st.fixed_dictionaries(
        {
            "configMapKeyRef": st.fixed_dictionaries(
                {"name": st.just("settings"), "key": st.sampled_from(ENV_NAMES)}
            )
        }
    ),
    st.fixed_dictionaries(
        {"secretKeyRef": st.fixed_dictionaries({"name": st.just("secrets"), "key": st.just("value")})}
    ),
    st.fixed_dictionaries(
        {
            "fieldRef": st.fixed_dictionaries(
                {
                    "apiVersion": st.just("v1"),
                    "fieldPath": st.sampled_from(("metadata.name", "metadata.namespace", "status.podIP")),
                }
            )
        }
    ),
)
# An empty value is omitted by the API (omitempty): the entry is its name alone.
ENV_ENTRY = st.one_of(
    st.builds(
        lambda n, v: {"name": n, "value": v} if v else {"name": n}, st.sampled_from(ENV_NAMES), ENV_VALUES
    ),
    st.builds(lambda n, f: {"name": n, "valueFrom": f}, st.sampled_from(ENV_NAMES), VALUE_FROM),
)
ENV_FROM = st.lists(
    st.one_of(
        st.fixed_dictionaries({"configMapRef": st.fixed_dictionaries({"name": st.just("settings")})}),
        st.fixed_dictionaries(
            {"secretRef": st.fixed_dictionaries({"name": st.just("secrets")})},
            optional={"prefix": st.just("APP_")},
        ),
    ),
    min_size=1,
    max_size=2,
)
# Probes the team wrote, of any handler (exec too); the apiserver adds the timing defaults.
LIVE_PROBE_HANDLERS = st.one_of(
    st.just({"exec": {"command": ["/bin/check"]}}),
    st.builds(
        lambda p, r: {"httpGet": {"path": p, "port": r}}, st.sampled_from(("/healthz", "/ready")), PORT_REFS
    ),
    st.builds(lambda r: {"tcpSocket": {"port": r}}, PORT_REFS),
    st.builds(lambda r: {"grpc": {"port": r}}, st.sampled_from(PORT_NUMBERS)),
)
LIVE_PROBE = st.tuples(
    LIVE_PROBE_HANDLERS,
    st.fixed_dictionaries(
        {}, optional={"periodSeconds": st.integers(1, 60), "timeoutSeconds": st.integers(1, 10)}
    ),
).map(lambda pair: {**pair[0], **pair[1]})


@st.composite
def live_resources(draw: st.DrawFn) -> dict[str, dict[str, int | str]]:
    """Resources as the apiserver holds them: canonical, a limit without a request defaulting it."""
    resources = draw(quantities(CPU_LIVE, MEMORY_LIVE))
    for resource, value in resources.get("limits", {}).items():
        resources.setdefault("requests", {}).setdefault(resource, value)
    return resources


@st.composite
def container_recipes(draw: st.DrawFn, name: str, grace: int) -> dict[str, Any]:
    """One container: ports named or not (or none), env of every kind, existing probes and hooks."""
    recipe: dict[str, Any] = {"name": name}
    if draw(st.booleans()):
        recipe["ports"] = [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in COMMON_PORTS]
    else:
        numbers = draw(st.lists(st.sampled_from(PORT_NUMBERS), unique=True, max_size=3))
        names = draw(st.permutations(PORT_NAMES))  # port names are unique within a container
        named = draw(st.lists(st.booleans(), min_size=len(numbers), max_size=len(numbers)))
        recipe["ports"] = [
            {**({"name": names[i]} if named[i] else {}), "containerPort": n, "protocol": "TCP"}
            for i, n in enumerate(numbers)
        ]
    env = draw(st.lists(ENV_ENTRY, max_size=6))
    if not draw(st.booleans()):  # else repeated names: the apiserver admits them (the last one wins)
        env = list({e["name"]: e for e in env}.values())
    if env:
        recipe["env"] = env
    # Hundreds of the team's own variables, expanded by created(): cheap to draw, short to print.
    recipe["fillers"] = draw(st.just(0) | st.integers(0, 400))
    if draw(st.booleans()):
        recipe["envFrom"] = draw(ENV_FROM)
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        if draw(st.booleans()):
            recipe[kind] = draw(LIVE_PROBE)
    hooks = [
        st.just({"exec": {"command": ["sleep", "5"]}}),
        st.just({"httpGet": {"path": "/drain", "port": 8080, "scheme": "HTTP"}}),
        # The apiserver admits a sleep up to the pod's grace period.
        st.builds(lambda s: {"sleep": {"seconds": s}}, st.integers(min(1, grace), grace)),
    ]
    if draw(st.booleans()):
        recipe["lifecycle"] = {"preStop": draw(st.one_of(*hooks))}
    resources = draw(live_resources())
    if resources:
        recipe["resources"] = resources
    return recipe


@st.composite
def deployments(draw: st.DrawFn) -> dict[str, Any]:
    """A Deployment recipe: one to three containers (unique names), init containers, its creator."""
    grace = draw(st.sampled_from((30, 0, 5, 45, 600, 3600)))
    names = draw(st.lists(st.sampled_from(CONTAINER_NAMES), min_size=1, max_size=3, unique=True))
    init = draw(st.lists(st.sampled_from([n for n in ALL_NAMES if n not in names]), unique=True, max_size=2))
    return {
        "containers": [draw(container_recipes(name, grace)) for name in names],
        "init": init,
        "grace": grace,
        "labels": draw(
            st.sampled_from(({"app": "api"}, {"app": "api", "app.kubernetes.io/name": "checkout"}))
        ),
        "annotations": draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "prometheus.io/scrape": st.just("true"),
                    "prometheus.io/port": st.sampled_from(("8080", "9090")),
                    "prometheus.io/path": st.just("/metrics"),
                },
            )
        ),
        # Every Deployment has a creator owning its containers (one owned by nobody would be
        # deleted with the last of our fields): Update creators own the API defaults too.
        "creator": draw(st.sampled_from((KUBECTL, "kubectl-create", "helm", SSA_CREATOR))),
    }


def created(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The Deployment a recipe describes, as the apiserver returns it: defaulted, owned by its creator."""
    containers = []
    for spec in recipe["containers"]:
        fields = {
            k: copy.deepcopy(v) for k, v in spec.items() if k not in ("name", "ports", "fillers", "env")
        }
        fillers = [{"name": f"FILLER_{i:03d}", "value": str(i)} for i in range(spec["fillers"])]
        env = [*fillers, *copy.deepcopy(spec.get("env", []))]
        c = ctr(spec["name"], ports=(), **fields, **({"env": env} if env else {}))
        c["ports"] = copy.deepcopy(spec["ports"])
        containers.append(c)
    init = [ctr(name, ports=()) for name in recipe["init"]]
    for c in [*containers, *init]:
        if not c["ports"]:
            del c["ports"]  # the API omits an empty list
    body = deployment(
        *containers,
        labels=dict(recipe["labels"]),
        grace=recipe["grace"],
        annotations=dict(recipe["annotations"]),
        init_containers=init,
        creator=None,
    )
    # envFrom is an atomic list for server-side apply (one leaf, f:envFrom): set aside while the
    # creator's fields are recorded, then given back as that one leaf, of whichever creator.
    pod = body["spec"]["template"]["spec"]
    env_from = {c["name"]: c.pop("envFrom") for c in pod["containers"] if "envFrom" in c}
    manifest = manifest_fields(body, recipe["grace"])  # before the apiserver's defaults
    api_defaults(body)
    if recipe["creator"] == SSA_CREATOR:
        with_creator(body, None)
        entry = {"manager": SSA_CREATOR, "operation": "Apply", "apiVersion": "apps/v1", "fieldsV1": manifest}
        body["metadata"]["managedFields"].insert(0, entry)
    else:
        with_creator(body, recipe["creator"])
    owned = body["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    for c in pod["containers"]:
        if c["name"] in env_from:
            c["envFrom"] = env_from[c["name"]]
            owned[item_key(c)]["f:envFrom"] = {}
    return body


def manifest_fields(body: Mapping[str, Any], grace: int) -> dict[str, Any]:
    """fieldsV1 of the manifest a server-side apply created ``body`` from: the fields it set, no
    API defaults (an Apply entry marks list items only with ".")."""
    spec = body["spec"]
    pod = spec["template"]["spec"]
    written = (
        "name",
        "image",
        "ports",
        "env",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
    )
    containers = [
        {**{k: c[k] for k in written if k in c}, **({"resources": c["resources"]} if c["resources"] else {})}
        for c in pod["containers"]
    ]
    template_spec: dict[str, Any] = {"containers": containers}
    if pod.get("initContainers"):
        template_spec["initContainers"] = [
            {"name": c["name"], "image": c["image"]} for c in pod["initContainers"]
        ]
    if grace != 30:
        template_spec["terminationGracePeriodSeconds"] = grace
    manifest = {
        "metadata": {"labels": body["metadata"]["labels"]},
        "spec": {
            "replicas": spec["replicas"],
            "selector": spec["selector"],
            "template": {"metadata": spec["template"]["metadata"], "spec": template_spec},
        },
    }
    return fields_v1(manifest, dots=False)


# ---- What the properties compare ----


def managed_names(spec: ServiceProfileSpec, body: Mapping[str, Any]) -> set[str]:
    """The containers a profile manages: those it names, else every (non-init) container."""
    return set(spec.containers) or {c["name"] for c in body["spec"]["template"]["spec"]["containers"]}


def declared_env(spec: ServiceProfileSpec) -> set[str]:
    """Variables the profile itself sets (not derives): the only env of the team's it may change."""
    names: set[str] = set()
    if spec.tracing is not None:
        t = spec.tracing
        names |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_TRACES_SAMPLER",
            "OTEL_K8S_POD_NAME",
            "OTEL_RESOURCE_ATTRIBUTES",  # appended to: the team's own items must stay (checked apart)
        }
        names |= {"OTEL_SERVICE_NAME"} if t.service_name is not None else set()
        names |= {"OTEL_TRACES_SAMPLER_ARG"} if t.sampler_arg is not None else set()
        names |= {"OTEL_PROPAGATORS"} if t.propagators else set()
    if spec.logging is not None:
        names |= {"LOG_FORMAT"} if spec.logging.format else set()
        names |= {"LOG_LEVEL"} if spec.logging.level else set()
    return names


def pod_spec(doc: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec


def entries(container: Mapping[str, Any], name: str) -> list[Any]:
    return [e for e in container.get("env", []) if e.get("name") == name]


def invalid(body: Mapping[str, Any]) -> list[str]:
    """What the apiserver's pod validation would refuse that the simulator does not check."""
    pod = pod_spec(body)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    found: list[str] = []
    for c in [*pod.get("containers", []), *pod.get("initContainers", [])]:
        where = f"containers[{c['name']}]"
        found += [
            f"{where}.env[{e['name']}]: value and valueFrom"
            for e in c.get("env", [])
            if {"value", "valueFrom"} <= set(e)
        ]
        found += [
            f"{where}.env[{e['name']}].valueFrom: sources {sorted(e['valueFrom'])}, must be exactly one"
            for e in c.get("env", [])
            if "valueFrom" in e and len(e["valueFrom"]) != 1
        ]
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = c.get(kind)
            if probe is None:
                continue
            handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if h in probe]
            if len(handlers) != 1:
                found.append(f"{where}.{kind}: handlers {handlers}, must be exactly one")
            if "grpc" in probe and not isinstance(probe["grpc"].get("port"), int):
                found.append(f"{where}.{kind}.grpc.port: must be a number")
        pre_stop = c.get("lifecycle", {}).get("preStop")
        if pre_stop is not None:
            handlers = [h for h in ("exec", "httpGet", "tcpSocket", "sleep") if h in pre_stop]
            if len(handlers) != 1:
                found.append(f"{where}.lifecycle.preStop: handlers {handlers}, must be exactly one")
            seconds = pre_stop.get("sleep", {}).get("seconds")
            if seconds is not None and not 0 <= seconds <= grace:
                found.append(
                    f"{where}.lifecycle.preStop.sleep.seconds: {seconds} above the grace period {grace}"
                )
        resources = c.get("resources", {})
        for resource, request in resources.get("requests", {}).items():
            limit = resources.get("limits", {}).get(resource)
            if limit is not None and parse_quantity(request) > parse_quantity(limit):
                found.append(f"{where}.resources.requests.{resource}: {request} above the limit {limit}")
    return found


def outcome(ev: Evaluation) -> Iterator[str]:
    """Labels for hypothesis' statistics: which kinds of verdict the examples reached."""
    yield "problems" if ev.problems else ("write" if ev.apply is not None else "no write")
    if ev.conflicts:
        yield "conflicts"
    if ev.force:
        yield "force"


# ---- Failures the properties found, kept as explicit examples (they run first, every time) ----


def one_container(**fields: Any) -> dict[str, Any]:
    """The recipe of a kubectl-created Deployment with one container "app" holding ``fields``."""
    container = {"name": "app", "ports": [], "fillers": 0, **fields}
    return {
        "containers": [container],
        "init": [],
        "grace": 30,
        "labels": {"app": "api"},
        "annotations": {},
        "creator": KUBECTL,
    }


# The team sets OTEL_K8S_POD_NAME from a ConfigMap; tracing under Force applies valueFrom.fieldRef.
# Server-side apply merges valueFrom as a struct: the team's configMapKeyRef stays beside our
# fieldRef, which the apiserver refuses (one source only), and each evaluation asks again.
POD_NAME_FROM_CONFIGMAP = one_container(
    env=[{"name": "OTEL_K8S_POD_NAME", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "pod"}}}]
)
FORCED_TRACING = {"conflictPolicy": "Force", "tracing": {"endpoint": "http://0"}}
# A memory limit below the request the container keeps (its own, or the one the apiserver
# defaulted from its old limit): the apiserver refuses requests above limits.
REQUEST_256MI = one_container(resources={"requests": {"memory": "256Mi"}})
LIMIT_128MI = {"resources": {"limits": {"memory": "128Mi"}}}
DEFAULTED_REQUEST_1GI = one_container(resources={"limits": {"memory": "1Gi"}, "requests": {"memory": "1Gi"}})
FORCED_LIMIT_512MI = {"conflictPolicy": "Force", "resources": {"limits": {"memory": "512Mi"}}}
# A grace period the profile forces below a preStop sleep the container keeps as its own.
FORCED_GRACE_1 = {"conflictPolicy": "Force", "shutdown": {"terminationGracePeriodSeconds": 1}}
OWN_SLEEP_2 = one_container(lifecycle={"preStop": {"sleep": {"seconds": 2}}})


# ---- The properties ----


@PROPERTY
@given(sections=SECTIONS, recipe=deployments())
def test_evaluate_never_raises(sections: dict[str, Any], recipe: dict[str, Any]) -> None:
    """Whatever the pair, a verdict: what cannot apply comes back as problems, and nothing is written."""
    spec = profile(**sections)
    view = DeploymentView.from_body(created(recipe))
    ev = evaluate(spec, view)
    for label in outcome(ev):
        event(label)
    if ev.problems:
        assert ev.apply is None
        assert ev.changes == ()
    judged = judge(view, {"profile": spec})
    assert judged.evaluation == ev, "the operator and `readiness audit` decide alike"


@PROPERTY
@given(sections=SECTIONS, recipe=deployments())
def test_evaluate_is_deterministic(sections: dict[str, Any], recipe: dict[str, Any]) -> None:
    """Same inputs, same verdict: twice, on deep copies, on the essentials the operator keeps."""
    spec = profile(**sections)
    body = created(recipe)
    untouched = copy.deepcopy(body)
    ev = run(spec, body)
    assert body == untouched, "the engine does not change what it reads"
    assert run(spec, body) == ev
    assert run(copy.deepcopy(spec), copy.deepcopy(body)) == ev
    assert evaluate(spec, DeploymentView.from_body(DeploymentView.essentials(body))) == ev


@PROPERTY
@given(sections=SECTIONS, recipe=deployments())
@example(sections=FORCED_TRACING, recipe=POD_NAME_FROM_CONFIGMAP)
def test_one_write_converges(sections: dict[str, Any], recipe: dict[str, Any]) -> None:
    """Apply what the engine asks and evaluate again: nothing more to write.

    An AssertionError from ``server_side_apply`` means the engine asked for a write the apiserver
    refuses (another manager's field, unforced): a bug, not a skipped case.
    """
    spec = profile(**sections)
    body = created(recipe)
    ev = run(spec, body)
    for label in outcome(ev):
        event(label)
    if ev.apply is None or ev.problems:
        return
    after = server_side_apply(body, ev.apply, force=ev.force)
    again = run(spec, after)
    assert again.apply is None, f"a second write for {again.changes}: {again.apply}"


@PROPERTY
@given(edit=profile_edits(), recipe=deployments())
@example(edit=({"tracing": {"endpoint": "http://0"}}, FORCED_TRACING), recipe=POD_NAME_FROM_CONFIGMAP)
def test_a_profile_change_converges(
    edit: tuple[dict[str, Any], dict[str, Any]], recipe: dict[str, Any]
) -> None:
    """From a Deployment an earlier profile wrote to, the new profile's write converges too (releases
    included). The earlier profile forces, so its own write is one the apiserver takes; a refused
    first write is test_one_write_converges' finding."""
    earlier, sections = edit
    body = created(recipe)
    first = run(profile(**{**earlier, "conflictPolicy": "Force"}), body)
    if first.apply is not None and not first.problems:
        body = server_side_apply(body, first.apply, force=first.force)
        event("after an earlier write")
    spec = profile(**sections)
    ev = run(spec, body)
    for label in outcome(ev):
        event(label)
    if ev.apply is None or ev.problems:
        return
    after = server_side_apply(body, ev.apply, force=ev.force)
    again = run(spec, after)
    assert again.apply is None, f"a second write for {again.changes}: {again.apply}"


@PROPERTY
@given(sections=SECTIONS, recipe=deployments())
def test_the_apply_keeps_to_what_the_profile_manages(
    sections: dict[str, Any], recipe: dict[str, Any]
) -> None:
    """Containers the profile does not manage, init containers and the team's variables that the
    profile does not declare are left as they are; the team's OTEL_RESOURCE_ATTRIBUTES items stay."""
    spec = profile(**sections)
    body = created(recipe)
    ev = run(spec, body)
    if ev.apply is None:
        return
    managed = managed_names(spec, body)
    declared = declared_env(spec)
    live = {c["name"]: c for c in pod_spec(body)["containers"]}
    applied = pod_spec(ev.apply)
    assert "initContainers" not in applied
    assert {c["name"] for c in applied.get("containers", [])} <= managed
    for c in applied.get("containers", []):
        team = {e["name"] for e in live[c["name"]].get("env", [])}
        assert not ({e["name"] for e in c.get("env", [])} & team) - declared, "the team's own variables"
    # force=True: this is about what the apply changes, not whether the apiserver takes it.
    after = server_side_apply(body, ev.apply, force=True)
    assert pod_spec(after).get("initContainers") == pod_spec(body).get("initContainers")
    for c in pod_spec(after)["containers"]:
        before = live[c["name"]]
        if c["name"] not in managed:
            assert c == before, f"container {c['name']} is not the profile's"
            continue
        for name in {e["name"] for e in before.get("env", [])} - declared:
            assert entries(c, name) == entries(before, name), f"{c['name']}: the team's {name}"
        attributes = entries(before, "OTEL_RESOURCE_ATTRIBUTES")
        if spec.tracing is not None and attributes and "value" in attributes[-1]:
            items = [
                i
                for i in attributes[-1]["value"].split(",")
                if i and not i.startswith(("k8s.namespace.name=", "k8s.deployment.name=", "k8s.pod.name="))
            ]
            now = [
                i
                for i in entries(c, "OTEL_RESOURCE_ATTRIBUTES")[-1].get("value", "").split(",")
                if i and not i.startswith(("k8s.namespace.name=", "k8s.deployment.name=", "k8s.pod.name="))
            ]
            # Appended to (Force) or left as it is (a Report conflict): the team's items stay.
            assert now == items, "appended to, never replaced"


@PROPERTY
@given(sections=SECTIONS, recipe=deployments())
@example(
    sections={"shutdown": {"terminationGracePeriodSeconds": 40}},
    recipe={
        "containers": [
            {
                "name": "app",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "fillers": 0,
            }
        ],
        "init": [],
        "grace": 30,
        "labels": {"app": "api"},
        "annotations": {},
        "creator": KUBECTL,
    },
)
def test_report_forces_only_defaults_nobody_chose(sections: dict[str, Any], recipe: dict[str, Any]) -> None:
    """conflictPolicy Report takes a field another manager holds only when it is an API default
    an Update-operation manager recorded without choosing it: the forced apply takes exactly
    those, under the object's resourceVersion, and a server-side applier loses nothing."""
    body = created(recipe)
    reported = run(profile(**{**sections, "conflictPolicy": "Report"}), body)
    if not reported.force:
        assert reported.taken == ()
        return
    event("report took API defaults")
    assert reported.apply is not None
    assert reported.taken
    assert reported.apply["metadata"].get("resourceVersion") == body["metadata"].get("resourceVersion")
    mine = paths(fields_v1({"spec": reported.apply["spec"]}, dots=False))
    taken: set[str] = set()
    for entry in body["metadata"]["managedFields"]:
        if entry["manager"] == OPERATOR or entry.get("subresource"):
            continue
        theirs = {
            p
            for p in mine & paths(entry["fieldsV1"])
            if not p[-1].startswith("k:") and differs(body, reported.apply, p)
        }
        assert not theirs or entry["operation"] == "Update", f"{entry['manager']} applied {sorted(theirs)}"
        taken |= {human(p).removeprefix("spec.template.spec.") for p in theirs}
    assert taken == {t.field for t in reported.taken}
    for t in reported.taken:
        assert t.value in (30, 1, 10, 3, "HTTP", ""), t


@PROPERTY
@given(sections=SECTIONS, recipe=deployments())
@example(sections=LIMIT_128MI, recipe=REQUEST_256MI)
@example(sections=FORCED_LIMIT_512MI, recipe=DEFAULTED_REQUEST_1GI)
@example(sections=FORCED_TRACING, recipe=POD_NAME_FROM_CONFIGMAP)
@example(sections=FORCED_GRACE_1, recipe=OWN_SLEEP_2)
def test_the_apply_leaves_a_valid_pod_template(sections: dict[str, Any], recipe: dict[str, Any]) -> None:
    """The Deployment the apply makes passes the apiserver's pod validation, which the simulator
    does not model (one handler per probe and hook, value or valueFrom and one source in it, a
    preStop sleep within the grace period, requests within limits): else the write is refused,
    forced or not."""
    spec = profile(**sections)
    body = created(recipe)
    assert invalid(body) == [], "the recipe is one the apiserver admits"
    ev = run(spec, body)
    if ev.apply is None or ev.problems:
        return
    # force=True: the fields' owners are test_one_write_converges' concern; this is the content.
    after = server_side_apply(body, ev.apply, force=True)
    assert invalid(after) == [], f"the apply: {ev.apply}"
