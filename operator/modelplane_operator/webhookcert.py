"""The admission webhook's certificate over the operator's whole run, not only at its start.

CertKeeper makes or takes the certificates at start (from their Secret, or a folder in a local run), writes the
served files and the caBundle; then, every `check_seconds` in a thread, it reads the Secret again and renews it when
due (certs.decide: a new serving certificate from the same CA, or a new CA that joins the bundle before it signs
anything), rewrites the files when the certificate changed (here, or on another replica), loads them into the running
server in place, and writes the bundle into the webhook configuration again (which also puts back one reset by hand).

ReloadingWebhookServer is kopf's WebhookServer keeping the ssl.SSLContext it serves with, so that renewed files are
loaded into that context (new handshakes get the new certificate; open connections keep theirs) rather than by
kopf's own reaction to changed files, a restart of the whole server (its port closed for a moment, and a certificate
possibly read with the previous key).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import hashlib
import logging
import ssl
import threading
from pathlib import Path
from typing import Callable

import kopf

from . import certs, kube

log = logging.getLogger("modelplane")


class ReloadingWebhookServer(kopf.WebhookServer):
    """kopf.WebhookServer (its certfile/pkeyfile) whose certificate is reloaded in place: `reload()` from any thread
    after the files changed, and on its own every `file_check_interval` seconds (files written by someone else, e.g.
    cert-manager's mounted Secret). Files that do not make a pair (a certificate with the previous key, halfway
    through a write) are not loaded: the current certificate is served until they do. `files_lock` is held while the
    server reads the files; a writer holding it too never has them read halfway."""

    def __init__(self, *, files_lock: threading.Lock | None = None, **kwargs):
        super().__init__(**kwargs)
        self.files_lock = files_lock or threading.Lock()
        self.serving_context: ssl.SSLContext | None = None  # the context the listening socket serves with
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loaded: str | None = None  # digest of the files the context holds

    def _digest(self) -> str:
        h = hashlib.sha256()
        for path in (self.certfile, self.pkeyfile):
            h.update(Path(path).read_bytes() + b"\0")
        return h.hexdigest()

    def _build_ssl(self):
        """kopf's context (it loads the files into it), kept; called on the server's event loop when it starts."""
        with self.files_lock:
            cadata, context = super()._build_ssl()
            self._loaded = self._digest() if context is not None and self.certfile and self.pkeyfile else None
        self.serving_context = context
        self._loop = asyncio.get_running_loop()
        return cadata, context

    def load_if_changed(self) -> bool:
        """Load the files into the serving context when they differ from what it holds. On the server's event loop
        (where handshakes read the context). Raises OSError or ssl.SSLError for files that cannot be loaded, and then
        leaves the context as it was."""
        context = self.serving_context
        if context is None or self._loaded is None:
            return False
        with self.files_lock:
            digest = self._digest()
            if digest == self._loaded:
                return False
            # A certificate and a key that do not match fail here, in a scratch context, and not halfway through the
            # serving one (which would then hold the new certificate with the previous key).
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.certfile, self.pkeyfile, self.password)
            context.load_cert_chain(self.certfile, self.pkeyfile, self.password)
            self._loaded = digest
        log.info("webhook server: now serving the certificate of %s", self.certfile)
        return True

    async def _load_when_changed(self) -> None:
        """In place of kopf's wait for changed files (after which it restarts the server): wait forever, loading
        changed files in place on the way."""
        while True:
            await asyncio.sleep(self.file_check_interval)
            try:
                self.load_if_changed()
            except (OSError, ssl.SSLError) as e:
                log.warning("webhook server: certificate files not loaded (%s); serving the current one", e)

    # kopf's WebhookServer.__call__ awaits its private `__sleep_forever_or_until_ssl_files_change()` (by its mangled
    # name) and restarts the server when it returns; tests/unit/test_webhookcert.py fails if kopf renames it.
    _WebhookServer__sleep_forever_or_until_ssl_files_change = _load_when_changed

    def reload(self, timeout: float = 30) -> bool:
        """From any thread: load the files into the serving context now if they changed, on the server's event loop.
        False when the server has not started yet (it reads the files when it does) or nothing changed."""
        loop = self._loop
        if loop is None or loop.is_closed() or self.serving_context is None:
            return False
        try:
            if asyncio.get_running_loop() is loop:
                return self.load_if_changed()
        except RuntimeError:
            pass  # no loop in this thread
        done: concurrent.futures.Future = concurrent.futures.Future()

        def load():
            try:
                done.set_result(self.load_if_changed())
            except BaseException as e:  # handed to the caller
                done.set_exception(e)
        loop.call_soon_threadsafe(load)
        return done.result(timeout)


class CertKeeper:
    """The webhook's certificates, kept current while the operator runs.

    folder: where the server reads tls.crt/tls.key (and ca.crt); sans: the names the API server calls it by.
    secret: (namespace, name) of the Secret shared by all replicas; None keeps them in `folder` itself (a local run).
    publish: writes a CA bundle (PEM) wherever the API server reads it (the webhook configuration's caBundle); called
    at start and after every check, and idempotent there. check_seconds: how often the Secret is read again; the new
    CA of a rotation waits at least three of these (Lifetimes.settle) before it signs the served certificate, so that
    every replica has read and published the bundle first."""

    def __init__(self, folder: Path, sans: list[str], *, secret: tuple[str, str] | None = None,
                 publish: Callable[[bytes], None] | None = None, check_seconds: float = 600,
                 lifetimes: certs.Lifetimes | None = None, cn: str = kube.WEBHOOK_CN):
        self.folder, self.sans, self.secret, self.publish, self.cn = Path(folder), list(sans), secret, publish, cn
        self.check_seconds = check_seconds
        self.lifetimes = lifetimes or certs.Lifetimes(
            settle=max(certs.Lifetimes().settle, datetime.timedelta(seconds=3 * check_seconds)))
        self.lock = threading.Lock()  # held while the files are written, and while the server reads them
        self.bundle = b""  # the CA bundle (PEM) last read
        self._served: dict[str, bytes] = {}  # what the files hold
        self._server: ReloadingWebhookServer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bytes:
        """Make or take the certificates, write the files and the bundle (errors go to the caller: nothing is served
        yet), then keep them in a daemon thread. Returns the CA bundle (PEM)."""
        self.check(strict=True)
        self._thread = threading.Thread(target=self._run, name="webhook-cert", daemon=True)
        self._thread.start()
        return self.bundle

    def server(self, **kwargs) -> ReloadingWebhookServer:
        """The webhook server (kopf.WebhookServer's arguments: addr, port, host, ...) serving the kept files, which
        this keeper reloads when they change."""
        self._server = ReloadingWebhookServer(certfile=self.folder / "tls.crt", pkeyfile=self.folder / "tls.key",
                                              cadata=self.bundle, files_lock=self.lock, **kwargs)
        return self._server

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.check_seconds):
            try:
                self.check()
            except Exception as e:  # the API server away, a conflict storm: the current certificate serves on
                log.warning("webhook certificate: check failed (%s: %s); next in %ss", type(e).__name__, e,
                            self.check_seconds)

    def check(self, now: datetime.datetime | None = None, *, strict: bool = False) -> certs.Decision:
        """One round: read (and renew when due) the certificates, rewrite the files and reload the server when they
        changed, publish the bundle. A failed publish is logged (raised when `strict`); the new files are loaded all
        the same (the API server may already trust them: see certs.decide)."""
        if self.secret:
            decision, data = kube.serving_secret(*self.secret, self.sans, now=now, lifetimes=self.lifetimes)
        else:
            with self.lock:
                decision, data = certs.keep_in_folder(self.folder, self.cn, self.sans, now, self.lifetimes)
        if decision.action != certs.KEEP:
            log.info("webhook certificate: %s: %s", decision.action, decision.reason)
        served = {name: data[name] for name in certs.SERVED_FILES}
        changed = served != self._served
        if changed:
            with self.lock:
                certs.write_files(self.folder, served)
            self._served = served
        self.bundle = served["ca.crt"]
        # The bundle first: after a new CA, it is what makes the new certificate (and the old one) trusted.
        if self.publish is not None:
            try:
                self.publish(self.bundle)
            except Exception as e:
                if strict:
                    raise
                log.warning("webhook certificate: bundle not written (%s: %s); again in %ss", type(e).__name__, e,
                            self.check_seconds)
        if changed and self._server is not None and self._server.reload():
            leaf = certs.load_certs(served["tls.crt"])[0]
            log.info("webhook certificate: serving serial %x (until %s) in place", leaf.serial_number,
                     leaf.not_valid_after_utc)
        return decision
