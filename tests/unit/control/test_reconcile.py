"""Per-Deployment reconciles and status writes against the in-memory API twin, counted."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.support.control import NS, PROFILE, deployment
from tests.support.twin import Twin

from readiness.control.board import Board
from readiness.control.events import EventSink
from readiness.control.guard import FightGuard
from readiness.control.reconciler import Outcome, Reconciler
from readiness.control.rollouts import slots
from readiness.control.statuswriter import StatusWriter
from readiness.k8s import ApiError, FieldCause, PodLister
from readiness.observe.metrics import Metrics


class Operator:
    """The reconciler and the status writer over one twin, driven by hand: every Deployment of
    the namespace once, then every profile's status (what the controller's queue does)."""

    def __init__(
        self,
        twin: Twin,
        guard: FightGuard | None = None,
        patience: float = 0.0,
        clock: Callable[[], float] = time.time,
        pods: PodLister | None = None,
    ) -> None:
        self.twin = twin
        self.metrics = Metrics()
        self.board = Board()
        self.events = EventSink(twin, self.metrics)
        self.reconciler = Reconciler(
            twin,
            twin.world,
            self.board,
            self.metrics,
            self.events,
            guard,
            monotonic=clock,
            clock=clock,
            pods=pods,
        )
        self.writer = StatusWriter(
            twin,
            twin.world,
            self.board,
            self.metrics,
            self.events,
            clock=lambda: "2026-01-01T00:00:00Z",
            patience=patience,
        )
        self.status_writes = 0

    async def converge(self) -> list[Outcome]:
        outcomes = [await self.reconciler.reconcile(ns, name) for ns, name in sorted(self.twin.deployments)]
        before = len(self.twin.status_patches)
        for ns, name in sorted({*self.twin.profiles, *self._gone}):
            await self.writer.flush(ns, name)
        self.status_writes = len(self.twin.status_patches) - before
        await self.events.drain()
        return outcomes

    @property
    def _gone(self) -> set[tuple[str, str]]:
        return {(ns, p) for ns, _ in self.twin.deployments for p in ("p", "q")} - set(self.twin.profiles)

    def status(self, name: str = "p") -> dict[str, Any]:
        return dict(self.twin.profiles[(NS, name)].status)


@pytest.fixture
def twin() -> Twin:
    return Twin()


async def test_one_apply_then_nothing(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    op = Operator(twin)
    first = await op.converge()
    assert [o.applied for o in first] == [True]
    assert twin.deployments[(NS, "api")]["metadata"]["generation"] == 2
    assert op.status()["summary"] == {"matched": 1, "compliant": 1, "score": 100, "rollingOut": 1}, (
        "the twin never finishes a rollout"
    )
    assert sorted((e[0], e[2]) for e in twin.events) == [("api", "ProfileApplied"), ("p", "Applied")]

    second = await op.converge()
    assert [o.skipped for o in second] == [True], "nothing the decision reads changed"
    assert len(twin.applies) == 1
    assert len(twin.status_patches) == 1
    op.reconciler.forget_decisions()  # a resync decides again, and still writes nothing
    third = await op.converge()
    assert [(o.skipped, o.applied) for o in third] == [(False, False)]
    assert len(twin.applies) == 1
    assert len(twin.status_patches) == 1


async def test_a_status_only_update_costs_no_decision(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    op = Operator(twin)
    await op.converge()
    body = twin.deployments[(NS, "api")]
    body["status"] = {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0}
    body["metadata"]["managedFields"].append(
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "fieldsV1": {}}
    )
    twin.touch(NS, "api")
    stored = twin.world.stored(NS, "api")
    assert stored is not None
    assert stored.rollout == "Progressing"
    assert op.reconciler.unchanged(NS, stored)
    body["metadata"]["labels"]["tier"] = "web"  # a label is something a selector reads
    twin.touch(NS, "api")
    stored = twin.world.stored(NS, "api")
    assert stored is not None
    assert not op.reconciler.unchanged(NS, stored)


async def test_audit_reports_without_writing(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", {**PROFILE, "mode": "Audit"})
    op = Operator(twin)
    await op.converge()
    assert twin.applies == []
    target = op.status()["targets"][0]
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
    op = Operator(twin)
    outcomes = await op.converge()
    assert not outcomes[0].retry
    target = op.status()["targets"][0]
    assert target["state"] == "Conflicted"
    assert target["conflicts"][0]["manager"] == "helm"
    assert ("p", "Warning", "Conflicted") in twin.events
    assert op.metrics.registry.get_sample_value("readiness_conflicts_total") == 1.0, "counted once"


async def test_transient_api_error_is_retried_and_reported(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    twin.fail_next = ApiError(503, "ServiceUnavailable", "etcd leader changed")
    op = Operator(twin)
    outcomes = await op.converge()
    assert outcomes[0].retry
    status = op.status()
    assert status["targets"][0]["state"] == "Error"
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ApiError")
    retried = await op.converge()
    assert retried[0].applied, "an error is not a settled decision"


async def test_ambiguous_targets_are_never_written_until_a_rival_goes(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    twin.add_profile(NS, "q", {"selector": {"matchLabels": {"app": "api"}}, "logging": {"level": "info"}})
    op = Operator(twin)
    await op.converge()
    assert twin.applies == []
    for name, rival in (("p", "q"), ("q", "p")):
        target = op.status(name)["targets"][0]
        assert target["state"] == "Ambiguous"
        assert rival in target["message"]
    twin.delete_profile(NS, "q")
    await op.converge()
    assert len(twin.applies) == 1
    assert op.status()["targets"][0]["state"] == "Compliant", "no stale Ambiguous"


async def test_invalid_spec_is_degraded_not_crashed(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", {"selector": {"matchLabels": {"app": "api"}}, "mode": "Sometimes"})
    op = Operator(twin)
    await op.converge()
    assert twin.applies == []
    degraded = next(c for c in op.status()["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert "spec.mode" in degraded["message"]


async def test_fight_guard_stops_after_the_limit(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    op = Operator(twin, FightGuard(limit=2, window=600))
    for _ in range(4):
        await op.converge()
        body = twin.deployments[(NS, "api")]
        body["spec"]["template"]["spec"]["containers"][0].pop(
            "readinessProbe", None
        )  # someone keeps removing it
        body["metadata"]["generation"] += 1
        twin.touch(NS, "api")
    assert len(twin.applies) == 3, "the first apply plus two corrections"
    assert op.status()["targets"][0]["state"] == "Conflicted"
    twin.add_profile(NS, "p", {**PROFILE, "logging": {"level": "info"}}, generation=2)
    await op.converge()
    assert len(twin.applies) == 4, "a changed profile is enforced again"


def revert(twin: Twin, at: float = 0.0) -> None:
    """A GitOps-like manager takes the readiness probe away again (at wall-clock time ``at``)."""
    body = twin.deployments[(NS, "api")]
    body["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe", None)
    body["metadata"]["generation"] += 1
    body["metadata"]["managedFields"] = [
        *(m for m in body["metadata"]["managedFields"] if m["manager"] != "gitops-bot"),
        {
            "manager": "gitops-bot",
            "operation": "Apply",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
            "time": datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    ]
    twin.touch(NS, "api")


def corrections(op: Operator) -> float:
    return op.metrics.registry.get_sample_value("readiness_drift_corrections_total") or 0.0


async def test_a_restart_does_not_restart_a_fight(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    now = [1_000_000.0]
    first = Operator(twin, FightGuard(limit=2, window=600), clock=lambda: now[0])
    for _ in range(4):
        await first.converge()
        revert(twin, now[0])
        now[0] += 5
    assert len(twin.applies) == 3
    assert "left alone" in first.status()["targets"][0]["message"]
    assert first.status()["targets"][0]["reason"] == "FightLeftAlone"
    # What a restart reads is the reason, not the words: another release may word it otherwise.
    first.status()["targets"][0]["message"] = "worded otherwise"

    # A new operator process: nothing in memory, only what the cluster shows.
    second = Operator(twin, FightGuard(limit=2, window=600), clock=lambda: now[0])
    revert(twin, now[0])
    await second.converge()
    assert len(twin.applies) == 3, "the fight is not started again"
    (target,) = second.status()["targets"]
    assert (target["state"], "gitops-bot" in target["message"]) == ("Conflicted", True)

    # The manager has been quiet for the window: one correction is tried, on probation.
    now[0] += 601
    second.reconciler.forget_decisions()  # the periodic resync: nothing else moved
    await second.converge()
    assert len(twin.applies) == 4
    assert second.status()["targets"][0]["state"] == "Compliant"
    assert corrections(second) == 1
    revert(twin, now[0])  # and it reverts at once: left alone again, without a new round
    now[0] += 5
    await second.converge()
    assert len(twin.applies) == 4
    assert second.status()["targets"][0]["state"] == "Conflicted"


async def test_the_first_correction_after_a_restart_is_counted(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    await Operator(twin).converge()
    restarted = Operator(twin)
    await restarted.converge()
    assert len(twin.applies) == 1
    revert(twin, time.time())
    await restarted.converge()
    assert len(twin.applies) == 2
    assert corrections(restarted) == 1, "a compliant Deployment changed behind our back was corrected"
    twin.add_profile(NS, "p", {**PROFILE, "logging": {"level": "info"}}, generation=2)
    await restarted.converge()
    assert len(twin.applies) == 3
    assert corrections(restarted) == 1, "a changed profile is no correction"


async def test_a_stale_view_of_our_own_status_posts_no_duplicate_warning(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    cause = FieldCause(field="spec.template.spec.containers[app].readinessProbe", message="x", manager="helm")
    op = Operator(twin)
    twin.fail_next = ApiError(409, "Conflict", "conflict", [cause])
    await op.converge()
    stale = twin.profiles[(NS, "p")]
    twin.world.put_profile(type(stale)(**{**stale.__dict__, "status": {}}))  # the watch lags behind
    op.reconciler.forget_decisions()
    twin.fail_next = ApiError(409, "Conflict", "conflict", [cause])
    await op.converge()
    conflicted = [e for e in twin.events if e[2] == "Conflicted"]
    assert conflicted == [("p", "Warning", "Conflicted"), ("api", "Warning", "Conflicted")], "once each"
    assert len(twin.status_patches) == 1


async def test_status_waits_for_undecided_deployments(twin: Twin) -> None:
    for name in ("a", "b"):
        twin.add_deployment(deployment(name))
    twin.add_profile(NS, "p", PROFILE)
    op = Operator(twin, patience=60)
    await op.reconciler.reconcile(NS, "a")
    assert await op.writer.flush(NS, "p"), "b is not decided yet: come back"
    assert twin.status_patches == []
    await op.reconciler.reconcile(NS, "b")
    assert not await op.writer.flush(NS, "p")
    assert op.status()["summary"] == {"matched": 2, "compliant": 2, "score": 100, "rollingOut": 2}
    assert len(twin.status_patches) == 1


async def test_a_deleted_deployment_leaves_the_status(twin: Twin) -> None:
    for name in ("a", "b"):
        twin.add_deployment(deployment(name))
    twin.add_profile(NS, "p", PROFILE)
    op = Operator(twin)
    await op.converge()
    twin.delete_deployment(NS, "b")
    await op.reconciler.reconcile(NS, "b")
    await op.converge()
    assert [t["name"] for t in op.status()["targets"]] == ["a"]
    assert op.status()["summary"]["matched"] == 1


async def test_many_deployments_one_status_write_and_one_applied_event(twin: Twin) -> None:
    for i in range(30):
        twin.add_deployment(deployment(f"api-{i:02}"))
    twin.add_profile(NS, "p", PROFILE)
    op = Operator(twin)
    await op.converge()
    assert len(twin.applies) == 30
    assert op.status_writes == 1
    applied = [e for e in twin.events if e[2] == "Applied"]
    assert applied == [("p", "Normal", "Applied")]


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
    op = Operator(twin)
    await op.converge()
    old = twin.profiles[(NS, "p")]
    # Deleted and created again while this replica saw no DELETED event (paused, say).
    twin._put_profile(type(old)(**{**old.__dict__, "uid": "uid-new", "status": {}}))
    await op.converge()
    assert op.status_writes == 1
    assert op.status()["summary"]["compliant"] == 1


async def test_a_stale_version_after_our_apply_is_not_applied_again(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    before = copy.deepcopy(twin.deployments[(NS, "api")])
    op = Operator(twin)
    await op.converge()
    # The controller-manager's status update of the old generation, delivered after our apply.
    before["metadata"]["resourceVersion"] = "9999"
    twin.world.put_deployment(before)
    outcome = await op.reconciler.reconcile(NS, "api")
    assert outcome.skipped
    assert len(twin.applies) == 1
    twin.touch(NS, "api")  # then our own write arrives: nothing to do either
    outcome = await op.reconciler.reconcile(NS, "api")
    assert not outcome.applied
    assert len(twin.applies) == 1


def test_the_packed_deployment_is_the_same_view_and_fingerprint() -> None:
    from readiness.cache.world import StoredDeployment
    from readiness.engine import DeploymentView

    body = deployment()
    body["metadata"].update({"generation": 3, "resourceVersion": "7", "annotations": {"a": "b" * 500}})
    body["metadata"]["managedFields"] = [
        {
            "manager": "kubectl",
            "operation": "Update",
            "time": "t1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        },
        {"manager": "kcm", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}},
    ]
    body["status"] = {
        "observedGeneration": 3,
        "replicas": 1,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "m" * 200,
            },
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "x"},
        ],
    }
    stored = StoredDeployment.from_body(body)
    whole = DeploymentView.from_body(body)
    assert stored.view() == whole
    assert stored.fingerprint == whole.fingerprint
    assert stored.rollout == "Failed"
    assert [e.manager for e in whole.managed] == ["kubectl"], "the status subresource's entries are not kept"
    status_only = copy.deepcopy(body)
    status_only["status"]["replicas"] = 0
    status_only["metadata"]["resourceVersion"] = "8"
    assert StoredDeployment.from_body(status_only).fingerprint == stored.fingerprint


async def test_a_new_reason_gets_its_own_warning_and_the_same_one_none(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    op = Operator(twin)
    helm = FieldCause(field="spec.template.spec.containers[app].readinessProbe", message="x", manager="helm")
    argo = FieldCause(field="spec.template.spec.containers[app].resources", message="x", manager="argocd")
    for cause in (helm, helm, argo):
        twin.fail_next = ApiError(409, "Conflict", f"conflict with {cause.manager}", [cause])
        op.reconciler.forget_decisions()
        await op.converge()
    warnings = [e for e in twin.events if e[1] == "Warning"]
    assert warnings == [("p", "Warning", "Conflicted"), ("api", "Warning", "Conflicted")] * 2, (
        "once for helm, once more when argocd is the new reason, on the profile and the Deployment"
    )
    assert op.metrics.registry.get_sample_value("readiness_conflicts_total") == 1.0, "one conflict episode"


async def test_an_apply_the_apiserver_refuses_is_not_retried_until_something_changes(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    op = Operator(twin)
    twin.fail_next = ApiError(422, "Invalid", "spec.template.spec.containers[0].lifecycle: Invalid value")
    outcomes = await op.converge()
    assert not outcomes[0].retry, "a 422 will fail the same way again"
    assert op.status()["targets"][0]["state"] == "Invalid"
    again = await op.converge()
    assert again[0].skipped
    assert len(twin.applies) == 1
    twin.add_profile(NS, "p", {**PROFILE, "logging": {"level": "info"}}, generation=2)
    await op.converge()
    assert len(twin.applies) == 2, "a changed profile is tried again"


# ---- Waves: at most maxConcurrent Deployments mid-rollout because of a profile ----


def finish_rollout(twin: Twin, name: str) -> None:
    """The Deployment controller and the kubelets did their part: the rollout is complete."""
    body = twin.deployments[(NS, name)]
    replicas = body["spec"].get("replicas", 1)
    body["status"] = {
        "observedGeneration": body["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "availableReplicas": replicas,
        "readyReplicas": replicas,
    }
    twin.touch(NS, name)


def target_of(op: Operator, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in op.status()["targets"] if t["name"] == name)
    return found


def states(op: Operator) -> dict[str, str]:
    return {t["name"]: t["state"] for t in op.status()["targets"]}


async def test_a_profile_change_goes_out_in_waves(twin: Twin) -> None:
    for i in range(6):
        twin.add_deployment(deployment(f"api-{i}"))
    idle = deployment("api-idle")
    idle["spec"]["replicas"] = 0
    twin.add_deployment(idle)
    twin.add_profile(NS, "p", {**PROFILE, "rollout": {"maxConcurrent": 2}})
    op = Operator(twin)
    await op.converge()
    applied = {name for name, _ in twin.applies}
    assert applied == {"api-0", "api-1", "api-idle"}, "two slots; a Deployment scaled to 0 takes none"
    assert [n for n, s in sorted(states(op).items()) if s == "Pending"] == [
        "api-2",
        "api-3",
        "api-4",
        "api-5",
    ]
    assert "rollout slot" in next(t for t in op.status()["targets"] if t["name"] == "api-2")["message"]
    await op.converge()
    assert len(twin.applies) == 3, "nothing more while both are in flight"

    finish_rollout(twin, "api-0")
    assert op.reconciler.rollouts.woken_by(NS, "api-0") == ["api-2"], (
        "one slot freed wakes one waiting Deployment"
    )
    await op.converge()
    assert {name for name, _ in twin.applies} == {"api-0", "api-1", "api-2", "api-idle"}

    # A restarted operator finds api-1 and api-2 still rolling out (our apply is their last
    # write): they hold the slots, nothing else starts.
    restarted = Operator(twin)
    await restarted.converge()
    assert len(twin.applies) == 4
    for name in ("api-1", "api-2"):
        finish_rollout(twin, name)
    await restarted.converge()
    assert len(twin.applies) == 6
    for name in ("api-3", "api-4"):
        finish_rollout(twin, name)
    await restarted.converge()
    finish_rollout(twin, "api-5")
    await restarted.converge()
    assert len(twin.applies) == 7, "each once"
    assert set(states(restarted).values()) == {"Compliant"}


@pytest.mark.parametrize(
    ("budget", "matched", "slots_"), [("25%", 8, 2), ("25%", 1, 1), ("10%", 11, 2), (3, 2, 3), ("100%", 7, 7)]
)
def test_slots(budget: int | str, matched: int, slots_: int) -> None:
    assert slots(budget, matched) == slots_


def fail_rollout(twin: Twin, name: str) -> None:
    """The Deployment controller gives up: ProgressDeadlineExceeded on our generation."""
    body = twin.deployments[(NS, name)]
    body["status"] = {
        "observedGeneration": body["metadata"]["generation"],
        "replicas": 2,
        "updatedReplicas": 1,
        "availableReplicas": 1,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
    }
    twin.touch(NS, name)


def condition_of(op: Operator, type_: str) -> dict[str, Any]:
    return next(c for c in op.status()["conditions"] if c["type"] == type_)


@pytest.mark.parametrize("on_failure", ["Revert", "Pause"])
async def test_a_failed_rollout_halts_the_profile_and_is_put_back(twin: Twin, on_failure: str) -> None:
    for i in range(3):
        twin.add_deployment(deployment(f"api-{i}"))
    spec = {**PROFILE, "rollout": {"maxConcurrent": 1, "onFailure": on_failure}}
    twin.add_profile(NS, "p", spec)
    op = Operator(twin)
    await op.converge()
    assert [n for n, _ in twin.applies] == ["api-0"]
    before = copy.deepcopy(twin.templates[(NS, "api-0")][-1])

    fail_rollout(twin, "api-0")
    await op.converge()
    expected = "RolledBack" if on_failure == "Revert" else "RolloutFailed"
    assert states(op) == {"api-0": expected, "api-1": "Pending", "api-2": "Pending"}
    assert twin.reverts == (["api-0"] if on_failure == "Revert" else [])
    if on_failure == "Revert":
        assert twin.deployments[(NS, "api-0")]["spec"]["template"] == before, "the previous template is back"
    progressing = condition_of(op, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "RolloutFailed")
    assert "api-0" in progressing["message"]
    sample = {"profile_namespace": NS, "profile": "p", "result": "failed"}
    assert op.metrics.registry.get_sample_value("readiness_rollouts_total", sample) == 1

    # Nothing more for this generation, not after a resync, not after a restart.
    op.reconciler.forget_decisions()
    await op.converge()
    restarted = Operator(twin)
    await restarted.converge()
    assert [n for n, _ in twin.applies] == ["api-0"]
    assert len(twin.reverts) == (1 if on_failure == "Revert" else 0), "put back once"
    assert states(restarted)["api-0"] == expected

    # A person fixes the profile: the waves start again.
    twin.add_profile(
        NS, "p", {**spec, "probes": {"port": "http", "readiness": {"path": "/ok"}}}, generation=2
    )
    await restarted.converge()
    assert len(twin.applies) == 2
    assert condition_of(restarted, "Progressing")["status"] == "True"


class Pods:
    """The pods the kubelet made for the rollout's new ReplicaSet: one that cannot start."""

    def __init__(self) -> None:
        self.listed: list[tuple[str, str]] = []
        self.reason: str | None = None

    async def new_pods(
        self, namespace: str, deployment: str, labels: Any, seconds: float
    ) -> list[dict[str, Any]]:
        self.listed.append((namespace, deployment))
        if self.reason is None:
            return []
        waiting = {"reason": self.reason, "message": "container has runAsNonRoot and image will run as root"}
        return [
            {
                "metadata": {"name": "api-0-7d9f-x2", "creationTimestamp": "2099-01-01T00:00:00Z"},
                "status": {"containerStatuses": [{"name": "app", "state": {"waiting": waiting}}]},
            }
        ]


async def test_new_pods_that_cannot_start_fail_the_rollout_before_its_deadline(twin: Twin) -> None:
    for i in range(2):
        twin.add_deployment(deployment(f"api-{i}"))
    twin.add_profile(NS, "p", {**PROFILE, "rollout": {"maxConcurrent": 1}})
    pods = Pods()
    op = Operator(twin, pods=pods)
    await op.converge()
    assert [n for n, _ in twin.applies] == ["api-0"]
    assert await op.reconciler.rollouts.look_at_starts() == [], "pods starting: nothing yet"
    assert [ns for ns, _ in pods.listed] == [NS], "only the Deployment in flight is looked at"

    pods.reason = "CreateContainerConfigError"
    assert await op.reconciler.rollouts.look_at_starts() == [(NS, "api-0")]
    await op.converge()
    assert states(op) == {"api-0": "RolledBack", "api-1": "Pending"}
    assert twin.reverts == ["api-0"]
    message = target_of(op, "api-0")["message"]
    assert "cannot start" in message
    assert "CreateContainerConfigError" in message
    assert "ProgressDeadlineExceeded" not in message
    assert await op.reconciler.rollouts.look_at_starts() == [], "nothing in flight any more"


async def test_drift_and_new_deployments_wait_for_a_slot_like_the_rest(twin: Twin) -> None:
    for i in range(2):
        twin.add_deployment(deployment(f"api-{i}"))
    twin.add_profile(NS, "p", {**PROFILE, "rollout": {"maxConcurrent": 1}})
    op = Operator(twin)
    await op.converge()
    finish_rollout(twin, "api-0")
    op.reconciler.rollouts.woken_by(NS, "api-0")
    await op.converge()
    finish_rollout(twin, "api-1")
    op.reconciler.rollouts.woken_by(NS, "api-1")
    await op.converge()
    assert set(states(op).values()) == {"Compliant"}
    assert len(twin.applies) == 2

    # Someone drops the probe from api-0 (drift), and a new Deployment arrives: one slot.
    body = twin.deployments[(NS, "api-0")]
    body["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe")
    body["metadata"]["generation"] += 1
    finish_rollout(twin, "api-0")
    twin.add_deployment(deployment("api-new"))
    await op.converge()
    assert [n for n, _ in twin.applies[2:]] == ["api-0"], "the drift correction took the one slot"
    assert states(op)["api-new"] == "Pending"
    finish_rollout(twin, "api-0")
    assert op.reconciler.rollouts.woken_by(NS, "api-0") == ["api-new"]
    await op.converge()
    assert [n for n, _ in twin.applies[2:]] == ["api-0", "api-new"]


async def test_a_halted_profile_deleted_and_created_again_starts_afresh(twin: Twin) -> None:
    for i in range(2):
        twin.add_deployment(deployment(f"api-{i}"))
    spec = {**PROFILE, "rollout": {"maxConcurrent": 1, "onFailure": "Pause"}}
    twin.add_profile(NS, "p", spec)
    op = Operator(twin)
    await op.converge()
    fail_rollout(twin, "api-0")
    await op.converge()
    assert states(op)["api-1"] == "Pending"
    ready = condition_of(op, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RolloutFailed"), "a halt is not ready"

    twin.delete_profile(NS, "p")
    op.reconciler.forget_profile(NS, "p")
    twin.add_profile(NS, "p", spec, uid="uid-p-again")  # generation 1 again, a new object
    await op.converge()
    assert [n for n, _ in twin.applies] == ["api-0", "api-1"], "the old halt is not the new profile's"


async def test_kubectl_describe_deployment_says_what_an_audit_profile_finds(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", {**PROFILE, "mode": "Audit"})
    op = Operator(twin)
    await op.converge()
    said = [e for e in twin.events if e[0] == "api"]
    assert said == [("api", "Warning", "NotCompliant")]
    message = twin.event_messages[-1]
    assert message.startswith("ServiceProfile p: (Audit) "), message
    assert "readiness" in message, message
    op.reconciler.forget_decisions()
    await op.converge()
    assert [e for e in twin.events if e[0] == "api"] == said, "once per change, not per pass"

    # The team adds what the profile asks for: the Deployment hears that too.
    body = twin.deployments[(NS, "api")]
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"] = {"httpGet": {"path": "/ready", "port": "http"}}
    container["resources"] = {"limits": {"memory": "256Mi"}}
    body["metadata"]["generation"] += 1
    twin.touch(NS, "api")
    await op.converge()
    assert [e for e in twin.events if e[0] == "api"][1:] == [("api", "Normal", "Compliant")]
    assert twin.applies == [], "an Audit profile writes nothing"


async def test_next_change_never_starts_a_rollout_and_says_what_it_waits_for(twin: Twin) -> None:
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", {**PROFILE, "rollout": {"trigger": "NextChange"}})
    op = Operator(twin)
    [outcome] = await op.converge()
    assert (outcome.applied, outcome.pending, outcome.retry) == (False, False, False)
    assert twin.applies == []
    [target] = op.status()["targets"]
    assert target["state"] == "Pending"
    assert target["message"].startswith("waits for the team's next rollout (rollout.trigger NextChange): ")
    progressing = next(c for c in op.status()["conditions"] if c["type"] == "Progressing")
    assert (
        progressing["message"]
        == "1 Deployments wait for their team's next rollout (rollout.trigger NextChange)"
    )
    second = await op.converge()
    assert [o.skipped for o in second] == [True], "decided: nothing to do until the Deployment changes"


async def test_next_change_keeps_what_a_profile_stopped_setting_and_says_so(twin: Twin) -> None:
    """Releasing a dropped section is a rollout of its own, and admission only ever sets: under
    NextChange the target is compliant with what the profile asks, and says what stays."""
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", {**PROFILE, "logging": {"level": "info"}})
    op = Operator(twin)
    await op.converge()
    assert len(twin.applies) == 1
    twin.add_profile(NS, "p", {**PROFILE, "rollout": {"trigger": "NextChange"}}, generation=2)
    await op.converge()
    [target] = op.status()["targets"]
    assert target["state"] == "Compliant", target
    assert "no longer sets stay in place" in target["message"]
    assert len(twin.applies) == 1, "no release, no rollout"
