"""A real vLLM server on CPU, started from exactly the container the operator renders for a Model.

Only the model path and the server gate's folder (the pod's volume mounts are local folders here), the listen
address and the port are substituted, and env that keeps this host offline is added; Secret-sourced env vars are
resolved from the secrets given, as the kubelet would. Used by the end-to-end tests and by `make demo`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from localcluster import free_port
from modelplane_operator.config import Config
from modelplane_operator.render import GATE_MOUNT, GATE_SOURCE, render_deployment
from modelplane_operator.servergate import MODULE as GATE_MODULE
from modelplane_operator.source import PVC_MOUNT

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
TEST_API_KEY = "e2e-test-key-9f3c"  # a keyed Model's Secret value in the tests, as the kubelet puts it into pods
CACHE = Path(os.environ.get("MODELPLANE_CACHE")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelplane")


def vllm_python() -> Path:
    if not VLLM_PYTHON.exists():
        raise RuntimeError("the vLLM environment is missing: run `make vllm-env` (make test does)")
    return VLLM_PYTHON


def make_weights_volume() -> Path:
    """A local stand-in for the PVC `weights`: holds the tiny model at tiny/ (made once, then cached)."""
    volume = CACHE / "pvc-weights"
    subprocess.run([str(vllm_python()), str(REPO / "hack" / "tinymodel.py"), str(volume / "tiny")], check=True,
                   capture_output=True)
    return volume


def tiny_model(name: str, namespace: str = "agents", **spec) -> dict:
    return {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1},
            "spec": {"source": "pvc://weights/tiny", "gpus": 0, **spec}}


def server_container(model_or_deployment: dict) -> dict:
    """The vLLM container of a Deployment (as read from the cluster), or of the one the operator renders."""
    if model_or_deployment.get("kind") == "Model":
        model_or_deployment = render_deployment(model_or_deployment, Config())
    return model_or_deployment["spec"]["template"]["spec"]["containers"][0]


def local_command(container: dict, volume: Path, port: int, secrets: dict) -> tuple[list[str], dict]:
    """The server container as a local command line and environment."""
    command = [str(vllm_python()) if c == "python3" else c for c in container["command"]]
    args = list(container["args"])
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        args[args.index(flag) + 1] = value
    i = args.index("--model") + 1
    args[i] = args[i].replace(PVC_MOUNT, str(volume), 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "OPENAI_"))}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets[ref["name"]][ref["key"]]
    env["HF_HOME"] = str(CACHE / "hf-home")  # the pod's cache volume
    if GATE_MOUNT in env.get("PYTHONPATH", "").split(":"):  # the gate's ConfigMap volume
        gate = CACHE / "server-gate"
        gate.mkdir(parents=True, exist_ok=True)
        (gate / f"{GATE_MODULE}.py").write_text(GATE_SOURCE)
        env["PYTHONPATH"] = env["PYTHONPATH"].replace(GATE_MOUNT, str(gate), 1)
    # About this host, not the server: it must never reach the network (no downloads, no usage reports). The
    # memory and thread settings are the operator's (cpuprofile.py), exactly as rendered.
    env.update({"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"})
    return command + args, env


def http_get(url: str, headers=None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@contextlib.contextmanager
def served(model: dict, volume: Path, log_dir: Path, secrets: dict | None = None, timeout: float = 420):
    """Run a Model's server (a Model, rendered here, or its Deployment from the cluster) locally; yields its base URL
    (http://127.0.0.1:PORT)."""
    with served_together([(model, secrets)], volume, log_dir, timeout) as [base]:
        yield base


@contextlib.contextmanager
def served_together(models: list[tuple[dict, dict | None]], volume: Path, log_dir: Path, timeout: float = 420):
    """Several servers ((Model, secrets) each), started at once (much of a start is waiting, not computing); yields
    their base URLs once all are healthy."""
    procs = []
    try:
        for model, secrets in models:
            port = free_port()
            cmd, env = local_command(server_container(model), volume, port, secrets or {})
            log_path = log_dir / f"vllm-{model['metadata']['name']}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            procs.append((proc, f"http://127.0.0.1:{port}", log_path))
        end = time.monotonic() + timeout
        for proc, base, log_path in procs:
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"vLLM exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
                try:
                    if http_get(base + "/health")[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > end:
                    raise AssertionError(f"vLLM not healthy in {timeout}s:\n{log_path.read_text()[-4000:]}")
                time.sleep(1)
        yield [base for _, base, _ in procs]
    finally:
        for proc, _, _ in procs:
            os.killpg(proc.pid, 15)
        for proc, _, _ in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


def agent_pod_env(models: list[dict], folder: Path, secrets: dict | None = None,
                  base_url: str | None = None) -> dict[str, str]:
    """What the operator gives an Agent's pod on these Models (the first its default), as the kubelet would: its
    ConfigMap's files written into `folder` (the volume) and its env returned, Secret-sourced values resolved from
    `secrets` (missing optional keys left out), MODELPLANE_CONFIG_DIR pointing at `folder`. `base_url` replaces the
    default Model's in-cluster OPENAI_BASE_URL, as a port-forward would; nothing else is changed."""
    from modelplane_operator.agent import render_agent_children, resolve

    namespace = models[0]["metadata"]["namespace"]
    ready = {(m["metadata"]["namespace"], m["metadata"]["name"]): {**m, "status": {"phase": "Ready"}} for m in models}
    agent = {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Agent",
             "metadata": {"name": "bot", "namespace": namespace, "uid": "agent-uid"},
             "spec": {"image": "agent:1", "models": [{"name": m["metadata"]["name"],
                                                      "namespace": m["metadata"]["namespace"]} for m in models]}}
    configmap, deployment = render_agent_children(agent, resolve(namespace, agent["spec"]["models"], ready.get),
                                                  Config())
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in configmap["data"].items():
        (folder / name).write_text(text)
    env = {}
    for var in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "valueFrom" in var:
            ref = var["valueFrom"]["secretKeyRef"]
            value = (secrets or {}).get(ref["name"], {}).get(ref["key"])
            if value is None and not ref.get("optional"):
                raise AssertionError(f"the kubelet would not start this pod: no {ref}")
        else:
            value = var["value"]
        if value is not None:
            env[var["name"]] = value
    env["MODELPLANE_CONFIG_DIR"] = folder.as_posix()
    if base_url:
        env["OPENAI_BASE_URL"] = base_url
    return env


def write_agent_config(folder: Path, models: list[dict], default: str | None = None) -> Path:
    """The folder the operator would mount into an agent pod, written from the same pure rendering."""
    from modelplane_operator.agentconfig import config_files

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in config_files([(m, True) for m in models], Config(), default).items():
        (folder / name).write_text(text)
    return folder
