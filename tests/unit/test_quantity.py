"""Quantities as amounts: the operator's default requests multiply exactly, a limit caps the default request, and
drift detection does not mistake the API server's canonical form for a change."""

import copy

import pytest

from modelplane_operator import quantity, sync
from modelplane_operator.config import Config
from modelplane_operator.render import container_resources, render_deployment, spec_of


def model(spec=None):
    return {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model",
            "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"source": "hf://a/b", **(spec or {})}}


@pytest.mark.parametrize("value,n,expected", [
    ("16Gi", 2, "32Gi"), ("4", 2, "8"), ("1.5", 2, "3"), ("1.5", 3, "4500m"), ("500m", 3, "1500m"),
    ("1.5Gi", 2, "3Gi"), ("1.5Gi", 3, "4608Mi"), ("0.5Gi", 1, "512Mi"), ("2G", 2, "4G"), ("1.5G", 3, "4500M"),
    ("1e3", 2, "2000"), ("100u", 3, "300u"), (3, 2, "6"), ("1Ki", 1024, "1Mi"), ("8Gi", 0, "0"),
])
def test_times_is_exact_for_any_quantity(value, n, expected):
    assert quantity.times(value, n) == expected
    assert quantity.parse(expected) == quantity.parse(value) * n


def test_format_quantity_styles():
    assert quantity.format_quantity(quantity.parse("1536Mi"), "binary") == "1536Mi"
    assert quantity.format_quantity(quantity.parse("2Gi"), "binary") == "2Gi"
    assert quantity.format_quantity(quantity.parse("2Gi") + 1, "binary") == "2147483649"
    assert quantity.format_quantity(quantity.parse("4000"), "decimal") == "4k"
    assert quantity.format_quantity(quantity.parse("4000")) == "4000"
    assert quantity.format_quantity(quantity.parse("0.25")) == "250m"


def test_compare_quantities_however_written():
    assert quantity.equal("1", "1000m") and quantity.equal("1.5Gi", "1536Mi") and quantity.equal(2, "2")
    assert not quantity.equal("1", "1001m") and not quantity.equal("1Gi", None)
    assert quantity.equal("not a quantity", "not a quantity") and not quantity.equal("x", "y")
    assert quantity.smaller("16Gi", "8Gi") == "8Gi" and quantity.smaller("4", "500m") == "500m"
    assert quantity.smaller("8Gi", "8192Mi") == "8Gi"  # equal: the first, as given
    assert quantity.larger("150Gi", "500Gi") == "500Gi" and quantity.larger("150Gi", "1Gi") == "150Gi"
    with pytest.raises(ValueError):
        quantity.parse("12 apples")


def test_fractional_default_requests_multiply_per_gpu():
    """The old digit-joining multiplication turned 1.5 CPUs × 2 GPUs into 305 CPUs."""
    cfg = Config(gpu_cpu_request="1.5", gpu_memory_request="1.5Gi", gpu_cache_request="0.5Gi")
    for gpus, cpu, memory, storage in [(2, "3", "3Gi", "1Gi"), (3, "4500m", "4608Mi", "1536Mi")]:
        requests = container_resources(spec_of(model({"gpus": gpus})), cfg)["requests"]
        assert requests == {"cpu": cpu, "memory": memory, "ephemeral-storage": storage}


@pytest.mark.parametrize("gpus,limits,expected", [
    # GPU defaults: 4 CPUs and 16Gi per GPU, 20Gi of ephemeral-storage per GPU.
    (1, {"memory": "8Gi"}, {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "20Gi"}),
    (1, {"cpu": "1", "memory": "32Gi"}, {"cpu": "1", "memory": "16Gi", "ephemeral-storage": "20Gi"}),
    (2, {"cpu": "2500m", "memory": "16384Mi"}, {"cpu": "2500m", "memory": "16384Mi", "ephemeral-storage": "40Gi"}),
    (1, {"ephemeral-storage": "10Gi"}, {"cpu": "4", "memory": "16Gi", "ephemeral-storage": "10Gi"}),
    # The CPU profile's defaults: 2 CPUs, 8Gi, 5Gi.
    (0, {"cpu": "500m", "memory": "4Gi"}, {"cpu": "500m", "memory": "4Gi", "ephemeral-storage": "5Gi"}),
    (0, {"memory": "8Gi"}, {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "5Gi"}),
])
def test_a_limit_without_a_request_caps_the_default_request(gpus, limits, expected):
    res = container_resources(spec_of(model({"gpus": gpus, "resources": {"limits": limits}})), Config())
    assert res["requests"] == expected
    for name, limit in res["limits"].items():
        if name in res["requests"]:
            assert quantity.parse(res["requests"][name]) <= quantity.parse(limit)


def test_an_explicit_request_is_kept_even_above_the_limit():
    """The user's own request is theirs to get right; only the operator's defaults are capped."""
    res = container_resources(spec_of(model({"resources": {"requests": {"memory": "64Gi"},
                                                           "limits": {"memory": "32Gi", "cpu": "2"}}})), Config())
    assert res["requests"]["memory"] == "64Gi" and res["requests"]["cpu"] == "2"


def canonical(obj):
    """What the API server writes back for the quantities this test uses."""
    forms = {"1000m": "1", "1.5Gi": "1536Mi", "0.5Gi": "512Mi", "2000m": "2", 8: "8"}
    if isinstance(obj, dict):
        return {k: canonical(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [canonical(v) for v in obj]
    return forms.get(obj, obj)


def test_canonical_quantities_from_the_server_are_not_drift():
    dep = render_deployment(model({"gpus": 0, "shmSize": "0.5Gi",
                                   "resources": {"requests": {"cpu": "1000m", "memory": "1.5Gi"},
                                                 "limits": {"cpu": "2000m"}}}), Config())
    actual = canonical(copy.deepcopy(dep))
    c = actual["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["requests"]["cpu"] == "1" and c["resources"]["requests"]["memory"] == "1536Mi"
    assert not sync.differs(dep, actual)
    c["resources"]["requests"]["memory"] = "1537Mi"  # a real change still is one
    assert sync.differs(dep, actual)


def test_only_quantity_fields_compare_as_quantities():
    assert sync.is_subset({"emptyDir": {"sizeLimit": "0.5Gi"}}, {"emptyDir": {"sizeLimit": "512Mi"}})
    assert not sync.is_subset({"emptyDir": {"sizeLimit": "1Gi"}}, {"emptyDir": {"sizeLimit": "512Mi"}})
    assert sync.is_subset({"resources": {"limits": {"nvidia.com/gpu": 1}}},
                          {"resources": {"limits": {"nvidia.com/gpu": "1"}}})
    assert not sync.is_subset({"resources": {"requests": {"cpu": "1"}}}, {"resources": {"requests": {}}})
    # Names, labels, env values are strings: "1000m" is not "1" there.
    assert not sync.is_subset({"metadata": {"name": "1000m"}}, {"metadata": {"name": "1"}})
    assert not sync.is_subset({"env": [{"name": "X", "value": "1.5Gi"}]}, {"env": [{"name": "X", "value": "1536Mi"}]})
