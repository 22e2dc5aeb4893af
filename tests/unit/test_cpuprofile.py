"""A `gpus: 0` Model's KV cache and threads come from its pod's resources; whatever the user sets wins."""

import pytest

from modelplane_operator.config import Config
from modelplane_operator.cpuprofile import GiB, MiB, cpu_settings, kv_cache_bytes
from modelplane_operator.render import render_deployment

CFG = Config()


def model(spec):
    return {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model",
            "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"source": "pvc://weights/tiny", "gpus": 0, **spec}}


def container(spec):
    return render_deployment(model(spec), CFG)["spec"]["template"]["spec"]["containers"][0]


def flag(args, name):
    return args[args.index(name) + 1] if name in args else None


def env_of(c):
    return {e["name"]: e.get("value") for e in c["env"]}


# resources as the user writes them (merged over the defaults 2 CPU / 8Gi) -> KV cache bytes, OMP threads.
# KV cache = (memory limit, else request, - 3 GiB runtime) / 2, whole MiB, at least 512 MiB; threads = CPUs - 1.
RESOURCES = [
    ("defaults", None, int(2.5 * GiB), "1"),
    ("request only", {"requests": {"cpu": "4", "memory": "12Gi"}}, int(4.5 * GiB), "3"),
    ("limits", {"limits": {"cpu": "8", "memory": "16Gi"}}, int(6.5 * GiB), "7"),
    ("limit below request wins", {"requests": {"memory": "8Gi"}, "limits": {"memory": "6Gi"}}, int(1.5 * GiB), "1"),
    ("mebibytes", {"requests": {"memory": "8192Mi"}}, int(2.5 * GiB), "1"),
    ("decimal gigabytes", {"requests": {"memory": "8G"}}, (8 * 10**9 - 3 * GiB) // 2 // MiB * MiB, "1"),
    ("plain bytes", {"limits": {"memory": 10 * GiB}}, int(3.5 * GiB), "1"),
    ("too small: floor", {"requests": {"memory": "500M"}}, 512 * MiB, "1"),
    ("millicores", {"requests": {"cpu": "500m"}}, int(2.5 * GiB), "1"),
    ("fractional cpus", {"limits": {"cpu": "3.5"}}, int(2.5 * GiB), "2"),
]


@pytest.mark.parametrize("resources,kv,threads", [r[1:] for r in RESOURCES], ids=[r[0] for r in RESOURCES])
def test_kv_cache_and_threads_derived_from_resources(resources, kv, threads):
    c = container({"resources": resources} if resources else {})
    assert flag(c["args"], "--kv-cache-memory-bytes") == str(kv)
    assert c["args"].count("--kv-cache-memory-bytes") == 1
    env = env_of(c)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind" and env["OMP_NUM_THREADS"] == threads
    assert "VLLM_CPU_KVCACHE_SPACE" not in env and "--gpu-memory-utilization" not in c["args"]


def test_kv_cache_formula():
    assert kv_cache_bytes(8 * GiB) == 5 * GiB // 2
    assert kv_cache_bytes(4 * GiB) == kv_cache_bytes(1) == 512 * MiB
    assert kv_cache_bytes(64 * GiB) == 61 * GiB // 2


# The user's own setting -> (the derived --kv-cache-memory-bytes is rendered, the expected flags, the expected env)
OVERRIDES = [
    ("kvCacheMemoryBytes", {"engineArgs": {"kvCacheMemoryBytes": "1G"}}, False,
     {"--kv-cache-memory-bytes": "1G"}, {}),
    ("gpuMemoryUtilization: vLLM sizes it", {"engineArgs": {"gpuMemoryUtilization": 0.5}}, False,
     {"--gpu-memory-utilization": "0.5"}, {}),
    ("extraArgs flag=value", {"engineArgs": {"extraArgs": ["--kv-cache-memory-bytes=2000000000"]}}, False, {}, {}),
    ("extraArgs flag value", {"engineArgs": {"extraArgs": ["--gpu-memory-utilization", "0.3"]}}, False,
     {"--gpu-memory-utilization": "0.3"}, {}),
    ("VLLM_CPU_KVCACHE_SPACE", {"env": [{"name": "VLLM_CPU_KVCACHE_SPACE", "value": "4"}]}, False, {},
     {"VLLM_CPU_KVCACHE_SPACE": "4", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"}),
    ("binding: no derived thread settings", {"env": [{"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "auto"}]}, True,
     {}, {"VLLM_CPU_OMP_THREADS_BIND": "auto", "OMP_NUM_THREADS": None}),
    ("OMP_NUM_THREADS", {"env": [{"name": "OMP_NUM_THREADS", "value": "6"}]}, True, {},
     {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "6"}),
]


@pytest.mark.parametrize("spec,derived,flags,env", [o[1:] for o in OVERRIDES], ids=[o[0] for o in OVERRIDES])
def test_user_settings_win(spec, derived, flags, env):
    c = container(spec)
    assert (flag(c["args"], "--kv-cache-memory-bytes") == str(int(2.5 * GiB))) is derived
    for name, value in flags.items():
        assert c["args"].count(name) == 1 and flag(c["args"], name) == value
    names = [e["name"] for e in c["env"]]
    assert len(names) == len(set(names)), "one entry per name: server-side apply keys env by name"
    for name, value in env.items():
        assert env_of(c).get(name) == value


def test_cpu_settings_without_resources_only_turns_binding_off():
    assert cpu_settings({}) == ({}, [{"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "nobind"}])


@pytest.mark.parametrize("spec", [{"gpus": 1}, {"gpus": 2, "resources": {"limits": {"memory": "80Gi"}}}])
def test_gpu_models_render_as_before(spec):
    c = container({"source": "hf://Qwen/Qwen2.5-7B-Instruct", **spec})
    assert c["env"] == [{"name": "HF_HOME", "value": "/cache/huggingface"}]
    tp = ["--tensor-parallel-size", "2"] if spec["gpus"] == 2 else []
    assert c["args"] == ["--model", "Qwen/Qwen2.5-7B-Instruct", "--served-model-name", "m", "--host", "0.0.0.0",
                         "--port", "8000", *tp, "--enable-force-include-usage", "--shutdown-timeout", "90"]
