# One entry point for people and CI. Every target works offline except deploy/destroy/status/dashboard/submit,
# which need AWS credentials. Versions are pinned in requirements*.txt and package.json only.
#
# CONFIG=my.yaml selects the config file for every target (the same as `cdk ... -c config=my.yaml`);
# CDK_ARGS adds more cdk arguments (`-c eks.version=1.32`). YES=1 skips the confirmation of deploy/destroy.
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
CONFIG ?=
YES ?=
CRD_DIR ?=
CONFIG_ARGS := $(if $(CONFIG),-c config=$(CONFIG))
OPS := $(BIN)/python -m ops --outputs-file cdk-outputs.json $(if $(CONFIG),--config $(CONFIG))
SUMMARY := $(BIN)/python scripts/summary.py cdk.out --config-name "$(or $(CONFIG),the defaults (no CONFIG=))"
# The app writes cdk.out/manifests/ on every synth; files of a feature turned off since would stay behind.
FRESH_MANIFESTS := rm -rf cdk.out/manifests
STACKS = $(shell $(BIN)/python scripts/summary.py --stack-ids cdk.out)

.PHONY: help deps deps-ops deps-dev synth test lint diff snapshots config-docs imports bench \
	bench-recovery bench-overhead bench-failure-policy bench-head-recovery job-local preflight deploy destroy plan status dashboard \
	submit outputs jobs logs stop deps-submit clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.runtime: requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.ops: $(VENV)/.runtime requirements-ops.txt
	$(BIN)/pip install -q -r requirements-ops.txt
	touch $@

$(VENV)/.dev: $(VENV)/.ops requirements-dev.txt jobs/fsdp_ray/requirements.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# The Ray job SDK alone (for submit, jobs, logs, stop), at the version pinned once in the job's requirements:
# not the job's torch and datasets, nor the test toolchain.
$(VENV)/.submit: $(VENV)/.ops jobs/fsdp_ray/requirements.txt
	$(BIN)/pip install -q "ray[default]==$$(sed -n 's/^ray\[[a-z,]*\]==//p' jobs/fsdp_ray/requirements.txt)"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(VENV)/.runtime node_modules/.installed ## Install the pinned runtime deps (Python venv + CDK CLI)

deps-ops: deps $(VENV)/.ops ## Also install the operations CLI's deps (status, dashboard)

deps-dev: deps-ops $(VENV)/.dev ## Also install test, lint and Ray job deps (the Ray SDK for submit)

synth: deps ## Synthesize every stack (offline; CONFIG=my.yaml) and summarize groups, FSx and price
	$(FRESH_MANIFESTS)
	$(OFFLINE) $(CDK) synth -q $(CONFIG_ARGS) $(CDK_ARGS)
	@$(SUMMARY)

test: deps-dev ## Run the whole test suite
	$(OFFLINE) $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: deps-dev ## ruff (lint and format) on the Python code, shellcheck on the shell scripts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/shellcheck --shell=bash lifecycle_scripts/*.sh .ci/run

snapshots: synth ## Rewrite the committed template snapshots from cdk.out (review the git diff)
	$(BIN)/python scripts/snapshots.py update cdk.out tests/snapshots

config-docs: deps ## Regenerate docs/CONFIGURATION.md from the config model (every field, default and rule)
	$(BIN)/python scripts/config_reference.py

diff: synth ## Regression check: the default config's stacks against the committed snapshots, offline
	$(BIN)/python scripts/snapshots.py prepare-diff cdk.out tests/snapshots cdk.out/snapshot-baseline
	@status=0; for stack in $(STACKS); do \
	  $(OFFLINE) $(CDK) diff $$stack --exclusively --app cdk.out --template cdk.out/snapshot-baseline/$$stack.template.json --fail || status=1; \
	done; exit $$status

# --method template compares templates: no change set, only the bootstrap lookup role's read-only rights.
plan: preflight ## Live diff of CONFIG against the deployed stacks, read-only (templates, manifests as YAML)
	$(FRESH_MANIFESTS)
	$(CDK) synth -q $(CONFIG_ARGS) $(CDK_ARGS)
	$(CDK) diff --all --app cdk.out --method template
	$(OPS) manifest-diff cdk.out

imports: deps node_modules/.installed ## Regenerate k8s_charts/imports and crd_schemas from the pinned KubeRay CRDs (CRD_DIR=local copy)
	$(BIN)/python k8s_charts/regenerate_imports.py $(if $(CRD_DIR),--crd-dir $(CRD_DIR))

bench: deps-dev ## Synth-time benchmark (ratios against a one-cluster app measured in the same run)
	$(OFFLINE) $(BIN)/python bench/synth.py

bench-recovery: deps-dev ## Ray job recovery after a killed worker vs a cold start, in the same run (~3 min)
	$(BIN)/python bench/recovery.py

bench-overhead: deps-dev ## Ray Train vs torchrun steps/s, and sync vs async checkpoint stall, in one run (~3 min)
	$(BIN)/python bench/overhead.py

bench-failure-policy: deps-dev ## Per-step cost of the job's failure policy, with vs without, in one run (~1 min)
	$(BIN)/python bench/failure_policy.py

bench-head-recovery: deps-dev ## Head loss: time to resume with vs without GCS fault tolerance (~3 min; redis-server)
	$(BIN)/python bench/head_recovery.py

job-local: deps-dev ## Run the FSDP Ray job on a local Ray (CPU, 2 workers), storing under .ray_results/
	$(BIN)/python jobs/fsdp_ray/train.py --gpus-per-worker 0 --num-workers 2 --storage-path "$(CURDIR)/.ray_results" \
		--max-steps 150 --checkpoint-every 25 $(ARGS)

preflight: deps-ops ## Check AWS credentials and region (what deploy/destroy/status need), in seconds
	$(OPS) preflight

# The plan summary.py shows is the approval: the CDK CLI cannot ask per stack while it deploys 4 stacks at a
# time (with --concurrency > 1 it refuses instead of asking), so it is told not to ask again.
deploy: preflight ## Show the plan and price, ask, then deploy every stack (CONFIG=my.yaml, YES=1 to skip asking)
	$(OPS) preflight --deploy
	$(FRESH_MANIFESTS)
	$(CDK) synth -q $(CONFIG_ARGS) $(CDK_ARGS)
	$(SUMMARY) --plan deploy $(if $(YES),--yes)
	$(CDK) deploy --all --app cdk.out --concurrency 4 --require-approval never --outputs-file cdk-outputs.json

destroy: preflight ## Show what is deleted (FSx and its checkpoints included), ask, then destroy every stack
	$(FRESH_MANIFESTS)
	$(CDK) synth -q $(CONFIG_ARGS) $(CDK_ARGS)
	$(SUMMARY) --plan destroy $(if $(YES),--yes)
	$(CDK) destroy --all --app cdk.out --force
	$(OPS) leftovers $(if $(KEEP_CLUSTER_LOGS),--keep-logs)

status: deps-ops ## HyperPod nodes and RayCluster pods of the deployed cluster (ARGS=--watch to follow)
	$(OPS) status $(ARGS)

outputs: deps-ops ## Rewrite cdk-outputs.json from the deployed stacks in CloudFormation (another machine, a lost file)
	$(OPS) outputs

dashboard: deps-ops ## Port-forward the Ray dashboard and Grafana, print their URLs (Ctrl-C stops them)
	$(OPS) dashboard $(ARGS)

deps-submit: deps-ops $(VENV)/.submit ## Also install the Ray job SDK (submit, jobs, logs, stop)

submit: deps-submit ## Submit jobs/fsdp_ray to the deployed cluster (ARGS='--follow -- --max-steps 500')
	$(OPS) submit $(ARGS)

jobs: deps-submit ## List the Ray jobs on the cluster: state, training run, start, duration
	$(OPS) jobs $(ARGS)

logs: deps-submit ## A job's logs (ARGS='JOB_ID --follow'; no id: the newest running job)
	$(OPS) logs $(ARGS)

stop: deps-submit ## Stop a Ray job (ARGS=JOB_ID); its checkpoints stay, a resubmit resumes
	$(OPS) stop $(ARGS)

clean: ## Remove build output (keeps the venv and node_modules)
	rm -rf cdk.out .pytest_cache .ruff_cache
