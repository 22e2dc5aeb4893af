#!/usr/bin/env bash
# Builds the local cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, helm, and
# for the real node kubelet, kube-proxy and CoreDNS) from their Go modules with the ordinary `go` client, and
# caches the binaries by version under the user's cache
# folder so that only the first run pays for the build (tens of minutes on 2 cores).
#
# Usage: hack/build-binaries.sh            -> prints the bin folder on its last line
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${MODELPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelplane}"
bin="$cache/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION-coredns-$COREDNS_VERSION-crictl-$CRICTL_VERSION"
work="$cache/build"
mkdir -p "$bin" "$work"

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

have() { [ -x "$bin/$1" ]; }

export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false"

# Wrapper module for Kubernetes: k8s.io/kubernetes requires its staging modules at v0.0.0, so each of them is
# replaced by the published version that matches the release (v1.34.4 -> v0.34.4). The list is generated from the
# release's own go.mod so it never drifts from it.
build_kubernetes() {
  # kubelet and kube-proxy are the real node's; with CGO_ENABLED=0 they build too (their only cgo users are the
  # standard library's, which have pure-Go fallbacks).
  local wanted=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy) missing=() c
  for c in "${wanted[@]}"; do have "$c" || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local dir="$work/kubernetes-$K8S_VERSION" staging="v0${K8S_VERSION#v1}"
  mkdir -p "$dir"
  cd "$dir"
  if [ "$(cat .ready 2>/dev/null)" != "${wanted[*]}" ]; then
    log "kubernetes $K8S_VERSION: preparing the wrapper module"
    rm -f go.mod go.sum
    go mod init modelplane.local/k8sbuild >/dev/null 2>&1
    local gomod
    gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    # Every "k8s.io/<name> v0.0.0" requirement (exactly, not a pseudo-version) is a staging module.
    grep -E '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0\s*$' "$gomod" | awk '{print $1}' | sort -u | while read -r m; do
      go mod edit -replace="$m=$m@$staging"
    done
    log "kubernetes $K8S_VERSION: resolving dependencies"
    local gets=()
    for c in "${wanted[@]}"; do gets+=("k8s.io/kubernetes/cmd/$c@$K8S_VERSION"); done
    go get "${gets[@]}" >&2
    echo "${wanted[*]}" >.ready
  fi
  local ldflags="" v i=0
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
    ldflags+=" -X $v.buildDate=1970-01-01T00:00:00Z"
  done
  for c in "${missing[@]}"; do
    i=$((i + 1))
    log "kubernetes $K8S_VERSION: building $c ($i of ${#missing[@]}; the first takes longest, the rest reuse its packages)"
    go build -tags notest -trimpath -ldflags "-s -w$ldflags" -o "$bin/$c.tmp" "k8s.io/kubernetes/cmd/$c"
    mv "$bin/$c.tmp" "$bin/$c"
  done
}

build_etcd() {
  have etcd && return 0
  local dir="$work/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  cd "$dir"
  if [ ! -f .ready ]; then
    log "etcd $ETCD_VERSION: preparing the wrapper module"
    rm -f go.mod go.sum
    go mod init modelplane.local/etcdbuild >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
    touch .ready
  fi
  log "etcd $ETCD_VERSION: building"
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$bin/etcd.tmp" "$bin/etcd"
}

build_kwok() {
  have kwok && [ -d "$bin/kwok-stages" ] && return 0
  log "kwok $KWOK_VERSION: building"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # kwok exits without Stage definitions; the module ships the standard ones. The "fast" node and pod lifecycle,
  # the lease heartbeat (without it nodes turn NotReady), and the opt-in chaos stage for crash-looping containers.
  local src f
  src="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
  rm -rf "$bin/kwok-stages.tmp"; mkdir -p "$bin/kwok-stages.tmp"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml \
           pod/chaos/pod-container-running-failed.yaml; do
    cp "$src/$f" "$bin/kwok-stages.tmp/"
  done
  chmod -R u+w "$bin/kwok-stages.tmp"
  mv "$bin/kwok-stages.tmp" "$bin/kwok-stages"
}

build_helm() {
  have helm && return 0
  log "helm $HELM_VERSION: building"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_coredns() {
  have coredns && return 0
  log "coredns $COREDNS_VERSION: building (the real node's cluster DNS)"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
}

# crictl: the CRI client that removes the real node's pods cleanly (network torn down) when the cluster stops.
build_crictl() {
  have crictl && return 0
  log "crictl $CRICTL_VERSION: building"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
}

log "binaries are cached in $bin; later runs reuse them"
build_etcd
build_kwok
build_kubernetes
build_helm
build_coredns
build_crictl
log "all binaries ready"
echo "$bin"
