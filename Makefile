# Two commands do everything on a fresh machine (Python 3.11, Node 20, no AWS account):
#   make synth   synthesize the whole app with default settings, offline  -> cdk.out/
#   make test    the whole test suite (what CI runs via .ci/run)
#   make check   the fast unit layer only (tests/unit: no synth, no subprocess, no sleep)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Node 20 is what our machines run; jsii only warns about it. No CLI telemetry or notices (offline).
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
CDK := npx --no-install cdk --no-notices --no-version-reporting

.PHONY: setup synth test check test-tools diff manifests imports demo bench mirror-weights preflight compile-tag mutants cuda-check clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt model_image/requirements-test.txt model_image/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first, so nothing pulls a CUDA build (a local wheel on our
	# machines; the release pipeline passes PyTorch's CPU index in TORCH_PIP_ARGS).
	$(PY) -m pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

synth: setup
	$(CDK) synth --quiet
	@echo "templates in cdk.out/; Kubernetes manifests: make manifests"

diff: setup
	$(CDK) diff

test: setup test-tools
	$(PY) -m pytest -q

check: setup
	$(PY) -m pytest -q tests/unit

# Debian packages the tests run: bubblewrap (bwrap) runs our containers as the kubelet
# would (tests/pods), Chromium the headless-browser test of the web UI.
TEST_TOOLS := bwrap:bubblewrap chromium:chromium
test-tools:
	@missing=""; for tool in $(TEST_TOOLS); do \
	  command -v $${tool%%:*} >/dev/null || missing="$$missing $${tool#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: install Debian's$$missing (their tests are skipped without them, and fail in CI)"; fi; \
	fi

# Every Kubernetes object the app deploys, as YAML files in one folder.
manifests: synth
	$(PY) -m tools.rendering cdk.out dist/manifests

# Regenerate the typed Karpenter classes from the vendored CRDs.
imports: setup
	rm -rf k8s_charts/imports
	# One CRD file per call: cdk8s import fails when given several.
	cd k8s_charts && for crd in crds/karpenter.sh_nodepools.yaml crds/karpenter.k8s.aws_ec2nodeclasses.yaml; do \
	  npx --no-install cdk8s import --no-check-upgrade --no-save --language python --output imports $$crd || exit 1; \
	done

# Try the real server (API + web UI) on CPU with a tiny random pipeline: no weights needed.
demo: setup
	$(PY) -m tools.dev.demo

# Mirror the pinned weights once into S3 (the production weightsSource), with a sha256
# manifest that the compile Job verifies: make mirror-weights DEST=s3://<model bucket>/weights/
mirror-weights: setup
	@test -n "$(DEST)" || { echo "usage: make mirror-weights DEST=s3://<bucket>/<prefix>/"; exit 2; }
	$(PY) -m sd21.weights --dest "$(DEST)"

# Read-only checks of the AWS account and the registries before a deploy (needs AWS
# credentials): inf2 offered, Inf quota, source connection, the node AMI, Lambda
# concurrency, the images and charts the synthesized app pulls, weights.
preflight: setup
	$(PY) -m tools.preflight $(PREFLIGHT_ARGS)

# The tag the compile Job runs for these settings (compile-<model version>), for a sandbox
# that pushes its images by hand: make compile-tag CONTEXT="-c key=value ...".
compile-tag: setup
	@$(PY) -m tools.compile_tag $(CONTEXT)

# The cuda backend on a GPU machine (not in CI): tiny weights compile -> stage -> serve on
# the GPU, compared with cpu; an SD2.1-base-shaped UNet's step latency. Prints figures.
cuda-check: setup
	PYTHONPATH=model_image $(PY) tests/device/cuda_path.py

# Mutation testing of the critical modules (slow: hours for all; not run in CI):
# make mutants [MODULES="[--workers=N] [--resume|--retest-survivors] model_image/sd21/s3.py ..."].
# Prints kill rates and survivors.
mutants: setup
	$(PY) -m pip install -q -r requirements-mutation.txt
	$(PY) -m tests.mutation.run $(MODULES)

# Print the benchmark figures (not tests).
bench: setup
	$(PY) -m tools.dev.bench

clean:
	rm -rf cdk.out dist
