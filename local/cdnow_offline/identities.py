"""Who signs each call of the offline stack: IAM enforced, as on AWS.

moto enforces identity policies once its allowance of unsigned calls is spent
(`INITIAL_NO_AUTH_ACTION_COUNT`); this module spends it at once. From then on every request must
be signed by a key IAM knows, and is allowed only what that key's policies grant:

- the emulator's own work (provisioning, the relays' plumbing, the CLI and the tests reading
  results) is an administrator user's, made in-process in moto's IAM backend;
- each function runs with credentials of its own role (the role `template.yaml` gives it, created
  by the provisioner with its policies, SAM's policy templates expanded), the Glue job with the
  job's role, the state machine's tasks with the state machine's role, the EventBridge rule's
  start of an execution with the rule's role. Role credentials are minted in-process by moto's
  STS backend (no HTTP: over HTTP, moto's AssumeRole fails on a role trusted by a service).

Code that runs in this process on a thread of its own (an in-process function, the Glue job) signs
with its thread's identity: the default boto3 session's credentials resolve per thread when a
request is signed (`acting_as`). A thread such code starts itself signs as the administrator.

What moto does not check, so neither does the offline stack (the static tests in
tests/unit/test_iam.py and checkov stand for these): conditions (an Allow's condition counts as
met, a Deny's on a key the request lacks as not met), resource ARNs outside S3, SQS and IAM (the
action is enforced, the resource is not), resource policies other than S3 bucket policies (queue,
topic and key policies), KMS for SSE-KMS objects, the source of a CopyObject, session policies,
permission boundaries and expiry. moto_defects.py has the defects fixed to get this far.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import botocore.session
from botocore.credentials import CredentialProvider, Credentials, ReadOnlyCredentials

ADMINISTRATOR = "offline-administrator"
_EVERYTHING = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
_SESSION_SECONDS = 43_200  # moto never expires a key; what clients see as its Expiration


class Identities:
    """The administrator's key and every role's credentials for one emulator (one moto account)."""

    def __init__(self, region: str, account: str = "123456789012"):
        self.region = region
        self.account = account
        self.administrator: dict[str, str] | None = None
        self._roles: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._thread = threading.local()
        self._credentials = _ThreadCredentials(self)

    def start(self) -> None:
        """After moto's reset: the administrator, the default session signing per thread, and
        enforcement from the next request on."""
        from moto.core.authorization import ActionAuthenticatorMixin
        from moto import settings
        from moto.iam.models import iam_backends

        iam = iam_backends[self.account]["aws"]
        iam.create_user(region_name=self.region, user_name=ADMINISTRATOR, path="/", tags=[])
        iam.put_user_policy(ADMINISTRATOR, "everything", _EVERYTHING)
        key = iam.create_access_key(ADMINISTRATOR)
        self.administrator = {"AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret_access_key}
        with self._lock:
            self._roles.clear()
        # A new boto3.Session (awswrangler's, a test's) reads the administrator from here.
        os.environ["AWS_ACCESS_KEY_ID"] = key.access_key_id
        os.environ["AWS_SECRET_ACCESS_KEY"] = key.secret_access_key
        os.environ.pop("AWS_SESSION_TOKEN", None)
        session = botocore.session.Session()
        session.get_component("credential_provider").insert_before("env", _PerThread(self._credentials))
        boto3.setup_default_session(botocore_session=session, region_name=self.region)
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0

    def stop(self) -> None:
        """Enforcement off again (the next emulator of this process starts from moto's reset)."""
        from moto.core.authorization import ActionAuthenticatorMixin
        from moto import settings

        settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
        ActionAuthenticatorMixin.request_count = 0
        with self._lock:
            self._roles.clear()
        boto3.DEFAULT_SESSION = None

    def role(self, role_arn: str) -> dict[str, str]:
        """Credentials of the role (AccessKeyId, SecretAccessKey, SessionToken), minted once."""
        from moto.sts.models import sts_backends

        with self._lock:
            if role_arn not in self._roles:
                assumed = sts_backends[self.account]["aws"].assume_role(
                    region_name=self.region, role_session_name="offline-" + role_arn.rsplit("/", 1)[-1][:50],
                    role_arn=role_arn, policy=None, duration=_SESSION_SECONDS, external_id=None,
                )
                self._roles[role_arn] = {"AccessKeyId": assumed.access_key_id,
                                         "SecretAccessKey": assumed.secret_access_key,
                                         "SessionToken": assumed.session_token}
            return self._roles[role_arn]

    def role_environment(self, role_arn: str) -> dict[str, str]:
        """The variables Lambda's runtime sets for a function's role."""
        credentials = self.role(role_arn)
        return {"AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
                "AWS_SESSION_TOKEN": credentials["SessionToken"]}

    @contextmanager
    def acting_as(self, role: str | None) -> Iterator[None]:
        """This thread's calls through the default session sign as the role, given by ARN or by
        name as Glue takes it (None: unchanged)."""
        previous = getattr(self._thread, "credentials", None)
        if role is not None:
            self._thread.credentials = self.role(role if role.startswith("arn:")
                                                 else f"arn:aws:iam::{self.account}:role/{role}")
        try:
            yield
        finally:
            self._thread.credentials = previous

    def current(self) -> dict[str, str]:
        return getattr(self._thread, "credentials", None) or self.administrator or {}


class _ThreadCredentials(Credentials):
    """Credentials whose key is the current thread's identity each time a request is signed
    (botocore's signer asks for the frozen credentials per request)."""

    method = "offline-thread-identity"

    def __init__(self, identities: Identities):  # no super().__init__: nothing fixed to store
        self._identities = identities

    @property
    def access_key(self) -> str:
        return self._identities.current().get("AccessKeyId")

    @property
    def secret_key(self) -> str:
        return self._identities.current().get("SecretAccessKey")

    @property
    def token(self) -> str | None:
        return self._identities.current().get("SessionToken")

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        current = self._identities.current()
        return ReadOnlyCredentials(current.get("AccessKeyId"), current.get("SecretAccessKey"),
                                   current.get("SessionToken"))


class _PerThread(CredentialProvider):
    METHOD = "offline-thread-identity"

    def __init__(self, credentials: _ThreadCredentials):
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials
