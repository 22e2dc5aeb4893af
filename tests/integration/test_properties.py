"""Property-based: generated Model and Agent specs, valid and not, go through the real API server. Every rejection
names a field and leaves nothing behind; whatever is accepted renders without an exception, and every child it
renders is accepted by the API server too (a server-side dry-run apply, as the operator applies it): an accepted spec
whose Deployment, Service, NetworkPolicy or ConfigMap the API server refuses fails with the spec and the API
server's message.

Half the examples are built from values the schema admits only (cross-field rules included), so that most of them
reach the rendering and the apply; the other half mix in values it must refuse."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelplane_operator.agent import render_agent_children, resolve
from modelplane_operator.config import FIELD_MANAGER, Config
from modelplane_operator.render import gated, render_children

pytestmark = pytest.mark.integration

# NetworkPolicies on: every kind of child the operator makes is rendered and applied.
CONFIG = Config(network_policies=True)


def field(ok, bad, admissible: bool):
    """A field's values: only those the schema admits, or those and the ones it refuses."""
    return ok if admissible else st.one_of(ok, bad)


# Requests and limits of the same resource each, in any combination (a request above its limit included).
quantities = st.sampled_from(["1", "250m", "2Gi", "100Mi", 3, "0"])
resources = st.fixed_dictionaries({}, optional={
    "requests": st.dictionaries(st.sampled_from(["cpu", "memory", "ephemeral-storage"]), quantities, max_size=3),
    "limits": st.dictionaries(st.sampled_from(["cpu", "memory", "ephemeral-storage"]), quantities, max_size=3),
})


def env_vars(names: list[str], value_from: dict, a: bool):
    """Env entries with a value or a valueFrom; names repeat. Not admissible: both, an empty valueFrom, a name
    with '='."""
    ok = st.fixed_dictionaries({"name": st.sampled_from(names)}, optional={"value": st.sampled_from(["", "x"])})
    ok = st.one_of(ok, st.fixed_dictionaries({"name": st.sampled_from(names), "valueFrom": st.just(value_from)}))
    bad = st.one_of(st.fixed_dictionaries({"name": st.sampled_from(names), "value": st.just("x"),
                                           "valueFrom": st.just(value_from)}),
                    st.fixed_dictionaries({"name": st.sampled_from(names), "valueFrom": st.just({})}),
                    st.fixed_dictionaries({"name": st.just("A=B"), "value": st.just("x")}))
    return st.lists(field(ok, bad, a), max_size=3)


def engine_args(a: bool):
    return st.fixed_dictionaries({}, optional={
        "maxModelLen": field(st.one_of(st.integers(1, 200_000), st.just("32k")),
                             st.one_of(st.integers(-5, 0), st.sampled_from(["auto", "lots"])), a),
        "gpuMemoryUtilization": field(st.floats(0.05, 1), st.floats(-1, 2, allow_nan=False), a),
        "dtype": field(st.sampled_from(["auto", "bfloat16"]), st.sampled_from(["int3", ""]), a),
        "enableAutoToolChoice": st.booleans(),
        "toolCallParser": st.sampled_from(["hermes", "llama3_json"]),
        "tensorParallelSize": field(st.integers(1, 8), st.integers(-1, 0), a),  # admissible() makes it fit gpus
        "pipelineParallelSize": field(st.integers(1, 4), st.just(0), a),
        "maxModelLenght": field(st.nothing(), st.integers(1, 10), a),
        "extraArgs": st.lists(field(st.sampled_from(["--swap-space", "4", "--seed", "1", "--shutdown-timeout=30"]),
                                    st.sampled_from(["--api-key=x", "--port=1",
                                                     "--shutdown-timeout=99999999999999999999"]), a), max_size=4),
        "hfOverrides": st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2),
        "shutdownTimeout": field(st.integers(-1, 3600), st.just(2**63 - 1), a),
    })


def admissible(spec: dict) -> dict:
    """The schema's cross-field rules applied to a spec of admissible values."""
    spec = copy.deepcopy(spec)
    gpus = spec.get("gpus", 1)
    if not gpus:
        spec.pop("gpuType", None)
    if spec["source"].startswith("pvc://"):
        spec.pop("credentialsSecretRef", None)
    args = spec.get("engineArgs") or {}
    if gpus and gpus % args.get("pipelineParallelSize", 1):
        args["pipelineParallelSize"] = 1
    if gpus and "tensorParallelSize" in args:
        args["tensorParallelSize"] = gpus // args.get("pipelineParallelSize", 1)
    if args.get("enableAutoToolChoice"):
        args.setdefault("toolCallParser", "hermes")
    return spec


def model_specs(a: bool):
    specs = st.fixed_dictionaries({
        "source": field(st.sampled_from(["hf://Qwen/Qwen2.5-7B-Instruct", "pvc://weights/llama/8b", "pvc://weights",
                                         "s3://bucket/models/x", "gs://bucket/m"]),
                        st.one_of(st.sampled_from(["ftp://x/y", "pvc://weights/../../etc", "hf://only-org",
                                                   "hf://a b/c", "pvc://Weights/x", "s3://b/./x", "",
                                                   "hf://" + "a" * 1100 + "/b"]),
                                  st.text(min_size=0, max_size=40)), a),
    }, optional={
        "gpus": field(st.integers(0, 64), st.sampled_from([-2, -1, 65, 70]), a),
        "replicas": field(st.integers(0, 4), st.just(-1), a),
        "gpuType": field(st.just("NVIDIA-H100-80GB-HBM3"), st.sampled_from(["x" * 70, "NVIDIA H100"]), a),
        "gpuResourceName": field(st.just("amd.com/gpu"), st.just("gpu"), a),
        "servedModelName": field(st.sampled_from(["qwen", "org/model:v1", "q" * 256]),
                                 st.sampled_from(["has space", "q" * 300]), a),
        "engineArgs": engine_args(a),
        "allowedNamespaces": st.lists(field(st.sampled_from(["team-b", "*"]), st.just("Bad_NS"), a), max_size=3,
                                      unique=True),
        "startupTimeoutSeconds": field(st.integers(60, 86_400), st.sampled_from([0, 59, 2**31 - 1]), a),
        "resources": resources,
        "env": env_vars(["EXTRA", "HF_HOME", "VLLM_API_KEY", "VLLM_CPU_KVCACHE_SPACE", "PYTHONPATH"],
                        {"secretKeyRef": {"name": "s", "key": "k"}}, a),
        "shmSize": field(st.sampled_from(["64Mi", "1Gi", 1073741824]), st.just("-1Gi"), a),
        "cache": st.fixed_dictionaries({}, optional={"claimName": st.sampled_from(["", "weights-cache"])}),
        "apiKeySecretRef": st.fixed_dictionaries({"name": field(st.just("key"), st.sampled_from(["", "Bad_Name"]), a)},
                                                 optional={"key": st.just("api-key")}),
        "credentialsSecretRef": st.fixed_dictionaries({"name": st.just("creds")},
                                                      optional={"key": st.sampled_from(["token", "sa.json"])}),
        "image": st.sampled_from(["", "registry.example/vllm:1"]),
        "imagePullPolicy": field(st.just("IfNotPresent"), st.just("Sometimes"), a),
        "nodeSelector": st.dictionaries(field(st.sampled_from(["zone", "example.com/pool"]), st.just("bad key"), a),
                                        field(st.sampled_from(["a", ""]), st.just("bad value!"), a), max_size=2),
        "tolerations": st.lists(field(
            st.one_of(st.fixed_dictionaries({"key": st.sampled_from(["gpu", "example.com/spot"])},
                                            optional={"operator": st.just("Exists"),
                                                      "effect": st.sampled_from(["NoSchedule", ""])}),
                      st.fixed_dictionaries({"key": st.just("spot"), "operator": st.just("Equal"),
                                             "value": st.just("true"), "effect": st.just("NoExecute")},
                                            optional={"tolerationSeconds": st.integers(0, 3600)})),
            st.sampled_from([{"key": "k", "operator": "Exists", "value": "v"},
                             {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]), a), max_size=2),
        "affinity": field(st.just({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}),
            st.just({"nodeAffinity": {"required": "zone=a"}}), a),
        "priorityClassName": field(st.sampled_from(["", "high"]), st.just("Bad_Name"), a),
        "runtimeClassName": field(st.just("nvidia"), st.just("Bad_Name"), a),
    })
    return specs.map(admissible) if a else specs


model_names = st.sampled_from(["ok-name", "m" * 63])
models = st.one_of(st.tuples(model_names, model_specs(True)),
                   st.tuples(st.one_of(model_names, st.sampled_from(["Upper", "dots.in.name", "x" * 70,
                                                                     "9starts-with-digit"])), model_specs(False)))


def dry_run_apply(kube, children: list[dict]):
    """Server-side apply of the children as the operator applies them (its field manager, forced), persisting
    nothing."""
    return kube.run("apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}",
                    "--dry-run=server", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                     "items": children}), check=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=models)
def test_generated_models(kube, namespace, model):
    name, spec = model
    doc = {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model", "metadata": {"name": name, "namespace": namespace},
           "spec": spec}
    proc = kube.run("create", "-f", "-", input=json.dumps(doc), check=False)  # JSON, as clients send it
    if proc.returncode != 0:
        assert "spec." in proc.stderr or "metadata.name" in proc.stderr, proc.stderr
        assert kube.get("model", name, namespace) is None
        assert kube.get("deployment", name, namespace) is None  # nothing half-made
        return
    try:
        stored = kube.get("model", name, namespace)  # with the schema's defaults, and the uid the children's owner
        children = render_children(stored, CONFIG)  # whatever the API server accepts, the operator can render
        gate = ["ConfigMap"] if gated(stored["spec"]) else []  # the server gate of a keyed Model
        assert [c["kind"] for c in children] == ["Deployment", "Service", *gate, "NetworkPolicy"]
        applied = dry_run_apply(kube, children)
        assert applied.returncode == 0, (f"the API server refuses a child of an accepted Model\nModel {name} spec: "
                                         f"{json.dumps(spec)}\n{applied.stderr}")
    finally:
        kube.run("delete", "model", name, "-n", namespace)


def ready_model(namespace: str, name: str, keyed: bool) -> dict:
    """A Ready Model that any namespace may use, with an API key or not, as the operator's index holds it."""
    spec = {"source": "pvc://weights/tiny", "gpus": 0, "allowedNamespaces": ["*"]}
    if keyed:
        spec["apiKeySecretRef"] = {"name": f"{name}-key", "key": "api-key"}
    return {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1},
            "spec": spec, "status": {"phase": "Ready"}}


def at_most_one_default(refs: list[dict]) -> list[dict]:
    seen = False
    for ref in refs:
        if ref.get("default"):
            ref["default"], seen = not seen, True
    return refs


def agent_specs(a: bool):
    ref = st.fixed_dictionaries({"name": field(st.sampled_from(["a", "b", "m" * 63]), st.sampled_from(["", "x" * 80]),
                                               a)},
                                optional={"namespace": st.sampled_from(["", "other"]), "default": st.booleans()})
    refs = st.lists(ref, min_size=1 if a else 0, max_size=4,
                    unique_by=(lambda r: (r["name"], r.get("namespace", ""))) if a else None)
    return st.fixed_dictionaries({
        "image": field(st.sampled_from(["agent:1", "registry.example/team/agent@sha256:" + "a" * 64]), st.just(""),
                       a),
        "models": refs.map(at_most_one_default) if a else refs,
    }, optional={
        "replicas": field(st.integers(0, 3), st.just(-1), a),
        "env": env_vars(["EXTRA", "OPENAI_API_KEY", "OPENAI_MODEL", "MODELPLANE_CONFIG_DIR"],
                        {"configMapKeyRef": {"name": "c", "key": "k"}}, a),
        "resources": resources,
        "command": st.lists(st.sampled_from(["python", "-m", "agent"]), max_size=3),
        "args": st.lists(st.sampled_from(["--every", "30"]), max_size=2),
        "serviceAccountName": field(st.sampled_from(["", "agent-runner"]), st.just("Bad_SA"), a),
    })


agent_names = st.sampled_from(["gen", "a" * 52])
agents = st.one_of(st.tuples(agent_names, agent_specs(True)),
                   st.tuples(st.one_of(agent_names, st.sampled_from(["Gen", "a" * 53])), agent_specs(False)))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(agent=agents, found=st.booleans(), keyed=st.booleans())
def test_generated_agents(kube, namespace, agent, found, keyed):
    name, spec = agent
    doc = {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Agent", "metadata": {"name": name, "namespace": namespace},
           "spec": spec}
    proc = kube.run("create", "-f", "-", input=json.dumps(doc), check=False)  # JSON, as clients send it
    if proc.returncode != 0:
        assert "spec." in proc.stderr or "metadata.name" in proc.stderr, proc.stderr
        assert kube.get("agent", name, namespace) is None
        return
    try:
        stored = kube.get("agent", name, namespace)
        # Its Models all exist (Ready, with an API key or not), or none does: both render, and differently.
        resolved = resolve(namespace, stored["spec"]["models"],
                           lambda key: ready_model(*key, keyed) if found else None)
        children = render_agent_children(stored, resolved, CONFIG)
        assert [c["kind"] for c in children] == ["ConfigMap", "Deployment"]
        applied = dry_run_apply(kube, children)
        assert applied.returncode == 0, (f"the API server refuses a child of an accepted Agent\nAgent {name} spec: "
                                         f"{json.dumps(spec)}; its Models found: {found}, with keys: {keyed}\n"
                                         f"{applied.stderr}")
    finally:
        kube.run("delete", "agent", name, "-n", namespace, "--wait=false")
        kube.wait_for(lambda: kube.get("agent", name, namespace) is None, what="agent deleted")
