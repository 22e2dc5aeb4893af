"""The AutoGen configuration derived from a Model, and the agents library loading it."""

import json
import re

import pytest

from modelplane_agents import ModelNotFound, ModelNotReady, available_models, component_config, model_client
from modelplane_operator.agentconfig import api_key_env, client_component, config_files
from modelplane_operator.config import Config
import builders


def model(name="qwen", namespace="team-a", **spec):
    return builders.model(name, namespace, uid="u", **spec)


def write(tmp_path, pairs, default=None):
    for name, text in config_files(pairs, Config(), default).items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_component_config_points_at_the_model():
    c = client_component(model(servedModelName="qwen-2.5", engineArgs={"enableAutoToolChoice": True,
                                                                         "toolCallParser": "hermes"}), Config())
    assert c["provider"] == "autogen_ext.models.openai.OpenAIChatCompletionClient"
    assert c["config"]["model"] == "qwen-2.5"
    assert c["config"]["base_url"] == "http://qwen.team-a.svc.cluster.local:8000/v1"
    assert c["config"]["model_info"]["function_calling"] is True
    assert "api_key" not in c["config"]


def test_key_travels_by_env_var_name_only():
    keyed = model(apiKeySecretRef={"name": "keys"})
    assert api_key_env(keyed) == "MODELPLANE_API_KEY_TEAM_A_QWEN_CC7FBD91"  # stable: agents' pods name it
    assert api_key_env(model()) is None
    files = config_files([(keyed, True)], Config())
    assert json.loads(files["index.json"])["models"][0]["apiKeyEnv"] == "MODELPLANE_API_KEY_TEAM_A_QWEN_CC7FBD91"


def test_key_env_names_of_models_that_normalise_alike_differ():
    """team-a/x and team/a-x both read TEAM_A_X once `-` and `/` become `_`: the names must still differ, and stay
    valid env var names."""
    names = {api_key_env(model(name, ns, apiKeySecretRef={"name": "k"}))
             for ns, name in [("team-a", "x"), ("team", "a-x"), ("team-a-x", "y"), ("team", "a-x-y"), ("t", "e")]}
    assert len(names) == 5
    assert all(re.fullmatch(r"[A-Z_][A-Z0-9_]*", n) for n in names)
    assert api_key_env(model("x", "team-a", apiKeySecretRef={"name": "k"})).startswith("MODELPLANE_API_KEY_TEAM_A_X_")


def test_library_loads_a_real_autogen_client(tmp_path):
    folder = write(tmp_path, [(model(), True)])
    client = model_client("qwen", path=folder, temperature=0.1)
    assert type(client).__name__ == "OpenAIChatCompletionClient"
    assert client.model_info["family"] == "unknown"
    assert model_client(path=folder) is not None  # the only model is the default
    assert available_models(folder) == ["qwen"]


def test_unknown_model_names_the_available_ones(tmp_path):
    folder = write(tmp_path, [(model(), True), (model("llama"), True)], default="qwen")
    with pytest.raises(ModelNotFound, match=r"'mistral' is not injected here; available: qwen, llama"):
        component_config("mistral", path=folder)
    assert component_config(path=folder)["config"]["model"] == "qwen"


def test_injected_pod_default_is_the_model_behind_openai_base_url(tmp_path, monkeypatch):
    """A namespace's shared configuration has no default; the pod's own (its OPENAI_BASE_URL) decides."""
    folder = write(tmp_path, [(model(), True), (model("llama"), True)])
    with pytest.raises(ModelNotFound, match="no default model"):
        component_config(path=folder)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://llama.team-a.svc.cluster.local:8000/v1")
    assert component_config(path=folder)["config"]["model"] == "llama"


def test_key_from_env_and_clear_error_without_it(tmp_path, monkeypatch):
    folder = write(tmp_path, [(model(apiKeySecretRef={"name": "k"}), True)])
    with pytest.raises(ModelNotReady, match="MODELPLANE_API_KEY_TEAM_A_QWEN_CC7FBD91 is not set"):
        component_config("qwen", path=folder)
    monkeypatch.setenv("MODELPLANE_API_KEY_TEAM_A_QWEN_CC7FBD91", "sekret")
    assert component_config("qwen", path=folder)["config"]["api_key"] == "sekret"


def test_not_ready_model_refused_when_asked(tmp_path):
    folder = write(tmp_path, [(model(), False)])
    with pytest.raises(ModelNotReady):
        component_config("qwen", path=folder, require_ready=True)


def test_missing_config_folder_is_explained(tmp_path):
    with pytest.raises(ModelNotFound, match="MODELPLANE_CONFIG_DIR"):
        available_models(tmp_path / "nothing")


def test_pods_started_before_the_hashed_key_names_still_find_their_key(tmp_path, monkeypatch):
    folder = write(tmp_path, [(model(apiKeySecretRef={"name": "k"}), True)])
    monkeypatch.setenv("MODELPLANE_API_KEY_TEAM_A_QWEN", "from-before")  # the name an older operator injected
    assert component_config("qwen", path=folder)["config"]["api_key"] == "from-before"


@pytest.mark.parametrize("engine_args, expected", [
    ({}, (False, None)),
    ({"toolCallParser": "hermes"}, (False, "hermes")),
    ({"enableAutoToolChoice": True, "toolCallParser": "hermes"}, (True, "hermes")),
    ({"enableAutoToolChoice": False, "toolCallParser": "hermes"}, (False, "hermes")),
    ({"extraArgs": ["--enable-auto-tool-choice", "--tool-call-parser", "llama3_json"]}, (True, "llama3_json")),
    ({"extraArgs": ["--tool-call-parser=mistral"]}, (False, "mistral")),
    ({"enableAutoToolChoice": True, "toolCallParser": "hermes", "extraArgs": ["--no-enable-auto-tool-choice"]},
     (False, "hermes")),  # extraArgs come last on the command line: they win
])
def test_index_says_whether_the_server_serves_tool_choice_auto(engine_args, expected):
    from modelplane_operator.agentconfig import tool_calling

    m = model(engineArgs=engine_args)
    assert tuple(tool_calling(m["spec"]).values()) == expected
    [entry] = json.loads(config_files([(m, True)], Config())["index.json"])["models"]
    assert (entry["autoToolChoice"], entry["toolCallParser"]) == expected
    assert client_component(m, Config())["config"]["model_info"]["function_calling"] is expected[0]


@pytest.mark.parametrize("namespace, name, adapter, file", [
    ("team-a", "qwen", "", "team-a.qwen.json"),
    ("team-a", "qwen", "sql", "team-a.qwen.sql.json"),
    ("team", "a", "qwen", "team.a.qwen.json"),        # four parts: an adapter, never team/a.qwen's base (3 parts)
    ("team-a", "qwen", "json", "team-a.qwen.json.json"),
    ("a" * 63, "b" * 63, "c" * 63, f"{'a' * 63}.{'b' * 63}.{'c' * 63}.json"),  # within a ConfigMap key's 253
])
def test_each_model_and_adapter_has_a_file_of_its_own(namespace, name, adapter, file):
    """Namespaces, Model names and adapter names are DNS labels, without dots: the parts of a name are unambiguous,
    so a Model's base, its adapters and other Models never share a file."""
    from modelplane_operator.agentconfig import config_file

    assert config_file(model(name, namespace), adapter) == file
    assert re.fullmatch(r"[-._a-zA-Z0-9]{1,253}", file)  # a valid ConfigMap key


def test_no_two_references_share_a_file():
    from modelplane_operator.agentconfig import config_file

    refs = [(ns, name, adapter) for ns in ("a", "a-b", "team") for name in ("b", "a-b", "qwen", "sql")
            for adapter in ("", "b", "qwen", "sql", "json")]
    assert len({config_file(model(name, ns), adapter) for ns, name, adapter in refs}) == len(refs)


def test_an_adapters_configuration_is_its_models_with_the_adapters_name_as_model():
    base = model(servedModelName="qwen-2.5", apiKeySecretRef={"name": "k"},
                 engineArgs={"enableAutoToolChoice": True, "toolCallParser": "hermes"},
                 adapters=[{"name": "sql", "source": "hf://acme/sql"}])
    files = config_files([(base, True), (base, False, "sql")], Config(), default="qwen:sql")
    index = json.loads(files["index.json"])
    plain, sql = index["models"]
    assert index["default"] == "qwen:sql"
    assert (plain["adapter"], plain["servedModelName"], plain["file"]) == (None, "qwen-2.5", "team-a.qwen.json")
    assert (sql["name"], sql["adapter"], sql["servedModelName"], sql["file"], sql["ready"]) == (
        "qwen", "sql", "sql", "team-a.qwen.sql.json", False)
    same = ("namespace", "endpoint", "apiKeyEnv", "autoToolChoice", "toolCallParser", "sessionHeader")
    assert {k: sql[k] for k in same} == {k: plain[k] for k in same}  # served by the Model's replicas, with its key
    component = json.loads(files["team-a.qwen.sql.json"])
    assert component == client_component(base, Config(), adapter="sql")
    assert (component["label"], component["config"]["model"]) == ("qwen:sql", "sql")
    assert component["description"] == "modelplane Model team-a/qwen, LoRA adapter sql"
    assert component["config"]["base_url"] == json.loads(files["team-a.qwen.json"])["config"]["base_url"]
    assert component["config"]["model_info"]["function_calling"] is True
    assert json.loads(files["team-a.qwen.json"])["label"] == "qwen"
