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
    assert c["resources"]["requests"] == {"cpu": "8", "memory": "32Gi", "ephemeral-storage": "40Gi"}
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
    assert res["requests"] == {"cpu": "4", "memory": "64Gi", "ephemeral-storage": "20Gi"}
    assert res["limits"] == {"nvidia.com/gpu": "1", "memory": "80Gi"}


def test_probes_use_health_with_startup_budget():
    c = container(render_deployment(model({"startupTimeoutSeconds": 3600}), CFG))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] == 3600
    assert c["startupProbe"]["periodSeconds"] <= 2  # a started server (a cold start from zero) is found at once


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
    assert vols["cache"] == {"name": "cache", "emptyDir": {"sizeLimit": "150Gi"}}


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


def test_derived_tensor_parallel_size_leaves_room_for_data_parallel_engines():
    """vLLM uses tensor × pipeline × prefill-context × data parallel GPUs: the derived tp must fill gpus, not more."""
    for gpus, args, tp in [(4, {"dataParallelSize": 2}, 2), (8, {"pipelineParallelSize": 2, "dataParallelSize": 2}, 2),
                           (4, {"dataParallelSize": 4}, 1), (8, {"prefillContextParallelSize": 2}, 4),
                           (4, {}, 4), (0, {"dataParallelSize": 2}, 1), (4, {"tensorParallelSize": 2}, 2)]:
        spec = spec_of(model({"gpus": gpus, "engineArgs": args}))
        assert engine.tensor_parallel_size(spec) == tp, (gpus, args)
    flags = engine.engine_flags(spec_of(model({"gpus": 4, "engineArgs": {"dataParallelSize": 2}})))
    assert flags[:2] == ["--tensor-parallel-size", "2"]
    assert flags[flags.index("--data-parallel-size") + 1] == "2"


def test_empty_list_option_renders_nothing():
    """vLLM's list options take one value or more (nargs +): a bare --flag is refused, so [] means unset."""
    from modelplane_operator.crd import vllm_options
    assert vllm_options()["options"]["ignorePatterns"]["kind"] == "list"
    flags = engine.engine_flags(spec_of(model({"engineArgs": {"ignorePatterns": [], "middleware": []}})))
    assert "--ignore-patterns" not in flags and "--middleware" not in flags
    flags = engine.engine_flags(spec_of(model({"engineArgs": {"ignorePatterns": ["*.pt"]}})))
    assert flags[flags.index("--ignore-patterns"):][:2] == ["--ignore-patterns", "*.pt"]


def test_stored_options_this_vllm_lacks_or_the_operator_refuses_are_ignored_not_fatal():
    """A Model stored under an older vLLM's schema may name an option vllm_options.json no longer has; one stored
    before sslCertfile/headless were refused may still set them. Neither may crash the reconcile or reach vLLM."""
    spec = spec_of(model({"engineArgs": {"maxModelLen": 4096, "goneInThisVllm": 3, "sslCertfile": "/tls/crt",
                                         "headless": True}}))
    flags, ignored = engine.engine_flags_and_ignored(spec)
    assert ignored == ["goneInThisVllm", "headless", "sslCertfile"]
    assert flags[flags.index("--max-model-len") + 1] == "4096"
    assert not {"--gone-in-this-vllm", "--ssl-certfile", "--headless"} & set(flags)
    assert engine.engine_flags(spec) == flags and engine.ignored_engine_args(spec) == ignored
    assert engine.option_flags("goneInThisVllm", 3) == []
    # headless: false renders nothing anyway, so there is nothing to report.
    assert engine.ignored_engine_args(spec_of(model({"engineArgs": {"headless": False}}))) == []
    # The operator's own defaults are options of this vLLM.
    assert engine.ignored_engine_args(spec_of(model())) == []

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


@pytest.mark.parametrize("rollout,expected", [
    (None, {"maxSurge": 1, "maxUnavailable": 0}),
    ({}, {"maxSurge": 1, "maxUnavailable": 0}),
    ({"strategy": "Surge"}, {"maxSurge": 1, "maxUnavailable": 0}),
    # For clusters without a spare GPU: an old replica stops first and its replacement takes its GPUs.
    ({"strategy": "Replace"}, {"maxSurge": 0, "maxUnavailable": 1}),
])
def test_rollout_strategy(rollout, expected):
    spec = {"replicas": 2} if rollout is None else {"replicas": 2, "rollout": rollout}
    dep = render_deployment(model(spec), CFG)
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": expected}


def test_rollout_strategy_defaults_to_surge_as_the_api_server_stores_it():
    assert spec_of(model())["rollout"] == {"strategy": "Surge"}
    assert spec_of(model({"rollout": {}}))["rollout"] == {"strategy": "Surge"}


@pytest.mark.parametrize("spec,expected", [
    ({}, []),
    ({"cache": {"claimName": "hf-cache"}}, ["hf-cache"]),
    ({"source": "pvc://weights/qwen"}, ["weights"]),
    ({"source": "pvc://weights", "cache": {"claimName": "hf-cache"}}, ["hf-cache", "weights"]),
    ({"source": "pvc://shared/qwen", "cache": {"claimName": "shared"}}, ["shared"]),
])
def test_claims_a_server_pod_mounts(spec, expected):
    from modelplane_operator.render import claims
    assert claims(spec_of(model(spec))) == expected


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


def test_network_policy_also_admits_the_peers_the_platform_allows():
    """A Prometheus that scrapes /metrics on the server port, a gateway in front of the Models: allowed by the chart's
    networkPolicyAllowFrom, beside what the Model serves."""
    from modelplane_operator.render import render_network_policy

    scraper = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
               "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    gateway = {"ipBlock": {"cidr": "10.8.0.0/16"}}
    plain = render_network_policy(model(), Config(network_policies=True))
    with_peers = render_network_policy(model(), Config(network_policies=True,
                                                       network_policy_allow_from=[scraper, gateway]))
    assert with_peers["spec"]["ingress"][0]["from"] == [*plain["spec"]["ingress"][0]["from"], scraper, gateway]
    assert with_peers["spec"]["ingress"][0]["ports"] == [{"port": 8000, "protocol": "TCP"}]


@pytest.mark.parametrize("autoscaling, servers, router_metrics", [
    (None, False, False),
    ({"minReplicas": 1, "maxReplicas": 2}, True, False),       # the autoscaler reads the servers' /metrics
    ({"minReplicas": 0, "maxReplicas": 2}, True, True),        # and the router's request count, to wake them
    ({"minReplicas": 0, "maxReplicas": 2, "keda": {"prometheusAddress": "http://p:9090"}}, False, False),  # KEDA's
])
def test_an_autoscaled_models_policies_admit_the_operator(autoscaling, servers, router_metrics):
    from modelplane_operator.render import render_network_policy

    me = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "modelplane-system"}},
          "podSelector": {"matchLabels": {"app.kubernetes.io/name": "modelplane"}}}
    config = Config(network_policies=True, operator_peer=[me])
    m = model({"routing": {}, **({"autoscaling": autoscaling} if autoscaling else {})})
    server_rules = render_network_policy(m, config)["spec"]["ingress"]
    router_rules = render_network_policy(m, config, for_router=True)["spec"]["ingress"]
    assert len(server_rules) == 1 and (me in server_rules[0]["from"]) == servers
    assert me not in router_rules[0]["from"]  # the router's serving port is for clients
    metrics = [r for r in router_rules[1:] if r["ports"] == [{"port": 29000, "protocol": "TCP"}]]
    assert (metrics == [{"from": [me], "ports": [{"port": 29000, "protocol": "TCP"}]}]) == router_metrics
    assert len(router_rules) == 1 + router_metrics


def test_user_env_wins_one_entry_per_name():
    """Server-side apply keys env by name and refuses a name twice: the user's spec.env replaces what the operator
    sets (HF_HOME, HF_TOKEN, VLLM_API_KEY, the CPU profile's thread settings), in the place the operator gave it."""
    user = [{"name": "HF_HOME", "value": "/data/hf"}, {"name": "VLLM_API_KEY", "value": "plain"},
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "mine", "key": "t"}}},
            {"name": "EXTRA", "value": "1"}, {"name": "EXTRA", "value": "2"}]
    dep = render_deployment(model({"apiKeySecretRef": {"name": "keys"}, "credentialsSecretRef": {"name": "hf"},
                                   "env": user}), CFG)
    names = [e["name"] for e in container(dep)["env"]]
    assert len(names) == len(set(names))
    assert names == ["HF_HOME", "HF_TOKEN", "VLLM_API_KEY", "EXTRA", "PYTHONPATH"]  # a keyed Model is gated
    e = env(dep)
    assert e["HF_HOME"] == {"name": "HF_HOME", "value": "/data/hf"}
    assert e["VLLM_API_KEY"] == {"name": "VLLM_API_KEY", "value": "plain"}
    assert e["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": "t"}
    assert e["EXTRA"]["value"] == "2"
    cpu = render_deployment(model({"gpus": 0, "env": [{"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "auto"},
                                                      {"name": "OMP_NUM_THREADS", "value": "3"}]}), CFG)
    names = [e["name"] for e in container(cpu)["env"]]
    assert len(names) == len(set(names)) and env(cpu)["OMP_NUM_THREADS"]["value"] == "3"


def test_server_stops_without_cutting_requests():
    """preStop sleeps while the endpoints drop the pod, vLLM drains (its own default aborts), and the grace period
    covers both and the engine's exit."""
    dep = render_deployment(model(), CFG)
    pod, c = dep["spec"]["template"]["spec"], container(dep)
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 10}}}
    assert c["args"][c["args"].index("--shutdown-timeout") + 1] == "90"
    assert pod["terminationGracePeriodSeconds"] == 10 + 90 + 20
    own = render_deployment(model({"engineArgs": {"shutdownTimeout": 600}}), CFG)
    assert container(own)["args"].count("--shutdown-timeout") == 1
    assert container(own)["args"][container(own)["args"].index("--shutdown-timeout") + 1] == "600"
    assert own["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 630
    for extra in (["--shutdown-timeout=5"], ["--shutdown-timeout", "5"]):
        dep = render_deployment(model({"engineArgs": {"extraArgs": extra}}), CFG)
        assert container(dep)["args"].count("--shutdown-timeout") == (1 if len(extra) == 2 else 0)
        assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 35
    abort = render_deployment(model({"engineArgs": {"shutdownTimeout": 0}}), CFG)
    assert abort["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    quick = Config(server_prestop_seconds="0", server_drain_seconds="30", server_exit_seconds="5")
    dep = render_deployment(model(), quick)
    assert "lifecycle" not in container(dep) and dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 35
    cpu = render_deployment(model({"gpus": 0}), CFG)
    assert container(cpu)["lifecycle"] and "--shutdown-timeout" in container(cpu)["args"]


def test_emptydir_cache_is_bounded_and_requested():
    def rendered(spec):
        dep = render_deployment(model(spec), CFG)
        vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        return vols["cache"], container(dep)["resources"]

    cache, res = rendered({})
    assert cache["emptyDir"] == {"sizeLimit": "150Gi"} and res["requests"]["ephemeral-storage"] == "20Gi"
    cache, res = rendered({"gpus": 4})
    assert cache["emptyDir"] == {"sizeLimit": "600Gi"} and res["requests"]["ephemeral-storage"] == "80Gi"
    cache, res = rendered({"gpus": 0})
    assert cache["emptyDir"] == {"sizeLimit": "20Gi"} and res["requests"]["ephemeral-storage"] == "5Gi"
    # A claim holds the cache: nothing on the node's disk to ask for.
    cache, res = rendered({"cache": {"claimName": "weights"}})
    assert "emptyDir" not in cache and "ephemeral-storage" not in res["requests"]
    # The Model's own ephemeral-storage wins; a limit is the most the cache may take anyway.
    cache, res = rendered({"resources": {"requests": {"ephemeral-storage": "500Gi"}}})
    assert cache["emptyDir"] == {"sizeLimit": "500Gi"} and res["requests"]["ephemeral-storage"] == "500Gi"
    cache, res = rendered({"resources": {"limits": {"ephemeral-storage": "10Gi"}}})
    assert cache["emptyDir"] == {"sizeLimit": "10Gi"}
    assert res["requests"]["ephemeral-storage"] == "10Gi" and res["limits"]["ephemeral-storage"] == "10Gi"
    cache, res = rendered({"resources": {"requests": {"ephemeral-storage": "1Gi"},
                                         "limits": {"ephemeral-storage": "300Gi"}}})
    assert cache["emptyDir"] == {"sizeLimit": "300Gi"} and res["requests"]["ephemeral-storage"] == "1Gi"


def test_gpu_resource_in_the_models_resources_is_ignored():
    """The GPU limit is spec.gpus: a request or limit of the GPU resource (the schema refuses it where it knows the
    name; the operator's default may be another) would make the Deployment invalid or the GPUs differ from gpus."""
    amd = Config(gpu_resource="amd.com/gpu")
    spec = {"resources": {"requests": {"amd.com/gpu": 3}, "limits": {"amd.com/gpu": 3, "cpu": "8"}}}
    res = container(render_deployment(model(spec), amd))["resources"]
    assert "amd.com/gpu" not in res["requests"] and res["limits"] == {"amd.com/gpu": "1", "cpu": "8"}
    res = container(render_deployment(model({**spec, "gpus": 0}), amd))["resources"]
    assert "amd.com/gpu" not in res["requests"] and res["limits"] == {"cpu": "8"}
    res = container(render_deployment(model({"gpuResourceName": "example.com/gpu", "resources": {
        "limits": {"example.com/gpu": 4, "nvidia.com/gpu": 1}}}), CFG))["resources"]
    assert res["limits"] == {"example.com/gpu": "1", "nvidia.com/gpu": "1"}  # another resource stays


def test_waits_are_bounded_by_what_the_deployment_holds():
    """progressDeadlineSeconds is an int32; the schema bounds startupTimeoutSeconds and shutdownTimeout to a day,
    and so does rendering, for `--shutdown-timeout N` in extraArgs and Models stored before the bound."""
    dep = render_deployment(model({"startupTimeoutSeconds": 2**31 - 1}), CFG)
    assert dep["spec"]["progressDeadlineSeconds"] == 86400 + 300
    startup = container(dep)["startupProbe"]
    assert startup["failureThreshold"] * startup["periodSeconds"] == 86400
    for args in ({"shutdownTimeout": 2**63 - 1}, {"extraArgs": ["--shutdown-timeout", "99999999999999999999"]},
                 {"extraArgs": ["--shutdown-timeout=99999999999999999999"]}):
        dep = render_deployment(model({"engineArgs": args}), CFG)
        assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 10 + 86400 + 20
