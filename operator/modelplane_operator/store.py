"""The objects the operator reads, kept in memory by list-then-watch loops of its own: label-selected on the server,
slimmed, and indexed by the keys reconciles look them up with.

Why not kopf's indexes: until every indexed object has been listed, kopf holds every object's handler and wakes all
of them each time one more object is indexed, which grows with the square of the objects (33 s to restart with 1000
Models, see bench/README.md); a standby replica's indexes are frozen, too. kopf delivers the events of Models and
Agents (and offers each event's object here, so that a reconcile never reads an older object than the event that
started it); the children's events come from these watches alone, to the store's listeners: kopf watching them too
would decode and hold every child twice.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Callable, Hashable, Iterable, Iterator

from kubernetes.client import ApiException

from . import kube

log = logging.getLogger("modelplane")
WATCH_SECONDS = 300  # the server ends each watch after this; it is resumed from the last resourceVersion
TOMBSTONES = 10_000  # deletions remembered
PAGE = 250  # objects per list request
IndexFn = Callable[[dict], dict]  # object -> {key: value}, as a kopf index function returns
# listener(type, obj): after the store took a watched change in; type "ADDED", "MODIFIED" or "DELETED". A deletion
# seen only as absence from a re-list comes as a stub: kind, namespace, name and labels.
Listener = Callable[[str, dict], None]


SHARED_MAX = 64  # longer strings (a certificate, an event's message) are rarely the same in two objects


def shared_strings(obj):
    """`obj` with its keys and short strings interned (pure; a new copy). JSON decoding allocates every key and value
    anew for each object, though the thousand Deployments a store keeps repeat the same keys and mostly the same
    values (an image, a probe's path, the API server's defaults): shared, a kept Deployment takes half the memory."""
    if isinstance(obj, dict):
        return {sys.intern(k): shared_strings(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [shared_strings(v) for v in obj]
    if isinstance(obj, str) and len(obj) <= SHARED_MAX:
        return sys.intern(obj)
    return obj


def newer(a: str | None, b: str | None) -> bool:
    """resourceVersion `a` is newer than `b`. They are etcd revisions: Kubernetes 1.34 documents them as comparable
    integers (KEP-5504); anything else (never seen here) counts as newer, so the latest event wins."""
    try:
        return int(a) > int(b)
    except (TypeError, ValueError):
        return True


class Index:
    """key -> the values objects gave for it; `get` answers like a kopf index (a collection, usually of one)."""

    def __init__(self, fn: IndexFn):
        self.fn = fn
        self._values: dict[Hashable, dict[tuple, object]] = {}

    def get(self, key, default=()):
        found = self._values.get(key)
        return list(found.values()) if found else default

    def __iter__(self):
        return iter(list(self._values))

    def values(self) -> list:
        """Every value (a copy: the store's threads go on changing it)."""
        return [v for found in list(self._values.values()) for v in list(found.values())]

    def __contains__(self, key) -> bool:
        return key in self._values

    def _put(self, obj_key: tuple, old: dict, new: dict) -> None:
        for key in old:
            if key not in new:
                values = self._values.get(key, {})
                values.pop(obj_key, None)
                if not values:
                    self._values.pop(key, None)
        for key, value in new.items():
            self._values.setdefault(key, {})[obj_key] = value


class Store:
    """One kind of object (one collection path per watched namespace, or one for the cluster), with its indexes."""

    def __init__(self, name: str, collection: Callable[[str | None], str], indexes: dict[str, IndexFn],
                 selector: str = "", namespaces: Iterable[str] = ()):
        """`collection(namespace)`: the API path of the collection (namespace None: the whole cluster)."""
        self.name, self.collection, self.selector = name, collection, selector
        self.namespaces = list(namespaces)
        self.indexes = {n: Index(fn) for n, fn in indexes.items()}
        self.synced = threading.Event()
        # (ns, name) -> (version, index entries, labels)
        self._objects: dict[tuple, tuple[str | None, dict[str, dict], dict]] = {}
        # (ns, name) -> the version it was deleted at: an older event that arrives later (kopf's and this store's
        # watches run apart) must not bring it back
        self._deleted: dict[tuple, str | None] = {}
        self._lock = threading.Lock()
        self._listed: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._listeners: list[Listener] = []
        self.kind = ""  # from the first listing (a list's kind less "List"), for deletion stubs

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _tell(self, type_: str, obj: dict) -> None:
        for listener in self._listeners:
            try:
                listener(type_, obj)
            except Exception:  # noqa: BLE001  a listener's bug must not end the watch
                log.exception("store of %s: a listener failed on %s", self.name, obj["metadata"].get("name"))

    def __getitem__(self, index: str) -> Index:
        return self.indexes[index]

    # --- what the watches and kopf's events bring ------------------------------------------------------------

    def offer(self, obj: dict, listing: bool = False) -> bool:
        """Keep `obj` unless a newer version of it is kept already; True when kept."""
        meta = obj["metadata"]
        key, version = (meta.get("namespace"), meta["name"]), meta.get("resourceVersion")
        with self._lock:
            old_version, old, _ = self._objects.get(key, (None, {}, {}))
            if not listing and key in self._objects and not newer(version, old_version):
                return False
            if not listing and key in self._deleted and not newer(version, self._deleted[key]):
                return False
            self._deleted.pop(key, None)
            # every kept value shares its strings with the other objects' (shared_strings): half the memory
            new = {n: {k: shared_strings(v) for k, v in index.fn(obj).items()} for n, index in self.indexes.items()}
            for n, index in self.indexes.items():
                index._put(key, old.get(n, {}), new[n])
            self._objects[key] = (version, new, meta.get("labels") or {})
            return True

    def version_of(self, namespace: str | None, name: str) -> str | None:
        return self._objects.get((namespace, name), (None,))[0]

    def remove(self, obj: dict) -> dict:
        """Forget `obj`; returns the labels it was kept with (none if it was not kept)."""
        meta = obj["metadata"]
        key = (meta.get("namespace"), meta["name"])
        with self._lock:
            _, old, labels = self._objects.pop(key, (None, {}, {}))
            self._deleted[key] = meta.get("resourceVersion")
            while len(self._deleted) > TOMBSTONES:
                del self._deleted[next(iter(self._deleted))]  # the oldest deletions: their late events came long ago
            for n, index in self.indexes.items():
                index._put(key, old.get(n, {}), {})
        return labels

    def replace(self, namespace: str | None, items: Iterable[dict]) -> None:
        """A fresh listing of `namespace` (None: everything): what it no longer holds is forgotten. The first listing
        is the start; a later one (a watch that could not resume) tells the listeners what changed meanwhile.
        `items` may be a generator: each object is taken in as it comes, so a listing is never held whole."""
        relist = self.collection(namespace) in self._listed
        listed = set()
        for obj in items:
            meta = obj["metadata"]
            key = (meta.get("namespace"), meta["name"])
            listed.add(key)
            changed = relist and self.version_of(*key) != meta.get("resourceVersion")
            self.offer(obj, listing=True)
            if changed:
                self._tell("MODIFIED", obj)
        with self._lock:
            gone = [k for k in self._objects if (namespace is None or k[0] == namespace) and k not in listed]
        for ns, name in gone:
            labels = self.remove({"metadata": {"namespace": ns, "name": name}})
            if relist:
                self._tell("DELETED", {"kind": self.kind, "metadata": {"namespace": ns, "name": name,
                                                                       "labels": labels}})
        with self._lock:
            self._listed.add(self.collection(namespace))
            if self._listed >= {self.collection(ns) for ns in self._scopes()}:
                self.synced.set()

    # --- the list-then-watch loops ----------------------------------------------------------------------------

    def start(self) -> "Store":
        for ns in self._scopes():
            thread = threading.Thread(target=self._follow, args=(ns,), name=f"store-{self.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _scopes(self) -> list[str | None]:
        return list(self.namespaces) or [None]

    def _follow(self, namespace: str | None) -> None:
        path = self.collection(namespace)
        query = {"labelSelector": self.selector} if self.selector else {}
        while True:
            try:
                listing = Listing(self, path, query)
                self.replace(namespace, listing.items())
                self._watch(path, query, listing.version)
            except Exception as e:  # noqa: BLE001  the store must outlive any API hiccup: list again
                log.warning("store of %s (%s): %s; listing again", self.name, path, e)
                time.sleep(2)

    def _watch(self, path: str, query: dict, version: str) -> None:
        """Follow `path` from `version` until the server says it is too old (410), then return (to list again)."""
        while True:
            for event in kube.watch(path, version, WATCH_SECONDS, query=query):
                obj = event["object"]
                if event["type"] == "ERROR":
                    if obj.get("code") == 410:
                        return
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                version = obj["metadata"]["resourceVersion"]
                if event["type"] == "DELETED":
                    self.remove(obj)
                    self._tell("DELETED", obj)
                elif event["type"] != "BOOKMARK" and self.offer(obj):
                    self._tell(event["type"], obj)


class Listing:
    """A listing read page by page as it is taken in (`items()`), each page dropped before the next is read: a whole
    listing decoded at once (1000 Deployments with their managedFields) was a peak of memory the process kept after a
    restart. `version`: the one to watch from, once every page was read."""

    def __init__(self, store: Store, path: str, query: dict):
        self.store, self.path, self.query, self.version = store, path, query, ""

    def items(self) -> Iterator[dict]:
        token = ""
        while True:
            page = kube.request("GET", self.path, query={**self.query, "limit": str(PAGE),
                                                         **({"continue": token} if token else {})})
            # A list's items come without apiVersion and kind (watch events have them): the kept copies are
            # compared with what the operator renders, so they get them back.
            kind = {"apiVersion": page.get("apiVersion"), "kind": page.get("kind", "").removesuffix("List")}
            self.store.kind = kind["kind"]
            items = page.pop("items", None) or []
            for item in items:
                yield {**kind, **item}
            del items
            token = page["metadata"].get("continue")
            if not token:
                self.version = page["metadata"]["resourceVersion"]
                return
