from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from readiness.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
PROFILE = """
apiVersion: readiness.dev/v1alpha1
kind: ServiceProfile
metadata: {name: p, namespace: shop}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: payments}}
  containers: [app]
  logging: {level: %s}
"""


def test_audit_lists_findings_and_fails_the_build() -> None:
    result = CliRunner().invoke(
        main, ["audit", str(EXAMPLES / "10-deployments.yaml"), str(EXAMPLES / "20-profiles.yaml")]
    )
    assert result.exit_code == 1
    assert "checkout-api (profile shop/checkout): 12 finding(s)" in result.output
    assert "shutdown.grace.too-short" in result.output
    assert "missing OTEL_EXPORTER_OTLP_ENDPOINT" in result.output


def test_audit_passes_compliant_manifests_and_rejects_bad_profiles() -> None:
    deployments = (EXAMPLES / "10-deployments.yaml").read_text()
    compliant = deployments.replace("- {name: LOG_LEVEL, value: debug}", "- {name: LOG_LEVEL, value: info}")
    only_payments = "\n---\n".join(d for d in compliant.split("\n---\n") if "name: payments" in d)
    ok = CliRunner().invoke(main, ["audit", "-"], input=only_payments + "\n---\n" + PROFILE % "info")
    assert ok.exit_code == 0, ok.output
    assert "payments (profile shop/p): compliant" in ok.output
    bad = CliRunner().invoke(main, ["audit", "-"], input=PROFILE % "loud")
    assert bad.exit_code == 2
    assert "ServiceProfile shop/p" in bad.output


def test_audit_and_operator_agree_on_a_deployment_two_profiles_select() -> None:
    deployments = (EXAMPLES / "10-deployments.yaml").read_text()
    payments = "\n---\n".join(d for d in deployments.split("\n---\n") if "name: payments" in d)
    rival = (PROFILE % "info").replace("name: p,", "name: q,")
    result = CliRunner().invoke(
        main, ["audit", "-"], input=f"{payments}\n---\n{PROFILE % 'info'}\n---\n{rival}"
    )
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
