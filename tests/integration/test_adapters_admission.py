"""spec.adapters against the real control plane (kwok nodes): what the API server refuses at admission, and the
loader's objects written, reported and deleted. kwok's pods run no loader, so status says the replicas' loaders did
not answer; adapters really loading into vLLM is tests/node/test_node_lora.py."""

from __future__ import annotations

import pytest

import builders

pytestmark = pytest.mark.integration
LOADER_OBJECTS = [("serviceaccount", "m-adapters"), ("role", "m-adapters"), ("rolebinding", "m-adapters")]
SQL = {"name": "sql", "source": "pvc://weights/adapters/sql"}


@pytest.mark.parametrize("spec, words", [
    ({"adapters": [{"name": "m", "source": "pvc://w/a"}]}, "must differ from the Model's served name"),
    ({"servedModelName": "sql", "adapters": [SQL]}, "must differ from the Model's served name"),
    ({"adapters": [{"name": "x", "source": "gs://bucket/a"}]}, "one of hf://, pvc://, s3://"),
    ({"adapters": [{"name": "x", "source": "pvc://w/a", "credentialsSecretRef": {"name": "s"}}]},
     "credentialsSecretRef does not apply to pvc:// sources"),
    ({"adapters": [{"name": "Not_A_Label", "source": "pvc://w/a"}]}, "spec.adapters[0].name"),
    ({"adapters": [SQL, SQL]}, "Duplicate value"),
    ({"lora": {"maxRank": 24}}, "spec.lora.maxRank"),
])
def test_bad_adapters_are_refused_naming_the_field(kube, namespace, spec, words):
    proc = kube.apply(builders.model("m", namespace, **spec), check=False)
    assert proc.returncode != 0 and words in proc.stderr, proc.stderr


def test_adapters_on_then_off(kube, operator, namespace):
    # on a kwok GPU node; an hf:// adapter needs no claim (a pvc:// one would wait for its claim to exist)
    kube.apply(builders.model("m", namespace, adapters=[{"name": "sql", "source": "hf://org/sql-lora"}]))
    def adapters():  # NoReadyReplicas until kwok's pod is ready, then what its (absent) loader did not say
        status = ((kube.get("model", "m", namespace) or {}).get("status") or {}).get("adapters") or [{}]
        return status if status[0].get("reason") == "Unreported" else None
    status = kube.wait_for(adapters, timeout=60, what="status.adapters saying Unreported")
    assert status == [{"name": "sql", "ready": False, "loadedReplicas": 0, "reason": "Unreported",
                       "message": "1 ready replicas' loaders did not answer"}], status
    pod = kube.get("deployment", "m", namespace)["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["vllm", "adapter-loader"]
    assert pod["serviceAccountName"] == "m-adapters"
    for kind, name in LOADER_OBJECTS:
        obj = kube.get(kind, name, namespace)
        assert obj and obj["metadata"]["ownerReferences"][0]["name"] == "m", (kind, name)
    warnings = kube.run("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=m,type=Warning",
                        "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert warnings == [], warnings  # the RoleBinding came after its Role: no refusal on the way

    kube.run("patch", "model", "m", "-n", namespace, "--type=json", "-p", '[{"op":"remove","path":"/spec/adapters"}]')
    kube.wait_for(lambda: not any(kube.get(kind, name, namespace) for kind, name in LOADER_OBJECTS), timeout=60,
                  what="the loader's objects deleted")
    kube.wait_for(lambda: "adapters" not in (kube.get("model", "m", namespace).get("status") or {}), timeout=30,
                  what="status.adapters gone")
    containers = kube.get("deployment", "m", namespace)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["vllm"]
