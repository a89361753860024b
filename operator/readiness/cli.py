"""The ``readiness`` command line."""

from __future__ import annotations

import click

from readiness.runtime.settings import Settings

from . import __version__


def _settings_help() -> str:
    # "\b" keeps click from re-wrapping the table.
    lines = ["\b", "Settings, from the environment (validated at start-up; a bad value stops with one line):"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        lines.append(f"  READINESS_{name.upper():<34} default {default!r:<8} {field.description}")
    return "\n".join(lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="readiness-operator")
def main() -> None:
    """readiness-operator: makes Deployments production-ready and keeps them so."""


@main.command(epilog=_settings_help())
def run() -> None:
    """Run the operator against the cluster of KUBECONFIG (or the in-cluster config)."""
    from readiness.runtime.app import run_operator

    run_operator()


_AUDIT_EPILOG = """\b
Exit codes:
  0  every Deployment is compliant (an unselected one too, unless --require-profile)
  1  findings: a Deployment is not compliant (Violating, Conflicted, Ambiguous, Invalid),
     or, with --require-profile, no profile selects it
  2  usage or input errors: a missing or unreadable file, YAML that does not parse,
     a Deployment the apiserver would refuse, or a ServiceProfile it would refuse
     (each reported on stderr with the file, the line and the field)

\b
Examples:
  readiness audit deploy/ profiles/
  kubectl get deploy,sp -n shop -o yaml | readiness audit --require-profile
  readiness audit -o sarif k8s/ > readiness.sarif
"""


@main.command("audit", epilog=_AUDIT_EPILOG)
@click.argument("paths", nargs=-1, type=click.Path(allow_dash=True), metavar="[PATH]...")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json", "sarif"]),
    default="text",
    show_default=True,
    help="Report format on stdout: text for people, json for scripts, sarif (2.1.0) for code scanning.",
)
@click.option(
    "--require-profile",
    is_flag=True,
    help="A Deployment that no ServiceProfile selects fails the run (exit 1) instead of being listed.",
)
@click.option(
    "-n",
    "--namespace",
    default="default",
    show_default=True,
    help="Namespace of the objects that name none, as with kubectl apply -n.",
)
def audit_command(paths: tuple[str, ...], output: str, require_profile: bool, namespace: str) -> None:
    """Check Deployments against the ServiceProfiles among the manifests, without a cluster.

    PATH is a manifest file (YAML, multi-document, or JSON; `kubectl get -o yaml` Lists too),
    a directory (read recursively for *.yaml, *.yml and *.json) or - for stdin, which is also
    read when no PATH is given. ServiceProfiles are checked as the apiserver's admission checks
    them; every Deployment is judged as the operator would judge it, under the profiles of its
    namespace, and one that no profile selects is reported as unselected.
    """
    import sys

    from readiness.audit.findings import audit
    from readiness.audit.manifests import read
    from readiness.audit.report import dumps, render_errors, render_json, render_sarif, render_text

    stdin = click.open_file("-")
    if not paths and (stdin is None or stdin.isatty()):
        raise click.UsageError("name manifest files or directories, or pipe manifests in (- reads stdin)")
    try:
        documents, problems = read(paths, stdin)
        result = audit(documents, namespace=namespace, require_profile=require_profile, input_errors=problems)
    except Exception as error:  # input the audit cannot take apart (RecursionError too): never exit 1
        click.echo(f"readiness audit: could not check the input ({type(error).__name__}: {error})", err=True)
        sys.exit(2)
    for line in render_errors(result):
        click.echo(line, err=True)
    if output == "json":
        click.echo(dumps(render_json(result)))
    elif output == "sarif":
        click.echo(dumps(render_sarif(result, __version__)))
    else:
        click.echo(render_text(result))
    sys.exit(result.exit_code)


@main.command()
def crd() -> None:
    """Print the ServiceProfile CustomResourceDefinition generated from the models."""
    from .models.crd import render_crd_yaml

    click.echo(render_crd_yaml(), nl=False)
