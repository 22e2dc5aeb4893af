"""Webhook certificate rotation against the real API server: two replicas serve one webhook configuration (one
webhook each, failurePolicy Fail, so an object is created only when the API server's TLS client trusts both), while
the certificates go from the previous operator's Secret to a new CA and a new serving certificate; and replicas
racing on the Secret end with one and the same certificate."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime
import json
import socket
import ssl
import threading
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from localcluster import free_port
from modelplane_operator import certs, kube as api, webhookcert
from unit.test_certs import legacy_secret  # the previous operator's Secret, as it wrote it

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"


@pytest.fixture
def in_process_api(cluster, monkeypatch):
    """The operator's own client (kube.request) in this process, with the admin kubeconfig."""
    import kubernetes
    # kubernetes reads $KUBECONFIG once, when imported: its default location is set instead
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(cluster.kubeconfig))
    api.api_client.cache_clear()
    yield api
    api.api_client.cache_clear()


class Serving:
    """A webhook server driven as kopf drives it, on an event loop of its own; keeps the path (kopf's webhook id)
    of every review it answers."""

    def __init__(self, server):
        self.server, self.paths, self.ready = server, [], threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _main(self):
        self.task = asyncio.current_task()

        async def allow(review, *, webhook, **_):
            self.paths.append(webhook)
            return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": review["request"]["uid"], "allowed": True}}
        try:
            async with self.server:
                async for _ in self.server(allow):
                    self.ready.set()
        except asyncio.CancelledError:
            pass

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *_):
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(10)


def test_two_replicas_stay_trusted_through_a_takeover_a_new_ca_and_a_new_serving_certificate(
        kube, in_process_api, namespace, tmp_path):
    """The API server keeps its TLS connections to a webhook open (and a reload in place leaves them be), so each
    step also points a webhook at a URL the API server has no connection to yet (a new host name, or a new
    caBundle: a new transport): the first review there is a new handshake by the API server's own TLS client."""
    secret, config, sans = "webhook-cert", f"certs-{namespace}", [HOST, "localhost"]
    old = legacy_secret(certs.utcnow(), sans=sans)
    kube.apply({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": secret, "namespace": namespace},
                "data": {k: base64.b64encode(v).decode() for k, v in old.items()}})
    ports = {"a": free_port(), "b": free_port()}
    kube.apply({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": config},
                "webhooks": [{"name": f"{r}.certs.modelplane.dev", "admissionReviewVersions": ["v1"],
                              "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 5,
                              "clientConfig": {"url": f"https://{HOST}:{port}/{r}0",
                                               "caBundle": base64.b64encode(old["ca.crt"]).decode()},
                              "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                              "objectSelector": {"matchLabels": {"probe": "webhook-cert"}},
                              "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"],
                                         "operations": ["CREATE"], "scope": "Namespaced"}]}
                             for r, port in ports.items()]})

    def publish(bundle: bytes) -> None:
        api.set_ca_bundle(config, base64.b64encode(bundle).decode())

    def route(r: str, host: str, path: str) -> None:
        kube.run("patch", "mutatingwebhookconfiguration", config, "--type=strategic", "-p", json.dumps(
            {"webhooks": [{"name": f"{r}.certs.modelplane.dev",
                           "clientConfig": {"url": f"https://{host}:{ports[r]}/{path}"}}]}))

    # settle: 1 h in production, 5 s here (the API server takes up a new caBundle within about a second)
    settle = datetime.timedelta(seconds=5)
    keepers = {r: webhookcert.CertKeeper(tmp_path / r, sans, secret=(namespace, secret), publish=publish,
                                         lifetimes=certs.Lifetimes(settle=settle)) for r in ports}
    servers = {r: Serving(keepers[r].server(addr=HOST, port=port, host=HOST)) for r, port in ports.items()}

    def probe(what: str, **paths: str) -> None:
        """ConfigMaps that both webhooks must admit (failurePolicy Fail), until the API server has taken up the
        configuration (each replica called at `paths`); every one of them admitted. Then a handshake here too, with
        the caBundle the configuration holds, against each replica."""
        for _ in range(40):
            proc = kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": f"p-{uuid.uuid4().hex[:8]}", "namespace": namespace,
                                            "labels": {"probe": "webhook-cert"}}}, check=False)
            assert proc.returncode == 0, f"{what}: {proc.stderr}"
            if all(servers[r].paths[-1:] == [path] for r, path in paths.items()):
                break
            time.sleep(0.25)
        else:
            raise AssertionError(f"{what}: the API server did not call {paths}")
        published = base64.b64decode(kube.get("mutatingwebhookconfiguration", config)["webhooks"][0]
                                     ["clientConfig"]["caBundle"])
        for r, port in ports.items():
            ctx = ssl.create_default_context(cadata=published.decode())
            with socket.create_connection((HOST, port), timeout=5) as raw, \
                    ctx.wrap_socket(raw, server_hostname=HOST) as tls:
                assert tls.getpeercert(binary_form=True) == x509.load_pem_x509_certificate(
                    (tmp_path / r / "tls.crt").read_bytes()).public_bytes(serialization.Encoding.DER), what

    # Both replicas of the previous operator serve its certificate.
    for r in ports:
        certs.write_files(tmp_path / r, old)
    try:
        with servers["a"], servers["b"]:
            probe("previous operator", a="a0", b="b0")
            # Replica a is upgraded: it takes over the Secret; the new CA joins the bundle, the certificate stays.
            bundle = keepers["a"].start()
            assert len(certs.load_certs(bundle)) == 2
            assert (tmp_path / "a" / "tls.crt").read_bytes() == old["tls.crt"]
            route("a", HOST, "a1"), route("b", HOST, "b1")
            probe("new CA in the bundle, both serve the previous operator's certificate", a="a1", b="b1")
            # Settled: a's next check has the new CA sign a new serving certificate, served at once; b (not yet
            # upgraded, or between its checks) still serves the previous operator's certificate.
            time.sleep(settle.total_seconds())
            assert keepers["a"].check().action == certs.RENEW_LEAF
            assert (tmp_path / "a" / "tls.crt").read_bytes() != old["tls.crt"]
            route("a", "localhost", "a2")
            probe("a serves the new CA's certificate, b the previous operator's", a="a2", b="b1")
            # b's check (or restart) catches up.
            keepers["b"].start()
            assert (tmp_path / "b" / "tls.crt").read_bytes() == (tmp_path / "a" / "tls.crt").read_bytes()
            route("b", "localhost", "b2")
            probe("both serve the new CA's certificate", a="a2", b="b2")
    finally:
        for keeper in keepers.values():
            keeper.stop()
        kube.run("delete", "mutatingwebhookconfiguration", config, "--wait=false", check=False)


def test_replicas_racing_on_the_secret_end_with_one_certificate(kube, in_process_api, namespace):
    def race(now=None):
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            return list(pool.map(lambda _: api.serving_secret(namespace, "raced", [HOST], now=now), range(4)))

    results = race()
    assert len({r[1]["tls.crt"] for r in results}) == 1
    assert sorted(r[0].action for r in results).count(certs.NEW_CA_AND_LEAF) == 1  # one made it, the others took it
    first = results[0][1]
    # all find it due at once: one renews, the others take its renewal (a 409 on their write, then a fresh read)
    results = race(certs.utcnow() + datetime.timedelta(days=300))
    assert len({r[1]["tls.crt"] for r in results}) == 1
    assert [r[0].action for r in results].count(certs.RENEW_LEAF) == 1
    assert results[0][1]["tls.crt"] != first["tls.crt"] and results[0][1]["ca.crt"] == first["ca.crt"]
    stored = kube.get("secret", "raced", namespace)
    assert base64.b64decode(stored["data"]["tls.crt"]) == results[0][1]["tls.crt"]
