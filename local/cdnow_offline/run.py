"""A whole offline run: start the emulator, provision the stack, drop the file, follow, export.

The file goes under incoming/ in the raw bucket, so the run starts the way it starts on AWS: S3
emits "Object Created" to EventBridge, the template's rule matches it and the state machine
starts with the event as its input.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3

from .emulator import Emulator

STACK_NAME = "cdnow-local"
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


@dataclass
class RunResult:
    status: str
    summary: dict
    notification: dict | None
    execution_arn: str
    seconds: float


class ExecutionFollower:
    """Prints each state as it is entered and left, with its elapsed time, until the end."""

    def __init__(self, execution_arn: str, echo: Callable[[str], None]):
        self.execution_arn = execution_arn
        self.echo = echo
        self._sfn = boto3.client("stepfunctions")
        self._seen = 0
        self._entered: dict[str, float] = {}

    def _poll(self) -> None:
        events = self._sfn.get_execution_history(
            executionArn=self.execution_arn, maxResults=1000
        )["events"]
        for event in events[self._seen:]:
            kind = event["type"]
            stamp = event["timestamp"].timestamp()
            if kind.endswith("StateEntered"):
                name = event["stateEnteredEventDetails"]["name"]
                self._entered[name] = stamp
                self.echo(f"  -> {name}")
            elif kind.endswith("StateExited"):
                name = event["stateExitedEventDetails"]["name"]
                elapsed = stamp - self._entered.get(name, stamp)
                self.echo(f"  <- {name} ({elapsed:.1f} s)")
            elif kind in ("TaskFailed", "LambdaFunctionFailed", "ExecutionFailed"):
                details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
                self.echo(f"  !! {kind}: {details.get('error', '')}: {str(details.get('cause', ''))[:300]}")
        self._seen = len(events)

    def wait(self, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            self._poll()
            execution = self._sfn.describe_execution(executionArn=self.execution_arn)
            if execution["status"] in TERMINAL:
                self._poll()
                return execution
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution still {execution['status']} after {timeout_s:.0f} s")
            time.sleep(0.3)


def _wait_for(condition: Callable[[], object], timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _receive_notification(queue_url: str, timeout_s: float) -> dict | None:
    sqs = boto3.client("sqs")

    def receive():
        return sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1).get("Messages")

    try:
        messages = _wait_for(receive, timeout_s, "the run-complete notification")
    except TimeoutError:
        return None
    return json.loads(messages[0]["Body"])


def _readable_cause(cause: str | None) -> str | None:
    """A Lambda error's cause is its JSON error payload: keep the type and message."""
    try:
        payload = json.loads(cause or "")
    except ValueError:
        return cause
    if isinstance(payload, dict) and "errorMessage" in payload:
        return f"{payload.get('errorType')}: {payload['errorMessage']}"
    if isinstance(payload, dict) and "ErrorMessage" in payload:  # a failed Glue job run
        return f"Glue job run {payload.get('Id')}: {payload['ErrorMessage']}"
    return cause


def _failure_summary(execution: dict, notification: dict | None) -> dict:
    message = json.loads(notification["Message"]) if notification else {}
    run = message.get("run") or {}
    return {
        "run_id": run.get("run_id"),
        "status": execution["status"],
        "failed_state": message.get("failed_state"),
        "error": message.get("error", execution.get("error")),
        "cause": _readable_cause(message.get("cause", execution.get("cause"))),
        "input_uri": run.get("input_uri"),
    }


def export_tables(summary: dict, out_dir: Path) -> None:
    from cdnow.storage import read_published_run

    tables_dir = out_dir / "tables"
    tables_dir.mkdir(parents=True, exist_ok=True)
    for table, where in summary["tables"].items():
        frame = read_published_run(where["database"], table, summary["run_id"])
        frame.to_parquet(tables_dir / f"{table}.parquet", index=False)


def export_charts(curated_bucket: str, run_id: str, out_dir: Path) -> None:
    from cdnow.runs import RunLayout
    from cdnow.storage import split_s3_uri

    bucket, prefix = split_s3_uri(RunLayout(curated_bucket, run_id).charts)
    s3 = boto3.client("s3")
    charts_dir = out_dir / "charts"
    charts_dir.mkdir(parents=True, exist_ok=True)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            s3.download_file(bucket, item["Key"], str(charts_dir / item["Key"].rsplit("/", 1)[-1]))


def run_local(
    input_file: Path, out_dir: Path, root: Path, echo: Callable[[str], None] = print,
    timeout_s: float = 600,
) -> RunResult:
    started = time.monotonic()
    if not input_file.is_file():
        raise FileNotFoundError(f"input file not found: {input_file}")
    echo("Starting the offline AWS emulator (moto) and local Spark...")
    emulator = Emulator(root).start()
    try:
        stack = emulator.provision(STACK_NAME)
        echo(f"Stack {STACK_NAME} provisioned from template.yaml ({len(stack.physical_ids)} resources)")
        sqs, sns = boto3.client("sqs"), boto3.client("sns")
        queue_url = sqs.create_queue(QueueName=f"{STACK_NAME}-notifications")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=stack.outputs["RunCompleteTopicArn"], Protocol="sqs", Endpoint=queue_arn)

        raw_bucket = stack.outputs["RawBucketName"]
        key = f"incoming/{input_file.name}"
        boto3.client("s3").upload_file(str(input_file), raw_bucket, key)
        echo(f"Put {input_file} at s3://{raw_bucket}/{key}")
        relay = stack.relays[0]
        execution_arn = _wait_for(lambda: relay.started[:1], 30, "the state machine to start")[0]
        echo(f"Execution started: {execution_arn.rsplit(':', 1)[-1]}")

        execution = ExecutionFollower(execution_arn, echo).wait(timeout_s)
        notification = _receive_notification(queue_url, timeout_s=10)
        out_dir.mkdir(parents=True, exist_ok=True)
        if execution["status"] == "SUCCEEDED":
            summary = json.loads(execution["output"])
            export_tables(summary, out_dir)
            export_charts(stack.outputs["CuratedBucketName"], summary["run_id"], out_dir)
        else:
            summary = _failure_summary(execution, notification)
        (out_dir / "run_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        (out_dir / "notification.json").write_text(json.dumps(notification, indent=2) + "\n")
        return RunResult(execution["status"], summary, notification, execution_arn, time.monotonic() - started)
    finally:
        emulator.stop()
