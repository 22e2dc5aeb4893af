"""A Model's desired children: the vLLM Deployment and its Service. Pure functions of (Model, Config)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from . import adapters, autoscale, cpuprofile, engine, keda, quantity, routing, servergate, source as sources
from .config import SERVER_PORT, Config
from .crd import MAX_WAIT_SECONDS
from .keys import AGENT_LABEL, GATE_ANNOTATION, GENERATION_ANNOTATION, INJECT_LABEL, MODEL_LABEL, standard_labels
from .model import owner_reference, served_model_name, spec_of

CACHE_MOUNT = "/cache"
GATE_MOUNT = "/etc/modelplane/gate"  # servergate.py, as the module servergate.MODULE, on the server's PYTHONPATH
GATE_SOURCE = Path(servergate.__file__).read_text()
GATE_HASH = hashlib.sha256(GATE_SOURCE.encode()).hexdigest()[:16]  # in the pod template: a new gate rolls the pods
SERVER_COMMAND = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
# What every container the operator renders may not do (an Agent's also runs as non-root).
RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
              "seccompProfile": {"type": "RuntimeDefault"}}


def selector(name: str) -> dict:
    return {MODEL_LABEL: name}


def labels(name: str) -> dict:
    return {**standard_labels("vllm", name, "model-server"), **selector(name)}


def _metadata(model: dict) -> dict:
    meta = model["metadata"]
    return {"name": meta["name"], "namespace": meta["namespace"], "labels": labels(meta["name"]),
            "ownerReferences": [owner_reference(model)]}


def server_args(model: dict, src: sources.ModelSource, engine_defaults: dict | None = None) -> list[str]:
    return ["--model", src.model, "--served-model-name", served_model_name(model),
            "--host", "0.0.0.0", "--port", str(SERVER_PORT), *src.args,
            *engine.engine_flags(spec_of(model), engine_defaults)]


def merge_env(env: list[dict]) -> list[dict]:
    """One entry per name, as server-side apply requires (it keys a container's env by name and refuses a name
    twice): each name keeps the place of its first entry and the value of its last. Callers put the user's env last,
    so the user's value wins over what the operator sets."""
    merged: dict[str, dict] = {}
    for entry in env:
        merged[entry["name"]] = entry  # a dict keeps the place a key was first given
    return list(merged.values())


def cache_claim(spec: dict) -> str | None:
    return (spec.get("cache") or {}).get("claimName") or None


def container_resources(spec: dict, config: Config) -> dict:
    """The operator's default requests (per GPU, or the CPU profile's; ephemeral-storage for an emptyDir cache) with
    the Model's resources over them. A resource the Model limits but does not request gets the smaller of the default
    request and its limit: a request above the limit would make the Deployment invalid.

    The Model's own requests are kept as given: the schema refuses one above its limit. The GPU resource's limit is
    spec.gpus: whatever spec.resources says of it is ignored (the schema refuses it where it knows the name; the
    operator's default GPU resource may be another)."""
    gpus = spec["gpus"]
    if gpus:
        requests = {"cpu": quantity.times(config.gpu_cpu_request, gpus),
                    "memory": quantity.times(config.gpu_memory_request, gpus)}
    else:
        requests = {"cpu": config.cpu_profile_cpu_request, "memory": config.cpu_profile_memory_request}
    if not cache_claim(spec):
        requests["ephemeral-storage"] = (quantity.times(config.gpu_cache_request, gpus) if gpus
                                         else config.cpu_profile_cache_request)
    user = spec.get("resources") or {}
    gpu = spec.get("gpuResourceName") or config.gpu_resource
    user_requests = {k: str(v) for k, v in (user.get("requests") or {}).items() if k != gpu}
    limits = {k: str(v) for k, v in (user.get("limits") or {}).items() if k != gpu}
    for name, limit in limits.items():
        if name in requests and name not in user_requests:
            requests[name] = quantity.smaller(requests[name], limit)
    requests.update(user_requests)
    if gpus:
        limits[gpu] = str(gpus)
    out = {"requests": requests}
    if limits:
        out["limits"] = limits
    return out


def cache_volume(spec: dict, resources: dict, config: Config) -> dict:
    """The weights cache: the Model's claim, else an emptyDir with a sizeLimit. That is the container's
    ephemeral-storage limit when it has one (the kubelet evicts at that anyway), else the operator's default, raised to
    the ephemeral-storage request if that is larger (a Model that asks for more storage means to use it)."""
    if cache_claim(spec):
        return {"name": "cache", "persistentVolumeClaim": {"claimName": cache_claim(spec)}}
    limit = (resources.get("limits") or {}).get("ephemeral-storage")
    if limit is None:
        default = (quantity.times(config.gpu_cache_size_limit, spec["gpus"]) if spec["gpus"]
                   else config.cpu_profile_cache_size_limit)
        request = (resources.get("requests") or {}).get("ephemeral-storage")
        limit = quantity.larger(default, request) if request is not None else default
    return {"name": "cache", "emptyDir": {"sizeLimit": str(limit)}}


SHUTDOWN_FLAG = "--shutdown-timeout"


def _last_flag_value(args: list, flag: str) -> str | None:
    """The value the last `flag` in `args` gives (`--flag=v` or `--flag v`), None when none does."""
    value = None
    for i, arg in enumerate(map(str, args)):
        if arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        elif arg == flag and i + 1 < len(args):
            value = str(args[i + 1])
    return value


def shutdown(spec: dict, config: Config) -> tuple[dict, dict, dict]:
    """How a server pod stops without cutting the requests it serves: (engineArgs defaults, container fields,
    pod fields). The preStop hook's sleep lets the endpoints drop the pod before vLLM gets SIGTERM; vLLM then drains
    for its --shutdown-timeout (the Model's engineArgs.shutdownTimeout or extraArgs win over the operator's
    default); the grace period covers both and the engine's exit. The sleep action needs no binary in the image
    (Kubernetes 1.30+, on by default; GA in 1.34)."""
    args = spec.get("engineArgs") or {}
    defaults: dict = {}
    extra = _last_flag_value(args.get("extraArgs") or [], SHUTDOWN_FLAG)
    if extra is not None:
        drain = int(extra) if extra.isdigit() else int(config.server_drain_seconds)
    elif args.get("shutdownTimeout") is not None:
        drain = int(args["shutdownTimeout"])
    else:
        drain = defaults["shutdownTimeout"] = int(config.server_drain_seconds)
    prestop = int(config.server_prestop_seconds)
    container = {"lifecycle": {"preStop": {"sleep": {"seconds": prestop}}}} if prestop > 0 else {}
    # The schema bounds the timeout; `--shutdown-timeout N` (two arguments) in extraArgs it cannot see: the grace
    # period waits at most MAX_WAIT_SECONDS of draining either way.
    pod = {"terminationGracePeriodSeconds": prestop + min(max(0, drain), MAX_WAIT_SECONDS)
           + int(config.server_exit_seconds)}
    return defaults, container, pod


def pod_placement(spec: dict, config: Config) -> dict:
    out: dict = {}
    node_selector = dict(spec.get("nodeSelector") or {})
    if spec.get("gpuType"):
        node_selector[config.gpu_product_label] = spec["gpuType"]
    if node_selector:
        out["nodeSelector"] = node_selector
    tolerations = list(spec.get("tolerations") or [])
    if spec["gpus"]:
        # GPU nodes are commonly tainted with the GPU resource name; GPU pods tolerate it.
        gpu = spec.get("gpuResourceName") or config.gpu_resource
        tolerations.insert(0, {"key": gpu, "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        out["tolerations"] = tolerations
    for field in ("affinity", "priorityClassName", "runtimeClassName"):
        if spec.get(field):
            out[field] = spec[field]
    return out


def startup_timeout(spec: dict) -> int:
    """spec.startupTimeoutSeconds, at most MAX_WAIT_SECONDS (as the schema requires; a Model stored before it did
    may have more, which would overflow the Deployment's int32 progressDeadlineSeconds)."""
    return min(int(spec["startupTimeoutSeconds"]), MAX_WAIT_SECONDS)


STARTUP_PERIOD = 2  # seconds


def probes(spec: dict) -> dict:
    health = {"httpGet": {"path": "/health", "port": "http"}}
    return {
        # Weights of a large model take minutes to load: the startup probe holds the others back until then. Asked
        # every STARTUP_PERIOD seconds, so a started server is found within that (a cold start from zero waits on it).
        "startupProbe": {**health, "periodSeconds": STARTUP_PERIOD, "timeoutSeconds": STARTUP_PERIOD,
                         "failureThreshold": math.ceil(startup_timeout(spec) / STARTUP_PERIOD)},
        "readinessProbe": {**health, "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**health, "periodSeconds": 10, "timeoutSeconds": 10, "failureThreshold": 6},
    }


def rollout_strategy(spec: dict) -> dict:
    """The Deployment's rolling update for spec.rollout.strategy. Surge never takes a serving replica down before its
    replacement is ready: a rollout that cannot get a GPU waits (and status says WaitingForGPU) instead of causing an
    outage. Replace takes one old replica down first, so that its replacement can have its GPUs."""
    if (spec.get("rollout") or {}).get("strategy") == "Replace":
        return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def claims(spec: dict) -> list[str]:
    """The PersistentVolumeClaims a server pod mounts: the cache claim and a pvc:// source's claim."""
    out = [cache_claim(spec)] if cache_claim(spec) else []
    scheme, _, rest = spec["source"].partition("://")
    if scheme == "pvc" and rest.partition("/")[0] not in out:
        out.append(rest.partition("/")[0])
    return out


def server_replicas(model: dict) -> int:
    """The server replica count to render: spec.replicas, or with in-process autoscaling the autoscaler's last
    decision (status.autoscaling.desiredReplicas; spec.replicas until it has decided), within its bounds."""
    spec = spec_of(model)
    scaling = autoscale.in_process(spec)
    if not scaling:  # KEDA, where it scales, sets spec.replicas itself
        return spec["replicas"]
    decided = ((model.get("status") or {}).get("autoscaling") or {}).get("desiredReplicas")
    count = spec["replicas"] if decided is None else int(decided)
    return min(max(count, scaling["minReplicas"]), scaling["maxReplicas"])


def gated(spec: dict) -> bool:
    """Whether the server runs modelplane's gate (servergate.py): where vLLM leaves routes open that the Model
    means closed, a keyed Model's /invocations and a LoRA Model's adapter routes."""
    return bool(spec.get("apiKeySecretRef") or adapters.lora_of(spec))


def gate_name(name: str) -> str:
    return f"{name}-vllm-gate"


def render_gate_configmap(model: dict) -> dict:
    metadata = _metadata(model)
    metadata["name"] = gate_name(model["metadata"]["name"])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
            "data": {f"{servergate.MODULE}.py": GATE_SOURCE}}


def with_gate_on_path(env: list[dict]) -> list[dict]:
    """The server's env with the gate's folder first on PYTHONPATH, before any the Model sets (a PYTHONPATH from a
    Secret or ConfigMap cannot be joined: it then wins, and vLLM says it cannot import the gate)."""
    own = next((e for e in env if e["name"] == "PYTHONPATH"), None)
    if own is None:
        return [*env, {"name": "PYTHONPATH", "value": GATE_MOUNT}]
    if "valueFrom" in own:
        return env
    joined = {"name": "PYTHONPATH", "value": f"{GATE_MOUNT}:{own['value']}" if own.get("value") else GATE_MOUNT}
    return [joined if e is own else e for e in env]


def render_deployment(model: dict, config: Config) -> dict:
    spec = spec_of(model)
    name = model["metadata"]["name"]
    src = sources.parse(spec["source"], spec.get("credentialsSecretRef"))
    resources = container_resources(spec, config)
    # On CPU, vLLM sizes its KV cache and threads from the node unless told otherwise: tell it the pod's share.
    engine_defaults, cpu_env = ({}, []) if spec["gpus"] else cpuprofile.cpu_settings(
        resources, spec.get("engineArgs"), spec.get("env"))
    shutdown_defaults, shutdown_container, shutdown_pod = shutdown(spec, config)
    engine_defaults = {**engine_defaults, **shutdown_defaults, **routing.server_engine_defaults(model),
                       **adapters.engine_defaults(spec)}
    lora = adapters.lora_of(spec)
    env = [{"name": "HF_HOME", "value": f"{CACHE_MOUNT}/huggingface"}, *src.env,
           *([adapters.RUNTIME_UPDATING] if lora else [])]
    if spec.get("apiKeySecretRef"):
        # vLLM reads VLLM_API_KEY itself, so the key never appears in the process arguments.
        env.append(sources.secret_env("VLLM_API_KEY", spec["apiKeySecretRef"], "api-key"))
    env += cpu_env
    env = merge_env(env + list(spec.get("env") or []))  # the user's env wins
    shm = str(spec.get("shmSize") or (config.shm_size if spec["gpus"] else "1Gi"))
    container = {
        "name": "vllm",
        "image": spec.get("image") or (config.vllm_image if spec["gpus"] else config.vllm_cpu_image),
        "command": SERVER_COMMAND,
        "args": server_args(model, src, engine_defaults),
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "env": env,
        "resources": resources,
        "volumeMounts": [{"name": "cache", "mountPath": CACHE_MOUNT}, {"name": "shm", "mountPath": "/dev/shm"},
                         *src.mounts],
        **probes(spec),
        **shutdown_container,
        "securityContext": RESTRICTED,
    }
    if src.env_from:
        container["envFrom"] = src.env_from
    if spec.get("imagePullPolicy"):
        container["imagePullPolicy"] = spec["imagePullPolicy"]
    pod_spec = {
        "containers": [container],
        "volumes": [cache_volume(spec, resources, config),
                    {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}}, *src.volumes],
        # A Service named like VLLM_* would otherwise inject env vars that vLLM reads as its own settings.
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        **shutdown_pod,
        **pod_placement(spec, config),
    }
    if lora:  # the loader sidecar keeps the adapters loaded in this replica (adapters.py, adapterloader.py)
        volumes, server_mounts, loader_mounts = adapters.volumes(spec)
        container["volumeMounts"] += server_mounts
        pod_spec["volumes"] += volumes
        pod_spec["containers"].append(adapters.loader_container(model, config, RESTRICTED, loader_mounts))
        pod_spec["serviceAccountName"] = adapters.loader_name(name)
    pod_annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(SERVER_PORT),
                       "prometheus.io/path": "/metrics"}
    if gated(spec):  # vLLM imports the gate from the ConfigMap render_gate_configmap writes
        container["args"] += ["--middleware", f"{servergate.MODULE}.Gate"]
        container["env"] = with_gate_on_path(container["env"])
        container["volumeMounts"].append({"name": "gate", "mountPath": GATE_MOUNT, "readOnly": True})
        pod_spec["volumes"].append({"name": "gate", "configMap": {"name": gate_name(name)}})
        pod_annotations[GATE_ANNOTATION] = GATE_HASH
    metadata = _metadata(model)
    metadata["annotations"] = {GENERATION_ANNOTATION: str(model["metadata"].get("generation", 1))}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
        "spec": {
            "replicas": server_replicas(model),
            "selector": {"matchLabels": selector(name)},
            "strategy": rollout_strategy(spec),
            "progressDeadlineSeconds": startup_timeout(spec) + 300,
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {"labels": labels(name), "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }


def _service(model: dict, name: str, pods: dict) -> dict:
    metadata = _metadata(model)
    metadata["name"] = name
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
            "spec": {"type": "ClusterIP", "selector": pods,
                     "ports": [{"name": "http", "port": SERVER_PORT, "targetPort": "http", "protocol": "TCP"}]}}


def render_service(model: dict, config: Config) -> dict:
    """The Model's endpoint: its server pods, or its router when it is routed."""
    name = model["metadata"]["name"]
    return _service(model, name, routing.router_selector(name) if routing.routing_of(model) else selector(name))


def render_direct_service(model: dict) -> dict:
    """A routed Model's server pods, by a name of their own (`<name>-vllm`): for what must reach a replica past the
    router (debugging, benchmarks against the plain Service)."""
    name = model["metadata"]["name"]
    return _service(model, routing.direct_name(name), selector(name))


def render_network_policy(model: dict, config: Config, for_router: bool = False) -> dict:
    """Ingress to the server port only from modelplane Agents and injected pods of the namespaces the Model serves
    (its own and spec.allowedNamespaces), any pod of such a namespace that opted in as a whole, and the peers the
    platform team allows everywhere (config.network_policy_allow_from: metrics scrapers, gateways). A routed Model's
    servers also take the router's requests, and its router gets a policy of its own with the same peers. An
    autoscaled Model's also admit the operator (config.operator_peer), whose autoscaler reads their /metrics."""
    meta = model["metadata"]
    routed = bool(routing.routing_of(model))
    allowed = list((model.get("spec") or {}).get("allowedNamespaces") or [])
    namespaces = ({} if "*" in allowed else
                  {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In",
                                         "values": sorted({meta["namespace"], *allowed})}]})
    inject = INJECT_LABEL
    peers = [
        {"namespaceSelector": namespaces, "podSelector": {"matchLabels": {inject: "true"}}},
        {"namespaceSelector": namespaces,
         "podSelector": {"matchExpressions": [{"key": AGENT_LABEL, "operator": "Exists"}]}},
        {"namespaceSelector": {"matchExpressions": [*namespaces.get("matchExpressions", []),
                                                    {"key": inject, "operator": "In", "values": ["enabled"]}]},
         "podSelector": {"matchExpressions": [{"key": inject, "operator": "NotIn", "values": ["false"]}]}},
        *config.network_policy_allow_from,
    ]
    metadata, pods = _metadata(model), selector(meta["name"])
    spec, extra = spec_of(model), []
    if for_router:
        metadata["name"], pods = routing.router_name(meta["name"]), routing.router_selector(meta["name"])
        if autoscale.wakes_on_request(spec) and config.operator_peer:  # its request count wakes the servers
            extra.append({"from": list(config.operator_peer),
                          "ports": [{"port": routing.METRICS_PORT, "protocol": "TCP"}]})
    else:
        if routed:
            peers.append({"podSelector": {"matchLabels": routing.router_selector(meta["name"])}})
        if autoscale.in_process(spec):  # the operator's autoscaler reads the replicas' /metrics
            peers.extend(config.operator_peer)
        if adapters.lora_of(spec) and config.operator_peer:  # the operator reads what each loader has loaded
            extra.append({"from": list(config.operator_peer),
                          "ports": [{"port": adapters.LOADER_PORT, "protocol": "TCP"}]})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata,
            "spec": {"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": peers, "ports": [{"port": SERVER_PORT, "protocol": "TCP"}]}, *extra]}}


def render_children(model: dict, config: Config) -> list[dict]:
    """The server Deployment first (the fleet's upgrade pacing reads it there), then the rest."""
    children = [render_deployment(model, config), render_service(model, config)]
    if gated(spec_of(model)):
        children.append(render_gate_configmap(model))
    routed = bool(routing.routing_of(model))
    if routed:
        children += [render_direct_service(model), *routing.render_router_children(model, config)]
    if config.network_policies:
        children.append(render_network_policy(model, config))
        if routed:
            children.append(render_network_policy(model, config, for_router=True))
    if keda.keda_of(model):
        children.append(keda.render_scaled_object(model, _metadata(model)))
    if adapters.lora_of(spec_of(model)):
        children += adapters.render_loader_rbac(model, labels(model["metadata"]["name"]))
    return children


def child_keys(name: str) -> list[tuple[str, str]]:
    """(kind, name) of every child a Model named `name` may have that the operator watches, rendered or not: those
    it no longer wants (routing or policies switched off) are found there and deleted. (Its KEDA ScaledObject, of a
    CRD that may not be installed, is not watched: handlers read it when the Model has or had one.)"""
    router, loader = routing.router_name(name), adapters.loader_name(name)
    return [("Deployment", name), ("Service", name), ("NetworkPolicy", name), ("Service", routing.direct_name(name)),
            ("Deployment", router), ("ServiceAccount", router), ("Role", router), ("RoleBinding", router),
            ("NetworkPolicy", router), ("ServiceAccount", loader), ("Role", loader), ("RoleBinding", loader),
            ("ConfigMap", gate_name(name))]
