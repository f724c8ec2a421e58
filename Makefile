# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
INPUT ?= data/CDNOW_master.txt
OUT ?= out

export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: install run test lint clean

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

run: $(VENV)/.installed
	$(VENV)/bin/cdnow run --local --input $(INPUT) --out $(OUT)

test: install
	$(VENV)/bin/python -m pytest

lint: install
	$(SAM_VENV)/bin/sam validate --lint
	$(VENV)/bin/cfn-lint template.yaml

clean:
	rm -rf $(VENV) $(SAM_VENV) $(OUT) .aws-sam .pytest_cache
