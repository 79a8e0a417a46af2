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
# Python keeps the modules it compiles (.pyc) in the project's environments, so
# every process after the first imports Prefect, MLflow or Airflow in half the
# time (`import prefect, mlflow`: 6.4 s without the cache, 2.8 s with it). An
# environment that sets PYTHONDONTWRITEBYTECODE=1 (these machines do) would make
# each of them compile its imports again; pass it on make's command line to keep it.
export PYTHONDONTWRITEBYTECODE :=

# ---- local stack: ports and keys (environment wins) ----------------------------
export STACK_STATE_DIR ?= $(ROOT)/.state/local
export STACK_PREFECT_PORT ?= 4200
export STACK_MLFLOW_PORT ?= 5000
export STACK_S3_PORT ?= 8333
# Keys and passwords: generated once per state folder (infra/local/credentials.py,
# mode 0600); the clients' are exported unless the environment sets them
# (S3_ACCESS_KEY_ID=... wins). The servers' own (STACK_*) stay in the file. They go
# with the URLs make derives below: a server whose URL you set (Prefect Cloud in
# GitHub Actions, your MLflow) gets the login you set, not this stack's.
LOCAL_SECRETS := $(STACK_STATE_DIR)/secrets.env
ifneq ($(STACK),compose)
$(shell python3 $(ROOT)/infra/local/credentials.py $(STACK_STATE_DIR) >/dev/null)
LOCAL_LOGINS := $(if $(filter undefined,$(origin S3_ENDPOINT_URL)),S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY) \
  $(if $(filter undefined,$(origin PREFECT_API_URL)),PREFECT_API_AUTH_STRING) \
  $(if $(filter undefined,$(origin MLFLOW_TRACKING_URI)),MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD) \
  $(if $(filter undefined,$(origin P2_AIRFLOW_API_URL)),P2_AIRFLOW_PASSWORD)
$(foreach kv,$(shell grep -E '^[A-Z0-9_]+=' $(LOCAL_SECRETS)),$(if $(filter $(firstword $(subst =, ,$(kv))),\
  $(LOCAL_LOGINS)),$(eval export $(subst =, ?= ,$(kv)))))
endif
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

# ---- tier: STACK=local (native processes, the default) or STACK=compose -------------
# The compose tier (docker-compose.yml, infra/compose/README.md) publishes the same
# ports on 127.0.0.1, so the variables above reach either; only what differs is set here.
STACK ?= local
ifeq ($(filter $(STACK),local compose),)
$(error STACK=$(STACK): use STACK=local (native processes) or STACK=compose (docker-compose.yml))
endif
export STACK_POSTGRES_PORT ?= 5432
export STACK_AIRFLOW_PORT ?= 8080
# Pattern 2 triggers its DAGs through Airflow's REST API, on either tier.
export P2_AIRFLOW_API_URL ?= http://127.0.0.1:$(STACK_AIRFLOW_PORT)
export COMPOSE_STATE_DIR ?= $(ROOT)/.state/compose
COMPOSE_SH := UV=$(UV) bash $(ROOT)/infra/compose/compose.sh
ifeq ($(STACK),compose)
# The stack's generated secrets (once per checkout, a name added later appended).
$(shell $(COMPOSE_SH) secrets)
include $(COMPOSE_STATE_DIR)/secrets.env
# A key or password a root .env sets reaches the containers (compose.sh hands it to
# docker compose after secrets.env): the clients here take the same one.
$(foreach kv,$(shell grep -hE '^(S3_ACCESS_KEY_ID|S3_SECRET_ACCESS_KEY|PREFECT_API_AUTH_STRING|MLFLOW_TRACKING_(USERNAME|PASSWORD))=' $(ROOT)/.env 2>/dev/null),$(eval $(kv)))
export S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY PREFECT_API_AUTH_STRING MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD
# Pattern 2 logs in to the compose Airflow as its admin...
export P2_AIRFLOW_USERNAME ?= admin
export P2_AIRFLOW_PASSWORD ?= $(AIRFLOW_ADMIN_PASSWORD)
# ... and pattern 4 ships source releases to the compose worker (a process worker).
export P4_BUILD ?= source
endif
# Start the stack (idempotent, waits until healthy); compose: with the pattern's profile.
stack_up = $(if $(filter compose,$(STACK)),$(UV) sync --locked --quiet --project $(ROOT) && \
  COMPOSE_PROFILES=$(1) $(COMPOSE_SH) up,$(STACK_PY) up)
P1 := $(ROOT)/patterns/p1_prefect_mlflow
P2 := $(ROOT)/patterns/p2_airflow_kfp
P3 := $(ROOT)/patterns/p3_metaflow_prefect
P3_WORKERS ?= 2
P4 := $(ROOT)/patterns/p4_github_actions_prefect
P4_RUN = cd $(P4) && $(UV) run --locked
P4_REPORT = $(or $(P4_STATE_DIR),$(P4)/.state)/report
BENCH_ENVS := $(ROOT)/bench/envs
PYTEST_ARGS ?=

##@ Start here
.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"} /^##@/ {printf "\n%s\n", substr($$0, 5)} \
	  /^[a-zA-Z0-9_-]+:.*##/ {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@printf "\nVariables: STACK=local|compose (the tier), STACK_*_PORT, STACK_STATE_DIR, S3_* (see .env.example);\n"
	@printf "PYTEST_ARGS for make test. Every pattern target takes STACK=compose, e.g. make pattern-1 STACK=compose.\n"

.PHONY: setup
setup: _uv ## Install uv and every environment from its lock file
	$(UV) sync --locked --project $(ROOT)
	$(UV) sync --locked --project $(ROOT)/infra/local
	$(UV) sync --locked --project $(P1)
	$(UV) sync --locked --project $(P2)
	$(UV) sync --locked --project $(P2)/pipeline
	$(UV) sync --locked --project $(P3)
	$(UV) sync --locked --project $(P4)
	$(UV) sync --locked --project $(BENCH_ENVS)/dagster
	$(UV) sync --locked --project $(BENCH_ENVS)/flyte

##@ The stack (local: S3, Prefect, MLflow as processes; STACK=compose: docker-compose.yml)
.PHONY: up down status logs env compose-build compose-reset
env: ## Print the stack's URLs and generated credentials as exports: eval "$(make -s env)"
	@for v in PREFECT_API_URL PREFECT_API_AUTH_STRING MLFLOW_TRACKING_URI MLFLOW_TRACKING_USERNAME \
	  MLFLOW_TRACKING_PASSWORD S3_ENDPOINT_URL S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY P2_AIRFLOW_API_URL P2_AIRFLOW_PASSWORD; do \
	  printf 'export %s=%q\n' "$$v" "$${!v}"; done

up: _uv ## Start the stack (idempotent) and wait until it is healthy; compose: every profile
	@$(call stack_up,*)

down: _uv ## Stop the stack (local: this checkout's; compose: containers removed, volumes kept)
ifeq ($(STACK),compose)
	@$(COMPOSE_SH) down
else
	@$(STACK_PY) down
endif

status: _uv ## Show each service's state and health
ifeq ($(STACK),compose)
	@$(COMPOSE_SH) status
else
	@$(STACK_PY) status
endif

logs: _uv ## Print the tail of each service log (SERVICE=mlflow LINES=200)
ifeq ($(STACK),compose)
	@LINES=$(or $(LINES),40) $(COMPOSE_SH) logs $(SERVICE)
else
	@$(STACK_PY) logs $(SERVICE) -n $(or $(LINES),40)
endif

compose-build: _uv ## Build the compose tier's images (air-gapped when no registry answers)
	@$(UV) sync --locked --quiet --project $(ROOT)
	@$(COMPOSE_SH) build

compose-reset: _uv ## Remove the compose stack AND its named volumes (all its data)
	@$(UV) sync --locked --quiet --project $(ROOT)
	@$(COMPOSE_SH) reset

##@ Patterns
.PHONY: patterns pattern-1 pattern-1-loop p1-retrain p1-endpoint pattern-2 p2-airflow pattern-2-compile pattern-3 p3-workers pattern-4
patterns: pattern-1 pattern-2 pattern-3 pattern-4 ## Run every pattern, in order (STACK=local by default)

pattern-1: _uv ## Prefect orchestrating MLflow (tracking, registry, serving), DVC data
	@$(call stack_up,core)
	@cd $(P1) && $(UV) run --locked python data.py publish
	@cd $(P1) && $(UV) run --locked python flow.py $(ARGS)

pattern-1-loop: pattern-1 p1-retrain p1-endpoint ## Pattern 1's loop: new data and drift retrain through Prefect events, the endpoint follows
	@cd $(P1) && $(UV) run --locked python loop.py

# Pattern 1's two long-running programs: under the local stack's supervisord, or with
# STACK=compose the `p1` profile's containers (both start together there).
p1-retrain: _uv ## Pattern 1's deployment p1-retrain (supervisord; compose: a container): daily cron + triggers on new data and drift
ifeq ($(STACK),compose)
	@$(call stack_up,p1)
else
	@$(call stack_up,core)
	@$(UV) sync --locked --quiet --project $(P1)
	@$(STACK_PY) add p1-retrain --cwd $(P1) \
	  --pass-env 'PREFECT_*,MLFLOW_*,S3_*,P1_*,DO_NOT_TRACK' -- $(P1)/.venv/bin/python $(P1)/flow.py serve
endif

p1-endpoint: _uv ## Pattern 1's live endpoint (supervisord; compose: a container): serves @champion on 127.0.0.1:P1_ENDPOINT_PORT, follows it
ifeq ($(STACK),compose)
	@$(call stack_up,p1)
else
	@$(call stack_up,core)
	@$(UV) sync --locked --quiet --project $(P1)
	@$(STACK_PY) add p1-endpoint --cwd $(P1) \
	  --pass-env 'MLFLOW_*,S3_*,P1_*,DO_NOT_TRACK' -- $(P1)/.venv/bin/python $(P1)/endpoint.py
endif

pattern-2: p2-airflow ## Airflow triggering Kubeflow Pipelines: an ETL DAG hands data to the training DAG (an Asset), KFP trains
	@cd $(P2) && $(UV) run --locked python -m harness $(ARGS)  # this repository's harness: one ETL run and its training

# Airflow's services: api-server (the UI), scheduler, dag-processor, triggerer. Local:
# programs of the stack's supervisord, SQLite in the pattern's state; compose: profile p2.
P2_AIRFLOW_ENV = $(STACK_STATE_DIR)/programs/p2-airflow.env
P2_AIRFLOW_ADD = $(STACK_PY) add --cwd $(P2) --pass-env 'S3_*,P2_*' --env-file $(P2_AIRFLOW_ENV) \
  --health $(P2_AIRFLOW_API_URL)/api/v2/monitor/health
p2-airflow: _uv ## Pattern 2's Airflow services (supervisord; compose: containers); its UI at 127.0.0.1:STACK_AIRFLOW_PORT
ifeq ($(STACK),compose)
	@$(call stack_up,p2)
else
	@$(call stack_up,core)
	@$(UV) sync --locked --quiet --project $(P2)
	@$(UV) sync --locked --quiet --project $(P2)/pipeline  # kfp.local runs the pipeline on this machine
	@cd $(P2) && $(UV) run --locked python -m harness services $(P2_AIRFLOW_ENV)
	@$(P2_AIRFLOW_ADD) p2-airflow-api -- $(P2)/.venv/bin/airflow api-server
	@$(P2_AIRFLOW_ADD) --health-key scheduler p2-airflow-scheduler -- $(P2)/.venv/bin/airflow scheduler --skip-serve-logs
	@$(P2_AIRFLOW_ADD) --health-key dag_processor p2-airflow-dag-processor -- $(P2)/.venv/bin/airflow dag-processor
	@$(P2_AIRFLOW_ADD) --health-key triggerer p2-airflow-triggerer -- $(P2)/.venv/bin/airflow triggerer --skip-serve-logs
	@echo "  Airflow UI      $(P2_AIRFLOW_API_URL)  (user $${P2_AIRFLOW_USERNAME:-admin}, password: P2_AIRFLOW_PASSWORD in $(LOCAL_SECRETS))"
endif

pattern-2-compile: _uv ## Compile pattern 2's KFP pipeline to IR YAML (pipeline/p2_pipeline.yaml)
	@cd $(P2)/pipeline && $(UV) run --locked python pipeline.py compile

.PHONY: p2-mwaa-bundle
p2-mwaa-bundle: _uv ## Pattern 2's DAGs as an Amazon MWAA bundle in patterns/p2_airflow_kfp/.state/mwaa (cluster mode: P2_KFP_HOST; MWAA_AIRFLOW=)
	@cd $(P2) && $(UV) run --locked python mwaa.py $(if $(MWAA_AIRFLOW),--airflow $(MWAA_AIRFLOW)) $(if $(MWAA_PYTHON),--python $(MWAA_PYTHON))

.PHONY: pattern-2-test
pattern-2-test: _uv ## Pattern 2's fast tests, no services: the DAG side (tests/), then the KFP side (pipeline/tests/)
	@cd $(P2) && $(UV) run --locked pytest -q
	@cd $(P2)/pipeline && $(UV) run --locked pytest -q

pattern-3: p3-workers ## Metaflow runs distributed by Prefect workers (2 under supervisord), lineage on S3
	@cd $(P3) && $(UV) run --locked python flow.py $(ARGS)

p3-workers: _uv ## Start P3_WORKERS (default 2) Prefect workers for pattern 3's work pool (compose: 2 containers)
	@$(call stack_up,p3)
ifneq ($(STACK),compose)
	@$(UV) sync --locked --quiet --project $(P3)
	@$(STACK_PY) add $$(seq -f 'p3-worker-%g' 1 $(P3_WORKERS)) --cwd $(P3) \
	  --pass-env 'PREFECT_API_URL,PREFECT_API_AUTH_STRING,S3_*,P3_*,DO_NOT_TRACK' -- $(P3)/.venv/bin/python $(P3)/worker.py '{name}'
endif

pattern-4: _uv ## GitHub Actions' CD cycle for Prefect, locally: lint, test, build, deploy, run, verify
ifeq ($(STACK)-$(P4_BUILD),compose-image)
	@echo "error: P4_BUILD=image runs on the local tier, where a Docker worker on this host runs the image" >&2; \
	  echo "  fix: drop STACK=compose (the compose tier's worker container runs source releases)" >&2; exit 2
endif
	@$(call stack_up,p4)
	@echo "== pattern 4, stage 1/5: lint" && $(MAKE) --no-print-directory p4-lint
	@echo "== pattern 4, stage 2/5: test" && $(MAKE) --no-print-directory p4-test
	@echo "== pattern 4, stage 3/5: build" && $(MAKE) --no-print-directory p4-build
	@echo "== pattern 4, stage 4/5: deploy" && $(MAKE) --no-print-directory p4-deploy
	@echo "== pattern 4, stage 5/5: run (a local worker executes it)" && $(MAKE) --no-print-directory p4-worker p4-run

##@ Pattern 4 stages (what .github/workflows/p4-cd.yml runs; P4_* variables, see its .env.example)
.PHONY: p4-lint p4-test p4-build p4-validate p4-report p4-pr-comment p4-deploy p4-run p4-worker
p4-lint: _uv ## Pattern 4 lint stage: ruff check and format check of the pattern
	@$(P4_RUN) ruff check . && $(P4_RUN) ruff format --check .

p4-test: _uv ## Pattern 4 test stage: the pattern's unit tests (no server)
	@$(P4_RUN) pytest -q

p4-build: _uv ## Pattern 4 build stage: an image where one can be built (P4_BUILD=image: air-gapped here), else source; push
ifeq ($(P4_BUILD),image)
	@docker info >/dev/null 2>&1 || $(UV) sync --locked --quiet --project $(ROOT)  # compose.sh starts an engine
	@exports=$$($(COMPOSE_SH) p4-image-env) && eval "$$exports" && $(P4_RUN) python release.py build
else
	@$(P4_RUN) python release.py build
endif

p4-validate: _uv ## Pattern 4 dry run: check every deployment in prefect.yaml, deploy nothing
	@$(P4_RUN) python release.py validate

p4-report: _uv ## Pattern 4 pull-request report: train on this branch, compare with the model in service (report.md + PNG)
	@$(P4_RUN) python report.py

p4-pr-comment: ## Post pattern 4's report on the pull request with CML (GitHub Actions: setup-cml, REPO_TOKEN)
	@command -v cml >/dev/null || { echo "error: cml is not on PATH" >&2; \
	  echo "  fix: in GitHub Actions, run iterative/setup-cml first (p4-cd.yml's report job)" >&2; exit 1; }
	@test -f $(P4_REPORT)/report.md || { echo "error: no report at $(P4_REPORT)/report.md" >&2; \
	  echo "  fix: run make p4-report first" >&2; exit 1; }
	@cd $(P4_REPORT) && cml comment create --watermark-title="p4-retrain on this branch" report.md

p4-deploy: _uv ## Pattern 4 deploy stage: `prefect deploy --all` from prefect.yaml (PREFECT_API_URL)
	@$(P4_RUN) python release.py deploy

p4-run: _uv ## Pattern 4 run stage: run p4-retrain and p4-batch-score, wait, verify the model
	@$(P4_RUN) python release.py run

p4-worker: _uv ## Start a worker for the last build's pool (idempotent): p4-worker, or p4-docker-worker for an image
	@$(call stack_up,p4)
ifneq ($(STACK),compose)
	@$(UV) sync --locked --quiet --project $(P4)
	@kind=$$($(P4_RUN) python worker.py --which | cut -d' ' -f1) && \
	  $(STACK_PY) add $$([ "$$kind" = docker ] && echo p4-docker-worker || echo p4-worker) --cwd $(P4) \
	  --pass-env 'PREFECT_API_URL,PREFECT_API_AUTH_STRING,S3_*,P4_*,DO_NOT_TRACK,DOCKER_*' -- $(P4)/.venv/bin/python $(P4)/worker.py '{name}'
endif

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

##@ Lineage
.PHONY: lineage
# ID and ID_KIND reach the recipe as environment variables: the shell never parses them.
lineage: export ID := $(ID)
lineage: export ID_KIND := $(ID_KIND)
lineage: _uv ## Print git commit -> data -> orchestrator run -> tracker run -> model version of ID (ID_KIND= if ambiguous)
ifeq ($(strip $(ID)),)
	@echo "usage: make lineage ID=<id>: a model version (models:/p1-breast-cancer@champion, NAME/VERSION), an MLflow run id," >&2
	@echo "  a Prefect flow run id, an Airflow DAG run (p2_airflow_kfp/RUN_ID), a KFP run id (local-...)," >&2
	@echo "  a Metaflow run (P3TrainFlow/123) or a pattern-4 release (its commit SHA); each pattern's Result line has them" >&2
	@exit 2
endif
	@$(UV) sync --locked --quiet --project $(ROOT)
	@UV=$(UV) $(UV) run --locked --quiet --project $(ROOT) python $(ROOT)/infra/lineage/lineage.py "$$ID" $${ID_KIND:+--kind "$$ID_KIND"}

# Pictures of the UIs (patterns/*/docs/img), which the READMEs show: the latest runs
# on the stack, in headless Chromium (infra/screenshots; chromium.sh installs Debian's).
.PHONY: screenshots _chromium
screenshots: _uv _chromium ## Save the UI pictures the READMEs show (patterns/*/docs/img) from the running stack; run `make patterns` first
	@$(UV) sync --locked --quiet --project $(ROOT)
	@$(UV) run --locked --quiet --project $(ROOT) python $(ROOT)/infra/screenshots/shoot.py $(foreach p,$(PATTERN),--pattern $(p))

_chromium:  # skipped when the browser tests are (PYTEST_ARGS="-m 'not browser'")
	@$(if $(findstring not browser,$(PYTEST_ARGS)),:,bash $(ROOT)/infra/screenshots/chromium.sh)

##@ Quality
.PHONY: test test-compose test-all lint bench bench-local bench-matrix bench-compose bench-p4-image
test-all: _uv ## Every test in one session (.ci/run): `make test`, the restart/double-trigger battery, pattern 4's image path and the compose tier
	@$(MAKE) --no-print-directory test PYTEST_ARGS="-m '' $(PYTEST_ARGS)"

.PHONY: test-fast
test-fast: _uv ## Every pattern folder's own fast tests, no service (`uv run pytest` in each folder)
	@for dir in $(P1) $(P2) $(P2)/pipeline $(P3) $(P4); do \
	  echo "== $${dir#$(ROOT)/}"; (cd $$dir && $(UV) run --locked pytest -q) || exit 1; done

# Two pytest-xdist workers, each with a stack of its own on ports of its own; which
# tests share a worker, and in what order they are handed out: tests/conftest.py.
# PYTEST_WORKERS=0 runs the session in one process.
PYTEST_WORKERS ?= 2
XDIST_ARGS = $(if $(filter 0,$(PYTEST_WORKERS)),-p no:xdist,-n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder)
test: setup _chromium ## Run the test suite on the local tier (two workers, each starts its own stack on free ports); prints the 15 slowest tests
	@rc=0; $(UV) run --locked --project $(ROOT) pytest $(XDIST_ARGS) --durations=15 $(PYTEST_ARGS) || rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests (exit 5): that is a failure here" >&2; fi; \
	  exit $$rc

test-compose: _uv ## Run the compose tier for real (patterns 1-4, the p1 loop, down and up) and pattern 4's image path on Docker
	$(UV) sync --locked --project $(ROOT)
	$(UV) sync --locked --project $(P1)
	$(UV) sync --locked --project $(P2)
	$(UV) sync --locked --project $(P3)
	$(UV) sync --locked --project $(P4)
	@rc=0; $(UV) run --locked --project $(ROOT) pytest -m 'compose or docker' $(ROOT)/tests/compose \
	  $(ROOT)/tests/p4_github_actions_prefect $(PYTEST_ARGS) || rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests (exit 5): that is a failure here" >&2; fi; \
	  exit $$rc

# The reliability battery (tests/reliability, marker `reliability`) plus the
# failure tests tagged `failure_mode`, which plain `make test` runs too. test-all
# runs everything in one session: the `reliability` tests last on each worker
# (tests/conftest.py), the compose tier and pattern 4's image path on one worker
# while the other runs the local tests, so nothing runs twice.
.PHONY: test-reliability
test-reliability: _uv ## Restart services mid-run, trigger runs twice at once, every bad input (local tier)
	@$(MAKE) --no-print-directory test PYTEST_ARGS="-m 'reliability or failure_mode' $(PYTEST_ARGS)"

.PHONY: test-security
test-security: _uv ## The security battery: every service refuses missing or wrong credentials, loopback only, lineage IDs (local tier)
	@$(MAKE) --no-print-directory test PYTEST_ARGS="-m 'security and not compose' $(PYTEST_ARGS)"

# Every lock file, exported with its hashes, against PyPI's advisory database. The
# vulnerability service is not reachable from every machine (these have no internet
# beyond the package index): CI runs it (.github/workflows/ci.yml, job audit).
# Accepted, with no fixed release: docs/security.md.
PIP_AUDIT_VERSION := 2.10.1
AUDIT_IGNORE := CVE-2025-69872
.PHONY: audit
audit: _uv ## pip-audit every lock file; fails on a known vulnerability (accepted ones: docs/security.md)
	@rc=0; tmp=$$(mktemp -d); for project in $(ROOT) $(ROOT)/infra/local $(ROOT)/infra/compose/server $(P1) $(P2) \
	  $(P2)/pipeline $(P3) $(P4) $(BENCH_ENVS)/dagster $(BENCH_ENVS)/flyte; do \
	  echo "== .$${project#$(ROOT)}"; \
	  $(UV) export --locked --quiet --no-emit-project --format requirements-txt --project $$project -o $$tmp/req.txt && \
	  $(UV) tool run --quiet --from pip-audit==$(PIP_AUDIT_VERSION) pip-audit --disable-pip --require-hashes --strict \
	    --progress-spinner off $(addprefix --ignore-vuln ,$(AUDIT_IGNORE)) -r $$tmp/req.txt || rc=1; \
	done; rm -rf $$tmp; exit $$rc

lint: _uv ## ruff (lint + format check), shellcheck, GitHub workflow schema check, actionlint and zizmor
	$(UV) run --locked --project $(ROOT) ruff check $(ROOT)
	$(UV) run --locked --project $(ROOT) ruff format --check $(ROOT)
	cd $(ROOT) && $(UV) run --locked --project $(ROOT) shellcheck .ci/run $$(git ls-files '*.sh')
	cd $(ROOT) && $(UV) run --locked --project $(ROOT) check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	cd $(ROOT) && $(UV) run --locked --project $(ROOT) actionlint -no-color -pyflakes= .github/workflows/*.yml
	cd $(ROOT) && $(UV) run --locked --project $(ROOT) zizmor --offline --no-progress .github/workflows

bench: _uv ## Benchmarks and the measured decision matrix (bench/results/decision-matrix.md + .png): local, compose, p4 image
	$(UV) run --locked --project $(ROOT) python $(ROOT)/bench/run.py
	$(UV) run --locked --project $(ROOT) python $(ROOT)/bench/compose.py
	$(UV) run --locked --project $(ROOT) python $(ROOT)/bench/p4_image.py
	$(UV) run --locked --project $(ROOT) python $(ROOT)/bench/report.py

bench-local: _uv ## The local tier's benchmarks and the tools side by side (no Docker), then the decision matrix
	$(UV) run --locked --project $(ROOT) python $(ROOT)/bench/run.py
	$(UV) run --locked --project $(ROOT) python $(ROOT)/bench/report.py

bench-matrix: _uv ## Only the tools side by side (incl. Dagster, Flyte), their strengths and installs (~10 min), then the matrix
	BENCH_ONLY=matrix $(UV) run --locked --project $(ROOT) python $(ROOT)/bench/run.py
	$(UV) run --locked --project $(ROOT) python $(ROOT)/bench/report.py

bench-compose: _uv ## Benchmark the compose tier: `make up STACK=compose` to healthy, cached and from nothing
	$(UV) run --locked --project $(ROOT) python $(ROOT)/bench/compose.py

bench-p4-image: _uv ## Pattern 4's cycle side by side: source, image on a cached base, image from nothing (Docker)
	$(UV) run --locked --project $(ROOT) python $(ROOT)/bench/p4_image.py

.PHONY: _p1-endpoint-bench
_p1-endpoint-bench: _uv
	@cd $(P1) && $(UV) run --locked python $(ROOT)/bench/p1_endpoint.py $(or $(BENCH_REPEAT),3)

.PHONY: _p1-events-bench
_p1-events-bench: _uv
	@cd $(P1) && $(UV) run --locked python $(ROOT)/bench/p1_events.py $(or $(BENCH_REPEAT),3)

.PHONY: _p2-airflow-stop
_p2-airflow-stop: _uv  # the bench: pattern 2's Airflow services stopped, the stack and their database kept
	@for name in p2-airflow-api p2-airflow-scheduler p2-airflow-dag-processor p2-airflow-triggerer; do \
	  $(STACK_PY) remove $$name; done

.PHONY: _p3-overhead
_p3-overhead: p3-workers
	@cd $(P3) && $(UV) run --locked python $(ROOT)/bench/p3_overhead.py $(or $(BENCH_REPEAT),3)

##@ Housekeeping
.PHONY: clean
clean: ## Stop the stack and remove state, environments and pattern data copies
	-@[ -x "$(UV)" ] && $(STACK_PY) down || true
	rm -rf $(ROOT)/.state $(ROOT)/.venv $(ROOT)/infra/local/.venv $(P1)/.venv $(P1)/.dvc/cache $(P1)/.dvc/tmp
	rm -rf $(P2)/.venv $(P2)/pipeline/.venv $(P2)/.state $(P3)/.venv $(P3)/.state
	rm -rf $(BENCH_ENVS)/dagster/.venv $(BENCH_ENVS)/flyte/.venv
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
