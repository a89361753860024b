"""The kopf wiring, the API errors and the assembly's pieces, without a cluster."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

import kopf
import pytest
from kubernetes.client.exceptions import ApiException
from tests.support.paths import DATA

from readiness import API_GROUP, API_VERSION, PLURAL
from readiness.k8s.client import _error
from readiness.runtime.handlers import register
from readiness.runtime.kopfconfig import NoDiffBase, kopf_settings
from readiness.runtime.settings import Settings


class Recorder:
    """Stands in for the controller: what each handler hands on."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def index_profile(self, body: Any) -> None:
        self.calls.append(("index", body["metadata"]["name"]))

    def deployment_event(self, type_: str | None, body: Any) -> None:
        self.calls.append(("deployment", type_, body["metadata"]["name"]))

    def profile_event(self, type_: str | None, namespace: str, name: str) -> None:
        self.calls.append(("profile", type_, namespace, name))


def wired() -> tuple[kopf.OperatorRegistry, Recorder]:
    registry, recorder = kopf.OperatorRegistry(), Recorder()
    register(registry, recorder)  # type: ignore[arg-type]
    return registry, recorder


def selected(handlers: list[Any]) -> list[tuple[str, str, str]]:
    return [(h.selector.group, h.selector.version, h.selector.any_name) for h in handlers]


def test_profiles_are_indexed_and_watched_and_deployments_are_not_kopfs() -> None:
    registry, _ = wired()
    profiles = (API_GROUP, API_VERSION, PLURAL)
    indexing: list[Any] = list(registry._indexing.get_all_handlers())
    watching: list[Any] = list(registry._watching.get_all_handlers())
    assert selected(indexing) == [profiles], "every profile known before its first event"
    assert selected(watching) == [profiles], "Deployments come from runtime/deployments.py"
    assert registry._changing.get_all_handlers() == [], "no change handlers: no kopf annotations anywhere"
    assert all(asyncio.iscoroutinefunction(h.fn) for h in [*indexing, *watching]), (
        "a sync handler runs in a thread per event"
    )


async def test_each_handler_hands_the_event_to_the_controller() -> None:
    registry, recorder = wired()
    body = {"metadata": {"name": "api", "namespace": "shop"}}
    handlers = [
        cast(Callable[..., Awaitable[Any]], h.fn)
        for h in [*registry._indexing.get_all_handlers(), *registry._watching.get_all_handlers()]
    ]
    for fn in handlers:
        await fn(type="MODIFIED", body=body, namespace="shop", name="api")
    assert sorted(recorder.calls, key=str) == sorted(
        [("index", "api"), ("profile", "MODIFIED", "shop", "api")], key=str
    )


def test_a_real_409_names_each_field_and_its_manager() -> None:
    """The body the apiserver sent for an apply over kubectl's fields (recorded from the testbed)."""
    recorded = (DATA / "apply-conflict-409.json").read_text()
    exc = ApiException(status=409, reason="Conflict")
    exc.body = recorded
    error = _error(exc)
    assert error.conflict
    assert not error.retryable
    assert [(c.manager, c.field) for c in error.causes] == [
        ("kubectl-client-side-apply", "spec.template.spec.terminationGracePeriodSeconds"),
        (
            "kubectl-client-side-apply",
            'spec.template.spec.containers[name="app"].readinessProbe.httpGet.path',
        ),
    ]
    assert error.message == json.loads(recorded)["message"]


@pytest.mark.parametrize(
    ("status", "body", "retryable", "conflict"),
    [
        (422, '{"reason": "Invalid", "message": "spec.template: Invalid value"}', False, False),
        (503, "not json", True, False),
        # A resourceVersion precondition that failed: decided again from the newer object.
        (409, '{"reason": "Conflict", "message": "the object has been modified"}', True, False),
    ],
)
def test_other_api_errors(status: int, body: str, retryable: bool, conflict: bool) -> None:
    exc = ApiException(status=status, reason="x")
    exc.body = body
    error = _error(exc)
    assert (error.status, error.retryable, error.conflict) == (status, retryable, conflict)


def test_an_unreachable_apiserver_is_status_0_and_retried() -> None:
    error = _error(ConnectionRefusedError("connection refused"))
    assert (error.status, error.retryable) == (0, True)


def test_kopf_keeps_nothing_on_deployments_and_uses_our_prefix() -> None:
    ks = kopf_settings(Settings(), priority=7)
    assert ks.persistence.finalizer == f"{API_GROUP}/finalizer"
    assert isinstance(ks.persistence.diffbase_storage, NoDiffBase)
    assert ks.peering.standalone is True
    peered = kopf_settings(Settings(peering="readiness-operator", namespaces="shop"), priority=7)
    assert (peered.peering.name, peered.peering.priority, peered.peering.clusterwide) == (
        "readiness-operator",
        7,
        False,
    )
    assert peered.peering.mandatory is True
