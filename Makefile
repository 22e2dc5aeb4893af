# modelplane: `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLUSTER_DIR ?= .cluster
export MODELPLANE_CLUSTER_DIR := $(abspath $(CLUSTER_DIR))

.PHONY: help venv binaries cluster-up cluster-down crds test test-unit test-integration demo demo-down run clean

help:
	@echo "make demo          local control plane + operator + an example Model reaching Ready"
	@echo "make test          the whole suite (unit + integration on the local control plane)"
	@echo "make cluster-up    start (or reuse) the local control plane; prints KUBECONFIG"
	@echo "make cluster-down  stop it (also stops a demo operator)"
	@echo "make run           run the operator in the foreground against \$$KUBECONFIG"
	@echo "make crds          regenerate crds/ from operator/modelplane_operator/crd.py"

$(VENV)/.installed: requirements/dev.txt operator/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements/dev.txt -e operator
	touch $@

venv: $(VENV)/.installed

# Builds etcd, Kubernetes, kwok and helm from their Go modules once; cached under ~/.cache/modelplane.
binaries:
	@bash hack/build-binaries.sh >/dev/null

cluster-up: venv binaries
	@$(PY) hack/localcluster.py up

cluster-down: venv
	@bash hack/demo.sh down
	@$(PY) hack/localcluster.py down

crds: venv
	$(PY) -m modelplane_operator.crd crds

run: venv
	$(PY) -m modelplane_operator --verbose

demo: venv binaries
	@bash hack/demo.sh up

demo-down: cluster-down

test-unit: venv
	$(PY) -m pytest tests/unit

test-integration: venv binaries
	$(PY) -m pytest tests/integration

test: venv binaries
	$(PY) -m pytest tests

clean: cluster-down
	rm -rf $(VENV) $(CLUSTER_DIR)
