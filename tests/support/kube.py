"""kubectl against a control plane, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Kube:
    """kubectl against the testbed, as a user would run it."""

    kubectl: Path
    kubeconfig: Path

    def run(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def established(self, *crds: str, seconds: float = 60) -> None:
        """Until each CustomResourceDefinition is Established. While a new one has no conditions
        yet, `kubectl wait` fails at once ("accessor error") instead of waiting: it is asked again."""
        deadline = time.monotonic() + seconds
        while True:
            left = max(1, int(deadline - time.monotonic()))
            args = ("wait", "--for=condition=Established", *(f"crd/{c}" for c in crds), f"--timeout={left}s")
            result = self.run(*args, check=False)
            if result.returncode == 0:
                return
            if "accessor error" not in result.stderr or time.monotonic() > deadline:
                raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
            time.sleep(0.2)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, manifest: str, *extra: str) -> str:
        return self.run("apply", "-f", "-", *extra, input_text=manifest).stdout
