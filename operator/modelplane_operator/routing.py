"""A routed Model's router (spec.routing): vllm-router's Deployment, the ServiceAccount and Role its pod discovery
needs, and its NetworkPolicy. Pure functions of (Model, Config).

The router watches the Model's server pods (label modelplane.dev/model=<name>, as the Deployment selects them) and
adds each once it is Running and Ready. Its own pods carry modelplane.dev/router=<name> and not the model label, so
that neither the server Deployment's selector nor the operator's pod watch takes them for server pods. The Model's
Service selects the router; <name>-vllm selects the server pods for direct access.

An API key stays with vLLM: the router is given none, passes each client's Authorization header on, and each server
checks it as before. A request without the key is refused by the replica it is routed to, with vLLM's own 401."""

from __future__ import annotations

from .config import SERVER_PORT, Config
from .crd import SESSION_HEADER
from .keys import MODEL_LABEL, ROUTER_LABEL, standard_labels
from .model import owner_reference, pod_identity, spec_of

ROUTER_SUFFIX = "-router"
ROUTER_PORT = 8001  # inside the pod only: the gate (SERVER_PORT) passes the OpenAI API and health checks on to it
GATE = ["python3", "/opt/modelplane/gate.py", "--listen", f"0.0.0.0:{SERVER_PORT}",
        "--upstream", f"127.0.0.1:{ROUTER_PORT}", "--", "vllm-router"]
DIRECT_SUFFIX = "-vllm"
METRICS_PORT = 29000
PROBE = {"httpGet": {"path": "/liveness", "port": "http"}}


def routing_of(model: dict) -> dict | None:
    """spec.routing with its defaults, or None when the Model is not routed."""
    return spec_of(model).get("routing")


def router_name(model_name: str) -> str:
    return model_name + ROUTER_SUFFIX


def direct_name(model_name: str) -> str:
    return model_name + DIRECT_SUFFIX


def router_selector(model_name: str) -> dict:
    return {ROUTER_LABEL: model_name}


def session_header(model: dict) -> str | None:
    """The header a client should send, one value per conversation, for the Model's policy to keep a conversation on
    one replica; None when the policy does not read one (cache_aware follows the prompt's prefix by itself)."""
    routing = routing_of(model)
    return SESSION_HEADER if routing and routing["policy"] == "consistent_hash" else None


def _metadata(model: dict, name: str, pod_labels: bool = False) -> dict:
    """The router's objects carry the model label (the operator's watches map them to their Model); its pod
    template does not (see the module's docstring)."""
    model_name = model["metadata"]["name"]
    labels = standard_labels("vllm-router", model_name, "router")
    labels.update(router_selector(model_name) if pod_labels else {MODEL_LABEL: model_name})
    meta = {"name": name, "labels": labels}
    if not pod_labels:
        meta.update(namespace=model["metadata"]["namespace"], ownerReferences=[owner_reference(model)])
    return meta


def router_args(model: dict) -> list[str]:
    """vllm-router's flags. It listens on the pod's loopback only: its admin endpoints (/add_worker,
    /remove_worker...) answer anyone who reaches them, so clients come in through the gate (hack/vllm-router/gate.py),
    which passes on only /v1/... and the health endpoints."""
    meta = model["metadata"]
    return ["--host", "127.0.0.1", "--port", str(ROUTER_PORT),
            "--service-discovery", "--selector", f"{MODEL_LABEL}={meta['name']}",
            "--service-discovery-namespace", meta["namespace"], "--service-discovery-port", str(SERVER_PORT),
            "--policy", routing_of(model)["policy"],
            "--prometheus-host", "0.0.0.0", "--prometheus-port", str(METRICS_PORT)]


def server_engine_defaults(model: dict) -> dict:
    """engineArgs a routed Model's servers get unless it sets them: cache_aware learns each request's tokens from
    the server's render endpoints (/v1/chat/completions/render), which vLLM serves only with --enable-scale-out
    (under /v1 and /inference, so behind the API key); without them it cannot match prefixes."""
    routing = routing_of(model)
    return {"enableScaleOut": True} if routing and routing["policy"] == "cache_aware" else {}


def render_router_deployment(model: dict, config: Config) -> dict:
    routing = routing_of(model)
    name = router_name(model["metadata"]["name"])
    prestop = int(config.server_prestop_seconds)
    container = {
        "name": "router",
        "image": config.router_image,
        "command": GATE,
        "args": router_args(model),
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": config.router_cpu_request, "memory": config.router_memory_request},
                      "limits": {"memory": config.router_memory_limit}},
        # Ready once it listens, with or without a server replica: with none it answers 503 at once, which clients
        # retry, rather than connections being refused.
        # Timeouts as the servers': on a saturated node a 1 s probe fails, and the router left the Service's
        # endpoints mid-load (clients saw connections refused).
        "startupProbe": {**PROBE, "periodSeconds": 2, "timeoutSeconds": 5, "failureThreshold": 30},
        "readinessProbe": {**PROBE, "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**PROBE, "periodSeconds": 10, "timeoutSeconds": 10, "failureThreshold": 6},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}, "runAsNonRoot": True,
                            "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if prestop > 0:  # as the servers: the endpoints drop the pod before it stops taking requests
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": prestop}}}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(model, name),
        "spec": {
            "replicas": routing["replicas"],
            "selector": {"matchLabels": router_selector(model["metadata"]["name"])},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {"labels": _metadata(model, name, pod_labels=True)["labels"], "annotations": {
                    "prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT),
                    "prometheus.io/path": "/metrics"}},
                "spec": {
                    "serviceAccountName": name,
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                    "enableServiceLinks": False,
                    # streamed answers in flight get the rest of a server's drain time to finish
                    "terminationGracePeriodSeconds": prestop + int(config.server_drain_seconds),
                },
            },
        },
    }


def render_router_rbac(model: dict) -> list[dict]:
    """The router's identity: it lists and watches the pods of its namespace (the API server filters them by its
    label selector), nothing else."""
    return pod_identity(_metadata(model, router_name(model["metadata"]["name"])),
                        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}])


def render_router_children(model: dict, config: Config) -> list[dict]:
    """Everything routing adds to a Model (its Services are rendered with the Model's own, in render.py)."""
    return [render_router_deployment(model, config), *render_router_rbac(model)]


def router_status(model: dict, router: dict | None, ready_servers: int) -> dict | None:
    """status.routing: the policy, ready routers, and the server replicas they route to (the ready ones: the router
    adds a pod once it is Running and Ready, and drops it when it is not)."""
    routing = routing_of(model)
    if not routing:
        return None
    ready = ((router or {}).get("status") or {}).get("readyReplicas", 0)
    return {"policy": routing["policy"], "readyRouters": ready, "routedReplicas": ready_servers if ready else 0}
