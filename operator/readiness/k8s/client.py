"""The only code that talks to the Kubernetes API: applies, status patches and events.

Credentials come from the official client's loader; the calls go over ``Transport`` (aiohttp on
the event loop).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from .. import API_GROUP, API_VERSION, FIELD_MANAGER, PLURAL, REVERT_MANAGER
from .errors import ApiError
from .transport import APPLY, JSON_PATCH, MERGE, Transport

_COMPONENT = "readiness-operator"


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str = ""


class Cluster(Protocol):
    """What the reconciler needs from the API (an in-memory twin serves the tests)."""

    async def apply_deployment(self, body: Mapping[str, Any], *, force: bool) -> dict[str, Any]: ...

    async def patch_profile_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...

    async def revert_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def post_event(
        self, ref: ObjectRef, type_: str, reason: str, message: str, at: float | None = None
    ) -> None: ...


class PodLister(Protocol):
    """The pods of a Deployment's newest ReplicaSet, read only while a rollout the operator
    started is under way."""

    async def new_pods(
        self, namespace: str, deployment: str, labels: Mapping[str, str], seconds: float
    ) -> list[dict[str, Any]]: ...


class NoCredentials(Exception):
    """Neither the pod's service account nor a usable kubeconfig: the operator cannot start."""


def load_configuration() -> k8s.Configuration:
    """KUBECONFIG (or ~/.kube/config) when present, else the in-cluster service account."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        if not any(os.path.exists(p) for p in path.split(os.pathsep)):
            raise NoCredentials(
                f"no cluster credentials: not running in a pod and no kubeconfig ({path}); set KUBECONFIG"
            ) from None
        try:
            k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (k8s_config.ConfigException, yaml.YAMLError, OSError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise NoCredentials(f"cannot use the kubeconfig {path}: {first}") from None
    return configuration


REVISION = "deployment.kubernetes.io/revision"


class KubernetesCluster:
    """``Cluster`` (and ``PodLister``) over one ``Transport``."""

    def __init__(self, transport: Transport) -> None:
        self._http = transport

    @property
    def transport(self) -> Transport:
        return self._http

    async def apply_deployment(self, body: Mapping[str, Any], *, force: bool) -> dict[str, Any]:
        meta = body["metadata"]
        result: dict[str, Any] = await self._http.request(
            "PATCH",
            _deployment(meta["namespace"], meta["name"]),
            params={"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"},
            body=dict(body),
            content_type=APPLY,
            name="apply_deployment",
        )
        return result  # unparsed into models on purpose: the engine reads the raw object

    async def revert_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Put back the pod template of the Deployment's previous revision (what `kubectl rollout
        undo` does), so its old ReplicaSet serves again. None when there is no earlier revision."""
        live = await self._http.request("GET", _deployment(namespace, name), name="read_deployment")
        revision = int((live["metadata"].get("annotations") or {}).get(REVISION, "0") or 0)
        selector = ",".join(
            f"{k}={v}" for k, v in (live["spec"]["selector"].get("matchLabels") or {}).items()
        )
        sets = (
            await self._http.request(
                "GET",
                f"/apis/apps/v1/namespaces/{_q(namespace)}/replicasets",
                params={"labelSelector": selector},
                name="list_replicasets",
            )
        )["items"] or []
        owned = [
            rs
            for rs in sets
            if any(
                o.get("uid") == live["metadata"]["uid"] for o in rs["metadata"].get("ownerReferences") or []
            )
            and 0 < int((rs["metadata"].get("annotations") or {}).get(REVISION, "0") or 0) < revision
        ]
        if not owned:
            return None
        previous = max(owned, key=lambda rs: int(rs["metadata"]["annotations"][REVISION]))
        template = dict(previous["spec"]["template"])
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        labels.pop("pod-template-hash", None)
        template["metadata"] = {**(template.get("metadata") or {}), "labels": labels}
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": live["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/spec/template", "value": template},
        ]
        result: dict[str, Any] = await self._http.request(
            "PATCH",
            _deployment(namespace, name),
            params={"fieldManager": REVERT_MANAGER},
            body=patch,
            content_type=JSON_PATCH,
            name="revert_deployment",
        )
        return result

    async def patch_profile_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        await self._http.request(
            "PATCH",
            f"{_profiles(namespace)}/{_q(name)}/status",
            params={"fieldManager": FIELD_MANAGER},
            body={"status": dict(status)},
            content_type=MERGE,
            name="patch_profile_status",
        )

    async def post_event(
        self, ref: ObjectRef, type_: str, reason: str, message: str, at: float | None = None
    ) -> None:
        """``at``: when it happened (seconds since the epoch), if not now."""
        now = dt.datetime.fromtimestamp(at, dt.UTC) if at is not None else dt.datetime.now(dt.UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{ref.name}.{uuid.uuid4().hex[:16]}", "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "namespace": ref.namespace,
                "name": ref.name,
                "uid": ref.uid or None,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": _COMPONENT},
            "reportingComponent": f"{API_GROUP}/{_COMPONENT}",
            "reportingInstance": _COMPONENT,
            "action": reason,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        await self._http.request(
            "POST", f"/api/v1/namespaces/{_q(ref.namespace)}/events", body=event, name="post_event"
        )

    async def read_peering(self, name: str, namespace: str | None) -> dict[str, Any] | None:
        """kopf's peering object (ClusterKopfPeering, or KopfPeering in ``namespace``)."""
        try:
            result: dict[str, Any] = await self._http.request(
                "GET", f"{_peerings(namespace)}/{_q(name)}", name="read_peering"
            )
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return result

    async def create_peering(self, name: str, namespace: str | None) -> bool:
        """Create kopf's peering object unless it exists (kopf patches it but never creates it,
        and keeps its watches paused until it exists). True when this call created it."""
        kind = "ClusterKopfPeering" if namespace is None else "KopfPeering"
        body = {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": {"name": name}}
        try:
            await self._http.request("POST", _peerings(namespace), body=body, name="create_peering")
        except ApiError as error:
            if error.status == 409:
                return False
            raise
        return True

    async def peering_namespaces(self, name: str) -> set[str]:
        """The namespaces that hold a KopfPeering called ``name``."""
        listed = await self._http.request("GET", "/apis/kopf.dev/v1/kopfpeerings", name="list_peerings")
        return {
            str(item["metadata"]["namespace"])
            for item in listed.get("items") or ()
            if item["metadata"]["name"] == name
        }

    async def list_namespaces(self) -> list[str]:
        listed = await self._http.request("GET", "/api/v1/namespaces", name="list_namespaces")
        return [str(item["metadata"]["name"]) for item in listed.get("items") or ()]

    async def crd_established(self) -> bool:
        """True when the ServiceProfile CRD exists and the apiserver serves it; False when it is
        not installed. An apiserver that cannot be asked raises ApiError."""
        try:
            crd = await self._http.request(
                "GET",
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{PLURAL}.{API_GROUP}",
                seconds=5,
                name="read_crd",
            )
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in crd.get("status", {}).get("conditions", [])
        )

    async def list_deployments(self, namespace: str, seconds: float) -> list[dict[str, Any]]:
        """The Deployments of one namespace, as the API has them now."""
        return await self._items(
            f"/apis/apps/v1/namespaces/{_q(namespace)}/deployments", seconds, "list_deployments"
        )

    async def new_pods(
        self, namespace: str, deployment: str, labels: Mapping[str, str], seconds: float
    ) -> list[dict[str, Any]]:
        """The pods of the Deployment's ReplicaSet of the highest revision (from the apiserver's
        cache: resourceVersion 0), found by the template's labels and that ReplicaSet's
        pod-template-hash: never another Deployment's pods, nor an older ReplicaSet's."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        sets = await self._items(
            f"/apis/apps/v1/namespaces/{_q(namespace)}/replicasets",
            seconds,
            "list_replicasets",
            {"labelSelector": selector, "resourceVersion": "0"},
        )
        owned = [
            rs
            for rs in sets
            if any(
                o.get("kind") == "Deployment" and o.get("name") == deployment
                for o in rs["metadata"].get("ownerReferences") or ()
            )
        ]
        if not owned:
            return []
        newest = max(owned, key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(REVISION, 0)))
        template_hash = (newest["metadata"].get("labels") or {}).get("pod-template-hash")
        if not template_hash:
            return []
        return await self._items(
            f"/api/v1/namespaces/{_q(namespace)}/pods",
            seconds,
            "new_pods",
            {
                "labelSelector": f"{selector},pod-template-hash={template_hash}"
                if selector
                else f"pod-template-hash={template_hash}",
                "resourceVersion": "0",
            },
        )

    async def list_profiles(self, namespace: str, seconds: float) -> list[dict[str, Any]]:
        """The ServiceProfiles of one namespace, as the API has them now."""
        return await self._items(_profiles(namespace), seconds, "list_profiles")

    async def list_all_profiles(self, seconds: float) -> list[dict[str, Any]]:
        """The ServiceProfiles of every namespace, as the API has them now."""
        return await self._items(f"/apis/{API_GROUP}/{API_VERSION}/{PLURAL}", seconds, "list_profiles")

    async def apply_webhook_configuration(self, body: Mapping[str, Any]) -> None:
        """Server-side apply of a MutatingWebhookConfiguration (READINESS_WEBHOOK=local's own)."""
        await self._http.request(
            "PATCH",
            f"{_WEBHOOKS}/{_q(body['metadata']['name'])}",
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=dict(body),
            content_type=APPLY,
            name="apply_webhook_configuration",
        )

    async def delete_webhook_configuration(self, name: str) -> None:
        """Remove a MutatingWebhookConfiguration; one already gone is fine."""
        try:
            await self._http.request("DELETE", f"{_WEBHOOKS}/{_q(name)}", name="delete_webhook_configuration")
        except ApiError as error:
            if error.status != 404:
                raise

    async def _items(
        self, path: str, seconds: float, name: str, params: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        listed = await self._http.request("GET", path, params=params, seconds=seconds, name=name)
        return [dict(item) for item in listed.get("items") or ()]

    async def close(self) -> None:
        await self._http.close()


_WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _deployment(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{_q(namespace)}/deployments/{_q(name)}"


def _profiles(namespace: str) -> str:
    return f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{_q(namespace)}/{PLURAL}"


def _peerings(namespace: str | None) -> str:
    if namespace is None:
        return "/apis/kopf.dev/v1/clusterkopfpeerings"
    return f"/apis/kopf.dev/v1/namespaces/{_q(namespace)}/kopfpeerings"
