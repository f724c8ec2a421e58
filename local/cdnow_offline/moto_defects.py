"""Workarounds for defects of the pinned moto (5.2.5), each in one place and named after its defect.

tests/integration/test_moto_defects.py shows each defect on unpatched moto and the fix with the
patch applied, so a moto upgrade that fixes or moves one of them fails loudly there.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import xmltodict
from botocore.config import Config
from werkzeug.exceptions import HTTPException

from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.models import botocore_stubber
from moto.iam.access_control import IAMPolicyStatement, IAMRequest, IAMRequestBase, PermissionResult, S3IAMRequest
from moto.s3.exceptions import BucketAccessDeniedError, S3AccessDeniedError
from moto.s3.models import FakeBucket
from moto.s3.responses import S3Response
from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds
from moto.stepfunctions.parser.asl.utils import boto_client as sfn_boto_client
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
    if statement._statement.get("Effect") == "Deny":
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
    object request. As in IAM, a Deny whose condition is on a key the request lacks does not
    apply. An Allow keeps moto's "met": moto evaluates identity policies with no condition values
    at all, so an Allow held to a condition (Publish's ListBucket on `s3:prefix`) would otherwise
    never grant. Conditions are not checked offline (identities.py)."""
    IAMPolicyStatement.is_action_permitted = _statement_is_action_permitted


# moto's S3 events all carry this one id (events/utils.py's _BASE_EVENT_MESSAGE).
_MOTO_CONSTANT_EVENT_ID = "17793124-05d4-b198-2fde-7ededc63b103"


def s3_events_share_one_id(event: dict) -> dict:
    """moto's S3 events all carry one constant `id`; EventBridge gives every event its own (which
    only its redeliveries share), and the pipeline runs an event once by its id. moto also spells
    the object's `etag` as `eTag`. The relays pass each event on as EventBridge sends it: an id of
    its own, `detail.object.etag`."""
    if event.get("id") == _MOTO_CONSTANT_EVENT_ID:
        event = {**event, "id": str(uuid.uuid4())}
    obj = (event.get("detail") or {}).get("object")
    if isinstance(obj, dict) and "eTag" in obj:
        obj = {("etag" if k == "eTag" else k): v for k, v in obj.items()}
        event = {**event, "detail": {**event["detail"], "object": obj}}
    return event


RELAY_WAIT_SECONDS = 1


class EventBridgeDropsStepFunctionsTargets:
    """moto delivers rule targets only to logs, buses, SQS and API destinations: a Step Functions
    target is dropped (and registering one makes `send_to_targets` raise inside a bare `except`,
    which stops delivery to every later rule), and so is a Lambda target. So the rule gets an SQS
    queue as its target, and this relay starts the state machine with each event it receives,
    which is the input EventBridge gives the state machine on AWS, or invokes the function with it.
    Pattern matching stays moto's. With `acting_as` (identities.py) the execution is started with
    the target's role, as EventBridge does; a function is invoked as EventBridge is allowed to by
    the function's resource policy (not enforced offline)."""

    def __init__(self, target_arn: str, queue_name: str, role_arn: str | None = None,
                 acting_as: Callable[[str | None], contextlib.AbstractContextManager] | None = None):
        self.target_arn = target_arn
        self.state_machine_arn = target_arn if target_arn.startswith("arn:aws:states:") else None
        self._role_arn = role_arn
        self._acting_as = acting_as or (lambda role_arn: contextlib.nullcontext())
        self._sqs = boto3.client("sqs")
        self._sfn = boto3.client("stepfunctions")
        self._lambda = boto3.client("lambda")
        self.queue_url = self._sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        self.queue_arn = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self.started: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _deliver(self, event: dict) -> str:
        if self.state_machine_arn is None:
            self._lambda.invoke(FunctionName=self.target_arn, Payload=json.dumps(event).encode())
            return self.target_arn
        with self._acting_as(self._role_arn):
            return self._sfn.start_execution(
                stateMachineArn=self.state_machine_arn, name=str(uuid.uuid4()), input=json.dumps(event),
            )["executionArn"]

    def relay_once(self, wait_seconds: int = 0) -> list[str]:
        """Deliver each waiting event; return the execution ARNs started (the function's ARN per
        invocation for a Lambda target)."""
        started = []
        messages = self._sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
        ).get("Messages", [])
        for message in messages:
            started.append(self._deliver(s3_events_share_one_id(json.loads(message["Body"]))))
            self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        self.started.extend(started)
        return started

    def start(self) -> None:
        def loop() -> None:
            # Long polling: moto answers as soon as a message arrives (a condition variable), so
            # an event is relayed at once, while an idle relay makes one request a second
            # instead of ten (each request costs the client and the server CPU: about 5 s of a
            # master run's 30 when it polled every 0.1 s). A stop waits at most that second.
            while not self._stop.is_set():
                try:
                    self.relay_once(wait_seconds=RELAY_WAIT_SECONDS)
                except Exception:  # noqa: BLE001 - the emulator is shutting down
                    if self._stop.is_set():
                        return
                    raise

        self._thread = threading.Thread(target=loop, name="eventbridge-sfn-relay", daemon=True)
        self._thread.start()

    def signal_stop(self) -> None:
        """Ask the relay to stop after its current poll, without waiting."""
        self._stop.set()

    def stop(self) -> None:
        self.signal_stop()
        if self._thread:
            self._thread.join(timeout=5)


# --------------------------------------------------------------------------- IAM enforcement
# moto enforces identity policies once its allowance of unsigned calls is spent
# (identities.py switches that on). What stands in the way of enforcing the template's own roles,
# measured in docs/notes/iam-enforcement/FINDINGS.md, is fixed here, one defect per function.

# moto's own methods, kept at import so that a second apply never wraps the first.
_MOTO_CHECK_ELEMENT_MATCHES = IAMPolicyStatement._check_element_matches
_MOTO_REQUEST_INIT = IAMRequestBase.__init__
_MOTO_CHECK_ACTION_PERMITTED = IAMRequestBase.check_action_permitted
_MOTO_CREATE_AWS_REQUEST = IAMRequestBase._create_aws_request
_MOTO_AUTHENTICATE = ActionAuthenticatorMixin._authenticate_and_authorize_action
_MOTO_DELETE_KEYS = S3Response._bucket_response_delete_keys
_MOTO_BUCKET_PERMISSION = FakeBucket.get_permission
_MOTO_BOTO_CLIENT_FOR = sfn_boto_client.boto_client_for
_request = threading.local()  # per request thread: the resource being authorized, denied keys


def _element_matches(statement, element, value):
    if element == "Resource" and value == "*":
        return True
    return _MOTO_CHECK_ELEMENT_MATCHES(statement, element, value)


def requests_outside_s3_sqs_iam_have_no_resource() -> None:
    """moto authorizes a request against its resource's ARN only for S3, SQS, IAM and STS; every
    other service's request is authorized against `"*"`, which a statement naming an ARN never
    matches: `sns:Publish` on the topic, `glue:GetTable` on the table, `lambda:InvokeFunction` on
    the function, every correct grant of the template, is denied. Such a request now matches any
    `Resource`: offline the action is enforced for those services, the resource is not."""
    IAMPolicyStatement._check_element_matches = _element_matches


# Where the action moto builds (SigV4 signing name:operation) is not IAM's name for it.
ACTION_NAMES = {
    "lambda:Invoke": "lambda:InvokeFunction",
    "lambda:InvokeWithResponseStream": "lambda:InvokeFunction",
    "xray:TraceSegments": "xray:PutTraceSegments",  # X-Ray's operations are named after the URL
    "xray:TelemetryRecords": "xray:PutTelemetryRecords",
}
SERVICE_NAMES = {"monitoring": "cloudwatch"}  # CloudWatch signs as "monitoring"


def _request_init(request, *args, **kwargs):
    _MOTO_REQUEST_INIT(request, *args, **kwargs)
    service, _, operation = request._action.partition(":")
    action = f"{SERVICE_NAMES.get(service, service)}:{operation}"
    request._action = ACTION_NAMES.get(action, action)


def actions_named_after_the_signing_name() -> None:
    """moto names the action of a request `<signing name>:<operation>`: Lambda's Invoke is
    `lambda:Invoke` (IAM: `lambda:InvokeFunction`), so the state machine's correct grant is
    denied; CloudWatch's are `monitoring:*`. IAM's names now."""
    IAMRequestBase.__init__ = _request_init


class _AccessDenied(HTTPException):
    """The AccessDenied error of a JSON or query protocol service, as boto3 parses it."""

    code = 403

    def __init__(self, message: str, query_protocol: bool):
        super().__init__()
        if query_protocol:
            self.description = xmltodict.unparse({"ErrorResponse": {
                "Error": {"Type": "Sender", "Code": "AccessDenied", "Message": message},
                "RequestId": str(uuid.uuid4()),
            }}, full_document=True)
        else:
            self.description = json.dumps({"__type": "AccessDeniedException", "message": message, "Message": message})


class _S3AccessDenied(BucketAccessDeniedError):
    def __init__(self, bucket: str | None, message: str):
        S3AccessDeniedError.__init__(self)
        self.bucket_name = bucket
        self.message = message


def _denial(principal: str, action: str) -> str:
    resource = getattr(_request, "resource", "*")
    on = f" on resource: {resource}" if resource and resource != "*" else ""
    return f"User: {principal} is not authorized to perform: {action}{on} (IAM enforced offline)"


def _check_action_permitted(request, resource):
    _request.resource = resource
    return _MOTO_CHECK_ACTION_PERMITTED(request, resource)


def _is_query_protocol(headers) -> bool:
    return (headers.get("Content-Type") or "").lower().startswith("application/x-www-form-urlencoded")


def _raise_access_denied(request):
    raise _AccessDenied(_denial(request._access_key.arn, request._action), _is_query_protocol(request._headers))


def _raise_s3_access_denied(request):
    raise _S3AccessDenied(request._data.get("BucketName"), _denial(request._access_key.arn, request._action))


def access_denied_names_nothing() -> None:
    """moto answers every denied request with one XML error: JSON services (Glue, Lambda, Step
    Functions, Logs, SQS) then show the code `403` and the whole XML as the message, query
    services (SNS, IAM) lack the RequestId on which the Step Functions interpreter's error mapping
    dies (`KeyError('RequestId')`, so a denied Publish is `States.Runtime`), and S3 says only
    "Access Denied". Each denial is now its service's AccessDenied, naming principal, action and
    resource, as AWS's do."""
    IAMRequestBase.check_action_permitted = _check_action_permitted
    IAMRequest._raise_access_denied = _raise_access_denied
    S3IAMRequest._raise_access_denied = _raise_s3_access_denied


def _bucket_permission(bucket, action, resource):
    if action == "s3:DeleteObject" and resource in getattr(_request, "denied_keys", ()):
        return PermissionResult.DENIED
    return _MOTO_BUCKET_PERMISSION(bucket, action, resource)


def _delete_keys(response, bucket_name, authenticated=True):
    if authenticated:
        return _MOTO_DELETE_KEYS(response, bucket_name, authenticated=True)
    objects = xmltodict.parse(response.body, strip_whitespace=False)["Delete"].get("Object", [])
    denied = set()
    for obj in objects if isinstance(objects, list) else [objects]:
        try:
            response._authenticate_and_authorize_s3_action(bucket_name=bucket_name, key_name=obj["Key"])
        except S3AccessDeniedError:
            denied.add(f"arn:aws:s3:::{bucket_name}/{obj['Key']}")
    _request.denied_keys = denied
    try:
        return _MOTO_DELETE_KEYS(response, bucket_name, authenticated=True)
    finally:
        _request.denied_keys = ()


def delete_objects_authorized_on_the_bucket() -> None:
    """moto authorizes DeleteObjects as `s3:DeleteObject` on the bucket's ARN: a role allowed to
    delete under `bucket/runs/*` is denied, and moto then answers 200 with an AccessDenied error
    per key, deleting nothing. Each key is now authorized on its own object ARN, as on AWS."""
    FakeBucket.get_permission = _bucket_permission
    S3Response._bucket_response_delete_keys = _delete_keys


def _create_aws_request(request):
    aws_request = _MOTO_CREATE_AWS_REQUEST(request)
    if not request._body and not _is_query_protocol(request._headers):
        aws_request.data = b""
    return aws_request


def bodiless_requests_signed_over_their_headers() -> None:
    """moto fills a request's data with its headers when it has neither body nor query string,
    and checks the signature over that: every GET or DELETE of a REST-JSON service (Lambda's
    GetFunction, ListFunctions) fails with SignatureDoesNotMatch, whoever signs it. Only a
    form-encoded request is signed over its parsed data; the rest over their body."""
    IAMRequestBase._create_aws_request = _create_aws_request


def _authenticate(response, iam_request_cls, resource="*"):
    if (ActionAuthenticatorMixin.request_count < moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
            or "Authorization" in response.headers):
        return _MOTO_AUTHENTICATE(response, iam_request_cls, resource)
    query = urlparse(response.uri).query
    presigned = parse_qs(query)
    if "X-Amz-Credential" not in presigned:
        message = f"Anonymous requests are refused offline ({response._get_action()})"
        if iam_request_cls is S3IAMRequest:
            raise _S3AccessDenied(response.data.get("BucketName"), message)
        raise _AccessDenied(message, query_protocol=True)
    headers = dict(response.headers.items())
    headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={presigned['X-Amz-Credential'][0]}, "
                                "SignedHeaders=host, Signature=presigned")
    if "X-Amz-Security-Token" in presigned:
        headers["X-Amz-Security-Token"] = presigned["X-Amz-Security-Token"][0]
    request = iam_request_cls(account_id=response.current_account, method=response.method,
                              path=response.raw_path + (f"?{query}" if query else ""), data=response.data,
                              body=response.raw_body, headers=headers, action=response._get_action())
    request.check_action_permitted(resource)


def presigned_requests_fail_under_enforcement() -> None:
    """moto reads the Authorization header of every request it enforces: a pre-signed URL (the
    report link) or any unsigned request is a 500 `KeyError('HTTP_AUTHORIZATION')`. A SigV4
    pre-signed request is now authorized as the identity that signed it (its signature and expiry
    are not checked offline); an anonymous request is denied."""
    ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate


_role_credentials: Callable[[str], dict] | None = None
_SFN_STATES = "moto.stepfunctions.parser.asl.component.state.exec"
_SFN_CLIENT_USERS = [
    f"{_SFN_STATES}.state_task.lambda_eval_utils",
    *(f"{_SFN_STATES}.state_task.service.state_task_service_{service}" for service in
      ("unsupported", "glue", "events", "ecs", "sqs", "sfn", "dynamodb", "batch", "sns", "aws_sdk")),
    f"{_SFN_STATES}.state_map.result_writer.resource_eval.resource_eval_s3",
    f"{_SFN_STATES}.state_map.item_reader.eval.resource_eval_s3",
]


# The interpreter asks for a client on every task and every poll of a .sync task; a client of
# a new Session loads the service's model files again (about 0.3 s of CPU each: 3 s of an
# offline master run). Clients are thread-safe once made: one per service, region, endpoint and
# credentials, made from one Session under a lock (a Session is not thread-safe).
_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()
_SESSION: boto3.session.Session | None = None


def _boto_client_for(region, service, state_credentials=None):
    global _SESSION
    role_arn = getattr(state_credentials, "role_arn", None)
    if _role_credentials is None or not role_arn:
        return _MOTO_BOTO_CLIENT_FOR(region, service, state_credentials)
    endpoint = {} if botocore_stubber.enabled else {"endpoint_url": f"http://localhost:{moto_settings.moto_server_port()}"}
    credentials = _role_credentials(role_arn)
    key = (service, region, credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"],
           endpoint.get("endpoint_url"))
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            _SESSION = _SESSION or boto3.session.Session()
            _CLIENTS[key] = _SESSION.client(
                service_name=service, region_name=region, aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"], aws_session_token=credentials["SessionToken"],
                config=Config(parameter_validation=False, retries={"max_attempts": 0, "total_max_attempts": 1},
                              connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                              read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS),
                **endpoint,
            )
        return _CLIENTS[key]


def step_functions_tasks_ignore_the_state_machine_role(role_credentials: Callable[[str], dict]) -> None:
    """The Step Functions interpreter signs every call of its tasks (Lambda invoke, Glue, SNS) with
    the fixed key "ak", whatever the state machine's role (which it is handed, and drops): under
    enforcement every task is refused as an unknown key. It now signs as the state machine's role
    (or the Task's own `Credentials`), with `role_credentials(role_arn)`, so the role's policy is
    what lets the pipeline invoke, run and publish."""
    global _role_credentials
    _role_credentials = role_credentials
    sfn_boto_client.boto_client_for = _boto_client_for
    # The interpreter's modules bind the function by name (`from ... import boto_client_for`):
    # import each (grep -rl boto_client_for moto/stepfunctions/parser) and rebind it.
    for name in _SFN_CLIENT_USERS:
        importlib.import_module(name)
    for module in list(sys.modules.values()):
        if getattr(module, "boto_client_for", None) is _MOTO_BOTO_CLIENT_FOR:
            module.boto_client_for = _boto_client_for


STATUS_CHANGE = "Step Functions Execution Status Change"


def _send_status_change(execution) -> None:
    from moto.events.models import events_backends

    detail = {
        "executionArn": execution.exec_arn, "stateMachineArn": execution.state_machine.arn,
        "name": execution.name, "status": str(getattr(execution.exec_status, "value", execution.exec_status)),
        "startDate": int(execution.start_date.timestamp() * 1000),
        "stopDate": int(execution.stop_date.timestamp() * 1000) if execution.stop_date else None,
        "input": json.dumps(execution.input_data) if not isinstance(execution.input_data, str) else execution.input_data,
        "output": None, "error": execution.error, "cause": execution.cause,
    }
    events_backends[execution.account_id][execution.region_name].put_events([{
        "Source": "aws.states", "DetailType": STATUS_CHANGE, "Detail": json.dumps(detail, default=str),
        "Resources": [execution.exec_arn],
    }])


def step_functions_send_no_status_change_events() -> None:
    """On AWS, Step Functions sends EventBridge a "Step Functions Execution Status Change" event
    when a standard execution ends (SUCCEEDED, FAILED, TIMED_OUT, ABORTED); moto sends none, so
    no rule on them ever fires. Each ending execution now sends it to the account's buses (where
    moto matches the rules), with the fields the pipeline reads: executionArn, stateMachineArn,
    name, status, input."""
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    if getattr(BaseExecutionWorkerCommunication.terminated, "_sends_status_change", False):
        return
    original = BaseExecutionWorkerCommunication.terminated

    def terminated(self) -> None:
        original(self)
        _send_status_change(self.execution)

    terminated._sends_status_change = True
    BaseExecutionWorkerCommunication.terminated = terminated


def glue_job_runs_have_no_error_message() -> None:
    """Glue's GetJobRun gives a failed run's `ErrorMessage` (the state machine's Catch shows it as
    the cause); moto's job runs have none. A job run's `error_message` (the offline Glue runner
    sets it when the script raises) is now returned as `ErrorMessage`."""
    from moto.glue.models import FakeJobRun

    if getattr(FakeJobRun.as_dict, "_has_error_message", False):
        return
    original = FakeJobRun.as_dict

    def as_dict(job_run) -> dict:
        result = original(job_run)
        if getattr(job_run, "error_message", None):
            result["ErrorMessage"] = job_run.error_message
        return result

    as_dict._has_error_message = True
    FakeJobRun.as_dict = as_dict


def hold_glue_job_run(job_run) -> None:
    """moto walks a job run STARTING -> RUNNING -> SUCCEEDED on successive reads (its private
    `_transitions`), whatever the job does. The offline Glue runner, which really runs the job,
    holds it at RUNNING with this and sets its end itself."""
    job_run._transitions = []
    job_run.status = "RUNNING"
    job_run.error_message = None


def iam_refuses_a_policy_without_version(document: dict) -> dict:
    """IAM takes a policy document without `Version` (SAM's policy templates have none; IAM reads
    it as 2008-10-17); moto refuses it as malformed. The provisioner gives such a document the
    current version, which grants the same for every statement the template writes."""
    return document if "Version" in document else {"Version": "2012-10-17", **document}


def sns_sends_no_email(topic_arn: str) -> list[dict]:
    """moto delivers a topic's messages to SQS, Lambda and HTTP subscribers, never e-mail, and no
    API shows what an e-mail subscriber would have been sent. This reads it from moto's backend
    (its sent notifications), oldest first: with `MessageStructure: json` one body per protocol
    ({"default", "email", ...}), else {"default": message}."""
    from moto.sns.models import sns_backends

    _, _, _, region, account, _ = topic_arn.split(":")
    sent = sns_backends[account][region].topics[topic_arn].sent_notifications
    return [_per_protocol(message) for _, message, *_ in sent]


def _per_protocol(message: str) -> dict:
    try:
        document = json.loads(message)
    except ValueError:
        return {"default": message}
    return document if isinstance(document, dict) and "default" in document else {"default": message}


def cloudwatch_runs_no_alarm_actions() -> None:
    """CloudWatch publishes an alarm's state change to each SNS topic among its actions (the JSON
    message subscribers parse: AlarmName, NewStateValue, NewStateReason, ...); moto changes the
    state and runs no action. A change to ALARM, OK or INSUFFICIENT_DATA now publishes to the
    alarm's AlarmActions, OKActions or InsufficientDataActions topics, as CloudWatch does."""
    from moto.cloudwatch.models import Alarm
    from moto.sns.models import sns_backends

    if getattr(Alarm.update_state, "_runs_actions", False):
        return
    original = Alarm.update_state

    def update_state(alarm, reason: str, reason_data: str, state_value: str) -> None:
        old_state = alarm.state_value
        original(alarm, reason, reason_data, state_value)
        actions = {"ALARM": alarm.alarm_actions, "OK": alarm.ok_actions,
                   "INSUFFICIENT_DATA": alarm.insufficient_data_actions}.get(state_value) or []
        message = json.dumps({
            "AlarmName": alarm.name, "AlarmDescription": alarm.description, "AWSAccountId": alarm.alarm_arn.split(":")[4],
            "NewStateValue": state_value, "NewStateReason": reason, "OldStateValue": old_state,
            "StateChangeTime": alarm.state_updated_timestamp.isoformat(), "Region": alarm.region_name,
            "AlarmArn": alarm.alarm_arn,
        })
        for arn in actions:
            if arn.startswith("arn:aws:sns:"):
                _, _, _, region, account, _ = arn.split(":")
                subject = f'{state_value}: "{alarm.name}" in {region}'[:100]
                sns_backends[account][region].publish(message, arn=arn, subject=subject)

    update_state._runs_actions = True
    Alarm.update_state = update_state


_glue_update_lock = threading.Lock()


def glue_update_table_ignores_version_id() -> None:
    """Glue's UpdateTable takes the VersionId the caller read and answers
    ConcurrentModificationException when the table has moved on since; moto accepts any VersionId,
    so of two commits racing on one Iceberg table (pyiceberg's Glue catalog) both "succeed" and
    one is lost (docs/notes/iceberg-offline.md). UpdateTable now checks it, atomically."""
    from moto.glue.exceptions import GlueClientError
    from moto.glue.responses import GlueResponse

    if getattr(GlueResponse.update_table, "_checks_version", False):
        return
    original = GlueResponse.update_table

    def update_table(self):
        version = self.parameters.get("VersionId")
        with _glue_update_lock:
            if version is not None:
                table_input = self.parameters.get("TableInput") or {}
                table = self.glue_backend.get_table(self.parameters.get("DatabaseName"), table_input.get("Name"))
                if str(version) != str(table._current_version):
                    raise GlueClientError("ConcurrentModificationException",
                                          f"Table version {version} is not the current version "
                                          f"{table._current_version}: the table was updated meanwhile.")
            return original(self)

    update_table._checks_version = True
    GlueResponse.update_table = update_table


def the_server_lists_its_modules_per_request() -> None:
    """moto's server asks, for every request, whether the Host header names one of its service
    modules, by listing its package folder and testing each entry with isdir (about 170 system
    calls a request; 4.7 s of CPU in an offline master run). The folder does not change while
    the process runs: list it once."""
    from moto import backends

    if getattr(backends.list_of_moto_modules, "_listed_once", False):
        return
    modules = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules():
        return iter(modules)

    list_of_moto_modules._listed_once = True
    backends.list_of_moto_modules = list_of_moto_modules


_completing_upload = threading.local()


def s3_multipart_upload_sends_two_events() -> None:
    """A completed multipart upload sends two "Object Created" events: moto stores the object
    with its own put_object, which announces a PutObject, then announces the
    CompleteMultipartUpload. S3 sends the one. Each event starts an execution, so every file
    over boto3's 8 MB multipart threshold ran twice, side by side, on the same run's files
    (duplicated rows, objects deleted under the other run's feet). The object's storing no
    longer announces itself while an upload completes."""
    from moto.s3.models import S3Backend

    if getattr(S3Backend.complete_multipart_upload, "_one_event", False):
        return
    complete, put = S3Backend.complete_multipart_upload, S3Backend.put_object

    def put_object(self, *args, **kwargs):
        if getattr(_completing_upload, "active", False):
            kwargs["disable_notification"] = True
        return put(self, *args, **kwargs)

    def complete_multipart_upload(self, *args, **kwargs):
        _completing_upload.active = True
        try:
            return complete(self, *args, **kwargs)
        finally:
            _completing_upload.active = False

    complete_multipart_upload._one_event = True
    S3Backend.put_object = put_object
    S3Backend.complete_multipart_upload = complete_multipart_upload


def apply_moto_fixes(role_credentials: Callable[[str], dict] | None = None) -> None:
    """Every workaround; `role_credentials(role_arn)` (AccessKeyId, SecretAccessKey, SessionToken)
    lets the Step Functions interpreter sign as each state machine's role."""
    the_server_lists_its_modules_per_request()
    s3_multipart_upload_sends_two_events()
    glue_sync_has_no_callback_endpoint()
    parallel_rewraps_states_errors()
    policy_condition_on_unknown_key_holds()
    requests_outside_s3_sqs_iam_have_no_resource()
    actions_named_after_the_signing_name()
    access_denied_names_nothing()
    delete_objects_authorized_on_the_bucket()
    bodiless_requests_signed_over_their_headers()
    presigned_requests_fail_under_enforcement()
    step_functions_send_no_status_change_events()
    glue_update_table_ignores_version_id()
    glue_job_runs_have_no_error_message()
    cloudwatch_runs_no_alarm_actions()
    if role_credentials is not None:
        step_functions_tasks_ignore_the_state_machine_role(role_credentials)
