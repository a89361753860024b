"""Manifests as files hold them, for ``readiness audit``: a Deployment template to format with
its ``name`` and ``app`` label, one container logging at level info."""

from __future__ import annotations

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: shop
  labels: {{app: {app}}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  template:
    metadata: {{labels: {{app: {app}}}}}
    spec:
      containers:
      - name: app
        image: registry.example/app:1
        ports: [{{name: http, containerPort: 8080}}]
        env:
        - {{name: LOG_LEVEL, value: info}}
"""
