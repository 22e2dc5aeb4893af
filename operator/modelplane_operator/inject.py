"""Opt-in injection into any pod: what the mutating webhook adds, and its own configuration. Pure.

A pod opts in with the label modelplane.dev/inject=true, or by living in a namespace labelled
modelplane.dev/inject=enabled (a pod there may opt out with modelplane.dev/inject=false). The annotation
modelplane.dev/models names the models ("qwen-7b,platform/shared,qwen-7b:sql"; `model:adapter` names a LoRA adapter
of a Model; the first is the default); without it, every Model the namespace may use, and each of its adapters, is
injected. Injecting twice gives the same pod.
"""

from __future__ import annotations

from .agent import NAMESPACE_CONFIGMAP, Resolved, config_volume, injected_env, namespace_refs, resolve
from .config import GROUP, Config
from .keys import ERROR_ANNOTATION, INJECT_LABEL, INJECTED_ANNOTATION, MODELS_ANNOTATION, PART_OF

WEBHOOK_PATH = "/inject"  # kopf serves a handler at /<handler id>


def parse_models_annotation(value: str) -> list[dict]:
    """Refs from "model", "namespace/model", "model:adapter" or "namespace/model:adapter" items, comma-separated.
    `:` cannot be part of a namespace, Model or adapter name (DNS labels), so it only ever separates the adapter."""
    refs = []
    for i, item in enumerate(v.strip() for v in value.split(",") if v.strip()):
        ns, _, ref = item.rpartition("/")
        name, _, adapter = ref.partition(":")
        refs.append({"name": name.strip(), "namespace": ns.strip(), "adapter": adapter.strip(), "default": i == 0})
    return refs


def requested(pod: dict, namespace: str, models: list[dict], lookup) -> list[Resolved]:
    """The models a pod asks for (its annotation), or all those its namespace may use and their adapters."""
    annotation = ((pod.get("metadata") or {}).get("annotations") or {}).get(MODELS_ANNOTATION)
    refs = parse_models_annotation(annotation) if annotation else namespace_refs(models, namespace)
    return resolve(namespace, refs, lookup)


def _merge(items: list[dict], ours: list[dict]) -> list[dict]:
    """`items` with ours replacing any of the same name, appended in order: idempotent."""
    names = {o["name"] for o in ours}
    return [i for i in items if i.get("name") not in names] + ours


def mutation(pod: dict, resolved: list[Resolved], config: Config) -> tuple[dict, list[str]]:
    """(the pod fields to set, warnings for the client). Refused or missing models are not injected; an adapter
    its Model does not list is (it serves once the Model lists it), with a warning: most likely a typo."""
    spec = pod.get("spec") or {}
    usable = [r for r in resolved if r.model is not None]
    problems = [f"model {r.key}: {r.reason}" for r in resolved if r.model is None]
    env = injected_env(usable, config)
    volume, mount = config_volume(NAMESPACE_CONFIGMAP)
    containers = [{**c, "env": _merge(c.get("env") or [], env),
                   "volumeMounts": _merge(c.get("volumeMounts") or [], [mount])}
                  for c in spec.get("containers") or []]
    annotations = dict((pod.get("metadata") or {}).get("annotations") or {})
    annotations[INJECTED_ANNOTATION] = ",".join(r.key for r in usable)
    if problems:
        annotations[ERROR_ANNOTATION] = "; ".join(problems)
    else:
        annotations.pop(ERROR_ANNOTATION, None)
    fields = {"containers": containers, "volumes": _merge(spec.get("volumes") or [], [volume]),
              "annotations": annotations}
    unknown = [f"modelplane: model {r.key}: AdapterNotFound (injected: it serves once the Model lists the adapter "
               "in spec.adapters)" for r in usable if r.reason == "AdapterNotFound"]
    return fields, [f"modelplane: {p} (not injected)" for p in problems] + unknown


NOT_SERVING = "the operator's view of Models was not complete yet"


def not_configured(pod: dict, namespace: str, lookup) -> str | None:
    """Why an opted-in pod lacks configuration it could have now, or None. Such a pod was admitted while the webhook
    did not answer (failurePolicy let it through) or before the Models it names existed; nothing changes a running
    pod's env, so the only remedy is to create it again."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    error = annotations.get(ERROR_ANNOTATION) or ""
    if NOT_SERVING in error:
        return f"it was created while {NOT_SERVING}, so it has no model configuration"
    if INJECTED_ANNOTATION not in annotations:
        return "it was created while modelplane's webhook did not answer, so it has no model configuration"
    if not error:
        return None
    wanted = annotations.get(MODELS_ANNOTATION)
    injected = set(filter(None, annotations[INJECTED_ANNOTATION].split(",")))
    now = [r.key for r in resolve(namespace, parse_models_annotation(wanted or ""), lookup)
           if r.model is not None and r.key not in injected]
    if now:
        return f"{', '.join(now)} can be used now but did not exist or was not allowed when it was created"
    return None


def webhook_configuration(client_config: dict, *, name: str = "modelplane", failure_policy: str = "Ignore",
                          timeout_seconds: int = 5, excluded_namespaces: tuple[str, ...] = ("kube-system",),
                          watched_namespaces: tuple[str, ...] = ()) -> dict:
    """A MutatingWebhookConfiguration that can never take the cluster down: failures are ignored by default, the
    timeout is short, system namespaces are skipped, and only opted-in pods are sent to the operator (of the
    namespaces it watches, when it watches some only: it has no view of the others)."""
    namespaces = [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                   "values": sorted(set(excluded_namespaces))}]
    if watched_namespaces:
        namespaces.append({"key": "kubernetes.io/metadata.name", "operator": "In",
                           "values": sorted(set(watched_namespaces))})
    common = {
        "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun", "failurePolicy": failure_policy,
        "timeoutSeconds": timeout_seconds, "matchPolicy": "Equivalent", "reinvocationPolicy": "IfNeeded",
        "clientConfig": client_config,
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["CREATE"],
                   "scope": "Namespaced"}],
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": dict(PART_OF)},
        "webhooks": [
            {"name": f"pods.{GROUP}", **common,
             "namespaceSelector": {"matchExpressions": namespaces},
             "objectSelector": {"matchLabels": {INJECT_LABEL: "true"}}},
            {"name": f"namespaces.{GROUP}", **common,
             "namespaceSelector": {"matchExpressions": [*namespaces, {"key": INJECT_LABEL, "operator": "In",
                                                                     "values": ["enabled"]}]},
             "objectSelector": {"matchExpressions": [{"key": INJECT_LABEL, "operator": "NotIn",
                                                      "values": ["true", "false"]}]}},
        ],
    }
