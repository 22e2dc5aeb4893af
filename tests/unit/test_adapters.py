"""LoRA adapters (spec.adapters, spec.lora): what a Model with adapters renders, where each adapter's files are in the
pod, and status.adapters from the loaders' reports. Pure."""

from __future__ import annotations

import pytest

from builders import model
from modelplane_operator import adapters
from modelplane_operator.config import Config
from modelplane_operator.render import child_keys, render_children
from modelplane_operator.sync import child_key

PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
        "podSelector": {"matchLabels": {"app": "op"}}}
CFG = Config(network_policies=True, operator_peer=(PEER,))
A1 = {"name": "sql", "source": "pvc://weights/adapters/sql"}
A2 = {"name": "triage", "source": "hf://org/triage-lora", "credentialsSecretRef": {"name": "hf"}}


def lora_model(*adapter_list, **spec):
    return model("m", "ns", source="pvc://weights/tiny", uid="u", generation=1, gpus=0,
                 adapters=list(adapter_list), **spec)


def children(m, config=CFG):
    return {child_key(c): c for c in render_children(m, config)}


def pod_spec(m, config=CFG):
    return children(m, config)[("Deployment", "m")]["spec"]["template"]["spec"]


@pytest.mark.parametrize("spec, expected", [
    ({}, None),
    ({"adapters": []}, None),
    ({"adapters": [A1]}, {"maxRank": 16, "maxAdapters": 4}),
    ({"lora": {}}, {"maxRank": 16, "maxAdapters": 4}),  # LoRA on before the first adapter: adding it is no rollout
    ({"lora": {"maxRank": 64, "maxAdapters": 2}, "adapters": [A1]}, {"maxRank": 64, "maxAdapters": 2}),
])
def test_lora_is_on_with_an_adapter_or_spec_lora(spec, expected):
    assert adapters.lora_of({"source": "hf://a/b", **spec}) == expected


def test_the_servers_get_lora_flags_and_runtime_loading_only_with_lora():
    plain = pod_spec(model("m", "ns", uid="u", generation=1, gpus=0))
    assert [c["name"] for c in plain["containers"]] == ["vllm"]
    assert "--enable-lora" not in plain["containers"][0]["args"]
    assert "serviceAccountName" not in plain

    spec = pod_spec(lora_model(A1, lora={"maxRank": 32}))
    vllm, loader = spec["containers"]
    args = vllm["args"]
    assert "--enable-lora" in args
    assert args[args.index("--max-lora-rank") + 1] == "32"
    assert args[args.index("--max-loras") + 1] == "4"
    assert {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"} in vllm["env"]
    assert loader["name"] == "adapter-loader" and loader["image"] == CFG.adapter_loader_image
    assert spec["serviceAccountName"] == "m-adapters"
    assert spec["automountServiceAccountToken"] is False  # the token is mounted in the loader only
    token_mounts = [m for c in spec["containers"] for m in c["volumeMounts"] if m["name"] == "loader-token"]
    assert [m["mountPath"] for m in token_mounts] == [adapters.TOKEN_DIR]
    assert loader["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "loader"}


def test_the_models_own_engine_args_win_over_the_lora_defaults():
    args = pod_spec(lora_model(A1, engineArgs={"maxLoras": 1}))["containers"][0]["args"]
    assert args[args.index("--max-loras") + 1] == "1"


@pytest.mark.parametrize("source, where", [
    ("pvc://weights/adapters/sql", "/models/adapters/sql"),  # on the Model's own claim: already mounted
    ("pvc://weights", "/models"),
    ("pvc://other/x/y/", "/adapters/claims/other/x/y"),
    ("hf://org/sql-lora", "/adapters/fetched/sql"),
])
def test_where_the_server_finds_an_adapter(source, where):
    assert adapters.location({"source": "pvc://weights/tiny"}, {"name": "sql", "source": source}) == where


def test_other_claims_are_mounted_read_only_in_the_server_once_each():
    spec = pod_spec(lora_model(A1, {"name": "b", "source": "pvc://other/b"}, {"name": "c", "source": "pvc://other/c"}))
    claims = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert [v["persistentVolumeClaim"] for v in claims] == [
        {"claimName": "weights", "readOnly": True}, {"claimName": "other", "readOnly": True}]
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["/adapters/claims/other"]["readOnly"] is True
    assert mounts["/adapters/fetched"]["readOnly"] is True


def test_adapters_sharing_a_secret_share_one_env_var_and_the_key_reaches_the_loader():
    third = {"name": "c", "source": "hf://org/c", "credentialsSecretRef": {"name": "hf"}}
    m = lora_model(A1, A2, third, apiKeySecretRef={"name": "key"})
    loader = pod_spec(m)["containers"][1]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in loader["env"] if "valueFrom" in e}
    assert secret_env == {"VLLM_API_KEY": {"name": "key", "key": "api-key"},
                          adapters.token_env({"name": "hf"}): {"name": "hf", "key": "token"}}
    assert adapters.token_env({"name": "hf"}) == adapters.token_env({"name": "hf", "key": "token"})
    assert adapters.token_env({"name": "hf"}) != adapters.token_env({"name": "hf", "key": "other"})


def test_each_s3_secret_reaches_the_loader_under_a_prefix_of_its_own():
    m = lora_model({"name": "a", "source": "s3://b/a", "credentialsSecretRef": {"name": "s3-one"}},
                   {"name": "b", "source": "s3://b/b", "credentialsSecretRef": {"name": "s3-one"}},
                   {"name": "c", "source": "s3://b/c", "credentialsSecretRef": {"name": "s3-two"}})
    loader = pod_spec(m)["containers"][1]
    assert loader["envFrom"] == sorted(
        [{"prefix": adapters.s3_env_prefix({"name": n}), "secretRef": {"name": n}} for n in ("s3-one", "s3-two")],
        key=lambda e: e["prefix"])
    assert adapters.location({"source": "pvc://w/t"}, {"name": "c", "source": "s3://b/c"}) == "/adapters/fetched/c"
    assert not [e for e in loader["env"] if e["name"].startswith("MODELPLANE_ADAPTER_TOKEN_")]


def test_the_loader_may_read_its_own_model_only():
    objs = children(lora_model(A1))
    role = objs[("Role", "m-adapters")]
    assert role["rules"] == [{"apiGroups": ["modelplane.dev"], "resources": ["models"], "resourceNames": ["m"],
                              "verbs": ["get", "list", "watch"]}]
    binding = objs[("RoleBinding", "m-adapters")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "m-adapters", "namespace": "ns"}]
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == "u" for o in objs.values())
    # switched off, they are among the children the operator looks for (and deletes)
    assert {("ServiceAccount", "m-adapters"), ("Role", "m-adapters"), ("RoleBinding", "m-adapters")} <= \
        set(child_keys("m"))
    assert ("Role", "m-adapters") not in children(model("m", "ns", uid="u", generation=1))


def test_the_server_policy_admits_the_operator_on_the_loader_port_only():
    ingress = children(lora_model(A1))[("NetworkPolicy", "m")]["spec"]["ingress"]
    assert ingress[1] == {"from": [PEER], "ports": [{"port": adapters.LOADER_PORT, "protocol": "TCP"}]}
    assert PEER not in ingress[0]["from"]  # not on the server port: it is not autoscaled
    assert len(children(model("m", "ns", uid="u", generation=1))[("NetworkPolicy", "m")]["spec"]["ingress"]) == 1


@pytest.mark.parametrize("code, message, reason", [
    (404, "No adapter found for /models/adapters/missing", "SourceNotFound"),
    (500, "LoRA rank 32 is greater than max_lora_rank 16.", "RankTooLarge"),
    (500, "While loading /x, expected target modules in ['q_proj'] but received ['w_pack']", "BaseMismatch"),
    (500, "size mismatch for lora_A: copying a param with shape", "BaseMismatch"),
    (500, "CUDA out of memory", "LoadFailed"),
])
def test_a_refusal_is_classified_by_the_servers_answer(code, message, reason):
    assert adapters.classify(code, message) == reason


SPEC = {"adapters": [{"name": "a"}, {"name": "b"}]}
RANK = {"reason": "RankTooLarge", "message": "LoRA rank 32 is greater than max_lora_rank 16"}


@pytest.mark.parametrize("reports, expected", [
    ([], [("a", False, 0, "NoReadyReplicas"), ("b", False, 0, "NoReadyReplicas")]),
    ([{"loaded": ["a", "b"]}, {"loaded": ["a", "b"]}], [("a", True, 2, "Loaded"), ("b", True, 2, "Loaded")]),
    ([{"loaded": ["a", "b"]}, {"loaded": ["a"]}], [("a", True, 2, "Loaded"), ("b", False, 1, "Loading")]),
    ([{"loaded": ["a"], "failed": {"b": RANK}}], [("a", True, 1, "Loaded"), ("b", False, 0, "RankTooLarge")]),
    ([{"loaded": ["a", "b"]}, None], [("a", False, 1, "Unreported"), ("b", False, 1, "Unreported")]),
])
def test_status_says_where_each_adapter_is_loaded(reports, expected):
    got = adapters.adapter_status(SPEC, reports)
    assert [(a["name"], a["ready"], a["loadedReplicas"], a["reason"]) for a in got] == expected
    assert all(a["message"] for a in got)


def test_events_come_once_per_failure_and_when_an_adapter_becomes_ready():
    loading = adapters.adapter_status(SPEC, [{"loaded": []}])
    failed = adapters.adapter_status(SPEC, [{"loaded": ["a"], "failed": {"b": RANK}}])
    assert adapters.events(loading, failed) == [
        ("Normal", "AdapterLoaded", "a: loaded on 1 of 1 ready replicas"),
        ("Warning", "AdapterFailed", "b: RankTooLarge: LoRA rank 32 is greater than max_lora_rank 16")]
    assert adapters.events(failed, failed) == []
    fixed = adapters.adapter_status(SPEC, [{"loaded": ["a", "b"]}])
    assert adapters.events(failed, fixed) == [("Normal", "AdapterLoaded", "b: loaded on 1 of 1 ready replicas")]
