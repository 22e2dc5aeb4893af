#!/usr/bin/env bash
# `make demo`: the local control plane (built or reused), the CRDs, the operator in the background, and example
# Models reaching Ready on simulated GPU and CPU nodes. `make cluster-down` stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${MODELPLANE_CLUSTER_DIR:-$PWD/.cluster}"
py=.venv/bin/python
pidfile="$dir/operator.pid"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stop_operator() {
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")" && echo "stopped the demo operator"
  fi
  rm -f "$pidfile"
}

if [ "${1:-up}" = down ]; then stop_operator; exit 0; fi

say "Local control plane (the first run builds Kubernetes from source: tens of minutes; later runs reuse the cache)"
bin="$(bash hack/build-binaries.sh)"
make --no-print-directory vllm-env
$py hack/localcluster.py up --dir "$dir"
export KUBECONFIG="$dir/kubeconfig"
kubectl() { "$bin/kubectl" "$@"; }

say "Installing the CRDs"
kubectl apply --server-side -f crds/
kubectl wait --for=condition=Established crd/models.modelplane.dev crd/agents.modelplane.dev --timeout=60s

say "Starting the operator (log: $dir/logs/operator.log)"
stop_operator
# with the injection webhook on a free loopback port; the operator makes its certificates and webhook configuration
webhook_port="$(PYTHONPATH=hack $py -c 'from localcluster import free_port; print(free_port())')"
MODELPLANE_WEBHOOK_CERT_DIR="$dir/webhook-certs" nohup $py -m modelplane_operator --webhook-port "$webhook_port" \
  --webhook-host 127.0.0.1 --webhook-configure >>"$dir/logs/operator.log" 2>&1 &
echo $! >"$pidfile"

say "Applying examples/basic.yaml (1 GPU), examples/cpu.yaml and examples/tiny.yaml (CPU profile) in namespace demo"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f hack/demo-weights.yaml
kubectl apply -n demo -f examples/basic.yaml -f examples/cpu.yaml -f examples/tiny.yaml
kubectl get models -n demo
for m in qwen-7b smollm-cpu tiny; do
  kubectl wait -n demo --for=jsonpath='{.status.phase}'=Ready "model/$m" --timeout=180s
done

say "kubectl get models -n demo"
kubectl get models -n demo
say "kubectl get deploy,svc,pods -n demo -o wide"
kubectl get deploy,svc,pods -n demo -o wide

say "A real answer: the tiny Model's rendered vLLM server, run locally, and an AutoGen team using it"
MODELPLANE_BIN="$bin" PYTHONPATH=hack $py hack/demo_agent.py demo tiny

cat <<EOT

The operator keeps running in the background. Try:
  export KUBECONFIG=$dir/kubeconfig PATH=$dir/bin:\$PATH   # this cluster's kubectl
  kubectl describe model qwen-7b -n demo
  kubectl apply -n demo -f examples/tensor-parallel.yaml   # 4 GPUs on an H100 node
  kubectl scale model qwen-7b -n demo --replicas=3
  kubectl apply -n demo -f examples/injected-deployment.yaml   # any workload, opted in: configuration injected
Stop everything with: make cluster-down
EOT
