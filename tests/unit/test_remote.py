"""Following a run on a stack: which execution an upload started, what each state's output
tells, what failed (no AWS calls: the pieces that decide)."""

import json
from datetime import datetime, timezone
from pathlib import Path

from cdnow_offline.remote import Upload, failure_summary, names_upload, progress_note, run_folder

UPLOAD = Upload("raw", "incoming/CDNOW_master.txt", "a9dd3477", datetime(2026, 12, 1, tzinfo=timezone.utc))


def s3_event(key="incoming/CDNOW_master.txt", **obj):
    return {"detail-type": "Object Created", "detail": {"bucket": {"name": "raw"}, "object": {"key": key, **obj}}}


def test_an_execution_is_the_upload_s_when_its_input_names_the_object():
    assert names_upload(s3_event(etag="a9dd3477"), UPLOAD)  # AWS spells it etag
    assert names_upload(s3_event(), UPLOAD)  # no ETag in the event: the key decides
    assert not names_upload(s3_event(etag="0ther"), UPLOAD)  # an earlier upload of the same key
    assert not names_upload(s3_event(key="incoming/other.txt"), UPLOAD)
    assert names_upload({"bucket": "raw", "key": "incoming/CDNOW_master.txt"}, UPLOAD)  # started by hand
    assert not names_upload({"bucket": "raw", "key": "incoming/x.txt"}, UPLOAD)


def test_progress_notes_from_state_outputs(root):
    event = json.loads((root / "events" / "publish.json").read_text())
    features = progress_note("Features", {"run": event["run"], "steps": {"features": event["features"]}})
    assert features == "6,919 rows read, 6,919 accepted, 0 quarantined; 2,357 customers as of 1998-07-01"
    segments = progress_note("Segment", event["models"]["segment"])
    assert segments.startswith("7 segments: Champions ")
    # As the state machine hands it over: the branch's state, the result under the model's name.
    in_branch = {"run": event["run"], "steps": {"features": event["features"]},
                 "segment": {"result": event["models"]["segment"]}}
    assert progress_note("Segment", in_branch) == segments
    assert progress_note("Value", {**in_branch, "value": {"result": event["models"]["value"]}}).startswith(
        "expected 12-month value $")
    assert progress_note("Churn", event["models"]["churn"]).startswith("ROC AUC 0.")
    assert "cross-validated" in progress_note("Churn", event["models"]["churn"])
    assert progress_note("Value", event["models"]["value"]).startswith("expected 12-month value $")
    pounds = {**event["models"]["value"], "metrics": {**event["models"]["value"]["metrics"], "currency": "GBP"}}
    assert progress_note("Value", pounds).startswith("expected 12-month value \u00a3")
    waiting = {"run": {"run_id": "none", "dataset": "shop", "waiting": {
        "holder": "arn:aws:states:us-east-1:1:execution:sm:first", "ahead": 1, "seconds": 10}}}
    assert progress_note("Ingest", waiting) == ("dataset shop is busy (held by first, 1 ahead in the queue): "
                                                "trying again in 10 s")
    assert progress_note("Ingest", {"run": {"run_id": "r-1"}}) == "run r-1"
    # an output of another shape gives no note rather than breaking the follower
    assert progress_note("Features", {"steps": {}}) is None and progress_note("Models", {}) is None


def test_failure_from_the_catch_step_or_else_the_execution():
    execution = {"status": "FAILED", "executionArn": "arn:aws:states:us-east-1:1:execution:sm:abc-123",
                 "error": "RunFailed", "cause": "x"}
    glue_cause = json.dumps({"Id": "jr_1", "ErrorMessage": "s3://raw/incoming/g.txt: no format matches"})
    outputs = {"Ingest": {"run_id": "g-1"}, "Transform failed": {
        "failed_state": "Transform", "error": {"Error": "States.TaskFailed", "Cause": glue_cause},
        "run": {"run_id": "g-1", "input_uri": "s3://raw/incoming/g.txt"}}}
    summary = failure_summary(execution, outputs)
    assert summary["run_id"] == "g-1" and summary["failed_state"] == "Transform"
    assert summary["cause"] == "Glue job run jr_1: s3://raw/incoming/g.txt: no format matches"
    refused = failure_summary(execution, {"Ingest failed": {"failed_state": "Ingest", "error": {
        "Error": "InvalidRunRequest", "Cause": json.dumps({"errorType": "InvalidRunRequest", "errorMessage": "empty"})},
        "run": {"run_id": "none", "input": {}}}})
    assert refused["run_id"] is None and refused["cause"] == "InvalidRunRequest: empty"
    assert run_folder(Path("out"), refused, execution["executionArn"]) == Path("out/no-run-abc-123")
    assert failure_summary(execution, {})["error"] == "RunFailed"
    timed_out = json.dumps({"Id": "jr_2", "JobRunState": "TIMEOUT", "Timeout": 60, "ExecutionTime": 3601})
    summary = failure_summary(execution, {"Transform failed": {
        "failed_state": "Transform", "error": {"Error": "States.TaskFailed", "Cause": timed_out}, "run": {}}})
    assert summary["cause"] == ("Glue job run jr_2 timed out: it ran past the job's Timeout of 60 minutes "
                                "(the template's TransformJob Timeout)")


def test_region_names_the_region_of_the_stack_s_calls(monkeypatch, capsys):
    """--region reaches every boto3 client the CLI makes (the default session), whatever the
    AWS CLI's default region: a stack in us-east-1 is found from a shell set to eu-west-1."""
    import boto3

    from cdnow_offline.cli import EXIT_USAGE, main

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    seen = []

    def outputs(name):
        seen.append((name, boto3.client("cloudformation").meta.region_name))
        return {}  # no outputs: check_outputs refuses the stack, after the region has been seen

    assert main(["runs", "--stack", "cdnow-analytics", "--region", "us-east-1"], stack_outputs=outputs) == EXIT_USAGE
    assert seen == [("cdnow-analytics", "us-east-1")]
    assert main(["runs", "--local", "--region", "us-east-1"]) == EXIT_USAGE
    assert "--region is for --stack NAME" in capsys.readouterr().err


def test_the_installed_command_runs_the_cli(tmp_path):
    """`cdnow` as pip installed it from pyproject.toml (the README's `make run` calls it): its
    entry point exists and answers; an empty results folder has no runs, exit status 0."""
    import subprocess
    import sys

    command = Path(sys.executable).parent / "cdnow"
    done = subprocess.run([str(command), "runs", "--local", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
