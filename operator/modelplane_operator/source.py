"""Where a Model's weights come from: its `source` URI turned into vLLM's model argument plus the volumes, mounts
and environment that make it reachable. Pure; the schema has already rejected malformed URIs."""

from __future__ import annotations

import dataclasses
import posixpath

PVC_MOUNT = "/models"
GCS_CREDENTIALS_DIR = "/var/run/secrets/modelplane/gcs"


@dataclasses.dataclass
class ModelSource:
    model: str  # what vLLM gets as --model
    volumes: list = dataclasses.field(default_factory=list)
    mounts: list = dataclasses.field(default_factory=list)
    env: list = dataclasses.field(default_factory=list)
    env_from: list = dataclasses.field(default_factory=list)
    args: list = dataclasses.field(default_factory=list)


def parse(source: str, credentials: dict | None = None) -> ModelSource:
    scheme, _, rest = source.partition("://")
    if scheme == "hf":
        out = ModelSource(model=rest)
        if credentials:
            out.env.append(secret_env("HF_TOKEN", credentials, "token"))
        return out
    if scheme == "pvc":
        claim, _, path = rest.partition("/")
        model_path = posixpath.join(PVC_MOUNT, path.strip("/")) if path.strip("/") else PVC_MOUNT
        return ModelSource(
            model=model_path,
            volumes=[{"name": "model-source",
                      "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
            mounts=[{"name": "model-source", "mountPath": PVC_MOUNT, "readOnly": True}],
        )
    if scheme in ("s3", "gs"):
        # vLLM streams object-store weights with the Run:ai model streamer.
        out = ModelSource(model=source, args=["--load-format", "runai_streamer"])
        if credentials and scheme == "s3":
            out.env_from.append({"secretRef": {"name": credentials["name"]}})
        elif credentials:
            key = credentials.get("key", "token")
            out.volumes.append({"name": "gcs-credentials",
                                "secret": {"secretName": credentials["name"], "items": [{"key": key, "path": key}]}})
            out.mounts.append({"name": "gcs-credentials", "mountPath": GCS_CREDENTIALS_DIR, "readOnly": True})
            out.env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS",
                            "value": posixpath.join(GCS_CREDENTIALS_DIR, key)})
        return out
    raise ValueError(f"spec.source: unsupported scheme {scheme!r} (use hf://, pvc://, s3:// or gs://)")


def secret_env(name: str, ref: dict, default_key: str) -> dict:
    """An env var read from a Secret key: the only way secrets reach a container."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref["name"], "key": ref.get("key", default_key)}}}
