# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
INPUT ?= data/CDNOW_master.txt
OUT ?= out
# The report test opens the report in Debian's Chromium, never in a browser playwright downloads.
CHROMIUM ?= /usr/bin/chromium

export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: install browser run test lint clean

$(VENV)/.installed: requirements/dev.txt layers/shared/requirements.txt functions/models-requirements.txt pyproject.toml
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

install: $(VENV)/.installed $(SAM_VENV)/.installed

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

test: install browser
	CDNOW_CHROMIUM=$(CHROMIUM) $(VENV)/bin/python -m pytest

lint: install
	$(SAM_VENV)/bin/sam validate --lint
	$(VENV)/bin/cfn-lint template.yaml

clean:
	rm -rf $(VENV) $(SAM_VENV) $(OUT) .aws-sam .pytest_cache
