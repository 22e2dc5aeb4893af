"""Every label and annotation key the operator writes or reads, and the standard label sets: one place."""

from __future__ import annotations

from .config import FIELD_MANAGER, GROUP

# On the operator's children (and the pods of Models and Agents): whose they are.
MODEL_LABEL = f"{GROUP}/model"
AGENT_LABEL = f"{GROUP}/agent"
# On a routed Model's router pods (they do not carry MODEL_LABEL: they are not server pods).
ROUTER_LABEL = f"{GROUP}/router"
# Opting in to injection: on a pod ("true", or "false" to opt out) or a namespace ("enabled").
INJECT_LABEL = f"{GROUP}/inject"
# On an injected pod: the Models it asks for (first is its default), what it got, what it could not get.
MODELS_ANNOTATION = f"{GROUP}/models"
INJECTED_ANNOTATION = f"{GROUP}/injected"
ERROR_ANNOTATION = f"{GROUP}/injection-error"
# On a Model's Deployment: the Model generation it was rendered from, and a hash of what was rendered.
GENERATION_ANNOTATION = f"{GROUP}/model-generation"
TEMPLATE_HASH_ANNOTATION = f"{GROUP}/rendered-hash"
# On a gated Model's server pods: a hash of the gate vLLM runs (servergate.py), so a new gate rolls them.
GATE_ANNOTATION = f"{GROUP}/server-gate"

PART_OF = {"app.kubernetes.io/part-of": "modelplane"}
MANAGED = {"app.kubernetes.io/managed-by": FIELD_MANAGER}


def standard_labels(name: str, instance: str, component: str) -> dict:
    """The app.kubernetes.io/* set, on everything the operator makes for a Model or an Agent."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": instance,
            "app.kubernetes.io/component": component, **PART_OF, **MANAGED}
