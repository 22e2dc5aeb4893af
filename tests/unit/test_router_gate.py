"""hack/vllm-router/gate.py, the router pod's door: only the OpenAI API and health checks pass, one request per
connection. Against a stand-in upstream (a local socket server) that records what reaches it."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "hack" / "vllm-router" / "gate.py"
spec = importlib.util.spec_from_file_location("router_gate", PATH)
gate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gate)


@pytest.mark.parametrize("method, target, ok", [
    (b"POST", b"/v1/chat/completions", True), (b"GET", b"/v1/models", True), (b"GET", b"/liveness", True),
    (b"GET", b"/readiness", True), (b"GET", b"/health", True),
    (b"POST", b"/add_worker?url=http://evil:8000", False), (b"POST", b"/remove_worker?url=x", False),
    (b"GET", b"/list_workers", False), (b"POST", b"/flush_cache", False), (b"GET", b"/get_loads", False),
    (b"DELETE", b"/v1/models", False), (b"GET", b"/v1/../add_worker", False), (b"GET", b"/v1", False),
])
def test_allowed(method, target, ok):
    assert gate.allowed(method, target) == ok


def test_the_head_asks_the_router_to_close_after_one_request():
    head = b"POST /v1/x HTTP/1.1\r\nHost: r\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nContent-Length: 2\r\n\r\n"
    out = gate.one_request_head(head)
    assert out == b"POST /v1/x HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_through_the_gate():
    async def scenario():
        seen = []

        async def upstream(reader, writer):  # answers one request, then closes, as the router does when asked
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(
                b"content-length")) or 0) if b"content-length" in head.lower() else 0
            body = await reader.readexactly(length)
            seen.append((head, body))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
            writer.close()

        up_port, gate_port = free_port(), free_port()
        up = await asyncio.start_server(upstream, "127.0.0.1", up_port)
        door = await asyncio.start_server(lambda r, w: gate.serve_one(r, w, ("127.0.0.1", up_port)),
                                          "127.0.0.1", gate_port, limit=gate.MAX_HEAD)

        async def ask(raw: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", gate_port)
            writer.write(raw)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return answer

        async with up, door:
            ok = await ask(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Length: 4\r\n\r\n{\"a\"")
            refused = await ask(b"POST /add_worker?url=http://evil HTTP/1.1\r\nHost: g\r\n\r\n")
            # a second request on the same connection is never read by the router
            piped = await ask(b"GET /v1/models HTTP/1.1\r\nHost: g\r\n\r\n"
                              b"POST /remove_worker?url=x HTTP/1.1\r\nHost: g\r\n\r\n")
        return seen, ok, refused, piped

    seen, ok, refused, piped = asyncio.run(scenario())
    assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"ok")
    assert refused.startswith(b"HTTP/1.1 403") and b"/v1/" in refused
    assert piped.startswith(b"HTTP/1.1 200")
    assert [h.split(b"\r\n")[0] for h, _ in seen] == [b"POST /v1/chat/completions HTTP/1.1", b"GET /v1/models HTTP/1.1"]
    assert seen[0][1] == b'{"a"' and all(b"Connection: close" in h for h, _ in seen)
