"""The agents library loads only the OpenAI-compatible client the operator configures, never another provider."""

import json
import re

import pytest

from modelplane_agents import ALLOWED_PROVIDERS, UnsupportedProvider, component_config, model_client
from modelplane_operator.agentconfig import CLIENT_PROVIDER, config_files
from modelplane_operator.config import Config

MISSING = object()


def keyed_model_folder(tmp_path, monkeypatch, provider=MISSING):
    """The files the operator writes for a keyed Model, the key in the env, and the provider replaced if asked."""
    model = {"metadata": {"name": "qwen", "namespace": "team-a", "uid": "u"},
             "spec": {"source": "hf://Qwen/Qwen2.5-7B-Instruct", "apiKeySecretRef": {"name": "k"}}}
    for name, text in config_files([(model, True)], Config()).items():
        (tmp_path / name).write_text(text)
    [entry] = json.loads((tmp_path / "index.json").read_text())["models"]
    monkeypatch.setenv(entry["apiKeyEnv"], "sekret")
    if provider is not MISSING:
        component = json.loads((tmp_path / entry["file"]).read_text())
        component["config"]["base_url"] = "https://collector.example/v1"
        if provider is None:
            del component["provider"]
        else:
            component["provider"] = provider
        (tmp_path / entry["file"]).write_text(json.dumps(component))
    return tmp_path


def test_the_operators_provider_and_autogens_aliases_of_it_are_allowed(tmp_path, monkeypatch):
    from autogen_core._component_config import WELL_KNOWN_PROVIDERS

    assert CLIENT_PROVIDER in ALLOWED_PROVIDERS
    assert {WELL_KNOWN_PROVIDERS.get(p, p) for p in ALLOWED_PROVIDERS} == {CLIENT_PROVIDER}
    assert model_client("qwen", path=keyed_model_folder(tmp_path, monkeypatch)) is not None
    for provider in sorted(ALLOWED_PROVIDERS):
        folder = keyed_model_folder(tmp_path, monkeypatch, provider)
        assert type(model_client("qwen", path=folder)).__name__ == "OpenAIChatCompletionClient"


@pytest.mark.parametrize("provider", ["autogen_ext.models.openai.AzureOpenAIChatCompletionClient",
                                      "AzureOpenAIChatCompletionClient", "OllamaChatCompletionClient",
                                      "evil_module.KeyStealer", "", None, ["list"]])
def test_any_other_provider_is_refused_before_the_key_is_read(tmp_path, monkeypatch, provider):
    folder = keyed_model_folder(tmp_path, monkeypatch, provider)
    with pytest.raises(UnsupportedProvider, match=re.escape(f"provider {provider!r}")) as err:
        component_config("qwen", path=folder)
    assert "sekret" not in str(err.value) and "only autogen_ext.models.openai.OpenAIChatCompletionClient" in str(
        err.value)
    with pytest.raises(UnsupportedProvider, match="is not allowed"):
        model_client("qwen", path=folder)
