"""Pure rendering: a Model in, the Deployment and Service the operator applies out."""

import pytest

from modelplane_operator import engine, source
from modelplane_operator.config import Config
from modelplane_operator.render import render_deployment, render_service, spec_of

CFG = Config()


def model(spec=None, name="qwen-7b", namespace="team-a"):
    return {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model",
            "metadata": {"name": name, "namespace": namespace, "uid": "uid-1", "generation": 1},
            "spec": {"source": "hf://Qwen/Qwen2.5-7B-Instruct", **(spec or {})}}


def container(dep):
    return dep["spec"]["template"]["spec"]["containers"][0]


def env(dep):
    return {e["name"]: e for e in container(dep)["env"]}


def test_minimal_model_gets_schema_defaults():
    spec = spec_of(model())
    assert spec["replicas"] == 1 and spec["gpus"] == 1 and spec["startupTimeoutSeconds"] == 1800


def test_arguments_served_name_and_port():
    args = container(render_deployment(model(), CFG))["args"]
    assert args[:8] == ["--model", "Qwen/Qwen2.5-7B-Instruct", "--served-model-name", "qwen-7b",
                        "--host", "0.0.0.0", "--port", "8000"]
    assert container(render_deployment(model({"servedModelName": "qwen"}), CFG))["args"][3] == "qwen"


def test_gpu_limit_requests_toleration_and_image():
    dep = render_deployment(model({"gpus": 2}), CFG)
    c = container(dep)
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert c["resources"]["requests"] == {"cpu": "8", "memory": "32Gi"}
    assert c["image"] == CFG.vllm_image
    pod = dep["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "--tensor-parallel-size" in c["args"] and c["args"][c["args"].index("--tensor-parallel-size") + 1] == "2"


def test_cpu_profile_uses_cpu_image_and_no_gpu():
    dep = render_deployment(model({"gpus": 0}), CFG)
    c = container(dep)
    assert c["image"] == CFG.vllm_cpu_image
    assert "limits" not in c["resources"]
    assert "tolerations" not in dep["spec"]["template"]["spec"]
    assert "--tensor-parallel-size" not in c["args"]


def test_gpu_resource_name_configurable_per_operator_and_model():
    amd = Config(gpu_resource="amd.com/gpu")
    assert container(render_deployment(model(), amd))["resources"]["limits"] == {"amd.com/gpu": "1"}
    dep = render_deployment(model({"gpuResourceName": "intel.com/gpu"}), CFG)
    assert container(dep)["resources"]["limits"] == {"intel.com/gpu": "1"}


def test_placement_fields():
    spec = {"gpuType": "NVIDIA-H100-80GB-HBM3", "nodeSelector": {"zone": "a"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {}}, "priorityClassName": "high", "runtimeClassName": "nvidia"}
    pod = render_deployment(model(spec), CFG)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"zone": "a", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"][1]["key"] == "dedicated"
    assert pod["affinity"] == {"podAntiAffinity": {}}
    assert pod["priorityClassName"] == "high" and pod["runtimeClassName"] == "nvidia"


def test_user_resources_merge_over_defaults_but_gpu_limit_comes_from_gpus():
    spec = {"resources": {"requests": {"memory": "64Gi"}, "limits": {"nvidia.com/gpu": 7, "memory": "80Gi"}}}
    res = container(render_deployment(model(spec), CFG))["resources"]
    assert res["requests"] == {"cpu": "4", "memory": "64Gi"}
    assert res["limits"] == {"nvidia.com/gpu": "1", "memory": "80Gi"}


def test_probes_use_health_with_startup_budget():
    c = container(render_deployment(model({"startupTimeoutSeconds": 3600}), CFG))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] == 3600


def test_labels_selector_owner_and_scrape_annotations():
    dep = render_deployment(model(), CFG)
    meta = dep["metadata"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "modelplane"
    assert meta["labels"]["app.kubernetes.io/instance"] == "qwen-7b"
    assert dep["spec"]["selector"]["matchLabels"] == {"modelplane.dev/model": "qwen-7b"}
    assert meta["ownerReferences"] == [{"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model", "name": "qwen-7b",
                                        "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}]
    tmpl = dep["spec"]["template"]["metadata"]
    assert tmpl["annotations"]["prometheus.io/scrape"] == "true"
    assert tmpl["annotations"]["prometheus.io/path"] == "/metrics"
    assert tmpl["labels"]["modelplane.dev/model"] == "qwen-7b"


def test_shm_is_memory_backed():
    vols = {v["name"]: v for v in render_deployment(model(), CFG)["spec"]["template"]["spec"]["volumes"]}
    assert vols["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert vols["cache"] == {"name": "cache", "emptyDir": {}}


def test_cache_claim_mounted_as_hf_home():
    dep = render_deployment(model({"cache": {"claimName": "weights"}}), CFG)
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["cache"]["persistentVolumeClaim"] == {"claimName": "weights"}
    assert env(dep)["HF_HOME"]["value"] == "/cache/huggingface"


def test_api_key_and_hf_token_come_from_secrets_never_inline():
    spec = {"apiKeySecretRef": {"name": "keys"}, "credentialsSecretRef": {"name": "hf", "key": "tok"}}
    dep = render_deployment(model(spec), CFG)
    e = env(dep)
    assert e["VLLM_API_KEY"] == {"name": "VLLM_API_KEY",
                                 "valueFrom": {"secretKeyRef": {"name": "keys", "key": "api-key"}}}
    assert e["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "tok"}
    assert not any(a.startswith("--api-key") for a in container(dep)["args"])
    assert all("value" not in v for k, v in e.items() if k in ("VLLM_API_KEY", "HF_TOKEN"))


def test_pvc_source_mounts_claim_read_only():
    dep = render_deployment(model({"source": "pvc://weights/llama/8b"}), CFG)
    c = container(dep)
    assert c["args"][1] == "/models/llama/8b"
    assert {"name": "model-source", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["model-source"]["persistentVolumeClaim"] == {"claimName": "weights", "readOnly": True}
    assert source.parse("pvc://weights").model == "/models"


def test_object_store_sources_stream_with_credentials():
    s3 = render_deployment(model({"source": "s3://bucket/m", "credentialsSecretRef": {"name": "aws"}}), CFG)
    c = container(s3)
    assert c["args"][1] == "s3://bucket/m" and "runai_streamer" in c["args"]
    assert c["envFrom"] == [{"secretRef": {"name": "aws"}}]
    gs = render_deployment(model({"source": "gs://bucket/m", "credentialsSecretRef": {"name": "g", "key": "k.json"}}),
                           CFG)
    assert env(gs)["GOOGLE_APPLICATION_CREDENTIALS"]["value"] == "/var/run/secrets/modelplane/gcs/k.json"


def test_unknown_scheme_rejected_with_field_name():
    with pytest.raises(ValueError, match="spec.source"):
        source.parse("ftp://x/y")


def test_engine_args_map_to_vllm_flags():
    spec = spec_of(model({"gpus": 4, "engineArgs": {
        "maxModelLen": 8192, "gpuMemoryUtilization": 0.9, "dtype": "bfloat16", "enablePrefixCaching": False,
        "enableAutoToolChoice": True, "toolCallParser": "hermes", "pipelineParallelSize": 2, "enforceEager": False,
        "extraArgs": ["--swap-space", "4"]}}))
    flags = engine.engine_flags(spec)
    assert flags[:2] == ["--tensor-parallel-size", "2"]
    for pair in (["--max-model-len", "8192"], ["--gpu-memory-utilization", "0.9"], ["--dtype", "bfloat16"],
                 ["--tool-call-parser", "hermes"], ["--pipeline-parallel-size", "2"]):
        i = flags.index(pair[0])
        assert flags[i:i + 2] == pair
    assert "--no-enable-prefix-caching" in flags and "--enable-auto-tool-choice" in flags
    assert "--no-enforce-eager" in flags  # vLLM's BooleanOptionalAction: false is said explicitly
    assert flags[-2:] == ["--swap-space", "4"]


def test_engine_args_list_json_and_store_true_kinds():
    spec = spec_of(model({"engineArgs": {"hfOverrides": {"rope_scaling": {"factor": 2}}, "middleware": ["a", "b"],
                                         "allowedOrigins": ["x"]}}))
    flags = engine.engine_flags(spec)
    assert flags[flags.index("--hf-overrides") + 1] == '{"rope_scaling":{"factor":2}}'
    assert [f for f in flags if f == "--middleware"] == ["--middleware", "--middleware"]


def test_engine_option_names_follow_vllm_flags():
    from modelplane_operator.crd import vllm_options
    opts = vllm_options()["options"]
    assert opts["maxModelLen"]["flag"] == "--max-model-len"
    assert not {"model", "port", "host", "apiKey", "servedModelName", "tensorParallelSize"} & set(opts)


def test_service_fronts_the_pods():
    svc = render_service(model(), CFG)
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == {"modelplane.dev/model": "qwen-7b"}
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]


def test_pods_do_not_get_service_links_or_api_tokens():
    pod = render_deployment(model(), CFG)["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False and pod["automountServiceAccountToken"] is False


def test_rollout_never_removes_serving_replica_first():
    dep = render_deployment(model(), CFG)
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_config_from_env():
    cfg = Config.from_env({"MODELPLANE_GPU_RESOURCE": "amd.com/gpu", "MODELPLANE_VLLM_IMAGE": "x:1"})
    assert cfg.gpu_resource == "amd.com/gpu" and cfg.vllm_image == "x:1" and cfg.cluster_domain == "cluster.local"


def test_network_policy_only_when_enabled_and_scoped_to_served_namespaces():
    from modelplane_operator.render import render_children, render_network_policy

    assert [c["kind"] for c in render_children(model(), CFG)] == ["Deployment", "Service"]
    on = Config(network_policies="true")
    assert render_children(model(), on)[-1]["kind"] == "NetworkPolicy"
    np = render_network_policy(model({"allowedNamespaces": ["team-b"]}), on)
    assert np["spec"]["podSelector"] == {"matchLabels": {"modelplane.dev/model": "qwen-7b"}}
    rule = np["spec"]["ingress"][0]
    assert rule["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["team-a", "team-b"]
    everyone = render_network_policy(model({"allowedNamespaces": ["*"]}), on)
    assert everyone["spec"]["ingress"][0]["from"][0]["namespaceSelector"] == {}
