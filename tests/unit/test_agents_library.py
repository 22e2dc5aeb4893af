"""The agents library loads only the OpenAI-compatible client the operator configures, never another provider."""

import json
import re

import pytest

from modelplane_agents import (ALLOWED_PROVIDERS, ModelNotFound, ModelNotReady, UnsupportedProvider,
                               agent_framework_client, available_models, component_config, model_client,
                               model_settings, openai_client)
from modelplane_operator.agent import injected_env, namespace_configmap, resolve
from modelplane_operator.agentconfig import CLIENT_PROVIDER, api_key_env, config_files
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


# --- LoRA adapters: "model:adapter" -------------------------------------------------------------------------------

TINY = {"metadata": {"name": "tiny", "namespace": "team-a", "uid": "u"},
        "spec": {"source": "hf://a/tiny", "apiKeySecretRef": {"name": "k"},
                 "adapters": [{"name": "sql", "source": "hf://a/sql"}, {"name": "triage", "source": "hf://a/t"}]},
        "status": {"phase": "Ready", "adapters": [{"name": "sql", "ready": True, "loadedReplicas": 1},
                                                  {"name": "triage", "ready": False, "loadedReplicas": 0}]}}
OTHER = {"metadata": {"name": "other", "namespace": "team-a", "uid": "o"}, "spec": {"source": "hf://a/other"},
         "status": {"phase": "Ready"}}
ENDPOINT = "http://tiny.team-a.svc.cluster.local:8000/v1"


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """The namespace ConfigMap of a namespace with tiny (and its adapters) and another Model, as a pod mounts it."""
    for var in ("OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    for name, text in namespace_configmap("team-a", [TINY, OTHER], Config())["data"].items():
        (tmp_path / name).write_text(text)
    monkeypatch.setenv(api_key_env(TINY), "sekret")
    return tmp_path


@pytest.mark.parametrize("name, served, adapter, ready", [
    ("tiny", "tiny", None, True),               # plain: the Model itself, as before adapters
    ("team-a/tiny", "tiny", None, True),
    ("tiny:sql", "sql", "sql", True),
    ("team-a/tiny:sql", "sql", "sql", True),
    ("tiny:triage", "triage", "triage", False),
])
def test_a_caller_names_an_adapter_as_model_colon_adapter(tiny, name, served, adapter, ready):
    settings = model_settings(name, path=tiny)
    assert (settings.name, settings.model, settings.adapter, settings.ready) == ("tiny", served, adapter, ready)
    assert (settings.base_url, settings.api_key) == (ENDPOINT, "sekret")  # the Model's replicas, with its key
    assert component_config(name, path=tiny)["config"]["model"] == served
    assert model_client(name, path=tiny).dump_component().config["model"] == served
    client = openai_client(name, path=tiny)
    assert (str(client.base_url), client.api_key) == (ENDPOINT + "/", "sekret")
    maf = agent_framework_client(name, path=tiny)
    assert maf.model == served and str(maf.client.base_url) == ENDPOINT + "/"


def test_adapters_are_listed_and_refused_by_their_own_name(tiny):
    assert available_models(tiny) == ["other", "tiny", "tiny:sql", "tiny:triage"]
    with pytest.raises(ModelNotFound, match=r"'tiny:typo' is not injected here; available: other, tiny, tiny:sql, "
                                            r"tiny:triage"):
        model_settings("tiny:typo", path=tiny)
    with pytest.raises(ModelNotFound, match="'sql' is not injected"):  # an adapter is named with its Model
        model_settings("sql", path=tiny)
    with pytest.raises(ModelNotReady, match=r"model 'tiny:triage' is not ready .*status\.adapters"):
        model_client("tiny:triage", path=tiny, require_ready=True)


@pytest.mark.parametrize("annotation, default_model", [
    ("tiny:sql", "sql"),     # the pod's default is an adapter: told apart from its Model by OPENAI_MODEL
    ("tiny", "tiny"),
    ("other,tiny:sql", "other"),
])
def test_an_injected_pods_default_may_be_an_adapter(tiny, monkeypatch, annotation, default_model):
    from modelplane_operator.inject import parse_models_annotation

    found = {("team-a", "tiny"): TINY, ("team-a", "other"): OTHER}.get
    for var in injected_env(resolve("team-a", parse_models_annotation(annotation), found), Config()):
        if "value" in var:
            monkeypatch.setenv(var["name"], var["value"])
    assert model_settings(path=tiny).model == default_model
    assert model_client(path=tiny).dump_component().config["model"] == default_model


def test_a_pod_whose_served_name_changed_since_it_started_still_finds_its_model(tiny, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", ENDPOINT)
    monkeypatch.setenv("OPENAI_MODEL", "tiny-before-a-rename")
    assert model_settings(path=tiny).model == "tiny"  # the Model itself, listed before its adapters


def test_an_agents_default_adapter_is_named_in_its_index(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv(api_key_env(TINY), "sekret")
    for name, text in config_files([(TINY, True), (TINY, True, "sql")], Config(), "tiny:sql").items():
        (tmp_path / name).write_text(text)
    assert model_settings(path=tmp_path).model == "sql"
    assert model_settings("tiny", path=tmp_path).model == "tiny"


def test_an_index_from_before_adapters_still_works(tmp_path, monkeypatch):
    """Pods keep their mounted files until the operator rewrites them: entries without "adapter" are Models."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv(api_key_env(TINY), "sekret")
    for name, text in config_files([(TINY, True), (OTHER, True)], Config(), "tiny").items():
        (tmp_path / name).write_text(text)
    index = json.loads((tmp_path / "index.json").read_text())
    for entry in index["models"]:
        del entry["adapter"]
    (tmp_path / "index.json").write_text(json.dumps(index))
    assert available_models(tmp_path) == ["tiny", "other"]
    assert model_settings(path=tmp_path).model == "tiny" and model_settings("other", path=tmp_path).adapter is None
