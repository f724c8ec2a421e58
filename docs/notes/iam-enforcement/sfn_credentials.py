"""Prototype patch: sign the Step Functions interpreter's own AWS calls with the state machine role.

moto/stepfunctions/parser/asl/utils/boto_client.py:14-33 builds every interpreter client with the
fixed key "ak"/"sk"; 14 modules bind `boto_client_for` by `from ... import`, so the patch replaces
the name in the defining module and in every already-imported module that holds the original.
"""
import importlib
import sys
import threading

import boto3
from botocore.config import Config

import moto.stepfunctions.parser.asl.utils.boto_client as _bc
from moto.settings import moto_server_port
from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds

_MOTO_BOTO_CLIENT_FOR = _bc.boto_client_for
# The modules that call boto_client_for (grep -rl boto_client_for moto/stepfunctions/parser).
_CALLERS = [
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    *(f"moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_{s}"
      for s in ("unsupported", "glue", "events", "ecs", "sqs", "sfn", "dynamodb", "batch", "sns", "aws_sdk")),
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3",
]


class RoleCredentials:
    """Assume-role credentials per role ARN, minted in-process by moto's STS backend (no HTTP, so
    neither counted nor authorized, and no trust-policy check). Clear on /moto-api/reset."""

    def __init__(self, region="us-east-1"):
        self.region = region
        self._cache = {}
        self._lock = threading.Lock()

    def for_role(self, role_arn: str) -> dict:
        from moto.sts.models import sts_backends
        from moto.utilities.utils import get_partition
        with self._lock:
            if role_arn not in self._cache:
                account = role_arn.split(":")[4]
                assumed = sts_backends[account][get_partition(self.region)].assume_role(
                    region_name=self.region, role_session_name="offline-" + role_arn.rsplit("/", 1)[-1][:50],
                    role_arn=role_arn, policy=None, duration=43200, external_id=None,
                )
                self._cache[role_arn] = {
                    "aws_access_key_id": assumed.access_key_id,
                    "aws_secret_access_key": assumed.secret_access_key,
                    "aws_session_token": assumed.session_token,
                }
            return self._cache[role_arn]

    def clear(self):
        with self._lock:
            self._cache.clear()


def install(roles: RoleCredentials) -> None:
    def boto_client_for(region, service, state_credentials=None):
        role_arn = getattr(state_credentials, "role_arn", None)
        if not role_arn:  # never happens for Task states: StateTask._eval_state_credentials sets it
            return _MOTO_BOTO_CLIENT_FOR(region, service, state_credentials)
        return boto3.client(
            service_name=service, region_name=region,
            endpoint_url=f"http://localhost:{moto_server_port()}",
            **roles.for_role(role_arn),
            config=Config(
                parameter_validation=False,
                retries={"max_attempts": 0, "total_max_attempts": 1},
                connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
            ),
        )

    _bc.boto_client_for = boto_client_for
    for name in _CALLERS:
        module = importlib.import_module(name)
        assert module.boto_client_for in (_MOTO_BOTO_CLIENT_FOR, boto_client_for), name
        module.boto_client_for = boto_client_for
    # anything else already imported that bound the original
    for module in list(sys.modules.values()):
        if getattr(module, "boto_client_for", None) is _MOTO_BOTO_CLIENT_FOR:
            module.boto_client_for = boto_client_for
