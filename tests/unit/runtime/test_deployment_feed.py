"""The Deployment feed hands every event on, whatever one of them does to the controller."""

from __future__ import annotations

from typing import Any, cast

from kubernetes import client as k8s

from readiness.k8s import KubernetesCluster, Transport
from readiness.runtime.deployments import DeploymentFeed
from readiness.runtime.settings import Settings


class Controller:
    def __init__(self) -> None:
        self.taken: list[str] = []

    def deployment_event(self, type_: str | None, body: dict[str, Any]) -> None:
        if body["metadata"]["name"] == "bad":
            raise KeyError("a field the controller did not expect")
        self.taken.append(body["metadata"]["name"])


async def test_a_deployment_the_controller_cannot_take_does_not_stop_the_others() -> None:
    controller = Controller()
    transport = Transport(k8s.Configuration(host="http://127.0.0.1:1"))
    feed = DeploymentFeed(KubernetesCluster(transport), cast(Any, controller), Settings())
    feed._deliver([(None, {"metadata": {"namespace": "shop", "name": n}}) for n in ("a", "bad", "b")])
    assert controller.taken == ["a", "b"]
