"""Agents and injection: which Models (and LoRA adapters of Models) a workload may use, and the ConfigMap, env and
volume that tell it how. Pure functions; the same injection serves Agent Deployments and pods mutated by the
webhook."""

from __future__ import annotations

import dataclasses

from . import agentconfig
from .config import Config
from .crd import agent_spec_with_defaults
from .keys import AGENT_LABEL, MANAGED, PART_OF, standard_labels
from .model import endpoint, owner_reference
from .render import RESTRICTED, merge_env
from .source import secret_env
from .status import Problem, condition

CONFIG_MOUNT = "/etc/modelplane"
CONFIG_VOLUME = "modelplane-config"
NAMESPACE_CONFIGMAP = "modelplane-models"  # what injected pods of a namespace mount
NO_KEY = "no-key"  # vLLM without --api-key accepts any key; the OpenAI client insists on one


@dataclasses.dataclass
class Resolved:
    """One model reference of a workload (a Model, or one of its adapters), resolved against the Models that
    exist."""
    namespace: str
    name: str
    model: dict | None  # None when missing or not allowed: nothing about it is injected
    # NotFound, NotAllowed, NotReady, AdapterNotFound, AdapterNotReady; None when usable and ready
    reason: str | None
    default: bool = False
    adapter: str = ""  # empty: the Model itself

    @property
    def ready(self) -> bool:
        return self.reason is None

    @property
    def key(self) -> str:
        """namespace/name, or namespace/name:adapter: what warnings and pod annotations name it by."""
        return f"{self.namespace}/{agentconfig.reference(self.name, self.adapter)}"


def allowed(model: dict, namespace: str) -> bool:
    """A Model serves its own namespace, and the ones it lists (or all, with "*")."""
    if model["metadata"]["namespace"] == namespace:
        return True
    allow = (model.get("spec") or {}).get("allowedNamespaces") or []
    return "*" in allow or namespace in allow


def audiences(model: dict) -> set[str]:
    """The namespaces a Model serves: its own and the ones it lists ("*" stands for all)."""
    return {model["metadata"]["namespace"], *((model.get("spec") or {}).get("allowedNamespaces") or [])}


def configmaps_to_rebuild(serves: set[str], served: set[str], kept: set[str]) -> set[str]:
    """Pure: of the namespaces that keep a ConfigMap for injected pods (`kept`), the ones whose content may change when
    a Model that served `served` now serves `serves` (empty when it is gone): both, "*" standing for all."""
    touched = serves | served
    return set(kept) if "*" in touched else kept & touched


def visible_models(models: list[dict], namespace: str) -> list[dict]:
    """The Models `namespace` may use: its own first, then the others by namespace and name."""
    return sorted((m for m in models if allowed(m, namespace)),
                  key=lambda m: (m["metadata"]["namespace"] != namespace, m["metadata"]["namespace"],
                                 m["metadata"]["name"]))


def model_ready(model: dict) -> bool:
    """Serving, or Idle at zero replicas (its router wakes it on the first request): an agent can use it either way,
    and its configuration does not change each time the autoscaler takes it to zero and back."""
    return (model.get("status") or {}).get("phase") in ("Ready", "Idle")


def adapter_names(model: dict) -> list[str]:
    return [a["name"] for a in (model.get("spec") or {}).get("adapters") or []]


def adapter_ready(model: dict, adapter: str) -> bool:
    """Loaded on every ready replica (status.adapters), or listed on a Model Idle at zero: the replica that wakes is
    Ready only once its loader tried each adapter, so agents keep it as they keep the Model (and their configuration
    does not change each time the Model goes to zero and back)."""
    if (model.get("status") or {}).get("phase") == "Idle":
        return True
    entries = (model.get("status") or {}).get("adapters") or []
    return any(a.get("name") == adapter and a.get("ready") for a in entries)


def readiness(model: dict, adapter: str) -> str | None:
    """Why an allowed Model (or its `adapter`) cannot serve a workload yet, or None. An unknown adapter keeps the
    Model, as a Model not ready does: the adapter serves, without restarting a pod, once it is added and loaded."""
    if adapter and adapter not in adapter_names(model):
        return "AdapterNotFound"
    if not model_ready(model):
        return "NotReady"
    return "AdapterNotReady" if adapter and not adapter_ready(model, adapter) else None


def resolve(namespace: str, refs: list[dict], lookup) -> list[Resolved]:
    """refs: [{name, namespace?, adapter?, default?}]; lookup((ns, name)) -> Model or None. The first is the
    default unless some ref says `default` either way."""
    explicit = any("default" in r for r in refs)
    out = []
    for i, ref in enumerate(refs):
        ns, adapter = ref.get("namespace") or namespace, ref.get("adapter") or ""
        model = lookup((ns, ref["name"]))
        if model is None:
            reason = "NotFound"
        elif not allowed(model, namespace):
            model, reason = None, "NotAllowed"
        else:
            reason = readiness(model, adapter)
        out.append(Resolved(ns, ref["name"], model, reason, bool(ref.get("default")) if explicit else i == 0,
                            adapter))
    return out


def namespace_refs(models, namespace: str) -> list[dict]:
    """What injected pods of `namespace` get without naming any: every Model the namespace may use, each followed by
    its adapters. The only Model (its base) is the default; with several there is none to choose."""
    visible = visible_models(models, namespace)
    refs = []
    for m in visible:
        base = {"name": m["metadata"]["name"], "namespace": m["metadata"]["namespace"], "default": len(visible) == 1}
        refs += [base, *({**base, "adapter": a, "default": False} for a in adapter_names(m))]
    return refs


def config_data(resolved: list[Resolved], config: Config) -> dict[str, str]:
    usable = [r for r in resolved if r.model is not None]
    default = next((agentconfig.reference(r.name, r.adapter) for r in usable if r.default), None)
    return agentconfig.config_files([(r.model, r.ready, r.adapter) for r in usable], config, default)


def injected_env(resolved: list[Resolved], config: Config) -> list[dict]:
    """MODELPLANE_CONFIG_DIR, the OPENAI_* conventions for the default model (an adapter's name as OPENAI_MODEL, for
    an adapter), and one key env var per keyed Model (its adapters share it), each from a Secret of the workload's
    own namespace (Secrets never cross namespaces)."""
    env = [{"name": "MODELPLANE_CONFIG_DIR", "value": CONFIG_MOUNT}]
    for r in resolved:
        if r.model is None:
            continue
        ref = (r.model.get("spec") or {}).get("apiKeySecretRef")
        key_env = secret_env(agentconfig.api_key_env(r.model), ref, "api-key") if ref else None
        if key_env:
            key_env["valueFrom"]["secretKeyRef"]["optional"] = True  # the library explains a missing key
            if key_env["name"] not in {e["name"] for e in env}:  # a Model's base and adapters: one var
                env.append(key_env)
        if r.default:
            env += [{"name": "OPENAI_BASE_URL", "value": endpoint(r.model, config)},
                    {"name": "OPENAI_MODEL", "value": agentconfig.served_name(r.model, r.adapter)}]
            env.append({**key_env, "name": "OPENAI_API_KEY"} if key_env else {"name": "OPENAI_API_KEY",
                                                                              "value": NO_KEY})
    return env


def config_volume(configmap: str) -> tuple[dict, dict]:
    """The volume and read-only mount of the configuration; optional so a pod starts before its ConfigMap."""
    return ({"name": CONFIG_VOLUME, "configMap": {"name": configmap, "optional": True}},
            {"name": CONFIG_VOLUME, "mountPath": CONFIG_MOUNT, "readOnly": True})


def agent_labels(name: str) -> dict:
    return {**standard_labels("agent", name, "agent"), AGENT_LABEL: name}


def configmap_name(agent_name: str) -> str:
    return f"{agent_name}-modelplane"


def _metadata(agent: dict, name: str) -> dict:
    meta = agent["metadata"]
    return {"name": name, "namespace": meta["namespace"], "labels": agent_labels(meta["name"]),
            "ownerReferences": [owner_reference(agent)]}


def render_configmap(agent: dict, resolved: list[Resolved], config: Config) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(agent, configmap_name(agent["metadata"]["name"])),
            "data": config_data(resolved, config)}


def render_agent_deployment(agent: dict, resolved: list[Resolved], config: Config) -> dict:
    spec = agent_spec_with_defaults(agent.get("spec") or {})
    name = agent["metadata"]["name"]
    volume, mount = config_volume(configmap_name(name))
    container = {"name": "agent", "image": spec["image"],
                 "env": merge_env(injected_env(resolved, config) + list(spec.get("env") or [])),  # user's wins
                 "volumeMounts": [mount],
                 "securityContext": {**RESTRICTED, "runAsNonRoot": True}}
    for field in ("command", "args", "resources"):
        if spec.get(field):
            container[field] = spec[field]
    pod = {"containers": [container], "volumes": [volume]}
    if spec.get("serviceAccountName"):
        pod["serviceAccountName"] = spec["serviceAccountName"]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(agent, name),
            "spec": {"replicas": spec["replicas"], "selector": {"matchLabels": {AGENT_LABEL: name}},
                     "template": {"metadata": {"labels": agent_labels(name)}, "spec": pod}}}


def render_agent_children(agent: dict, resolved: list[Resolved], config: Config) -> list[dict]:
    return [render_configmap(agent, resolved, config), render_agent_deployment(agent, resolved, config)]


def blocked(bad: Resolved, namespace: str) -> tuple[str, str]:
    """(reason, message) of the Ready=False of an Agent in `namespace` that `bad` keeps from being ready."""
    model = f"model {bad.namespace}/{bad.name}"
    if bad.reason == "AdapterNotFound":
        return bad.reason, f"{model} has no adapter {bad.adapter} (spec.adapters)"
    if bad.reason == "AdapterNotReady":
        state = next((a for a in (bad.model.get("status") or {}).get("adapters") or []
                      if a.get("name") == bad.adapter), {})
        why = f"{state['reason']}: {state.get('message', '')}" if state.get("reason") else "not reported yet"
        return bad.reason, f"adapter {bad.adapter} of {model} is not loaded on every ready replica ({why})"
    words = {"NotFound": "does not exist", "NotAllowed": f"does not allow namespace {namespace} "
             "(spec.allowedNamespaces)", "NotReady": "is not ready"}
    return f"Model{bad.reason}", f"{model} {words[bad.reason]}"


def agent_status(agent: dict, resolved: list[Resolved], deployment: dict | None, config: Config, now: str,
                 problem: Problem | None = None) -> dict:
    meta = agent["metadata"]
    generation = meta.get("generation", 1)
    previous = (agent.get("status") or {}).get("conditions") or []
    dstatus = (deployment or {}).get("status") or {}
    desired = agent_spec_with_defaults(agent.get("spec") or {})["replicas"]
    ready_pods = dstatus.get("readyReplicas", 0)
    bad = next((r for r in resolved if not r.ready), None)
    if problem:
        ready = condition("Ready", "False", problem.reason, problem.message, generation, previous, now)
    elif bad:
        ready = condition("Ready", "False", *blocked(bad, meta["namespace"]), generation, previous, now)
    elif ready_pods < desired:
        ready = condition("Ready", "False", "PodsNotReady", f"{ready_pods}/{desired} agent pods ready",
                          generation, previous, now)
    else:
        ready = condition("Ready", "True", "Ready", f"{ready_pods}/{desired} agent pods ready; all models ready",
                          generation, previous, now)
    models = []
    for r in resolved:
        entry = {"name": r.name, "namespace": r.namespace, **({"adapter": r.adapter} if r.adapter else {}),
                 "ready": r.ready}
        if r.model is not None:
            entry.update(servedModelName=agentconfig.served_name(r.model, r.adapter),
                         endpoint=endpoint(r.model, config))
        if r.reason:
            entry["reason"] = r.reason
        models.append(entry)
    return {"conditions": [ready], "models": models,
            "modelSummary": f"{sum(r.ready for r in resolved)}/{len(resolved)}",
            "replicas": dstatus.get("replicas", 0), "readyReplicas": ready_pods,
            "selector": f"{AGENT_LABEL}={meta['name']}", "observedGeneration": generation}


def namespace_configmap(namespace: str, models: list[dict], config: Config) -> dict:
    """The ConfigMap injected pods of `namespace` mount: every Model the namespace may use, and each of its
    adapters. Pods with different annotations share it, so its index names a default only when there is one Model
    to choose (the rule the webhook follows for OPENAI_MODEL); a pod's own default travels in its env
    (OPENAI_BASE_URL, OPENAI_MODEL)."""
    models = list(models)
    found = {(m["metadata"]["namespace"], m["metadata"]["name"]): m for m in models}
    data = config_data(resolve(namespace, namespace_refs(models, namespace), found.get), config)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": NAMESPACE_CONFIGMAP, "namespace": namespace,
                         "labels": {**MANAGED, **PART_OF, "app.kubernetes.io/component": "injected-config"}},
            "data": data}

