#!/usr/bin/env bash
# Builds KubeAI's controller (the side-by-side peer of bench/run.py, issue 14) from its unmodified source and caches
# the binary by version under the user's cache folder, like hack/build-binaries.sh. The Go module proxy refuses
# github.com/substratusai/kubeai itself (it serves its dependencies), so the source comes from a local copy:
# $KUBEAI_SOURCE, by default ../shared/third_party/kubeai-$KUBEAI_VERSION beside the repository. It is copied first
# (that folder is read-only in CI) and never into the project.
#
# Usage: hack/build-kubeai.sh     -> prints the binary's path on its last line; exits 3 when there is no source.
# About 7 minutes cold on 2 cores; nothing once cached. `make bench` runs it; `make test` does not.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${MODELPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelplane}"
bin="$cache/bin/kubeai-$KUBEAI_VERSION"
src="${KUBEAI_SOURCE:-$repo/../shared/third_party/kubeai-$KUBEAI_VERSION}"
work="$cache/build/kubeai-$KUBEAI_VERSION"

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ -x "$bin/kubeai" ] && [ -f "$bin/kubeai.org_models.yaml" ]; then
  echo "$bin/kubeai"
  exit 0
fi
if [ ! -f "$src/go.mod" ] || [ ! -d "$src/cmd" ]; then
  log "KubeAI $KUBEAI_VERSION: no source at $src (set KUBEAI_SOURCE); the bench reports the peer as not built"
  exit 3
fi
log "KubeAI $KUBEAI_VERSION: copying $src to $work and building (about 7 minutes cold on 2 cores)"
rm -rf "$work"
mkdir -p "$(dirname "$work")" "$bin"
cp -r "$src" "$work"
chmod -R u+w "$work"
cd "$work"
GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
  -o "$bin/kubeai.tmp" ./cmd
cp charts/kubeai/templates/crds/kubeai.org_models.yaml "$bin/kubeai.org_models.yaml.tmp"
mv "$bin/kubeai.org_models.yaml.tmp" "$bin/kubeai.org_models.yaml"
mv "$bin/kubeai.tmp" "$bin/kubeai"
log "KubeAI $KUBEAI_VERSION: built $bin/kubeai"
echo "$bin/kubeai"
