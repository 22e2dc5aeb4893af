"""The webhook's certificate kept over a run (webhookcert): kopf's real server on a loopback port takes a renewed
certificate in place (TLS handshakes see the new serial, a connection opened before keeps working, no restart), and
replicas sharing a Secret (a fake API server with resourceVersions) agree after races; no Kubernetes needed."""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import http.client
import json
import socket
import ssl
import threading

import kopf
import pytest
from cryptography import x509
from kubernetes.client import ApiException

from modelplane_operator import certs, kube, webhookcert
from modelplane_operator.certs import KEEP, NEW_CA, RENEW_LEAF, Lifetimes, issued_by, load_certs

from test_certs import legacy_secret

HOST = "127.0.0.1"
MINUTE = datetime.timedelta(minutes=1)
# Renewal due a minute after issue (certificates start BACKDATE early, so a check a few minutes "later" still
# issues certificates a real TLS client takes as valid now).
SOON = Lifetimes(leaf=datetime.timedelta(days=1), leaf_renew_before=datetime.timedelta(days=1) - MINUTE,
                 settle=datetime.timedelta(0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def served_serial(port: int, bundle: bytes) -> int:
    """A client that trusts `bundle` (hostname checked) handshakes; the serial of the certificate it was served."""
    ctx = ssl.create_default_context(cadata=bundle.decode())
    with socket.create_connection((HOST, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=HOST) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def serial(pem: bytes) -> int:
    return load_certs(pem)[0].serial_number


class Running:
    """kopf's admission server protocol, as kopf drives it, on an event loop in a thread of its own."""

    def __init__(self, server: kopf.WebhookServer):
        self.server, self.configs, self.ready = server, [], threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _main(self):
        self.task = asyncio.current_task()
        async def allow(review, **_):
            return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": review["request"]["uid"], "allowed": True}}
        try:
            async with self.server:
                async for config in self.server(allow):
                    self.configs.append(config)  # kopf yields again after every restart of the server
                    self.ready.set()
        except asyncio.CancelledError:
            pass

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10), "the webhook server did not start"
        return self

    def __exit__(self, *_):
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(10)


def review(conn: http.client.HTTPSConnection, uid: str) -> dict:
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                                   "resource": {"group": "", "version": "v1", "resource": "pods"},
                                   "operation": "CREATE", "object": {}, "userInfo": {}}})
    conn.request("POST", "/probe", body, {"Content-Type": "application/json"})
    return json.loads(conn.getresponse().read())


def test_kopf_still_has_the_wait_that_the_reloading_server_replaces():
    assert callable(getattr(kopf.WebhookServer, "_WebhookServer__sleep_forever_or_until_ssl_files_change", None))
    assert "_build_ssl" in vars(kopf.WebhookServer)


def test_a_renewed_certificate_is_served_in_place_without_a_restart(tmp_path):
    keeper = webhookcert.CertKeeper(tmp_path, [HOST], lifetimes=SOON)
    bundle = keeper.start()
    port = free_port()
    try:
        # file_check_interval: kopf's own watch of the files would restart the server within 0.1 s
        with Running(keeper.server(addr=HOST, port=port, host=HOST, file_check_interval=0.1)) as running:
            first = serial((tmp_path / "tls.crt").read_bytes())
            assert served_serial(port, bundle) == first
            # a connection opened before the renewal, kept alive across it
            conn = http.client.HTTPSConnection(HOST, port, context=ssl.create_default_context(cadata=bundle.decode()))
            assert review(conn, "before")["response"]["allowed"]
            context = running.server.serving_context

            decision = keeper.check(certs.utcnow() + 2 * MINUTE)
            assert decision.action == RENEW_LEAF
            second = serial((tmp_path / "tls.crt").read_bytes())
            assert second != first and keeper.bundle == bundle  # same CA: clients need nothing new
            assert served_serial(port, bundle) == second  # the keeper reloaded it at once
            threading.Event().wait(0.5)
            assert review(conn, "after")["response"] == {"uid": "after", "allowed": True}
            assert running.server.serving_context is context and len(running.configs) == 1  # never restarted
            conn.close()
    finally:
        keeper.stop()


def test_files_changed_by_someone_else_are_loaded_by_the_server_itself_and_a_half_written_pair_is_not(tmp_path):
    """webhook_cert_source=files (cert-manager writes the files): the server checks them every file_check_interval."""
    data = certs.rotate({}, "modelplane-webhook", [HOST], lifetimes=SOON)[1]
    certs.write_files(tmp_path, data)
    server = webhookcert.ReloadingWebhookServer(addr=HOST, port=free_port(), host=HOST, certfile=tmp_path / "tls.crt",
                                                pkeyfile=tmp_path / "tls.key", file_check_interval=0.1)
    with Running(server):
        renewed = certs.rotate(data, "modelplane-webhook", [HOST], certs.utcnow() + 2 * MINUTE, SOON)[1]
        assert serial(renewed["tls.crt"]) != serial(data["tls.crt"])
        certs.write_files(tmp_path, {"tls.crt": renewed["tls.crt"]})  # the key not yet
        threading.Event().wait(0.5)
        assert served_serial(server.port, data["ca.crt"]) == serial(data["tls.crt"])  # the previous pair serves on
        certs.write_files(tmp_path, {"tls.key": renewed["tls.key"]})
        for _ in range(50):
            if served_serial(server.port, data["ca.crt"]) == serial(renewed["tls.crt"]):
                break
            threading.Event().wait(0.1)
        assert served_serial(server.port, data["ca.crt"]) == serial(renewed["tls.crt"])


def test_a_takeover_with_a_new_ca_keeps_every_client_and_replica_trusting_through_both_steps(tmp_path):
    """A local folder written by the previous operator (no CA key): the new CA joins the bundle, the old certificate
    serves on; then the new CA signs the served certificate. Real handshakes (OpenSSL picks the CA from a bundle of
    two) with the bundle of before and after each step."""
    old = legacy_secret(certs.utcnow(), sans=[HOST])
    certs.write_files(tmp_path, old)
    keeper = webhookcert.CertKeeper(tmp_path, [HOST], lifetimes=Lifetimes(settle=datetime.timedelta(0)),
                                    publish=(published := []).append)
    port = free_port()
    try:
        bundle_a = keeper.start()
        assert published == [bundle_a] and len(load_certs(bundle_a)) == 2
        with Running(keeper.server(addr=HOST, port=port, host=HOST)):
            assert served_serial(port, old["ca.crt"]) == serial(old["tls.crt"])  # nothing changed for old clients
            assert served_serial(port, bundle_a) == serial(old["tls.crt"])
            assert keeper.check().action == RENEW_LEAF  # settle is 0 here
            new = (tmp_path / "tls.crt").read_bytes()
            assert serial(new) != serial(old["tls.crt"])
            assert served_serial(port, bundle_a) == serial(new)  # the bundle published one step before trusts it
            assert keeper.bundle == bundle_a and published[-1] == bundle_a
            assert keeper.check().action == KEEP
    finally:
        keeper.stop()
    # ...and the bundle of after trusts a replica that still serves the old certificate
    certs.write_files(tmp_path, old)
    server = webhookcert.ReloadingWebhookServer(addr=HOST, port=free_port(), host=HOST, certfile=tmp_path / "tls.crt",
                                                pkeyfile=tmp_path / "tls.key")
    with Running(server):
        assert served_serial(server.port, bundle_a) == serial(old["tls.crt"])


# --- replicas sharing a Secret ---------------------------------------------------------------------------------------

class FakeApi:
    """One Secret behind GET, POST and PUT, with resourceVersions and 409s as the API server answers."""

    def __init__(self):
        self.secret, self.version, self.writes, self.before_write = None, 0, [], None

    def __call__(self, method, path, body=None, **_):
        if method == "GET":
            if self.secret is None:
                raise ApiException(status=404, reason="Not Found")
            return copy.deepcopy(self.secret)
        if self.before_write:  # another replica gets in between our read and our write
            hook, self.before_write = self.before_write, None
            hook()
        if method == "POST" and self.secret is not None:
            raise ApiException(status=409, reason="AlreadyExists")
        if method == "PUT" and body["metadata"]["resourceVersion"] != self.secret["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        assert method in ("POST", "PUT"), method
        self.version += 1
        self.secret = copy.deepcopy(body)
        self.secret["metadata"]["resourceVersion"] = str(self.version)
        self.writes.append((method, body["type"]))
        return copy.deepcopy(self.secret)

    def data(self) -> dict[str, bytes]:
        return {k: base64.b64decode(v) for k, v in self.secret["data"].items()}

    def put_data(self, data: dict[str, bytes]) -> None:
        self.version += 1
        self.secret["data"] = {k: base64.b64encode(v).decode() for k, v in data.items()}
        self.secret["metadata"]["resourceVersion"] = str(self.version)


@pytest.fixture
def api(monkeypatch):
    fake = FakeApi()
    monkeypatch.setattr(kube, "request", fake)
    return fake


def replica(tmp_path, name, published, lifetimes=Lifetimes()):
    return webhookcert.CertKeeper(tmp_path / name, [HOST], secret=("modelplane", "webhook-cert"),
                                  publish=published.append, lifetimes=lifetimes)


def test_replicas_share_one_secret_and_the_ca_key_never_reaches_their_files(api, tmp_path):
    published = []
    a, b = replica(tmp_path, "a", published), replica(tmp_path, "b", published)
    assert a.start() == b.start() == api.data()["ca.crt"]
    a.stop(), b.stop()
    assert api.writes == [("POST", "kubernetes.io/tls")]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    assert (tmp_path / "a" / "tls.crt").read_bytes() == (tmp_path / "b" / "tls.crt").read_bytes()
    assert published == [api.data()["ca.crt"]] * 2


def test_a_replica_that_loses_a_race_takes_what_the_winner_wrote(api, tmp_path):
    published = []
    a, b = replica(tmp_path, "a", published), replica(tmp_path, "b", published)
    # both find no Secret; b creates it between a's read and a's write
    api.before_write = lambda: b.check()
    a.check()
    assert [w[0] for w in api.writes] == ["POST"]
    assert (tmp_path / "a" / "tls.crt").read_bytes() == (tmp_path / "b" / "tls.crt").read_bytes()
    # both find the serving certificate due; b renews it between a's read and a's write: a's PUT conflicts
    later = certs.utcnow() + 300 * datetime.timedelta(days=1)
    api.before_write = lambda: b.check(later)
    assert a.check(later).action == KEEP  # after the 409 a read the Secret again: b had renewed it
    assert [w[0] for w in api.writes] == ["POST", "PUT"]
    assert (tmp_path / "a" / "tls.crt").read_bytes() == (tmp_path / "b" / "tls.crt").read_bytes() \
        == api.data()["tls.crt"]


def test_a_replica_picks_up_another_replicas_renewal_at_its_next_check(api, tmp_path):
    published = []
    a, b = replica(tmp_path, "a", published), replica(tmp_path, "b", published)
    a.check(), b.check()
    before = (tmp_path / "b" / "tls.crt").read_bytes()
    assert a.check(certs.utcnow() + 300 * datetime.timedelta(days=1)).action == RENEW_LEAF
    assert (tmp_path / "b" / "tls.crt").read_bytes() == before  # b serves the previous one meanwhile...
    assert issued_by(load_certs(before)[0], load_certs(api.data()["ca.crt"])[0])  # ...which the bundle trusts
    assert b.check().action == KEEP
    assert (tmp_path / "b" / "tls.crt").read_bytes() == api.data()["tls.crt"] != before


def test_a_secret_of_the_previous_operator_is_taken_over_in_place(api, tmp_path):
    old = legacy_secret(certs.utcnow(), sans=[HOST])
    api.secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                  "metadata": {"name": "webhook-cert", "namespace": "modelplane", "resourceVersion": "7",
                               "labels": {"app.kubernetes.io/part-of": "modelplane"},
                               "managedFields": [{"manager": "modelplane-operator"}]},
                  "data": {k: base64.b64encode(v).decode() for k, v in old.items()}}
    published = []
    a = replica(tmp_path, "a", published)
    assert a.check().action == NEW_CA
    data = api.data()
    assert data["tls.crt"] == old["tls.crt"] and len(load_certs(data["ca.crt"])) == 2 and data["ca.key"]
    assert api.secret["metadata"]["labels"] == {"app.kubernetes.io/part-of": "modelplane"}
    assert "managedFields" not in api.secret["metadata"] and api.writes == [("PUT", "kubernetes.io/tls")]
    assert published == [data["ca.crt"]]
    assert (tmp_path / "a" / "tls.crt").read_bytes() == old["tls.crt"]


def test_a_failed_check_or_publish_leaves_the_served_certificate_and_is_retried(api, tmp_path, caplog, monkeypatch):
    failures = []

    def publish(bundle):
        if not failures:
            failures.append(bundle)
            raise ApiException(status=503, reason="Service Unavailable")
    keeper = webhookcert.CertKeeper(tmp_path, [HOST], secret=("modelplane", "webhook-cert"), publish=publish,
                                    check_seconds=0.05)
    with pytest.raises(ApiException):
        keeper.check(strict=True)  # at start: the caller (kopf's startup handler) retries
    keeper.start()
    try:
        served = (tmp_path / "tls.crt").read_bytes()
        def down(*_, **__):
            raise ApiException(status=500, reason="boom")
        monkeypatch.setattr(kube, "request", down)
        threading.Event().wait(0.3)
        assert caplog.text.count("check failed (ApiException") >= 2  # tried again, and again
        assert (tmp_path / "tls.crt").read_bytes() == served
        monkeypatch.setattr(kube, "request", api)
        api.put_data(certs.rotate(api.data(), "modelplane-webhook", [HOST],
                                  certs.utcnow() + 300 * datetime.timedelta(days=1))[1])
        for _ in range(50):
            if (tmp_path / "tls.crt").read_bytes() != served:
                break
            threading.Event().wait(0.05)
        assert (tmp_path / "tls.crt").read_bytes() == api.data()["tls.crt"] != served  # back, and caught up
    finally:
        keeper.stop()


def test_ensure_serving_secret_still_returns_the_bundle_and_writes_the_served_files(api, tmp_path):
    ca = kube.ensure_serving_secret("modelplane", "webhook-cert", [HOST], tmp_path)
    assert ca == api.data()["ca.crt"] and not (tmp_path / "ca.key").exists()
    assert (tmp_path / "tls.crt").read_bytes() == api.data()["tls.crt"]


def test_a_bundle_not_written_is_logged_and_the_renewed_files_are_served_all_the_same(tmp_path, caplog):
    def publish(bundle):
        raise RuntimeError("webhook configuration away")
    keeper = webhookcert.CertKeeper(tmp_path, [HOST], publish=publish, lifetimes=SOON)
    with pytest.raises(RuntimeError):
        keeper.check(strict=True)
    first = (tmp_path / "tls.crt").read_bytes()
    assert keeper.check(certs.utcnow() + 2 * MINUTE).action == RENEW_LEAF  # no raise
    assert "bundle not written (RuntimeError: webhook configuration away)" in caplog.text
    assert (tmp_path / "tls.crt").read_bytes() != first
