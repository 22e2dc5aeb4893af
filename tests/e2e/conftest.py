"""The real vLLM servers the end-to-end tests share (one of each kind for the whole session: each takes a minute or
more to start on two cores): `plain`, the tiny Model as a Model without options renders it, and `secured`, keyed and
with tool calling (auto tool choice, hermes parser)."""

from pathlib import Path

import pytest

from localvllm import TEST_API_KEY, make_weights_volume, served, tiny_model


@pytest.fixture(scope="session")
def weights_volume() -> Path:
    """A local stand-in for the PVC `weights`: holds the tiny model at tiny/ (made once, then cached)."""
    return make_weights_volume()


@pytest.fixture(scope="session")
def plain_logs(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def plain(weights_volume, plain_logs):
    model = tiny_model("tiny", engineArgs={"maxModelLen": 512})
    with served(model, weights_volume, plain_logs) as base:
        yield model, base


@pytest.fixture(scope="session")
def secured(weights_volume, tmp_path_factory):
    model = tiny_model("tiny-tools", apiKeySecretRef={"name": "tiny-key"},
                       engineArgs={"maxModelLen": 512, "enableAutoToolChoice": True, "toolCallParser": "hermes"})
    secrets = {"tiny-key": {"api-key": TEST_API_KEY}}
    with served(model, weights_volume, tmp_path_factory.mktemp("logs"), secrets) as base:
        yield model, base
