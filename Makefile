# Hybrid ML orchestration patterns: one entry point for people, tests and CI.
# Every target bootstraps what it needs on a machine with only python3 and make:
# uv (into .tools/ if it is not on PATH), then the lock-pinned environment of the
# piece it runs, then the local stack if a pattern needs it.

.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))

# ---- tools -------------------------------------------------------------------
UV_VERSION ?= 0.13.9
UV ?= $(or $(shell command -v uv 2>/dev/null),$(ROOT)/.tools/bin/uv)
export UV_PYTHON_DOWNLOADS ?= never
export UV_NO_PROGRESS ?= 1

# ---- local stack: ports and keys (environment wins) ----------------------------
export STACK_STATE_DIR ?= $(ROOT)/.state/local
export STACK_PREFECT_PORT ?= 4200
export STACK_MLFLOW_PORT ?= 5000
export STACK_S3_PORT ?= 8333
export S3_ACCESS_KEY_ID ?= patterns-local
export S3_SECRET_ACCESS_KEY ?= patterns-local-secret
# ... and what the patterns read to find it
export PREFECT_API_URL ?= http://127.0.0.1:$(STACK_PREFECT_PORT)/api
export MLFLOW_TRACKING_URI ?= http://127.0.0.1:$(STACK_MLFLOW_PORT)
export S3_ENDPOINT_URL ?= http://127.0.0.1:$(STACK_S3_PORT)
# No phoning home: on a closed network it only waits.
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1

STACK_PY := $(UV) run --locked --project $(ROOT)/infra/local python $(ROOT)/infra/local/stack.py
P1 := $(ROOT)/patterns/p1_prefect_mlflow
P2 := $(ROOT)/patterns/p2_airflow_kfp
P3 := $(ROOT)/patterns/p3_metaflow_prefect
P3_WORKERS ?= 2
P4 := $(ROOT)/patterns/p4_github_actions_prefect
P4_RUN = cd $(P4) && $(UV) run --locked
PYTEST_ARGS ?=

##@ Start here
.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"} /^##@/ {printf "\n%s\n", substr($$0, 5)} \
	  /^[a-zA-Z0-9_-]+:.*##/ {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@printf "\nVariables: STACK_*_PORT, STACK_STATE_DIR, S3_* (see .env.example); PYTEST_ARGS for make test.\n"

.PHONY: setup
setup: _uv ## Install uv and every environment from its lock file
	$(UV) sync --locked --project $(ROOT)
	$(UV) sync --locked --project $(ROOT)/infra/local
	$(UV) sync --locked --project $(P1)
	$(UV) sync --locked --project $(P2)
	$(UV) sync --locked --project $(P2)/pipeline
	$(UV) sync --locked --project $(P3)
	$(UV) sync --locked --project $(P4)

##@ Local stack (SeaweedFS S3, Prefect server, MLflow server on 127.0.0.1)
.PHONY: up down status logs
up: _uv ## Start the local stack (idempotent) and wait until it is healthy
	@$(STACK_PY) up

down: _uv ## Stop the local stack this checkout started (state is kept)
	@$(STACK_PY) down

status: _uv ## Show each service's process state and health
	@$(STACK_PY) status

logs: _uv ## Print the tail of each service log (SERVICE=mlflow LINES=200)
	@$(STACK_PY) logs $(SERVICE) -n $(or $(LINES),40)

##@ Patterns
.PHONY: patterns pattern-1 pattern-2 pattern-2-compile pattern-3 p3-workers pattern-4
patterns: pattern-1 pattern-2 pattern-3 pattern-4 ## Run every pattern, in order, on the local tier

pattern-1: up ## Prefect orchestrating MLflow (tracking, registry, serving), DVC data
	@cd $(P1) && $(UV) run --locked python data.py publish
	@cd $(P1) && $(UV) run --locked python flow.py $(ARGS)

pattern-2: up ## Airflow triggering Kubeflow Pipelines: ETL in Airflow, training in KFP (kfp.local)
	@$(UV) sync --locked --quiet --project $(P2)/pipeline
	@cd $(P2) && $(UV) run --locked python run.py $(ARGS)

pattern-2-compile: _uv ## Compile pattern 2's KFP pipeline to IR YAML (pipeline/p2_pipeline.yaml)
	@cd $(P2)/pipeline && $(UV) run --locked python pipeline.py compile

pattern-3: p3-workers ## Metaflow runs distributed by Prefect workers (2 under supervisord), lineage on S3
	@cd $(P3) && $(UV) run --locked python flow.py $(ARGS)

p3-workers: up ## Start P3_WORKERS (default 2) Prefect workers for pattern 3's work pool (idempotent)
	@$(UV) sync --locked --quiet --project $(P3)
	@$(STACK_PY) add $$(seq -f 'p3-worker-%g' 1 $(P3_WORKERS)) --cwd $(P3) \
	  --pass-env 'PREFECT_API_URL,S3_*,P3_*,DO_NOT_TRACK' -- $(P3)/.venv/bin/python $(P3)/worker.py '{name}'

pattern-4: up ## GitHub Actions' CD cycle for Prefect, locally: lint, test, build, deploy, run, verify
	@echo "== pattern 4, stage 1/5: lint" && $(MAKE) --no-print-directory p4-lint
	@echo "== pattern 4, stage 2/5: test" && $(MAKE) --no-print-directory p4-test
	@echo "== pattern 4, stage 3/5: build" && $(MAKE) --no-print-directory p4-build
	@echo "== pattern 4, stage 4/5: deploy" && $(MAKE) --no-print-directory p4-deploy
	@echo "== pattern 4, stage 5/5: run (a local worker executes it)" && $(MAKE) --no-print-directory p4-worker p4-run

##@ Pattern 4 stages (what .github/workflows/p4-cd.yml runs; P4_* variables, see its .env.example)
.PHONY: p4-lint p4-test p4-build p4-validate p4-deploy p4-run p4-worker
p4-lint: _uv ## Pattern 4 lint stage: ruff check and format check of the pattern
	@$(P4_RUN) ruff check . && $(P4_RUN) ruff format --check .

p4-test: _uv ## Pattern 4 test stage: the pattern's unit tests (no server)
	@$(P4_RUN) pytest -q

p4-build: _uv ## Pattern 4 build stage: an image if Docker answers, else a source snapshot; then push
	@$(P4_RUN) python release.py build

p4-validate: _uv ## Pattern 4 dry run: check every deployment in prefect.yaml, deploy nothing
	@$(P4_RUN) python release.py validate

p4-deploy: _uv ## Pattern 4 deploy stage: `prefect deploy --all` from prefect.yaml (PREFECT_API_URL)
	@$(P4_RUN) python release.py deploy

p4-run: _uv ## Pattern 4 run stage: run p4-retrain and p4-batch-score, wait, verify the model
	@$(P4_RUN) python release.py run

p4-worker: up ## Start a local Prefect worker for pattern 4's work pool (idempotent)
	@$(UV) sync --locked --quiet --project $(P4)
	@$(STACK_PY) add p4-worker --cwd $(P4) \
	  --pass-env 'PREFECT_API_URL,S3_*,P4_*,DO_NOT_TRACK' -- $(P4)/.venv/bin/python $(P4)/worker.py '{name}'

##@ kind tier (Kubernetes + KFP standalone; needs Docker; run by .github/workflows/e2e-kind.yml)
KIND := UV=$(UV) bash $(ROOT)/infra/kind/kind.sh
P2_KFP_IMAGE ?= p2-kfp-python:0.1.0
.PHONY: kind-up kind-down kind-image kind-logs pattern-2-cluster
kind-up: ## Create the kind cluster and install Kubeflow Pipelines (pinned), wait until ready
	@$(KIND) up

kind-down: ## Delete the kind cluster and stop its port-forwards
	@$(KIND) down

kind-image: ## Build pattern 2's KFP image and load it into the kind cluster
	docker build -t $(P2_KFP_IMAGE) $(P2)/pipeline
	@$(KIND) load $(P2_KFP_IMAGE)

kind-logs: ## Nodes, KFP pods and recent pipeline pod logs
	@$(KIND) logs

pattern-2-cluster: _uv ## Pattern 2 in cluster mode: the DAG submits from a pod to the kind cluster's KFP
	@$(KIND) port-forward
	@$(KIND) s3 p2-data
	@set -a && . "$(STACK_STATE_DIR)/../kind/s3.env" && set +a && \
	  P2_KFP_HOST=http://ml-pipeline.kubeflow:8888 P2_KFP_IMAGE=$(P2_KFP_IMAGE) \
	  $(MAKE) --no-print-directory pattern-2

##@ Quality
.PHONY: test lint bench
test: _uv ## Run the test suite (starts its own stack on free ports)
	$(UV) sync --locked --project $(ROOT)
	$(UV) sync --locked --project $(ROOT)/infra/local
	$(UV) sync --locked --project $(P1)
	$(UV) sync --locked --project $(P2)
	$(UV) sync --locked --project $(P2)/pipeline
	$(UV) sync --locked --project $(P3)
	$(UV) sync --locked --project $(P4)
	@rc=0; $(UV) run --locked --project $(ROOT) pytest $(PYTEST_ARGS) || rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests (exit 5): that is a failure here" >&2; fi; \
	  exit $$rc

lint: _uv ## ruff (lint + format check), shellcheck, GitHub workflow schema check and zizmor
	$(UV) run --locked --project $(ROOT) ruff check $(ROOT)
	$(UV) run --locked --project $(ROOT) ruff format --check $(ROOT)
	cd $(ROOT) && $(UV) run --locked --project $(ROOT) shellcheck .ci/run $$(git ls-files '*.sh')
	cd $(ROOT) && $(UV) run --locked --project $(ROOT) check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	cd $(ROOT) && $(UV) run --locked --project $(ROOT) zizmor --offline --no-progress .github/workflows

bench: _uv ## Benchmarks on a stack of its own: stack start, warm pattern-1/2/3/4, p3 deployment overhead (medians; BENCH_REPEAT=3)
	$(UV) run --locked --project $(ROOT) python $(ROOT)/bench/run.py

.PHONY: _p3-overhead
_p3-overhead: p3-workers
	@cd $(P3) && $(UV) run --locked python $(ROOT)/bench/p3_overhead.py $(or $(BENCH_REPEAT),3)

##@ Housekeeping
.PHONY: clean
clean: ## Stop the stack and remove state, environments and pattern data copies
	-@[ -x "$(UV)" ] && $(STACK_PY) down || true
	rm -rf $(ROOT)/.state $(ROOT)/.venv $(ROOT)/infra/local/.venv $(P1)/.venv $(P1)/.dvc/cache $(P1)/.dvc/tmp
	rm -rf $(P2)/.venv $(P2)/pipeline/.venv $(P2)/.state $(P3)/.venv $(P3)/.state
	-chmod -R u+w $(P4)/.state 2>/dev/null; rm -rf $(P4)/.venv $(P4)/.state
	rm -f $(P1)/data/raw/breast_cancer.csv

# ---- bootstrap ------------------------------------------------------------------
.PHONY: _uv
_uv:
	@if [ ! -x "$(UV)" ]; then \
	  echo "uv not found: installing uv $(UV_VERSION) into .tools/"; \
	  python3 -m venv $(ROOT)/.tools || { echo "error: python3 -m venv failed; install your distribution's python3-venv package, or install uv (https://docs.astral.sh/uv/)" >&2; exit 1; }; \
	  $(ROOT)/.tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"; \
	fi
