"""The admission webhook's HTTPS server: kopf's, with the certificate READINESS_WEBHOOK asks
for, and the webhook registered while it serves."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kopf

from readiness.k8s import KubernetesCluster
from readiness.runtime.errors import StartupFailure
from readiness.runtime.settings import Settings
from readiness.webhook.admitter import HANDLER_ID, REVIEW
from readiness.webhook.certs import self_signed
from readiness.webhook.registration import Registration, namespace_selector, webhook_configuration


class AdmissionServer:
    """The webhook's HTTPS server: kopf's, with the certificate READINESS_WEBHOOK asks for.

    cluster: the platform's certificate (a Secret, e.g. cert-manager's) mounted in
    READINESS_WEBHOOK_CERT_DIR; kopf serves a renewed one without a restart, and deploy/webhook/
    registers the Service. local: a CA and certificate of its own for 127.0.0.1, and a
    MutatingWebhookConfiguration with that URL and CA, removed again on a clean stop.
    """

    def __init__(self, settings: Settings, cluster: KubernetesCluster) -> None:
        self._listening = False
        self._directory: Path | None = None
        self.registration: Registration | None = None
        if settings.webhook == "local":
            port = settings.webhook_port or _free_port()
            _check_port("127.0.0.1", port)
            self._directory = Path(tempfile.mkdtemp(prefix="readiness-webhook-"))
            cert = self_signed(self._directory)
            self._server = kopf.WebhookServer(
                addr="127.0.0.1",
                host="127.0.0.1",
                port=port,
                certfile=str(cert.certfile),
                pkeyfile=str(cert.keyfile),
                cadata=cert.ca,
            )
            client = {
                "url": f"https://127.0.0.1:{port}/{HANDLER_ID}",
                "caBundle": base64.b64encode(cert.ca).decode(),
            }
            body = webhook_configuration(
                f"readiness-operator-local-{port}", client, namespace_selector(settings.namespaces)
            )
            self.registration = Registration(cluster, body)
        else:
            certfile, keyfile = (Path(settings.webhook_cert_dir) / n for n in ("tls.crt", "tls.key"))
            if not (certfile.is_file() and keyfile.is_file()):
                raise StartupFailure(
                    f"READINESS_WEBHOOK=cluster needs tls.crt and tls.key in {settings.webhook_cert_dir} "
                    "(READINESS_WEBHOOK_CERT_DIR): mount the webhook's certificate Secret there"
                )
            _check_port("0.0.0.0", settings.webhook_port)  # noqa: S104 - served behind the Service
            self._server = kopf.WebhookServer(
                addr="0.0.0.0",  # noqa: S104
                port=settings.webhook_port,
                certfile=str(certfile),
                pkeyfile=str(keyfile),
            )

    async def serve(self, fn: Any) -> AsyncIterator[Any]:
        """kopf's admission server, handing each request to the handler whole (``REVIEW``)."""

        async def whole(request: Any, **kwargs: Any) -> Any:
            token = REVIEW.set(request.get("request"))
            try:
                return await fn(request, **kwargs)
            finally:
                REVIEW.reset(token)

        async with self._server as server:
            async for client_config in server(whole):
                self._listening = True
                await self.ensure()
                yield client_config

    async def ensure(self) -> None:
        if self.registration is not None and self._listening:
            await self.registration.ensure()

    async def unregister(self) -> None:
        if self.registration is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.registration.remove()

    def missing(self) -> str | None:
        if not self._listening:
            return "the admission webhook is not serving yet"
        return self.registration.missing() if self.registration is not None else None

    def close(self) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_port(addr: str, port: int) -> None:
    """kopf listens with SO_REUSEPORT, which would share a busy port with another process."""
    with socket.socket() as sock:
        try:
            sock.bind((addr, port))
        except OSError as error:
            raise StartupFailure(
                f"cannot listen on port {port} (READINESS_WEBHOOK_PORT): {error.strerror}"
            ) from None
