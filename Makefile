# The set-up commands of the README: `make run`, `make test` (what CI runs), `make lint`, `make build`.
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
INPUT ?= data/CDNOW_master.txt
OUT ?= out
BUILD_DIR ?= .aws-sam/build
# The report test opens the report in Debian's Chromium, never in a browser playwright downloads.
CHROMIUM ?= /usr/bin/chromium

export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

# sam build's python3.12 workflow needs a real python3.12 first on PATH (a pyenv shim fails its
# check): the first candidate that runs, by the path of the interpreter itself. PYTHON312=... wins.
PYTHON312_CANDIDATES = $(foreach dir,$(subst :, ,$(PATH)),$(wildcard $(dir)/python3.12)) $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) /usr/local/bin/python3.12 /usr/bin/python3.12
PYTHON312 ?= $(shell for p in $(PYTHON312_CANDIDATES); do "$$p" -c 'import sys; print(sys.executable)' 2>/dev/null && break; done)

.PHONY: install browser run test lint checkov build bench bench-spark-x1000 clean

$(VENV)/.installed: requirements/dev.txt layers/shared/requirements.txt functions/data-requirements.txt functions/models-requirements.txt functions/report-requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip==26.0.1
	$(VENV)/bin/pip install -q -r requirements/dev.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

# aws-sam-cli pins boto3 and click: it gets a venv of its own.
$(SAM_VENV)/.installed: requirements/sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q --upgrade pip==26.0.1
	$(SAM_VENV)/bin/pip install -q -r requirements/sam.txt
	touch $@

# checkov pins an older boto3 and networkx: a venv of its own too.
$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip==26.0.1
	$(CHECKOV_VENV)/bin/pip install -q -r requirements/checkov.txt
	touch $@

# The three venvs are independent: built side by side (a fresh machine spends minutes in pip).
install:
	$(MAKE) -j3 $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed

# Debian's chromium when it is missing (apt-get, as root: CI runs as root); nothing when it is there.
# CDNOW_SKIP_BROWSER_TESTS=1 skips the report's browser test, and this step with it.
browser:
ifeq ($(CDNOW_SKIP_BROWSER_TESTS),1)
	@echo "CDNOW_SKIP_BROWSER_TESTS=1: the report is not opened in a browser"
else
	@if [ ! -x "$(CHROMIUM)" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's chromium (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@if [ -x "$(CHROMIUM)" ]; then \
		echo "Chromium: $$($(CHROMIUM) --version 2>/dev/null)"; \
	else \
		echo "$(CHROMIUM) is missing and cannot be installed here: as root, apt-get install chromium;" \
			"or set CHROMIUM=<path> or CDNOW_SKIP_BROWSER_TESTS=1 (skips the report's browser test)" >&2; \
		exit 1; \
	fi
endif

run: $(VENV)/.installed
	$(VENV)/bin/cdnow run --local --input $(INPUT) --out $(OUT)

# The tests include both linters, checkov and the package-size check (tests/unit/test_template.py,
# tests/packaging/) and the report in Chromium; `make build` proves the zip resources build.
# Two workers, each taking whole test files (a file's module-scoped stack stays in one process).
test: install browser
	CDNOW_CHROMIUM=$(CHROMIUM) $(VENV)/bin/python -m pytest -n 2 --dist loadfile
	$(MAKE) build

lint: install
	$(SAM_VENV)/bin/sam validate --lint
	$(VENV)/bin/cfn-lint template.yaml
	$(MAKE) checkov

checkov: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --compact --quiet

# The zip function and its layer (IngestFunction builds SharedLayer with it). The image functions
# need Docker: `sam build` with no resource id builds everything where Docker runs.
build: $(SAM_VENV)/.installed
	@test -n "$(PYTHON312)" || { echo "make build: no python3.12 found (tried: $(PYTHON312_CANDIDATES)); set PYTHON312=/path/to/python3.12" >&2; exit 1; }
	PATH="$(dir $(PYTHON312)):$$PATH" $(SAM_VENV)/bin/sam build IngestFunction --build-dir $(BUILD_DIR)

# The benchmarks of docs/BENCHMARKS.md, one after the other on a quiet machine (about 27 minutes, README; 10 GB of memory at x1000).
# The Spark path at x1000 (70 M rows), three runs, takes most of an hour on its own: make bench-spark-x1000.
# lifetimes is a comparison only: it goes into .venv here, never into the functions.
BENCH_OUT ?= .bench
bench: $(VENV)/.installed
	$(VENV)/bin/pip install -q -r requirements/bench.txt
	$(VENV)/bin/python bench/bench_features.py --scale 100
	$(VENV)/bin/python bench/bench_scale.py --scales 1 10 100 1000
	$(VENV)/bin/python bench/bench_steps.py --scales 1 10 100
	$(VENV)/bin/python bench/bench_segments.py --replicas 100
	$(VENV)/bin/python bench/bench_clv.py --scale 100 --replicate transactions --raw
	$(VENV)/bin/python bench/bench_transform.py --rows 10000000
	$(VENV)/bin/cdnow run --local --input data/CDNOW_master.txt --out $(BENCH_OUT)
	BENCH_OUT=$(BENCH_OUT) $(VENV)/bin/python bench/bench_spark_path.py --scales 10 100 --runs 3

bench-spark-x1000: $(VENV)/.installed
	BENCH_OUT=$(BENCH_OUT) $(VENV)/bin/python bench/bench_spark_path.py --scales 1000 --runs 3 --driver-memory 8g

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) $(OUT) $(BENCH_OUT) .aws-sam .pytest_cache
