"""Operator-wide settings: the one place for defaults that are not part of a Model's schema.

Spec-level defaults (replicas, gpus, ...) live in the CRD schema (see crd.py); these are the cluster-level choices a
platform team makes once (usually through Helm values), read from environment variables at start-up.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping

GROUP = "modelplane.dev"
VERSION = "v1alpha1"
FIELD_MANAGER = "modelplane"
SERVER_PORT = 8000  # vLLM's OpenAI-compatible server listens here inside the pod
# engineArgs every Model gets unless it sets them itself. Usage in every streamed response lets agents account for
# tokens without each client having to ask (AutoGen's stream_options would also go out on plain requests, which vLLM
# refuses).
ENGINE_ARG_DEFAULTS = {"enableForceIncludeUsage": True}


@dataclasses.dataclass(frozen=True)
class Config:
    # Pinned official vLLM images; `gpus: 0` selects the CPU build so the same Model runs on a laptop cluster.
    vllm_image: str = "vllm/vllm-openai:v0.32.0"
    vllm_cpu_image: str = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.32.0"
    # vllm-router (spec.routing), as the project builds it (hack/vllm-router/: the version is the pin of its
    # requirements.txt, and gate.py keeps the router's admin endpoints inside the pod), and what a router pod requests.
    router_image: str = "ghcr.io/modelplane/vllm-router:0.1.17"
    router_cpu_request: str = "100m"
    router_memory_request: str = "128Mi"
    router_memory_limit: str = "1Gi"
    # The sidecar that loads a Model's LoRA adapters into each of its servers (adapterloader.py): the operator's own
    # image (the chart sets it to the image it runs; this default is the chart's, checked by a unit test).
    adapter_loader_image: str = "ghcr.io/modelplane/operator:0.1.0"
    gpu_resource: str = "nvidia.com/gpu"
    gpu_product_label: str = "nvidia.com/gpu.product"
    cluster_domain: str = "cluster.local"
    # Requests used when a Model does not set spec.resources; per GPU for GPU models.
    gpu_cpu_request: str = "4"
    gpu_memory_request: str = "16Gi"
    cpu_profile_cpu_request: str = "2"
    cpu_profile_memory_request: str = "8Gi"
    shm_size: str = "8Gi"  # /dev/shm for tensor-parallel workers; GPU models only need it that large
    # The weights cache without spec.cache.claimName is an emptyDir on the node's disk. It requests ephemeral-storage
    # so that the scheduler puts the pod where the weights fit, and has a sizeLimit beyond which the kubelet evicts the
    # pod instead of letting it fill the node's disk. Per GPU for GPU models (bf16 weights take about 2 GB per billion
    # parameters, and larger models take more GPUs; the limit holds what one 141 GB GPU can serve). A Model's
    # resources (requests or limits of ephemeral-storage) win; its ephemeral-storage limit is then the sizeLimit.
    gpu_cache_request: str = "20Gi"
    gpu_cache_size_limit: str = "150Gi"
    cpu_profile_cache_request: str = "5Gi"
    cpu_profile_cache_size_limit: str = "20Gi"
    # Stopping a server pod (rollout, scale-down, eviction): its preStop hook sleeps server_prestop_seconds so that
    # Services and load balancers stop sending it requests first; SIGTERM then makes vLLM drain (refuse new requests,
    # finish the running ones) for up to server_drain_seconds, vLLM's --shutdown-timeout (engineArgs.shutdownTimeout
    # wins; vLLM's own default of 0 aborts every running request at once). terminationGracePeriodSeconds is the sum
    # of both plus server_exit_seconds for the engine to exit before the kubelet kills it.
    server_prestop_seconds: int = 10
    server_drain_seconds: int = 90
    server_exit_seconds: int = 20
    # When a new operator version renders Models differently (a new default image or flag) while their specs did not
    # change, at most this many Models roll at a time for that reason (0: each waits for its own next spec change).
    upgrade_rollouts_at_once: int = 1
    # The injection webhook: served when webhook_port is set. webhook_host is the name the API server calls (and the
    # certificate's SAN); with webhook_configure the operator writes the MutatingWebhookConfiguration itself (local
    # runs; the Helm chart writes it in a cluster).
    webhook_port: int = 0  # 0: no webhook
    webhook_listen: str = "0.0.0.0"
    webhook_host: str = "127.0.0.1"
    webhook_cert_dir: str = "/tmp/modelplane-webhook"
    webhook_configure: bool = False
    webhook_failure_policy: str = "Ignore"  # or Fail
    webhook_excluded_namespaces: tuple[str, ...] = ("kube-system",)  # plus the operator's own namespace
    # In a cluster: the Secret (in `namespace`) that keeps the serving certificate, made and renewed by the operator,
    # and the MutatingWebhookConfiguration whose caBundle it keeps current. With webhook_cert_source=files the
    # certificate files are provided (cert-manager) and used as they are.
    webhook_cert_secret: str = ""
    webhook_configuration: str = ""
    webhook_cert_source: str = "operator"  # or files
    namespace: str = ""  # the operator's own namespace (MODELPLANE_NAMESPACE, from the downward API)
    metrics_port: int = 0  # Prometheus metrics of the operator itself, when set
    # /readyz answers 200 here once this replica can answer admissions (its Model cache is synced).
    readiness_port: int = 0
    watch_namespaces: tuple[str, ...] = ()  # empty: the whole cluster (set from --namespace)
    # When set, each Model gets a NetworkPolicy: only agent and injected pods of the namespaces it serves reach it,
    # and the peers listed in network_policy_allow_from (NetworkPolicyPeer objects: a metrics scraper, a gateway),
    # given as a JSON list. When unset, the policies the operator wrote earlier are deleted.
    network_policies: bool = False
    network_policy_allow_from: tuple[dict, ...] = ()
    # The operator's own pods as a NetworkPolicyPeer (JSON; the chart sets it): an autoscaled Model's policies admit
    # them, for the autoscaler's GET /metrics on the servers (and on a router that may scale the Model to zero).
    operator_peer: tuple[dict, ...] = ()

    def __post_init__(self):
        # Values given as strings (env vars, flags, tests) become the field's type here, or are refused by name.
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, _typed(field, getattr(self, field.name), field.name))

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Config":
        """MODELPLANE_<FIELD_IN_UPPER_CASE> overrides a field, e.g. MODELPLANE_GPU_RESOURCE=amd.com/gpu. A value the
        field cannot take raises ConfigError naming the variable."""
        overrides = {}
        for field in dataclasses.fields(cls):
            var = f"MODELPLANE_{field.name.upper()}"
            value = env.get(var)
            if value:
                overrides[field.name] = _typed(field, value, var)
        return cls(**overrides)


class ConfigError(ValueError):
    """A setting the operator cannot start with; the message names it."""


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}
_PORTS = {"webhook_port", "metrics_port", "readiness_port"}
_CHOICES = {"webhook_failure_policy": ("Ignore", "Fail"), "webhook_cert_source": ("operator", "files")}


PEER_KEYS = {"namespaceSelector", "podSelector", "ipBlock"}  # what a NetworkPolicyPeer may hold


def network_policy_peers(value, name: str) -> tuple[dict, ...]:
    """A JSON list (or a list) of NetworkPolicyPeer objects, each checked for what a peer may hold."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError as e:
            raise ConfigError(f"{name}: not JSON ({e})") from None
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name}: a list of NetworkPolicy peers is expected, not {type(value).__name__}")
    for i, peer in enumerate(value):
        if not isinstance(peer, dict) or not peer or set(peer) - PEER_KEYS:
            raise ConfigError(f"{name}[{i}]: a NetworkPolicy peer holds one or more of "
                              f"{', '.join(sorted(PEER_KEYS))}; got {json.dumps(peer)}")
        if any(not isinstance(v, dict) for v in peer.values()):
            raise ConfigError(f"{name}[{i}]: each of {', '.join(sorted(peer))} is an object")
    return tuple(value)


def _typed(field: dataclasses.Field, value, name: str):
    """`value` as the type of `field` (its default's type), or ConfigError naming `name`."""
    kind = type(field.default)
    if field.name == "network_policy_allow_from":
        return network_policy_peers(value, name)
    if field.name == "operator_peer":  # one peer (the chart gives a JSON object), or a list of them
        if isinstance(value, str) and value.strip().startswith("{"):
            value = f"[{value}]"
        return network_policy_peers([value] if isinstance(value, dict) else value, name)
    if isinstance(value, kind) and kind is not tuple:
        typed = value
    elif kind is bool:
        word = str(value).strip().lower()
        if word not in _TRUE | _FALSE:
            raise ConfigError(f"{name}: {value!r} is not a boolean (true or false)")
        typed = word in _TRUE
    elif kind is int:
        try:
            typed = int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{name}: {value!r} is not a whole number") from None
        if typed < 0 or (field.name in _PORTS and typed > 65535):
            raise ConfigError(f"{name}: {value!r} is out of range" + (" (0-65535)" if field.name in _PORTS else ""))
    elif kind is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        typed = tuple(i.strip() for i in items if i.strip())
    else:
        typed = str(value)
    if typed not in _CHOICES.get(field.name, (typed,)):
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(_CHOICES[field.name])}")
    return typed
