# readiness-operator: `make demo` and `make test` set everything up from a fresh clone.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TESTBED := PYTHONPATH=testbed $(PY) -m readiness_testbed
TESTBED_DIR := .testbed
KUBECTL := $(TESTBED_DIR)/bin/kubectl --kubeconfig $(TESTBED_DIR)/kubeconfig
CHART := charts/readiness-operator

.PHONY: help venv lint crds chart unit e2e test demo demo-status testbed-build testbed-up testbed-down bench bench-fleet bench-paced bench-admission clean

help:
	@echo "make demo          start the local control plane and run the operator on examples/"
	@echo "make test          lint, types, import contract, unit and end-to-end tests"
	@echo "make chart         refresh the chart's copies, helm lint it and package it into dist/"
	@echo "make testbed-up    start the local control plane (.testbed/kubeconfig)"
	@echo "make testbed-down  stop it"
	@echo "make bench         run the benchmarks in bench/"
	@echo "make bench-fleet   only the fleet benchmark (BENCH_FLEET_N=100,1000 for a quick run)"
	@echo "make bench-paced   the paced run: waves over 1,000 one-replica Deployments"
	@echo "make bench-admission  create latency with and without the webhook, rollouts per new Deployment"

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# One source for each CRD: the ServiceProfile CRD is generated from the models, kopf's peering
# CRDs live in deploy/; the chart carries copies (tests/unit/packaging/test_packaging.py fails while stale).
crds: venv
	$(VENV)/bin/readiness crd > crds/serviceprofiles.readiness.dev.yaml
	cp crds/serviceprofiles.readiness.dev.yaml $(CHART)/crds/serviceprofiles.readiness.dev.yaml
	cp deploy/peering-crds.yaml $(CHART)/crds/peering-crds.yaml

# The chart's copies of deploy/monitoring/, then helm lint (defaults and ci/ values) and package.
# `make test` lints and renders it too (tests/unit/packaging/test_chart.py), with the same pinned helm.
chart: crds testbed-build
	cp deploy/monitoring/prometheusrule.yaml deploy/monitoring/dashboard.json $(CHART)/files/
	helm=$$($(TESTBED) build | awk '$$1 == "helm" {print $$2}'); \
	"$$helm" lint --strict $(CHART); \
	"$$helm" lint --strict $(CHART) -f $(CHART)/ci/namespaced-values.yaml; \
	"$$helm" package $(CHART) --destination dist/

testbed-build: venv
	$(TESTBED) build

testbed-up: venv
	$(TESTBED) up

testbed-down: venv
	$(TESTBED) down

unit: venv
	$(PY) -m pytest tests/unit

e2e: venv testbed-build
	$(PY) -m pytest tests/e2e

# pytest exits 5 when it collected no test: make treats that as the failure it is.
test: lint testbed-build
	$(PY) -m pytest

# A CRD just created has no conditions for a moment, and kubectl wait fails at once on that: once more.
demo: testbed-up
	$(KUBECTL) apply --server-side -k crds/
	$(KUBECTL) wait --for=condition=Established crd/serviceprofiles.readiness.dev --timeout=60s \
		|| (sleep 1 && $(KUBECTL) wait --for=condition=Established crd/serviceprofiles.readiness.dev --timeout=60s)
	examples/demo.sh

demo-status:
	$(KUBECTL) get serviceprofiles -A
	$(KUBECTL) get deployments,replicasets -n shop
	$(KUBECTL) get events -n shop --field-selector source=readiness-operator

bench: venv testbed-build
	PYTHONPATH=testbed $(PY) -m bench

bench-fleet: venv testbed-build
	PYTHONPATH=testbed $(PY) -m bench fleet

# The paced run: 1,000 one-replica Deployments at default pacing (BENCH_PACED_N to change).
bench-paced: venv testbed-build
	PYTHONPATH=testbed $(PY) -m bench.paced

# Admission: create latency p50/p99 with and without the webhook, side by side, and the
# ReplicaSets per new Deployment (BENCH_ADMISSION_N, default 200).
bench-admission: venv testbed-build
	PYTHONPATH=testbed $(PY) -m bench.admission

clean: testbed-down
	rm -rf $(VENV) $(TESTBED_DIR) .mypy_cache .ruff_cache .pytest_cache
