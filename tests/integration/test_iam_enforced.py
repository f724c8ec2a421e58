"""IAM enforced in the offline stack: every function, the Glue job and the state machine sign with
their own role's credentials, and a call their role does not grant is refused as on AWS, naming
principal, action and resource (local/cdnow_offline/identities.py). The whole-run tests run with
it too; these show each identity on its own, with the roles of template.yaml as provisioned."""

import json
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from probes import ROLE_PROBE, assert_signed_as_its_role, invoke, probe

from cdnow_offline.emulator import Emulator

STACK = "cdnow-iam"


@pytest.fixture(scope="module")
def emulated(root):
    with Emulator(root) as emulator:
        yield emulator, emulator.provision(STACK)


def _role_of(function: str) -> str:
    return boto3.client("lambda").get_function_configuration(FunctionName=function)["Role"]


def test_a_key_iam_does_not_know_is_refused(emulated):
    _, stack = emulated
    assert stack.outputs["RawBucketName"] in {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]}
    stranger = boto3.session.Session(aws_access_key_id="offline", aws_secret_access_key="offline")
    with pytest.raises(ClientError) as refused:
        stranger.client("s3").list_buckets()
    assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    with pytest.raises(ClientError) as refused:
        stranger.client("glue").get_databases()
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403  # moto's XML: code "403"


def test_an_in_process_function_signs_as_its_own_role_and_gets_only_what_it_grants(emulated, tmp_path):
    emulator, stack = emulated
    name = probe(emulator, tmp_path, "probe-role-in-process", ROLE_PROBE, like=f"{STACK}-IngestFunction")
    body, error = invoke(name, {"curated": stack.outputs["CuratedBucketName"]})
    assert error is None, body
    assert_signed_as_its_role(body, _role_of(name), stack.outputs["CuratedBucketName"])
    # The test's own calls (this thread) are still the administrator's.
    assert boto3.client("sts").get_caller_identity()["Arn"].endswith(":user/offline-administrator")


def test_the_state_machine_signs_as_its_role(emulated):
    """A state machine whose role may not invoke the function: the task fails with Lambda's
    AccessDeniedException, as on AWS, and the stack's own role may."""
    _, stack = emulated
    iam, sfn = boto3.client("iam"), boto3.client("stepfunctions")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    narrow = iam.create_role(RoleName="sm-without-invoke", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="sm-without-invoke", PolicyName="publish-only", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sns:Publish", "Resource": "*"}]}))
    function_arn = boto3.client("lambda").get_function(FunctionName=f"{STACK}-IngestFunction")["Configuration"]["FunctionArn"]
    definition = json.dumps({"StartAt": "Ingest", "States": {"Ingest": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function_arn, "Payload": {}}, "End": True}}})
    stack_role = sfn.describe_state_machine(stateMachineArn=stack.outputs["StateMachineArn"])["roleArn"]
    outcomes = {}
    for name, role in (("narrow", narrow), ("stack-role", stack_role)):
        machine = sfn.create_state_machine(name=f"iam-{name}", definition=definition, roleArn=role)["stateMachineArn"]
        arn = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
        deadline = time.monotonic() + 60
        while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        outcomes[name] = execution
    denied = outcomes["narrow"]
    assert denied["status"] == "FAILED" and denied["error"] == "Lambda.AccessDeniedException", denied
    assert "assumed-role/sm-without-invoke/" in denied["cause"]
    assert "is not authorized to perform: lambda:InvokeFunction" in denied["cause"]
    # The stack's role may invoke: the task reached Ingest, which refused the empty event itself.
    allowed = outcomes["stack-role"]
    assert allowed["status"] == "FAILED" and allowed["error"] != "Lambda.AccessDeniedException", allowed
    assert "AccessDenied" not in (allowed.get("cause") or "")


def test_the_glue_job_signs_as_its_role(emulated):
    """The job's role reads only incoming/ of the raw bucket: a job run pointed at another key
    fails, and moto's answer to a denied HeadObject, 403 without a body, is the job's error."""
    _, stack = emulated
    raw, curated = stack.outputs["RawBucketName"], stack.outputs["CuratedBucketName"]
    boto3.client("s3").put_object(Bucket=raw, Key="elsewhere/file.txt", Body=b"00001 19970101 1 10.00\n")
    glue = boto3.client("glue")
    job = next(j["Name"] for j in glue.get_jobs()["Jobs"] if j["Name"].startswith(STACK))
    run_id = glue.start_job_run(JobName=job, Arguments={
        "--run_id": "iam-probe", "--input_uri": f"s3://{raw}/elsewhere/file.txt",
        "--run_prefix": f"s3://{curated}/runs/run_id=iam-probe/", "--max_bad_share": "0.05",
        "--column_mapping": "null"})["JobRunId"]
    deadline = time.monotonic() + 60
    while (job_run := glue.get_job_run(JobName=job, RunId=run_id)["JobRun"])["JobRunState"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job_run["JobRunState"] == "FAILED"
    assert "HeadObject" in job_run["ErrorMessage"] and "403" in job_run["ErrorMessage"], job_run
