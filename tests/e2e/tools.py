"""The tools teams deploy with, as their users run them: client-side and server-side kubectl,
kubectl create, Helm (a chart made of the manifest) and an Argo-CD-style client-side sync.
Each records a different owner in managedFields, and some a last-applied configuration."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Protocol

import yaml
from tests.support.kube import Kube


class Bed(Protocol):
    bin_dir: Path
    kubeconfig: Path


class Helm:
    """The pinned helm against one control plane, with its own config and cache directories."""

    def __init__(self, bed: Bed, home: Path) -> None:
        self.binary = bed.bin_dir / "helm"
        self.kubeconfig = bed.kubeconfig
        self.home = home
        self.env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
            env=self.env,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def manifest(self, release: str, namespace: str) -> list[dict[str, Any]]:
        out = self.run("get", "manifest", release, "-n", namespace).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    def install_manifest(self, release: str, namespace: str, text: str, *, upgrade: bool = False) -> None:
        """``helm install`` (or upgrade) of a local chart whose one template is ``text``, as a
        rendered chart is installed: Helm creates the objects with Update operations."""
        chart = self.home / "charts" / release
        (chart / "templates").mkdir(parents=True, exist_ok=True)
        (chart / "Chart.yaml").write_text(
            yaml.safe_dump({"apiVersion": "v2", "name": release, "version": "0.1.0"})
        )
        # Helm renders templates: braces in a verbatim manifest are escaped as a template literal.
        escaped = text.replace("{{", "{{`{{`}}").replace("}}", "{{`}}`}}") if "{{" in text else text
        (chart / "templates" / "manifest.yaml").write_text(escaped)
        verb = "upgrade" if upgrade else "install"
        self.run(verb, release, str(chart), "-n", namespace, "--timeout=120s")


# How each tool puts a manifest in the cluster; the field manager it leaves in managedFields.
TOOLS = {
    "kubectl-apply": "kubectl-client-side-apply",
    "kubectl-create": "kubectl-create",
    "helm": "helm",
    "argocd": "argocd-controller",
    "gitops-ssa": "kustomize-controller",
}


def put(tool: str, kube: Kube, helm: Helm, namespace: str, text: str, release: str = "app") -> None:
    """Put the manifest ``text`` (YAML or JSON) in ``namespace`` the way ``tool`` does."""
    if tool == "kubectl-apply":
        kube.run("apply", "-n", namespace, "-f", "-", input_text=text)
    elif tool == "kubectl-create":
        kube.run("create", "-n", namespace, "-f", "-", input_text=text)
    elif tool == "argocd":
        # Argo CD's default sync is kubectl's client-side apply under its own field manager.
        kube.run("apply", "-n", namespace, "-f", "-", "--field-manager=argocd-controller", input_text=text)
    elif tool == "gitops-ssa":
        # Flux (and Argo CD with ServerSideApply=true) apply server-side, forcing conflicts.
        kube.run(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            "--server-side",
            "--force-conflicts",
            "--field-manager=kustomize-controller",
            input_text=text,
        )
    elif tool == "helm":
        helm.install_manifest(release, namespace, text)
    else:
        raise ValueError(f"unknown tool {tool}")


def as_text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest)
