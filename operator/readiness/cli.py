"""The ``readiness`` command line."""

from __future__ import annotations

from typing import IO

import click

from . import __version__
from .settings import Settings


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
    from .app import run_operator

    run_operator()


@main.command("audit")
@click.argument("files", nargs=-1, type=click.File("r"))
def audit_command(files: tuple[IO[str], ...]) -> None:
    """Check Deployment manifests against the ServiceProfiles among them, without a cluster.

    Reads YAML from FILES (or stdin with -). Exits 1 when a Deployment is not compliant,
    2 when a profile is invalid, so it can gate a merge request.
    """
    import sys

    import yaml

    from .audit import audit, render

    documents = [d for f in (files or (click.open_file("-"),)) for d in yaml.safe_load_all(f) if d]
    findings, errors = audit(documents)
    click.echo(render(findings, errors))
    if errors:
        sys.exit(2)
    if any(not f.compliant for f in findings):
        sys.exit(1)


@main.command()
def crd() -> None:
    """Print the ServiceProfile CustomResourceDefinition generated from the models."""
    from .models.crd import render_crd_yaml

    click.echo(render_crd_yaml(), nl=False)
