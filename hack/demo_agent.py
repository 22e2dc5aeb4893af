"""The last step of `make demo`: a real answer from a real vLLM for a Model the operator reconciled.

Reads the Model's Deployment from the cluster (what the operator rendered), runs that container's command locally
with the real vLLM (CPU) on the tiny model, writes the AutoGen configuration the operator derives for the Model,
and runs the example agent team against it, its base URL pointed at the local server as after a port-forward.

    python hack/demo_agent.py NAMESPACE MODEL
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from localvllm import REPO, make_weights_volume, served, write_agent_config


def kubectl_json(*args: str) -> dict:
    kubectl = Path(os.environ["MODELPLANE_BIN"]) / "kubectl"
    return json.loads(subprocess.run([str(kubectl), *args, "-o", "json"], check=True, capture_output=True,
                                     text=True).stdout)


def main(namespace: str, name: str) -> int:
    model = kubectl_json("get", "model", name, "-n", namespace)
    deployment = kubectl_json("get", "deployment", name, "-n", namespace)
    print(f"starting the server the operator rendered for {namespace}/{name}:")
    print("  " + " ".join(deployment["spec"]["template"]["spec"]["containers"][0]["args"]))
    print("  (vLLM on this machine's CPU, the tiny model in place of the PVC; about a minute)")
    with tempfile.TemporaryDirectory() as tmp, served(deployment, make_weights_volume(), Path(tmp)) as base:
        config = write_agent_config(Path(tmp) / "modelplane", [model], default=name)
        env = {**os.environ, "MODELPLANE_CONFIG_DIR": str(config)}
        print(f"vLLM is serving at {base}; running agents/examples/round_robin.py\n", flush=True)
        return subprocess.run([sys.executable, str(REPO / "agents" / "examples" / "round_robin.py"),
                               "--base-url", base + "/v1", "--turns", "2"], env=env).returncode


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
