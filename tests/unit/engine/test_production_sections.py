"""The production chapter's last four sections, decided by the engine: security (written like
any section, or only reported under mode Audit), images and secrets (findings only, and a
secret's value never appears anywhere), profiling (Grafana Alloy / Pyroscope annotations); and a
rollout whose new pods cannot start, found from the pods."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner

from readiness.cli import main
from readiness.control.rollouts import CANNOT_START, cannot_start, sightings
from readiness.engine import DeploymentView
from readiness.engine.evaluate import Evaluation, evaluate
from readiness.engine.secrets import secret_reason
from readiness.models import ServiceProfileSpec

PLANTED = "s3cr3t-planted-4f9a"  # a value no output may ever show

BODY: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "api", "namespace": "shop", "generation": 1, "labels": {"app": "api"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "api"}},
        "template": {
            "metadata": {"labels": {"app": "api"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "shop/api:1.4.2",
                        "ports": [
                            {"name": "http", "containerPort": 8080},
                            {"name": "pprof", "containerPort": 6060},
                        ],
                    }
                ]
            },
        },
    },
}


def deployment(**container: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    body["spec"]["template"]["spec"]["containers"][0].update(container)
    return body


def run(sections: dict[str, Any], body: dict[str, Any], **spec: Any) -> Evaluation:
    profile = ServiceProfileSpec.model_validate(
        {"selector": {"matchLabels": {"app": "api"}}, **spec, **sections}
    )
    return evaluate(profile, DeploymentView.from_body(body))


def app_of(apply: Mapping[str, Any] | None) -> dict[str, Any]:
    assert apply is not None
    (container,) = apply["spec"]["template"]["spec"]["containers"]
    return dict(container)


# ---- security ----

HARDENED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "dropAllCapabilities": True,
    "readOnlyRootFilesystem": True,
    "seccompProfile": "RuntimeDefault",
    "automountServiceAccountToken": False,
}
CONTEXT = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_security_is_written_in_the_one_apply() -> None:
    ev = run({"security": HARDENED}, deployment())
    assert app_of(ev.apply)["securityContext"] == CONTEXT
    assert ev.apply is not None
    assert ev.apply["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert {v.check for v in ev.violations} == {
        "security.runAsNonRoot.missing",
        "security.allowPrivilegeEscalation.missing",
        "security.capabilities.missing",
        "security.readOnlyRootFilesystem.missing",
        "security.seccompProfile.missing",
        "security.automountServiceAccountToken.missing",
    }


def test_a_hardened_deployment_is_compliant_and_gets_no_apply() -> None:
    body = deployment(securityContext=CONTEXT)
    body["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    ev = run({"security": HARDENED}, body)
    assert (ev.violations, ev.apply) == ((), None)


@pytest.mark.parametrize("where", ["section", "profile"])
def test_security_in_mode_audit_is_reported_and_never_written(where: str) -> None:
    sections = {"security": {**HARDENED, "mode": "Audit"}} if where == "section" else {"security": HARDENED}
    spec = {"mode": "Audit"} if where == "profile" else {}
    ev = run({**sections, "logging": {"level": "info"}}, deployment(), **spec)
    assert "security.runAsNonRoot.missing" in {v.check for v in ev.violations}
    if where == "section":  # the profile still enforces its other sections
        assert ev.apply is not None
        assert "securityContext" not in app_of(ev.apply)
        assert "automountServiceAccountToken" not in ev.apply["spec"]["template"]["spec"]
        assert ev.changes == ("logging.env",)


def test_capabilities_the_team_adds_stay_theirs() -> None:
    body = deployment(securityContext={"capabilities": {"add": ["NET_BIND_SERVICE"]}})
    ev = run({"security": {"dropAllCapabilities": True}}, body)
    assert app_of(ev.apply)["securityContext"] == {"capabilities": {"drop": ["ALL"]}}, (
        "add is not in the apply"
    )


def test_a_security_field_another_manager_chose_is_reported_under_report() -> None:
    body = deployment(securityContext={"runAsNonRoot": False})
    body["metadata"]["managedFields"] = [
        {
            "manager": "argocd-controller",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": "2026-01-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:spec": {
                    "f:template": {
                        "f:spec": {
                            "f:containers": {
                                'k:{"name":"app"}': {
                                    ".": {},
                                    "f:name": {},
                                    "f:securityContext": {"f:runAsNonRoot": {}},
                                }
                            }
                        }
                    }
                }
            },
        }
    ]
    ev = run({"security": {"runAsNonRoot": True}}, body)
    assert [c.manager for c in ev.conflicts] == ["argocd-controller"]
    assert ev.apply is None


# ---- images ----


@pytest.mark.parametrize(
    ("image", "forbid_latest", "require_digest", "checks"),
    [
        ("shop/api:1.4.2", True, False, []),
        ("shop/api:latest", True, False, ["images.latest"]),
        ("shop/api", True, False, ["images.latest"]),
        ("registry.example:5000/shop/api", True, False, ["images.latest"]),
        ("registry.example:5000/shop/api:2.0", True, False, []),
        ("shop/api:latest", False, False, []),
        ("shop/api:1.4.2", True, True, ["images.digest"]),
        ("shop/api@sha256:" + "a" * 64, True, True, []),
        ("shop/api:latest@sha256:" + "a" * 64, True, True, []),
        ("shop/api", True, True, ["images.latest", "images.digest"]),
    ],
)
def test_image_references(image: str, forbid_latest: bool, require_digest: bool, checks: list[str]) -> None:
    images = {"forbidLatest": forbid_latest, "requireDigest": require_digest}
    ev = run({"images": images}, deployment(image=image))
    assert [v.check for v in ev.violations] == checks
    assert ev.apply is None, "an image is never rewritten"
    for v in ev.violations:
        assert v.field == "spec.template.spec.containers[app].image"
        assert image in v.message


# ---- secrets ----


@pytest.mark.parametrize(
    ("name", "value", "found"),
    [
        ("DB_PASSWORD", PLANTED, True),
        ("db-passwd", PLANTED, True),
        ("CLIENT_SECRET", PLANTED, True),
        ("GITHUB_TOKEN", PLANTED, True),
        ("STRIPE_API_KEY", PLANTED, True),
        ("ApiKey", PLANTED, True),
        ("TLS_PRIVATE_KEY", PLANTED, True),
        ("AWS_CREDENTIALS", PLANTED, True),
        ("DATABASE_URL", f"postgres://app:{PLANTED}@db:5432/shop", True),
        ("DATABASE_URL", "postgres://db:5432/shop", False),
        ("TOKEN_FILE", "/var/run/secrets/token", False),
        ("SECRET_PATH", "/etc/app/secret", False),
        ("LOG_LEVEL", "info", False),
        ("PASSWORD", "", False),
    ],
)
def test_which_literal_values_look_like_secrets(name: str, value: str, found: bool) -> None:
    assert (secret_reason(name, value) is not None) is found


def test_a_literal_secret_is_a_violation_naming_the_variable_never_the_value() -> None:
    env = [
        {"name": "DB_PASSWORD", "value": PLANTED},
        {"name": "DATABASE_URL", "value": f"postgres://app:{PLANTED}@db/shop"},
        {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
        {"name": "LOG_LEVEL", "value": "info"},
    ]
    ev = run({"secrets": {}}, deployment(env=env))
    assert [(v.check, v.field) for v in ev.violations] == [
        ("secrets.literal", "spec.template.spec.containers[app].env[DB_PASSWORD]"),
        ("secrets.literal", "spec.template.spec.containers[app].env[DATABASE_URL]"),
    ]
    assert ev.apply is None
    assert PLANTED not in repr(ev)


def test_the_audit_never_prints_a_planted_secret_in_any_format(tmp_path: Any) -> None:
    body = deployment(env=[{"name": "DB_PASSWORD", "value": PLANTED}])
    profile = {
        "apiVersion": "readiness.dev/v1alpha1",
        "kind": "ServiceProfile",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "api"}}, "secrets": {}, "images": {}},
    }
    manifests = tmp_path / "app.yaml"
    manifests.write_text(json.dumps(body) + "\n---\n" + json.dumps(profile))
    for output in ("text", "json", "sarif"):
        result = CliRunner().invoke(main, ["audit", "-o", output, str(manifests)])
        assert result.exit_code == 1, result.output
        assert "secrets.literal" in result.output
        assert "DB_PASSWORD" in result.output
        assert PLANTED not in result.output, output


# ---- profiling ----


def test_profiling_annotations_by_port_name() -> None:
    ev = run({"profiling": {"port": "pprof", "profiles": ["cpu", "memory"]}}, deployment())
    assert ev.apply is not None
    assert ev.apply["spec"]["template"]["metadata"]["annotations"] == {
        "profiles.grafana.com/cpu.scrape": "true",
        "profiles.grafana.com/cpu.port_name": "pprof",
        "profiles.grafana.com/cpu.path": "/debug/pprof/profile",
        "profiles.grafana.com/memory.scrape": "true",
        "profiles.grafana.com/memory.port_name": "pprof",
        "profiles.grafana.com/memory.path": "/debug/pprof/allocs",
    }


def test_profiling_annotations_by_port_number_under_another_path() -> None:
    ev = run(
        {"profiling": {"port": 6060, "path": "/internal/pprof/", "profiles": ["goroutine"]}}, deployment()
    )
    assert ev.apply is not None
    assert ev.apply["spec"]["template"]["metadata"]["annotations"] == {
        "profiles.grafana.com/goroutine.scrape": "true",
        "profiles.grafana.com/goroutine.port": "6060",
        "profiles.grafana.com/goroutine.path": "/internal/pprof/goroutine",
    }


def test_a_profiling_port_the_containers_lack_is_invalid() -> None:
    ev = run({"profiling": {"port": "debug"}}, deployment())
    assert [p.check for p in ev.problems] == ["profiling.port.unknown"]
    assert ev.apply is None


# ---- a rollout whose new pods cannot start ----

SINCE = 1_800_000_000.0


def pod(name: str, created: float, reason: str | None, deleting: bool = False) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(created, UTC)
    meta: dict[str, Any] = {"name": name, "creationTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if deleting:
        meta["deletionTimestamp"] = meta["creationTimestamp"]
    state = {
        "waiting": {"reason": reason, "message": "container has runAsNonRoot and image will run as root"}
    }
    return {
        "metadata": meta,
        "status": {"containerStatuses": [{"name": "app", "state": state if reason else {}}]},
    }


@pytest.mark.parametrize(
    ("pods", "failed"),
    [
        ([pod("new", SINCE + 2, "CreateContainerConfigError")], True),
        ([pod("new", SINCE, "InvalidImageName")], True),
        ([pod("old", SINCE - 60, "CreateContainerConfigError")], False),
        ([pod("new", SINCE + 2, "ContainerCreating")], False),
        ([pod("new", SINCE + 2, "ImagePullBackOff")], False),
        ([pod("new", SINCE + 2, "CreateContainerConfigError", deleting=True)], False),
        ([pod("new", SINCE + 2, "RunContainerError")], False),  # may pass: seen once
        ([pod("old", SINCE - 60, None), pod("new", SINCE + 1, "InvalidImageName")], True),
    ],
)
def test_which_new_pods_cannot_start(pods: list[dict[str, Any]], failed: bool) -> None:
    why = cannot_start(pods, SINCE)
    assert (why is not None) is failed
    if why is not None:
        assert "new" in why
        assert any(reason in why for reason in CANNOT_START)


def test_a_reason_that_may_pass_fails_the_rollout_when_the_next_look_finds_it_again() -> None:
    first = [pod("new", SINCE + 2, "CreateContainerError")]
    assert cannot_start(first, SINCE) is None
    before = sightings(first, SINCE)
    assert cannot_start(first, SINCE, before) is not None
    other = [pod("other", SINCE + 3, "CreateContainerError")]
    assert cannot_start(other, SINCE, before) is None, "another pod: seen once"


@pytest.mark.parametrize(
    "context",
    [{"privileged": True}, {"capabilities": {"add": ["SYS_ADMIN"]}}],
    ids=["privileged", "sys-admin"],
)
def test_no_privilege_escalation_is_not_asked_of_a_container_the_apiserver_would_refuse_it_for(
    context: dict[str, Any],
) -> None:
    ev = run(
        {"security": {"allowPrivilegeEscalation": False, "runAsNonRoot": True}},
        deployment(securityContext=context),
    )
    assert [v.check for v in ev.violations] == [
        "security.allowPrivilegeEscalation.privileged",
        "security.runAsNonRoot.missing",
    ]
    written = app_of(ev.apply)["securityContext"]
    assert written == {"runAsNonRoot": True}, "the rest of the section still applies"


def test_fgprof_is_fetched_beside_pprof() -> None:
    ev = run({"profiling": {"port": "pprof", "profiles": ["fgprof"]}}, deployment())
    assert ev.apply is not None
    assert (
        ev.apply["spec"]["template"]["metadata"]["annotations"]["profiles.grafana.com/fgprof.path"]
        == "/debug/fgprof"
    )
