#!/usr/bin/env bash
# The demo after `make testbed-up` and the CRD: runs the operator in the foreground on examples/
# and shows what a user looks at. DEMO_EXIT=1 stops it after the tour (non-interactive runs).
set -euo pipefail
cd "$(dirname "$0")/.."
export KUBECONFIG=$PWD/.testbed/kubeconfig
k() { .testbed/bin/kubectl "$@"; }
show() {  # the parts of a pod template the profile is about
  k get deployment "$1" -n shop -o json | .venv/bin/python examples/show.py
}

# A fresh start each time, so "before" really is before.
k delete namespace shop --ignore-not-found --wait=true >/dev/null
k apply -f examples/00-namespace.yaml -f examples/10-deployments.yaml >/dev/null
k rollout status -n shop deployment/checkout-api --timeout=120s >/dev/null
echo "== before: checkout-api as its team wrote it =="
show checkout-api

k apply -f examples/20-profiles.yaml
# READINESS_WEBHOOK=local: the operator also answers admission for this control plane, so a
# Deployment created from now on is stored compliant (it registers a MutatingWebhookConfiguration
# with its own certificate, and removes it when it stops).
READINESS_LOG_FORMAT=console READINESS_HEALTH_PORT=${READINESS_HEALTH_PORT:-8080} \
  READINESS_METRICS_PORT=${READINESS_METRICS_PORT:-9090} READINESS_WEBHOOK=local \
  READINESS_WEBHOOK_PORT=${READINESS_WEBHOOK_PORT:-0} READINESS_NAMESPACES=${READINESS_NAMESPACES:-shop} \
  .venv/bin/readiness run &
operator=$!
trap 'kill -TERM $operator 2>/dev/null || true; wait $operator 2>/dev/null || true' EXIT

k wait --for=condition=Compliant serviceprofile --all -n shop --timeout=120s >/dev/null
k rollout status -n shop deployment/checkout-api --timeout=120s >/dev/null
echo
echo "== after: checkout-api, one apply, one rollout =="
show checkout-api
echo
echo "== kubectl get serviceprofiles -n shop =="
k get serviceprofiles -n shop
echo
echo "== kubectl get replicasets -n shop (one new ReplicaSet per Deployment) =="
k get replicasets -n shop
echo
echo "== the operator's events =="
k get events -n shop --field-selector source=readiness-operator -o custom-columns=OBJECT:.involvedObject.name,TYPE:.type,REASON:.reason,MESSAGE:.message
echo
echo "== status of the checkout profile =="
k get serviceprofile checkout -n shop -o jsonpath='{.status.summary}{"\n"}{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'
echo
echo "== a new Deployment, created with kubectl as its team wrote it: stored compliant by admission =="
k create -f examples/30-new-deployment.yaml
k rollout status -n shop deployment/checkout-canary --timeout=120s >/dev/null
show checkout-canary
k get deployment checkout-canary -n shop -o jsonpath='readiness.dev/admitted: {.metadata.annotations.readiness\.dev/admitted}{"\n"}'
echo "ReplicaSets of checkout-canary (one: its first pods were already compliant):"
k get replicasets -n shop -l app.kubernetes.io/component=canary
echo
echo "== the sample service on the real node real-0: Ready through the profile's probes =="
if [ "$(k get node real-0 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; then
  k apply -f examples/40-sample-profile.yaml >/dev/null
  k wait --for=jsonpath='{.status.observedGeneration}'=1 serviceprofile/sample -n shop --timeout=60s >/dev/null
  k create -f examples/41-sample-service.yaml
  k rollout status -n shop deployment/sample --timeout=120s >/dev/null
  ip=$(k get pods -n shop -l app.kubernetes.io/name=sample -o jsonpath='{.items[0].status.podIP}')
  k get pods -n shop -l app.kubernetes.io/name=sample -o wide
  echo "curl http://$ip:8080/   ->   $(curl -s --max-time 3 "http://$ip:8080/")"
  echo "GOMEMLIMIT the Go runtime uses: $(curl -s --max-time 3 "http://$ip:9090/metrics" | awk '$1 == "go_gc_gomemlimit_bytes" {printf "%d bytes", $2}')"
  path=$(k get pods -n shop -l app.kubernetes.io/name=sample -o jsonpath='{.items[0].metadata.annotations.profiles\.grafana\.com/cpu\.path}')
  echo "a CPU profile where profiles.grafana.com/cpu.path says ($path): $(curl -s --max-time 10 -o /dev/null -w '%{http_code}, %{size_download} bytes of pprof' "http://$ip:9090$path?seconds=1")"
else
  echo "skipped: $(cat .testbed/real-node-unavailable 2>/dev/null || echo 'the real node real-0 is not Ready') (the tour above ran on kwok nodes)"
fi
if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
echo
echo "The operator keeps running: try 'kubectl edit' on a Deployment in shop and watch it correct the drift."
echo "KUBECONFIG=$KUBECONFIG ; Ctrl-C stops the operator; 'make testbed-down' stops the control plane."
wait $operator
