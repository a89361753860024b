"""What can be checked of the image, the install and its monitoring without Docker or a cluster."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase
from tests.support.paths import ROOT

from readiness.models.crd import render_crd_yaml
from readiness.observe.metrics import Metrics
from readiness.runtime.settings import Settings

DEPLOY = ROOT / "deploy"
MONITORING = DEPLOY / "monitoring"
CHART = ROOT / "charts" / "readiness-operator"
NAMESPACE = "readiness-system"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
}


# --- the image -------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str
    steps: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [rest for op, rest in self.steps if op == instruction]

    def pairs(self, instruction: str) -> dict[str, str]:
        """KEY=value words of every ENV or LABEL instruction, quotes and ${ARG}s resolved."""
        found: dict[str, str] = {}
        args = dict(rest.partition("=")[::2] for rest in self.args("ARG"))
        for rest in self.args(instruction):
            for word in shlex.split(rest):
                key, _, value = word.partition("=")
                found[key] = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), value)
        return found


def _instructions() -> Iterator[tuple[str, str]]:
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # Docker drops comments inside continuations too
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        op, _, rest = (pending + line).partition(" ")
        pending = ""
        yield op.upper(), rest.strip()


def _stages() -> list[Stage]:
    defaults: dict[str, str] = {}  # ARGs before the first FROM, the only ones FROM may use
    stages: list[Stage] = []
    for op, rest in _instructions():
        if op == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(base, name))
        elif stages:
            stages[-1].steps.append((op, rest))
        elif op == "ARG":
            key, _, value = rest.partition("=")
            defaults[key] = value
    return stages


def test_image_is_built_in_one_stage_and_run_from_another() -> None:
    stages = _stages()
    assert len(stages) >= 2
    assert {s.base for s in stages} == {"python:3.11-slim"}
    build, final = stages[0], stages[-1]
    assert any("constraints.txt" in rest for rest in build.args("COPY"))
    assert any(re.search(r"(--constraint|-c) constraints\.txt", rest) for rest in build.args("RUN"))
    assert build.name
    assert any(rest.startswith(f"--from={build.name} ") for rest in final.args("COPY"))


def test_runtime_stage_has_no_compiler_and_installs_nothing() -> None:
    final = _stages()[-1]
    # Only RUN can install anything, and COPY could bring a toolchain over from the build stage.
    text = "\n".join(final.args("RUN") + final.args("COPY"))
    forbidden = r"\b(gcc|g\+\+|clang|cc|build-essential|make|apt-get|apt|apk|dnf|yum)\b|pip install|/usr/bin"
    assert not re.search(forbidden, text), re.search(forbidden, text)


def test_runtime_stage_runs_as_numeric_non_root_user_on_a_read_only_filesystem() -> None:
    final = _stages()[-1]
    *_, user = final.args("USER")
    uid, _, gid = user.partition(":")
    assert uid == "65532"
    assert gid in ("", "65532")
    env = final.pairs("ENV")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    home = env["HOME"]
    assert home.startswith("/")
    # HOME must be writable at run time: it is the emptyDir the Deployment mounts.
    (container,) = _deployment()["spec"]["template"]["spec"]["containers"]
    assert home in {m["mountPath"] for m in container["volumeMounts"]}


def test_runtime_stage_entrypoint_ports_and_labels() -> None:
    final = _stages()[-1]
    assert [json.loads(rest) for rest in final.args("ENTRYPOINT")] == [["readiness"]]
    assert [json.loads(rest) for rest in final.args("CMD")] == [["run"]]
    assert {port for rest in final.args("EXPOSE") for port in rest.split()} == {"8080", "9090"}
    labels = final.pairs("LABEL")
    assert labels["org.opencontainers.image.title"] == "readiness-operator"
    assert labels["org.opencontainers.image.version"] == VERSION


# --- the install -----------------------------------------------------------------------------


def _yaml(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _deploy() -> list[dict[str, Any]]:
    return [
        d for path in sorted(DEPLOY.glob("*.yaml")) if path.name != "kustomization.yaml" for d in _yaml(path)
    ]


def _one(kind: str) -> dict[str, Any]:
    (found,) = [d for d in _deploy() if d["kind"] == kind]
    return found


def _deployment() -> dict[str, Any]:
    return _one("Deployment")


def test_kustomizations_list_every_manifest_and_nothing_missing() -> None:
    (base,) = _yaml(DEPLOY / "kustomization.yaml")
    manifests = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(base["resources"]) == manifests | {"../crds"}
    (crds,) = _yaml(ROOT / "crds" / "kustomization.yaml")
    assert all((ROOT / "crds" / name).is_file() for name in crds["resources"])
    (monitoring,) = _yaml(MONITORING / "kustomization.yaml")
    assert set(monitoring["resources"]) == {"prometheusrule.yaml", "servicemonitor.yaml"}
    assert all((MONITORING / name).is_file() for name in monitoring["resources"])
    (generator,) = monitoring["configMapGenerator"]
    assert generator["files"] == ["dashboard.json"]
    assert monitoring["namespace"] == NAMESPACE


def test_the_image_is_set_in_one_place() -> None:
    (base,) = _yaml(DEPLOY / "kustomization.yaml")
    (image,) = base["images"]
    (container,) = _deployment()["spec"]["template"]["spec"]["containers"]
    assert container["image"].partition(":")[0] == image["name"] == "readiness-operator"
    assert image["newTag"] == VERSION
    assert image["newName"]


def test_crds_come_first_for_gitops() -> None:
    """Argo CD syncs the CRDs (wave -1) before the rest; the patch that says so matches every CRD."""
    (base,) = _yaml(DEPLOY / "kustomization.yaml")
    (patch,) = base["patches"]
    assert patch["target"] == {"group": "apiextensions.k8s.io", "kind": "CustomResourceDefinition"}
    body = yaml.safe_load(patch["patch"])
    assert body["metadata"]["annotations"] == {"argocd.argoproj.io/sync-wave": "-1"}


def test_the_install_has_no_custom_resource_of_its_own_crds() -> None:
    """kubectl cannot map a kind whose CRD arrives in the same apply: the first apply on a fresh
    cluster would fail. The operator creates its peering object itself."""
    builtin = {"v1", "apps/v1", "policy/v1", "rbac.authorization.k8s.io/v1", "apiextensions.k8s.io/v1"}
    for doc in _deploy():
        assert doc["apiVersion"] in builtin, (doc["kind"], doc["metadata"]["name"])


def test_namespaced_objects_live_in_the_operator_namespace() -> None:
    for doc in _deploy():
        namespace = doc["metadata"].get("namespace")
        if doc["kind"] in CLUSTER_SCOPED:
            assert namespace is None, doc["kind"]
        else:
            assert namespace == NAMESPACE, doc["kind"]
    assert _one("Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_operator_deployment_practises_what_it_enforces() -> None:
    deployment = _deployment()
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "prometheus.io/path": "/metrics",
    }
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "readiness-operator"
    assert spec["automountServiceAccountToken"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65532
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    spread = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert spread[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    (container,) = spec["containers"]
    assert container["image"] == f"readiness-operator:{VERSION}"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["startupProbe"]["httpGet"]["port"] == "health"
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"memory": "256Mi"},
    }
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["READINESS_PEERING"] == "readiness-operator"
    assert env["READINESS_LOG_FORMAT"] == "json"
    assert env["READINESS_HEALTH_PORT"] == str(ports["health"])
    assert env["READINESS_METRICS_PORT"] == str(ports["metrics"])
    # In-flight reconciles get their shutdown window before the kubelet's SIGKILL.
    assert spec["terminationGracePeriodSeconds"] == 30
    shutdown = float(
        env.get("READINESS_SHUTDOWN_SECONDS") or Settings.model_fields["shutdown_seconds"].default
    )
    assert shutdown < spec["terminationGracePeriodSeconds"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in volumes[tmp["name"]]


def test_disruption_budget_and_metrics_service_select_the_operator_pods() -> None:
    template = _deployment()["spec"]["template"]
    labels = template["metadata"]["labels"]
    pdb = _one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _one("Service")
    assert service["metadata"]["name"] == "readiness-operator-metrics"
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    (container,) = template["spec"]["containers"]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    assert port["port"] == 9090


# Exactly what the operator and kopf call (see k8s/client.py, handlers/, app.py).
GRANTS = {
    ("apps", "deployments"): {"get", "list", "watch", "patch"},
    ("apps", "replicasets"): {"get", "list"},  # a failed rollout put back to its previous template
    ("", "pods"): {"list"},  # a rollout's new pods that cannot start fail it at once
    ("readiness.dev", "serviceprofiles"): {"get", "list", "watch"},
    ("readiness.dev", "serviceprofiles/status"): {"get", "patch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    # The operator creates its peering object when it is missing; kopf keeps it.
    ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "create", "patch"},
    ("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "create", "patch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("", "namespaces"): {"list", "watch"},
}


def test_cluster_role_grants_exactly_what_the_operator_uses() -> None:
    role = _one("ClusterRole")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames or nonResourceURLs"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    for (group, resource), verbs in granted.items():
        assert "*" not in verbs
        assert "*" not in (group, resource)
        assert resource.partition("/")[0] not in ("secrets", "configmaps"), resource
        assert resource != "pods" or verbs == {"list"}, "pods are only ever listed"
        assert not verbs & {"delete", "deletecollection", "escalate", "bind", "impersonate"}, resource
    assert granted == GRANTS


def test_cluster_role_is_bound_to_the_operator_service_account() -> None:
    binding = _one("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": _one("ClusterRole")["metadata"]["name"],
    }
    account = _one("ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}
    ]
    assert _deployment()["spec"]["template"]["spec"]["serviceAccountName"] == account["name"]


def test_peering_crds_are_kopfs_and_the_deployment_peers() -> None:
    crds = {d["spec"]["names"]["kind"]: d for d in _yaml(DEPLOY / "peering-crds.yaml")}
    assert {k: c["spec"]["scope"] for k, c in crds.items()} == {
        "ClusterKopfPeering": "Cluster",
        "KopfPeering": "Namespaced",
    }
    for kind, crd in crds.items():
        assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.kopf.dev", kind
        (version,) = crd["spec"]["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    # The name the replicas peer through (a cluster-wide ClusterKopfPeering the operator creates),
    # or each one would act alone.
    (container,) = _deployment()["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["READINESS_PEERING"] == "readiness-operator"
    assert not env.get("READINESS_NAMESPACES"), "cluster-wide, so peering is cluster-wide too"


# --- one source for the chart's copies -------------------------------------------------------


def test_the_charts_crds_are_the_generated_ones() -> None:
    """`make crds` writes crds/ and the chart's crds/ from one generator; Helm installs crds/ as is."""
    generated = render_crd_yaml()
    assert (ROOT / "crds" / "serviceprofiles.readiness.dev.yaml").read_text() == generated
    assert (CHART / "crds" / "serviceprofiles.readiness.dev.yaml").read_text() == generated, "run `make crds`"
    assert (CHART / "crds" / "peering-crds.yaml").read_bytes() == (
        DEPLOY / "peering-crds.yaml"
    ).read_bytes(), "run `make crds`"
    assert {p.name for p in (CHART / "crds").iterdir()} == {
        "serviceprofiles.readiness.dev.yaml",
        "peering-crds.yaml",
    }


def test_the_charts_monitoring_files_are_deploys() -> None:
    for name in ("prometheusrule.yaml", "dashboard.json"):
        assert (CHART / "files" / name).read_bytes() == (MONITORING / name).read_bytes(), (
            f"run `make chart` ({name})"
        )


# --- the monitoring --------------------------------------------------------------------------

# Labels Prometheus adds to every scraped series; `le` is a histogram bucket's bound.
TARGET_LABELS = {"job", "instance", "le"}


def _exposed() -> dict[str, set[str]]:
    """Every sample name a fresh registry exposes, with its label names.

    Labelled metrics expose no sample until a child exists, so one child of each is made first.
    """
    metrics = Metrics()
    for metric in vars(metrics).values():
        # prometheus-client has no public accessor for a wrapper's label names.
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:
            metric.labels(*["x"] * len(metric._labelnames))
    return {
        sample.name: set(sample.labels)
        for family in metrics.registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def _rules() -> list[dict[str, Any]]:
    (rule,) = _yaml(MONITORING / "prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads((MONITORING / "dashboard.json").read_text())
    return dashboard


def _queries(node: Any) -> Iterator[str]:
    """Every PromQL string in the dashboard: panel targets and templating queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query", "definition") and isinstance(value, str):
                yield value
            else:
                yield from _queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _queries(item)


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\breadiness_[a-z0-9_]+\b", expr))


def _grouping(expr: str) -> set[str] | None:
    """The labels an aggregation keeps (``by``), or None when nothing is aggregated away."""
    groups = re.findall(r"\bby\s*\(([^)]*)\)", expr)
    if not groups and not re.search(r"\b(sum|max|min|avg|count|topk|bottomk)\s*\(", expr):
        return None
    return {n.strip() for group in groups for n in group.split(",") if n.strip()}


def _label_names(expr: str) -> set[str]:
    """Label names an expression filters or groups on (not the values it compares them with)."""
    names: set[str] = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        names |= {n.strip() for n in group.split(",") if n.strip()}
    for selector in re.findall(r"\{([^}]*)\}", expr):
        names |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", re.sub(r'"[^"]*"', '""', selector)))
    return names


def test_monitoring_uses_only_exposed_metric_names_and_labels() -> None:
    exposed = _exposed()
    exprs = [r["expr"] for r in _rules()] + list(_queries(_dashboard()))
    used = set[str]().union(*(_metric_names(e) for e in exprs))
    assert len(used) >= 10, used
    assert used <= set(exposed), used - set(exposed)
    for expr in exprs:
        known = set[str]().union(*(exposed[m] for m in _metric_names(expr))) | TARGET_LABELS
        assert _label_names(expr) <= known, (expr, _label_names(expr) - known)


def test_label_values_compared_in_alerts_are_ones_the_operator_sets() -> None:
    compared: dict[str, set[str]] = {"result": set(), "state": set()}
    for expr in (r["expr"] for r in _rules()):
        for label, value in re.findall(r'\b(result|state)\s*!?=~?\s*"([^"]*)"', expr):
            compared[label] |= set(value.split("|"))
    assert compared == {"result": {"ok"}, "state": {"Conflicted"}}
    metrics = Metrics()
    metrics.observe_profile("ns", "p", [], [], 100)  # exports a zero for every state
    states = {s.labels["state"] for f in metrics.registry.collect() for s in f.samples if "state" in s.labels}
    assert compared["state"] <= states
    # Results are set where reconciles end; a value no code sets would make the alert a no-op.
    source = "\n".join(p.read_text() for p in (ROOT / "operator" / "readiness").rglob("*.py"))
    assert all(f'"{value}"' in source for value in compared["result"])


def test_alerts_are_the_four_agreed_and_read_well() -> None:
    rules = {r["alert"]: r for r in _rules()}
    assert set(rules) == {
        "ReadinessOperatorDown",
        "ReadinessReconcileErrors",
        "ReadinessProfileNotCompliant",
        "ReadinessConflicts",
    }
    exposed = _exposed()
    for name, rule in rules.items():
        assert rule["for"], name
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
        # An annotation may only name labels the alerting series carry.
        mentioned = set(re.findall(r"\$labels\.(\w+)", json.dumps(rule["annotations"])))
        carried = _grouping(rule["expr"])
        if carried is None:
            carried = set[str]().union(*(exposed[m] for m in _metric_names(rule["expr"])))
        assert mentioned <= carried, (name, mentioned - carried)
    assert rules["ReadinessProfileNotCompliant"]["for"] == "30m"
    assert rules["ReadinessConflicts"]["for"] == "15m"


def test_operator_down_alert_watches_the_job_the_service_monitor_creates() -> None:
    (monitor,) = _yaml(MONITORING / "servicemonitor.yaml")
    service = _one("Service")
    assert "jobLabel" not in monitor["spec"], "the job is then the Service's name"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    down = next(r for r in _rules() if r["alert"] == "ReadinessOperatorDown")["expr"]
    assert "absent(" in down
    assert set(re.findall(r'job="([^"]*)"', down)) == {service["metadata"]["name"]}


def test_dashboard_charts_what_an_sre_asks_about() -> None:
    dashboard = _dashboard()
    charted = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for query in _queries(dashboard)
        for name in _metric_names(query)
    }
    assert charted >= {
        "readiness_reconciles",
        "readiness_reconcile_duration_seconds",
        "readiness_deployment_applies",
        "readiness_conflicts",
        "readiness_drift_corrections",
        "readiness_api_errors",
        "readiness_queue_depth",
        "readiness_workers_busy",
        "readiness_profile_targets",
        "readiness_profile_compliance_ratio",
        "readiness_profile_violations",
    }
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids are unique"
    exposed = _exposed()
    for panel in panels:
        for target in panel.get("targets", []):
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            kept = _grouping(target["expr"])
            if kept is None:
                kept = set[str]().union(*(exposed[m] for m in _metric_names(target["expr"])))
            assert legend <= kept, (panel["title"], legend - kept)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "profile"} <= variables
