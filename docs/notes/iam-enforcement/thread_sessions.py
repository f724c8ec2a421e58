"""Prototype: per-thread boto3 default session, so code running on a thread in the emulator process
(the Glue script; in-process handlers) calls AWS with its own role's credentials.

boto3.client()/resource() use boto3.DEFAULT_SESSION (boto3/__init__.py: _get_default_session), whose
credentials are resolved once and cached; a per-thread os.environ is not seen (p7b). Installing this
proxy as DEFAULT_SESSION routes every module-level call to the current thread's session.
"""
import threading
from contextlib import contextmanager

import boto3


class ThreadDefaultSession:
    def __init__(self, fallback: boto3.Session):
        self._fallback = fallback
        self._local = threading.local()

    def _current(self) -> boto3.Session:
        return getattr(self._local, "session", None) or self._fallback

    def __getattr__(self, name):
        return getattr(self._current(), name)

    @contextmanager
    def as_credentials(self, creds: dict, region: str):
        previous = getattr(self._local, "session", None)
        self._local.session = boto3.Session(
            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds.get("SessionToken"), region_name=region,
        )
        try:
            yield self._local.session
        finally:
            self._local.session = previous


def install() -> ThreadDefaultSession:
    if not isinstance(boto3.DEFAULT_SESSION, ThreadDefaultSession):
        boto3.DEFAULT_SESSION = ThreadDefaultSession(boto3.Session())
    return boto3.DEFAULT_SESSION
