# One entry point for people and CI. Every target works offline except deploy/destroy/submit/hyperpod
# targets, which need AWS credentials. Versions are pinned in requirements*.txt and package.json only.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(CURDIR)/node_modules/.bin:$(BIN):$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
# Synth needs no credentials; without this the SDK spends seconds probing for an instance role.
OFFLINE := AWS_EC2_METADATA_DISABLED=true
CDK := cdk --no-notices
STACKS = $(shell $(BIN)/python scripts/summary.py --stack-ids cdk.out)

.PHONY: help deps deps-dev synth test lint diff snapshots config-docs imports bench bench-recovery job-local submit deploy destroy clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.runtime: requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt jobs/fsdp_ray/requirements.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(VENV)/.runtime node_modules/.installed ## Install the pinned runtime deps (Python venv + CDK CLI)

deps-dev: deps $(VENV)/.dev ## Also install test, lint and Ray job deps

synth: deps ## Synthesize every stack on the default config (offline) and summarize
	$(OFFLINE) $(CDK) synth -q $(CDK_ARGS)
	@$(BIN)/python scripts/summary.py cdk.out

test: deps-dev ## Run the whole test suite
	$(OFFLINE) $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: deps-dev ## ruff (lint and format) on the Python code, shellcheck on the shell scripts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/shellcheck --shell=bash lifecycle_scripts/*.sh jobs/*.sh .ci/run

snapshots: synth ## Rewrite the committed template snapshots from cdk.out (review the git diff)
	$(BIN)/python scripts/snapshots.py update cdk.out tests/snapshots

config-docs: deps ## Regenerate docs/CONFIGURATION.md from the config model (every field, default and rule)
	$(BIN)/python scripts/config_reference.py

diff: synth ## cdk diff every stack against the committed snapshots, offline; fails on any change
	$(BIN)/python scripts/snapshots.py prepare-diff cdk.out tests/snapshots cdk.out/snapshot-baseline
	@status=0; for stack in $(STACKS); do \
	  $(OFFLINE) $(CDK) diff $$stack --exclusively --app cdk.out --template cdk.out/snapshot-baseline/$$stack.template.json --fail || status=1; \
	done; exit $$status

imports: node_modules/.installed ## Regenerate the typed KubeRay classes from ../shared/kuberay-v1.7.0/crds
	$(BIN)/python k8s_charts/regenerate_imports.py

bench: deps-dev ## Synth-time benchmark (ratios against a one-cluster app measured in the same run)
	$(OFFLINE) $(BIN)/python bench/synth.py

bench-recovery: deps-dev ## Ray job recovery after a killed worker vs a cold start, in the same run (~3 min)
	$(BIN)/python bench/recovery.py

job-local: deps-dev ## Run the FSDP Ray job on a local Ray (CPU, 2 workers), storing under .ray_results/
	$(BIN)/python jobs/fsdp_ray/train.py --cpu --num-workers 2 --storage-path "$(CURDIR)/.ray_results" \
		--max-steps 150 --checkpoint-every 25 $(ARGS)

submit: deps-dev ## Submit the FSDP job to the deployed cluster (needs credentials and cdk-outputs.json)
	bash jobs/submit.sh $(ARGS)

deploy: deps ## Deploy every stack (needs credentials); independent stacks deploy in parallel
	$(CDK) deploy --all --concurrency 4 --require-approval broadening --outputs-file cdk-outputs.json $(CDK_ARGS)

destroy: deps ## Destroy every stack, dependents first (needs credentials)
	$(CDK) destroy --all --force $(CDK_ARGS)

clean: ## Remove build output (keeps the venv and node_modules)
	rm -rf cdk.out .pytest_cache .ruff_cache
