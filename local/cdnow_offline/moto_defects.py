"""Workarounds for defects of the pinned moto (5.2.5), each in one place and named after its defect.

tests/integration/test_moto_defects.py shows each defect on unpatched moto and the fix with the
patch applied, so a moto upgrade that fixes or moves one of them fails loudly there.
"""

from __future__ import annotations

import json
import threading
import uuid

import boto3

from moto.iam.access_control import IAMPolicyStatement, PermissionResult
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_glue
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition


def glue_sync_has_no_callback_endpoint() -> None:
    """`glue:startJobRun.sync` ends in States.Runtime "'NoneType' object has no attribute
    'interrupt_all'": the callback base class interrupts a callback endpoint in a `finally`, and
    one is only created for services that declare `.waitForTaskToken`. Declaring it for Glue gives
    the endpoint; a `.waitForTaskToken` Glue task still raises, as before."""
    state_task_service_glue._SUPPORTED_INTEGRATION_PATTERNS.add(ResourceCondition.WaitForTaskToken)


def _branch_error_name(error_name: str | None):
    if error_name is not None and error_name.startswith("States."):
        return StatesErrorName.from_name(error_name)
    return CustomErrorName(error_name)


def parallel_rewraps_states_errors() -> None:
    """An error named `States.*` raised inside a Parallel branch (States.TaskFailed,
    States.Timeout) is re-raised as a CustomErrorName, whose constructor refuses the `States.`
    prefix: the execution dies in States.Runtime and the Parallel's Catch never fires. Keep
    `States.*` names as the states errors they are."""
    branches_decl.CustomErrorName = _branch_error_name


_MOTO_STATEMENT_IS_ACTION_PERMITTED = IAMPolicyStatement.is_action_permitted


def _statement_is_action_permitted(statement, action, resource="*", principal=None, incoming_condition_values=None):
    known = incoming_condition_values or {}
    for operator, keys in (statement._statement.get("Condition") or {}).items():
        if operator == "Null" or operator.endswith("IfExists"):
            continue  # the operators that are about a key being absent
        if any(key not in known for key in keys):
            return PermissionResult.NEUTRAL  # a condition on a key the request lacks does not hold
    return _MOTO_STATEMENT_IS_ACTION_PERMITTED(statement, action, resource, principal, incoming_condition_values)


def policy_condition_on_unknown_key_holds() -> None:
    """moto's policy evaluator treats a condition on a key it has no value for (and any operator
    it does not implement, such as Bool) as met. S3 enforces bucket policies with it and knows no
    `aws:SecureTransport`, so the buckets' "deny requests without TLS" statement denied every
    object request. As in IAM, a condition on a key the request lacks now does not hold, and its
    statement does not apply."""
    IAMPolicyStatement.is_action_permitted = _statement_is_action_permitted


class EventBridgeDropsStepFunctionsTargets:
    """moto delivers rule targets only to logs, buses, SQS and API destinations: a Step Functions
    target is dropped (and registering one makes `send_to_targets` raise inside a bare `except`,
    which stops delivery to every later rule). So the rule gets an SQS queue as its target, and
    this relay starts the state machine with each event it receives, which is the input
    EventBridge gives the state machine on AWS. Pattern matching stays moto's."""

    def __init__(self, state_machine_arn: str, queue_name: str):
        self.state_machine_arn = state_machine_arn
        self._sqs = boto3.client("sqs")
        self._sfn = boto3.client("stepfunctions")
        self.queue_url = self._sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        self.queue_arn = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self.started: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def relay_once(self, wait_seconds: int = 0) -> list[str]:
        """Start one execution per waiting event; return the execution ARNs."""
        started = []
        messages = self._sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
        ).get("Messages", [])
        for message in messages:
            event = json.loads(message["Body"])
            execution = self._sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=str(uuid.uuid4()),  # moto's event ids are one constant: never name by them
                input=json.dumps(event),
            )
            started.append(execution["executionArn"])
            self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        self.started.extend(started)
        return started

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.relay_once(wait_seconds=0)
                except Exception:  # noqa: BLE001 - the emulator is shutting down
                    if self._stop.is_set():
                        return
                    raise
                self._stop.wait(0.1)

        self._thread = threading.Thread(target=loop, name="eventbridge-sfn-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)


def apply_moto_fixes() -> None:
    glue_sync_has_no_callback_endpoint()
    parallel_rewraps_states_errors()
    policy_condition_on_unknown_key_holds()
