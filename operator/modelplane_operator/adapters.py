"""LoRA adapters of a Model (spec.adapters, spec.lora): the servers' LoRA flags, where each adapter's files are inside
a server pod, the loader sidecar that keeps them loaded in its replica, and status.adapters from what the loaders
report. Pure: adapterloader.py (the sidecar) and handlers.py do the I/O."""

from __future__ import annotations

import hashlib
import posixpath

from . import source as sources
from .config import GROUP, SERVER_PORT, Config
from .crd import DEFAULT_LORA_MAX_ADAPTERS, DEFAULT_LORA_MAX_RANK
from .model import owner_reference, pod_identity

LOADER_PORT = 8002  # the loader's /ready (the kubelet's probe) and /adapters (the operator's look)
FETCHED = "/adapters/fetched"  # hf:// and s3:// adapters, downloaded by the loader, read by the server
CLAIMS = "/adapters/claims"  # claims of pvc:// adapters other than the Model's own source claim
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # where the kubernetes client looks, in the loader only
LOADER_COMMAND = ["python", "-m", "modelplane_operator.adapterloader"]
# vLLM mounts its adapter endpoints only with this set (vLLM calls it a development setting: with it, vLLM also
# serves POST /adapters without checking the API key; README, "LoRA adapters", says who can reach it).
RUNTIME_UPDATING = {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"}


def lora_of(spec: dict) -> dict | None:
    """The servers' LoRA capacity, when LoRA is on: spec.lora (defaults filled in), or the defaults as soon as the
    Model has an adapter. None when off."""
    if spec.get("lora") is None and not spec.get("adapters"):
        return None
    return {"maxRank": DEFAULT_LORA_MAX_RANK, "maxAdapters": DEFAULT_LORA_MAX_ADAPTERS, **(spec.get("lora") or {})}


def engine_defaults(spec: dict) -> dict:
    """engineArgs for LoRA (a Model's own engineArgs win, as over every operator default)."""
    lora = lora_of(spec)
    if not lora:
        return {}
    return {"enableLora": True, "maxLoraRank": lora["maxRank"], "maxLoras": lora["maxAdapters"]}


def model_claim(spec: dict) -> str | None:
    scheme, _, rest = spec["source"].partition("://")
    return rest.partition("/")[0] if scheme == "pvc" else None


def location(spec: dict, adapter: dict) -> str:
    """The adapter's folder as the server sees it: under the Model's own claim's mount, under the mount of another
    claim, or where the loader downloads it."""
    scheme, _, rest = adapter["source"].partition("://")
    if scheme == "pvc":
        claim, _, path = rest.partition("/")
        root = sources.PVC_MOUNT if claim == model_claim(spec) else posixpath.join(CLAIMS, claim)
        return posixpath.join(root, path.strip("/")) if path.strip("/") else root
    return posixpath.join(FETCHED, adapter["name"])


def adapter_claims(spec: dict) -> list[str]:
    """Claims of pvc:// adapters that the server pod must mount besides the Model's own, in first-use order."""
    out: list[str] = []
    for adapter in spec.get("adapters") or []:
        scheme, _, rest = adapter["source"].partition("://")
        claim = rest.partition("/")[0]
        if scheme == "pvc" and claim != model_claim(spec) and claim not in out:
            out.append(claim)
    return out


def token_env(ref: dict) -> str:
    """The loader's env var holding the token of one credentials Secret key: adapters sharing a Secret share it, so a
    new adapter with a Secret already in use changes nothing in the pod (no rollout)."""
    digest = hashlib.sha256(f"{ref['name']}/{ref.get('key', 'token')}".encode()).hexdigest()[:12].upper()
    return f"MODELPLANE_ADAPTER_TOKEN_{digest}"


def s3_env_prefix(ref: dict) -> str:
    """The prefix of the loader's env vars holding one Secret's keys for s3:// adapters (AWS_ACCESS_KEY_ID, ...):
    each Secret's keys come in under a prefix of their own (envFrom), so adapters with different Secrets never mix
    their keys, and adapters sharing one add nothing to the pod."""
    return f"MODELPLANE_ADAPTER_S3_{hashlib.sha256(ref['name'].encode()).hexdigest()[:12].upper()}_"


def loader_name(name: str) -> str:
    """The loader's ServiceAccount, Role and RoleBinding."""
    return f"{name}-adapters"


def volumes(spec: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """(pod volumes, the server's mounts, the loader's mounts) that adapters need."""
    claims = adapter_claims(spec)
    pod = [{"name": "adapters", "emptyDir": {"sizeLimit": "10Gi"}},
           *({"name": f"adapter-claim-{i}", "persistentVolumeClaim": {"claimName": c, "readOnly": True}}
             for i, c in enumerate(claims)),
           # the API token in the loader only (the pod does not automount one): it reads its own Model, nothing else
           {"name": "loader-token", "projected": {"sources": [
               {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
               {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
               {"downwardAPI": {"items": [{"path": "namespace",
                                           "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}]
    server = [{"name": "adapters", "mountPath": FETCHED, "readOnly": True},
              *({"name": f"adapter-claim-{i}", "mountPath": posixpath.join(CLAIMS, c), "readOnly": True}
                for i, c in enumerate(claims))]
    loader = [{"name": "adapters", "mountPath": FETCHED},
              {"name": "loader-token", "mountPath": TOKEN_DIR, "readOnly": True}]
    return pod, server, loader


def loader_container(model: dict, config: Config, security: dict, mounts: list[dict]) -> dict:
    """The loader sidecar, with `mounts` (the loader's, from volumes())."""
    spec = model.get("spec") or {}
    env = [{"name": "MODELPLANE_MODEL", "value": model["metadata"]["name"]},
           {"name": "MODELPLANE_SERVER", "value": f"http://127.0.0.1:{SERVER_PORT}"},
           {"name": "MODELPLANE_LOADER_PORT", "value": str(LOADER_PORT)}]
    if spec.get("apiKeySecretRef"):  # the adapter endpoints are behind the server's key; never in the arguments
        env.append(sources.secret_env("VLLM_API_KEY", spec["apiKeySecretRef"], "api-key"))
    credentialed = [a for a in spec.get("adapters") or [] if a.get("credentialsSecretRef")]
    tokens = {token_env(a["credentialsSecretRef"]): a["credentialsSecretRef"]
              for a in credentialed if a["source"].startswith("hf://")}
    env += [sources.secret_env(name, tokens[name], "token") for name in sorted(tokens)]
    s3 = {s3_env_prefix(a["credentialsSecretRef"]): a["credentialsSecretRef"]["name"]
          for a in credentialed if a["source"].startswith("s3://")}
    probe = {"httpGet": {"path": "/ready", "port": "loader"}}
    container = {
        "name": "adapter-loader",
        "image": config.adapter_loader_image,
        "command": LOADER_COMMAND,
        "env": env,
        "ports": [{"name": "loader", "containerPort": LOADER_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        # Ready once the adapters it found at start are loaded, and only while every adapter it loaded is still in
        # the server (a restarted vLLM has none): with the server's own probe, the pod takes requests with them.
        "readinessProbe": {**probe, "periodSeconds": 2, "timeoutSeconds": 5, "failureThreshold": 1},
        "volumeMounts": mounts,
        "securityContext": {**security, "runAsNonRoot": True, "readOnlyRootFilesystem": True},
    }
    if s3:
        container["envFrom"] = [{"prefix": prefix, "secretRef": {"name": s3[prefix]}} for prefix in sorted(s3)]
    return container


def render_loader_rbac(model: dict, labels: dict) -> list[dict]:
    """The loader's identity: it may read and watch its own Model, nothing else (no Secret: credentials come as env)."""
    meta = model["metadata"]
    metadata = {"name": loader_name(meta["name"]), "namespace": meta["namespace"], "labels": labels,
                "ownerReferences": [owner_reference(model)]}
    return pod_identity(metadata, [{"apiGroups": [GROUP], "resources": ["models"], "resourceNames": [meta["name"]],
                                    "verbs": ["get", "list", "watch"]}])


# --- what a loader reports, and what status says ------------------------------------------------------------------

def classify(code: int, message: str) -> str:
    """Why vLLM refused to load an adapter, from its answer (vLLM 0.32: 404 'No adapter found for <path>' for a
    missing folder, 500 'LoRA rank R is greater than max_lora_rank M', 500 naming modules or shapes that the base
    model does not have)."""
    text = message.lower()
    if code == 404 or "no adapter found" in text:
        return "SourceNotFound"
    if "max_lora_rank" in text:
        return "RankTooLarge"
    if any(word in text for word in ("module", "shape", "size mismatch", "does not match", "dimension")):
        return "BaseMismatch"
    return "LoadFailed"


FAILED_REASONS = ("SourceNotFound", "RankTooLarge", "BaseMismatch", "FetchFailed", "LoadFailed")


def adapter_status(spec: dict, reports: list[dict | None]) -> list[dict]:
    """status.adapters from the reports of the Model's ready replicas' loaders (None: one did not answer), in
    spec order. An adapter is ready when every ready replica reports it loaded; a failure any replica reports is
    shown (the same source fails alike everywhere)."""
    out = []
    answered = [r for r in reports if r is not None]
    for adapter in spec.get("adapters") or []:
        name = adapter["name"]
        loaded = sum(name in r.get("loaded", ()) for r in answered)
        failure = next((r["failed"][name] for r in answered if name in (r.get("failed") or {})), None)
        entry = {"name": name, "loadedReplicas": loaded,
                 "ready": bool(reports) and loaded == len(reports)}
        if not reports:
            entry.update(reason="NoReadyReplicas", message="no ready replica to load it into")
        elif entry["ready"]:
            entry.update(reason="Loaded", message=f"loaded on {loaded} of {len(reports)} ready replicas")
        elif failure:
            entry.update(reason=failure.get("reason", "LoadFailed"), message=failure.get("message", ""))
        elif len(answered) < len(reports):
            entry.update(reason="Unreported", message=f"{len(reports) - len(answered)} ready replicas' loaders "
                         "did not answer")
        else:
            entry.update(reason="Loading", message=f"loaded on {loaded} of {len(reports)} ready replicas")
        out.append(entry)
    return out


def events(old: list[dict], new: list[dict]) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events a change of status.adapters calls for: a failure once per new
    reason or message, and an adapter becoming ready (after failing, or for the first time)."""
    before = {a["name"]: a for a in old or []}
    out = []
    for entry in new:
        was = before.get(entry["name"], {})
        reason, message = entry.get("reason"), entry.get("message", "")
        if reason in FAILED_REASONS and (was.get("reason"), was.get("message")) != (reason, message):
            out.append(("Warning", "AdapterFailed", f"{entry['name']}: {reason}: {message}"))
        elif entry.get("ready") and not was.get("ready"):
            out.append(("Normal", "AdapterLoaded", f"{entry['name']}: {message}"))
    return out

