"""The Helm chart, as `helm lint` and `helm template` see it: the same operator, RBAC and monitoring
as deploy/, every operator setting a value, and the values checked by the schema.

These need the pinned helm binary (testbed/helm), built into the testbed's cache on first use."""

from __future__ import annotations

import base64
import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.paths import ROOT

from readiness.runtime.settings import Settings
from readiness.webhook.admitter import HANDLER_ID
from readiness.webhook.registration import namespace_selector, webhook_configuration

CHART = ROOT / "charts" / "readiness-operator"
DEPLOY = ROOT / "deploy"
WEBHOOK = DEPLOY / "webhook"
NAMESPACED_VALUES = CHART / "ci" / "namespaced-values.yaml"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# The release deploy/ corresponds to: same names, same namespace.
RELEASE, NAMESPACE = "readiness-operator", "readiness-system"
ON = ("--set", "settings.webhook=cluster")
# The objects only the webhook adds (its Service is told apart by name).
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "Issuer", "Certificate")


@pytest.fixture(scope="session")
def helm() -> Path:
    """The pinned helm; building it (a few minutes, once per machine) when the cache lacks it.
    No Go toolchain means an error here, never a skip: the chart must be checked."""
    from readiness_testbed import ensure_binaries

    path = ensure_binaries(log=False)["helm"]
    assert path.is_file(), path
    return path


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, check=False, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def template(
    helm: Path, *args: str, release: str = RELEASE, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    out = run_helm(helm, "template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(found)


def env(docs: list[dict[str, Any]]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container(docs)["env"]}


def deploy_docs() -> list[dict[str, Any]]:
    return [
        d
        for path in sorted(DEPLOY.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for d in yaml.safe_load_all(path.read_text())
        if d
    ]


def grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


# --- lint ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("-f", str(NAMESPACED_VALUES)),
        ON,
        (*ON, "-f", str(NAMESPACED_VALUES)),
        (*ON, "--set", "webhook.certManager.enabled=false", "--set", "webhook.caBundle=Q0E="),
    ],
    ids=["defaults", "namespaced", "webhook", "webhook-namespaced", "webhook-own-ca"],
)
def test_chart_lints_clean(helm: Path, args: tuple[str, ...]) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *args)
    assert "0 chart(s) failed" in result.stdout


def test_chart_versions_follow_the_operator() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == VERSION


# --- defaults: the install deploy/ makes -----------------------------------------------------


def test_defaults_render_the_objects_of_deploy(helm: Path) -> None:
    docs = template(helm)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Service",
        ]
    )
    # Everything namespaced lives in the release namespace; nothing else (no custom resource).
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]
    assert container(docs)["image"] == f"readiness-operator:{VERSION}"


def test_the_operator_pod_is_the_one_deploy_runs(helm: Path) -> None:
    docs = template(helm)
    ours = only(docs, "Deployment")["spec"]
    theirs = next(d for d in deploy_docs() if d["kind"] == "Deployment")["spec"]
    assert ours["replicas"] == theirs["replicas"]
    pod, their_pod = ours["template"]["spec"], theirs["template"]["spec"]
    for key in (
        "serviceAccountName",
        "automountServiceAccountToken",
        "terminationGracePeriodSeconds",
        "securityContext",
        "volumes",
    ):
        assert pod[key] == their_pod[key], key
    assert ours["template"]["metadata"]["annotations"] == theirs["template"]["metadata"]["annotations"]
    (their_container,) = their_pod["containers"]
    ours_c = container(docs)
    for key in (
        "name",
        "args",
        "ports",
        "startupProbe",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "securityContext",
        "volumeMounts",
    ):
        assert ours_c[key] == their_container[key], key
    # deploy/'s environment, and every other setting spelled out with the operator's default.
    their_env = {e["name"]: e.get("value") for e in their_container["env"]}
    assert their_env.items() <= env(docs).items()
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in ours_c["env"]
    # The replicas spread over nodes, selected by this release's labels.
    spread = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    selector = ours["selector"]["matchLabels"]
    assert spread[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    assert selector.items() <= ours["template"]["metadata"]["labels"].items()


def test_cluster_wide_rbac_is_exactly_deploys(helm: Path) -> None:
    docs = template(helm)
    theirs = next(d for d in deploy_docs() if d["kind"] == "ClusterRole")
    assert grants(only(docs, "ClusterRole")["rules"]) == grants(theirs["rules"])
    binding = only(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == only(docs, "ClusterRole")["metadata"]["name"]
    account = only(docs, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}
    ]
    assert only(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == account["name"]


def test_peering_follows_the_replicas(helm: Path) -> None:
    two = template(helm)
    assert env(two)["READINESS_PEERING"] == "readiness-operator"  # the full name
    pdb = only(two, "PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] == 1
    assert pdb["selector"] == only(two, "Deployment")["spec"]["selector"]
    one = template(helm, "--set", "replicas=1")
    assert env(one)["READINESS_PEERING"] == ""  # standalone
    assert not [d for d in one if d["kind"] == "PodDisruptionBudget"]
    assert "affinity" not in only(one, "Deployment")["spec"]["template"]["spec"]
    named = template(helm, "--set", "replicas=1", "--set", "settings.peering=shard-a")
    assert env(named)["READINESS_PEERING"] == "shard-a"
    other = template(helm, release="shard-b")
    assert env(other)["READINESS_PEERING"] == "shard-b-readiness-operator"


def test_metrics_service_selects_the_pods_and_their_metrics_port(helm: Path) -> None:
    docs = template(helm)
    service = only(docs, "Service")
    assert service["metadata"]["name"] == "readiness-operator-metrics"  # the job deploy's alerts watch
    labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container(docs)["ports"]}
    assert port["port"] == 9090


# --- settings ----------------------------------------------------------------------------------


def test_every_operator_setting_has_a_chart_value_with_the_operators_default() -> None:
    """A new field in Settings fails here until values.yaml and its schema say how to set it
    from the chart."""
    chart_settings = values()["settings"]
    fields = set(Settings.model_fields) - {"namespaces"}  # the chart's watchNamespaces list
    assert set(chart_settings) == {camel(f) for f in fields}
    assert "watchNamespaces" in values()
    for field in fields:
        default = Settings.model_fields[field].default
        assert chart_settings[camel(field)] == default, field
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["settings"]
    assert set(schema["properties"]) == set(chart_settings)
    assert set(schema["required"]) == set(chart_settings)


def test_every_setting_is_rendered_to_its_environment_variable(helm: Path) -> None:
    rendered = env(template(helm))
    assert {f"READINESS_{field.upper()}" for field in Settings.model_fields} <= set(rendered)
    # What the container gets is what the operator reads: each value parses as its setting.
    readiness = {
        k.removeprefix("READINESS_").lower(): v for k, v in rendered.items() if k.startswith("READINESS_")
    }
    parsed = Settings(**readiness)  # type: ignore[arg-type]
    for field in Settings.model_fields:
        if field not in ("peering",):
            assert getattr(parsed, field) == Settings.model_fields[field].default, field
    changed = env(template(helm, "--set", "settings.workers=7", "--set", "settings.resyncSeconds=42.5"))
    assert changed["READINESS_WORKERS"] == "7"
    assert changed["READINESS_RESYNC_SECONDS"] == "42.5"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--set", "settings.workres=8"], "additional properties 'workres' not allowed"),
        (["--set", "settings.workers=0"], "minimum"),
        (["--set", "settings.logLevel=verbose"], "/settings/logLevel"),
        (["--set", "replica=3"], "additional properties 'replica' not allowed"),
        (["--set", "watchNamespaces[0]=Shop"], "/watchNamespaces/0"),
        (["--set", "settings.shutdownSeconds=30"], "must stay below terminationGracePeriodSeconds"),
        (["--set", "serviceAccount.create=false"], "serviceAccount.name is required"),
        (
            ["--set", "metrics.service.enabled=false", "--set", "monitoring.serviceMonitor.enabled=true"],
            "needs metrics.service.enabled",
        ),
        (["--set", "settings.webhook=local"], "/settings/webhook"),
        (["--set", "webhook.secretNmae=x"], "additional properties 'secretNmae' not allowed"),
        (["--set", "webhook.timeoutSeconds=60"], "/webhook/timeoutSeconds"),
        (
            [*ON, "--set", "webhook.certManager.enabled=false"],
            "webhook.caBundle is required when webhook.certManager.enabled is false",
        ),
        (
            [*ON, "--set", "webhook.certManager.issuerRef.kind=ClusterIssuer"],
            "webhook.certManager.issuerRef.name is required",
        ),
    ],
)
def test_bad_values_are_refused_naming_what_is_wrong(helm: Path, args: list[str], error: str) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), *args, check=False)
    assert result.returncode != 0
    assert error in result.stderr, result.stderr


def test_image_is_set_by_repository_and_tag_or_digest(helm: Path) -> None:
    repo = "registry.example.com/platform/readiness-operator"
    docs = template(helm, "--set", f"image.repository={repo}", "--set", "image.tag=1.2.3")
    assert container(docs)["image"] == f"{repo}:1.2.3"
    digest = "sha256:" + "a" * 64
    docs = template(helm, "--set", f"image.repository={repo}", "--set", f"image.digest={digest}")
    assert container(docs)["image"] == f"{repo}@{digest}"
    assert container(docs)["imagePullPolicy"] == "IfNotPresent"


# --- watched namespaces, one replica, monitoring ---------------------------------------------


def test_named_namespaces_get_roles_and_only_cluster_reads_stay_cluster_wide(helm: Path) -> None:
    docs = template(helm, "-f", str(NAMESPACED_VALUES), namespace="ops")
    assert env(docs)["READINESS_NAMESPACES"] == "shop,payments"
    roles = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "Role"}
    bindings = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == {"shop", "payments"}
    account = only(docs, "ServiceAccount")["metadata"]["name"]
    for ns, binding in bindings.items():
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": roles[ns]["metadata"]["name"],
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "ops"}]
    deploy_grants = grants(next(d for d in deploy_docs() if d["kind"] == "ClusterRole")["rules"])
    cluster = grants(only(docs, "ClusterRole")["rules"])
    assert cluster == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
        ("", "namespaces"): {"list", "watch"},
        # The operator finds the served namespaces that lack its KopfPeering with one list.
        ("kopf.dev", "kopfpeerings"): {"list"},
    }
    for role in roles.values():
        namespaced = grants(role["rules"])
        # deploy/'s rules split by scope; a namespaced install has no ClusterKopfPeering.
        assert {k: namespaced.get(k, set()) | cluster.get(k, set()) for k in namespaced | cluster} == {
            k: v for k, v in deploy_grants.items() if k != ("kopf.dev", "clusterkopfpeerings")
        }
    assert only(docs, "Deployment")["spec"]["replicas"] == 1
    assert env(docs)["READINESS_PEERING"] == ""
    assert env(docs)["READINESS_LOG_LEVEL"] == "debug"
    assert env(docs)["OTEL_RESOURCE_ATTRIBUTES"] == "deployment.environment=staging"
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert container(docs)["image"] == "registry.example.com/platform/readiness-operator:0.1.0-rc.1"


CANDIDATES = ("shop", "payments", "team-a", "team-a-dev", "team-a-prod", "team-b-x", "kube-system", "other")


@pytest.mark.parametrize(
    ("listed", "served"),
    [
        ([], set(CANDIDATES)),
        (["shop"], {"shop"}),
        (["shop", "payments"], {"shop", "payments"}),
        (["team-a-*", "!team-a-dev"], {"team-a-prod"}),
        (["team-a*", "team-b-*", "!team-a-dev"], {"team-a", "team-a-prod", "team-b-x"}),
        (["!kube-system"], set(CANDIDATES) - {"kube-system"}),
    ],
)
def test_watched_namespaces_are_served_as_listed(helm: Path, listed: list[str], served: set[str]) -> None:
    """The list means "any of these, less the '!' ones", for the operator's own checks and for
    the patterns it hands kopf (in one kopf pattern only the first glob admits)."""
    from kopf._cogs.structs.references import NamespaceName, match_namespace

    args = ["--set-json", f"watchNamespaces={json.dumps(listed)}"]
    pattern = env(template(helm, *args))["READINESS_NAMESPACES"] or ""
    settings = Settings(namespaces=pattern)
    assert {ns for ns in CANDIDATES if settings.watches(ns)} == served, pattern
    if pattern:
        patterns = settings.kopf_namespaces()
        kopf_serves = {
            ns for ns in CANDIDATES if any(match_namespace(NamespaceName(ns), p) for p in patterns)
        }
        assert kopf_serves == served, patterns


def test_globs_keep_the_rbac_cluster_wide(helm: Path) -> None:
    docs = template(helm, "--set", "watchNamespaces={team-a-*,!team-a-dev}")
    assert env(docs)["READINESS_NAMESPACES"] == "team-a-*,!team-a-dev"
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding")]
    assert ("apps", "deployments") in grants(only(docs, "ClusterRole")["rules"])


def test_monitoring_is_deploys_aimed_at_this_release(helm: Path) -> None:
    assert not [d for d in template(helm) if d["kind"] in ("ServiceMonitor", "PrometheusRule", "ConfigMap")]
    docs = template(helm, "-f", str(NAMESPACED_VALUES), release="shard", namespace="ops")
    service = only(docs, "Service")
    monitor = only(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    ours = only(docs, "PrometheusRule")["spec"]
    theirs = yaml.safe_load((DEPLOY / "monitoring" / "prometheusrule.yaml").read_text())["spec"]
    # The same alerts; the one that watches the scrape job names this release's Service.
    job = service["metadata"]["name"]
    assert job == "shard-readiness-operator-metrics"
    expected = json.loads(
        json.dumps(theirs).replace('job=\\"readiness-operator-metrics\\"', f'job=\\"{job}\\"')
    )
    assert expected != theirs
    assert ours == expected
    dashboard = only(docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["dashboard.json"]) == json.loads(
        (DEPLOY / "monitoring" / "dashboard.json").read_text()
    )


# --- the admission webhook (settings.webhook=cluster): deploy/webhook/ for this release ------------


def services(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}


def webhook_patch() -> dict[str, Any]:
    """deploy/webhook/operator-patch.yaml as what it adds: env, ports, volumeMounts, volumes."""
    added: dict[str, Any] = {}
    for op in yaml.safe_load((WEBHOOK / "operator-patch.yaml").read_text()):
        added.setdefault(op["path"].removesuffix("/-").rsplit("/", 1)[1], []).append(op["value"])
    return added


def test_webhook_off_renders_none_of_its_objects(helm: Path) -> None:
    for args in ((), ("-f", str(NAMESPACED_VALUES))):
        docs = template(helm, *args)
        assert not [d for d in docs if d["kind"] in WEBHOOK_KINDS]
        assert not [name for name in services(docs) if name.endswith("-webhook")]
        assert env(docs)["READINESS_WEBHOOK"] == "off"
        assert "webhook" not in {p["name"] for p in container(docs)["ports"]}
        assert [m["name"] for m in container(docs)["volumeMounts"]] == ["tmp"]
        pod = only(docs, "Deployment")["spec"]["template"]["spec"]
        assert [v["name"] for v in pod["volumes"]] == ["tmp"]
        assert "fsGroup" not in pod["securityContext"]


def test_webhook_registers_the_configuration_the_operator_builds(helm: Path) -> None:
    """The same registration as readiness.webhook's webhook_configuration() (and so as
    deploy/webhook/), pointing at this release's Service in its namespace."""
    for release, namespace, args, watched in (
        (RELEASE, NAMESPACE, (), ""),
        ("shard", "ops", ("-f", str(NAMESPACED_VALUES)), "shop,payments"),
    ):
        docs = template(helm, *ON, *args, release=release, namespace=namespace)
        ours = only(docs, "MutatingWebhookConfiguration")
        service = {
            "name": f"{only(docs, 'Deployment')['metadata']['name']}-webhook",
            "namespace": namespace,
            "path": f"/{HANDLER_ID}",
            "port": 443,
        }
        built = webhook_configuration(
            ours["metadata"]["name"],
            {"service": service},
            namespace_selector(watched, exclude=("kube-system", namespace)),
        )
        (hook,) = ours["webhooks"]
        (expected,) = built["webhooks"]
        for key in (
            "name",
            "rules",
            "sideEffects",
            "failurePolicy",
            "timeoutSeconds",
            "reinvocationPolicy",
            "admissionReviewVersions",
            "matchPolicy",
            "namespaceSelector",
            "objectSelector",
            "clientConfig",
        ):
            assert hook[key] == expected[key], (release, key)
        assert hook == expected
        certificate = only(docs, "Certificate")["metadata"]["name"]
        assert ours["metadata"]["annotations"] == {
            "cert-manager.io/inject-ca-from": f"{namespace}/{certificate}"
        }
    # For the release deploy/ corresponds to, it is deploy/webhook/'s object but for Helm's labels.
    shipped = yaml.safe_load((WEBHOOK / "mutatingwebhookconfiguration.yaml").read_text())
    ours = only(template(helm, *ON), "MutatingWebhookConfiguration")
    for doc in (ours, shipped):
        del doc["metadata"]["labels"]
    assert ours == shipped


@pytest.mark.parametrize(
    ("release", "namespace"), [(RELEASE, NAMESPACE), ("shard", "ops")], ids=["deploy", "other"]
)
def test_webhook_objects_fit_together(helm: Path, release: str, namespace: str) -> None:
    docs = template(helm, *ON, release=release, namespace=namespace)
    (hook,) = only(docs, "MutatingWebhookConfiguration")["webhooks"]
    target = hook["clientConfig"]["service"]
    # The Service the configuration names: in the release namespace, 443 -> the pods' webhook port.
    service = services(docs)[target["name"]]
    assert service["metadata"]["namespace"] == target["namespace"] == namespace
    (port,) = service["spec"]["ports"]
    assert port["port"] == target["port"] == 443
    pod_template = only(docs, "Deployment")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod_template["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    assert ports[port["targetPort"]] == values()["settings"]["webhookPort"] == 9443
    # The operator serves cluster mode on that port with the certificate mounted where it reads it.
    rendered = env(docs)
    assert rendered["READINESS_WEBHOOK"] == "cluster"
    assert rendered["READINESS_WEBHOOK_PORT"] == "9443"
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["webhook-tls"] == {
        "name": "webhook-tls",
        "mountPath": rendered["READINESS_WEBHOOK_CERT_DIR"],
        "readOnly": True,
    }
    pod = pod_template["spec"]
    volume = {v["name"]: v for v in pod["volumes"]}["webhook-tls"]
    # root-owned 0440 files: the non-root operator reads them as the pod's fsGroup.
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    # cert-manager writes that Secret, for the Service's names, from the release's Issuer.
    certificate = only(docs, "Certificate")
    assert certificate["metadata"]["namespace"] == namespace
    assert certificate["spec"]["secretName"] == volume["secret"]["secretName"]
    assert certificate["spec"]["dnsNames"] == [
        f"{target['name']}.{namespace}.svc",
        f"{target['name']}.{namespace}.svc.cluster.local",
    ]
    issuer = only(docs, "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": issuer["metadata"]["name"]}
    if release != RELEASE:
        assert target["name"] == "shard-readiness-operator-webhook"
        return
    # The release deploy/ corresponds to gets deploy/webhook/'s objects and operator patch.
    theirs = {
        d["kind"]: d
        for path in sorted(WEBHOOK.glob("*.yaml"))
        for d in yaml.safe_load_all(path.read_text())
        if isinstance(d, dict)  # not operator-patch.yaml's list of operations
    }
    for kind, ours in (("Service", service), ("Issuer", issuer), ("Certificate", certificate)):
        assert ours["metadata"]["name"] == theirs[kind]["metadata"]["name"], kind
        if kind == "Service":  # the chart's pods are selected by release as well
            assert theirs[kind]["spec"]["selector"].items() <= ours["spec"]["selector"].items()
            assert ours["spec"]["ports"] == theirs[kind]["spec"]["ports"]
        else:
            assert ours["spec"] == theirs[kind]["spec"], kind
    added = webhook_patch()
    assert {e["name"]: e["value"] for e in added["env"]}.items() <= rendered.items()
    assert added["ports"][0] in container(docs)["ports"]
    assert added["volumeMounts"] == [mounts["webhook-tls"]]
    assert added["volumes"] == [volume]


def test_webhook_with_a_ca_of_your_own(helm: Path) -> None:
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
    docs = template(
        helm,
        *ON,
        "--set",
        "webhook.certManager.enabled=false",
        "--set",
        f"webhook.caBundle={ca}",
        "--set",
        "webhook.secretName=platform-webhook-tls",
    )
    assert not [d for d in docs if d["kind"] in ("Issuer", "Certificate")]
    config = only(docs, "MutatingWebhookConfiguration")
    assert "annotations" not in config["metadata"]
    (hook,) = config["webhooks"]
    assert hook["clientConfig"]["caBundle"] == ca
    assert hook["clientConfig"]["service"]["name"] in services(docs)
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    volume = {v["name"]: v for v in pod["volumes"]}["webhook-tls"]
    assert volume["secret"]["secretName"] == "platform-webhook-tls"


def test_webhook_values_reach_the_configuration(helm: Path) -> None:
    extra = {"key": "readiness.dev/admission", "operator": "NotIn", "values": ["off"]}
    docs = template(
        helm,
        *ON,
        "--set",
        "webhook.timeoutSeconds=3",
        "--set-json",
        f"webhook.namespaceSelector.matchExpressions=[{json.dumps(extra)}]",
        "--set",
        "webhook.namespaceSelector.matchLabels.tier=apps",
        "--set",
        "webhook.certManager.issuerRef.kind=ClusterIssuer",
        "--set",
        "webhook.certManager.issuerRef.name=platform-ca",
    )
    (hook,) = only(docs, "MutatingWebhookConfiguration")["webhooks"]
    assert hook["timeoutSeconds"] == 3
    built = namespace_selector("", exclude=("kube-system", NAMESPACE))
    assert hook["namespaceSelector"] == {
        "matchExpressions": [*built["matchExpressions"], extra],
        "matchLabels": {"tier": "apps"},
    }
    # An issuer of the platform's: no Issuer of the release.
    assert not [d for d in docs if d["kind"] == "Issuer"]
    assert only(docs, "Certificate")["spec"]["issuerRef"] == {"kind": "ClusterIssuer", "name": "platform-ca"}
    # In kube-system itself, the one namespace excluded is not listed twice.
    docs = template(helm, *ON, namespace="kube-system")
    (hook,) = only(docs, "MutatingWebhookConfiguration")["webhooks"]
    assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == ["kube-system"]
