"""Every call the operator makes to the API server itself (kopf makes its own): server-side apply, merge patches
(status, ConfigMap data), watches, Events, the webhook's certificate Secret and caBundle, kopf's peering object.
Through the official kubernetes client; plain dicts in and out (no model classes), one connection pool per process."""

from __future__ import annotations

import base64
import datetime
import functools
import json
import threading
from pathlib import Path
from urllib.parse import quote

import kubernetes
from kubernetes.client import ApiClient, ApiException

from . import certs
from .config import FIELD_MANAGER, GROUP, VERSION
from .keys import PART_OF

_lock = threading.Lock()
USER_AGENT = "modelplane-operator"

# kind -> (API prefix, plural) for the kinds the operator writes
_KINDS = {
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments"),
    ("v1", "Service"): ("/api/v1", "services"),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps"),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("/apis/networking.k8s.io/v1", "networkpolicies"),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts"),
    ("rbac.authorization.k8s.io/v1", "Role"): ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    ("keda.sh/v1alpha1", "ScaledObject"): ("/apis/keda.sh/v1alpha1", "scaledobjects"),
    (f"{GROUP}/{VERSION}", "Model"): (f"/apis/{GROUP}/{VERSION}", "models"),
    (f"{GROUP}/{VERSION}", "Agent"): (f"/apis/{GROUP}/{VERSION}", "agents"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"):
        ("/apis/admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations"),
}


@functools.lru_cache(maxsize=1)
def api_client() -> ApiClient:
    """In-cluster credentials when running in a pod, else the local kubeconfig (KUBECONFIG)."""
    with _lock:
        config = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=config)
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(client_configuration=config)
        config.connection_pool_maxsize = 32
        client = ApiClient(config)
        client.user_agent = USER_AGENT  # tells our requests apart in the API server's audit log
        return client


def request(method: str, path: str, body=None, *, query: dict | None = None,
            content_type: str = "application/json") -> dict:
    client = api_client()
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    params = client.param_serialize(method, path, query_params=list((query or {}).items()), header_params=headers,
                                    body=body, auth_settings=["BearerToken"])
    resp = client.call_api(*params)
    resp.read()
    if not 200 <= resp.status <= 299:
        raise ApiException(http_resp=resp)
    return json.loads(resp.data) if resp.data else {}


def watch(path: str, resource_version: str, timeout_seconds: int, query: dict | None = None):
    """Yield the watch events ({type, object}) of a collection from `resource_version`, with bookmarks, until the
    server ends the watch (after about `timeout_seconds`). `query`: more parameters (a labelSelector)."""
    client = api_client()
    query = {**(query or {}), "watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
             "timeoutSeconds": str(timeout_seconds)}
    params = client.param_serialize("GET", path, query_params=list(query.items()),
                                    header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
    resp = client.call_api(*params, _request_timeout=(10, timeout_seconds + 30))
    try:
        if not 200 <= resp.status <= 299:
            resp.read()
            raise ApiException(http_resp=resp)
        buffer = b""
        for chunk in resp.response.stream(64 * 1024):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)
    finally:
        resp.response.release_conn()


def post_event(obj: dict, type_: str, reason: str, message: str) -> None:
    """A core Event about `obj` (a Pod, ...), for `kubectl describe`; from code that runs outside kopf's handlers."""
    meta = obj["metadata"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    event = {"apiVersion": "v1", "kind": "Event",
             "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
             "involvedObject": {"apiVersion": obj.get("apiVersion", "v1"), "kind": obj.get("kind", "Pod"),
                                "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid")},
             "type": type_, "reason": reason, "message": message[:1024], "count": 1,
             "firstTimestamp": now[:19] + "Z", "lastTimestamp": now[:19] + "Z", "eventTime": now,
             "action": reason, "reportingComponent": USER_AGENT, "reportingInstance": USER_AGENT,
             "source": {"component": USER_AGENT}}
    request("POST", f"/api/v1/namespaces/{quote(meta['namespace'])}/events", event)


def object_path(api_version: str, kind: str, namespace: str | None, name: str = "") -> str:
    prefix, plural = _KINDS[(api_version, kind)]
    path = f"{prefix}/namespaces/{quote(namespace)}/{plural}" if namespace else f"{prefix}/{plural}"
    return f"{path}/{quote(name)}" if name else path


def apply(obj: dict) -> dict:
    """Server-side apply with the operator's field manager; force takes back fields someone else changed. Strict: a
    field the API server does not know (another project's CRD of another version) is refused, not dropped."""
    meta = obj["metadata"]
    path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
    return request("PATCH", path, obj, query={"fieldManager": FIELD_MANAGER, "force": "true",
                                              "fieldValidation": "Strict"},
                   content_type="application/apply-patch+yaml")


def merge_patch(obj: dict, patch: dict) -> dict:
    """A JSON merge patch of `obj` (null removes a key, whoever set it)."""
    meta = obj["metadata"]
    path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
    return request("PATCH", path, patch, content_type="application/merge-patch+json")


def patch_status(owner: dict, status: dict) -> dict:
    """Merge-patch the status subresource of a Model or an Agent."""
    meta = owner["metadata"]
    path = object_path(owner.get("apiVersion", f"{GROUP}/{VERSION}"), owner.get("kind", "Model"), meta["namespace"],
                       meta["name"]) + "/status"
    return request("PATCH", path, {"status": status}, content_type="application/merge-patch+json")


WEBHOOK_CN = "modelplane-webhook"


def serving_secret(namespace: str, name: str, sans: list[str], *, now=None,
                   lifetimes: certs.Lifetimes = certs.Lifetimes(),
                   attempts: int = 5) -> tuple[certs.Decision, dict[str, bytes]]:
    """The webhook's certificates as the Secret `name` keeps them (certs.SECRET_KEYS), made or renewed there when due
    (certs.decide), and what was done. Replicas race here: a write names the resourceVersion it read, and a conflict
    (another replica wrote first) means reading again and going on from what that replica wrote."""
    path = f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"
    for _ in range(attempts):
        try:
            secret = request("GET", path)
        except ApiException as e:
            if e.status != 404:
                raise
            secret = None
        data = {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}
        decision, new = certs.rotate(data, WEBHOOK_CN, sans, now, lifetimes)
        if decision.action == certs.KEEP:
            return decision, data
        encoded = {k: base64.b64encode(v).decode() for k, v in new.items()}
        try:
            if secret is None:
                request("POST", f"/api/v1/namespaces/{quote(namespace)}/secrets",
                        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                         "metadata": {"name": name, "namespace": namespace,
                                      "labels": dict(PART_OF)},
                         "data": encoded})
            else:  # the Secret as read (its labels, type and resourceVersion), with the new data
                meta = {k: v for k, v in secret["metadata"].items() if k != "managedFields"}
                request("PUT", path, {**secret, "metadata": meta, "data": encoded})
        except ApiException as e:
            if e.status != 409:  # 409: made or changed by another replica since we read it
                raise
            continue
        return decision, new
    raise RuntimeError(f"secret {namespace}/{name}: still changing under us after {attempts} attempts")


def ensure_serving_secret(namespace: str, name: str, sans: list[str], folder: Path) -> bytes:
    """Keep the webhook's certificates in a Secret (made, or renewed when due: see serving_secret), write the served
    ones to `folder` (certs.SERVED_FILES, never the CA key), and return the CA bundle for the caBundle."""
    _, data = serving_secret(namespace, name, sans)
    certs.write_files(folder, data)
    return data["ca.crt"]


def set_ca_bundle(configuration: str, ca_bundle: str) -> None:
    """Point every webhook of our MutatingWebhookConfiguration at the CA bundle (base64 of PEM, every CA a replica's
    serving certificate may be signed by); reads first and writes only a change."""
    path = f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{quote(configuration)}"
    current = request("GET", path)
    if all((w.get("clientConfig") or {}).get("caBundle") == ca_bundle for w in current["webhooks"]):
        return  # a restart with the same certificate writes nothing
    patch = {"webhooks": [{"name": w["name"], "clientConfig": {"caBundle": ca_bundle}} for w in current["webhooks"]]}
    request("PATCH", path, patch, content_type="application/strategic-merge-patch+json")


def ensure_cluster_peering(name: str) -> None:
    path = f"/apis/kopf.dev/v1/clusterkopfpeerings/{quote(name)}"
    try:
        request("GET", path)
    except ApiException as e:
        if e.status != 404:
            raise
        try:
            request("POST", "/apis/kopf.dev/v1/clusterkopfpeerings",
                    {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}})
        except ApiException as again:
            if again.status != 409:  # another replica made it first
                raise
