"""A Model's own facts, read by rendering, status, agents and injection alike: its spec with the schema's defaults,
the name it is served under, its in-cluster endpoint, the owner reference its children carry, and the identity
(ServiceAccount, Role, RoleBinding) some of its pods run as. Pure."""

from __future__ import annotations

from .config import GROUP, SERVER_PORT, VERSION, Config
from .crd import model_spec_with_defaults


def spec_of(model: dict) -> dict:
    return model_spec_with_defaults(model.get("spec") or {})


def served_model_name(model: dict) -> str:
    return (model.get("spec") or {}).get("servedModelName") or model["metadata"]["name"]


def endpoint(model: dict, config: Config) -> str:
    meta = model["metadata"]
    return f"http://{meta['name']}.{meta['namespace']}.svc.{config.cluster_domain}:{SERVER_PORT}/v1"


def owner_reference(owner: dict) -> dict:
    """Controller reference to a Model or an Agent, so that deleting it deletes what was made for it."""
    return {"apiVersion": owner.get("apiVersion", f"{GROUP}/{VERSION}"), "kind": owner.get("kind", "Model"),
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"], "controller": True,
            "blockOwnerDeletion": True}


def pod_identity(metadata: dict, rules: list[dict]) -> list[dict]:
    """A ServiceAccount for some of a Model's pods, a Role with `rules` and the RoleBinding between them, all named
    and labelled by `metadata` (in the Model's namespace, owned by it)."""
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata},
        {"apiVersion": rbac, "kind": "Role", "metadata": metadata, "rules": rules},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": metadata,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": metadata["name"]},
         "subjects": [{"kind": "ServiceAccount", "name": metadata["name"], "namespace": metadata["namespace"]}]},
    ]
