"""A whole offline run: start the emulator, provision the stack, then run on it as on AWS.

The file goes under incoming/ in the raw bucket, so the run starts the way it starts on AWS: S3
emits "Object Created" to EventBridge, the template's rule matches it and the state machine
starts with the event as its input. From the upload on, the run is followed by the same code as
a run on a deployed stack (``remote.run_on_stack``); what only an emulator can give is added
here, because the emulator is gone after the run: the published tables and the run-complete
message an SQS subscriber received.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3

from .emulator import Emulator
from .remote import ALREADY_DELIVERED, check_outputs, run_on_stack
from .results import EMAIL, NOTIFICATION

STACK_NAME = "cdnow-local"


@dataclass
class RunResult:
    status: str
    summary: dict
    notification: dict | None
    execution_arn: str
    seconds: float
    run_dir: Path
    report: Path | None


def _receive_notification(queue_url: str, timeout_s: float) -> dict | None:
    sqs = boto3.client("sqs")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1).get("Messages")
        if messages:
            return json.loads(messages[0]["Body"])
        time.sleep(0.1)
    return None


def export_tables(summary: dict, run_dir: Path) -> None:
    from cdnow.adapters.storage import read_published_run

    tables_dir = run_dir / "tables"
    tables_dir.mkdir(parents=True, exist_ok=True)
    for table, where in summary["tables"].items():
        frame = read_published_run(where["database"], table, summary["run_id"])
        frame.to_parquet(tables_dir / f"{table}.parquet", index=False)


def subscribe_queue(topic_arn: str, name: str) -> str:
    """An SQS queue subscribed to the run-complete topic, as a subscriber would have it."""
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # On AWS the queue takes the topic's messages only with this policy (the README's subscription
    # recipe); moto delivers without it, so here it is set as a subscriber must, not checked.
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(queue_policy(queue_arn, topic_arn))})
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return queue_url


def queue_policy(queue_arn: str, topic_arn: str) -> dict:
    """The queue policy an SQS subscriber of the topic needs: SendMessage for SNS, from this topic."""
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
    }]}


def write_email(run_dir: Path, topic_arn: str, notification: dict | None) -> None:
    """notification-email.txt: the message an e-mail subscriber would have received (the
    emulator delivers no e-mail), its subject first."""
    published = Emulator.published(topic_arn)
    if not published or "email" not in published[-1]:
        return
    subject = (notification or {}).get("Subject") or ""
    (run_dir / EMAIL).write_text(f"Subject: {subject}\n\n{published[-1]['email']}", encoding="utf-8")


def run_local(
    input_file: Path, out_root: Path, root: Path, echo: Callable[[str], None] = print,
    timeout_s: float = 600, shipped: bool = False, options: dict | None = None, dataset: str | None = None,
) -> RunResult:
    """Run on a stack provisioned in a fresh emulator; results go to out_root/<run_id>/. With
    `shipped`, every function runs in its shipped environment (lambda_runner.py); ``options``
    ride on the upload as its metadata, as on a stack."""
    (result,) = run_local_deliveries([input_file], out_root, root, echo, timeout_s, shipped, options, dataset)
    return result


def run_local_deliveries(
    input_files: list[Path], out_root: Path, root: Path, echo: Callable[[str], None] = print,
    timeout_s: float = 600, shipped: bool = False, options: dict | None = None, dataset: str | None = None,
    on_result: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Deliver the files one after the other (each run waited for) to one stack in a fresh
    emulator, in the dataset's folder if one is named; stops after a run that did not succeed.
    ``on_result`` sees each run as it ends; each result's seconds are its own, from its upload
    (the first one's include the emulator's start)."""
    started = time.monotonic()
    for input_file in input_files:
        if not input_file.is_file():
            raise FileNotFoundError(f"input file not found: {input_file}")
    echo("Starting the offline AWS emulator (moto) and local Spark...")
    emulator = Emulator(root, shipped=shipped).start()
    results: list[RunResult] = []
    try:
        stack = emulator.provision(STACK_NAME)
        check_outputs(STACK_NAME, stack.outputs)
        echo(f"Stack {STACK_NAME} provisioned from template.yaml ({len(stack.physical_ids)} resources)")
        queue_url = subscribe_queue(stack.outputs["RunCompleteTopicArn"], f"{STACK_NAME}-notifications")
        for input_file in input_files:
            run = run_on_stack(stack.outputs, input_file, out_root, echo, timeout_s=timeout_s, poll_s=0.3,
                               options=options, dataset=dataset)
            notification = _receive_notification(queue_url, timeout_s=10)
            (run.run_dir / NOTIFICATION).write_text(json.dumps(notification, indent=2) + "\n")
            write_email(run.run_dir, stack.outputs["RunCompleteTopicArn"], notification)
            if run.status == "SUCCEEDED":
                export_tables(run.summary, run.run_dir)
            result = RunResult(run.status, run.summary, notification, run.execution_arn,
                               time.monotonic() - started, run.run_dir, run.report)
            started = time.monotonic()
            results.append(result)
            if on_result:
                on_result(result)
            if run.status not in ("SUCCEEDED", ALREADY_DELIVERED):
                break
        return results
    finally:
        emulator.stop()
