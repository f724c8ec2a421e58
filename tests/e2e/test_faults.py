"""Faults, reruns and concurrent files on the whole offline stack, one emulator for the module.

Each test drops files under incoming/ and lets S3 -> EventBridge -> the state machine run them,
with a fault injected where it happens on AWS: a step that raises (the handler's code), an S3
error answered to the function's own SDK call (botocore's before-send hook on the default
session, which the handlers' clients and awswrangler use), a Lambda service error answered by
the Lambda API itself, a Glue job that fails. A role narrowed by mistake fails the run as it would on AWS: IAM is enforced
offline. The published tables are checked through the catalog, where their partitions point, as
Athena reads them.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.exceptions import JsonRESTError

from cdnow_offline.emulator import Emulator

SAMPLE_CUSTOMERS = 2_357
DATABASE = "cdnow_analytics"
TABLES = ("customer_features", "customer_segments", "segment_profiles", "churn_scores", "customer_value",
          "model_metrics", "runs")


class Stack:
    def __init__(self, stack):
        self.outputs = stack.outputs
        self.raw = stack.outputs["RawBucketName"]
        self.curated = stack.outputs["CuratedBucketName"]
        self.relay = stack.execution_relay
        sqs = boto3.client("sqs")
        self.queue = sqs.create_queue(QueueName="faults-notifications")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        boto3.client("sns").subscribe(TopicArn=self.outputs["RunCompleteTopicArn"], Protocol="sqs", Endpoint=arn)

    def drop(self, *files: tuple[Path, str]) -> list[dict]:
        """Upload each (file, key) under incoming/ at once; wait for every execution they start;
        return (execution, notification message) per file, in upload order."""
        already = len(self.relay.started)
        s3 = boto3.client("s3")
        for path, key in files:
            s3.upload_file(str(path), self.raw, f"incoming/{key}")
        deadline = time.monotonic() + 240
        while len(self.relay.started) < already + len(files):
            assert time.monotonic() < deadline, "executions did not start"
            time.sleep(0.1)
        sfn = boto3.client("stepfunctions")
        executions = []
        for arn in self.relay.started[already:]:
            while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
                assert time.monotonic() < deadline, f"{arn} still running"
                time.sleep(0.3)
            executions.append(execution)
        messages = self._notifications(len(files))
        by_key = {}
        for execution in executions:
            key = json.loads(execution["input"])["detail"]["object"]["key"]
            by_key[key] = {"execution": execution, "message": messages[key]}
        return [by_key[f"incoming/{key}"] for _, key in files]

    def _notifications(self, count: int) -> dict[str, dict]:
        sqs, found = boto3.client("sqs"), {}
        deadline = time.monotonic() + 30
        while len(found) < count and time.monotonic() < deadline:
            for message in sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", []):
                body = json.loads(json.loads(message["Body"])["Message"])
                assert "input_uri" in body or "input_uri" in body.get("run", {}), body
                key = body.get("input_uri") or body["run"]["input_uri"]
                found[key.split(f"s3://{self.raw}/", 1)[1]] = body
                sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        assert len(found) == count, f"{len(found)} of {count} notifications"
        return found


@pytest.fixture(scope="module")
def stack(root):
    with Emulator(root) as emulator:
        stack = Stack(emulator.provision("cdnow-faults"))
        stack.emulator = emulator
        yield stack


@pytest.fixture(scope="module")
def sample(root):
    return root / "data" / "CDNOW_sample.txt"


def catalog() -> dict[str, dict[str, str]]:
    """table -> {run_id: the location its partition points at}."""
    glue, out = boto3.client("glue"), {}
    for table in TABLES:
        try:
            partitions = glue.get_partitions(DatabaseName=DATABASE, TableName=table)["Partitions"]
        except glue.exceptions.EntityNotFoundException:
            continue
        out[table] = {p["Values"][0]: p["StorageDescriptor"]["Location"] for p in partitions}
    return out


def objects_under(bucket: str, prefix: str) -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def published_rows(table: str, run_id: str) -> int:
    from cdnow.adapters.storage import read_published_run

    return len(read_published_run(DATABASE, table, run_id))


@pytest.fixture(scope="module")
def first_run(stack, sample):
    (result,) = stack.drop((sample, "first.txt"))
    assert result["execution"]["status"] == "SUCCEEDED", result["message"]
    return result["message"]["run_id"]


def assert_catalog_unchanged(before: dict, stack: Stack):
    assert catalog() == before
    for table, partitions in before.items():
        for run_id, location in partitions.items():
            assert objects_under(stack.curated, location.split(f"s3://{stack.curated}/", 1)[1]), (table, run_id)


class ServiceFaults:
    """S3 answers ``status``/``code`` to the functions' matching requests, ``times`` times (or
    always): the functions' SDK sees the error as it would from AWS."""

    def __init__(self, operation: str, key_part: str, status: int, code: str, times: int | None):
        self.operation, self.key_part, self.status, self.code = operation, key_part, status, code
        self.left = times
        self.hits = 0
        self._lock = threading.Lock()

    def __call__(self, request, **kwargs):
        if self.key_part not in request.url:
            return None
        with self._lock:
            if self.left == 0:
                return None
            if self.left is not None:
                self.left -= 1
            self.hits += 1
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{self.code}</Code>'
                f"<Message>injected {self.code}</Message></Error>").encode()
        return AWSResponse(request.url, self.status, {"Content-Type": "application/xml"}, _Raw(body))


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **kwargs):
        yield self._body

    def read(self, *args, **kwargs):
        return self._body


@pytest.fixture
def s3_faults():
    installed = []

    def install(**kwargs) -> ServiceFaults:
        faults = ServiceFaults(**kwargs)
        event = f"before-send.s3.{faults.operation}"
        boto3.DEFAULT_SESSION.events.register(event, faults)
        installed.append((event, faults))
        return faults

    if boto3.DEFAULT_SESSION is None:  # awswrangler makes a session per call without one
        boto3.setup_default_session()
    yield install
    for event, faults in installed:
        boto3.DEFAULT_SESSION.events.unregister(event, faults)


def test_a_step_that_raises_fails_the_run_and_publishes_nothing(stack, sample, first_run, monkeypatch):
    import cdnow.pipeline

    def churn(*args, **kwargs):
        raise RuntimeError("injected: the churn model could not be fitted")

    monkeypatch.setattr(cdnow.pipeline, "churn", churn)
    before = catalog()
    (result,) = stack.drop((sample, "raises.txt"))
    assert result["execution"]["status"] == "FAILED"
    message = result["message"]
    # The Parallel state's branches catch their own failures, so the message names the model.
    assert message["status"] == "FAILED" and message["failed_state"] == "Churn"
    assert "RuntimeError" in message["cause"] and "injected: the churn model" in message["cause"]
    email = next(m["email"] for m in reversed(Emulator.published(stack.outputs["RunCompleteTopicArn"]))
                 if json.loads(m["default"]).get("run") == message["run"])
    assert email.startswith(f"CDNOW customer analytics: run {message['run']['run_id']} FAILED in the Churn step.\n")
    assert "injected: the churn model" in email
    # Issue 20, case 7: a failed run still says what its file held (the Transform had counted it).
    assert message["rows"]["read"] == message["rows"]["accepted"] == 6_919
    assert "The file: 6,919 rows read, 6,919 accepted, 0 excluded, 0 quarantined." in email
    assert message["run"]["input_uri"].endswith("incoming/raises.txt")
    assert_catalog_unchanged(before, stack)


def test_transient_s3_errors_are_retried_and_the_run_succeeds(stack, sample, first_run, s3_faults):
    slow = s3_faults(operation="PutObject", key_part="/staging/customer_features/", status=503,
                     code="SlowDown", times=2)
    (result,) = stack.drop((sample, "slowdown.txt"))
    assert result["execution"]["status"] == "SUCCEEDED", result["message"]
    assert slow.hits == 2
    assert published_rows("customer_features", result["message"]["run_id"]) == SAMPLE_CUSTOMERS


def test_an_s3_error_in_publish_leaves_the_published_tables_as_they_were(stack, sample, first_run, s3_faults):
    before = catalog()
    denied = s3_faults(operation="PutObject", key_part="/tables/customer_value/", status=403,
                       code="AccessDenied", times=None)
    (result,) = stack.drop((sample, "denied.txt"))
    assert result["execution"]["status"] == "FAILED"
    message = result["message"]
    assert message["failed_state"] == "Publish" and "AccessDenied" in message["cause"]
    assert denied.hits >= 1
    assert_catalog_unchanged(before, stack)
    # The attempt's files went with it: under this run's id no table folder holds anything.
    run_id = message["run"]["run_id"]
    assert not [key for key in objects_under(stack.curated, "tables/") if f"/run_id={run_id}/" in key]


def test_a_role_without_an_action_its_function_calls_fails_the_run_naming_it(stack, sample, first_run):
    """IAM is enforced offline: the Publish role without s3:PutObject on tables/ (a policy
    narrowed by mistake) fails the run in Publish, with AWS's denial naming role, action and
    object, and the published tables stay as they were."""
    iam = boto3.client("iam")
    role = boto3.client("lambda").get_function_configuration(
        FunctionName="cdnow-faults-PublishFunction")["Role"].rsplit("/", 1)[1]
    document = iam.get_role_policy(RoleName=role, PolicyName="publish")["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    narrowed = json.loads(json.dumps(document))
    (grant,) = [s for s in narrowed["Statement"] if s.get("Sid") == "WritePublishedTables"]
    grant["Action"] = [action for action in grant["Action"] if action != "s3:PutObject"]
    before = catalog()
    iam.put_role_policy(RoleName=role, PolicyName="publish", PolicyDocument=json.dumps(narrowed))
    try:
        (result,) = stack.drop((sample, "narrowed-role.txt"))
    finally:
        iam.put_role_policy(RoleName=role, PolicyName="publish", PolicyDocument=json.dumps(document))
    message = result["message"]
    assert result["execution"]["status"] == "FAILED" and message["failed_state"] == "Publish", message
    assert f"assumed-role/{role}/" in message["cause"], message["cause"]
    assert f"is not authorized to perform: s3:PutObject on resource: arn:aws:s3:::{stack.curated}/tables/" in (
        message["cause"])
    assert_catalog_unchanged(before, stack)


def test_a_failing_publish_rerun_keeps_the_run_it_was_replacing(stack, sample, first_run, monkeypatch):
    # The same object again (same run_id), with the last catalog switch failing: every table
    # keeps pointing at the first run's files, which are still there.
    import cdnow.adapters.storage

    before = catalog()
    real, calls = cdnow.adapters.storage.point_partition, []

    def point_partition(columns, database, table, *args, **kwargs):
        calls.append(table)
        if table == "runs":
            raise ConnectionError("injected: the catalog went away")
        return real(columns, database, table, *args, **kwargs)

    monkeypatch.setattr(cdnow.adapters.storage, "point_partition", point_partition)
    (result,) = stack.drop((sample, "first.txt"))
    assert result["message"]["run"]["run_id"] == first_run
    assert result["execution"]["status"] == "FAILED" and result["message"]["failed_state"] == "Publish"
    assert calls[-1] == "runs" and len(calls) > 5  # the other tables had been switched
    assert_catalog_unchanged(before, stack)
    assert published_rows("churn_scores", first_run) == SAMPLE_CUSTOMERS


def test_a_lambda_service_error_is_retried_by_the_state_machine(stack, sample, first_run, monkeypatch):
    real, failures = LambdaSimpleBackend.invoke, []

    def invoke(backend, function_name, *args, **kwargs):
        if "FeaturesFunction" in function_name and not failures:
            failures.append(function_name)
            raise JsonRESTError("ServiceException", "injected: Lambda is having a bad day")
        return real(backend, function_name, *args, **kwargs)

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    (result,) = stack.drop((sample, "service-error.txt"))
    assert failures, "the fault was not injected"
    assert result["execution"]["status"] == "SUCCEEDED", result["message"]
    history = boto3.client("stepfunctions").get_execution_history(
        executionArn=result["execution"]["executionArn"], maxResults=1000)["events"]
    failed = [e for e in history if e["type"] == "TaskFailed"]
    assert any("Lambda.ServiceException" in e["taskFailedEventDetails"]["error"] for e in failed)


def test_a_failing_glue_job_names_the_file_and_publishes_nothing(stack, first_run, tmp_path):
    before = catalog()
    bad = tmp_path / "export.csv"
    bad.write_text("customer_id,date,quantity,price\n" + "x,notadate,1,1.0\n" * 10)
    (result,) = stack.drop((bad, "export.csv"))
    message = result["message"]
    assert message["failed_state"] == "Transform"
    assert "export.csv" in message["cause"] and "10 of 10 rows quarantined" in message["cause"]
    assert_catalog_unchanged(before, stack)


def test_the_same_file_twice_is_one_run_that_replaces_its_own_rows(stack, sample, first_run, tmp_path):
    again = tmp_path / "first.txt"
    shutil.copy(sample, again)
    (result,) = stack.drop((again, "first.txt"))
    assert result["execution"]["status"] == "SUCCEEDED"
    assert result["message"]["run_id"] == first_run
    for table in ("customer_features", "customer_segments", "churn_scores", "customer_value"):
        from cdnow.adapters.storage import read_published_run

        rows = read_published_run(DATABASE, table, first_run)
        assert len(rows) == SAMPLE_CUSTOMERS and rows["customer_id"].is_unique, table
    # One folder per table for the run: the replaced attempt's files are gone.
    folders = {key.rsplit("/", 2)[0] for key in objects_under(stack.curated, "tables/churn_scores/")
               if f"/run_id={first_run}/" in key}
    assert len(folders) == 1


def test_two_files_arriving_together_are_two_independent_runs(stack, sample, first_run, tmp_path):
    other = tmp_path / "other.txt"
    # A different file: the sample without its last customer's rows.
    lines = sample.read_text().splitlines(keepends=True)
    last = lines[-1].split()[0]
    other.write_text("".join(line for line in lines if line.split()[0] != last))
    a, b = stack.drop((sample, "together-a.txt"), (other, "together-b.txt"))
    assert a["execution"]["status"] == b["execution"]["status"] == "SUCCEEDED"
    run_a, run_b = a["message"]["run_id"], b["message"]["run_id"]
    assert run_a != run_b
    assert published_rows("customer_features", run_a) == SAMPLE_CUSTOMERS
    assert published_rows("customer_features", run_b) == SAMPLE_CUSTOMERS - 1
    assert {run_a, run_b} <= set(catalog()["runs"])


def test_a_decompression_bomb_fails_in_seconds_naming_the_limit(stack, tmp_path):
    """Issue 20, case 3: a 5 MB gzip of 2 GB of valid rows was still being parsed after ten
    minutes. The Transform's pre-check stops it once it expands past MaxCompressionRatio."""
    import zlib

    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" 00001 19970101  1   11.77\n" * 40_000
    bomb = tmp_path / "bomb.txt.gz"
    with bomb.open("wb") as out:
        for _ in range(2 * 1024**3 // len(block)):
            out.write(deflate.compress(block))
        out.write(deflate.flush())
    assert bomb.stat().st_size < 10 * 1024**2
    before = catalog()
    started = time.monotonic()
    (result,) = stack.drop((bomb, "bomb.txt.gz"))
    assert time.monotonic() - started < 60
    message = result["message"]
    assert message["status"] == "FAILED" and message["failed_state"] == "Transform"
    assert "the gzip expands more than 100x" in message["cause"] and "MaxCompressionRatio" in message["cause"]
    assert_catalog_unchanged(before, stack)


def test_a_lambda_timeout_fails_the_run_in_that_step(stack, sample, first_run, monkeypatch):
    """Issue 20, case 11: the offline runner enforces a function's Timeout in-process too, so a
    Lambda timeout reaches the state machine as Lambda's Sandbox.Timedout error and its Catch."""
    import dataclasses

    import cdnow.pipeline

    functions = stack.emulator.lambdas.functions
    name = "cdnow-faults-FeaturesFunction"
    monkeypatch.setitem(functions, name, dataclasses.replace(functions[name], timeout_s=2))
    build_features = cdnow.pipeline.build_features

    def slow(*args, **kwargs):
        time.sleep(4)
        return build_features(*args, **kwargs)

    monkeypatch.setattr(cdnow.pipeline, "build_features", slow)
    before = catalog()
    (result,) = stack.drop((sample, "slow.txt"))
    message = result["message"]
    assert message["status"] == "FAILED" and message["failed_state"] == "Features"
    assert message["error"] == "Sandbox.Timedout" and "Task timed out after 2.00 seconds" in message["cause"]
    assert_catalog_unchanged(before, stack)


def test_a_glue_job_past_its_timeout_fails_the_run_and_its_spark_work_is_cancelled(stack, sample, first_run,
                                                                                  monkeypatch):
    """Issue 20, case 11: the offline Glue runner enforces the job's Timeout as Glue does: the
    run ends TIMEOUT, the state machine's Catch says so in Transform, the Spark job it was
    running is cancelled (not left to run on), and nothing it wrote is uploaded."""
    from moto.glue.models import glue_backends

    runner = stack.emulator.glue
    (job_name,) = [name for name, script in runner.scripts.items() if script.name == "cdnow_transform.py"]
    job = glue_backends[boto3.client("sts").get_caller_identity()["Account"]]["us-east-1"].jobs[job_name]
    monkeypatch.setattr(job, "timeout", 0.1)  # minutes: 6 s (Glue's least is 1)
    script = runner._script(job_name)
    transform = script.transform

    def stuck(spark, *args, **kwargs):
        spark.sparkContext.parallelize([0], 1).foreach(lambda _: time.sleep(120))
        return transform(spark, *args, **kwargs)

    monkeypatch.setattr(script, "transform", stuck)
    before = catalog()
    started = time.monotonic()
    (result,) = stack.drop((sample, "stuck.txt"))
    assert time.monotonic() - started < 60
    message = result["message"]
    assert message["status"] == "FAILED" and message["failed_state"] == "Transform"
    assert "timed out: it ran past the job's Timeout of" in message["cause"], message["cause"]
    tracker = runner._spark().sparkContext.statusTracker()
    deadline = time.monotonic() + 30
    while tracker.getActiveJobsIds():
        assert time.monotonic() < deadline, "the timed-out run's Spark job was not cancelled"
        time.sleep(0.5)
    run_id = message["run"]["run_id"]
    # The failed run's manifest is all it leaves (under runs/, as every failed run's).
    assert [key for key in objects_under(stack.curated, "") if run_id in key] == [f"runs/run_id={run_id}/manifest.json"]
    assert_catalog_unchanged(before, stack)


@pytest.mark.parametrize("step, state", [("segment", "Segment"), ("value", "Value")])
def test_each_model_branch_catches_its_own_failure(stack, sample, first_run, monkeypatch, step, state):
    """Issue 20, case 11: the Catch of the Segment and Value branches (Churn's: above), each
    announced as FAILED in that model, nothing published."""
    import cdnow.pipeline

    def fails(*args, **kwargs):
        raise RuntimeError(f"injected: {step} failed")

    monkeypatch.setattr(cdnow.pipeline, step, fails)
    before = catalog()
    (result,) = stack.drop((sample, f"{step}-fails.txt"))
    message = result["message"]
    assert message["status"] == "FAILED" and message["failed_state"] == state
    assert f"injected: {step} failed" in message["cause"]
    assert_catalog_unchanged(before, stack)


def test_no_published_number_is_infinite_or_wrapped(stack, first_run, root):
    """Issue 20, cases 1 and 2 on the whole stack: the file whose rows overflowed int64 and
    parsed to infinity is published with those rows quarantined, and no published numeric value
    of any run of this module's stack is infinite or near int64's limits."""
    import numpy as np

    from cdnow.adapters.storage import read_published_table

    (result,) = stack.drop((root / "tests" / "data" / "inputs" / "out_of_range.txt", "out_of_range.txt"))
    message = result["message"]
    assert message["status"] == "SUCCEEDED"
    assert message["rows"]["by_reason"] == {"quantity_out_of_range": 10, "amount_out_of_range": 2}
    checked = 0
    for table in TABLES:
        frame = read_published_table(DATABASE, table)
        for column in frame.select_dtypes(include="number").columns:
            values = frame[column].dropna().to_numpy(dtype="float64")
            assert np.isfinite(values).all(), (table, column)
            assert (np.abs(values) < 2.0**62).all(), (table, column)
            checked += 1
    assert checked > 40
