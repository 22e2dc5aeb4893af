"""Property-based: generated Model specs, valid and not, go through the real API server. Every rejection names a
field; everything accepted renders without an exception; a rejected Model leaves nothing behind."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelplane_operator.config import Config
from modelplane_operator.render import render_children

pytestmark = pytest.mark.integration

sources = st.one_of(
    st.sampled_from(["hf://Qwen/Qwen2.5-7B-Instruct", "pvc://weights/llama/8b", "s3://bucket/models/x",
                     "gs://bucket/m", "ftp://x/y", "pvc://weights/../../etc", "hf://only-org", "hf://a b/c",
                     "pvc://Weights/x", "s3://b/./x", "", "hf://" + "a" * 1100 + "/b"]),
    st.text(min_size=0, max_size=40),
)
engine_args = st.fixed_dictionaries({}, optional={
    "maxModelLen": st.one_of(st.integers(-5, 200_000), st.sampled_from(["32k", "auto", "lots"])),
    "gpuMemoryUtilization": st.floats(-1, 2, allow_nan=False),
    "dtype": st.sampled_from(["auto", "bfloat16", "int3", ""]),
    "enableAutoToolChoice": st.booleans(),
    "toolCallParser": st.sampled_from(["hermes", "llama3_json"]),
    "tensorParallelSize": st.integers(-1, 9),
    "pipelineParallelSize": st.integers(0, 4),
    "maxModelLenght": st.integers(1, 10),
    "extraArgs": st.lists(st.sampled_from(["--swap-space", "4", "--api-key=x", "--port=1", "--seed", "1"]),
                          max_size=4),
    "hfOverrides": st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2),
})
specs = st.fixed_dictionaries({"source": sources}, optional={
    "gpus": st.integers(-2, 70),
    "replicas": st.integers(-1, 4),
    "gpuType": st.sampled_from(["NVIDIA-H100-80GB-HBM3", "x" * 70]),
    "servedModelName": st.sampled_from(["qwen", "has space", "q" * 300]),
    "engineArgs": engine_args,
    "allowedNamespaces": st.lists(st.sampled_from(["team-b", "*", "Bad_NS"]), max_size=3, unique=True),
    "startupTimeoutSeconds": st.integers(0, 5000),
})
names = st.sampled_from(["ok-name", "Upper", "dots.in.name", "x" * 70, "9starts-with-digit"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names, spec=specs)
def test_generated_models(kube, namespace, name, spec):
    doc = {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model", "metadata": {"name": name, "namespace": namespace},
           "spec": spec}
    proc = kube.run("create", "-f", "-", input=json.dumps(doc), check=False)  # JSON, as clients send it
    if proc.returncode != 0:
        assert "spec." in proc.stderr or "metadata.name" in proc.stderr, proc.stderr
        assert kube.get("model", name, namespace) is None
        assert kube.get("deployment", name, namespace) is None  # nothing half-made
        return
    stored = kube.get("model", name, namespace)
    stored["metadata"].setdefault("uid", "u")
    children = render_children(stored, Config())  # whatever the API server accepts, the operator can render
    assert [c["kind"] for c in children] == ["Deployment", "Service"]
    kube.run("delete", "model", name, "-n", namespace)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(models=st.lists(st.fixed_dictionaries({"name": st.sampled_from(["a", "b", "", "x" * 80])},
                                             optional={"namespace": st.sampled_from(["", "other"]),
                                                       "default": st.booleans()}), max_size=4),
       image=st.sampled_from(["agent:1", ""]))
def test_generated_agents(kube, namespace, models, image):
    doc = {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "gen", "namespace": namespace},
           "spec": {"image": image, "models": models}}
    proc = kube.run("create", "-f", "-", input=json.dumps(doc), check=False)  # JSON, as clients send it
    if proc.returncode != 0:
        assert "spec." in proc.stderr, proc.stderr
    else:
        kube.run("delete", "agent", "gen", "-n", namespace, "--wait=false")
        kube.wait_for(lambda: kube.get("agent", "gen", namespace) is None, what="agent deleted")
