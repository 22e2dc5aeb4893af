#!/usr/bin/env bash
# `make demo`: the local cluster with its real node (built or reused), the operator installed by Helm from its own
# image, a GPU Model on the simulated H100 nodes, the tiny Model served by a real vLLM pod, and agents in pods
# calling it through cluster DNS. `make cluster-down` stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${MODELPLANE_CLUSTER_DIR:-$PWD/.cluster}"
py=.venv/bin/python

if [ "${1:-up}" = down ]; then exit 0; fi  # everything runs in the cluster: `localcluster.py down` stops it

start=$SECONDS
step=$SECONDS
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; step=$SECONDS; }
took() { printf '   (%ss)\n' "$((SECONDS - step))"; }
# Waits until the pods selected by $1 have logged an AutoGen team's summary (an answer from the model).
answered() {
  until kubectl logs -n demo -l "$1" --tail=-1 2>/dev/null | grep -q "Total completion tokens"; do
    sleep 2
    if [ $((SECONDS - step)) -gt 300 ]; then kubectl describe pods -n demo -l "$1"; exit 1; fi
  done
}

say "1. Local cluster: control plane, kwok GPU nodes, one real node (the first run builds binaries and images: long)"
bin="$(bash hack/build-binaries.sh)"
$py hack/localcluster.py up --dir "$dir"
export KUBECONFIG="$dir/kubeconfig"
kubectl() { "$bin/kubectl" "$@"; }
helm() { "$bin/helm" "$@"; }
if ! kubectl get node real-cpu-0 >/dev/null 2>&1; then
  echo "The cluster has no real node (the line above says why): the demo serves models in real pods, so it stops here."
  exit 1
fi
kubectl get nodes -o wide
took

say "2. helm install the chart: CRDs, RBAC, webhook, the operator's own image, in-cluster"
helm upgrade --install modelplane charts/modelplane --namespace modelplane-system --create-namespace --wait \
  --timeout 5m >/dev/null
kubectl get pods -n modelplane-system -o wide
took

say "3. Models: examples/basic.yaml (1 GPU: a simulated H100 node) and examples/tiny.yaml (CPU: the real node)"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
weights="$(PYTHONPATH=hack $py -c 'from localvllm import make_weights_volume; print(make_weights_volume())')"
sed "s|\${WEIGHTS}|$weights|" hack/demo-weights.yaml | kubectl apply -f -
kubectl apply -n demo -f examples/basic.yaml -f examples/tiny.yaml
echo "   the tiny Model's phases as the kubelet's probes see vLLM load (startup probe failing until /health answers):"
last="" t0=$SECONDS
while :; do
  phase="$(kubectl get model tiny -n demo -o jsonpath='{.status.phase}')"
  if [ "$phase" != "$last" ]; then printf '   %4ss  %s\n' "$((SECONDS - t0))" "${phase:-<none yet>}"; last="$phase"; fi
  [ "$phase" = Ready ] && break
  if [ $((SECONDS - t0)) -gt 420 ]; then kubectl describe model tiny -n demo; exit 1; fi
  sleep 1
done
kubectl wait -n demo --for=jsonpath='{.status.phase}'=Ready model/qwen-7b --timeout=60s >/dev/null
kubectl get models -n demo
kubectl get pods -n demo -o wide
took

say "4. An Agent: an AutoGen team in a pod (the agents image), calling tiny through the injected configuration"
kubectl apply -n demo -f examples/tiny-agent.yaml
kubectl get agent tiny-team -n demo
answered modelplane.dev/agent=tiny-team
echo "   kubectl logs -l modelplane.dev/agent=tiny-team:"
kubectl logs -n demo -l modelplane.dev/agent=tiny-team --tail=-1 | sed 's/^/   | /'
took

say "5. Any workload, opted in: examples/injected-deployment.yaml, its models annotation pointed at tiny"
sed 's|modelplane.dev/models: "[^"]*"|modelplane.dev/models: "tiny"|' examples/injected-deployment.yaml \
  | kubectl apply -n demo -f -
answered app=my-agent
echo "   injected env: $(kubectl get pod -n demo -l app=my-agent -o jsonpath='{.items[0].spec.containers[0].env[*].name}')"
kubectl logs -n demo -l app=my-agent --tail=-1 | tail -n 4 | sed 's/^/   | /'
took

cat <<EOT

Done in $((SECONDS - start))s. The cluster keeps running. Try:
  export KUBECONFIG=$dir/kubeconfig PATH=$dir/bin:\$PATH   # this cluster's kubectl and helm
  kubectl describe model tiny -n demo
  kubectl get --raw /api/v1/namespaces/demo/services/tiny:8000/proxy/v1/models
  kubectl apply -n demo -f examples/tensor-parallel.yaml   # 4 GPUs on a simulated H100 node
  kubectl scale model qwen-7b -n demo --replicas=3
Stop everything with: make cluster-down
EOT
