"""`readiness audit` as CI runs it: what it reads, what it reports, and how it exits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from tests.support.manifests import DEPLOYMENT
from tests.support.paths import ROOT

from readiness.audit.findings import UNSELECTED, audit
from readiness.audit.manifests import parse
from readiness.cli import main

EXAMPLES = ROOT / "examples"
PROFILE = """
apiVersion: readiness.dev/v1alpha1
kind: ServiceProfile
metadata: {name: p, namespace: shop}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: payments}}
  containers: [app]
  logging: {level: %s}
"""
LOGGING_PROFILE = """\
apiVersion: readiness.dev/v1alpha1
kind: ServiceProfile
metadata: {name: logs, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  logging: {level: info}
"""


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["audit", *args], input=stdin)


def payments_only(text: str) -> str:
    return "\n---\n".join(d for d in text.split("\n---\n") if "name: payments" in d)


# ---- the verdicts, as the operator reaches them ----


def test_audit_lists_findings_and_fails_the_build() -> None:
    result = run(str(EXAMPLES / "10-deployments.yaml"), str(EXAMPLES / "20-profiles.yaml"))
    assert result.exit_code == 1
    assert "10-deployments.yaml:3: checkout-api (profile shop/checkout): 12 finding(s)" in result.output
    assert "shutdown.grace.too-short" in result.output
    assert "missing OTEL_EXPORTER_OTLP_ENDPOINT" in result.output
    assert result.output.rstrip().endswith(
        "3 Deployment(s): 0 compliant, 3 not compliant, 0 unselected; exit 1"
    )


def test_audit_passes_compliant_manifests_and_rejects_bad_profiles() -> None:
    deployments = (EXAMPLES / "10-deployments.yaml").read_text()
    compliant = deployments.replace("- {name: LOG_LEVEL, value: debug}", "- {name: LOG_LEVEL, value: info}")
    ok = run("-", stdin=payments_only(compliant) + "\n---\n" + PROFILE % "info")
    assert ok.exit_code == 0, ok.output
    assert "payments (profile shop/p): compliant" in ok.output
    bad = run("-", stdin=PROFILE % "loud")
    assert bad.exit_code == 2
    assert bad.stderr.splitlines() == [
        'error: <stdin>:8: ServiceProfile shop/p: spec.logging.level: Unsupported value: "loud": '
        'supported values: "debug", "info", "warn", "error"'
    ]


def test_audit_and_operator_agree_on_a_deployment_two_profiles_select() -> None:
    payments = payments_only((EXAMPLES / "10-deployments.yaml").read_text())
    rival = (PROFILE % "info").replace("name: p,", "name: q,")
    result = run("-", stdin=f"{payments}\n---\n{PROFILE % 'info'}\n---\n{rival}")
    assert result.exit_code == 1, result.output
    assert (
        "payments (profile shop/p): ambiguous: also selected by ServiceProfile q; neither applies"
        in result.output
    )
    assert (
        "payments (profile shop/q): ambiguous: also selected by ServiceProfile p; neither applies"
        in result.output
    )
    assert "finding(s)" not in result.output, "no contradictory findings: neither profile applies"


def test_a_deployment_no_profile_selects_is_listed_and_fails_only_when_a_profile_is_required() -> None:
    manifests = DEPLOYMENT.format(name="orders", app="orders") + "---\n" + LOGGING_PROFILE
    listed = run("-", stdin=manifests)
    assert listed.exit_code == 0, listed.output
    assert (
        "<stdin>:1: orders (no profile): unselected: no ServiceProfile of namespace shop in these "
        "manifests selects it" in listed.output
    )
    required = run("--require-profile", "-", stdin=manifests)
    assert required.exit_code == 1, required.output
    assert "(a profile is required); exit 1" in required.output


def test_a_refused_profile_is_named_where_its_deployments_go_unselected() -> None:
    refused = LOGGING_PROFILE.replace("level: info", "level: loud")
    result = run("-", stdin=DEPLOYMENT.format(name="api", app="api") + "---\n" + refused)
    assert result.exit_code == 2
    assert "unselected: no ServiceProfile of namespace shop in these manifests selects it " in result.output
    assert "(refused, so not applied: logs)" in result.output


def test_audit_is_a_library_function() -> None:
    documents = [
        *yaml.safe_load_all(DEPLOYMENT.format(name="api", app="api")),
        *yaml.safe_load_all(LOGGING_PROFILE),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
        "not a mapping",
    ]
    result = audit(documents)
    assert result.exit_code == 0
    [finding] = result.findings
    assert (finding.namespace, finding.deployment, finding.profile, finding.state) == (
        "shop",
        "api",
        "logs",
        "Compliant",
    )
    assert finding.evaluation is not None
    assert finding.evaluation.apply is None, "nothing to write"
    alone = audit(yaml.safe_load_all(DEPLOYMENT.format(name="api", app="api")), require_profile=True)
    assert [f.state for f in alone.findings] == [UNSELECTED]
    assert alone.exit_code == 1


def test_objects_without_a_namespace_take_the_one_given() -> None:
    unnamespaced = DEPLOYMENT.format(name="api", app="api").replace("  namespace: shop\n", "")
    profile = LOGGING_PROFILE.replace("namespace: shop", "namespace: other")
    assert run("-", stdin=unnamespaced + "---\n" + profile).output.count("(no profile): unselected") == 1
    moved = run("-n", "other", "-", stdin=unnamespaced + "---\n" + profile)
    assert moved.exit_code == 0, moved.output
    assert "api (profile other/logs): compliant" in moved.output


# ---- what it reads ----


def test_directories_are_read_recursively_and_other_documents_ignored(tmp_path: Path) -> None:
    (tmp_path / "apps" / "api").mkdir(parents=True)
    (tmp_path / "apps" / "api" / "deploy.yml").write_text(DEPLOYMENT.format(name="api", app="api"))
    (tmp_path / "profiles.json").write_text(json.dumps(yaml.safe_load(LOGGING_PROFILE)))
    (tmp_path / "values.yaml").write_text("replicaCount: 3\nimage: {tag: latest}\n")
    (tmp_path / "kustomization.yaml").write_text("resources: [apps/api/deploy.yml]\n")
    (tmp_path / "README.md").write_text("# not a manifest: {{ }}\n")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "ci.yaml").write_text("on: [push]\njobs: {x: [unclosed\n")
    result = run(str(tmp_path))
    assert result.exit_code == 0, result.output
    assert f"{tmp_path}/apps/api/deploy.yml:1: api (profile shop/logs): compliant" in result.output


def test_stdin_is_read_without_an_argument() -> None:
    result = run(stdin=DEPLOYMENT.format(name="api", app="api") + "---\n" + LOGGING_PROFILE)
    assert result.exit_code == 0, result.output
    assert "<stdin>:1: api (profile shop/logs): compliant" in result.output


def test_kubectl_lists_are_expanded_at_any_depth() -> None:
    api, orders = (yaml.safe_load(DEPLOYMENT.format(name=n, app=n)) for n in ("api", "orders"))
    typed = {k: v for k, v in orders.items() if k not in ("apiVersion", "kind")}  # as the API lists them
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            api,
            yaml.safe_load(LOGGING_PROFILE),
            {"apiVersion": "apps/v1", "kind": "DeploymentList", "items": [typed]},
        ],
    }
    text = yaml.safe_dump(listing, sort_keys=False)
    documents, errors = parse(text, "list.yaml")
    assert errors == []
    assert [(d.kind, d.metadata["name"]) for d in documents] == [
        ("Deployment", "api"),
        ("ServiceProfile", "logs"),
        ("Deployment", "orders"),
    ]
    lines = text.splitlines()
    assert [lines[d.line - 1] for d in documents] == [
        "- apiVersion: apps/v1",
        "- apiVersion: readiness.dev/v1alpha1",
        "  - metadata:",
    ], "each item starts where the List has it"
    result = run("-", stdin=text)
    assert result.exit_code == 0, result.output
    assert "api (profile shop/logs): compliant" in result.output
    assert "orders (no profile): unselected" in result.output


def test_a_field_is_located_at_its_own_line() -> None:
    [doc] = parse(DEPLOYMENT.format(name="api", app="api"), "d.yaml")[0]
    assert doc.line_of("spec.template.spec.containers[app].env[LOG_LEVEL]") == 17
    assert doc.line_of("spec.template.spec.containers[app].readinessProbe") == 13, (
        "the container: no probe yet"
    )
    assert doc.line_of("spec.template.spec.containers[app].ports[http]") == 15, "a flow list: its line"
    assert doc.line_of("spec.template.spec.containers[0].image") == 14
    assert doc.line_of("spec.nothing.here") == 7
    assert doc.line_of("") == 1


# ---- bad input: exit 2, one line per error, never a traceback ----


def _deployment_with(**changes: object) -> str:
    body = yaml.safe_load(DEPLOYMENT.format(name="api", app="api"))
    body["spec"]["template"]["spec"]["containers"][0].update(changes.pop("container", {}))
    body["spec"]["template"]["spec"].update(changes)
    return yaml.safe_dump(body, sort_keys=False)


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n  data: [\n", 4),
        ("apiVersion: v1\nkind: Pod\nmetadata:\n\tname: x\n", 4),
        ("a: 1\nb: *nowhere\n", 2),
        ("---\nkind: Pod\n---\nkind: Pod\n  metadata: x\n", 5),
    ],
    ids=["unclosed-flow", "tab", "undefined-alias", "bad-indentation"],
)
def test_yaml_that_does_not_parse_is_one_line_at_its_line(tmp_path: Path, content: str, line: int) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(content)
    result = run(str(path), "-", stdin=LOGGING_PROFILE)
    assert result.exit_code == 2, result.output
    [error] = result.stderr.splitlines()
    assert error.startswith(f"error: {path}:{line}: is not valid YAML: "), error
    assert error.endswith("; fix the syntax at that line")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            _deployment_with(containers=7),
            "spec.template.spec.containers: Required value (at least one container)",
        ),
        (
            _deployment_with(container={"ports": [{"name": "http", "containerPort": "http"}]}),
            "spec.template.spec.containers[0].ports[].containerPort must be of type integer",
        ),
        (
            _deployment_with(container={"env": {"LOG_LEVEL": "info"}}),
            "spec.template.spec.containers[0].env must be a list of objects with name",
        ),
        (
            _deployment_with(container={"resources": {"limits": "lots"}}),
            "spec.template.spec.containers[0].resources.limits must be of type object",
        ),
    ],
    ids=["containers-not-a-list", "port-not-a-number", "env-a-map", "limits-a-string"],
)
def test_a_deployment_the_apiserver_would_refuse_is_an_input_error(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(content)
    profile = LOGGING_PROFILE.replace("logging: {level: info}", "resources: {limits: {memory: 1Gi}}")
    result = run(str(path), "-", stdin=profile)
    assert result.exit_code == 2, result.output
    [error] = result.stderr.splitlines()
    assert error.startswith(f"error: {path}:1: Deployment shop/api: {expected}"), error
    assert "Traceback" not in result.output


def test_a_missing_file_and_an_empty_directory_are_input_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run(str(tmp_path / "nope.yaml"), str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path}/nope.yaml: no such file or directory; check the path (a directory is read "
        "recursively for *.yaml, *.yml and *.json, `-` reads stdin)",
        f"error: {tmp_path}/empty: no *.yaml, *.yml, *.json file in this directory; name the files or the "
        "directory that holds the manifests",
    ]


def test_a_shape_the_engine_cannot_read_is_an_input_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def choke(*_: object) -> None:
        raise AttributeError("'str' object has no attribute 'get'")

    monkeypatch.setattr("readiness.audit.findings.judge", choke)
    result = run("-", stdin=DEPLOYMENT.format(name="api", app="api"))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: <stdin>:1: Deployment shop/api: is not a valid apps/v1 Deployment (AttributeError: 'str' "
        "object has no attribute 'get'); check it with `kubectl apply --dry-run=server -f`"
    ]


def test_unreadable_input_is_named(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("metadata: {name: caf\xe9}\n".encode("latin-1"))
    result = run(str(latin))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {latin}: is not UTF-8 text; save it as UTF-8 or leave it out"
    ]


def test_profiles_the_apiserver_would_refuse_for_reasons_beyond_the_spec() -> None:
    twice = LOGGING_PROFILE + "---\n" + LOGGING_PROFILE
    beta = LOGGING_PROFILE.replace("v1alpha1", "v1beta1")
    nameless = LOGGING_PROFILE.replace(
        "metadata: {name: logs, namespace: shop}", "metadata: {namespace: shop}"
    )
    specless = LOGGING_PROFILE.split("spec:")[0]
    misspelt = LOGGING_PROFILE.replace("spec:", "specs:")
    errors = {
        name: run("-", stdin=text).stderr
        for name, text in {
            "twice": twice,
            "beta": beta,
            "nameless": nameless,
            "specless": specless,
            "misspelt": misspelt,
        }.items()
    }
    assert (
        "<stdin>:10: ServiceProfile shop/logs: metadata.name: ServiceProfile shop/logs is defined twice "
        "(also at <stdin>:1); the later one would replace the earlier: keep one" in errors["twice"]
    )
    assert (
        "apiVersion: readiness.dev/v1beta1 is not served; use apiVersion: readiness.dev/v1alpha1"
        in errors["beta"]
    )
    assert (
        "ServiceProfile shop/?: metadata.name: Required value: name the ServiceProfile" in errors["nameless"]
    )
    assert "ServiceProfile shop/logs: spec: Required value" in errors["specless"]
    assert 'ServiceProfile shop/logs: specs: unknown field "specs"' in errors["misspelt"]


def test_the_real_command_never_shows_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [\n")
    profile = tmp_path / "p.yaml"
    profile.write_text(LOGGING_PROFILE.replace("{matchLabels: {app: api}}", "{}"))
    for args, code in (([str(bad)], 2), ([str(profile)], 2), (["--output", "yaml", str(profile)], 2)):
        done = subprocess.run(
            [sys.executable, "-m", "readiness", "audit", *args], capture_output=True, text=True, check=False
        )
        assert done.returncode == code, done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) <= 4, done.stderr  # click's usage error: 4 lines


def test_the_help_documents_every_exit_code() -> None:
    text = run("--help").output
    for line in ("0  every Deployment is compliant", "1  findings:", "2  usage or input errors:"):
        assert line in text
    assert "--require-profile" in text
    assert "[text|json|sarif]" in text


def test_the_text_report_is_stable() -> None:
    result = run(
        "-",
        stdin=DEPLOYMENT.format(name="api", app="api") + "---\n" + LOGGING_PROFILE.replace("info", "warn"),
    )
    assert result.exit_code == 1
    assert result.output == textwrap.dedent(
        """\
        <stdin>:1: api (profile shop/logs): 1 finding(s)
          logging.env.mismatch                 spec.template.spec.containers[app].env: differs LOG_LEVEL; the profile wants LOG_LEVEL=warn
        1 Deployment(s): 0 compliant, 1 not compliant, 0 unselected; exit 1
        """
    )


# ---- input that must never pass unchecked, nor end in a traceback (from review) ----


def test_an_empty_pipe_is_an_input_error_not_a_pass() -> None:
    result = run("-", stdin="")
    assert result.exit_code == 2, result.output
    assert "no Kubernetes object" in result.output


@pytest.mark.parametrize(
    ("wrong", "kind"),
    [
        ("apps/v1beta2", "Deployment"),
        ("extensions/v1beta1", "Deployment"),
        ("readiness.io/v1alpha1", "ServiceProfile"),
    ],
)
def test_a_typo_in_the_api_version_is_an_input_error(wrong: str, kind: str) -> None:
    text = DEPLOYMENT.format(name="api", app="api")
    if kind == "Deployment":
        text = text.replace("apiVersion: apps/v1", f"apiVersion: {wrong}")
    else:
        text = text + "---\n" + LOGGING_PROFILE.replace("readiness.dev/v1alpha1", wrong)
    result = run("-", stdin=text)
    assert result.exit_code == 2, result.output
    assert f"not {wrong!r}" in result.output


def test_bytes_that_are_not_utf8_on_stdin_are_an_input_error() -> None:
    result = CliRunner().invoke(main, ["audit", "-"], input=b"\xe9\xff")
    assert result.exit_code == 2, result.output
    assert "UTF-8" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_linked_directories_are_read_and_link_loops_end(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "api.yaml").write_text(DEPLOYMENT.format(name="api", app="api") + "---\n" + LOGGING_PROFILE)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "base").symlink_to(shared, target_is_directory=True)
    (shared / "again").symlink_to(repo, target_is_directory=True)  # a loop through both
    (repo / "a.yaml").symlink_to(repo / "b.yaml")
    (repo / "b.yaml").symlink_to(repo / "a.yaml")
    result = run(str(repo))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "api" in result.output, "the linked base was read"
    assert "leads nowhere" in result.output
    assert result.exit_code == 2


def test_a_key_twice_in_one_mapping_is_an_input_error_as_kubectl_says() -> None:
    text = DEPLOYMENT.format(name="api", app="api").replace(
        "        env:\n", "        env: [{name: LOG_LEVEL, value: debug}]\n        env:\n"
    )
    result = run("-", stdin=text)
    assert result.exit_code == 2, result.output
    assert "the key 'env' appears twice" in result.output
    merged = "base: &b {x: 1}\nuse:\n  <<: *b\n  x: 2\n---\n"  # a merge key and an override: no repeat
    plain = run("-", stdin=merged + DEPLOYMENT.format(name="api", app="api"))
    assert "appears twice" not in plain.output, plain.output
