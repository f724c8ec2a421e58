"""Each moto defect worked around in local/cdnow_offline/moto_defects.py: shown on the pinned moto
as it is, and gone with the workaround. Each case runs in a fresh interpreter, because the
workarounds patch moto for the whole process. If a moto upgrade fixes or moves a defect, the
"defect" half fails here and the workaround can go."""

import json
import subprocess
import sys
import textwrap

import pytest

PRELUDE = textwrap.dedent('''
    import json, os, sys, time
    os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3
    from moto import mock_aws
    if sys.argv[1] == "fixed":
        from cdnow_offline.moto_defects import apply_moto_fixes
        apply_moto_fixes()
    ROLE = "arn:aws:iam::123456789012:role/sfn"

    def execute(definition, timeout=30):
        sfn = boto3.client("stepfunctions")
        machine = sfn.create_state_machine(name="m", definition=json.dumps(definition), roleArn=ROLE)
        arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"])["executionArn"]
        deadline = time.monotonic() + timeout
        while (e := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        print(json.dumps({"status": e["status"], "error": e.get("error"), "cause": e.get("cause")}))
''')

GLUE_SYNC = PRELUDE + textwrap.dedent('''
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        boto3.client("glue").create_job(Name="job", Role=ROLE, Command={"Name": "glueetl", "ScriptLocation": "s3://b/k.py"})
        execute({"StartAt": "T", "States": {"T": {"Type": "Task",
            "Resource": "arn:aws:states:::glue:startJobRun.sync", "Parameters": {"JobName": "job"},
            "ResultSelector": {"state.$": "$.JobRunState"}, "End": True}}})
''')

PARALLEL_STATES_ERROR = PRELUDE + textwrap.dedent('''
    from moto.glue.models import FakeJob
    original = FakeJob.start_job_run
    def failing_start(job, *args, **kwargs):  # a Glue job run that fails: States.TaskFailed
        run_id = original(job, *args, **kwargs)
        run = job.job_runs[-1]
        run._transitions = []
        run.status = "FAILED"
        return run_id
    FakeJob.start_job_run = failing_start
    from cdnow_offline.moto_defects import glue_sync_has_no_callback_endpoint
    glue_sync_has_no_callback_endpoint()  # only the Parallel defect is under test here
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        boto3.client("glue").create_job(Name="job", Role=ROLE, Command={"Name": "glueetl", "ScriptLocation": "s3://b/k.py"})
        execute({"StartAt": "P", "States": {
            "P": {"Type": "Parallel", "Branches": [{"StartAt": "T", "States": {"T": {"Type": "Task",
                "Resource": "arn:aws:states:::glue:startJobRun.sync", "Parameters": {"JobName": "job"},
                "ResultSelector": {"state.$": "$.JobRunState"}, "End": True}}}],
                "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Caught"}], "End": True},
            "Caught": {"Type": "Pass", "End": True}}})
''')

EVENTBRIDGE_SFN_TARGET = PRELUDE + textwrap.dedent('''
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn, events, s3 = boto3.client("stepfunctions"), boto3.client("events"), boto3.client("s3")
        machine = sfn.create_state_machine(name="m", roleArn=ROLE,
            definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
        s3.create_bucket(Bucket="raw")
        s3.put_bucket_notification_configuration(Bucket="raw", NotificationConfiguration={"EventBridgeConfiguration": {}})
        pattern = {"source": ["aws.s3"], "detail-type": ["Object Created"],
                   "detail": {"bucket": {"name": ["raw"]}, "object": {"key": [{"prefix": "incoming/"}]}}}
        events.put_rule(Name="r", EventPattern=json.dumps(pattern))
        if sys.argv[1] == "fixed":
            from cdnow_offline.moto_defects import EventBridgeDropsStepFunctionsTargets
            relay = EventBridgeDropsStepFunctionsTargets(machine, "relay")
            events.put_targets(Rule="r", Targets=[{"Id": "sfn", "Arn": relay.queue_arn}])
        else:
            events.put_targets(Rule="r", Targets=[{"Id": "sfn", "Arn": machine, "RoleArn": ROLE}])
        s3.put_object(Bucket="raw", Key="incoming/a.txt", Body=b"x")
        s3.put_object(Bucket="raw", Key="other/b.txt", Body=b"x")
        if sys.argv[1] == "fixed":
            relay.relay_once()
        executions = sfn.list_executions(stateMachineArn=machine)["executions"]
        inputs = [json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"]) for e in executions]
        print(json.dumps({"keys": [i["detail"]["object"]["key"] for i in inputs]}))
''')

DENY_WITHOUT_TLS = PRELUDE + textwrap.dedent('''
    from botocore.exceptions import ClientError
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="tls-only")
        s3.put_bucket_policy(Bucket="tls-only", Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": ["arn:aws:s3:::tls-only", "arn:aws:s3:::tls-only/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}))
        try:
            s3.put_object(Bucket="tls-only", Key="k", Body=b"x")
            print(json.dumps({"put": "ok", "body": s3.get_object(Bucket="tls-only", Key="k")["Body"].read().decode()}))
        except ClientError as error:
            print(json.dumps({"put": error.response["Error"]["Code"]}))
''')


def run_case(script: str, mode: str, root) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=120,
        cwd=root, env={"PYTHONPATH": f"{root}/local", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_glue_sync_has_no_callback_endpoint(mode, root):
    result = run_case(GLUE_SYNC, mode, root)
    if mode == "defect":
        assert result["status"] == "FAILED" and "interrupt_all" in result["cause"]
    else:
        assert result["status"] == "SUCCEEDED", result


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_parallel_rewraps_states_errors(mode, root):
    result = run_case(PARALLEL_STATES_ERROR, mode, root)
    if mode == "defect":
        assert result["status"] == "FAILED" and result["error"] == "States.Runtime"
        assert "MUST NOT begin with the prefix 'States.'" in result["cause"]
    else:
        assert result["status"] == "SUCCEEDED", result  # the Parallel's Catch fired


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_eventbridge_drops_step_functions_targets(mode, root):
    result = run_case(EVENTBRIDGE_SFN_TARGET, mode, root)
    assert result["keys"] == ([] if mode == "defect" else ["incoming/a.txt"])


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_policy_condition_on_unknown_key_holds(mode, root):
    result = run_case(DENY_WITHOUT_TLS, mode, root)
    assert result == ({"put": "403"} if mode == "defect" else {"put": "ok", "body": "x"})
