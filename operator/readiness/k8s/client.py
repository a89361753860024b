"""The only code that talks to the Kubernetes API: applies, status patches and events.

The official client is synchronous; every call runs in a bounded thread pool so the event
loop (and kopf's watches) never block on the network.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import orjson
import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from readiness.observe.tracing import tracer

from .. import API_GROUP, API_VERSION, FIELD_MANAGER, PLURAL, REVERT_MANAGER
from .errors import ApiError, FieldCause

T = TypeVar("T")
_MANAGER = re.compile(r'conflict with "([^"]+)"')
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


def load_api_client(connections: int = 10) -> k8s.ApiClient:
    """KUBECONFIG (or ~/.kube/config) when present, else the in-cluster service account.

    ``connections`` sizes urllib3's pool: as many as calls may be in flight, so no call
    waits for, or throws away, a connection.
    """
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
    configuration.connection_pool_maxsize = connections
    return k8s.ApiClient(configuration)


REVISION = "deployment.kubernetes.io/revision"


def _body(response: Any) -> Any:
    """Read an unparsed response whole and hand its connection back to the pool: a response
    left unread keeps its connection, and the next call pays a new TLS handshake."""
    try:
        return orjson.loads(response.data or b"null")
    finally:
        response.release_conn()


def _retry_after(exc: ApiException) -> float | None:
    value = (exc.headers or {}).get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the apiserver sends seconds


def _error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiException):
        try:
            body = json.loads(exc.body or "{}")
        except ValueError:
            body = {}
        causes = []
        for cause in (body.get("details") or {}).get("causes") or []:
            match = _MANAGER.search(str(cause.get("message", "")))
            causes.append(
                FieldCause(
                    field=str(cause.get("field", "")).lstrip("."),
                    message=str(cause.get("message", "")),
                    manager=match.group(1) if match else "",
                )
            )
        return ApiError(
            status=int(exc.status or 0),
            reason=str(body.get("reason") or exc.reason or ""),
            message=str(body.get("message") or exc.reason or ""),
            causes=causes,
            retry_after=_retry_after(exc),
        )
    return ApiError(status=0, reason=type(exc).__name__, message=str(exc))


class KubernetesCluster:
    """``Cluster`` over the official client.

    A 429 (the apiserver's priority and fairness says "too many") pauses every call of this
    client for the Retry-After it names, then the call is tried again, up to ``throttle_retries``
    times: the operator slows down to what the apiserver grants instead of failing work.
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        workers: int,
        timeout: float = 30.0,
        throttle_retries: int = 3,
        max_pause: float = 30.0,
    ) -> None:
        self._apps = k8s.AppsV1Api(api_client)
        self._custom = k8s.CustomObjectsApi(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._crds = k8s.ApiextensionsV1Api(api_client)
        self._admission = k8s.AdmissionregistrationV1Api(api_client)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="k8s-api")
        self._timeout = timeout
        self._throttle_retries = throttle_retries
        self._max_pause = max_pause
        self._resume_at = 0.0  # loop time before which no call is sent (after a 429)
        self._tracer = tracer()

    async def _call(self, fn: Callable[[], T], name: str = "api") -> T:
        loop = asyncio.get_running_loop()
        with self._tracer.start_as_current_span(f"k8s.{name}") as span:
            for attempt in range(self._throttle_retries + 1):
                if (pause := self._resume_at - loop.time()) > 0:
                    await asyncio.sleep(pause)
                try:
                    return await loop.run_in_executor(self._pool, fn)
                except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                    error = _error(exc)
                    span.set_attribute("http.response.status_code", error.status)
                    if error.status != 429 or attempt == self._throttle_retries:
                        raise error from exc
                    wait = min(self._max_pause, error.retry_after if error.retry_after is not None else 1.0)
                    self._resume_at = max(self._resume_at, loop.time() + wait)
            raise AssertionError("unreachable")  # the loop returns or raises

    async def apply_deployment(self, body: Mapping[str, Any], *, force: bool) -> dict[str, Any]:
        meta = body["metadata"]

        def call() -> dict[str, Any]:
            response = self._apps.patch_namespaced_deployment(
                meta["name"],
                meta["namespace"],
                dict(body),
                field_manager=FIELD_MANAGER,
                force=force,
                _content_type="application/apply-patch+yaml",
                _preload_content=False,
                _request_timeout=self._timeout,
            )
            # Unparsed on purpose (_preload_content=False): the engine reads the raw object.
            result: dict[str, Any] = _body(response)
            return result

        return await self._call(call, "apply_deployment")

    async def revert_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Put back the pod template of the Deployment's previous revision (what `kubectl rollout
        undo` does), so its old ReplicaSet serves again. None when there is no earlier revision."""

        def call() -> dict[str, Any] | None:
            live = _body(self._apps.read_namespaced_deployment(name, namespace, _preload_content=False))
            revision = int((live["metadata"].get("annotations") or {}).get(REVISION, "0") or 0)
            selector = ",".join(
                f"{k}={v}" for k, v in (live["spec"]["selector"].get("matchLabels") or {}).items()
            )
            sets = _body(
                self._apps.list_namespaced_replica_set(
                    namespace, label_selector=selector, _preload_content=False
                )
            )["items"]
            owned = [
                rs
                for rs in sets
                if any(
                    o.get("uid") == live["metadata"]["uid"]
                    for o in rs["metadata"].get("ownerReferences") or []
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
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": live["metadata"]["resourceVersion"],
                },
                {"op": "replace", "path": "/spec/template", "value": template},
            ]
            response = self._apps.patch_namespaced_deployment(
                name,
                namespace,
                patch,
                field_manager=REVERT_MANAGER,
                _content_type="application/json-patch+json",
                _preload_content=False,
                _request_timeout=self._timeout,
            )
            result: dict[str, Any] = _body(response)
            return result

        return await self._call(call, "revert_deployment")

    async def patch_profile_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        def call() -> None:
            response = self._custom.patch_namespaced_custom_object_status(
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                name,
                {"status": dict(status)},
                field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json",
                _preload_content=False,
                _request_timeout=self._timeout,
            )
            _body(response)

        await self._call(call, "patch_profile_status")

    async def post_event(
        self, ref: ObjectRef, type_: str, reason: str, message: str, at: float | None = None
    ) -> None:
        """``at``: when it happened (seconds since the epoch), if not now."""
        now = dt.datetime.fromtimestamp(at, dt.UTC) if at is not None else dt.datetime.now(dt.UTC)
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
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        }

        def call() -> None:
            response = self._core.create_namespaced_event(
                ref.namespace, cast(Any, event), _preload_content=False, _request_timeout=self._timeout
            )
            _body(response)

        await self._call(call, "post_event")

    async def read_peering(self, name: str, namespace: str | None) -> dict[str, Any] | None:
        """kopf's peering object (ClusterKopfPeering, or KopfPeering in ``namespace``)."""

        def call() -> dict[str, Any]:
            if namespace is None:
                response = self._custom.get_cluster_custom_object(
                    "kopf.dev", "v1", "clusterkopfpeerings", name, _preload_content=False
                )
            else:
                response = self._custom.get_namespaced_custom_object(
                    "kopf.dev", "v1", namespace, "kopfpeerings", name, _preload_content=False
                )
            result: dict[str, Any] = _body(response)
            return result

        try:
            return await self._call(call, "read_peering")
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def create_peering(self, name: str, namespace: str | None) -> bool:
        """Create kopf's peering object unless it exists (kopf patches it but never creates it,
        and keeps its watches paused until it exists). True when this call created it."""
        kind = "ClusterKopfPeering" if namespace is None else "KopfPeering"
        body = {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": {"name": name}}

        def call() -> None:
            if namespace is None:
                response = self._custom.create_cluster_custom_object(
                    "kopf.dev", "v1", "clusterkopfpeerings", body, _preload_content=False
                )
            else:
                response = self._custom.create_namespaced_custom_object(
                    "kopf.dev", "v1", namespace, "kopfpeerings", body, _preload_content=False
                )
            _body(response)

        try:
            await self._call(call, "create_peering")
        except ApiError as error:
            if error.status == 409:
                return False
            raise
        return True

    async def peering_namespaces(self, name: str) -> set[str]:
        """The namespaces that hold a KopfPeering called ``name``."""

        def call() -> set[str]:
            listed = _body(
                self._custom.list_cluster_custom_object(
                    "kopf.dev", "v1", "kopfpeerings", _preload_content=False
                )
            )
            return {
                str(item["metadata"]["namespace"])
                for item in listed.get("items") or ()
                if item["metadata"]["name"] == name
            }

        return await self._call(call, "list_peerings")

    async def list_namespaces(self) -> list[str]:
        def call() -> list[str]:
            listed = _body(self._core.list_namespace(_preload_content=False))
            return [str(item["metadata"]["name"]) for item in listed.get("items") or ()]

        return await self._call(call, "list_namespaces")

    async def crd_established(self) -> bool:
        """True when the ServiceProfile CRD exists and the apiserver serves it; False when it is
        not installed. An apiserver that cannot be asked raises ApiError."""

        def call() -> bool:
            response = self._crds.read_custom_resource_definition(
                f"{PLURAL}.{API_GROUP}", _preload_content=False, _request_timeout=5
            )
            crd = _body(response)
            return any(
                c.get("type") == "Established" and c.get("status") == "True"
                for c in crd.get("status", {}).get("conditions", [])
            )

        try:
            return await self._call(call, "read_crd")
        except ApiError as error:
            if error.status == 404:
                return False
            raise

    async def list_deployments(self, namespace: str, seconds: float) -> list[dict[str, Any]]:
        """The Deployments of one namespace, as the API has them now."""

        def call() -> list[dict[str, Any]]:
            listed = _body(
                self._apps.list_namespaced_deployment(
                    namespace, _preload_content=False, _request_timeout=seconds
                )
            )
            return [dict(item) for item in listed.get("items") or ()]

        return await self._call(call, "list_deployments")

    async def new_pods(
        self, namespace: str, deployment: str, labels: Mapping[str, str], seconds: float
    ) -> list[dict[str, Any]]:
        """The pods of the Deployment's ReplicaSet of the highest revision (from the apiserver's
        cache: resourceVersion 0), found by the template's labels and that ReplicaSet's
        pod-template-hash: never another Deployment's pods, nor an older ReplicaSet's."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

        def call() -> list[dict[str, Any]]:
            sets = (
                _body(
                    self._apps.list_namespaced_replica_set(
                        namespace,
                        label_selector=selector,
                        resource_version="0",
                        _preload_content=False,
                        _request_timeout=seconds,
                    )
                ).get("items")
                or ()
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
            newest = max(
                owned, key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(REVISION, 0))
            )
            template_hash = (newest["metadata"].get("labels") or {}).get("pod-template-hash")
            if not template_hash:
                return []
            listed = _body(
                self._core.list_namespaced_pod(
                    namespace,
                    label_selector=f"{selector},pod-template-hash={template_hash}"
                    if selector
                    else f"pod-template-hash={template_hash}",
                    resource_version="0",
                    _preload_content=False,
                    _request_timeout=seconds,
                )
            )
            return [dict(item) for item in listed.get("items") or ()]

        return await self._call(call, "new_pods")

    async def list_profiles(self, namespace: str, seconds: float) -> list[dict[str, Any]]:
        """The ServiceProfiles of one namespace, as the API has them now."""

        def call() -> list[dict[str, Any]]:
            listed = _body(
                self._custom.list_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    namespace,
                    PLURAL,
                    _preload_content=False,
                    _request_timeout=seconds,
                )
            )
            return [dict(item) for item in listed.get("items") or ()]

        return await self._call(call, "list_profiles")

    async def list_all_profiles(self, seconds: float) -> list[dict[str, Any]]:
        """The ServiceProfiles of every namespace, as the API has them now."""

        def call() -> list[dict[str, Any]]:
            listed = _body(
                self._custom.list_cluster_custom_object(
                    API_GROUP, API_VERSION, PLURAL, _preload_content=False, _request_timeout=seconds
                )
            )
            return [dict(item) for item in listed.get("items") or ()]

        return await self._call(call, "list_profiles")

    async def apply_webhook_configuration(self, body: Mapping[str, Any]) -> None:
        """Server-side apply of a MutatingWebhookConfiguration (READINESS_WEBHOOK=local's own)."""

        def call() -> None:
            response = self._admission.patch_mutating_webhook_configuration(
                body["metadata"]["name"],
                dict(body),
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                _preload_content=False,
                _request_timeout=self._timeout,
            )
            _body(response)

        await self._call(call, "apply_webhook_configuration")

    async def delete_webhook_configuration(self, name: str) -> None:
        """Remove a MutatingWebhookConfiguration; one already gone is fine."""

        def call() -> None:
            _body(
                self._admission.delete_mutating_webhook_configuration(
                    name, _preload_content=False, _request_timeout=self._timeout
                )
            )

        try:
            await self._call(call, "delete_webhook_configuration")
        except ApiError as error:
            if error.status != 404:
                raise

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
