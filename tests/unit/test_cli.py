from __future__ import annotations

import subprocess
import sys

from readiness import __version__


def test_version_is_the_installed_distribution() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "readiness", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"readiness-operator, version {__version__}"
    assert __version__ != "0.0.0+source"


def test_bad_setting_stops_with_one_clear_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "readiness", "run"],
        capture_output=True,
        text=True,
        check=False,
        env={"READINESS_WORKERS": "zero", "PATH": ""},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "readiness: invalid READINESS_WORKERS: Input should be a valid integer, unable to parse string as an integer"
    ]
