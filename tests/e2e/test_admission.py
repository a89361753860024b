"""The invalid-profile corpus (tests/data/invalid-profiles.yaml): every entry refused at
admission, by the real apiserver, with a message naming the field and saying what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.kube import Kube
from tests.support.paths import ROOT
from tests.support.profile_corpus import CORPUS, VALID, manifest, merged


def test_the_corpus_is_large_and_its_base_is_valid(kube: Kube, namespace: str, crd: None) -> None:
    assert len(CORPUS) >= 40
    assert len({case["name"] for case in CORPUS}) == len(CORPUS)
    result = kube.run("apply", "--dry-run=server", "-f", "-", input_text=manifest(namespace, "base", VALID))
    assert "created (server dry run)" in result.stdout


@pytest.mark.parametrize("case", CORPUS, ids=[case["name"] for case in CORPUS])
def test_an_invalid_profile_is_refused_naming_the_field(
    kube: Kube, namespace: str, crd: None, case: dict[str, Any]
) -> None:
    spec = merged(VALID, case["spec"])
    result = kube.run(
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        input_text=manifest(namespace, case["name"], spec),
        check=False,
    )
    assert result.returncode != 0, f"accepted: {yaml.safe_dump(spec)}"
    assert case["field"] in result.stderr, result.stderr
    assert case["says"] in result.stderr, result.stderr


def test_the_corpus_file_is_where_the_docs_say() -> None:
    assert Path(ROOT / "tests" / "data" / "invalid-profiles.yaml").is_file()
