"""`readiness audit` refuses what the apiserver refuses: the invalid-profile corpus that
tests/e2e/test_admission.py sends to the real apiserver, run through audit, naming the same field
with the same words; and every CEL rule of the CRD evaluated, none skipped."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from tests.support.profile_corpus import CORPUS, VALID, manifest, merged

from readiness.audit.validation import ProfileValidator, cel_rules
from readiness.cli import main
from readiness.models.crd import build_crd

# Every section, every optional node that carries a rule: each rule of the CRD applies to it.
FULL: dict[str, Any] = merged(
    VALID,
    {
        "selector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]},
        "probes": {
            "readiness": {"port": 8080},
            "startup": {"type": "grpc", "port": "grpc", "failureThreshold": 30},
        },
        "resources": {"limits": {"cpu": "2", "memory": "256Mi"}},
        "tracing": {"propagators": ["tracecontext", "baggage"], "serviceName": "api"},
        "rollout": {"maxConcurrent": 3, "onFailure": "Pause"},
        "security": {"mode": "Audit", "runAsNonRoot": True, "dropAllCapabilities": True},
        "profiling": {"port": "pprof", "profiles": ["cpu", "mutex"]},
    },
)


def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"])


def audit_stdin(text: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["audit", "-"], input=text)
    return result.exit_code, result.stderr.splitlines()


def test_the_corpus_is_large_and_shared() -> None:
    assert len(CORPUS) >= 40
    assert len({case["name"] for case in CORPUS}) == len(CORPUS)


def test_the_valid_base_passes() -> None:
    code, errors = audit_stdin(manifest("shop", "base", VALID))
    assert (code, errors) == (0, [])
    model, refusals = ProfileValidator().check(VALID)
    assert model is not None
    assert refusals == []


@pytest.mark.parametrize("case", CORPUS, ids=[case["name"] for case in CORPUS])
def test_an_invalid_profile_is_refused_naming_the_field(case: dict[str, Any]) -> None:
    code, errors = audit_stdin(manifest("shop", case["name"], merged(VALID, case["spec"])))
    assert code == 2, f"accepted: {case['spec']}"
    named = [e for e in errors if f"ServiceProfile shop/{case['name']}: {case['field']}: " in e]
    assert named, f"{case['field']} not named in {errors}"
    assert any(case["says"] in e for e in named), f"{case['says']!r} not said in {named}"
    assert all(e.startswith("error: <stdin>:") for e in errors), "each error names the file and line"


def test_every_cel_rule_of_the_crd_is_evaluated_and_none_is_beyond_us() -> None:
    """A new CEL rule (or one using a Kubernetes CEL function audit lacks) fails here."""
    rules = {rule["rule"] for _, rule in cel_rules(spec_schema())}
    outcomes = ProfileValidator().outcomes(FULL)
    assert {o.rule for o in outcomes} == rules, "FULL reaches every node that carries a rule"
    assert [o for o in outcomes if o.error or not o.passed] == []
    assert ProfileValidator().check(FULL)[1] == []


def test_a_rule_that_cannot_be_evaluated_refuses_rather_than_passes() -> None:
    schema = spec_schema()
    schema["properties"]["selector"] = {
        **schema["properties"]["selector"],
        "x-kubernetes-validations": [{"rule": "self.isShiny()", "message": "must shine"}],
    }
    model, errors = ProfileValidator(schema).check(VALID)
    assert model is None
    [error] = errors
    assert error.field == "spec.selector"
    assert error.message.startswith("could not check the rule `self.isShiny()`: ")


@pytest.mark.parametrize(
    ("quantity", "valid"),
    [
        ("100m", True),
        ("0.5", True),
        (".5", True),
        ("5.", True),
        ("+1", True),
        ("1e3", True),
        ("1Ki", True),
        ("2Gi", True),
        ("1n", True),
        (2, True),
        ("256MB", False),
        ("1KI", False),
        ("two", False),
        ("", False),
        ("1 Gi", False),
        ("1.2.3", False),
        ("Mi", False),
        ("-1", False),
    ],
)
def test_quantities_are_kubernetes_quantities(quantity: str | int, valid: bool) -> None:
    spec = merged(VALID, {"resources": {"requests": {"cpu": quantity}, "limits": {"cpu": "4Ki"}}})
    errors = ProfileValidator().check(spec)[1]
    refused = [e for e in errors if e.field == "spec.resources.requests.cpu"]
    assert not refused if valid else refused, errors


def test_types_are_checked_as_strictly_as_the_openapi_schema() -> None:
    admission = ProfileValidator()
    [error] = admission.check(merged(VALID, {"probes": {"readiness": {"periodSeconds": "5"}}}))[1]
    assert str(error) == 'spec.probes.readiness.periodSeconds: must be of type integer, not string "5"'
    # kubectl sends YAML as JSON: 5.0 arrives as 5; a null is pruned, so a required field is missing.
    assert admission.check(merged(VALID, {"probes": {"readiness": {"periodSeconds": 5.0}}}))[1] == []
    [error] = admission.check({**VALID, "probes": {**VALID["probes"], "port": None}})[1]
    assert error.field == "spec.probes.port"
    assert error.message.startswith("Required value")
    [error] = admission.check(merged(VALID, {"probes": {"port": 1.5}}))[1]
    assert str(error) == "spec.probes.port: must be of type integer or string, not number 1.5"


def test_a_rule_the_model_also_has_is_said_once() -> None:
    errors = ProfileValidator().check(merged(VALID, {"rollout": {"maxConcurrent": 0}}))[1]
    assert [str(e) for e in errors] == [
        "spec.rollout.maxConcurrent: must be a whole number of Deployments (at least 1) or a percentage "
        "from 1% to 100%, not 0"
    ]


def test_errors_say_how_to_fix_them() -> None:
    errors = ProfileValidator().check(merged(VALID, {"probez": {}, "probes": {"port": None}}))[1]
    assert [str(e) for e in errors] == [
        "spec.probes.port: Required value: set it (`kubectl explain serviceprofile.spec.probes.port` "
        "describes it)",
        'spec.probez: unknown field "spec.probez": remove it or correct its name (`kubectl explain '
        "serviceprofile.spec` lists the fields)",
    ]
