"""The template passes both linters the issue names, and the state machine is the ASL file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LINT_ENV = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}


def test_cfn_lint_reports_nothing(root):
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    done = subprocess.run([str(cfn_lint), "template.yaml"], cwd=root, capture_output=True, text=True, env=LINT_ENV)
    assert done.returncode == 0, done.stdout + done.stderr


def test_sam_validate_lint_passes(root):
    sam = root / ".venv-sam" / "bin" / "sam"
    assert sam.exists(), "aws-sam-cli lives in .venv-sam: run `make install`"
    done = subprocess.run([str(sam), "validate", "--lint"], cwd=root, capture_output=True, text=True, env=LINT_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def definition(root):
    return json.loads((root / "statemachine" / "pipeline.asl.json").read_text())


def test_every_failure_path_reaches_the_failure_notification(definition):
    states = definition["States"]
    for name in ("Ingest", "Transform", "Features", "Models", "Publish"):
        catch = states[name]["Catch"]
        assert catch[0]["ErrorEquals"] == ["States.ALL"]
        assert states[catch[0]["Next"]]["Next"] == "Notify failure"
    assert states["Notify failure"]["Next"] == "Run failed"


def test_models_run_in_parallel_and_tasks_have_timeouts(definition):
    states = definition["States"]
    branches = [b["StartAt"] for b in states["Models"]["Branches"]]
    assert branches == ["Segment", "Churn", "Value"]
    tasks = [s for s in states.values() if s["Type"] == "Task"]
    tasks += [s for b in states["Models"]["Branches"] for s in b["States"].values()]
    assert all("TimeoutSeconds" in task for task in tasks)
    assert states["Transform"]["Resource"] == "arn:aws:states:::glue:startJobRun.sync"
