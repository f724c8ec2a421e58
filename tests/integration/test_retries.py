"""The state machine's Retry and Catch, run by the emulator's interpreter on the real ASL: a Lambda
service error is retried, the handler's own error is not, and it reaches the failure notification."""

import json
import time

import boto3
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.exceptions import JsonRESTError


class TooManyRequests(JsonRESTError):
    code = 429

    def __init__(self):
        super().__init__("TooManyRequestsException", "Rate exceeded")


def test_a_throttled_invoke_is_retried_and_a_refused_run_is_caught(stack, monkeypatch):
    invoke = LambdaSimpleBackend.invoke
    throttled = []

    def throttle_first_invoke(backend, function_name, *args, **kwargs):
        if not throttled:
            throttled.append(function_name)
            raise TooManyRequests()
        return invoke(backend, function_name, *args, **kwargs)

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", throttle_first_invoke)
    sfn = boto3.client("stepfunctions")
    # An object outside incoming/: Ingest itself refuses it (InvalidRunRequest), once it runs.
    arn = sfn.start_execution(
        stateMachineArn=stack.outputs["StateMachineArn"],
        input=json.dumps({"bucket": stack.outputs["RawBucketName"], "key": "elsewhere/file.txt"}),
    )["executionArn"]
    deadline = time.monotonic() + 60
    while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.3)

    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    failures = [e["taskFailedEventDetails"]["error"] for e in events if e["type"] == "TaskFailed"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]
    assert throttled and throttled[0].endswith("IngestFunction")
    assert failures == ["Lambda.TooManyRequestsException", "InvalidRunRequest"]  # retried once, then not
    assert entered == ["Ingest", "Ingest failed", "Failure message", "Held the dataset?", "Notify failure", "Run failed"]
    assert execution["status"] == "FAILED" and execution["error"] == "RunFailed"
    assert "only objects under incoming/" in execution["cause"]
