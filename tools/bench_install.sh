#!/usr/bin/env bash
# Install-time benchmark (docs/FEEDBACK.md section 5): pip vs uv, cold cache vs warm cache, side by side on one clone.
#   bash tools/bench_install.sh [WORKDIR]      (default /tmp/hlrp-bench-install; needs ~10 GB free, ~20 min on 2 cores)
# Each case builds a fresh venv from a clone of HEAD and times the install steps of `make setup`:
#   pip   : pip install torch==2.13.0 -e .[dev]                      (the old Makefile recipe)
#   uv    : pip install torch==2.13.0 uv; uv pip install -e .[dev]   (torch stays the CPU wheel pip put there)
# "cold" uses an empty PIP_CACHE_DIR / UV_CACHE_DIR, "warm" re-runs with the cache the cold case filled.
# Prints one line per case and the torch version each venv ends with (must stay 2.13.0+cpu).
set -euo pipefail
WORK=${1:-/tmp/hlrp-bench-install}
REPO=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
rm -rf "$WORK" && mkdir -p "$WORK"
git clone -q "$REPO" "$WORK/clone"
cd "$WORK/clone"
PY=${PYTHON:-python3}
results=()
run_case() {  # name installer cache
    local name=$1 installer=$2 cache=$3 venv="$WORK/venv-$1" t0 t1
    rm -rf "$venv" && $PY -m venv "$venv"
    t0=$(date +%s.%N)
    if [ "$installer" = pip ]; then
        PIP_CACHE_DIR="$cache" "$venv/bin/pip" install --quiet "torch==2.13.0" -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
    else
        PIP_CACHE_DIR="$cache/pip" "$venv/bin/pip" install --quiet "torch==2.13.0" uv 2>&1 | grep -v "^WARNING: Location" || true
        UV_CACHE_DIR="$cache/uv" "$venv/bin/uv" pip install --quiet --python "$venv/bin/python" -e ".[dev]"
    fi
    t1=$(date +%s.%N)
    local torch_v
    torch_v=$("$venv/bin/python" -c "import torch; print(torch.__version__)")
    results+=("$(printf '%-10s %7.1f s  torch %s' "$name" "$(echo "$t1 - $t0" | bc)" "$torch_v")")
    echo "${results[-1]}"
    rm -rf "$venv"
}
run_case pip-cold pip "$WORK/cache-pip"
run_case uv-cold uv "$WORK/cache-uv"
run_case pip-warm pip "$WORK/cache-pip"
run_case uv-warm uv "$WORK/cache-uv"
echo "== install times (same clone, sequential) =="
printf '%s\n' "${results[@]}"
rm -rf "$WORK"
