#!/usr/bin/env bash
# Build the standalone `assistant` (PyInstaller, onedir) and smoke-test the result: it starts
# (the chat app, in a pseudo-terminal), answers with a model file, and indexes a folder.
#
#   packaging/build.sh                 # with .venv/bin/python (make install first)
#   PYTHON=/path/to/python packaging/build.sh
#   packaging/build.sh --smoke-only    # test the last build again
#
# Needs PyInstaller in that environment: pip install -c constraints.txt '.[package]'.
# Output: build/pyinstaller/dist/assistant/ (run build/pyinstaller/dist/assistant/assistant).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=build/pyinstaller
BIN=$OUT/dist/assistant/assistant

start=$(date +%s)
if [ "${1:-}" != "--smoke-only" ]; then
    "$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
        --distpath "$OUT/dist" --workpath "$OUT/work" packaging/assistant.spec
fi
build_s=$(( $(date +%s) - start ))

home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
export ASSISTANT_HOME=$home/data HF_HUB_OFFLINE=1
model=$("$PYTHON" -c "from engine.models import default_model_path; print(default_model_path())")

echo "== starts"
t0=$(date +%s.%N)
"$BIN" --version
version_s=$(awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $t0 }")
"$BIN" doctor >/dev/null || { "$BIN" doctor; exit 1; }
"$PYTHON" packaging/smoke_tui.py "$BIN"

echo "== answers with a model file"
cp "$model" "$home/model.gguf"
answer=$("$BIN" ask --model "$home/model.gguf" --temperature 0 --max-tokens 24 "Say hello.")
test -n "$answer" || { echo "no answer"; exit 1; }
echo "$answer"
"$BIN" models add "$home/model.gguf" --name smoke --use >/dev/null
listed=$("$BIN" models list)
grep -q '^\* *smoke' <<< "$listed" || { echo "models add/use failed: $listed"; exit 1; }

echo "== indexes a folder"
mkdir -p "$home/notes"
printf '# Project Heron\n\nThe code name of the launch is Blue Heron. It ships on 3 March.\n' > "$home/notes/heron.md"
printf 'Shopping: apples, bread, coffee.\n' > "$home/notes/list.txt"
"$BIN" index "$home/notes"
folders=$("$BIN" folders --json)
grep -q notes <<< "$folders" || { echo "the folder was not indexed: $folders"; exit 1; }
sources=$("$BIN" ask --temperature 0 --max-tokens 32 "What is the code name of the launch?")
echo "$sources"
grep -q "heron.md" <<< "$sources" || { echo "the answer did not use the indexed folder"; exit 1; }

size=$(du -sh "$OUT/dist/assistant" | cut -f1)
echo
echo "OK: built in ${build_s} s; $OUT/dist/assistant is $size; --version took ${version_s} s"
