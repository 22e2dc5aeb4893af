"""The real vLLM servers the end-to-end tests share (one of each kind for the whole session: each takes a minute or
more to start on two cores): `plain`, the tiny Model as a Model without options renders it, and `secured`, keyed and
with tool calling (auto tool choice, hermes parser)."""

from pathlib import Path

import pytest

from folderscope import until_folder_done
from localvllm import TEST_API_KEY, make_weights_volume, served_together, tiny_model


@pytest.fixture(scope="session")
def weights_volume() -> Path:
    """A local stand-in for the PVC `weights`: holds the tiny model at tiny/ (made once, then cached)."""
    return make_weights_volume()


@pytest.fixture(scope="session")
def plain_logs(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


PLAIN = tiny_model("tiny", engineArgs={"maxModelLen": 512})
SECURED = tiny_model("tiny-tools", apiKeySecretRef={"name": "tiny-key"},
                     engineArgs={"maxModelLen": 512, "enableAutoToolChoice": True, "toolCallParser": "hermes"})


@pytest.fixture(scope="session")
def servers(weights_volume, plain_logs):
    """Both servers, started together (a start is mostly waiting: together they take little more than one), and
    stopped once this folder's tests are done."""
    return until_folder_done(__file__).enter_context(served_together(
        [(PLAIN, None), (SECURED, {"tiny-key": {"api-key": TEST_API_KEY}})], weights_volume, plain_logs))


@pytest.fixture(scope="session")
def plain(servers):
    return PLAIN, servers[0]


@pytest.fixture(scope="session")
def secured(servers):
    return SECURED, servers[1]
