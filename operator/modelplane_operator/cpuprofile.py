"""What vLLM's CPU backend must be told for a `gpus: 0` Model to start on a shared node and stay inside its pod's
memory and CPU. Pure: the container's resources (and the user's engineArgs/env) in, engine args and env out.

vLLM 0.32 on CPU (vllm/v1/worker/cpu_worker.py, vllm/utils/cpu_resource_utils.py):
- without an explicit KV cache size it reserves `--gpu-memory-utilization` (0.92) of the memory it measures, and
  refuses to start unless that much is free. It measures the NUMA node's meminfo, clamped only by a cgroup memory
  limit it can read: with no limit that is the whole node (a shared node rarely has 92% free, and the KV cache would
  take most of it); with a limit it needs 92% of the limit free when its worker starts, after three Python processes
  with torch are already charged to it. An explicit size (`--kv-cache-memory-bytes`, or the legacy
  VLLM_CPU_KVCACHE_SPACE in GiB) skips that check; vLLM then only checks that the KV cache itself fits in what is free.
- VLLM_CPU_OMP_THREADS_BIND=auto (its default) pins one OpenMP thread to every physical core of the first NUMA node
  in the process's affinity mask, less one for the scheduler. A pod's mask is the whole node unless the kubelet's
  static CPU manager gave it exclusive cores, so a 2-CPU pod would run dozens of pinned threads inside a 2-CPU quota.
"""

from __future__ import annotations

import math
from decimal import Decimal

from kubernetes.utils import parse_quantity

MiB = 1 << 20
GiB = 1 << 30
# Memory of vLLM's own processes besides weights and KV cache: the API server, the engine core and the worker each
# import torch and vLLM, and the worker compiles and warms the model up. Measured on vLLM 0.32 with the tiny model
# (hack/tinymodel.py), summed over the four processes by proportional set size: 2.2 GiB when the worker starts,
# 2.3 GiB at the peak after a request. Rounded up for activations of larger models and allocator slack.
RUNTIME_OVERHEAD = 3 * GiB
# The operator cannot know how large the weights are, so what the runtime leaves is split evenly: half KV cache, half
# for the weights. With a memory limit, vLLM counts the pod's page cache as used when it checks that the KV cache
# fits, so that half also holds the weight files' cached pages at load time. 8Gi: 2.5 GiB of KV cache, weights up to
# about 1.2 GiB on disk (0.6B parameters in bf16). Another split: engineArgs.kvCacheMemoryBytes, or more memory.
KV_CACHE_SHARE = Decimal(1) / 2
# Some KV cache even when the budget is below the runtime's needs (then the limit is what to raise): 512 MiB holds
# about 16k tokens of a 1B model with grouped-query attention, enough for vLLM to accept a usual maxModelLen.
KV_CACHE_FLOOR = 512 * MiB
# Flags and env vars by which a user sizes the KV cache (or asks for vLLM's own sizing) themselves.
_MEMORY_ARGS = ("kvCacheMemoryBytes", "gpuMemoryUtilization")
_MEMORY_FLAGS = ("--kv-cache-memory-bytes", "--gpu-memory-utilization")
_MEMORY_ENV = "VLLM_CPU_KVCACHE_SPACE"


def _budget(resources: dict, name: str) -> Decimal | None:
    """The limit if set (what the cgroup enforces), else the request (what the scheduler set aside)."""
    for part in ("limits", "requests"):
        value = (resources.get(part) or {}).get(name)
        if value is not None:
            return parse_quantity(value)
    return None


def kv_cache_bytes(memory: Decimal) -> int:
    """The KV cache for a container of `memory` bytes: a share of what the runtime leaves, never below the floor,
    rounded down to whole MiB."""
    share = (memory - RUNTIME_OVERHEAD) * KV_CACHE_SHARE
    return max(KV_CACHE_FLOOR, int(share) // MiB * MiB)


def omp_threads(cpus: Decimal) -> int:
    """OpenMP threads for a container of `cpus` CPUs: one per CPU, less the one vLLM itself keeps for its
    scheduler process (ompmultiprocessing.py reserves it too), at least one."""
    return max(1, math.floor(cpus) - 1)


def cpu_settings(resources: dict, engine_args: dict | None = None, env: list | None = None) -> tuple[dict, list]:
    """(engineArgs defaults, env vars) for a `gpus: 0` server with the container `resources` (requests/limits as
    rendered). Whatever the user set in `engine_args` or `env` wins: the derived value is then left out."""
    engine_args = engine_args or {}
    user_env = {e.get("name") for e in env or []}
    extra = [str(a).split("=", 1)[0] for a in engine_args.get("extraArgs") or []]
    args: dict = {}
    out_env: list = []
    memory = _budget(resources, "memory")
    if (memory is not None and not any(a in engine_args for a in _MEMORY_ARGS)
            and not any(f in extra for f in _MEMORY_FLAGS) and _MEMORY_ENV not in user_env):
        args["kvCacheMemoryBytes"] = kv_cache_bytes(memory)
    cpus = _budget(resources, "cpu")
    if "VLLM_CPU_OMP_THREADS_BIND" not in user_env:
        # No pinning: the kernel's scheduler keeps the threads inside the pod's CPU quota; the thread count is what
        # keeps them from contending with each other. (With exclusive cores a user may set it back to auto.)
        out_env.append({"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "nobind"})
        if cpus is not None and "OMP_NUM_THREADS" not in user_env:
            out_env.append({"name": "OMP_NUM_THREADS", "value": str(omp_threads(cpus))})
    return args, out_env
