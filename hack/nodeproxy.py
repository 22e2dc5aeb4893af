"""Joins the real node's network namespace to the host's loopback control plane, without touching host routes.

The control plane listens on the host's 127.0.0.1; the real node (containerd, kubelet, kube-proxy, pods) lives in a
network namespace of its own. One process holds sockets in both namespaces (a socket keeps the namespace it was
made in) and relays bytes:

- into the node: a listener on NODE_IP:PORT inside the namespace, relayed to the API server at 127.0.0.1:PORT on
  the host (kubelet, kube-proxy and every pod, through the `kubernetes` Service, reach the API server this way);
- out of the control plane: an HTTP CONNECT proxy on a Unix socket, which kube-apiserver uses as its egress for
  the `cluster` network (its EgressSelectorConfiguration): kubelet logs/exec, webhooks and Service proxies reach
  node and pod addresses through it, as the Kubernetes network proxy (konnectivity) does on real clusters.

    python nodeproxy.py --netns /proc/PID/ns/net --listen 10.99.0.1:6443 --to 127.0.0.1:6443 --egress PATH.sock
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import socket

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Namespaces:
    """Makes sockets in the node's namespace from a process that lives in the host's."""

    def __init__(self, node_netns: str):
        self.host = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.node = os.open(node_netns, os.O_RDONLY)

    def in_node(self, make):
        _setns(self.node)  # affects this thread only; asyncio runs everything on it, so switch back at once
        try:
            return make()
        finally:
            _setns(self.host)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _relay(a: tuple, b: tuple) -> None:
    await asyncio.gather(_pipe(a[0], b[1]), _pipe(b[0], a[1]))


async def _connect_in_node(ns: Namespaces, host: str, port: int):
    sock = ns.in_node(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), 10)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def serve(netns: str, listen: str, to: str, egress: str) -> None:
    ns = Namespaces(netns)
    lhost, lport = listen.rsplit(":", 1)
    thost, tport = to.rsplit(":", 1)

    async def into_node(reader, writer):
        try:
            upstream = await asyncio.open_connection(thost, int(tport))
        except OSError:
            writer.close()
            return
        await _relay((reader, writer), upstream)

    async def out_of_control_plane(reader, writer):
        # kube-apiserver's HTTPConnect egress: "CONNECT host:port HTTP/1.1", headers, blank line.
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = request.split(b"\r\n", 1)[0].decode().split(" ", 2)
            host, port = target.rsplit(":", 1)
            if method != "CONNECT":
                raise ValueError(method)
            upstream = await _connect_in_node(ns, host.strip("[]"), int(port))
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
            writer.write(f"HTTP/1.1 502 Bad Gateway\r\n\r\n{e}".encode())
            with contextlib.suppress(Exception):
                await writer.drain()
                writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await _relay((reader, writer), upstream)

    listener = ns.in_node(lambda: socket.create_server((lhost, int(lport)), backlog=256))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(egress)
    servers = [await asyncio.start_server(into_node, sock=listener),
               await asyncio.start_unix_server(out_of_control_plane, egress)]
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--netns", required=True)
    ap.add_argument("--listen", required=True, help="NODE_IP:PORT inside the node's namespace")
    ap.add_argument("--to", required=True, help="HOST:PORT of the API server on the host")
    ap.add_argument("--egress", required=True, help="Unix socket for kube-apiserver's egress")
    args = ap.parse_args()
    asyncio.run(serve(args.netns, args.listen, args.to, args.egress))


if __name__ == "__main__":
    main()
