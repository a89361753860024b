"""The webhook around the engine: where profiles come from, that errors never refuse, and the
registration's shape (deploy/webhook/ is the same configuration)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml
from tests.support.admission import FULL, deployment, request
from tests.support.paths import ROOT

from readiness.cache.world import ProfileRecord, World
from readiness.k8s import ApiError
from readiness.observe.metrics import Metrics
from readiness.webhook.admitter import HANDLER_ID, Admitter, ProfileSource
from readiness.webhook.registration import Registration, namespace_selector, webhook_configuration


def profile_body(name: str = "api", generation: int = 1, **sections: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}", "generation": generation},
        "spec": {"selector": {"matchLabels": {"app": "api"}}, **sections},
    }


class Api:
    """The namespace's profiles as the API lists them, counted."""

    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.bodies = list(bodies)
        self.lists = 0
        self.fail: Exception | None = None

    async def __call__(self, namespace: str) -> list[dict[str, Any]]:
        self.lists += 1
        await asyncio.sleep(0.01)
        if self.fail is not None:
            raise self.fail
        return [b for b in self.bodies if b["metadata"]["namespace"] == namespace]


def source(world: World, api: Api, trusted: bool, clock: list[float] | None = None) -> ProfileSource:
    async def trust(_: str) -> bool:
        return trusted

    now = clock if clock is not None else [0.0]
    return ProfileSource(world, trust, api, ttl=2.0, monotonic=lambda: now[0])


async def test_the_active_replica_decides_from_its_world_without_a_read() -> None:
    world = World()
    world.put_profile(ProfileRecord.from_body(profile_body(generation=4, **FULL)))
    api = Api()
    found = await source(world, api, trusted=True).candidates("shop")
    assert {name: c.generation for name, c in found.items()} == {"api": 4}
    assert api.lists == 0


async def test_a_replica_that_cannot_trust_its_world_reads_the_api_once_per_ttl() -> None:
    clock = [0.0]
    api = Api(profile_body(**FULL), profile_body("broken", probes={"port": "http"}, mode="Sideways"))
    profiles = source(World(), api, trusted=False, clock=clock)
    first = await asyncio.gather(*(profiles.candidates("shop") for _ in range(5)))
    assert [sorted(f) for f in first] == [["api"]] * 5, "an invalid profile selects nothing"
    assert api.lists == 1, "concurrent requests share one read"
    clock[0] = 1.9
    await profiles.candidates("shop")
    assert api.lists == 1
    clock[0] = 2.1
    await profiles.candidates("shop")
    assert api.lists == 2


async def test_a_peering_object_that_cannot_be_read_means_reading_the_profiles() -> None:
    async def broken(_: str) -> bool:
        raise ApiError(status=503, reason="Unavailable", message="down")

    api = Api(profile_body(**FULL))
    profiles = ProfileSource(World(), broken, api)
    assert list(await profiles.candidates("shop")) == ["api"]
    assert api.lists == 1


async def test_the_admitter_mutates_and_measures() -> None:
    metrics = Metrics()
    admitter = Admitter(source(World(), Api(profile_body(**FULL)), trusted=False), metrics, lambda ns: True)
    admission = await admitter.review(request(deployment()))
    assert admission.outcome == "Mutated"
    assert metrics.admissions.labels("Mutated", "mutated")._value.get() == 1
    assert metrics.admission_seconds._sum.get() > 0


async def test_an_error_admits_the_deployment_as_sent() -> None:
    api = Api()
    api.fail = ApiError(status=500, reason="InternalError", message="etcd is down")
    metrics = Metrics()
    admitter = Admitter(source(World(), api, trusted=False), metrics, lambda ns: True)
    admission = await admitter.review(request(deployment()))
    assert (admission.outcome, admission.reason, admission.obj) == ("Skipped", "error", None)
    assert metrics.admissions.labels("Skipped", "error")._value.get() == 1


async def test_what_needs_no_profile_reads_none() -> None:
    api = Api(profile_body(**FULL))
    watched = Admitter(source(World(), api, trusted=False), Metrics(), lambda ns: ns == "shop")
    old = deployment()
    scaled = {**old, "spec": {**old["spec"], "replicas": 5}}
    assert (await watched.review(request(scaled, "UPDATE", oldObject=old))).reason == "template-unchanged"
    assert (await watched.review({**request(deployment()), "namespace": "elsewhere"})).reason == "not-watched"
    assert api.lists == 0


@pytest.mark.parametrize(
    ("namespaces", "names"),
    [("", None), ("shop", ["shop"]), ("shop, books", ["books", "shop"]), ("shop-*", None), ("!dev", None)],
)
def test_the_namespace_selector_names_plain_namespaces_only(namespaces: str, names: list[str] | None) -> None:
    selector = namespace_selector(namespaces)
    expressions = selector["matchExpressions"]
    assert expressions[0] == {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": ["kube-system"],
    }
    assert (expressions[1]["values"] if len(expressions) > 1 else None) == names


def test_the_configuration_is_safe_by_construction() -> None:
    body = webhook_configuration(
        "x", {"url": "https://127.0.0.1:1/admit-deployments"}, namespace_selector("")
    )
    [hook] = body["webhooks"]
    assert hook["sideEffects"] == "None"
    assert hook["failurePolicy"] == "Ignore"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["timeoutSeconds"] == 5
    assert hook["rules"] == [
        {
            "apiGroups": ["apps"],
            "apiVersions": ["v1"],
            "resources": ["deployments"],
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
    ]


def test_deploy_webhook_registers_the_same_configuration() -> None:
    shipped = yaml.safe_load((ROOT / "deploy" / "webhook" / "mutatingwebhookconfiguration.yaml").read_text())
    service = {
        "name": "readiness-operator-webhook",
        "namespace": "readiness-system",
        "path": f"/{HANDLER_ID}",
        "port": 443,
    }
    built = webhook_configuration(
        "readiness-operator",
        {"service": service},
        namespace_selector("", exclude=("kube-system", "readiness-system")),
    )
    annotations = shipped["metadata"].pop("annotations")
    assert annotations == {"cert-manager.io/inject-ca-from": "readiness-system/readiness-operator-webhook"}
    assert shipped == built
    component = yaml.safe_load((ROOT / "deploy" / "webhook" / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    patch = yaml.safe_load((ROOT / "deploy" / "webhook" / "operator-patch.yaml").read_text())
    env = {op["value"]["name"]: op["value"].get("value") for op in patch if op["path"].endswith("/env/-")}
    assert env == {
        "READINESS_WEBHOOK": "cluster",
        "READINESS_WEBHOOK_PORT": "9443",
        "READINESS_WEBHOOK_CERT_DIR": "/etc/readiness/webhook",
    }


async def test_a_halted_profile_mutates_nothing() -> None:
    """A rollout of this generation failed: the reconciler writes nothing more for it, and
    neither does admission (a team's next deploy would carry the breaking fields)."""
    body = profile_body(generation=2, **FULL)
    body["status"] = {
        "observedGeneration": 2,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "RolloutFailed"}],
    }
    admitter = Admitter(source(World(), Api(body), trusted=False), Metrics(), lambda ns: True)
    admission = await admitter.review(request(deployment()))
    assert (admission.outcome, admission.reason) == ("Skipped", "halted")
    body["metadata"]["generation"] = 3  # a person fixed the profile: admission goes on
    fixed = Admitter(source(World(), Api(body), trusted=False), Metrics(), lambda ns: True)
    assert (await fixed.review(request(deployment()))).outcome == "Mutated"


async def test_profiles_that_cannot_be_had_quickly_admit_as_sent() -> None:
    class Slow(Api):
        async def __call__(self, namespace: str) -> list[dict[str, Any]]:
            await asyncio.sleep(10)
            return []

    metrics = Metrics()
    admitter = Admitter(source(World(), Slow(), trusted=False), metrics, lambda ns: True, patience=0.05)
    admission = await asyncio.wait_for(admitter.review(request(deployment())), timeout=2)
    assert (admission.outcome, admission.reason) == ("Skipped", "profiles-unavailable")


class Registry:
    def __init__(self) -> None:
        self.applied: list[Any] = []
        self.deleted: list[str] = []
        self.fail: ApiError | None = None

    async def apply_webhook_configuration(self, body: Any) -> None:
        if self.fail is not None:
            raise self.fail
        self.applied.append(body)

    async def delete_webhook_configuration(self, name: str) -> None:
        self.deleted.append(name)


async def test_registration_says_when_it_is_missing_and_recovers() -> None:
    registry = Registry()
    registration = Registration(
        registry, webhook_configuration("local-1", {"url": "u"}, namespace_selector(""))
    )
    assert registration.missing() == "not registered yet"
    registry.fail = ApiError(status=403, reason="Forbidden", message="no")
    await registration.ensure()
    assert "could not be registered" in (registration.missing() or "")
    registry.fail = None
    await registration.ensure()
    assert registration.missing() is None
    await registration.remove()
    await registration.remove()  # kopf's cleanup, then the operator's last word: once
    assert registry.deleted == ["local-1"]
