"""The adapter loader: a sidecar in each server pod of a Model with LoRA adapters (render.py adds it, adapters.py says
where each adapter's files are). It watches its own Model, downloads hf:// and s3:// adapters into the pod, loads
every adapter into the vLLM server beside it through vLLM's own API, loads them again when that server restarts, and
unloads the ones removed from the spec.

Its readiness is the pod's promise about adapters: ready once each adapter it found at the start was tried, and
only while every adapter it has loaded is still in the server, so a new or restarted replica takes requests with
its adapters. An adapter added later does not hold a serving replica back; status.adapters says where it is.

    python -m modelplane_operator.adapterloader      (env: MODELPLANE_MODEL, MODELPLANE_SERVER, VLLM_API_KEY, ...)

Port MODELPLANE_LOADER_PORT: GET /ready (200 or 503), GET /adapters (what is loaded and what failed; names and
reasons only, read by the operator for status.adapters).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.etree import ElementTree

from . import adapters
from .config import GROUP, VERSION

POLL = 2.0  # seconds between two looks at the server's adapters
RETRY_FAILED = 30.0  # a failed adapter is tried again after this long (its source may appear), or at once on change
log = logging.getLogger("modelplane.adapterloader")


class Server:
    """The vLLM server beside the loader, reached on the pod's loopback with the pod's own API key."""

    def __init__(self, url: str, key: str | None):
        self.url, self.key = url.rstrip("/"), key

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 120) -> tuple[int, str]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.key:
            request.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def adapters(self) -> set[str] | None:
        """The adapters the server lists (entries with a parent model), or None while it does not answer."""
        try:
            code, text = self.call("GET", "/v1/models", timeout=5)
        except OSError:
            return None
        if code != 200:
            return None
        return {m["id"] for m in json.loads(text).get("data", []) if m.get("parent")}

    def load(self, name: str, path: str, replace: bool) -> tuple[int, str]:
        return self.call("POST", "/v1/load_lora_adapter",
                         {"lora_name": name, "lora_path": path, **({"load_inplace": True} if replace else {})})

    def unload(self, name: str) -> tuple[int, str]:
        return self.call("POST", "/v1/unload_lora_adapter", {"lora_name": name})


def error_message(text: str) -> str:
    """vLLM's error message out of its JSON answer (or the text as it came)."""
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    error = body.get("error", body) if isinstance(body, dict) else body
    return str(error.get("message", error) if isinstance(error, dict) else error)[:500]


def save(response, path: Path) -> None:
    """A download into `path`, whole or not at all (written aside, then renamed: a pod restart mid-way leaves no
    half file under the adapter's name)."""
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as out:
        while chunk := response.read(1 << 20):
            out.write(chunk)
    part.rename(path)


def fetch_hf(repo: str, dest: Path, token: str | None, endpoint: str) -> None:
    """Download a Hugging Face repository's files into `dest` (once per repository: a marker names what is there)."""
    marker = dest / ".modelplane-source"
    if marker.exists() and marker.read_text() == repo:
        return
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(url: str):
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)

    with get(f"{endpoint}/api/models/{repo}") as response:
        files = [s["rfilename"] for s in json.loads(response.read()).get("siblings", [])]
    dest.mkdir(parents=True, exist_ok=True)
    for name in files:
        if name.startswith(".") or "/" in name:  # the adapter lives at the repository's top
            continue
        with get(f"{endpoint}/{repo}/resolve/main/{urllib.parse.quote(name)}") as response:
            save(response, dest / name)
    marker.write_text(repo)


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def sigv4_headers(method: str, url: str, access: str, secret: str, region: str, now: datetime.datetime,
                  token: str | None = None) -> dict[str, str]:
    """AWS Signature Version 4 headers of a body-less S3 request (what every S3-compatible store accepts), so that
    the loader needs no AWS SDK."""
    parts = urllib.parse.urlsplit(url)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {"host": parts.netloc, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": stamp,
               **({"x-amz-security-token": token} if token else {})}
    query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                     for k, v in sorted(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)))
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, urllib.parse.quote(parts.path or "/", safe="/-_.~"), query,
                           *(f"{k}:{headers[k].strip()}" for k in sorted(headers)), "", signed, EMPTY_SHA256])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {**{k: v for k, v in headers.items() if k != "host"},
            "Authorization": f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={signed}, "
                             f"Signature={signature}"}


def fetch_s3(rest: str, dest: Path, env: dict, prefix: str = "", now=None) -> None:
    """Download the objects directly under s3://<bucket>/<path>/ into `dest` (once per source), signed with the
    credentials under `prefix` in `env` (anonymous without them). AWS_ENDPOINT_URL: an S3-compatible store,
    addressed path-style; else AWS's own, virtual-hosted."""
    marker = dest / ".modelplane-source"
    if marker.exists() and marker.read_text() == f"s3://{rest}":
        return
    bucket, _, path = rest.partition("/")
    path = path.strip("/")
    region = env.get(prefix + "AWS_REGION") or env.get(prefix + "AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = (env.get(prefix + "AWS_ENDPOINT_URL") or "").rstrip("/")
    base = f"{endpoint}/{bucket}" if endpoint else f"https://{bucket}.s3.{region}.amazonaws.com"
    access, secret = env.get(prefix + "AWS_ACCESS_KEY_ID"), env.get(prefix + "AWS_SECRET_ACCESS_KEY")

    def get(url: str):
        when = now or datetime.datetime.now(datetime.timezone.utc)
        headers = (sigv4_headers("GET", url, access, secret, region, when, env.get(prefix + "AWS_SESSION_TOKEN"))
                   if access and secret else {})
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)

    keys, token = [], None
    while True:  # ListObjectsV2, a page at a time
        query = {"list-type": "2", "prefix": f"{path}/" if path else "", "delimiter": "/",
                 **({"continuation-token": token} if token else {})}
        with get(f"{base}/?{urllib.parse.urlencode(query)}") as response:
            listing = ElementTree.fromstring(response.read())
        ns = listing.tag.partition("}")[0] + "}" if listing.tag.startswith("{") else ""
        keys += [k.text for k in listing.iter(f"{ns}Key") if k.text]
        token = listing.findtext(f"{ns}NextContinuationToken")
        if not token:
            break
    if not keys:
        raise FileNotFoundError(f"no object under s3://{rest}")
    dest.mkdir(parents=True, exist_ok=True)
    for key in keys:
        name = key.rsplit("/", 1)[-1]
        if not name or name.startswith("."):
            continue
        with get(f"{base}/{urllib.parse.quote(key, safe='/-_.~')}") as response:
            save(response, dest / name)
    marker.write_text(f"s3://{rest}")


class Loader:
    """What this replica should serve (the Model's spec, from the watch) and what it does serve; `step` brings the
    second to the first."""

    def __init__(self, server: Server, env: dict | None = None, now=time.monotonic):
        self.server, self.env, self.now = server, env if env is not None else os.environ, now
        self.spec: dict | None = None
        self.loaded: dict[str, str] = {}  # name -> the folder it was loaded from
        self.failed: dict[str, dict] = {}  # name -> {reason, message, where, at}
        self.required: set[str] = set()  # loaded once in this pod: readiness waits for them after a server restart
        self.first_pass = False
        self.lock = threading.Lock()
        self.wake = threading.Event()

    def set_spec(self, spec: dict) -> None:
        with self.lock:
            self.spec = spec
        self.wake.set()

    def wanted(self) -> dict[str, dict]:
        return {a["name"]: a for a in (self.spec or {}).get("adapters") or []}

    def step(self) -> None:
        listed = self.server.adapters()
        with self.lock:
            spec = self.spec
        if listed is None or spec is None:  # the server is (re)starting, or the Model is not read yet
            return
        for name in [n for n in self.loaded if n not in listed]:  # the server restarted: gone with it
            del self.loaded[name]
        wanted = self.wanted()
        for name, adapter in wanted.items():
            where = adapters.location(spec, adapter)
            if self.loaded.get(name) == where:
                continue
            failure = self.failed.get(name)
            if failure and failure["where"] == where and self.now() - failure["at"] < RETRY_FAILED:
                continue
            # listed but not by this loader (it restarted), or moved to another source: replaced in place
            self.load(name, adapter, where, replace=name in listed)
        for name in sorted(listed - wanted.keys()):
            code, text = self.server.unload(name)
            log.info("unloaded %s: %s %s", name, code, error_message(text) if code != 200 else "")
            self.loaded.pop(name, None)
        for name in list(self.failed):
            if name not in wanted:
                del self.failed[name]
        self.required &= wanted.keys()
        self.first_pass = True

    def load(self, name: str, adapter: dict, where: str, replace: bool) -> None:
        scheme, _, rest = adapter["source"].partition("://")
        ref = adapter.get("credentialsSecretRef")
        try:
            if scheme == "hf":
                token = self.env.get(adapters.token_env(ref)) if ref else None
                fetch_hf(rest, Path(where), token, self.env.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/"))
            elif scheme == "s3":
                fetch_s3(rest, Path(where), self.env, adapters.s3_env_prefix(ref) if ref else "")
        except (OSError, ValueError, ElementTree.ParseError) as e:
            self.fail(name, where, "FetchFailed", f"downloading {adapter['source']}: {e}")
            return
        code, text = self.server.load(name, where, replace)
        if code == 200 or (code == 400 and "already" in text):
            self.loaded[name] = where
            self.required.add(name)
            self.failed.pop(name, None)
            log.info("loaded %s from %s", name, where)
        else:
            message = error_message(text)
            self.fail(name, where, adapters.classify(code, message), message)

    def fail(self, name: str, where: str, reason: str, message: str) -> None:
        log.warning("adapter %s: %s: %s", name, reason, message)
        self.failed[name] = {"reason": reason, "message": message, "where": where, "at": self.now()}

    def ready(self) -> bool:
        if not self.first_pass:
            return False
        if not self.required:
            return True
        listed = self.server.adapters()
        return listed is not None and self.required <= listed

    def report(self) -> dict:
        wanted = self.wanted()
        return {"ready": self.ready(), "loaded": sorted(n for n in self.loaded if n in wanted),
                "failed": {n: {"reason": f["reason"], "message": f["message"]}
                           for n, f in sorted(self.failed.items()) if n in wanted}}

    def run(self) -> None:
        while True:
            try:
                self.step()
            except Exception:  # noqa: BLE001 - the loader must outlive any one bad answer
                log.exception("adapter pass failed")
            self.wake.wait(POLL)
            self.wake.clear()


def watch_model(loader: Loader, namespace: str, name: str) -> None:
    """Feed the loader its Model's spec as it changes (its Role lets it read that one Model only)."""
    from kubernetes import client, config, watch  # the operator image has them; the pure parts do not need them

    config.load_incluster_config()
    api = client.CustomObjectsApi()
    while True:
        try:
            for event in watch.Watch().stream(api.list_namespaced_custom_object, GROUP, VERSION,
                                              namespace, "models", field_selector=f"metadata.name={name}",
                                              timeout_seconds=300):
                if event["type"] in ("ADDED", "MODIFIED"):
                    loader.set_spec(event["object"].get("spec") or {})
        except Exception as e:  # noqa: BLE001 - an API server restart or a network blip: watch again
            log.warning("watching Model %s/%s: %s", namespace, name, e)
            time.sleep(2)


def serve(loader: Loader, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path == "/ready":
                ok = loader.ready()
                self._send(200 if ok else 503, {"ready": ok})
            elif self.path == "/adapters":
                self._send(200, loader.report())
            else:
                self._send(404, {"error": "not found"})

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # the kubelet probes every 2 s
            pass

    httpd = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    namespace = Path(adapters.TOKEN_DIR, "namespace").read_text().strip()
    loader = Loader(Server(os.environ.get("MODELPLANE_SERVER", "http://127.0.0.1:8000"),
                           os.environ.get("VLLM_API_KEY") or None))
    serve(loader, int(os.environ.get("MODELPLANE_LOADER_PORT", adapters.LOADER_PORT)))
    threading.Thread(target=watch_model, args=(loader, namespace, os.environ["MODELPLANE_MODEL"]),
                     daemon=True).start()
    loader.run()


if __name__ == "__main__":
    main()
