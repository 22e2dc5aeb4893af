"""The Models and Agents the tests send: one set of builders, each suite choosing its defaults by keyword."""

from __future__ import annotations

API = "modelplane.dev/v1alpha1"
QWEN = "hf://Qwen/Qwen2.5-7B-Instruct"


def _metadata(name: str, namespace: str | None, uid: str | None, generation: int | None) -> dict:
    meta = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if uid is not None:
        meta["uid"] = uid
    if generation is not None:
        meta["generation"] = generation
    return meta


def model(name: str, namespace: str | None = None, *, source: str = QWEN, uid: str | None = None,
          generation: int | None = None, phase: str | None = None, **spec) -> dict:
    """A Model as a user writes it (`phase`, `uid`, `generation`: as the API server and the operator left it, for
    pure tests)."""
    out = {"apiVersion": API, "kind": "Model", "metadata": _metadata(name, namespace, uid, generation),
           "spec": {"source": source, **spec}}
    if phase is not None:
        out["status"] = {"phase": phase}
    return out


def agent(name: str, namespace: str | None = None, *models: dict, image: str = "python:3.11-slim",
          uid: str | None = None, generation: int | None = None, **spec) -> dict:
    """An Agent using `models` (refs: {name, namespace?, default?})."""
    return {"apiVersion": API, "kind": "Agent", "metadata": _metadata(name, namespace, uid, generation),
            "spec": {"image": image, "models": list(models), **spec}}
