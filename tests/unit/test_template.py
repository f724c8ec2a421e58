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


def test_report_runs_after_publish_and_a_failed_report_still_announces_the_run(definition):
    states = definition["States"]
    assert states["Publish"]["Next"] == "Report" and states["Report"]["Next"] == "Notify success"
    assert states["Report"]["Retry"] == states["Publish"]["Retry"]
    catch = states["Report"]["Catch"]
    assert catch[0]["ErrorEquals"] == ["States.ALL"] and catch[0]["Next"] == "Report failed"
    assert states["Report failed"]["Type"] == "Pass" and states["Report failed"]["Next"] == "Notify success"


def test_both_notifications_carry_status_and_run_id_attributes(definition):
    states = definition["States"]
    for name in ("Notify success", "Notify failure"):
        assert set(states[name]["Parameters"]["MessageAttributes"]) == {"status", "run_id"}, name
    # one message per protocol: the e-mail text and the JSON summary
    assert states["Notify success"]["Parameters"]["MessageStructure"] == "json"


def test_report_function_is_a_zip_on_the_shared_layer_with_scoped_s3_access(root):
    from cdnow_offline.template import load_template

    resources = load_template(root / "template.yaml")["Resources"]
    report = resources["ReportFunction"]["Properties"]
    assert report.get("PackageType", "Zip") == "Zip" and {"Ref": "SharedLayer"} in report["Layers"]
    statements = [st for policy in report["Policies"] for st in policy["Statement"]]
    for statement in statements:
        assert all(action.startswith("s3:") and "*" not in action for action in statement["Action"])
        targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert all(target != "*" for target in targets)
    writes = [st for st in statements if "s3:PutObject" in st["Action"]]
    assert [st["Resource"] for st in writes] == [{"Fn::Sub": "${CuratedBucket.Arn}/reports/*"}]
    machine = resources["PipelineStateMachine"]["Properties"]
    assert machine["DefinitionSubstitutions"]["ReportFunctionArn"] == {"Fn::GetAtt": ["ReportFunction", "Arn"]}
    assert {"LambdaInvokePolicy": {"FunctionName": {"Ref": "ReportFunction"}}} in machine["Policies"]
