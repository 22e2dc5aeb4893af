"""The Model and Agent CustomResourceDefinitions: the single source of the API's schemas, spec-level defaults and
admission rules (the engineArgs part is built from vLLM's own options, vllm_options.json).

`python -m modelplane_operator.crd` writes crds/; a unit test fails when crds/ differs from what this renders.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import yaml

from .config import GROUP, VERSION
from .schema import (CONFIG_KEY, DNS_LABEL_ANY, DNS_SUBDOMAIN, ENV_NAME, LABEL_VALUE, QUALIFIED_BODY,
                     apply_defaults, array, boolean, extended_resource, integer, number, obj,
                     optional, qualified_name, quantity, string)

SOURCE_SCHEMES = ("hf", "pvc", "s3", "gs")
DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# Flags the operator owns: setting them through extraArgs would break the Service, probes or the key handling.
RESERVED_FLAGS = ("model", "host", "port", "api-key", "served-model-name")
# The longest wait a Model may ask for (startupTimeoutSeconds, engineArgs.shutdownTimeout): a day. The Deployment's
# progressDeadlineSeconds (an int32) and the pods' grace period are computed from them.
MAX_WAIT_SECONDS = 86400
# GPU resource the schema assumes when spec.gpuResourceName is unset (the operator's default setting).
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"


def secret_key_ref(description: str, default_key: str) -> dict:
    return obj(description, {
        "name": string("Name of a Secret in the Model's namespace (a DNS subdomain: lowercase letters, digits, '-' "
                       "and '.').", minLength=1, maxLength=253, pattern=DNS_SUBDOMAIN),
        "key": string(f"Key within the Secret (letters, digits, '-', '_' and '.'). Defaults to `{default_key}`.",
                      default=default_key, minLength=1, maxLength=253, pattern=CONFIG_KEY),
    }, required=["name"])


# Bounds vLLM checks only at start-up; stating them in the schema moves the error to admission.
ENGINE_ARG_BOUNDS = {
    "gpuMemoryUtilization": {"minimum": 0, "exclusiveMinimum": True, "maximum": 1},
    "pipelineParallelSize": {"minimum": 1},
    "dataParallelSize": {"minimum": 1},
    "prefillContextParallelSize": {"minimum": 1},
    "maxNumSeqs": {"minimum": 1},
    "maxNumBatchedTokens": {"minimum": 1},
    "seed": {"minimum": 0},
    # The pods' terminationGracePeriodSeconds is computed from it.
    "shutdownTimeout": {"maximum": MAX_WAIT_SECONDS},
}
# --shutdown-timeout=N in extraArgs: a whole number of seconds up to MAX_WAIT_SECONDS (86400), as one regex.
SHUTDOWN_ARG = "^--shutdown[-_]timeout=(-?[0-9]{1,4}|[0-7][0-9]{4}|8[0-5][0-9]{3}|86[0-3][0-9]{2}|86400)$"


# With the tensor parallel size, the factors of the GPUs one replica uses: vLLM starts dataParallelSize engines of
# tensor × pipeline × prefill-context parallel workers each, one GPU per worker (its ParallelConfig.world_size).
PARALLEL_FACTORS = ("pipelineParallelSize", "prefillContextParallelSize", "dataParallelSize")
# vLLM options the operator refuses at admission (a CEL rule on spec.engineArgs names the field), and why. The same
# flags are refused in extraArgs; a Model stored before the refusal has them ignored (engine.engine_flags_and_ignored).
REFUSED_ENGINE_ARGS = {
    "sslCertfile": "vLLM would serve HTTPS, while the operator's probes and the Model's endpoint are plain HTTP",
    "sslKeyfile": "vLLM would serve HTTPS, while the operator's probes and the Model's endpoint are plain HTTP",
    "headless": "vLLM would start no API server, so the Model could never serve or become Ready",
}


def refused_engine_args() -> dict[str, str]:
    """REFUSED_ENGINE_ARGS that the pinned vLLM has (a CEL rule may only name a field of the schema)."""
    return {name: why for name, why in REFUSED_ENGINE_ARGS.items() if name in vllm_options()["options"]}


def parallel_factors() -> tuple[str, ...]:
    """PARALLEL_FACTORS that the pinned vLLM has."""
    return tuple(name for name in PARALLEL_FACTORS if name in vllm_options()["options"])


def engine_args_schema() -> dict:
    """vLLM's own options (vllm_options.json, generated from its parser) plus the fields the operator owns."""
    flags_pattern = "|".join(RESERVED_FLAGS)
    generated = vllm_options()
    properties = {}
    refused = refused_engine_args()
    for name, opt in generated["options"].items():
        properties[name] = {**opt["schema"], **ENGINE_ARG_BOUNDS.get(name, {})}
        if name in refused:
            properties[name]["description"] = (f"Refused by the operator: {refused[name]}. "
                                               f"{opt['schema']['description']}")
    factors = " × ".join(parallel_factors())
    properties["tensorParallelSize"] = integer(
        f"Tensor parallel size (--tensor-parallel-size). Defaults to gpus / ({factors}); with gpus > 0, "
        f"tensorParallelSize × {factors} must equal gpus.", minimum=1)
    refused_flags = [generated["options"][name]["flag"] for name in refused]
    # vLLM's parser reads --ssl_keyfile as --ssl-keyfile.
    refused_pattern = "|".join(flag[2:].replace("-", "[-_]") for flag in refused_flags)
    properties["extraArgs"] = array(
        "Further vLLM command-line arguments, passed as given after the typed ones (for flags of other vLLM "
        f"versions). The operator owns --{', --'.join(RESERVED_FLAGS)}: set the API key with "
        "spec.apiKeySecretRef.",
        string("One argument.", maxLength=4096), maxItems=128,
        rules=[(f"self.all(a, !a.matches('^--({flags_pattern})(=.*)?$'))",
                "must not set --model, --host, --port, --api-key or --served-model-name: the operator "
                "sets them (use spec.servedModelName and spec.apiKeySecretRef)"),
               *([(f"self.all(a, !a.matches('^--({refused_pattern})(=.*)?$'))",
                   f"must not set {', '.join(refused_flags)}: the operator serves plain HTTP through vLLM's API "
                   "server (see the engineArgs fields of the same names)")] if refused else []),
               (f"self.all(a, !a.matches('^--shutdown[-_]timeout=') || a.matches('{SHUTDOWN_ARG}'))",
                f"--shutdown-timeout= takes a whole number of seconds, at most {MAX_WAIT_SECONDS} (the pods' "
                "termination grace period is computed from it; see engineArgs.shutdownTimeout)")])
    return obj(
        f"vLLM engine and server options, generated from vLLM {generated['vllmVersion']}'s own argument parser. "
        "Each field is the vLLM flag in camelCase (maxModelLen -> --max-model-len); booleans render as --flag or "
        "--no-flag, objects as JSON. Unknown fields are rejected; extraArgs passes anything else through.",
        dict(sorted(properties.items())),
        rules=[("!has(self.enableAutoToolChoice) || !self.enableAutoToolChoice || has(self.toolCallParser)",
                "enableAutoToolChoice requires toolCallParser", ".toolCallParser"),
               *[(f"!has(self.{name})" + (f" || !self.{name}" if properties[name].get("type") == "boolean" else ""),
                  f"{name} is not supported: {why}", f".{name}")
                 for name, why in refused.items()]],
    )


@functools.lru_cache(maxsize=1)
def vllm_options() -> dict:
    return json.loads((Path(__file__).parent / "vllm_options.json").read_text())


def label_key(description: str, **extra) -> dict:
    """A label key (optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_', '.')."""
    return string(description, maxLength=317, rules=[(qualified_name("self"), "must be a label key: an optional "
                                                      "DNS subdomain prefix and '/', then at most 63 letters, "
                                                      "digits, '-', '_' or '.', starting and ending alphanumeric")],
                  **extra)


def label_value(description: str) -> dict:
    return string(description, maxLength=63, pattern=LABEL_VALUE)


def label_map(description: str) -> dict:
    """A map of labels, as a node selector or matchLabels; keys and values as Kubernetes requires of labels."""
    return obj(description, additionalProperties=label_value("A label value: at most 63 letters, digits, '-', '_' "
                                                             "or '.', starting and ending alphanumeric."),
               maxProperties=64,
               rules=[(f"self.all(k, {qualified_name('k')})",
                       "keys must be label keys: an optional DNS subdomain prefix and '/', then at most 63 letters, "
                       "digits, '-', '_' or '.', starting and ending alphanumeric")])


def toleration_schema() -> dict:
    return obj("A toleration, as in a Pod spec.", {
        "key": string("Taint key the toleration applies to (a label key); empty means all keys, with operator "
                      "Exists.", maxLength=317,
                      rules=[(f"self == '' || ({qualified_name('self')})",
                              "must be a label key: an optional DNS subdomain prefix and '/', then at most 63 "
                              "letters, digits, '-', '_' or '.'")]),
        "operator": string("Exists or Equal (the default).", enum=["Exists", "Equal"]),
        "value": label_value("Taint value to match with Equal; empty with Exists."),
        "effect": string("Taint effect to match; empty means all effects.",
                         enum=["NoSchedule", "PreferNoSchedule", "NoExecute", ""]),
        "tolerationSeconds": integer("How long a NoExecute taint is tolerated; requires effect NoExecute.",
                                     format="int64"),
    }, rules=[
        ("(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
         "operator must be Exists when key is empty (a toleration of all taints)", ".operator"),
        ("!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
         "value must be empty when operator is Exists", ".value"),
        ("!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
         "tolerationSeconds requires effect NoExecute", ".effect"),
    ])


def key_selector(kind: str) -> dict:
    return obj(f"A key of a {kind} in the pod's namespace.", {
        "name": string(f"Name of the {kind} (a DNS subdomain).", minLength=1, maxLength=253, pattern=DNS_SUBDOMAIN),
        "key": string("The key (letters, digits, '-', '_' and '.').", minLength=1, maxLength=253, pattern=CONFIG_KEY),
        "optional": boolean(f"Whether the {kind} or its key may be missing."),
    }, required=["name", "key"])


# What a container's env may read through the downward API (validEnvDownwardAPIFieldPathExpressions).
ENV_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
                   "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs")
ENV_RESOURCE_FIELDS = ("limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu", "requests.memory",
                       "requests.ephemeral-storage")
BYTE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")


def value_from_schema() -> dict:
    paths = ", ".join(f"'{p}'" for p in ENV_FIELD_PATHS)
    subscript = QUALIFIED_BODY.replace("[a-z0-9]", "[A-Za-z0-9]")  # annotation keys are compared in lower case
    return obj("Source of the value: exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef.", {
        "secretKeyRef": key_selector("Secret"),
        "configMapKeyRef": key_selector("ConfigMap"),
        "fieldRef": obj("A field of the pod (downward API).", {
            "apiVersion": string("Version of the schema fieldPath is written in; v1.", enum=["v1"]),
            "fieldPath": string(f"One of {', '.join(ENV_FIELD_PATHS)}, or metadata.labels['<key>'] or "
                                "metadata.annotations['<key>'].", maxLength=400,
                                rules=[(f"self in [{paths}] || (self.matches(\"^metadata[.]labels[[]'{QUALIFIED_BODY}"
                                        f"'[]]$\") || self.matches(\"^metadata[.]annotations[[]'{subscript}'[]]$\")) "
                                        "&& self.matches(\"^[^/]*'([^/]{0,253}/)?[^/]*$\")",
                                        f"must be one of {', '.join(ENV_FIELD_PATHS)}, or metadata.labels['<key>'] "
                                        "or metadata.annotations['<key>'] with a label key")]),
        }, required=["fieldPath"]),
        "resourceFieldRef": obj("A resource of a container (downward API).", {
            "containerName": string("Container whose resource is read; defaults to this one.", maxLength=63),
            "resource": string("The resource.", enum=list(ENV_RESOURCE_FIELDS)),
            "divisor": quantity("Unit the value is expressed in: 1 or 1m for cpu; 1, 1k, 1Ki, 1M, 1Mi... 1E, 1Ei "
                                "for memory and ephemeral-storage.", enum=[1, "1m", *BYTE_DIVISORS]),
        }, required=["resource"], rules=[
            ("!has(self.divisor) || (self.resource.endsWith('.cpu') ? (type(self.divisor) == int || self.divisor in ['1', '1m']) : "
             "self.divisor != '1m')",
             "divisor must be 1 or 1m for cpu; 1, 1k, 1Ki, 1M, 1Mi, 1G, 1Gi, 1T, 1Ti, 1P, 1Pi, 1E or 1Ei otherwise",
             ".divisor")]),
    }, rules=[("[has(self.secretKeyRef), has(self.configMapKeyRef), has(self.fieldRef), "
               "has(self.resourceFieldRef)].filter(x, x).size() == 1",
               "must set exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef")])


def env_var_schema() -> dict:
    return obj("An environment variable, as in a container spec.", {
        "name": string("Variable name: letters, digits, '-', '_' and '.', not starting with a digit.", minLength=1,
                       maxLength=256, pattern=ENV_NAME),
        "value": string("Literal value. Never put a secret here: use valueFrom.secretKeyRef."),
        "valueFrom": value_from_schema(),
    }, required=["name"], rules=[
        ("!has(self.valueFrom) || !has(self.value) || self.value == ''",
         "value and valueFrom are exclusive: set one of them", ".valueFrom")])


# Resources a container may request besides extended ones (vendor.example/name). Hugepages are not offered.
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def resource_map(description: str) -> dict:
    names = ", ".join(f"'{r}'" for r in STANDARD_RESOURCES)
    return obj(description, additionalProperties=quantity("A resource quantity."), maxProperties=16, rules=[
        (f"self.all(k, k in [{names}] || ({extended_resource('k')}))",
         "resource names are cpu, memory, ephemeral-storage or an extended resource with a domain outside "
         "kubernetes.io (e.g. example.com/fpga)"),
        ("self.all(k, !k.contains('/') || quantity(string(self[k])).isInteger())",
         "extended resources take whole numbers"),
    ])


def resources_schema(workload: str) -> dict:
    both = "has(self.limits) && k in self.limits"
    request, limit = "quantity(string(self.requests[k]))", "quantity(string(self.limits[k]))"
    return obj(f"Compute resources of the {workload} container, as in a container spec: cpu, memory, "
               "ephemeral-storage and extended resources. A request must not exceed the limit of the same resource; "
               "an extended resource's request needs a limit equal to it.", {
                   "requests": resource_map("Minimum resources, e.g. cpu: \"8\", memory: 64Gi."),
                   "limits": resource_map("Maximum resources."),
               }, rules=[
                   (f"!has(self.requests) || self.requests.all(k, !({both}) || {request}.compareTo({limit}) <= 0)",
                    "a request must not exceed the limit of the same resource (spec.resources.requests, "
                    "spec.resources.limits)"),
                   (f"!has(self.requests) || self.requests.all(k, !k.contains('/') || (({both}) && "
                    f"{request}.compareTo({limit}) == 0))",
                    "a request of an extended resource needs a limit equal to it (spec.resources.limits)"),
               ])


def node_selector_requirement() -> dict:
    return obj("A node label requirement.", {
        "key": label_key("Node label key."),
        "operator": string("In, NotIn, Exists, DoesNotExist, Gt or Lt.",
                           enum=["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]),
        "values": array("Label values: at least one for In and NotIn, none for Exists and DoesNotExist, one "
                        "(an integer) for Gt and Lt.", label_value("A label value."), maxItems=64),
    }, required=["key", "operator"], rules=[
        ("!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
         "values must be set when operator is In or NotIn", ".values"),
        ("!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",
         "values must be empty when operator is Exists or DoesNotExist", ".values"),
        ("!(self.operator in ['Gt', 'Lt']) || (has(self.values) && size(self.values) == 1)",
         "values must hold one value when operator is Gt or Lt", ".values"),
    ])


def node_selector_term() -> dict:
    return obj("Node requirements, all of which must hold.", {
        "matchExpressions": array("Requirements on node labels.", node_selector_requirement(), maxItems=32),
        "matchFields": array("Requirements on node fields: metadata.name only.", obj(
            "A node field requirement.", {
                "key": string("metadata.name.", enum=["metadata.name"]),
                "operator": string("In or NotIn.", enum=["In", "NotIn"]),
                "values": array("One node name.", string("A node name (a DNS subdomain).", maxLength=253,
                                                         pattern=DNS_SUBDOMAIN), minItems=1, maxItems=1),
            }, required=["key", "operator", "values"]), maxItems=32),
    })


def label_selector(description: str) -> dict:
    return obj(description, {
        "matchLabels": label_map("Labels that must all match."),
        "matchExpressions": array("Requirements on labels.", obj("A label requirement.", {
            "key": label_key("Label key."),
            "operator": string("In, NotIn, Exists or DoesNotExist.", enum=["In", "NotIn", "Exists", "DoesNotExist"]),
            "values": array("Label values: at least one for In and NotIn, none for Exists and DoesNotExist.",
                            label_value("A label value."), maxItems=64),
        }, required=["key", "operator"], rules=[
            ("!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
             "values must be set when operator is In or NotIn", ".values"),
            ("!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",
             "values must be empty when operator is Exists or DoesNotExist", ".values"),
        ]), maxItems=32),
    })


def pod_affinity_term() -> dict:
    return obj("Pods (of the namespaces named) whose topology domain this pod must share, or avoid.", {
        "labelSelector": label_selector("Labels of the pods."),
        "namespaceSelector": label_selector("Namespaces of the pods, by label."),
        "namespaces": array("Namespaces of the pods, by name; with neither this nor namespaceSelector, the "
                            "pod's own.", string("A namespace name.", maxLength=63, pattern=DNS_LABEL_ANY),
                            maxItems=64),
        "topologyKey": label_key("Node label whose value is the topology domain (e.g. kubernetes.io/hostname).",
                                 minLength=1),
    }, required=["topologyKey"])


def weighted(description: str, name: str, term: dict) -> dict:
    return obj(description, {
        "weight": integer("Weight, 1-100, added to a node's score when the term matches.", minimum=1, maximum=100),
        name: term,
    }, required=["weight", name] if name == "podAffinityTerm" else ["weight"])


def pod_affinity(description: str) -> dict:
    return obj(description, {
        "requiredDuringSchedulingIgnoredDuringExecution": array("Terms that must all hold.", pod_affinity_term(),
                                                                maxItems=32),
        "preferredDuringSchedulingIgnoredDuringExecution": array(
            "Terms that add to a node's score.", weighted("A weighted term.", "podAffinityTerm", pod_affinity_term()),
            maxItems=32),
    })


def affinity_schema() -> dict:
    """A Pod spec's affinity, with the checks the API server makes of a pod template, so that one it would refuse is
    refused here, with the field named. matchLabelKeys and mismatchLabelKeys are not offered."""
    return obj("Affinity of the server pods (node, pod and anti-affinity), as in a Pod spec.", {
        "nodeAffinity": obj("Nodes the pods may or prefer to run on.", {
            "requiredDuringSchedulingIgnoredDuringExecution": obj("Node terms, one of which must hold.", {
                "nodeSelectorTerms": array("The terms.", node_selector_term(), minItems=1, maxItems=32),
            }, required=["nodeSelectorTerms"]),
            "preferredDuringSchedulingIgnoredDuringExecution": array(
                "Node terms that add to a node's score.", weighted("A weighted node term.", "preference",
                                                                   node_selector_term()), maxItems=32),
        }),
        "podAffinity": pod_affinity("Pods to run near."),
        "podAntiAffinity": pod_affinity("Pods to keep away from."),
    })


def source_rules(schemes: tuple[str, ...] = SOURCE_SCHEMES) -> list:
    return [
        ("self.matches('^(" + "|".join(schemes) + ")://')",
         "must be a URI whose scheme is one of " + ", ".join(f"{s}://" for s in schemes)),
        ("!self.startsWith('hf://') || self.matches('^hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$')",
         "hf:// sources take the form hf://<organisation>/<model>"),
        ("!self.startsWith('pvc://') || self.matches('^pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/[^/]+)*/?$')",
         "pvc:// sources take the form pvc://<claim-name>[/<path>]"),
        ("!(self.startsWith('s3://') || self.startsWith('gs://')) || "
         "self.matches('^(s3|gs)://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/[^/]+)*/?$')",
         "s3:// and gs:// sources take the form s3://<bucket>[/<path>]"),
        ("!self.matches('(^|/)[.][.]?(/|$)')", "must not contain '.' or '..' path segments"),
        ("!self.matches('[\\\\s\\\\x00-\\\\x1f]')", "must not contain whitespace or control characters"),
    ]


def gpu_resource_rule() -> tuple:
    """The GPU's limit comes from spec.gpus: spec.resources may not request or limit the GPU resource (the Model's
    gpuResourceName, or nvidia.com/gpu without one). Where the operator's own default differs, it ignores that
    resource in spec.resources (render.container_resources)."""
    gpu = (f"(has(self.gpuResourceName) && self.gpuResourceName != '' ? self.gpuResourceName : "
           f"'{DEFAULT_GPU_RESOURCE}')")
    return (f"!has(self.resources) || ((!has(self.resources.requests) || !({gpu} in self.resources.requests)) && "
            f"(!has(self.resources.limits) || !({gpu} in self.resources.limits)))",
            "must not request or limit the GPU resource (spec.gpuResourceName, nvidia.com/gpu by default): the "
            "operator sets its limit from spec.gpus", ".resources")


def parallel_rules() -> list:
    """With gpus > 0, a replica's GPUs are exactly what vLLM will use: tensorParallelSize × PARALLEL_FACTORS (unset
    ones count 1). Without tensorParallelSize, the operator derives it, so the other factors must divide gpus."""
    factors = parallel_factors()
    product = " * ".join(f"(has(self.engineArgs.{n}) ? self.engineArgs.{n} : 1)" for n in factors) or "1"
    names = " × ".join(f"engineArgs.{n}" for n in factors)
    guard = "self.gpus == 0 || !has(self.engineArgs) || "
    return [
        (guard + f"!has(self.engineArgs.tensorParallelSize) || self.engineArgs.tensorParallelSize * {product} == "
         "self.gpus", f"engineArgs.tensorParallelSize × {' × '.join(factors)} must equal gpus (unset sizes count 1)",
         ".engineArgs.tensorParallelSize"),
        *[(guard + f"has(self.engineArgs.tensorParallelSize) || !has(self.engineArgs.{n}) || "
           f"self.gpus % ({product}) == 0",
           f"gpus must be a multiple of {names} (unset sizes count 1): the tensor parallel size is gpus divided "
           "by their product", f".engineArgs.{n}")
          for n in factors],
    ]

ROLLOUT_STRATEGIES = ("Surge", "Replace")


def rollout_schema() -> dict:
    return obj(
        "How a change to the spec replaces the running replicas.", {
            "strategy": string(
                "Surge (the default): each new replica starts first, on a GPU of its own, and an old one stops only "
                "once it is ready: no capacity is lost, but a rollout needs spare GPUs for a new replica; on a "
                "cluster without them it waits (status: Progressing reason WaitingForGPU). Replace: an old replica "
                "stops first and its replacement takes its GPUs: for clusters without a spare GPU, at the price of "
                "one replica's capacity during the rollout; with replicas: 1 the Model does not serve until the new "
                "replica is ready (a short outage, as long as loading the weights takes). With a "
                "ReadWriteOnce cache.claimName (or pvc:// source) and replicas on different nodes, Surge cannot "
                "work (the claim attaches to one node only: the new pod waits in ContainerCreating, status reason "
                "WaitingForVolume): use a ReadWriteMany claim, or Replace with replicas: 1.",
                enum=list(ROLLOUT_STRATEGIES), default="Surge"),
        }, default={})


# vllm-router's policies (its --policy choices), and the one a Model gets: cache_aware sends a request to the replica
# whose cache holds the longest prefix of it (unless the replicas' loads are too far apart), which is what an agent
# resending its growing conversation needs, with no client change.
ROUTING_POLICIES = ("cache_aware", "consistent_hash", "power_of_two", "round_robin", "random")
SESSION_HEADER = "X-Session-ID"  # one of the headers vllm-router's consistent_hash policy hashes on


def routing_schema() -> dict:
    return obj(
        "Put vLLM's own router (vllm-router) in front of the replicas: the Model's Service and endpoint then reach "
        "the router, which sends each request to a replica by the policy; the replicas stay reachable directly at "
        "the Service <name>-vllm. Absent: the Service spreads requests round robin.", {
            "policy": string(
                "cache_aware (the default): the replica whose prefix cache best matches the request, unless the "
                "replicas' loads are far apart; for agents, which resend their growing conversation each turn. "
                f"consistent_hash: by the {SESSION_HEADER} header (injected agents send one per conversation), else "
                "the request. power_of_two: the less loaded of two random replicas. round_robin, random.",
                enum=list(ROUTING_POLICIES), default="cache_aware"),
            "replicas": integer("Router replicas (each sees every server replica).", minimum=1, maximum=16,
                                default=1),
        })


AUTOSCALING_METRICS = ("requestsWaiting", "requestsRunning", "kvCacheUsage")


def autoscaling_schema() -> dict:
    return obj(
        "Scale the server replicas on vLLM's own load signals, read from the replicas' /metrics. While it is set, the "
        "operator owns the replica count: spec.replicas is only where a new Model starts, and `kubectl scale` or an "
        "HPA on the Model would be overridden (use one or the other). The rule (README, Autoscaling): a count wanted "
        "for the whole scaleUpDelaySeconds (or scaleDownDelaySeconds) is applied, so it does not flap.", {
            "minReplicas": integer("Fewest replicas. 0 scales to zero after scaleToZeroAfterSeconds without a "
                                   "request, and needs spec.routing: the router receives the request that wakes it.",
                                   minimum=0, maximum=1000, default=1),
            "maxReplicas": integer("Most replicas.", minimum=1, maximum=1000),
            "metric": string("The load signal, summed over the ready replicas: requestsWaiting (vllm:num_requests_"
                             "waiting, the default: requests queued for lack of room), requestsRunning "
                             "(vllm:num_requests_running) or kvCacheUsage (vllm:kv_cache_usage_perc, 0 to 1).",
                             enum=list(AUTOSCALING_METRICS), default="requestsWaiting"),
            "target": {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                       "description": "The metric's value per replica to scale to: replicas = ceil(sum / target). "
                                      "Defaults: requestsWaiting 2, requestsRunning 8, kvCacheUsage 0.8."},
            "scaleUpDelaySeconds": integer("How long more replicas must be wanted before they are added.",
                                           minimum=0, maximum=3600, default=30),
            "scaleDownDelaySeconds": integer("How long fewer replicas must be wanted before replicas are removed.",
                                             minimum=0, maximum=86400, default=300),
            "scaleToZeroAfterSeconds": integer("With minReplicas 0: how long without a request before the last "
                                               "replica is removed.", minimum=30, maximum=86400, default=600),
            "keda": obj("Scale with KEDA instead of in-process: the operator renders a ScaledObject (same name) "
                        "with a Prometheus trigger on the same signal, target and delays, scaling this Model "
                        "through its scale subresource. KEDA must be installed.", {
                            "prometheusAddress": string("The Prometheus that scrapes the replicas (their pods carry "
                                                        "prometheus.io/scrape annotations), e.g. "
                                                        "http://prometheus.monitoring:9090.", minLength=1,
                                                        maxLength=1024, pattern="^https?://"),
                        }, required=["prometheusAddress"]),
        }, required=["maxReplicas"],
        rules=[("self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas", ".minReplicas"),
               ("self.metric != 'kvCacheUsage' || !has(self.target) || self.target <= 1.0",
                "a kvCacheUsage target is a fraction of the cache, at most 1", ".target")])


# LoRA adapters (spec.adapters): where they may come from, and the capacity a Model's servers get for them unless
# spec.lora says otherwise (vLLM's own default of one adapter per batch would serialise every adapter's requests).
ADAPTER_SOURCE_SCHEMES = ("hf", "pvc", "s3")
DEFAULT_LORA_MAX_RANK = 16
DEFAULT_LORA_MAX_ADAPTERS = 4


def lora_schema() -> dict:
    ranks = sorted(vllm_options()["options"]["maxLoraRank"]["schema"]["enum"])
    return obj(
        "LoRA capacity of the servers (vLLM's --enable-lora, --max-lora-rank, --max-loras). Set by the operator "
        "whenever spec.adapters is not empty; set it before the first adapter to keep adding adapters from being "
        "a rollout (turning LoRA on restarts the servers; adapters after that load live).", {
            "maxRank": integer(f"Largest adapter rank the servers accept ({', '.join(map(str, ranks))}). An "
                               "adapter of a larger rank is refused (status reason RankTooLarge); raising it is a "
                               "rollout.", enum=ranks, default=DEFAULT_LORA_MAX_RANK),
            "maxAdapters": integer("Adapters one batch may mix (--max-loras); more adapters than this still serve, "
                                   "taking turns. Each slot reserves memory for maxRank.", minimum=1, maximum=256,
                                   default=DEFAULT_LORA_MAX_ADAPTERS),
        })


def adapter_schema() -> dict:
    return obj("A LoRA adapter of this Model, served under its own name.", {
        "name": string("The name clients send as `model` to use the adapter (a DNS label); it must differ from the "
                       "Model's served name.", minLength=1, maxLength=63, pattern=DNS_LABEL),
        "source": string("Where the adapter's files (adapter_config.json and the weights, in the PEFT layout) come "
                         "from: hf://<org>/<repo> or s3://<bucket>/<path> (downloaded into the pod), or "
                         "pvc://<claim>[/<path>] (a claim in this namespace, mounted read-only; a claim the pods do "
                         "not mount yet is a rollout).",
                         minLength=1, maxLength=1024, rules=source_rules(ADAPTER_SOURCE_SCHEMES)),
        "credentialsSecretRef": secret_key_ref(
            "Secret with credentials for the source. hf://: its key holds a Hugging Face token. s3://: its keys "
            "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optionally AWS_SESSION_TOKEN, AWS_REGION, "
            "AWS_ENDPOINT_URL) are the credentials and key is ignored. A Secret no other adapter of the Model uses "
            "yet is a rollout (it reaches the pods as environment variables).", "token"),
    }, required=["name", "source"],
        rules=[("!has(self.credentialsSecretRef) || !self.source.startsWith('pvc://')",
                "credentialsSecretRef does not apply to pvc:// sources", ".credentialsSecretRef")])


def model_spec_schema() -> dict:
    return obj(
        "What to serve and how. Only source is required.",
        {
            "source": string(
                "Where the weights come from: hf://<org>/<model> (Hugging Face), pvc://<claim>[/<path>] (a "
                "PersistentVolumeClaim in this namespace, mounted read-only), s3://<bucket>/<path> or "
                "gs://<bucket>/<path> (streamed with vLLM's Run:ai model streamer).",
                minLength=1, maxLength=1024, rules=source_rules()),
            "credentialsSecretRef": secret_key_ref(
                "Secret with credentials for the source. hf://: the key holds a Hugging Face token (HF_TOKEN). "
                "s3://: the Secret's keys become environment variables (AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY, optionally AWS_ENDPOINT_URL) and key is ignored. gs://: the key holds a "
                "service-account JSON file.", "token"),
            "servedModelName": string("Name that clients send as `model` in requests. Defaults to the Model's "
                                      "name.", minLength=1, maxLength=256,
                                      rules=[("!self.matches('[\\\\s]')", "must not contain whitespace")]),
            "image": string("vLLM server image. Defaults to the operator's pinned official vLLM image, or its CPU "
                            "build when gpus is 0.", maxLength=512),
            "imagePullPolicy": string("Image pull policy of the server container.",
                                      enum=["Always", "IfNotPresent", "Never"]),
            "replicas": integer("Number of server replicas; the scale subresource (kubectl scale, HPA) sets it.",
                                minimum=0, default=1),
            "gpus": integer("GPUs per replica, requested as the GPU resource (nvidia.com/gpu by default). 0 "
                            "selects the CPU profile.", minimum=0, maximum=64, default=1),
            "gpuResourceName": string("Extended resource name of the GPU, for other vendors (e.g. amd.com/gpu): a "
                                      "domain outside kubernetes.io, '/', a name. Defaults to the operator's setting "
                                      "(nvidia.com/gpu).", maxLength=253,
                                      rules=[(f"self == '' || ({extended_resource('self')})",
                                              "must be an extended resource name with a domain outside "
                                              "kubernetes.io, e.g. amd.com/gpu")]),
            "gpuType": string("GPU product to run on, matched against the node label nvidia.com/gpu.product "
                              "(e.g. NVIDIA-H100-80GB-HBM3), so a label value. Requires gpus > 0.", maxLength=63,
                              pattern=LABEL_VALUE),
            "nodeSelector": label_map("Extra node labels the server pods must match."),
            "tolerations": array("Tolerations of the server pods, added to the GPU toleration the operator sets.",
                                 toleration_schema(), maxItems=64),
            "affinity": affinity_schema(),
            "priorityClassName": string("PriorityClass of the server pods (a DNS subdomain).", maxLength=253,
                                        pattern=optional(DNS_SUBDOMAIN)),
            "runtimeClassName": string("RuntimeClass of the server pods (e.g. nvidia; a DNS subdomain).",
                                       maxLength=253, pattern=optional(DNS_SUBDOMAIN)),
            "resources": resources_schema("vLLM"),
            "engineArgs": engine_args_schema(),
            "apiKeySecretRef": secret_key_ref(
                "Secret holding the API key the server requires (sent by clients as a Bearer token). The key "
                "reaches vLLM as the VLLM_API_KEY environment variable, never as an argument.", "api-key"),
            "env": array("Extra environment variables of the server container.", env_var_schema(), maxItems=128),
            "cache": obj("Where downloaded weights are cached (HF_HOME). Without a claim, an emptyDir that lives "
                         "as long as the pod.", {
                             "claimName": string("PersistentVolumeClaim in this namespace to keep the cache "
                                                 "across restarts.", maxLength=253, pattern=optional(DNS_SUBDOMAIN)),
                         }),
            "rollout": rollout_schema(),
            "routing": routing_schema(),
            "autoscaling": autoscaling_schema(),
            "lora": lora_schema(),
            "adapters": array(
                "LoRA adapters served by every replica under their own names, loaded and unloaded at run time "
                "(no restart) and loaded into each new or restarted replica before it takes requests. Agents name "
                "one as <model>:<adapter>. status.adapters says where each is loaded.", adapter_schema(),
                maxItems=64, **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
            "shmSize": quantity("Size of the memory-backed /dev/shm (tensor parallel workers share tensors "
                                "through it). Defaults to the operator's setting (8Gi)."),
            "startupTimeoutSeconds": integer("How long a replica may take to load the weights before it is "
                                             f"restarted: 60 to {MAX_WAIT_SECONDS} (a day).", minimum=60,
                                             maximum=MAX_WAIT_SECONDS, default=1800),
            "allowedNamespaces": array(
                "Other namespaces whose Agents and injected pods may use this Model; \"*\" allows all. By default "
                "only workloads in the Model's own namespace may. The API key Secret is never copied: a workload in "
                "another namespace needs its own Secret of the same name.",
                string("A namespace name, or \"*\".", maxLength=63,
                       rules=[("self == '*' || self.matches('" + DNS_LABEL.replace("^[a-z]", "^[a-z0-9]") + "')",
                               "must be a namespace name or \"*\"")]),
                maxItems=256, **{"x-kubernetes-list-type": "set"}),
        },
        required=["source"],
        rules=[
            ("!has(self.gpuType) || self.gpus > 0", "gpuType requires gpus > 0", ".gpuType"),
            ("!has(self.credentialsSecretRef) || !self.source.startsWith('pvc://')",
             "credentialsSecretRef does not apply to pvc:// sources", ".credentialsSecretRef"),
            gpu_resource_rule(),
            *parallel_rules(),
            ("!has(self.autoscaling) || self.autoscaling.minReplicas > 0 || has(self.routing) || "
             "has(self.autoscaling.keda)",
             "autoscaling.minReplicas 0 needs spec.routing (the router receives the request that wakes the Model) or "
             "autoscaling.keda",
             ".autoscaling.minReplicas"),
        ],
    )


def condition_schema() -> dict:
    return obj("A standard Kubernetes condition.", {
        "type": string("Condition type: Ready, Progressing or Scheduled."),
        "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
        "reason": string("Machine-readable reason in CamelCase."),
        "message": string("Human-readable details."),
        "lastTransitionTime": string("When the status last changed.", format="date-time"),
        "observedGeneration": integer("The .metadata.generation the condition was computed from.",
                                      format="int64"),
    }, required=["type", "status"])


def model_status_schema() -> dict:
    return obj("Observed state, written by the operator.", {
        "phase": string("Pending (waiting for a node), Loading (scheduled, weights loading), Ready (serving), "
                        "Idle (autoscaled to zero: the first request through the router wakes a replica), "
                        "Failed (cannot start without a change).",
                        enum=["Pending", "Loading", "Ready", "Idle", "Failed"]),
        "conditions": array("Ready, Progressing and Scheduled conditions. Progressing says why a rollout waits: "
                            "reason WaitingForGPU (a new pod cannot be scheduled for want of GPUs; see "
                            "spec.rollout.strategy) or WaitingForVolume (a new pod waits in ContainerCreating for a "
                            "claim to attach, e.g. a ReadWriteOnce claim held on another node).", condition_schema(),
                            **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
        "replicas": integer("Replicas that exist."),
        "readyReplicas": integer("Replicas that pass their readiness probe."),
        "readySummary": string("ready/desired replicas, for kubectl get."),
        "selector": string("Label selector of the server pods, for the scale subresource."),
        "endpoint": string("In-cluster OpenAI-compatible base URL."),
        "servedModelName": string("Name clients send as `model`."),
        "autoscaling": obj("The autoscaler's last decision, when spec.autoscaling is set.", {
            "scaledObject": string("With autoscaling.keda: the ScaledObject that scales this Model."),
            "metric": string("The load signal."),
            "load": {"type": "number", "description": "Its sum over the ready replicas at the last look."},
            "desiredReplicas": integer("The replica count decided."),
            "reason": string("Steady, ScaleUp, ScaleDown, ScaleToZero, WakeUp, Clamped, or MetricsUnavailable "
                             "(ready replicas have not answered the operator's /metrics requests for 20 s: the count "
                             "is kept)."),
            "message": string("Why, in words."),
            "lastScaleTime": string("When the replica count last changed.", format="date-time"),
        }),
        "adapters": array("Each adapter of spec.adapters: on how many ready replicas it is loaded.", obj(
            "An adapter's state.", {
                "name": string("The adapter."),
                "ready": boolean("Loaded on every ready replica (and there is one): clients may send its name."),
                "loadedReplicas": integer("Ready replicas that have it loaded."),
                "reason": string("Loaded, Loading, NoReadyReplicas, Unreported (a replica's loader did not answer), "
                                 "or why loading failed: SourceNotFound, RankTooLarge, BaseMismatch, "
                                 "FetchFailed, LoadFailed."),
                "message": string("Details, in words (the server's own message when loading failed)."),
            }, required=["name"]), **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
        "routing": obj("The router, when spec.routing is set.", {
            "policy": string("The policy it routes by."),
            "readyRouters": integer("Router replicas that are ready."),
            "routedReplicas": integer("Server replicas it routes to: the ready ones (the router adds a server pod "
                                      "once it is Running and Ready)."),
        }),
        "observedGeneration": integer("The .metadata.generation the status reflects.", format="int64"),
    })


def crd_document(kind: str, short_name: str, schema: dict, columns: list[dict]) -> dict:
    """A namespaced CRD of ours: status and scale subresources (spec.replicas / status.selector), printer columns."""
    plural = kind.lower() + "s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                      "shortNames": [short_name], "categories": ["all", "modelplane"]},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": schema},
                "subresources": {"status": {}, "scale": {
                    "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                    "labelSelectorPath": ".status.selector"}},
                "additionalPrinterColumns": columns,
            }],
        },
    }


def model_crd() -> dict:
    schema = obj(
        "A Model is an open model served by vLLM behind an OpenAI-compatible endpoint.",
        {
            "apiVersion": string("API version of this object."),
            "kind": string("Kind of this object."),
            "metadata": {"type": "object"},
            "spec": model_spec_schema(),
            "status": model_status_schema(),
        },
        required=["spec"],
        rules=[(f"self.metadata.name.matches('{DNS_LABEL}') && size(self.metadata.name) <= 63",
                "metadata.name must be a DNS label (lowercase letters, digits and '-', starting with a letter, at "
                "most 63 characters): the Model's Service takes the same name"),
               ("!has(self.spec.adapters) || self.spec.adapters.all(a, a.name != (has(self.spec.servedModelName) ? "
                "self.spec.servedModelName : self.metadata.name))",
                "an adapter's name must differ from the Model's served name (clients choose by that name)",
                ".spec.adapters")],
    )
    return crd_document("Model", "mdl", schema, [
                    {"name": "Served", "type": "string", "jsonPath": ".status.servedModelName",
                     "description": "Name clients send as model"},
                    {"name": "GPUs", "type": "integer", "jsonPath": ".spec.gpus", "description": "GPUs per replica"},
                    {"name": "Ready", "type": "string", "jsonPath": ".status.readySummary",
                     "description": "Ready/desired replicas"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint",
                     "description": "OpenAI-compatible base URL"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ])


def agent_spec_schema() -> dict:
    return obj("An agent workload and the Models it uses.", {
        "image": string("Container image of the agent.", minLength=1, maxLength=512),
        "command": array("Entrypoint, as in a container spec.", string("One element."), maxItems=64),
        "args": array("Arguments, as in a container spec.", string("One argument."), maxItems=256),
        "env": array("Environment variables of the agent container.", env_var_schema(), maxItems=128),
        "replicas": integer("Number of agent pods.", minimum=0, default=1),
        "resources": resources_schema("agent"),
        "serviceAccountName": string("ServiceAccount the agent pods run as (a DNS subdomain).", maxLength=253,
                                     pattern=optional(DNS_SUBDOMAIN)),
        "models": array(
            "Models this agent uses, by name (a Model's base, or one of its LoRA adapters). Their endpoints, served "
            "names and keys are injected and kept current; the agent is Ready only when all of them are.",
            obj("A reference to a Model, or to one of its adapters.", {
                "name": string("Name of the Model.", minLength=1, maxLength=63),
                "namespace": string("Namespace of the Model; empty means the Agent's. The Model must allow this "
                                    "Agent's namespace in spec.allowedNamespaces.", maxLength=63, default=""),
                "adapter": string("The name of one of the Model's spec.adapters; empty means the Model itself. The "
                                  "agent then sends that name as `model`, served by the Model's replicas with the "
                                  "adapter applied.", maxLength=63, pattern=optional(DNS_LABEL), default=""),
                "default": boolean("The model behind OPENAI_BASE_URL, OPENAI_MODEL and OPENAI_API_KEY, and what "
                                   "modelplane_agents.model_client() returns. Defaults to the first model."),
            }, required=["name"]),
            minItems=1, maxItems=32,
            # A list map: the API server itself refuses the same model (or adapter) listed twice; a Model's base
            # and its adapters are different entries.
            **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name", "namespace", "adapter"]},
            rules=[("self.filter(m, has(m.default) && m.default).size() <= 1",
                    "at most one model may be the default")]),
    }, required=["image", "models"])


def agent_status_schema() -> dict:
    return obj("Observed state, written by the operator.", {
        "conditions": array("Ready: the agent pods run and every referenced Model is ready.", condition_schema(),
                            **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
        "models": array("Each referenced Model (or adapter) as the agent sees it.", obj("A referenced Model.", {
            "name": string("Model name."),
            "namespace": string("Model namespace."),
            "adapter": string("The Model's adapter, when the reference is to one."),
            "servedModelName": string("Name sent as `model`: the adapter's name for an adapter."),
            "endpoint": string("OpenAI-compatible base URL."),
            "ready": boolean("Whether the Model (and the adapter, on every ready replica) serves."),
            "reason": string("Why it is not usable, when it is not: NotFound, NotAllowed, NotReady, "
                             "AdapterNotFound (not in the Model's spec.adapters), AdapterNotReady (not loaded on "
                             "every ready replica: the Model's status.adapters says why)."),
        })),
        "modelSummary": string("ready/referenced models, for kubectl get."),
        "replicas": integer("Agent pods that exist."),
        "readyReplicas": integer("Agent pods that are ready."),
        "selector": string("Label selector of the agent pods, for the scale subresource."),
        "observedGeneration": integer("The .metadata.generation the status reflects.", format="int64"),
    })


def agent_crd() -> dict:
    schema = obj("An Agent is an AutoGen workload that names the Models it uses; the operator runs it with their "
                 "configuration injected and kept current.", {
                     "apiVersion": string("API version of this object."),
                     "kind": string("Kind of this object."),
                     "metadata": {"type": "object"},
                     "spec": agent_spec_schema(),
                     "status": agent_status_schema(),
                 }, required=["spec"],
                 rules=[(f"self.metadata.name.matches('{DNS_LABEL}') && size(self.metadata.name) <= 52",
                         "metadata.name must be a DNS label of at most 52 characters (its ConfigMap adds a suffix)")])
    return crd_document("Agent", "agt", schema, [
                    {"name": "Replicas", "type": "integer", "jsonPath": ".status.readyReplicas",
                     "description": "Ready agent pods"},
                    {"name": "Models", "type": "string", "jsonPath": ".status.modelSummary",
                     "description": "Ready/referenced models"},
                    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                    {"name": "Reason", "type": "string", "priority": 1,
                     "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ])


@functools.lru_cache(maxsize=1)
def _model_spec_schema() -> dict:
    return model_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def model_spec_with_defaults(spec: dict) -> dict:
    """The spec as the API server stores it: schema defaults filled in."""
    return apply_defaults(_model_spec_schema(), spec)


@functools.lru_cache(maxsize=1)
def _agent_spec_schema() -> dict:
    return agent_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def agent_spec_with_defaults(spec: dict) -> dict:
    return apply_defaults(_agent_spec_schema(), spec)


CRD_FILES = {"modelplane.dev_models.yaml": model_crd, "modelplane.dev_agents.yaml": agent_crd}


def render_all() -> dict[str, str]:
    header = "# Generated by `python -m modelplane_operator.crd` from operator/modelplane_operator/crd.py. Do not edit.\n"
    return {name: header + yaml.safe_dump(fn(), sort_keys=False, width=120) for name, fn in CRD_FILES.items()}


def main(argv=None) -> int:
    out = Path((argv or sys.argv[1:] or ["crds"])[0])
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
