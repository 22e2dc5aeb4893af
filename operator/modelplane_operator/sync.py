"""Applying a Model's or an Agent's children: plan_child decides (create, update, revert drift, leave alone, or
refuse a name that is someone else's object), server-side apply writes; one reconcile at a time per owner."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import threading

import kopf
from kubernetes.client import ApiException

from . import kube, metrics, quantity
from .status import Problem

_locks: dict[tuple, threading.Lock] = {}
log = logging.getLogger("modelplane")


@contextlib.contextmanager
def reconciling(key: tuple):
    """One reconcile at a time per owner, counted and timed."""
    with lock(key), metrics.RECONCILE_SECONDS.labels(key[0]).time():
        try:
            yield
        except Exception:
            metrics.RECONCILES.labels(key[0], "error").inc()
            raise
        metrics.RECONCILES.labels(key[0], "ok").inc()


def lock(key: tuple) -> threading.Lock:
    # Events of one owner's children are handled in parallel threads; one at a time per owner, the last to run
    # reads the freshest indexes, so the status it writes is never older than one written before it.
    return _locks.setdefault(key, threading.Lock())  # setdefault is atomic


def forget(key: tuple, uid: str) -> None:
    _locks.pop(key, None)
    _last_problem.pop(uid, None)


def apply_if_differs(desired: dict) -> None:
    """For objects outside the watches (the webhook configuration): read, and write only what changed."""
    actual = existing(desired)
    if actual is None or differs(desired, actual):
        kube.apply(desired)


def first(index, key):
    return next(iter(index.get(key, [])), None)


# Where the API server stores quantities in canonical form (cpu: 1000m comes back as "1", memory: 1.5Gi as
# "1536Mi"): every value of a resources' requests or limits, and an emptyDir's sizeLimit.
QUANTITY_MAPS = ("requests", "limits")
QUANTITY_FIELDS = ("sizeLimit",)


def is_subset(desired, actual, quantities: bool = False) -> bool:
    """True when every field we set has the value we set (the server adds defaults; those are not drift).
    Quantities are compared as amounts, however the server writes them back; `quantities`: desired is a map of them."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            quantity.equal(v, actual.get(k))
            if (quantities or k in QUANTITY_FIELDS) and not isinstance(v, (dict, list))
            else is_subset(v, actual.get(k), k in QUANTITY_MAPS)
            for k, v in desired.items())
    if isinstance(desired, list):
        return (isinstance(actual, list) and len(desired) == len(actual)
                and all(is_subset(d, a) for d, a in zip(desired, actual)))
    return desired == actual


def differs(desired: dict, actual: dict) -> bool:
    """Drift: a field we set has another value, or (for ConfigMaps) the data holds keys we no longer write."""
    if not is_subset(desired, actual):
        return True
    return "data" in desired and (actual.get("data") or {}) != desired["data"]


def controlled_by(obj: dict, owner: dict) -> bool:
    """The owner's controller reference is on `obj`: it is ours to write (the uid, not the name, decides)."""
    return any(ref.get("controller") and ref.get("uid") == owner["metadata"]["uid"]
               for ref in obj["metadata"].get("ownerReferences") or [])


def existing(desired: dict) -> dict | None:
    meta = desired["metadata"]
    try:
        return kube.request("GET", kube.object_path(desired["apiVersion"], desired["kind"], meta.get("namespace"),
                                                    meta["name"]))
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def post(obj: dict, type_: str, reason: str, message: str) -> None:
    """An Event for `kubectl describe` (kopf.info would be filtered by posting.level)."""
    kopf.event(obj, type=type_, reason=reason, message=message)


def child_key(obj: dict) -> tuple[str, str]:
    """How an owner's children are told apart: kind and name (a routed Model has two Deployments and two Services)."""
    return obj["kind"], obj["metadata"]["name"]


def unwanted(owner: dict, desired: list[dict], observed: dict) -> list[dict]:
    """Pure: the observed children ((kind, name) -> object or None) the owner no longer wants (a NetworkPolicy after
    policies were switched off, a router after routing was) that are the owner's own; someone else's object of that
    name is left alone."""
    wanted = {child_key(child) for child in desired}
    return [obj for key, obj in observed.items()
            if key not in wanted and obj is not None and controlled_by(obj, owner)]


def remove_unwanted(owner: dict, desired: list[dict], observed: dict) -> dict:
    """Delete what `unwanted` names, with one Event for what this call deleted (the index may still show what an
    earlier reconcile deleted); returns `observed` without them."""
    observed = dict(observed)
    removed = []
    for obj in unwanted(owner, desired, observed):
        kind, meta = obj["kind"], obj["metadata"]
        observed[child_key(obj)] = None
        try:
            kube.request("DELETE", kube.object_path(obj["apiVersion"], kind, meta["namespace"], meta["name"]),
                         body={"preconditions": {"uid": meta["uid"]}})
        except ApiException as e:
            if e.status in (404, 409):  # gone already (an earlier reconcile), or another object of that name now
                continue
            raise
        metrics.APPLIES.labels(kind, "Deleted").inc()
        removed.append(f"{kind} {meta['name']}")
    if removed:
        post(owner, "Normal", "Deleted", f"Deleted {', '.join(removed)}: no longer wanted")
    return observed


def sync_children(owner: dict, desired: list[dict], observed: dict, cause: str) -> tuple[dict, Problem | None]:
    """Apply each desired child that is missing or differs from `observed` ((kind, name) -> object from the watches).
    Returns the children as they now are, and the last Problem met (a name taken by someone else's object, or a
    child the API server refused), which is also posted as a Warning Event when it is new.
    The children are independent objects: they are read and written in parallel, so a new Model's Deployment and
    Service cost one round trip of waiting, not two."""
    observed = dict(observed)
    problems = []
    applied: dict[str, list[str]] = {}  # verb -> "Kind name": one Event per verb, not one per child
    later = [c for c in desired if c["kind"] in SECOND]
    first = [c for c in desired if c["kind"] not in SECOND]
    results = [r for wave in (first, later) for r in _CHILDREN.map(
        lambda child: sync_child(owner, child, observed.get(child_key(child)), cause), wave)]
    for child, (now, verb, problem) in zip(first + later, results):
        kind, name = child_key(child)
        observed[kind, name] = now
        if problem:
            problems.append(problem)
        if verb:
            metrics.APPLIES.labels(kind, verb).inc()
            applied.setdefault(verb, []).append(f"{kind} {name}")
    for verb, children in applied.items():
        # Not for a new owner's children (what its author asked for), an Agent following its Model (routine) nor a
        # count the autoscaler changed (its own Event says why): status shows them.
        if verb != "Created" and cause not in ("model", "autoscale"):
            post(owner, "Normal", verb, f"{verb} {', '.join(children)}")
    uid = owner["metadata"]["uid"]
    if problems and _last_problem.get(uid) != problems[-1]:
        post(owner, "Warning", problems[-1].reason, problems[-1].message)
    _last_problem[uid] = problems[-1] if problems else None
    return observed, (problems[-1] if problems else None)


# Written once the rest exist: the API server resolves a RoleBinding's Role to check that whoever binds it holds its
# permissions (the operator has no `bind` verb), so a RoleBinding sent beside its new Role is refused as not found.
SECOND = {"RoleBinding"}
_last_problem: dict[str, Problem | None] = {}  # owner uid -> the Problem last posted, so a retry does not repeat it
# Leaf tasks only (they never wait on other tasks of this pool), so it cannot deadlock however busy it is.
_CHILDREN = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="children")
# Writes the API server refuses for what they are (invalid, forbidden): the same write would be refused again.
REFUSALS = {400, 403, 404, 422}


def plan_child(owner: dict, child: dict, actual: dict | None, spec_changed: bool) -> tuple[str | None,
                                                                                         Problem | None]:
    """Pure: what to do with one desired child, given the object that now holds its name (or None).
    (verb to write it with, or None to leave it; a Problem when its name is someone else's object.)"""
    if actual is not None and not controlled_by(actual, owner):
        meta = child["metadata"]
        return None, Problem("NameConflict", f"{child['kind']} {meta['namespace']}/{meta['name']} already exists and "
                                             f"is not managed by this {owner.get('kind', 'Model')}; rename or "
                                             "remove it")
    if actual is None:
        return "Created", None
    if differs(child, actual):
        return ("Updated" if spec_changed else "DriftReverted"), None
    return None, None


def sync_child(owner: dict, child: dict, actual: dict | None, cause: str) -> tuple[dict | None, str | None,
                                                                                    Problem | None]:
    """(the child as it now is, the verb if it was written, a Problem if it could not be)."""
    if actual is None:
        actual = existing(child)  # unknown to the watches: is the name free?
    verb, problem = plan_child(owner, child, actual, spec_changed=cause in ("update", "model", "autoscale"))
    if verb is None:
        return (None if problem else actual), None, problem
    try:
        return write(child), verb, None
    except ApiException as e:
        if e.status not in REFUSALS:
            raise  # the API server or the network: kopf retries
        meta = child["metadata"]
        return actual, None, Problem("ChildRefused", f"{child['kind']} {meta['namespace']}/{meta['name']} was "
                                                     f"refused: {api_message(e)}")


def write(child: dict) -> dict:
    """Server-side apply; a ConfigMap also loses data keys someone else added (apply never removes fields it does
    not own, and the data of our ConfigMaps is ours whole)."""
    now = kube.apply(child)
    extra = sorted(set(now.get("data") or {}) - set(child["data"])) if "data" in child else []
    return kube.merge_patch(child, {"data": {key: None for key in extra}}) if extra else now


def api_message(e: ApiException) -> str:
    """The API server's own words from a failed request (its Status message), else the HTTP reason."""
    try:
        return json.loads(e.body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(e.reason)
