"""The gate a keyed or LoRA Model's vLLM runs in front of its own routes (`--middleware modelplane_gate.Gate`): from
outside the pod, it lets through the APIs vLLM guards with its key and reads, and refuses the control routes vLLM
serves to anyone.

vLLM checks its API key only under /v1, /v2 and /inference, yet serves POST routes elsewhere that change what it
does: SageMaker's /invocations (inference without the key), with run-time LoRA updating /adapters (load and unload),
/scale_elastic_ep, /abort_requests (any request's), and more in each release. So outside those prefixes only reads
(GET, HEAD, OPTIONS: health, metrics, version) and SageMaker's POST /ping pass: an allowlist, so a route a new vLLM
adds is closed until it is known. And with the key alone any client could load or unload adapters (from any path
the server can read): adapters are the Model's spec.adapters, loaded by the loader sidecar over the pod's loopback.

Copied into the server pod as it is (a ConfigMap the operator renders from this file), so it imports only the
standard library and nothing of modelplane."""

from __future__ import annotations

import json
import posixpath
import re

MODULE = "modelplane_gate"  # the name vLLM imports this file by, in the server pod
LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})  # client addresses of the pod itself
KEYED = ("/v1", "/v2", "/inference")  # the prefixes under which vLLM checks its API key
READS = frozenset({"GET", "HEAD", "OPTIONS"})
LOADER_ONLY = ("/v1/load_lora_adapter", "/v1/unload_lora_adapter")


def normalized(path: str) -> str:
    """The route a path reaches: repeated slashes, dot segments and a trailing slash do not change it."""
    return posixpath.normpath(re.sub("/+", "/", "/" + path))


def refusal(method: str, path: str, client_host: str | None) -> str | None:
    """Why a request is refused, or None to let vLLM answer it (and check its key). Pure."""
    route = normalized(path)
    if client_host in LOOPBACK:
        return None  # the pod itself: its loader, or a person in `kubectl exec`
    if route in LOADER_ONLY:
        return (f"{route} is closed by modelplane: adapters are set in the Model's spec.adapters and loaded by the "
                "pod's own loader")
    if any(route == prefix or route.startswith(prefix + "/") for prefix in KEYED):
        return None
    if method.upper() in READS or (route == "/ping" and method.upper() == "POST"):
        return None
    return (f"{method.upper()} {route} is closed by modelplane: outside /v1, /v2 and /inference vLLM does not check "
            "the API key, so only health, metrics and other reads are let through; use the OpenAI API under /v1")


class Gate:
    """Pure ASGI middleware (vLLM adds a class with app.add_middleware): a refused request gets 403 with an
    OpenAI-style error body and never reaches vLLM."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            reason = refusal(scope.get("method", "GET"), scope.get("path", "/"), (scope.get("client") or (None,))[0])
            if reason:
                body = json.dumps({"error": {"message": reason, "type": "Forbidden", "code": 403}}).encode()
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
