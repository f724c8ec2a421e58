"""The offline AWS: moto served on loopback in this process, with the two adapters installed.

Served in-process (`ThreadedMotoServer`), because the Lambda and Glue adapters patch moto's
objects, which a separate `moto_server` process would not see. Everything talks to it over HTTP
through `AWS_ENDPOINT_URL`, exactly as the code talks to AWS, and IAM is enforced: every function,
the Glue job and the state machine sign with their own role's credentials (identities.py).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import urllib.request
from pathlib import Path

from . import spark
from .glue_runner import LocalGlueRunner
from .identities import Identities
from .lambda_runner import LocalLambdaRunner
from .moto_defects import apply_moto_fixes, sns_sends_no_email
from .provision import Provisioner, Stack

REGION = "us-east-1"
MOTO_CONFIG = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
# The interpreter dumps whole state payloads on every failure; werkzeug logs every request.
_NOISY_LOGGERS = ("moto.stepfunctions.parser.asl.component.eval_component", "werkzeug")


class Emulator:
    def __init__(self, root: Path, port: int = 0, log_level: str = "WARNING", shipped: bool = False):
        """`log_level` applies to the functions' Powertools loggers (their JSON lines go to stdout).
        `shipped` runs every function in its shipped environment (a Python 3.12 process with only
        what its artifact ships: lambda_runner.py) instead of in this process."""
        self.root = root
        self.shipped = shipped
        self._log_level = log_level
        self._requested_port = port
        self._server = None
        self.endpoint: str | None = None
        self.lambdas: LocalLambdaRunner | None = None
        self.glue: LocalGlueRunner | None = None
        self.identities: Identities | None = None
        self._stacks: list[Stack] = []
        self._saved_environ: dict[str, str] = {}

    def start(self) -> "Emulator":
        from moto.server import ThreadedMotoServer

        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        spark.start_session_in_background()
        self._saved_environ = dict(os.environ)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._requested_port, verbose=False)
        self._server.start()
        port = self._server.get_host_and_port()[1]
        # moto parses S3 paths from the host name: use localhost, never 127.0.0.1, in the URL.
        self.endpoint = f"http://localhost:{port}"
        # What every function's runtime sees: the region Lambda sets (the role's credentials are
        # the runner's, per function), and offline the endpoint; no X-Ray daemon offline, so
        # traces would only be discarded, noisily.
        runtime_environment = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "AWS_XRAY_SDK_ENABLED": "false",
        }
        os.environ.update({
            **runtime_environment,
            "MOTO_PORT": str(port),  # where the state-machine interpreter sends its own calls
            # Roles attach AWS managed policies (AWSXrayWriteOnlyAccess) by ARN, as on AWS; moto
            # reads this when the reset below builds its IAM backend (the config API has no "iam").
            "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
        })
        os.environ.pop("AWS_PROFILE", None)
        # moto's backends are per process: a new emulator starts from an empty account.
        self._moto_api("reset", {})
        self._moto_api("config", MOTO_CONFIG)
        self.identities = Identities(REGION)
        apply_moto_fixes(role_credentials=self.identities.role)
        self.identities.start()
        self.lambdas = LocalLambdaRunner(self.identities, {
            "POWERTOOLS_LOG_LEVEL": self._log_level,
            # Metrics are CloudWatch embedded-format lines on stdout: only noise offline.
            "POWERTOOLS_METRICS_DISABLED": "true",
        }, shipped=self.shipped, runtime_environment=runtime_environment)
        self.lambdas.install()
        self.glue = LocalGlueRunner(spark.session, self.identities)
        self.glue.install()
        return self

    def _moto_api(self, action: str, document: dict) -> None:
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/{action}", data=json.dumps(document).encode(), method="POST"
        )
        urllib.request.urlopen(request).read()  # noqa: S310 - loopback only

    def provision(self, stack_name: str, parameters: dict[str, str] | None = None) -> Stack:
        stack = Provisioner(self.root, REGION, self.lambdas, self.glue, self.identities).provision(stack_name, parameters)
        for relay in stack.relays:
            relay.start()
        # What is here now lives as long as the emulator (moto, its backends, the stack): kept out
        # of the interpreter's full collections, which otherwise walked it again each time, 14
        # times and 2.8 s of a master run (under the lock the functions' threads share).
        gc.freeze()
        if not self.shipped:  # a shipped environment runs its init in its own process
            self.lambdas.initialize_in_background()
        self._stacks.append(stack)
        return stack

    @staticmethod
    def published(topic_arn: str) -> list[dict]:
        """Every message published to the topic, oldest first, one body per protocol: what an
        e-mail subscriber would have been sent (moto_defects.sns_sends_no_email)."""
        return sns_sends_no_email(topic_arn)

    def stop(self) -> None:
        relays = [relay for stack in self._stacks for relay in stack.relays]
        for relay in relays:  # each ends its long poll (up to a second): side by side
            relay.signal_stop()
        for relay in relays:
            relay.stop()
        self._stacks.clear()
        if self.lambdas is not None:
            self.lambdas.stop()
        if self.identities is not None:
            self.identities.stop()
            self.identities = None
        if self._server is not None:
            self._server.stop()
            self._server = None
            # Leave the process pointing nowhere near a dead endpoint.
            for key in [k for k in os.environ if k not in self._saved_environ]:
                del os.environ[key]
            os.environ.update(self._saved_environ)
        gc.unfreeze()  # the next emulator of the process starts afresh: this one's objects may go

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
