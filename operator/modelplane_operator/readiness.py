"""The operator pod's readiness endpoint: GET /readyz answers 200 when this replica can answer admissions, else 503.

Separate from kopf's liveness endpoint on purpose: a replica whose Model cache is not synced yet is alive (do not
restart it) but must not receive admissions (the webhook Service routes to ready pods only)."""

from __future__ import annotations

import http.server
import threading


def serve(port: int, ready, addr: str = "0.0.0.0") -> http.server.ThreadingHTTPServer:
    """Serve /readyz on `port` in a daemon thread; `ready()` decides each answer."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802  (http.server's naming)
            ok = self.path.split("?")[0] == "/readyz" and ready()
            body = b"ok\n" if ok else b"not ready\n"
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # probes every few seconds: not worth a log line each
            pass

    server = http.server.ThreadingHTTPServer((addr, port), Handler)
    threading.Thread(target=server.serve_forever, name="readiness", daemon=True).start()
    return server
