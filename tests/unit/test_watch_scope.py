"""The operator's watches ask the API server only for what it manages (issue 11 item 19): every Pod, Deployment,
Service, ConfigMap and NetworkPolicy watch has a server-side label selector, and no handler expects an object that
selector leaves out."""

from __future__ import annotations

import kopf
import pytest

from modelplane_operator import handlers
from modelplane_operator.config import GROUP


def registered() -> list:
    registry = kopf.get_default_registry()
    return [h for reg in (registry._indexing, registry._watching, registry._changing) for h in reg.get_all_handlers()]


def selectors() -> dict:
    settings = kopf.OperatorSettings()
    handlers.watch_only_our_own(settings)
    return settings


def selector_of(settings, handler) -> list[str]:
    sel = handler.selector
    resource = kopf.Resource(sel.group or "", sel.version, sel.any_name)
    return list(settings.watching.label_selectors.collect(resource))


def test_every_watch_outside_the_operators_own_kinds_is_selected_on_the_server():
    settings = selectors()
    others = [h for h in registered() if h.selector.group != GROUP]
    assert {h.selector.any_name for h in others} == {"pods", "deployments", "services", "configmaps",
                                                      "networkpolicies", "serviceaccounts", "roles", "rolebindings"}
    for handler in others:
        assert len(selector_of(settings, handler)) == 1, handler.selector


@pytest.mark.parametrize("handler", [h for h in registered() if h.selector.group != GROUP],
                         ids=lambda h: f"{h.id}")
def test_no_handler_expects_what_the_selector_leaves_out(handler):
    """A handler's own `labels=` filter asks at least what the server-side selector asks: every object it would
    handle is one the API server sends."""
    expected = dict(handlers.WATCH_SELECTORS[next(key for key in handlers.WATCH_SELECTORS
                                                 if key[-1] == handler.selector.any_name)])
    labels = handler.labels or {}
    for key, value in expected.items():
        assert key in labels, (handler.id, key)
        assert labels[key] == (kopf.PRESENT if value is None else value) or value is None, (handler.id, key)


def test_label_selector_syntax():
    assert handlers.label_selector({"a.io/b": "x", "c": None}) == "a.io/b=x,c"
