"""The operator's watches ask the API server only for what it manages (issue 11 item 19): kopf watches Models and
Agents alone, and every store of a Pod, Deployment, Service, ConfigMap, NetworkPolicy, ServiceAccount, Role or
RoleBinding has a server-side label selector."""

from __future__ import annotations

import kopf

from modelplane_operator import childevents, handlers
from modelplane_operator.config import GROUP


def registered() -> list:
    registry = kopf.get_default_registry()
    return [h for reg in (registry._indexing, registry._watching, registry._changing, registry._spawning)
            for h in reg.get_all_handlers()]


def test_kopf_watches_the_operators_own_kinds_alone():
    """Children's events come from the stores: kopf watching them too would decode and hold every child twice."""
    assert {(h.selector.group, h.selector.any_name) for h in registered()} == {(GROUP, "models"), (GROUP, "agents")}


def test_every_store_of_other_kinds_is_selected_on_the_server():
    stores = handlers.make_stores([])
    for kind, store in stores.items():
        if kind not in ("Model", "Agent"):
            assert store.selector in {handlers.label_selector(labels) for labels in handlers.WATCH_SELECTORS.values()}
    assert set(stores) >= childevents.CHILD_KINDS


def test_label_selector_syntax():
    assert handlers.label_selector({"a.io/b": "x", "c": None}) == "a.io/b=x,c"


def test_with_peering_the_peering_object_is_read_too(monkeypatch):
    monkeypatch.setattr(handlers, "PEERING", ("modelplane", "me", 100))
    assert handlers.make_stores([])["Peering"].collection(None) == "/apis/kopf.dev/v1/clusterkopfpeerings"
    assert handlers.make_stores(["a"])["Peering"].collection("a") == "/apis/kopf.dev/v1/namespaces/a/kopfpeerings"
    monkeypatch.setattr(handlers, "PEERING", None)
    assert "Peering" not in handlers.make_stores([])
