"""kopf handlers: thin. Read (from kopf's watch-fed indexes), render (pure), apply what differs, report status.

Level-based and watch-driven: a Model change, a change to one of its children, or a pod event all run the same
`reconcile`, which writes only when the desired state and the observed one disagree.
"""

from __future__ import annotations

import datetime
import logging
import threading

import kopf
from kubernetes.client import ApiException

from . import kube
from .config import FIELD_MANAGER, GROUP, VERSION, Config
from .render import MODEL_LABEL, render_children
from .status import compute_status, pod_summary, status_changed

CONFIG = Config.from_env()
MANAGED = {"app.kubernetes.io/managed-by": FIELD_MANAGER}
log = logging.getLogger("modelplane")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    # kopf's bookkeeping in our own annotations; status belongs to the status computation alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Events in `kubectl describe` are the ones we post on purpose, plus warnings and errors.
    settings.posting.level = logging.WARNING
    settings.batching.worker_limit = 64


# --- indexes: the operator's view of the cluster, kept current by watches --------------------------------------

@kopf.index(GROUP, VERSION, "models")
def model_index(namespace, name, body, **_):
    return {(namespace, name): {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Model",
                                "metadata": dict(body["metadata"]), "spec": dict(body.get("spec") or {}),
                                "status": dict(body.get("status") or {})}}


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
def deployment_index(namespace, name, body, **_):
    return {(namespace, name): dict(body)}


@kopf.index("v1", "services", labels=MANAGED)
def service_index(namespace, name, body, **_):
    return {(namespace, name): dict(body)}


@kopf.index("v1", "pods", labels={MODEL_LABEL: kopf.PRESENT})
def pod_index(namespace, labels, body, **_):
    return {(namespace, labels[MODEL_LABEL]): pod_summary(body)}


# --- reconcile --------------------------------------------------------------------------------------------------

def is_subset(desired, actual) -> bool:
    """True when every field we set has the value we set (the server adds defaults; those are not drift)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(is_subset(v, actual.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (isinstance(actual, list) and len(desired) == len(actual)
                and all(is_subset(d, a) for d, a in zip(desired, actual)))
    return desired == actual


def owned_by(obj: dict, model: dict) -> bool:
    return any(ref.get("uid") == model["metadata"]["uid"] for ref in obj["metadata"].get("ownerReferences") or [])


def _first(index, key):
    return next(iter(index.get(key, [])), None)


def _existing(desired: dict) -> dict | None:
    meta = desired["metadata"]
    try:
        return kube.request("GET", kube.object_path(desired["apiVersion"], desired["kind"], meta["namespace"],
                                                    meta["name"]))
    except ApiException as e:
        if e.status == 404:
            return None
        raise


_locks: dict[tuple[str, str], threading.Lock] = {}


def reconcile(model: dict, deployment_index, service_index, pod_index, *, cause: str = "event") -> None:
    # Events of one Model's children are handled in parallel threads; one at a time per Model, the last to run
    # reads the freshest indexes, so the status it writes is never older than one written before it.
    key = (model["metadata"]["namespace"], model["metadata"]["name"])
    with _locks.setdefault(key, threading.Lock()):  # setdefault is atomic: one lock per Model
        _reconcile(model, deployment_index, service_index, pod_index, cause)


def _reconcile(model: dict, deployment_index, service_index, pod_index, cause: str) -> None:
    ns, name = model["metadata"]["namespace"], model["metadata"]["name"]
    observed = {"Deployment": _first(deployment_index, (ns, name)), "Service": _first(service_index, (ns, name))}
    conflict = None
    for desired in render_children(model, CONFIG):
        kind = desired["kind"]
        actual = observed[kind]
        if actual is None:
            # Not one of ours as far as the watch knows: never take over an object someone else made.
            actual = _existing(desired)
            if actual is not None and not owned_by(actual, model):
                conflict = f"{kind} {ns}/{name} already exists and is not managed by this Model; rename or remove it"
                post(model, "Warning", "NameConflict", conflict)
                continue
        if actual is None or not is_subset(desired, actual):
            verb = "Created" if actual is None else ("Updated" if cause == "update" else "DriftReverted")
            observed[kind] = kube.apply(desired)
            post(model, "Normal", verb, f"{verb} {kind} {name}")
    write_status(model, observed["Deployment"], list(pod_index.get((ns, name), [])), conflict)


def post(model: dict, type_: str, reason: str, message: str) -> None:
    """An Event on the Model for `kubectl describe` (kopf.info would be filtered by posting.level)."""
    kopf.event(model, type=type_, reason=reason, message=message)


# The status this process last wrote, by Model uid. The model index lags behind our own writes; comparing with it
# alone would repeat writes and phase-change Events. After a restart the index (fresh from a list) is the truth.
_written: dict[str, dict] = {}


def write_status(model: dict, deployment, pods, conflict) -> None:
    uid = model["metadata"]["uid"]
    old = _written.get(uid) or model.get("status") or {}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    new = compute_status(model, deployment, pods, CONFIG, now, conflict)
    if not status_changed(old, new):
        return
    ns, name = model["metadata"]["namespace"], model["metadata"]["name"]
    kube.patch_model_status(ns, name, new)
    _written[uid] = model["status"] = new
    if old.get("phase") != new["phase"]:
        ready = new["conditions"][0]
        message = f"{ready['reason']}: {ready['message']}"
        post(model, "Warning" if new["phase"] == "Failed" else "Normal", new["phase"], message)
    sched = new["conditions"][2]
    old_sched = next((c for c in old.get("conditions") or [] if c.get("type") == "Scheduled"), {})
    if sched["status"] == "False" and old_sched.get("message") != sched["message"]:
        post(model, "Warning", "Unschedulable", sched["message"])


@kopf.on.resume(GROUP, VERSION, "models", backoff=5)
@kopf.on.create(GROUP, VERSION, "models", backoff=5)
@kopf.on.update(GROUP, VERSION, "models", field="spec", backoff=5)
def model_changed(namespace, name, model_index, deployment_index, service_index, pod_index, body, reason, **_):
    model = _first(model_index, (namespace, name)) or {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Model", "metadata": dict(body["metadata"]),
        "spec": dict(body.get("spec") or {}), "status": dict(body.get("status") or {})}
    model = {**model, "metadata": dict(body["metadata"]), "spec": dict(body.get("spec") or {})}
    reconcile(model, deployment_index, service_index, pod_index, cause=reason)


@kopf.on.delete(GROUP, VERSION, "models", optional=True)  # optional: no finalizer, deletion is never held up
def model_deleted(uid, namespace, name, **_):
    _written.pop(uid, None)
    _locks.pop((namespace, name), None)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("v1", "services", labels=MANAGED)
@kopf.on.event("v1", "pods", labels={MODEL_LABEL: kopf.PRESENT})
def child_changed(namespace, labels, model_index, deployment_index, service_index, pod_index, **_):
    model = _first(model_index, (namespace, labels.get(MODEL_LABEL)))
    if model is None or model["metadata"].get("deletionTimestamp"):
        return
    try:
        reconcile(dict(model), deployment_index, service_index, pod_index)
    except ApiException as e:  # event handlers are not retried; the next event or the resume handler will do
        log.warning("reconciling %s/%s after a child event failed: %s", namespace, model["metadata"]["name"],
                    e.reason)
