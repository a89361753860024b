"""The kopf wiring and the assembly's pieces, without a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import kopf

from readiness import API_GROUP, API_VERSION, PLURAL
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
