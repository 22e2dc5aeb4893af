"""The door of a router pod: vllm-router answers its admin endpoints (/add_worker, /remove_worker, /flush_cache...)
to anyone who reaches it, and a client that could add a worker would receive other clients' requests and their
Authorization headers. This gate listens where the router's clients connect and passes on only the OpenAI API
(/v1/...) and the health endpoints; anything else gets 403. Each connection carries one request (the gate asks the
router to close after it), so a second request cannot follow the first unchecked.

    python3 gate.py --listen 0.0.0.0:8000 --upstream 127.0.0.1:8001 -- vllm-router --host 127.0.0.1 --port 8001 ...

It starts the router, passes SIGTERM on, and exits with the router's status. Standard library only."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

ALLOWED_PREFIXES = ("/v1/",)
ALLOWED_PATHS = ("/health", "/liveness", "/readiness")
HOP_BY_HOP = (b"connection", b"keep-alive", b"proxy-connection")
MAX_HEAD = 64 * 1024


def allowed(method: bytes, target: bytes) -> bool:
    path = target.split(b"?", 1)[0].decode("latin-1")
    return method in (b"GET", b"POST") and ("/.." not in path) and (
        path.startswith(ALLOWED_PREFIXES) or path in ALLOWED_PATHS)


def one_request_head(head: bytes) -> bytes:
    """The request head with the connection asked to close after this request."""
    lines = head.split(b"\r\n")
    kept = [lines[0]] + [ln for ln in lines[1:] if ln and ln.split(b":", 1)[0].strip().lower() not in HOP_BY_HOP]
    return b"\r\n".join(kept + [b"Connection: close", b"", b""])


def refusal(status: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def serve_one(client_r, client_w, upstream: tuple[str, int]) -> None:
    try:
        head = await client_r.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        client_w.close()
        return
    method, _, rest = head.partition(b" ")
    target = rest.partition(b" ")[0]
    if not allowed(method, target):
        client_w.write(refusal("403 Forbidden", "only the OpenAI API (/v1/...) and health endpoints are served"))
        await client_w.drain()
        client_w.close()
        return
    try:
        up_r, up_w = await asyncio.open_connection(*upstream)
    except OSError:
        client_w.write(refusal("503 Service Unavailable", "the router is not up yet"))
        client_w.close()
        return
    up_w.write(one_request_head(head))
    # the body follows as it comes; the answer goes back until the router closes
    await asyncio.gather(pump(client_r, up_w), pump(up_r, client_w))


async def main_async(listen: tuple[str, int], upstream: tuple[str, int], command: list[str]) -> int:
    child = await asyncio.create_subprocess_exec(*command)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, child.terminate)  # the router drains; the gate serves until it exits
    server = await asyncio.start_server(lambda r, w: serve_one(r, w, upstream), *listen, limit=MAX_HEAD)
    async with server:
        return await child.wait()


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=address, required=True)
    ap.add_argument("--upstream", type=address, required=True)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return asyncio.run(main_async(args.listen, args.upstream, command))


if __name__ == "__main__":
    sys.exit(main())
