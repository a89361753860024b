from __future__ import annotations

import io
import json
import logging

import structlog

from readiness.observe.logconfig import configure


def test_secrets_never_reach_the_log() -> None:
    stream = io.StringIO()
    configure("info", "json", stream=stream)
    token = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.payload.signature"
    structlog.get_logger("readiness.test").info("api_call", header=f"Authorization: Bearer {token}")
    logging.getLogger("kopf.activities").warning("login with token=%s password: hunter2", token)
    logging.getLogger("kubernetes.client.rest").warning('response {"token": "%s"}', token)
    out = stream.getvalue()
    assert token not in out
    assert "hunter2" not in out
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["event"].split()[0] for line in lines] == ["api_call", "login", "response"]
    assert all("[REDACTED]" in json.dumps(line) for line in lines)


def test_stdlib_logs_share_the_renderer_and_context() -> None:
    stream = io.StringIO()
    configure("info", "json", stream=stream)
    structlog.contextvars.bind_contextvars(namespace="shop", profile="checkout")
    try:
        logging.getLogger("kopf.objects").warning("something kopf says")
    finally:
        structlog.contextvars.clear_contextvars()
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["logger"] == "kopf.objects"
    assert line["level"] == "warning"
    assert (line["namespace"], line["profile"]) == ("shop", "checkout")
