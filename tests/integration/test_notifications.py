"""The notification paths of statemachine/pipeline.asl.json that a whole run does not take,
run by the emulator's interpreter: the states are taken from the ASL file as they are, with the
stack's substitutions, and started with the input the states before them would give."""

import json
import time

import boto3
import pytest

from cdnow_offline.emulator import Emulator
from cdnow_offline.run import subscribe_queue


@pytest.fixture(scope="module")
def queue(stack):
    return subscribe_queue(stack.outputs["RunCompleteTopicArn"], "cdnow-it-notification-paths")


def _machine(root, stack, name: str, start: str, states: list[str]) -> str:
    text = (root / "statemachine" / "pipeline.asl.json").read_text()
    report = boto3.client("lambda").get_function(FunctionName="cdnow-it-ReportFunction")
    report_arn = report["Configuration"]["FunctionArn"]
    text = text.replace("${RunCompleteTopicArn}", stack.outputs["RunCompleteTopicArn"])
    text = text.replace("${ReportFunctionArn}", report_arn)
    full = json.loads(text)
    definition = {"StartAt": start, "States": {state: full["States"][state] for state in states}}
    sfn = boto3.client("stepfunctions")
    # The stack's state machine role: its tasks sign with it (IAM is enforced offline).
    role = sfn.describe_state_machine(stateMachineArn=stack.outputs["StateMachineArn"])["roleArn"]
    return sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=role)["stateMachineArn"]


def _run(machine_arn: str, document: dict) -> dict:
    sfn = boto3.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=machine_arn, input=json.dumps(document))["executionArn"]
    deadline = time.monotonic() + 60
    while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution did not finish"
        time.sleep(0.2)
    return execution


def _notification(queue_url: str) -> dict:
    sqs = boto3.client("sqs")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1).get("Messages")
        if messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
            return json.loads(messages[0]["Body"])
    raise AssertionError("no notification arrived")


SUCCESS_PATH = ["Holds the dataset?", "Free the dataset", "Notify success"]


def test_a_failed_report_still_announces_the_published_run(root, stack, queue):
    machine = _machine(root, stack, "report-fails", "Report", ["Report", "Report failed", *SUCCESS_PATH])
    summary = {"run_id": "never-published", "status": "SUCCEEDED", "customers": 3}
    # The Report function fails for real: this run has no run_summary.json to read.
    run = {"run_id": "never-published", "curated_bucket": stack.outputs["CuratedBucketName"]}
    execution = _run(machine, {"run": run, "published": {"summary": summary}})
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"]) == summary
    notification = _notification(queue)
    assert notification["Subject"] == "CDNOW run never-published SUCCEEDED (no report)"
    assert json.loads(notification["Message"]) == summary
    attributes = {k: v["Value"] for k, v in notification["MessageAttributes"].items()}
    assert attributes == {"status": "SUCCEEDED", "run_id": "never-published"}


FAILURE_PATH = ["Failure message", "Plain failure message", "Plain failure notice", "Held the dataset?",
                "Free the dataset after failure", "Notify failure", "Run failed"]


def test_an_ingest_failure_is_announced_with_run_id_none(root, stack, queue):
    machine = _machine(root, stack, "ingest-fails", "Ingest failed", ["Ingest failed", *FAILURE_PATH])
    error = {"Error": "InvalidRunRequest", "Cause": "s3://raw/other/file.txt: only objects under incoming/ start a run"}
    execution = _run(machine, {"bucket": "raw", "key": "other/file.txt", "error": error})
    assert execution["status"] == "FAILED"
    notification = _notification(queue)
    assert notification["Subject"] == "CDNOW run none FAILED in Ingest"
    attributes = {k: v["Value"] for k, v in notification["MessageAttributes"].items()}
    assert attributes == {"status": "FAILED", "run_id": "none"}
    message = json.loads(notification["Message"])
    assert message["failed_state"] == "Ingest" and message["error"] == "InvalidRunRequest"
    assert message["run"]["input"]["key"] == "other/file.txt"
    published = Emulator.published(stack.outputs["RunCompleteTopicArn"])[-1]
    assert json.loads(published["default"]) == json.loads(published["sqs"]) == message
    assert published["email"].splitlines() == [
        "CDNOW customer analytics: run none FAILED in the Ingest step.",
        "",
        "Error: InvalidRunRequest",
        "Cause: s3://raw/other/file.txt: only objects under incoming/ start a run",
        "",
        "Nothing was published: the tables in the catalog are those of the previous run. "
        f"Execution: {execution['executionArn']}",
    ]


LAMBDA_CAUSE = json.dumps({"errorMessage": "s3://raw/incoming/a.csv: no row is left to analyse", "errorType": "ValueError",
                           "requestId": "r-1", "stackTrace": ["  File \"/var/task/app.py\", line 12, in lambda_handler\n"]})


def test_a_lambda_failure_is_announced_with_its_type_and_message_not_its_stack_trace(root, stack, queue):
    machine = _machine(root, stack, "features-fails", "Features failed", ["Features failed", *FAILURE_PATH])
    run = {"run_id": "a-1", "input_uri": "s3://raw/incoming/a.csv"}
    execution = _run(machine, {"run": run, "error": {"Error": "ValueError", "Cause": LAMBDA_CAUSE}})
    assert execution["status"] == "FAILED"
    notification = _notification(queue)
    assert notification["Subject"] == "CDNOW run a-1 FAILED in Features"
    message = json.loads(notification["Message"])
    assert message["cause"] == "ValueError: s3://raw/incoming/a.csv: no row is left to analyse"
    email = Emulator.published(stack.outputs["RunCompleteTopicArn"])[-1]["email"]
    assert "Cause: ValueError: s3://raw/incoming/a.csv: no row is left to analyse" in email
    assert "stackTrace" not in email and "app.py" not in email and "{" not in email
    # The raw cause stays in the execution for whoever debugs it.
    assert json.loads(execution["cause"])["stackTrace"]


def test_the_plain_notice_goes_out_when_the_failure_message_step_fails(root, stack, queue, monkeypatch):
    from cdnow import pipeline

    def broken(failure):
        raise RuntimeError("the notice could not be composed")

    monkeypatch.setattr(pipeline, "failure_notice", broken)
    machine = _machine(root, stack, "notice-fails", "Features failed", ["Features failed", *FAILURE_PATH])
    run = {"run_id": "a-2", "input_uri": "s3://raw/incoming/a.csv"}
    execution = _run(machine, {"run": run, "error": {"Error": "ValueError", "Cause": "plain words"}})
    assert execution["status"] == "FAILED"
    notification = _notification(queue)
    assert notification["Subject"] == "CDNOW run a-2 FAILED in Features"
    assert json.loads(notification["Message"])["cause"] == "plain words"


def test_a_task_past_its_timeout_seconds_fails_the_run_with_states_timeout(root, stack, queue, monkeypatch):
    """Issue 20, case 11: the States.Timeout path, which no run had taken. The Features Task as
    the ASL file has it but for a test-only TimeoutSeconds of 1, its function made to take 5 s."""
    from cdnow import pipeline

    def slow(run, database, **_):
        time.sleep(5)
        raise AssertionError("the Task should have timed out before this")

    monkeypatch.setattr(pipeline, "build_features", slow)
    text = (root / "statemachine" / "pipeline.asl.json").read_text()
    function_arns = {name: boto3.client("lambda").get_function(FunctionName=f"cdnow-it-{name}Function")[
        "Configuration"]["FunctionArn"] for name in ("Features", "Report")}
    for name, arn in function_arns.items():
        text = text.replace("${" + name + "FunctionArn}", arn)
    text = text.replace("${RunCompleteTopicArn}", stack.outputs["RunCompleteTopicArn"])
    full = json.loads(text)
    states = {name: full["States"][name] for name in ("Features", "Features failed", *FAILURE_PATH)}
    states["Features"] = {**states["Features"], "TimeoutSeconds": 1}
    sfn = boto3.client("stepfunctions")
    role = sfn.describe_state_machine(stateMachineArn=stack.outputs["StateMachineArn"])["roleArn"]
    machine = sfn.create_state_machine(name="features-times-out", roleArn=role,
                                       definition=json.dumps({"StartAt": "Features", "States": states}))["stateMachineArn"]
    run = {"run_id": "t-1", "input_uri": "s3://raw/incoming/slow.csv", "curated_bucket": stack.outputs["CuratedBucketName"]}
    execution = _run(machine, {"run": run})
    assert execution["status"] == "FAILED"
    notification = _notification(queue)
    assert notification["Subject"] == "CDNOW run t-1 FAILED in Features"
    assert json.loads(notification["Message"])["error"] == "States.Timeout"


def test_an_alarm_reaches_the_operations_topic_s_subscribers(stack):
    """Issue 20, case 10: CloudWatch sets no message attributes, so on the run-complete topic a
    "failures only" filter dropped every alarm. The alarms publish to the operations topic, where
    every message is one; the alarm action runs offline (moto_defects.cloudwatch_runs_no_alarm_actions)."""
    queue = subscribe_queue(stack.outputs["OperationsTopicArn"], "cdnow-it-operations")
    cloudwatch = boto3.client("cloudwatch")
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    timed_out = alarms["cdnow-it-ExecutionsTimedOutAlarm"]
    assert all(a["AlarmActions"] == [stack.outputs["OperationsTopicArn"]] for a in alarms.values())
    assert {"cdnow-it-ExecutionsFailedAlarm", "cdnow-it-FunctionErrorsAlarm"} <= set(alarms)
    cloudwatch.set_alarm_state(AlarmName=timed_out["AlarmName"], StateValue="ALARM",
                               StateReason="Threshold Crossed: 1 datapoint [1.0] >= 1.0")
    notification = _notification(queue)
    alarm = json.loads(notification["Message"])
    assert alarm["AlarmName"] == "cdnow-it-ExecutionsTimedOutAlarm" and alarm["NewStateValue"] == "ALARM"
    assert alarm["AlarmDescription"].startswith("A customer analytics execution timed out")
    assert notification["Subject"] == 'ALARM: "cdnow-it-ExecutionsTimedOutAlarm" in us-east-1'
