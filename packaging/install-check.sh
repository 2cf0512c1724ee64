#!/usr/bin/env bash
# Install this checkout the way users do, with pipx or uv, into a throw-away home; then use the
# installed command: --version, a question answered by the embedded model, doctor, the chat app
# starting in a pseudo-terminal, and `models info`.
#
#   packaging/install-check.sh pipx     # make pipx-check
#   packaging/install-check.sh uv       # make uv-check
#
# llama-cpp-python compiles from source at install (6-10 min on 2 cores). pip caches the wheel it
# built; to spare uv the same compile, that wheel (or a fresh build) is handed to uv as a local
# wheel of the same version, so both tools install the very same llama.cpp build.
set -euo pipefail
tool=${1:?usage: install-check.sh pipx|uv}
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
root=/tmp/assistant-$tool-check
rm -rf "$root"
mkdir -p "$root"
start=$(date +%s)

case "$tool" in
pipx)
    "$PYTHON" -m pip install --quiet pipx
    PIPX_HOME=$root/home PIPX_BIN_DIR=$root/bin \
        "$PYTHON" -m pipx install --backend pip --pip-args="-c $PWD/constraints.txt" .
    ;;
uv)
    "$PYTHON" -m pip install --quiet uv
    llama=$("$PYTHON" -c "from importlib.metadata import version; print(version('llama_cpp_python'))")
    "$PYTHON" -m pip wheel --quiet --no-deps "llama-cpp-python==$llama" -w "$root/wheels"
    # pip's find-links (a local torch CPU wheel on some machines) apply to uv too
    links=(--find-links "$root/wheels")
    for dir in ${PIP_FIND_LINKS:-}; do links+=(--find-links "$dir"); done
    UV_TOOL_DIR=$root/tools UV_TOOL_BIN_DIR=$root/bin \
        "$PYTHON" -m uv tool install --constraints constraints.txt "${links[@]}" .
    ;;
*)
    echo "unknown tool: $tool (pipx or uv)" >&2
    exit 2
    ;;
esac
install_s=$(( $(date +%s) - start ))

export ASSISTANT_HOME=$root/data HF_HUB_OFFLINE=1
bin=$root/bin/assistant
"$bin" --version
answer=$("$bin" ask --temperature 0 --max-tokens 16 "Say hi")
test -n "$answer" || { echo "no answer" >&2; exit 1; }
echo "$answer"
"$bin" doctor > "$root/doctor.txt" || { cat "$root/doctor.txt"; exit 1; }
grep -E "GPU offload|placement" "$root/doctor.txt"
info=$("$bin" models info SmolLM2-135M-Instruct.Q4_1)
grep -q "chat template    present" <<< "$info" || { echo "$info"; exit 1; }
"$PYTHON" packaging/smoke_tui.py "$bin"
echo "OK: installed with $tool in ${install_s} s ($(du -sh "$root" | cut -f1) in $root)"
