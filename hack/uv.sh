#!/usr/bin/env bash
# Prints the path of uv UV_VERSION (hack/versions.env), installed from PyPI once under the cache.
# Usage: hack/uv.sh PYTHON
set -euo pipefail
python=$1
cd "$(dirname "$0")/.."
version=$(sed -n 's/^UV_VERSION=//p' hack/versions.env)
cache="${MODELPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelplane}"
tool="$cache/tools/uv-$version"
if [ ! -x "$tool/bin/uv" ]; then
    rm -rf "$tool"
    "$python" -m venv "$tool"
    "$tool/bin/pip" install --quiet "uv==$version" >&2
fi
echo "$tool/bin/uv"
