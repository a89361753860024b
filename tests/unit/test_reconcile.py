"""The reconciler against the in-memory API twin: writes, status and events, counted."""

from __future__ import annotations

from typing import Any

import pytest
from tests.twin import Twin, TwinWorld

from readiness.guard import FightGuard
from readiness.k8s import ApiError, FieldCause
from readiness.metrics import Metrics
from readiness.reconcile import Reconciler

NS = "shop"
PROFILE = {
    "selector": {"matchLabels": {"app": "api"}},
    "probes": {"port": "http", "readiness": {"type": "httpGet", "path": "/ready"}},
    "resources": {"limits": {"memory": "256Mi"}},
}


def deployment(name: str = "api", app: str = "api") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": app}, "uid": f"uid-{name}"},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "x", "ports": [{"name": "http", "containerPort": 80}]}
                    ]
                },
            },
        },
    }


@pytest.fixture
def twin() -> Twin:
    return Twin()


def reconciler(twin: Twin, guard: FightGuard | None = None) -> Reconciler:
    return Reconciler(twin, TwinWorld(twin), Metrics(), guard, clock=lambda: "2026-01-01T00:00:00Z")


async def test_one_apply_then_nothing(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    r = reconciler(twin)
    first = await r.reconcile(NS, "p")
    assert first.applied == ["api"]
    assert twin.deployments[(NS, "api")]["metadata"]["generation"] == 2
    status = twin.profiles[(NS, "p")].status
    assert status["summary"] == {"matched": 1, "compliant": 1, "score": 100}
    assert [(e[0], e[2]) for e in twin.events] == [("api", "ProfileApplied"), ("p", "Applied")]

    second = await r.reconcile(NS, "p")
    assert second.applied == []
    assert not second.status_written
    assert len(twin.applies) == 1
    assert len(twin.status_patches) == 1


async def test_audit_reports_without_writing(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", {**PROFILE, "mode": "Audit"})
    await reconciler(twin).reconcile(NS, "p")
    assert twin.applies == []
    target = twin.profiles[(NS, "p")].status["targets"][0]
    assert target["state"] == "Violating"
    assert {v["check"] for v in target["violations"]} == {
        "probes.readiness.missing",
        "resources.limits.memory.missing",
    }


async def test_server_conflict_becomes_a_conflicted_target(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    cause = FieldCause(
        field='spec.template.spec.containers[name="app"].readinessProbe', message="x", manager="helm"
    )
    twin.fail_next = ApiError(409, "Conflict", "Apply failed with 1 conflict", [cause])
    outcome = await reconciler(twin).reconcile(NS, "p")
    assert not outcome.retry
    target = twin.profiles[(NS, "p")].status["targets"][0]
    assert target["state"] == "Conflicted"
    assert target["conflicts"][0]["manager"] == "helm"
    assert ("p", "Warning", "Conflicted") in twin.events


async def test_transient_api_error_is_retried_and_reported(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    twin.fail_next = ApiError(503, "ServiceUnavailable", "etcd leader changed")
    outcome = await reconciler(twin).reconcile(NS, "p")
    assert outcome.retry
    status = twin.profiles[(NS, "p")].status
    assert status["targets"][0]["state"] == "Error"
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ApiError")


async def test_ambiguous_targets_are_never_written(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    twin.add_profile(NS, "q", {"selector": {"matchLabels": {"app": "api"}}, "logging": {"level": "info"}})
    r = reconciler(twin)
    await r.reconcile(NS, "p")
    await r.reconcile(NS, "q")
    assert twin.applies == []
    for name, rival in (("p", "q"), ("q", "p")):
        target = twin.profiles[(NS, name)].status["targets"][0]
        assert target["state"] == "Ambiguous"
        assert rival in target["message"]


async def test_invalid_spec_is_degraded_not_crashed(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", {"selector": {"matchLabels": {"app": "api"}}, "mode": "Sometimes"})
    await reconciler(twin).reconcile(NS, "p")
    assert twin.applies == []
    degraded = next(c for c in twin.profiles[(NS, "p")].status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert "spec.mode" in degraded["message"]


async def test_fight_guard_stops_after_the_limit(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    r = reconciler(twin, FightGuard(limit=2, window=600))
    for _ in range(4):
        await r.reconcile(NS, "p")
        container = twin.deployments[(NS, "api")]["spec"]["template"]["spec"]["containers"][0]
        container.pop("readinessProbe", None)  # someone keeps removing it
        twin.deployments[(NS, "api")]["metadata"]["resourceVersion"] += "x"
    assert len(twin.applies) == 3, "the first apply plus two corrections"
    assert twin.profiles[(NS, "p")].status["targets"][0]["state"] == "Conflicted"
    twin.add_profile(NS, "p", {**PROFILE, "logging": {"level": "info"}}, generation=2)
    await r.reconcile(NS, "p")
    assert len(twin.applies) == 4, "a changed profile is enforced again"


async def test_deleted_profile_forgets_metrics(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    metrics = Metrics()
    r = Reconciler(twin, TwinWorld(twin), metrics, clock=lambda: "2026-01-01T00:00:00Z")
    await r.reconcile(NS, "p")
    assert (
        metrics.registry.get_sample_value(
            "readiness_profile_compliance_ratio", {"namespace": NS, "profile": "p"}
        )
        == 1.0
    )
    del twin.profiles[(NS, "p")]
    await r.reconcile(NS, "p")
    assert (
        metrics.registry.get_sample_value(
            "readiness_profile_compliance_ratio", {"namespace": NS, "profile": "p"}
        )
        is None
    )
    assert len(twin.applies) == 1


async def test_a_stale_view_of_our_own_status_posts_no_duplicate_warning(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    cause = FieldCause(field="spec.template.spec.containers[app].readinessProbe", message="x", manager="helm")
    r = reconciler(twin)
    twin.fail_next = ApiError(409, "Conflict", "conflict", [cause])
    await r.reconcile(NS, "p")
    stale = twin.profiles[(NS, "p")]
    twin.profiles[(NS, "p")] = type(stale)(**{**stale.__dict__, "status": {}})  # the watch lags behind
    twin.fail_next = ApiError(409, "Conflict", "conflict", [cause])
    await r.reconcile(NS, "p")
    assert [e for e in twin.events if e[2] == "Conflicted"] == [("p", "Warning", "Conflicted")]
    assert len(twin.status_patches) == 1


def test_status_stays_small_for_very_large_profiles() -> None:
    from readiness.engine import build_status
    from readiness.engine.status import MAX_TARGETS
    from readiness.models import Target

    targets = [
        Target(
            name=f"d{i:04}",
            compliant=i % 3 != 0,
            state="Compliant" if i % 3 else "Violating",
            rollout="Complete",
        )
        for i in range(3 * MAX_TARGETS)
    ]
    status = build_status(generation=1, targets=targets, previous=[], now="t")
    assert len(status.targets) == MAX_TARGETS
    assert status.targets_omitted == 2 * MAX_TARGETS
    assert all(not t.compliant for t in status.targets), "those needing attention are listed first"
    assert [t.name for t in status.targets] == sorted(t.name for t in status.targets)
    assert status.summary.matched == 3 * MAX_TARGETS


async def test_a_recreated_profile_gets_its_status_even_if_identical(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    r = reconciler(twin)
    await r.reconcile(NS, "p")
    old = twin.profiles[(NS, "p")]
    # Deleted and created again while this replica saw no DELETED event (paused, say).
    twin.profiles[(NS, "p")] = type(old)(**{**old.__dict__, "uid": "uid-new", "status": {}})
    outcome = await r.reconcile(NS, "p")
    assert outcome.status_written
    assert twin.profiles[(NS, "p")].status["summary"]["compliant"] == 1
