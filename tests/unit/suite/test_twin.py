"""The API twin the reconciler tests run against keeps the apiserver's conflict rule."""

from __future__ import annotations

import pytest
from tests.support.twin import Twin

from readiness.k8s import ApiError


def body(path: str) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop", "uid": "u"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "x", "readinessProbe": {"httpGet": {"path": path}}}
                    ]
                }
            }
        },
    }


async def test_another_managers_value_is_refused_unless_forced() -> None:
    twin = Twin()
    twin.add_deployment(body("/theirs"))
    with pytest.raises(ApiError) as refused:
        await twin.apply_deployment(body("/ours"), force=False)
    assert refused.value.status == 409
    assert [c.manager for c in refused.value.causes] == ["kubectl-client-side-apply"]
    assert refused.value.causes[0].field.endswith("f:path")
    await twin.apply_deployment(body("/theirs"), force=False)  # the same value: no conflict
    forced = await twin.apply_deployment(body("/ours"), force=True)
    probe = forced["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"]["path"] == "/ours"
