"""kopf handlers: thin. Read (from the operator's stores), render (pure), apply what differs, report status.

Level-based and watch-driven: a change to a Model or an Agent (kopf's events), to one of their children (the stores'
events, see childevents.py), or to a Model an Agent uses, all run the same reconcile for the owner concerned, which
writes only when desired and observed disagree.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextvars
import datetime
import json
import logging
import threading
from pathlib import Path
from typing import Callable

import kopf
from kubernetes.client import ApiException

from . import adapters, autoscale, autoscaler, childevents, engine, fleet, kube, metrics, peering, sync, webhookcert
from . import inject, podget, readiness
from .retries import Retries
from .store import PAGE, Index, Store
from .statuswriter import StatusWriter
from .unconfigured import Reporter
from .worklist import Worklist
from .agent import (NAMESPACE_CONFIGMAP, agent_status, audiences, configmaps_to_rebuild, namespace_configmap,
                    render_agent_children, resolve)
from .config import GROUP, VERSION, Config
from .keys import MANAGED, MODEL_LABEL
from .model import spec_of
from .render import child_keys, render_children, server_replicas
from .routing import router_name
from .keda import API_VERSION as KEDA_API, keda_of
from .status import Problem, compute_status, phase_event_due, pod_summary

# Set by install(), from main, before kopf runs: the typed settings and what depends on them.
CONFIG = Config()
PEERING: tuple[str, str, int] | None = None  # (peering name, this replica's identity, priority) when replicas peer
FLEET = fleet.RolloutSlots(CONFIG.upgrade_rollouts_at_once)
STATUS = StatusWriter()
AGENT_FANOUT = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="agent-fanout")
WATCHED: list[str] = []
EXCLUDED: set[str] = set()
UNCONFIGURED = Reporter(lambda key: lookup_model(key), EXCLUDED, WATCHED)
# The webhook's one write (creating a namespace's ConfigMap) runs here, off the admission path.
CONFIGMAP_WRITER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="configmap-writer")
RETRY_FIRST, RETRY_MAX = 5, 300  # seconds: a change handler's retries wait 5, 10, 20, ... 300
log = logging.getLogger("modelplane")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    for kind in childevents.CHILD_KINDS:  # once each: owners_of finds both a Model's and an Agent's Deployment
        STORES[kind].listen(child_event)
    for store in STORES.values():
        store.start()
    # kopf's bookkeeping in our own annotations; status belongs to the status computation alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = AgentsOnlyDiffBase(prefix=GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Events in `kubectl describe` are the ones we post on purpose, plus warnings and errors.
    settings.posting.level = logging.WARNING
    # A replica that dies without saying goodbye is forgotten after this long, and a standby takes over.
    settings.peering.lifetime = 20
    settings.watching.chunk_size = PAGE  # kopf's first lists in pages too: a whole list parsed at once is a peak
    if CONFIG.metrics_port:
        metrics.serve(CONFIG.metrics_port)
    if CONFIG.webhook_port:
        serve_webhook(settings)
    if CONFIG.readiness_port:
        readiness.serve(CONFIG.readiness_port,
                        lambda: not CONFIG.webhook_port or STORES["Model"].synced.is_set())
    if settings.peering.name and not settings.peering.standalone:
        # kopf needs its peering object to exist; a chart cannot ship it beside its CRD, so the operator makes it.
        kube.ensure_cluster_peering(settings.peering.name)
    # The stores have listed everything before kopf's watches start: the first reconciles see every child and pod.
    for store in STORES.values():
        while not store.synced.wait(30):
            log.warning("still listing %s", store.name)


class AgentsOnlyDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf builds a diff base (a deep copy of the object) for every event of every resource, but only Agents have
    change handlers that use one: for the rest, an empty one, and an annotation an older operator left is not read."""

    def build(self, *, body, extra_fields=None):
        return super().build(body=body, extra_fields=extra_fields) if body.get("kind") == "Agent" else {}

    def fetch(self, *, body):
        return super().fetch(body=body) if body.get("kind") == "Agent" else None


# What the API server sends the stores' watches: the operator's own children and its Models' pods. Without these,
# every Pod and ConfigMap of the cluster would be listed, watched and held in memory; with them, unrelated objects
# cost the operator nothing.
WATCH_SELECTORS = {("apps", "v1", "deployments"): MANAGED, ("v1", "services"): MANAGED,
                   ("v1", "configmaps"): MANAGED, ("networking.k8s.io", "v1", "networkpolicies"): MANAGED,
                   ("v1", "serviceaccounts"): MANAGED, ("rbac.authorization.k8s.io", "v1", "roles"): MANAGED,
                   ("rbac.authorization.k8s.io", "v1", "rolebindings"): MANAGED,
                   ("v1", "pods"): {MODEL_LABEL: None}}


def label_selector(labels: dict) -> str:
    """`{key: value}` as `key=value`, `{key: None}` as `key` (the label exists)."""
    return ",".join(key if value is None else f"{key}={value}" for key, value in sorted(labels.items()))


def serve_webhook(settings: kopf.OperatorSettings) -> None:
    folder = Path(CONFIG.webhook_cert_dir)
    port = CONFIG.webhook_port
    url = f"https://{CONFIG.webhook_host}:{port}{inject.WEBHOOK_PATH}"

    def publish(ca: bytes) -> None:
        """The CA bundle where the API server reads it: at start, and (with the operator's own certificates) again
        after every check of them."""
        ca_bundle = base64.b64encode(ca).decode()
        if CONFIG.webhook_configure:
            sync.apply_if_differs(inject.webhook_configuration({"url": url, "caBundle": ca_bundle},
                                                               failure_policy=CONFIG.webhook_failure_policy,
                                                               excluded_namespaces=tuple(EXCLUDED),
                                                               watched_namespaces=tuple(WATCHED)))
        elif CONFIG.webhook_configuration and CONFIG.webhook_cert_source != "files":
            kube.set_ca_bundle(CONFIG.webhook_configuration, ca_bundle)

    where = {"addr": CONFIG.webhook_listen, "port": port, "host": CONFIG.webhook_host}
    if CONFIG.webhook_cert_source == "files" and not CONFIG.webhook_cert_secret:
        # Provided files (cert-manager's Secret, mounted): loaded again in place when they change.
        ca = (folder / "ca.crt").read_bytes()
        settings.admission.server = webhookcert.ReloadingWebhookServer(
            **where, certfile=folder / "tls.crt", pkeyfile=folder / "tls.key", cadata=ca)
        publish(ca)
    else:
        # The operator's own certificates, in the Secret the replicas share (or the folder of a local run): renewed
        # before they expire, reloaded in place, the bundle kept current (webhookcert.CertKeeper).
        secret = (CONFIG.namespace, CONFIG.webhook_cert_secret) if CONFIG.webhook_cert_secret else None
        keeper = webhookcert.CertKeeper(folder, [CONFIG.webhook_host], secret=secret, publish=publish)
        keeper.start()
        settings.admission.server = keeper.server(**where)
    if CONFIG.webhook_configure:
        log.info("webhook configuration points at %s", url)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshot(kind: str, body) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": slim_metadata(body),
            "spec": dict(body.get("spec") or {}), "status": dict(body.get("status") or {})}


def slim(body) -> dict:
    """An object as the indexes keep it: without managedFields, which no reconcile reads and which are a large part
    of each object kept."""
    return {**body, "metadata": slim_metadata(body)}


def slim_metadata(body) -> dict:
    return {k: v for k, v in body["metadata"].items() if k != "managedFields"}


def latest(kind: str, index, key, body) -> dict:
    """The owner as the handler's body has it (newest metadata and spec), with the status the index last saw."""
    known = sync.first(index, key) or snapshot(kind, body)
    return {**known, "metadata": dict(body["metadata"]), "spec": dict(body.get("spec") or {})}


# --- stores: the operator's view of the cluster (see store.py) ------------------------------------------------
# Each index maps a key to the values objects gave for it (a list, usually of one): sync.first() takes that one.
Key = tuple[str, str]  # (namespace, name)


def _key(obj: dict) -> Key:
    return obj["metadata"].get("namespace"), obj["metadata"]["name"]


def _by_name(obj: dict) -> dict[Key, dict]:
    return {_key(obj): slim(obj)}


def model_entry(obj: dict) -> dict[Key, dict]:
    return {_key(obj): snapshot("Model", obj)}


def models_by_audience(obj: dict) -> dict[str, Key]:
    """A namespace (or "*", all) -> the Models that serve it: a namespace's ConfigMap is rebuilt from its own."""
    return {audience: _key(obj) for audience in audiences(obj)}


def agent_entry(obj: dict) -> dict[Key, dict]:
    return {_key(obj): snapshot("Agent", obj)}


def agents_by_model(obj: dict) -> dict[Key, Key]:
    """(model namespace, model name) -> the Agents that reference it, for live updates."""
    namespace = obj["metadata"]["namespace"]
    return {((ref.get("namespace") or namespace), ref["name"]): _key(obj)
            for ref in (obj.get("spec") or {}).get("models") or []}


def pod_entry(obj: dict) -> dict[Key, dict]:
    return {(obj["metadata"]["namespace"], obj["metadata"]["labels"][MODEL_LABEL]): pod_summary(obj)}


def collection(prefix: str, plural: str) -> Callable[[str | None], str]:
    return lambda namespace: f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"


def make_stores(namespaces: list[str]) -> dict[str, Store]:
    """Every kind the operator reads, label-selected on the server (WATCH_SELECTORS); with peering, the peering
    object too (whether this replica acts)."""
    own, core, apps = f"/apis/{GROUP}/{VERSION}", "/api/v1", "/apis/apps/v1"
    net, rbac = "/apis/networking.k8s.io/v1", "/apis/rbac.authorization.k8s.io/v1"

    def make(name, prefix, plural, indexes, resource=None):
        selector = label_selector(WATCH_SELECTORS[resource]) if resource else ""
        return Store(name, collection(prefix, plural), indexes, selector=selector, namespaces=namespaces)
    return {"Model": make("models", own, "models", {"name": model_entry, "audience": models_by_audience}),
            "Agent": make("agents", own, "agents", {"name": agent_entry, "model": agents_by_model}),
            "Deployment": make("deployments", apps, "deployments", {"name": _by_name}, ("apps", "v1", "deployments")),
            "Service": make("services", core, "services", {"name": _by_name}, ("v1", "services")),
            # watched whether policies are on or off: switched off, the ones written before are found and deleted
            "NetworkPolicy": make("networkpolicies", net, "networkpolicies", {"name": _by_name},
                                  ("networking.k8s.io", "v1", "networkpolicies")),
            "ConfigMap": make("configmaps", core, "configmaps", {"name": _by_name}, ("v1", "configmaps")),
            # a routed Model's router identity (only routed Models have one)
            "ServiceAccount": make("serviceaccounts", core, "serviceaccounts", {"name": _by_name},
                                   ("v1", "serviceaccounts")),
            "Role": make("roles", rbac, "roles", {"name": _by_name}, ("rbac.authorization.k8s.io", "v1", "roles")),
            "RoleBinding": make("rolebindings", rbac, "rolebindings", {"name": _by_name},
                                ("rbac.authorization.k8s.io", "v1", "rolebindings")),
            "Pod": make("pods", core, "pods", {"model": pod_entry}, ("v1", "pods")),
            **({"Peering": make("kopfpeerings" if namespaces else "clusterkopfpeerings", "/apis/kopf.dev/v1",
                                "kopfpeerings" if namespaces else "clusterkopfpeerings", {"name": _by_name})}
               if PEERING else {})}


STORES = make_stores([])


def index(kind: str, name: str = "name") -> Index:
    return STORES[kind][name]


def lookup_model(key: Key) -> dict | None:
    """Admissions read Models from their store too: it lists and watches in every replica, a standby included, and
    `/readyz` says ready once it has listed (kopf's view is frozen in a standby)."""
    return sync.first(index("Model"), key)


def observed_children(namespace: str, keys: list[tuple[str, str]]) -> dict:
    """(kind, name) -> the object of that name in its store, or None."""
    return {(kind, name): sync.first(index(kind), (namespace, name)) for kind, name in keys}


def offer(type: str | None, body) -> None:
    """An object from kopf's event: into its store (kopf's watch and the store's may be apart; the newer wins)."""
    store = STORES[body["kind"]]
    if type == "DELETED":
        store.remove(body)
    else:
        store.offer(dict(body))


# --- Models -----------------------------------------------------------------------------------------------------

def reconcile_model(model: dict, cause: str | None = None) -> Problem | None:
    """`cause` "autoscale": the autoscaler changed the replica count (its own Event says so)."""
    ns, name = model["metadata"]["namespace"], model["metadata"]["name"]
    with sync.reconciling(("Model", ns, name)):
        # A status computed from an older generation: the spec changed since (children differing are Updated, not
        # drift reverted).
        reported = STATUS.previous(model).get("observedGeneration")
        cause = cause or ("update" if reported not in (None, model["metadata"].get("generation")) else "event")
        observed = observed_children(ns, child_keys(name))
        if keda_of(model) or ((model.get("status") or {}).get("autoscaling") or {}).get("scaledObject"):
            observed[("ScaledObject", name)] = sync.existing({"apiVersion": KEDA_API, "kind": "ScaledObject",
                                                             "metadata": {"namespace": ns, "name": name}})
        desired = rendered = render_children(model, CONFIG)
        desired[0] = fleet.stamp(desired[0])
        uid = model["metadata"]["uid"]
        server = ("Deployment", name)
        changed = fleet.operator_changed(observed[server], desired[0])
        held = changed and not FLEET.admit(uid, (ns, name))
        if not changed:
            FLEET.leave_line(uid)  # its spec changed meanwhile, and that rolls it anyway
        if held:  # the operator changed, not the Model: leave its Deployment until a slot frees
            desired = desired[1:]
        observed, problem = sync.sync_children(model, desired, observed, cause)
        observed = sync.remove_unwanted(model, rendered, observed)
        report_ignored_engine_args(model)
        pods = list(index("Pod", "model").get((ns, name), []))
        note_read(("Model", ns, name), observed, pods)
        new = compute_status(model, observed[server], pods, CONFIG, now(), problem,
                             router=observed[("Deployment", router_name(name))])
        _tried[uid] = model["metadata"].get("generation")
        if not problem:
            _applied[uid] = model["metadata"].get("generation")
        if held:
            new = fleet.waiting_status(new, FLEET.waiting(uid), CONFIG.upgrade_rollouts_at_once)
        elif fleet.settled(new):
            roll_next_in_line(uid)
        # What a person acts on is written at once, and so is reaching Ready, and any new phase unless the writer is
        # busy (a burst); the rest is spaced (see statuswriter), so that under load a new Model that passes through
        # Pending and Loading to Ready within its first seconds costs one write, made when it is Ready.
        was = STATUS.previous(model).get("phase")
        urgent = (bool(problem) or phase_event_due(was, new["phase"], been_ready(model))
                  or (was != new["phase"] and (new["phase"] == "Ready" or not STATUS.busy())))
        STATUS.publish(model, new, write_model_status, urgent=urgent)
        return problem


_ignored_reported: dict[str, list[str]] = {}  # Model uid -> the ignored engineArgs last reported


# Owner -> the resourceVersions of the children and pods its last reconcile read. An event about a version it has
# read brings nothing new (the listing at start, the echo of the operator's own writes) and reconciles nothing: on
# a restart with 1000 Models each is reconciled once, by its resume handler, not once more per child.
_read_versions: dict[tuple, set[str]] = {}


def note_read(owner: tuple, observed: dict, pods: list[dict] = ()) -> None:
    _read_versions[owner] = ({o["metadata"].get("resourceVersion") for o in observed.values() if o}
                             | {p.get("version") for p in pods})


def already_read(owner: tuple, type: str | None, body) -> bool:
    """A deletion always counts (the object is gone from the index); any other event only with a version the owner's
    last reconcile has not read."""
    return type != "DELETED" and body["metadata"].get("resourceVersion") in _read_versions.get(owner, ())


def report_ignored_engine_args(model: dict) -> None:
    """A Model stored under an older schema may set engineArgs this vLLM lacks or the operator now refuses: they are
    left out of the command line (not a crash), and a Warning Event says which, once per change."""
    ignored = engine.ignored_engine_args(spec_of(model))
    uid = model["metadata"]["uid"]
    if ignored and _ignored_reported.get(uid) != ignored:
        sync.post(model, "Warning", "IgnoredEngineArgs", f"engineArgs {', '.join(ignored)} left out: not options of "
                  "this vLLM, or refused by the operator; remove them from the spec")
    _ignored_reported[uid] = ignored


_been_ready: set[str] = set()  # uids of the Models this process saw Ready


def been_ready(model: dict) -> bool:
    return model["metadata"]["uid"] in _been_ready or (model.get("status") or {}).get("phase") == "Ready"


def write_model_status(model: dict, old: dict, new: dict) -> None:
    """Write `new` and post the Events that its change from `old` calls for."""
    kube.patch_status(model, new)
    was_ready = been_ready(model) or old.get("phase") == "Ready"
    if new["phase"] == "Ready":
        _been_ready.add(model["metadata"]["uid"])
    if phase_event_due(old.get("phase"), new["phase"], was_ready):
        ready = condition_of(new, "Ready")
        sync.post(model, "Warning" if new["phase"] == "Failed" else "Normal", new["phase"],
                  f"{ready['reason']}: {ready['message']}")
    sched, old_sched = condition_of(new, "Scheduled"), condition_of(old, "Scheduled")
    if sched.get("status") == "False" and old_sched.get("message") != sched["message"]:
        sync.post(model, "Warning", "Unschedulable", sched["message"])


def condition_of(status: dict, type_: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


# Models have no kopf change handlers: those keep the last handled spec in an annotation, one more write per change,
# while the generation already says what changed. A Model is reconciled when this process has not yet applied its
# generation (created, changed, or first seen since the start), when a child or pod of it changes, and when a retry
# after a problem is due.
_applied: dict[str, int] = {}  # Model uid -> the generation whose children this process applied without a problem
_tried: dict[str, int] = {}  # Model uid -> the generation last reconciled, with or without a problem
RETRIES = Retries(RETRY_FIRST, RETRY_MAX)


@kopf.on.event(GROUP, VERSION, "models")
def model_event(type, body, uid, namespace, name, **_):
    """One handler for every Model event (each handler costs kopf some work per event): the Model's own reconcile,
    the namespace ConfigMaps of the pods it serves, and the Agents that use it."""
    meta = body["metadata"]
    offer(type, body)
    let_child_events_flow()
    if type == "DELETED":
        forget_owner("Model", namespace, name, uid)
    elif not meta.get("deletionTimestamp") and _applied.get(uid) != meta.get("generation"):
        # a generation that met a problem waits for its retry (the status written about it is an event too)
        if not (RETRIES.waiting((namespace, name)) and _tried.get(uid) == meta.get("generation")):
            reconcile_model_at((namespace, name))
    model_seen_by_injected_pods(type, namespace, name, body)
    model_seen_by_agents(namespace, name)


def reconcile_model_at(key: Key, cause: str | None = None) -> None:
    """Reconcile the Model at `key` as the index has it; after a problem (status says which) or a failed request,
    again later, waiting longer each time (RETRY_FIRST seconds, doubling up to RETRY_MAX)."""
    model = sync.first(index("Model"), key)
    if model is None or model["metadata"].get("deletionTimestamp"):
        RETRIES.clear(key)
        return
    try:
        problem = reconcile_model(dict(model), cause)
        why = problem and f"{problem.reason}: {problem.message}"
    except ApiException as e:
        why = f"API request failed ({e.status} {e.reason})"
    if why:
        delay = RETRIES.schedule(key, lambda: reconcile_model_at(key))
        log.warning("Model %s/%s: %s; retrying in %ss", *key, why, delay)
    else:
        RETRIES.clear(key)


@kopf.timer(GROUP, VERSION, "models", interval=autoscaler.INTERVAL,
            when=lambda spec, **_: bool(autoscale.in_process(spec)))
def autoscale_model(namespace, name, **_):
    """A Model with spec.autoscaling, every INTERVAL seconds (kopf's timers pause with the rest in a standby): its
    replicas' load, the rule's decision into status.autoscaling, and a new count rendered into its Deployment."""
    model = lookup_model((namespace, name))
    if model is None or model["metadata"].get("deletionTimestamp"):
        return
    current = server_replicas(model)
    decision, taken = autoscaler.look(model, list(index("Pod", "model").get((namespace, name), [])), current)
    was = (model.get("status") or {}).get("autoscaling") or {}
    if (was.get("desiredReplicas"), was.get("reason")) == (decision.replicas, decision.reason):
        return  # nothing new to say: the load figure alone is not worth a write every few seconds
    scaled = decision.replicas != current
    unknown = decision.reason == "MetricsUnavailable"
    status = {"metric": spec_of(model)["autoscaling"]["metric"],
              "load": None if unknown else taken.load if taken else was.get("load"),
              "desiredReplicas": decision.replicas, "reason": decision.reason, "message": decision.message,
              "lastScaleTime": now() if scaled else was.get("lastScaleTime"), "scaledObject": None}
    offer("MODIFIED", kube.patch_status(model, {"autoscaling": status}))
    if unknown:
        sync.post(model, "Warning", decision.reason, decision.message)
    if scaled:
        sync.post(model, "Normal", decision.reason, f"{current} -> {decision.replicas} replicas: {decision.message}")
        reconcile_model_at((namespace, name), cause="autoscale")


ADAPTERS_INTERVAL = 5.0  # seconds between two looks at a Model's loaders


@kopf.timer(GROUP, VERSION, "models", interval=ADAPTERS_INTERVAL,
            when=lambda spec, status, **_: bool(spec.get("adapters") or status.get("adapters")))
def look_at_adapters(namespace, name, **_):
    """A Model with LoRA adapters (or whose status still lists some), every ADAPTERS_INTERVAL seconds: what each
    ready replica's loader reports, into status.adapters, with an Event when an adapter fails or becomes ready."""
    model = lookup_model((namespace, name))
    if model is None or model["metadata"].get("deletionTimestamp"):
        return
    pods = podget.serving(list(index("Pod", "model").get((namespace, name), [])))
    reports = [json_or_none(text) for text in podget.get_all(
        [f"http://{pod['ip']}:{adapters.LOADER_PORT}/adapters" for pod in pods if pod.get("ip")])]
    was = (model.get("status") or {}).get("adapters") or []
    new = adapters.adapter_status(spec_of(model), reports)
    if new == was:
        return
    offer("MODIFIED", kube.patch_status(model, {"adapters": new or None}))
    for type_, reason, message in adapters.events(was, new):
        sync.post(model, type_, reason, message)


def json_or_none(text: str | None) -> dict | None:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def retry_on_problem(retry: int, reconcile, *args, **kwargs) -> None:
    """Run a change handler's reconcile; when the API server fails or refuses a child, status already says so, and
    kopf tries again later, waiting longer each time (RETRY_FIRST seconds, doubling up to RETRY_MAX)."""
    delay = min(RETRY_MAX, RETRY_FIRST * 2 ** retry)
    try:
        problem = reconcile(*args, **kwargs)
    except ApiException as e:
        raise kopf.TemporaryError(f"API request failed ({e.status} {e.reason}); retrying in {delay}s",
                                  delay=delay) from e
    if problem:
        raise kopf.TemporaryError(f"{problem.reason}: {problem.message}; retrying in {delay}s", delay=delay)


@kopf.on.delete(GROUP, VERSION, "agents", optional=True)  # optional: no finalizer, deletion is never held up
def owner_deleted(uid, namespace, name, resource, **_):
    forget_owner(resource.kind, namespace, name, uid)


def forget_owner(kind: str, namespace: str, name: str, uid: str) -> None:
    """What the operator kept for a deleted Model or Agent goes, and an upgrade slot it held goes to the next."""
    sync.forget((kind, namespace, name), uid)
    _read_versions.pop((kind, namespace, name), None)
    _applied.pop(uid, None)
    _tried.pop(uid, None)
    _been_ready.discard(uid)
    if kind == "Model":
        RETRIES.clear((namespace, name))
        autoscaler.forget(uid)
    STATUS.forget(uid)
    _ignored_reported.pop(uid, None)
    roll_next_in_line(uid)


def roll_next_in_line(uid: str) -> None:
    """`uid` no longer holds an upgrade slot: reconcile the Models that take the freed slots, off the caller's
    thread (it may hold an owner's lock)."""
    for key in FLEET.release(uid):
        AGENT_FANOUT.submit(contextvars.copy_context().run, reconcile_model_at, key)


def child_event(type_: str, obj: dict) -> None:
    """A store saw a child or pod change (on its watch thread): mark the owner for a reconcile, unless its last
    reconcile read this very version (the echo of the operator's own write) or this replica is a standby."""
    if not CHILD_EVENTS_FLOWING.is_set() or not acting():
        return
    for owner in childevents.owners_of(obj):
        if owner[0] == "Namespace":
            NAMESPACE_CONFIGMAPS.mark([owner[1]])
        elif not already_read(owner, type_, obj):
            CHILD_EVENTS.mark(owner)


def reconcile_owner(owner: childevents.Owner) -> None:
    kind, namespace, name = owner
    if kind == "Model":
        reconcile_model_at((namespace, name))
    else:
        reconcile_owner_of_event(index("Agent"), (namespace, name), reconcile_agent, index("Model"))


CHILD_EVENTS = childevents.OwnerRunner(reconcile_owner)
CHILD_EVENTS_FLOWING = threading.Event()


def let_child_events_flow() -> None:
    """From kopf's first Model or Agent event on, children's events reconcile their owners, in a copy of that
    event's context: kopf sets what posting Events needs (its queue and loop) per object task, not at start-up.
    What changed before is read by the first reconcile of each Model and Agent, which kopf's listing starts."""
    if not CHILD_EVENTS_FLOWING.is_set():
        CHILD_EVENTS.context = contextvars.copy_context()
        CHILD_EVENTS_FLOWING.set()


def acting() -> bool:
    """Standalone, always; with peering, by kopf's rule read from the peering object(s) (kopf pauses only its own
    watches, and child events come from the stores)."""
    if PEERING is None:
        return True
    name, me, priority = PEERING
    at = datetime.datetime.now(datetime.timezone.utc)
    return all(peering.acting(obj.get("status") or {}, me, priority, at)
               for obj in index("Peering").values() if obj["metadata"]["name"] == name)


def reconcile_owner_of_event(index, key, reconcile, *indexes, **kwargs) -> None:
    """Reconcile the owner at `key` after an event about something it depends on. Event handlers are not retried:
    an API error is logged, and the next event (or the resume handler after a restart) catches up."""
    owner = sync.first(index, key)
    if owner is None or owner["metadata"].get("deletionTimestamp"):
        return
    try:
        reconcile(dict(owner), *indexes, **kwargs)
    except ApiException as e:
        log.warning("reconciling %s %s/%s failed: %s", owner.get("kind"), *key, e.reason)


# --- Agents -----------------------------------------------------------------------------------------------------

def reconcile_agent(agent: dict, model_index: Index, cause: str = "event") -> Problem | None:
    ns, name = agent["metadata"]["namespace"], agent["metadata"]["name"]
    with sync.reconciling(("Agent", ns, name)):
        resolved = resolve_models(agent, model_index)
        desired = render_agent_children(agent, resolved, CONFIG)
        observed = observed_children(ns, [sync.child_key(child) for child in desired])
        observed, problem = sync.sync_children(agent, desired, observed, cause)
        note_read(("Agent", ns, name), observed)
        new = agent_status(agent, resolved, observed[("Deployment", name)], CONFIG, now(), problem)
        STATUS.publish(agent, new, write_agent_status, urgent=True)
        return problem


def resolve_models(agent: dict, model_index: Index) -> list:
    return resolve(agent["metadata"]["namespace"], (agent.get("spec") or {}).get("models") or [],
                   lambda key: sync.first(model_index, key))


def reconcile_agent_configmap(agent: dict, model_index: Index, cause: str = "model") -> None:
    """The Agent's existing ConfigMap alone, written if it differs; what was written goes into the store, so the full
    reconcile that follows compares with it, not with an older copy the watch has not brought yet. Creating it, and
    reporting problems, are left to that reconcile."""
    ns, name = agent["metadata"]["namespace"], agent["metadata"]["name"]
    with sync.reconciling(("Agent", ns, name)):
        children = render_agent_children(agent, resolve_models(agent, model_index), CONFIG)
        for child in (c for c in children if c["kind"] == "ConfigMap"):
            actual = sync.first(index("ConfigMap"), (ns, child["metadata"]["name"]))
            if actual is None:
                continue
            now, verb, _ = sync.sync_child(agent, child, actual, cause)
            if verb:
                STORES["ConfigMap"].offer(now)
                metrics.APPLIES.labels("ConfigMap", verb).inc()


def write_agent_status(agent: dict, old: dict, new: dict) -> None:
    kube.patch_status(agent, new)
    ready, was = condition_of(new, "Ready"), condition_of(old, "Ready")
    if (ready["status"], ready["reason"]) != (was.get("status"), was.get("reason")):
        sync.post(agent, "Normal" if ready["status"] == "True" else "Warning", ready["reason"], ready["message"])


@kopf.on.resume(GROUP, VERSION, "agents", backoff=5)
@kopf.on.create(GROUP, VERSION, "agents", backoff=5)
@kopf.on.update(GROUP, VERSION, "agents", field="spec", backoff=5)
def agent_changed(namespace, name, body, reason, retry, **_):
    # agent_event (a watching handler, which kopf runs before change handlers) has offered `body` to its store
    agent = latest("Agent", index("Agent"), (namespace, name), body)
    retry_on_problem(retry, reconcile_agent, agent, index("Model"),
                     cause=str(reason))


@kopf.on.event(GROUP, VERSION, "agents")
def agent_event(type, body, **_):
    offer(type, body)
    let_child_events_flow()


_served: dict[Key, set[str]] = {}  # Model -> the namespaces it served when last seen (to drop it where it no longer does)


def model_seen_by_injected_pods(type, namespace, name, body) -> None:
    """A Model appeared, changed, moved through its phases or went away: the ConfigMaps of the namespaces it serves
    (and served) are marked for a rebuild, which one background thread does, a burst of events costing one write
    per namespace; pods that could not be configured before may be told to restart."""
    if CONFIG.webhook_port:
        UNCONFIGURED.poke()
    serves = set() if type == "DELETED" else audiences(body)
    served = _served.pop((namespace, name), set())
    if serves:
        _served[(namespace, name)] = serves
    if not NAMESPACE_CONFIGMAPS.rounds:  # the first events since start: any ConfigMap may be stale, check them all
        served = {"*"}
    kept = {key[0] for key in index("ConfigMap") if key[1] == NAMESPACE_CONFIGMAP}
    NAMESPACE_CONFIGMAPS.mark(configmaps_to_rebuild(serves, served, kept))


def models_serving(namespace: str) -> list[dict]:
    """Read from the audience index: the cost is the Models that serve `namespace`, not all of them."""
    by_audience, model_index = index("Model", "audience"), index("Model")
    keys = {*by_audience.get(namespace, []), *by_audience.get("*", [])}
    return [m for m in (sync.first(model_index, key) for key in keys) if m is not None]


def rebuild_namespace_configmap(namespace: str) -> None:
    """Write the ConfigMap that injected pods of `namespace` mount, if it differs from the Models serving it. Runs
    in NAMESPACE_CONFIGMAPS' thread; a namespace that is going away refuses, and is not tried again."""
    with sync.lock(("ConfigMap", namespace, NAMESPACE_CONFIGMAP)):
        desired = namespace_configmap(namespace, models_serving(namespace), CONFIG)
        actual = sync.first(index("ConfigMap"), (namespace, NAMESPACE_CONFIGMAP))
        if actual is None or sync.differs(desired, actual):
            try:
                sync.write(desired)
            except ApiException as e:
                if e.status not in sync.REFUSALS:
                    raise  # tried again shortly
                log.info("not writing %s/%s: %s", namespace, NAMESPACE_CONFIGMAP, sync.api_message(e))


NAMESPACE_CONFIGMAPS = Worklist(rebuild_namespace_configmap, "namespace-configmaps")


def model_seen_by_agents(namespace, name) -> None:
    """A Model appeared, changed, moved through its phases or went away: every Agent using it follows, first their
    ConfigMaps (what running agent pods read, updated in place by the kubelet), then the rest (Deployments, whose
    env rolls the pods, and statuses): a hundred Agents' ConfigMaps are not queued behind two hundred other writes."""
    agents = set(index("Agent", "model").get((namespace, name), []))
    version = STORES["Model"].version_of(namespace, name)

    def follow(agent_key, reconcile) -> None:
        # A newer version of the Model has its own event, queued behind this one, whose pass covers every Agent:
        # what this pass has not started yet is left to it, so that its ConfigMaps do not wait behind old work.
        if STORES["Model"].version_of(namespace, name) == version:
            reconcile_owner_of_event(index("Agent"), agent_key, reconcile, index("Model"), cause="model")

    for reconcile in (reconcile_agent_configmap, reconcile_agent):
        # In parallel: each reconcile waits on the API server, and a Model may serve a hundred Agents. Each task
        # gets its own copy of this handler's context, where kopf keeps what posting Events needs.
        tasks = [AGENT_FANOUT.submit(contextvars.copy_context().run, follow, agent_key, reconcile)
                 for agent_key in agents]
        for task in tasks:
            task.result()


# --- injection into any pod (mutating admission webhook) ---------------------------------------------------------

_configmap_made: set[str] = set()  # namespaces whose ConfigMap this process made sure of


def make_namespace_configmap(namespace: str) -> None:
    """Create the namespace's ConfigMap if it is missing, from the (synced) Model cache. Only creating: keeping it in
    step with the Models is the reconcile's job (in the active replica), so replicas never write over each other."""
    if namespace in _configmap_made:
        return
    with sync.lock(("ConfigMap", namespace, NAMESPACE_CONFIGMAP)):
        desired = namespace_configmap(namespace, index("Model").values(), CONFIG)
        if sync.existing(desired) is None:
            kube.apply(desired)
        _configmap_made.add(namespace)


def _log_failure(task: concurrent.futures.Future) -> None:
    if task.exception():
        log.warning("could not make %s: %s", NAMESPACE_CONFIGMAP, task.exception())


async def inject_pod(body, patch, warnings, dryrun, **_):
    """Runs on kopf's event loop, not in the thread pool that reconciles use: memory reads only, so admissions stay
    fast however busy reconciling is."""
    pod = dict(body)
    namespace = body["metadata"].get("namespace")
    if not namespace or (body["metadata"].get("labels") or {}).get(inject.INJECT_LABEL) == "false":
        return
    if not STORES["Model"].synced.is_set():
        # Readiness keeps the webhook Service off this replica until now; a direct call (or a race) still lands.
        patch.metadata.setdefault("annotations", {})[inject.ERROR_ANNOTATION] = inject.NOT_SERVING
        warnings.append(f"modelplane: {inject.NOT_SERVING}; this pod is not configured (re-create it)")
        return
    resolved = inject.requested(pod, namespace, index("Model").values(), lookup_model)
    fields, problems = inject.mutation(pod, resolved, CONFIG)
    patch.spec["containers"] = fields["containers"]
    patch.spec["volumes"] = fields["volumes"]
    for key, value in fields["annotations"].items():
        patch.metadata.setdefault("annotations", {})[key] = value
    warnings.extend(problems)
    if not dryrun:  # sideEffects: NoneOnDryRun
        CONFIGMAP_WRITER.submit(make_namespace_configmap, namespace).add_done_callback(_log_failure)


def install(config: Config, peering_as: tuple[str, str, int] | None = None) -> None:
    """Called once by main before kopf runs: the settings every handler reads, and the admission handler, registered
    only where a webhook is served (kopf refuses to start with admission handlers and no server, and an operator run
    without --webhook-port still reconciles Models and Agents). `peering_as`: (peering name, identity, priority) of
    this replica when replicas peer."""
    global CONFIG, WATCHED, EXCLUDED, UNCONFIGURED, FLEET, STORES, PEERING
    CONFIG, PEERING = config, peering_as
    FLEET = fleet.RolloutSlots(config.upgrade_rollouts_at_once)
    WATCHED = list(config.watch_namespaces)
    STORES = make_stores(WATCHED)
    EXCLUDED = {n for n in [*config.webhook_excluded_namespaces, config.namespace] if n}
    UNCONFIGURED = Reporter(lookup_model, EXCLUDED, WATCHED)
    if config.webhook_port:
        kopf.on.mutate("v1", "pods", id=inject.WEBHOOK_PATH.strip("/"), operations=["CREATE"],
                       ignore_failures=True)(inject_pod)
