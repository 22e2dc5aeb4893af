"""The adapter loader's decisions (what to load, reload, unload, and when the replica may take requests), against a
stand-in for vLLM's adapter API that answers as vLLM 0.32 does (codes and messages from the probe in NOTES.md); and
its Hugging Face download against a local HTTP server. The real server is exercised in tests/node/test_node_lora.py."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modelplane_operator import adapterloader
from modelplane_operator.adapterloader import Loader

SPEC = {"source": "pvc://weights/tiny"}
A = {"name": "a", "source": "pvc://weights/adapters/a"}
B = {"name": "b", "source": "pvc://weights/adapters/b"}
BIG = {"name": "big", "source": "pvc://weights/adapters/big"}


class VLLM:
    """vLLM's adapter endpoints as the loader sees them: folders it can load, a max rank, a restart."""

    def __init__(self, folders=("/models/adapters/a", "/models/adapters/b")):
        self.folders, self.up, self.adapters, self.calls = set(folders), True, {}, []

    def adapters_listed(self):
        return set(self.adapters) if self.up else None

    def load(self, name, path, replace):
        self.calls.append(("load", name, replace))
        if name in self.adapters and not replace:
            return 400, json.dumps({"error": {"message": f"The lora adapter '{name}' has already been loaded."}})
        if path.endswith("big"):
            return 500, json.dumps({"error": {"message": "LoRA rank 32 is greater than max_lora_rank 16."}})
        if path not in self.folders:
            return 404, json.dumps({"error": {"message": f"No adapter found for {path}"}})
        self.adapters[name] = path
        return 200, "Success"

    def unload(self, name):
        self.calls.append(("unload", name))
        return (200, "ok") if self.adapters.pop(name, None) else (404, "{}")

    def restart(self):
        self.adapters = {}


class Server(adapterloader.Server):
    def __init__(self, vllm):
        self.vllm = vllm

    def adapters(self):
        return self.vllm.adapters_listed()

    def load(self, name, path, replace):
        return self.vllm.load(name, path, replace)

    def unload(self, name):
        return self.vllm.unload(name)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def loader(vllm, *adapter_list):
    clock = Clock()
    out = Loader(Server(vllm), env={}, now=clock)
    out.clock = clock
    out.set_spec({**SPEC, "adapters": list(adapter_list)})
    return out


def test_not_ready_until_the_server_answers_and_every_adapter_was_tried():
    vllm = VLLM()
    vllm.up = False
    ld = loader(vllm, A, B)
    ld.step()
    assert not ld.ready() and vllm.calls == []
    vllm.up = True
    ld.step()
    assert ld.ready()
    assert ld.report() == {"ready": True, "loaded": ["a", "b"], "failed": {}}


def test_a_restarted_server_gets_its_adapters_back_and_the_replica_waits_for_them():
    vllm = VLLM()
    ld = loader(vllm, A, B)
    ld.step()
    vllm.restart()
    assert not ld.ready()  # its adapters are gone: no requests until they are back
    ld.step()
    assert ld.ready() and set(vllm.adapters) == {"a", "b"}


def test_an_adapter_added_later_does_not_hold_a_serving_replica_back():
    vllm = VLLM()
    ld = loader(vllm, A)
    ld.step()
    ld.set_spec({**SPEC, "adapters": [A, B]})
    assert ld.ready()
    ld.step()
    assert ld.report()["loaded"] == ["a", "b"]


def test_a_broken_adapter_is_reported_and_leaves_the_others_and_readiness_alone():
    vllm = VLLM()
    missing = {"name": "gone", "source": "pvc://weights/adapters/gone"}
    ld = loader(vllm, A, BIG, missing)
    ld.step()
    assert ld.ready()
    report = ld.report()
    assert report["loaded"] == ["a"]
    assert report["failed"] == {
        "big": {"reason": "RankTooLarge", "message": "LoRA rank 32 is greater than max_lora_rank 16."},
        "gone": {"reason": "SourceNotFound", "message": "No adapter found for /models/adapters/gone"}}


def test_a_failed_adapter_is_tried_again_later_or_at_once_when_its_source_changes():
    vllm = VLLM()
    missing = {"name": "c", "source": "pvc://weights/adapters/c"}
    ld = loader(vllm, missing)
    ld.step()
    ld.step()
    assert vllm.calls == [("load", "c", False)]  # not again at once
    vllm.folders.add("/models/adapters/c")
    ld.clock.t += adapterloader.RETRY_FAILED
    ld.step()
    assert ld.report() == {"ready": True, "loaded": ["c"], "failed": {}}
    ld.set_spec({**SPEC, "adapters": [{"name": "c", "source": "pvc://weights/adapters/a"}]})
    ld.step()
    assert vllm.calls[-1] == ("load", "c", True)  # a new source replaces the loaded one in place
    assert vllm.adapters["c"] == "/models/adapters/a"


def test_removed_adapters_are_unloaded_and_leave_the_report():
    vllm = VLLM()
    ld = loader(vllm, A, B)
    ld.step()
    ld.set_spec({**SPEC, "adapters": [A]})
    ld.step()
    assert set(vllm.adapters) == {"a"} and ("unload", "b") in vllm.calls
    assert ld.report()["loaded"] == ["a"]
    vllm.restart()
    ld.step()
    assert ld.ready() and set(vllm.adapters) == {"a"}


def test_a_restarted_loader_takes_over_what_the_server_already_has():
    vllm = VLLM()
    first = Loader(Server(vllm), env={})
    first.set_spec({**SPEC, "adapters": [A]})
    first.step()
    second = Loader(Server(vllm), env={})
    second.set_spec({**SPEC, "adapters": [A]})
    second.step()
    assert vllm.calls[-1] == ("load", "a", True) and second.ready()


class Answering(BaseHTTPRequestHandler):
    """A quiet handler whose GET answers a body, or 404 for None."""

    def answer(self, body: bytes | None) -> None:
        self.send_response(404 if body is None else 200)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


class HubHandler(Answering):
    files = {"adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": b"\x00" * 100}
    seen: list = []

    def do_GET(self):  # noqa: N802
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/api/models/org/sql-lora":
            body = json.dumps({"siblings": [{"rfilename": n} for n in [*self.files, ".gitattributes"]]}).encode()
        elif self.path.startswith("/org/sql-lora/resolve/main/"):
            body = self.files[self.path.rsplit("/", 1)[1]]
        else:
            body = None
        self.answer(body)


def serving(handler):
    """A local HTTP server with `handler` (its record of requests emptied): its base URL, until the test ends."""
    handler.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def hub():
    yield from serving(HubHandler)


def test_an_hf_adapter_is_downloaded_once_with_its_token(hub, tmp_path):
    dest = tmp_path / "sql"
    adapterloader.fetch_hf("org/sql-lora", dest, "tok", hub)
    assert sorted(p.name for p in dest.iterdir()) == [".modelplane-source", *sorted(HubHandler.files)]
    assert (dest / "adapter_config.json").read_bytes() == b'{"r": 8}'
    assert {auth for _, auth in HubHandler.seen} == {"Bearer tok"}
    calls = len(HubHandler.seen)
    adapterloader.fetch_hf("org/sql-lora", dest, "tok", hub)
    assert len(HubHandler.seen) == calls  # already there


def test_an_hf_adapter_that_cannot_be_fetched_is_reported(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(adapterloader.adapters, "FETCHED", str(tmp_path))
    vllm = VLLM()
    ld = Loader(Server(vllm), env={"HF_ENDPOINT": hub})
    ld.set_spec({**SPEC, "adapters": [{"name": "x", "source": "hf://org/missing"}]})
    ld.step()
    failed = ld.report()["failed"]["x"]
    assert failed["reason"] == "FetchFailed" and "404" in failed["message"]
    assert vllm.calls == []


# AWS's own worked examples of Signature Version 4 (its "signature calculations" examples for S3, with its example
# credentials): the loader signs S3 requests itself, so it must give the same signatures.
AWS_EXAMPLE = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


@pytest.mark.parametrize("url, signature", [
    ("https://examplebucket.s3.amazonaws.com/?lifecycle",
     "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
    ("https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
     "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
])
def test_s3_requests_are_signed_as_aws_signs_them(url, signature):
    import datetime
    headers = adapterloader.sigv4_headers("GET", url, *AWS_EXAMPLE, "us-east-1",
                                          datetime.datetime(2013, 5, 24, tzinfo=datetime.timezone.utc))
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}")
    assert headers["x-amz-date"] == "20130524T000000Z"


class StoreHandler(Answering):
    """An S3-compatible store's two calls, path-style: ListObjectsV2 and GET of an object."""
    objects = {"adapters/sql/adapter_config.json": b'{"r": 8}',
               "adapters/sql/adapter_model.safetensors": b"\x01" * 64}
    seen: list = []

    def do_GET(self):  # noqa: N802
        import urllib.parse
        url = urllib.parse.urlsplit(self.path)
        type(self).seen.append((url.path, dict(urllib.parse.parse_qsl(url.query)), self.headers.get("Authorization")))
        if url.path == "/bucket/" and "list-type=2" in url.query:
            prefix = dict(urllib.parse.parse_qsl(url.query)).get("prefix", "")
            keys = "".join(f"<Contents><Key>{k}</Key></Contents>" for k in self.objects if k.startswith(prefix))
            body = ('<?xml version="1.0"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    f"{keys}</ListBucketResult>").encode()
        elif url.path.startswith("/bucket/") and url.path[len("/bucket/"):] in self.objects:
            body = self.objects[url.path[len("/bucket/"):]]
        else:
            body = None
        self.answer(body)


@pytest.fixture
def store():
    yield from serving(StoreHandler)


def test_an_s3_adapter_is_listed_and_downloaded_with_its_secrets_keys(store, tmp_path):
    prefix = "MODELPLANE_ADAPTER_S3_ABC_"
    env = {prefix + "AWS_ACCESS_KEY_ID": "id", prefix + "AWS_SECRET_ACCESS_KEY": "secret",
           prefix + "AWS_ENDPOINT_URL": store, "AWS_ACCESS_KEY_ID": "another Secret's"}
    dest = tmp_path / "sql"
    adapterloader.fetch_s3("bucket/adapters/sql", dest, env, prefix)
    assert {p.name: p.read_bytes() for p in dest.iterdir() if p.name != ".modelplane-source"} == {
        "adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": b"\x01" * 64}
    listing = StoreHandler.seen[0]
    assert listing[1] == {"list-type": "2", "prefix": "adapters/sql/", "delimiter": "/"}
    assert all(auth.startswith("AWS4-HMAC-SHA256 Credential=id/") for _, _, auth in StoreHandler.seen)
    calls = len(StoreHandler.seen)
    adapterloader.fetch_s3("bucket/adapters/sql", dest, env, prefix)
    assert len(StoreHandler.seen) == calls  # already there
    with pytest.raises(FileNotFoundError):
        adapterloader.fetch_s3("bucket/adapters/none", tmp_path / "none", env, prefix)
