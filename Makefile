# `make run` and `make test` work on a fresh clone: they create .venv and install everything.
# llama-cpp-python compiles from source the first time (about 6-10 minutes on 2 cores); pip caches
# the built wheel, so later installs take seconds.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: install run test bench soak lint pipx-check uv-check package docs clean

# constraints.txt pins the CPU build of torch; without it sentence-transformers pulls CUDA.
EXAMPLE_PLUGIN := plugins/examples/assistant-example

$(STAMP): pyproject.toml constraints.txt $(EXAMPLE_PLUGIN)/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e '.[test,dev,bench]'
	# The example plugin is installed like a third-party one: its tool, loader and command are tested.
	$(BIN)/python -m pip install -c constraints.txt -e $(EXAMPLE_PLUGIN)
	touch $@

install: $(STAMP)

run: install
	$(BIN)/assistant

# Two workers: most tests wait on a subprocess, a pty or a model load, so two keep two cores busy
# (15 min -> 8.5 min here); the CPU budget gives each worker's decoding the core it has.
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -m "not soak" -n $(TEST_WORKERS)

bench: install
	$(BIN)/python bench/bench_foundation.py --write docs/benchmarks.md
	$(BIN)/python bench/bench_router.py --rounds 300 --write docs/benchmarks.md
	$(BIN)/python bench/bench_observability.py --write docs/benchmarks.md
	$(BIN)/python bench/bench_cache.py --rounds 15 --write docs/benchmarks.md
	$(BIN)/python bench/bench_eval.py --rounds 3 --write docs/benchmarks.md
	$(BIN)/python bench/bench_memory.py --memories 10000 --queries 300 --turns 20 --write docs/benchmarks.md
	$(BIN)/python bench/bench_serve.py --rounds 10 --write docs/benchmarks.md
	# Needs tmux (the app in a real terminal).
	$(BIN)/python bench/bench_tui_decode.py --rounds 3 --write docs/benchmarks.md
	# About 40 min the first time (it builds a 100k-chunk index, cached in bench/.cache), then ~7 min.
	$(BIN)/python bench/bench_rag.py --files 2000 --chunks 100000 --write docs/benchmarks.md

# Crash trials (SIGKILL at random points, 50 each), a 10-minute concurrency soak, long fuzzing and the
# prompt-injection measurement; about 90 minutes on 2 cores. Results go to docs/reliability.md.
soak: install
	$(BIN)/python -m pytest -m soak
	$(BIN)/python -m tests.soak --trials 50 --minutes 10 --fuzz-examples 2000 --write
	$(BIN)/python -m tests.injection --write

lint: install
	$(BIN)/ruff check app engine memory plugins tests bench

# Install the app the way users do (pipx, or `uv tool install`) into a throw-away home, then ask
# the installed command a question, run doctor and start the chat app (packaging/install-check.sh).
pipx-check: install
	PYTHON=$(BIN)/python packaging/install-check.sh pipx

uv-check: install
	PYTHON=$(BIN)/python packaging/install-check.sh uv

# The standalone build (PyInstaller, onedir) and its smoke test; not part of `make test`.
package: install
	$(BIN)/python -m pip install --quiet -c constraints.txt '.[package]'
	PYTHON=$(BIN)/python packaging/build.sh

# The settings tables in README.md and docs/configuration.md, from engine/settings.py.
docs: install
	$(BIN)/python -m engine.config_docs

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
