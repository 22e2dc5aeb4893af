"""A Model's own facts, read by rendering, status, agents and injection alike: its spec with the schema's defaults,
the name it is served under, its in-cluster endpoint, and the owner reference its children carry. Pure."""

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
