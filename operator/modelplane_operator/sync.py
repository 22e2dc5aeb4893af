"""What every reconcile shares: apply the children that differ from what the watches show, never take over an
object someone else made, write status only when it changes, and one reconcile at a time per owner."""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import logging
import math
import threading
import time

import kopf
from kubernetes.client import ApiException

from . import kube, metrics

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
    _written.pop(uid, None)
    _last_write.pop(uid, None)
    _held.pop(uid, None)
    timer = _timers.pop(uid, None)
    if timer:
        timer.cancel()
    metrics.model_phase(uid, None)


def apply_if_differs(desired: dict) -> None:
    """For objects outside the watches (the webhook configuration): read, and write only what changed."""
    actual = existing(desired)
    if actual is None or differs(desired, actual):
        kube.apply(desired)


def first(index, key):
    return next(iter(index.get(key, [])), None)


def is_subset(desired, actual) -> bool:
    """True when every field we set has the value we set (the server adds defaults; those are not drift)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(is_subset(v, actual.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (isinstance(actual, list) and len(desired) == len(actual)
                and all(is_subset(d, a) for d, a in zip(desired, actual)))
    return desired == actual


def differs(desired: dict, actual: dict) -> bool:
    """Drift: a field we set has another value, or (for ConfigMaps) the data holds keys we no longer write."""
    if not is_subset(desired, actual):
        return True
    return "data" in desired and (actual.get("data") or {}) != desired["data"]


def owned_by(obj: dict, owner: dict) -> bool:
    return any(ref.get("uid") == owner["metadata"]["uid"] for ref in obj["metadata"].get("ownerReferences") or [])


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


def sync_children(owner: dict, desired: list[dict], observed: dict, cause: str) -> tuple[dict, str | None]:
    """Apply each desired child that is missing or differs from `observed` (kind -> object from the watches).
    Returns the children as they now are, and a conflict message if a name is taken by someone else's object.
    The children are independent objects: they are read and written in parallel, so a new Model's Deployment and
    Service cost one round trip of waiting, not two."""
    observed = dict(observed)
    conflicts = []
    applied: dict[str, list[str]] = {}  # verb -> "Kind name": one Event per verb, not one per child
    results = _CHILDREN.map(lambda child: _sync_child(owner, child, observed.get(child["kind"]), cause), desired)
    for child, (now, verb, conflict) in zip(desired, list(results)):
        kind, name = child["kind"], child["metadata"]["name"]
        observed[kind] = now
        if conflict:
            conflicts.append(conflict)
            post(owner, "Warning", "NameConflict", conflict)
        if verb:
            metrics.APPLIES.labels(kind, verb).inc()
            applied.setdefault(verb, []).append(f"{kind} {name}")
    for verb, children in applied.items():
        post(owner, "Normal", verb, f"{verb} {', '.join(children)}")
    return observed, (conflicts[-1] if conflicts else None)


# Leaf tasks only (they never wait on other tasks of this pool), so it cannot deadlock however busy it is.
_CHILDREN = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="children")


def _sync_child(owner: dict, child: dict, actual: dict | None, cause: str) -> tuple[dict | None, str | None,
                                                                                    str | None]:
    """(the child as it now is, the verb if it was written, a conflict message if its name is taken)."""
    if actual is None:
        actual = existing(child)  # unknown to the watches: is the name free?
        if actual is not None and not owned_by(actual, owner):
            meta = child["metadata"]
            return None, None, (f"{child['kind']} {meta['namespace']}/{meta['name']} already exists and is not "
                                f"managed by this {owner.get('kind', 'Model')}; rename or remove it")
    if actual is None or differs(child, actual):
        verb = "Created" if actual is None else ("Updated" if cause in ("update", "model") else "DriftReverted")
        return kube.apply(child), verb, None
    return actual, None, None


# The status this process last wrote, by owner uid. Indexes lag behind our own writes; comparing with them alone
# would repeat writes and Events. After a restart the indexes (fresh from a list) are the truth.
_written: dict[str, dict] = {}


def status_to_write(owner: dict, new: dict, changed) -> dict | None:
    """The previous status if `new` must be written (changed(old, new) says so), else None."""
    old = _written.get(owner["metadata"]["uid"]) or owner.get("status") or {}
    return old if changed(old, new) else None


def written(owner: dict, new: dict) -> None:
    uid = owner["metadata"]["uid"]
    _written[uid] = owner["status"] = new
    _last_write[uid] = time.monotonic()
    _held.pop(uid, None)  # whatever waited is older than this
    kind = owner.get("kind", "Model")
    metrics.STATUS_WRITES.labels(kind).inc()
    if kind == "Model":
        metrics.model_phase(owner["metadata"]["uid"], new.get("phase"))


# Routine progress (a pod scheduled, a replica counted) is written at most once per STATUS_INTERVAL per owner: the
# last status computed in the interval is written when it ends. Callers write what a person acts on at once.
STATUS_INTERVAL = 1.0
_last_write: dict[str, float] = {}
_held: dict[str, object] = {}  # uid -> the write waiting for the interval to end
_timers: dict[str, threading.Timer] = {}


def hold(key: tuple, uid: str, publish) -> bool:
    """True when `publish` (a status write) must wait because this owner's status was written less than
    STATUS_INTERVAL ago; it then runs when the interval ends, unless a newer write or hold replaced it.
    Called under the owner's lock."""
    wait = _last_write.get(uid, -math.inf) + STATUS_INTERVAL - time.monotonic()
    if wait <= 0:
        return False
    _held[uid] = publish
    if uid not in _timers:  # kopf keeps what posting Events needs in the context: the timer thread gets a copy
        _timers[uid] = timer = threading.Timer(wait, contextvars.copy_context().run, (_release, key, uid))
        timer.daemon = True
        timer.start()
    return True


def drop_held(owner: dict) -> None:
    """The status is back to what was last written: nothing waits any more."""
    _held.pop(owner["metadata"]["uid"], None)


def _release(key: tuple, uid: str) -> None:
    with lock(key):
        _timers.pop(uid, None)
        publish = _held.pop(uid, None)
        if publish is None:
            return
        try:
            publish()
        except Exception as e:  # noqa: BLE001  no handler will retry this: try again after another interval
            log.warning("writing the status of %s %s/%s failed, retrying: %s", *key, e)
            _last_write[uid] = time.monotonic()
            hold(key, uid, publish)
