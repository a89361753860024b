"""The request path against a local HTTP server standing in for the apiserver: what goes out,
how refusals come back, how a 429 is waited out."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client as k8s
from tests.support.paths import DATA

from readiness import FIELD_MANAGER
from readiness.k8s import ApiError, KubernetesCluster, ObjectRef, Transport

DEPLOYMENT = "/apis/apps/v1/namespaces/shop/deployments/api"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Apiserver:
    """Answers each request with the next of ``answers`` (status, body, headers); the last one
    repeats."""

    answers: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                json.loads(raw) if raw else None,
            )
        )
        status, body, headers = self.answers[min(len(self.seen), len(self.answers)) - 1]
        return web.Response(status=status, text=body, headers=headers, content_type="application/json")


@pytest.fixture
async def served() -> AsyncIterator[tuple[Apiserver, Callable[..., KubernetesCluster]]]:
    apiserver = Apiserver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", apiserver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    transports: list[Transport] = []

    def cluster(token: str | None = None, **options: Any) -> KubernetesCluster:
        configuration = k8s.Configuration(host=f"http://127.0.0.1:{port}")
        if token:
            configuration.api_key = {"authorization": token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        transports.append(Transport(configuration, **options))
        return KubernetesCluster(transports[-1])

    yield apiserver, cluster
    for transport in transports:
        await transport.close()
    await runner.cleanup()


def body() -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop"}}


async def test_an_apply_is_a_server_side_apply_patch_with_our_manager_and_the_token(served: Any) -> None:
    apiserver, cluster = served
    apiserver.answers = [(200, json.dumps({**body(), "spec": {"replicas": 2}}), {})]
    result = await cluster(token="s3cret").apply_deployment(body(), force=True)
    assert result["spec"] == {"replicas": 2}, "the apiserver's answer, parsed"
    [seen] = apiserver.seen
    assert (seen.method, seen.path, seen.body) == ("PATCH", DEPLOYMENT, body())
    assert seen.query == {"fieldManager": FIELD_MANAGER, "force": "true"}
    assert seen.headers["Content-Type"] == "application/apply-patch+yaml"
    assert seen.headers["Authorization"] == "Bearer s3cret"


async def test_the_token_is_asked_for_again_once_its_time_is_up(served: Any) -> None:
    """The in-cluster loader's hook re-reads a rotated service-account token: a call after the
    cached one's time sends the token of its moment."""
    apiserver, cluster = served
    apiserver.answers = [(201, "{}", {})]
    client = cluster(token="one", auth_seconds=0)
    tokens = iter(["two", "three"])
    client.transport._configuration.refresh_api_key_hook = lambda c: c.api_key.update(
        authorization=next(tokens)
    )
    ref = ObjectRef("apps/v1", "Deployment", "shop", "api", "u1")
    await client.post_event(ref, "Normal", "ProfileApplied", "set probes")
    await client.post_event(ref, "Normal", "ProfileApplied", "set probes")
    assert [s.headers["Authorization"] for s in apiserver.seen] == ["Bearer two", "Bearer three"]
    event = apiserver.seen[0].body
    assert apiserver.seen[0].path == "/api/v1/namespaces/shop/events"
    assert event["involvedObject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "namespace": "shop",
        "name": "api",
        "uid": "u1",
    }


async def test_a_401_asks_for_the_token_again_and_retries_once(served: Any) -> None:
    apiserver, cluster = served
    unauthorized: tuple[int, str, dict[str, str]] = (
        401,
        '{"reason": "Unauthorized", "message": "Unauthorized"}',
        {},
    )
    apiserver.answers = [unauthorized, (200, json.dumps(body()), {})]
    client = cluster(token="old")  # cached for AUTH_SECONDS
    await client.list_namespaces()  # answered 401 then 200
    assert [s.headers["Authorization"] for s in apiserver.seen] == ["Bearer old", "Bearer old"]

    apiserver.seen.clear()
    apiserver.answers = [unauthorized, (200, "{}", {})]
    client.transport._configuration.api_key = {"authorization": "new"}  # rotated under us
    await client.list_namespaces()
    assert [s.headers["Authorization"] for s in apiserver.seen] == ["Bearer old", "Bearer new"]

    apiserver.seen.clear()
    apiserver.answers = [unauthorized]
    with pytest.raises(ApiError) as caught:
        await client.list_namespaces()
    assert caught.value.status == 401
    assert len(apiserver.seen) == 2, "asked again once, not forever"


@pytest.mark.parametrize(
    ("proxy", "no_proxy", "expected"),
    [
        ("http://proxy:3128", None, "http://proxy:3128"),
        ("http://proxy:3128", "10.96.0.0/12,.svc", None),
        ("http://proxy:3128", "*", None),
        (None, None, None),
    ],
)
def test_the_proxy_is_the_configurations_unless_no_proxy_exempts_the_apiserver(
    proxy: str | None, no_proxy: str | None, expected: str | None
) -> None:
    configuration = k8s.Configuration(host="https://10.96.0.1:443")
    configuration.proxy, configuration.no_proxy = proxy, no_proxy
    configuration.verify_ssl = False
    assert Transport(configuration)._proxy == expected


def test_a_socks_proxy_is_a_clear_error() -> None:
    configuration = k8s.Configuration(host="https://10.96.0.1:443")
    configuration.proxy, configuration.verify_ssl = "socks5://proxy:1080", False
    with pytest.raises(ValueError, match="only HTTP"):
        Transport(configuration)


async def test_a_real_409_names_each_field_and_its_manager(served: Any) -> None:
    """The body the apiserver sent for an apply over kubectl's fields (recorded from the testbed)."""
    apiserver, cluster = served
    recorded = (DATA / "apply-conflict-409.json").read_text()
    apiserver.answers = [(409, recorded, {})]
    with pytest.raises(ApiError) as caught:
        await cluster().apply_deployment(body(), force=False)
    error = caught.value
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
    assert apiserver.seen[0].query["force"] == "false"


@pytest.mark.parametrize(
    ("status", "answer", "retryable", "conflict", "message"),
    [
        (
            422,
            '{"reason": "Invalid", "message": "spec.template: Invalid value"}',
            False,
            False,
            "spec.template",
        ),
        (503, "not json", True, False, "not json"),
        # A resourceVersion precondition that failed: decided again from the newer object.
        (409, '{"reason": "Conflict", "message": "the object has been modified"}', True, False, "modified"),
    ],
)
async def test_other_api_errors(
    served: Any, status: int, answer: str, retryable: bool, conflict: bool, message: str
) -> None:
    apiserver, cluster = served
    apiserver.answers = [(status, answer, {})]
    with pytest.raises(ApiError) as caught:
        await cluster(throttle_retries=0).patch_profile_status("shop", "web", {"observedGeneration": 2})
    error = caught.value
    assert (error.status, error.retryable, error.conflict) == (status, retryable, conflict)
    assert message in error.message
    [seen] = apiserver.seen
    assert seen.path == "/apis/readiness.dev/v1alpha1/namespaces/shop/serviceprofiles/web/status"
    assert seen.headers["Content-Type"] == "application/merge-patch+json"
    assert seen.body == {"status": {"observedGeneration": 2}}


async def test_an_unreachable_apiserver_is_status_0_and_retried() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    transport = Transport(k8s.Configuration(host=f"http://127.0.0.1:{port}"))
    try:
        with pytest.raises(ApiError) as caught:
            await KubernetesCluster(transport).list_namespaces()
    finally:
        await transport.close()
    assert (caught.value.status, caught.value.retryable) == (0, True)


async def test_a_429_pauses_for_retry_after_then_the_call_succeeds(served: Any) -> None:
    apiserver, cluster = served
    busy = (429, '{"reason": "TooManyRequests", "message": "too many requests"}', {"Retry-After": "0"})
    apiserver.answers = [busy, busy, (200, json.dumps(body()), {})]
    result = await cluster(throttle_retries=3).apply_deployment(body(), force=False)
    assert result["metadata"]["name"] == "api"
    assert len(apiserver.seen) == 3

    apiserver.seen.clear()
    apiserver.answers = [busy]
    with pytest.raises(ApiError) as caught:
        await cluster(throttle_retries=3).apply_deployment(body(), force=False)
    assert (caught.value.status, caught.value.retry_after, caught.value.retryable) == (429, 0.0, True)
    assert len(apiserver.seen) == 4, "tried once and retried three times"


async def test_a_crd_that_is_not_installed_is_false_and_a_missing_webhook_is_fine(served: Any) -> None:
    apiserver, cluster = served
    apiserver.answers = [(404, '{"reason": "NotFound", "message": "not found"}', {})]
    client = cluster()
    assert await client.crd_established() is False
    await client.delete_webhook_configuration("readiness-operator")
    assert [s.method for s in apiserver.seen] == ["GET", "DELETE"]
