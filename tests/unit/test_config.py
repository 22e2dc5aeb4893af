"""Operator settings: typed once, bad values refused at start with the variable named."""

import json

import pytest

from modelplane_operator.config import Config, ConfigError


def test_env_values_take_their_fields_types():
    cfg = Config.from_env({"MODELPLANE_NETWORK_POLICIES": "false", "MODELPLANE_WEBHOOK_PORT": "9443",
                           "MODELPLANE_WATCH_NAMESPACES": "a, b", "MODELPLANE_WEBHOOK_CONFIGURE": "true",
                           "MODELPLANE_SERVER_DRAIN_SECONDS": "30"})
    assert cfg.network_policies is False  # was the string "false": truthy, so policies were on
    assert cfg.webhook_port == 9443 and cfg.webhook_configure is True and cfg.server_drain_seconds == 30
    assert cfg.watch_namespaces == ("a", "b") and cfg.webhook_excluded_namespaces == ("kube-system",)
    assert Config.from_env({}) == Config()


@pytest.mark.parametrize("var, value, says", [
    ("MODELPLANE_WEBHOOK_PORT", "https", "not a whole number"),
    ("MODELPLANE_METRICS_PORT", "70000", "out of range"),
    ("MODELPLANE_NETWORK_POLICIES", "maybe", "not a boolean"),
    ("MODELPLANE_WEBHOOK_FAILURE_POLICY", "ignore", "not one of Ignore, Fail"),
    ("MODELPLANE_SERVER_EXIT_SECONDS", "-1", "out of range"),
])
def test_bad_values_are_refused_naming_the_variable(var, value, says):
    with pytest.raises(ConfigError, match=f"^{var}: .*{says}"):
        Config.from_env({var: value})


def test_values_given_in_code_are_typed_too():
    assert Config(network_policies="true").network_policies is True
    assert Config(webhook_port="8443").webhook_port == 8443


def test_the_chart_pins_the_images_the_operator_defaults_to():
    """One source of truth: values.yaml's modelDefaults must say what Config says (a chart install and an operator
    run without the chart then render the same pods)."""
    from pathlib import Path

    import yaml

    values = yaml.safe_load((Path(__file__).resolve().parents[2] / "charts/modelplane/values.yaml").read_text())
    defaults = values["modelDefaults"]
    cfg = Config()
    assert (defaults["vllmImage"], defaults["vllmCpuImage"]) == (cfg.vllm_image, cfg.vllm_cpu_image)
    assert defaults["routerImage"] == cfg.router_image
    assert (defaults["gpuResource"], defaults["gpuProductLabel"], defaults["clusterDomain"]) == \
        (cfg.gpu_resource, cfg.gpu_product_label, cfg.cluster_domain)
    assert defaults["upgradeRolloutsAtOnce"] == cfg.upgrade_rollouts_at_once


def test_the_router_image_is_tagged_with_the_version_it_is_built_from():
    from pathlib import Path

    pin = (Path(__file__).resolve().parents[2] / "hack" / "vllm-router" / "requirements.txt").read_text()
    version = next(line.split("==")[1].strip() for line in pin.splitlines() if line.startswith("vllm-router=="))
    assert Config().router_image.endswith(f":{version}")

PROMETHEUS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}


def test_network_policy_peers_are_json_network_policy_peers():
    cfg = Config.from_env({"MODELPLANE_NETWORK_POLICY_ALLOW_FROM": json.dumps([PROMETHEUS, {"ipBlock": {"cidr": "10.8.0.0/16"}}])})
    assert cfg.network_policy_allow_from == (PROMETHEUS, {"ipBlock": {"cidr": "10.8.0.0/16"}})
    assert Config(network_policy_allow_from=[PROMETHEUS]).network_policy_allow_from == (PROMETHEUS,)
    assert Config.from_env({"MODELPLANE_NETWORK_POLICY_ALLOW_FROM": "[]"}).network_policy_allow_from == ()


@pytest.mark.parametrize("value, says", [
    ("monitoring", "not JSON"),
    ('{"podSelector": {}}', "a list of NetworkPolicy peers"),
    ('[{"ports": [8000]}]', r"\[0\]: a NetworkPolicy peer holds one or more of ipBlock, namespaceSelector, podSelector"),
    ("[{}]", r"\[0\]: a NetworkPolicy peer"),
    ('[{"podSelector": "app=prometheus"}]', r"\[0\]: each of podSelector is an object"),
])
def test_bad_network_policy_peers_are_refused_naming_the_variable(value, says):
    with pytest.raises(ConfigError, match=f"^MODELPLANE_NETWORK_POLICY_ALLOW_FROM{says if says.startswith(chr(92)) else ': .*' + says}"):
        Config.from_env({"MODELPLANE_NETWORK_POLICY_ALLOW_FROM": value})
