"""Prototype patches that make moto 5.2.5's IAM enforcement usable for our roles.

Each function fixes one measured defect (see FINDINGS.md); `apply()` installs them all.
"""
from __future__ import annotations

import json
import threading
import uuid

from werkzeug.exceptions import HTTPException

from moto.iam import access_control as ac
from moto.iam.access_control import (
    IAMPolicyStatement, IAMRequest, IAMRequestBase, PermissionResult, S3IAMRequest,
)
from moto.s3.exceptions import BucketAccessDeniedError, S3AccessDeniedError

# ---------------------------------------------------------------- 1. resource "*" for most services
# core/responses.py:436-440: only SQS, IAM and STS (and S3 on its own path) compute the request's
# resource; every other service authorizes against resource "*", which a statement naming an ARN
# never matches (access_control.py:501 + _match at 572): sns:Publish on a topic ARN, glue:GetTable on
# table ARNs, lambda:InvokeFunction on a function ARN are all denied. Offline, a request whose
# resource moto does not know matches any Resource: the action is enforced, the resource is not.
_MOTO_CHECK_ELEMENT_MATCHES = IAMPolicyStatement._check_element_matches


def _check_element_matches(self, statement_element, value):
    if statement_element == "Resource" and value == "*":
        return True
    return _MOTO_CHECK_ELEMENT_MATCHES(self, statement_element, value)


def unknown_request_resource_matches_any_resource() -> None:
    IAMPolicyStatement._check_element_matches = _check_element_matches


# ---------------------------------------------------------------- 2. IAM action names
# access_control.py:237-240 builds the action as <SigV4 signing name>:<API operation>. Where IAM's
# name differs, a correct policy is denied: Lambda's Invoke is lambda:InvokeFunction, CloudWatch
# signs as "monitoring" but its actions are cloudwatch:*.
ACTION_ALIASES = {
    "lambda:Invoke": "lambda:InvokeFunction",
    "lambda:InvokeWithResponseStream": "lambda:InvokeFunction",
    # xray/responses.py:34-38 names actions after the URL path (/TraceSegments)
    "xray:TraceSegments": "xray:PutTraceSegments",
    "xray:TelemetryRecords": "xray:PutTelemetryRecords",
}
SERVICE_ALIASES = {"monitoring": "cloudwatch"}
_MOTO_REQUEST_INIT = IAMRequestBase.__init__


def _request_init(self, *args, **kwargs):
    _MOTO_REQUEST_INIT(self, *args, **kwargs)
    service, _, operation = self._action.partition(":")
    action = f"{SERVICE_ALIASES.get(service, service)}:{operation}"
    self._action = ACTION_ALIASES.get(action, action)


def iam_action_names() -> None:
    IAMRequestBase.__init__ = _request_init


# ---------------------------------------------------------------- 3. denials that name the action
# access_control.py:385-386 raises an XML AccessDeniedError for every non-S3 service: JSON services
# (Glue, Lambda, Step Functions, KMS, Logs, Events, SQS) then show code "403" with the XML as the
# message, and query services (SNS, IAM) lack a RequestId, on which the Step Functions interpreter's
# error mapping (state_task_service_sns.py:63 and the others) dies with KeyError('RequestId').
# S3 (access_control.py:411-415) says only "Access Denied". Now every denial is the service's own
# AccessDenied shape, naming principal, action and resource.
class _AccessDenied(HTTPException):
    code = 403

    def __init__(self, message: str, query_protocol: bool):
        super().__init__()
        request_id = str(uuid.uuid4())
        if query_protocol:
            from xmltodict import unparse
            self.description = unparse({"ErrorResponse": {
                "Error": {"Type": "Sender", "Code": "AccessDenied", "Message": message},
                "RequestId": request_id,
            }}, full_document=True)
        else:
            self.description = json.dumps({"__type": "AccessDeniedException", "message": message,
                                           "Message": message})


class _S3AccessDenied(BucketAccessDeniedError):
    def __init__(self, bucket: str | None, message: str):
        S3AccessDeniedError.__init__(self)
        self.bucket_name = bucket
        self.message = message


_MOTO_CHECK_ACTION_PERMITTED = IAMRequestBase.check_action_permitted
_local = threading.local()


def _check_action_permitted(self, resource):
    _local.resource = resource
    return _MOTO_CHECK_ACTION_PERMITTED(self, resource)


def _message(request) -> str:
    resource = getattr(_local, "resource", "*")
    suffix = f" on resource: {resource}" if resource and resource != "*" else ""
    return (f"User: {request._access_key.arn} is not authorized to perform: {request._action}{suffix}"
            " (offline IAM enforcement)")


def _raise_access_denied(self):
    content_type = (self._headers.get("Content-Type") or "").lower()
    raise _AccessDenied(_message(self), query_protocol=content_type.startswith("application/x-www-form-urlencoded"))


def _raise_s3_access_denied(self):
    raise _S3AccessDenied(self._data.get("BucketName"), _message(self))


def access_denied_names_the_action() -> None:
    IAMRequestBase.check_action_permitted = _check_action_permitted
    IAMRequest._raise_access_denied = _raise_access_denied
    S3IAMRequest._raise_access_denied = _raise_s3_access_denied


# ---------------------------------------------------------------- 4. trust policies with Service principals
# access_control.py:540-545: a trust policy whose Principal has no "AWS" key (Service:
# lambda.amazonaws.com) makes `principal in None` raise TypeError: sts:AssumeRole over HTTP is a 500.
# Only AWS principals can call AssumeRole here, so a Service-only statement does not match.
_MOTO_CHECK_PRINCIPAL = IAMPolicyStatement._check_principal


def _check_principal(self, principal):
    expected = self._statement.get("Principal")
    if isinstance(expected, dict) and "AWS" not in expected:
        return False
    return _MOTO_CHECK_PRINCIPAL(self, principal)


def service_principal_trust_policies() -> None:
    IAMPolicyStatement._check_principal = _check_principal


# ---------------------------------------------------------------- 5. DeleteObjects per key
# s3/responses.py:1653-1662: DeleteObjects is authorized as s3:DeleteObject on the *bucket* ARN, so
# a role allowed DeleteObject on bucket/prefix/* is denied, and the fallback answers 200 with an
# AccessDenied error for every key (responses.py:1760-1762): nothing is deleted and boto3 raises
# nothing. As on AWS, each key is now authorized on its own object ARN.
def _delete_keys_per_key() -> None:
    import xmltodict
    from moto.s3.models import FakeBucket
    from moto.s3.responses import S3Response

    moto_delete_keys = S3Response._bucket_response_delete_keys
    moto_get_permission = FakeBucket.get_permission

    def get_permission(bucket, action, resource):
        if action == "s3:DeleteObject" and resource in getattr(_local, "denied_keys", ()):
            return PermissionResult.DENIED
        return moto_get_permission(bucket, action, resource)

    def delete_keys(self, bucket_name, authenticated=True):
        if authenticated:
            return moto_delete_keys(self, bucket_name, authenticated=True)
        objects = xmltodict.parse(self.body, strip_whitespace=False)["Delete"].get("Object", [])
        objects = objects if isinstance(objects, list) else [objects]
        denied = set()
        for obj in objects:
            try:
                self._authenticate_and_authorize_s3_action(bucket_name=bucket_name, key_name=obj["Key"])
            except S3AccessDeniedError:
                denied.add(f"arn:aws:s3:::{bucket_name}/{obj['Key']}")
        _local.denied_keys = denied
        try:
            return moto_delete_keys(self, bucket_name, authenticated=True)
        finally:
            _local.denied_keys = ()

    FakeBucket.get_permission = get_permission
    S3Response._bucket_response_delete_keys = delete_keys


# ---------------------------------------------------------------- 6. conditions in identity policies
# The project's moto_defects.policy_condition_on_unknown_key_holds makes every statement with a
# condition on a key the request lacks NEUTRAL. Identity policies are evaluated with no condition
# keys at all (access_control.py:273 passes none), so under enforcement an Allow with a condition
# (ListBucket with StringLike s3:prefix) would never grant. Unknown-key conditions should disarm
# Deny statements only; an Allow whose condition cannot be evaluated keeps moto's behaviour (met).
def conditions_disarm_denies_only() -> None:
    from moto.iam.access_control import IAMPolicyStatement as S
    moto_is_action_permitted = S.is_action_permitted
    # If the project's patch is installed, unwrap to moto's own method.
    import sys
    defects = sys.modules.get("cdnow_offline.moto_defects") or sys.modules.get("local.cdnow_offline.moto_defects")
    if defects is not None:
        moto_is_action_permitted = defects._MOTO_STATEMENT_IS_ACTION_PERMITTED

    def is_action_permitted(statement, action, resource="*", principal=None, incoming_condition_values=None):
        if statement._statement.get("Effect") == "Deny":
            known = incoming_condition_values or {}
            for operator, keys in (statement._statement.get("Condition") or {}).items():
                if operator == "Null" or operator.endswith("IfExists"):
                    continue
                if any(key not in known for key in keys):
                    return PermissionResult.NEUTRAL
        return moto_is_action_permitted(statement, action, resource, principal, incoming_condition_values)

    S.is_action_permitted = is_action_permitted


# ---------------------------------------------------------------- 7. signatures of bodiless requests
# core/responses.py:253-254 fills `data` with the request *headers* when a request has neither body
# nor query string, and access_control.py:347 signs `self._body or self._data`: every GET/DELETE of a
# REST-JSON service (Lambda GetFunction, ListFunctions, GetFunctionConfiguration...) fails with
# SignatureDoesNotMatch, even for the admin. Only a form-encoded body (query protocol, which
# werkzeug parsed into `data`) needs `data`; everything else is signed over its raw body.
_MOTO_CREATE_AWS_REQUEST = IAMRequestBase._create_aws_request


def _create_aws_request(self):
    request = _MOTO_CREATE_AWS_REQUEST(self)
    content_type = (self._headers.get("Content-Type") or "").lower()
    if not self._body and not content_type.startswith("application/x-www-form-urlencoded"):
        request.data = b""
    return request


def bodiless_request_signatures() -> None:
    IAMRequestBase._create_aws_request = _create_aws_request


# ---------------------------------------------------------------- 8. presigned URLs and anonymous requests
# core/authorization.py:53-63 and access_control.py:232-234 read the Authorization header: a
# presigned URL (SigV4 in the query string: X-Amz-Credential, X-Amz-Security-Token) or any unsigned
# request is a 500 KeyError('HTTP_AUTHORIZATION') under enforcement. A presigned request is now
# authorized as the identity that presigned it (its signature and expiry are not checked offline);
# an anonymous one is denied with a 403.
def presigned_and_anonymous_requests() -> None:
    from urllib.parse import parse_qs, urlparse

    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin as Mixin

    moto_authenticate = Mixin._authenticate_and_authorize_action

    def authenticate(self, iam_request_cls, resource="*"):
        if Mixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT or "Authorization" in self.headers:
            return moto_authenticate(self, iam_request_cls, resource)
        query = parse_qs(urlparse(self.uri).query)
        if "X-Amz-Credential" not in query:
            message = f"Anonymous requests are not allowed offline (action {self._get_action()})"
            if iam_request_cls is S3IAMRequest:
                raise _S3AccessDenied(self.data.get("BucketName"), message)
            raise _AccessDenied(message, query_protocol=True)
        headers = dict(self.headers.items())
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={query['X-Amz-Credential'][0]}, "
                                    "SignedHeaders=host, Signature=presigned")
        if "X-Amz-Security-Token" in query:
            headers["X-Amz-Security-Token"] = query["X-Amz-Security-Token"][0]
        path = self.raw_path + ("?" + urlparse(self.uri).query if urlparse(self.uri).query else "")
        iam_request = iam_request_cls(account_id=self.current_account, method=self.method, path=path,
                                      data=self.data, body=self.raw_body, headers=headers,
                                      action=self._get_action())
        iam_request.check_action_permitted(resource)

    Mixin._authenticate_and_authorize_action = authenticate


def apply() -> None:
    presigned_and_anonymous_requests()
    bodiless_request_signatures()
    unknown_request_resource_matches_any_resource()
    iam_action_names()
    access_denied_names_the_action()
    service_principal_trust_policies()
    _delete_keys_per_key()
    conditions_disarm_denies_only()
