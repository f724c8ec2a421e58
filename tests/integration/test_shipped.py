"""Every function in the environment it ships with, through the offline stack.

Each function of template.yaml runs in a Python 3.12 process with nothing importable but its code,
the packages its layer or image installs (resolved for Lambda's platform) and the runtime's boto3:
a package that only the development venv holds fails the import as it would on Lambda. Probe
functions created in the same emulator show what such an environment holds and that its limits
hold.
"""

import sys

import boto3
import pytest
from probes import ROLE_PROBE, assert_signed_as_its_role, invoke, probe

from cdnow_offline.emulator import Emulator


@pytest.fixture(scope="module")
def shipped(root):
    with Emulator(root, shipped=True) as emulator:
        stack = emulator.provision("cdnow-shipped")
        yield emulator, stack


def test_every_handler_imports_and_runs_in_its_shipped_environment(shipped):
    """An empty event reaches each handler, which refuses it with its own error: the import (the
    Powertools Tracer needs aws_xray_sdk, which the layer must ship) and the invocation both ran."""
    emulator, stack = shipped
    functions = [name for name in emulator.lambdas.functions if name.startswith("cdnow-shipped-")]
    assert len(functions) == 7
    for name in functions:
        body, error = invoke(name)
        assert error == "Unhandled", (name, body)
        assert not body["errorType"].startswith("Runtime."), (name, body["errorMessage"])
        assert any("/functions/" in frame for frame in body["stackTrace"]), (name, body)


def test_a_shipped_environment_holds_only_what_the_artifact_ships(shipped, tmp_path):
    emulator, _ = shipped
    name = probe(emulator, tmp_path, "probe-environment", """
        import os, sys
        import boto3, aws_lambda_powertools, pandas
        def handler(event, context):
            return {"version": list(sys.version_info[:2]), "path": sys.path, "environment": sorted(os.environ),
                    "boto3": boto3.__version__, "pandas": pandas.__file__,
                    "remaining_ms": context.get_remaining_time_in_millis()}
    """, like="cdnow-shipped-FeaturesFunction")
    body, error = invoke(name)
    assert error is None, body
    assert body["version"] == [3, 12]
    assert not any(".venv" in entry or "site-packages" in entry for entry in body["path"]), body["path"]
    assert "cdnow-analytics/sites/" in body["pandas"]
    assert body["boto3"] == "1.44.8"  # the image's own pin, not the runtime's stand-in (1.40.4)
    assert "VIRTUAL_ENV" not in body["environment"] and "MOTO_PORT" not in body["environment"]
    assert {"AWS_ENDPOINT_URL", "AWS_LAMBDA_FUNCTION_NAME", "LAMBDA_TASK_ROOT"} <= set(body["environment"])
    assert 0 < body["remaining_ms"] <= 30_000


def test_a_package_the_artifact_does_not_ship_fails_the_import(shipped, tmp_path):
    """moto is in the development venv (this process imported it), not in the Ingest layer."""
    assert "moto" in sys.modules
    emulator, _ = shipped
    name = probe(emulator, tmp_path, "probe-unshipped-import", """
        import cdnow.domain.runs
        import moto
        def handler(event, context):
            return {}
    """, like="cdnow-shipped-IngestFunction")
    body, error = invoke(name)
    assert error == "Unhandled"
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert body["errorMessage"] == "Unable to import module 'app': No module named 'moto'"


def test_an_environment_stays_warm_between_invocations(shipped, tmp_path):
    emulator, _ = shipped
    name = probe(emulator, tmp_path, "probe-warm", """
        import os
        INVOCATIONS = []
        def handler(event, context):
            INVOCATIONS.append(context.aws_request_id)
            return {"pid": os.getpid(), "invocations": len(INVOCATIONS)}
    """, like="cdnow-shipped-IngestFunction")
    first, _ = invoke(name)
    second, _ = invoke(name)
    assert second == {"pid": first["pid"], "invocations": 2}


def test_the_functions_timeout_is_enforced(shipped, tmp_path):
    emulator, _ = shipped
    name = probe(emulator, tmp_path, "probe-timeout", """
        import time
        def handler(event, context):
            time.sleep(30)
    """, like="cdnow-shipped-IngestFunction", timeout_s=2)
    body, error = invoke(name)
    assert error == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert body["errorMessage"].endswith("Task timed out after 2.00 seconds")
    # the next invocation gets a new environment
    body, _ = invoke(name)
    assert body["errorType"] == "Sandbox.Timedout"


def test_the_functions_memory_size_is_enforced(shipped, tmp_path):
    emulator, _ = shipped
    name = probe(emulator, tmp_path, "probe-memory", """
        import time
        def handler(event, context):
            hoard = b"x" * (400 << 20)  # written, so resident
            time.sleep(5)
            return len(hoard)
    """, like="cdnow-shipped-IngestFunction", memory_mb=128)
    body, error = invoke(name)
    assert error == "Unhandled"
    assert body["errorType"] == "Runtime.OutOfMemory", body
    assert "over the function's 128 MB" in body["errorMessage"]


def test_a_shipped_function_signs_as_its_own_role_and_gets_only_what_it_grants(shipped, tmp_path):
    emulator, stack = shipped
    name = probe(emulator, tmp_path, "probe-role", ROLE_PROBE, like="cdnow-shipped-IngestFunction")
    body, error = invoke(name, {"curated": stack.outputs["CuratedBucketName"]})
    assert error is None, body
    role = boto3.client("lambda").get_function_configuration(FunctionName=name)["Role"]
    assert_signed_as_its_role(body, role, stack.outputs["CuratedBucketName"])
