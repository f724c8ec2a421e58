"""Probe functions: code of a test's own, deployed in the emulator like one of the stack's functions
(the same role, layers and requirements), to look at what that function's environment and role
give it."""

import json
import textwrap

import boto3

from cdnow_offline.lambda_runner import LocalFunction
from cdnow_offline.provision import _placeholder_zip


def invoke(name: str, event: dict | None = None) -> tuple[dict, str | None]:
    response = boto3.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event or {}).encode())
    return json.loads(response["Payload"].read()), response.get("FunctionError")


def probe(emulator, tmp_path, name: str, code: str, like: str, memory_mb: int = 256, timeout_s: int = 30) -> str:
    """A function with `code` as its app.py and the same role, layers and requirements as the
    stack's function `like`, created in the emulator and registered with the runner."""
    template = emulator.lambdas.functions[like]
    folder = tmp_path / name
    folder.mkdir()
    (folder / "app.py").write_text(textwrap.dedent(code))
    lambdas = boto3.client("lambda")
    lambdas.create_function(
        FunctionName=name, Runtime="python3.12", Handler="app.handler", Code={"ZipFile": _placeholder_zip()},
        Role=lambdas.get_function_configuration(FunctionName=like)["Role"], Timeout=timeout_s,
        MemorySize=memory_mb,
    )
    emulator.lambdas.register(LocalFunction(
        name=name, code_dir=folder, handler="app.handler", layer_dirs=template.layer_dirs,
        memory_mb=memory_mb, timeout_s=timeout_s, requirements=template.requirements,
    ))
    return name


# Signs as whatever the function's runtime gives it: writes what its role grants (the Ingest
# role: the run manifest under runs/) and what it does not (tables/), and says who it was.
ROLE_PROBE = """
    import boto3
    from botocore.exceptions import ClientError
    def handler(event, context):
        s3 = boto3.client("s3")
        s3.put_object(Bucket=event["curated"], Key="runs/probe/manifest.json", Body=b"{}")
        try:
            s3.put_object(Bucket=event["curated"], Key="tables/probe.json", Body=b"{}")
            denied = None
        except ClientError as error:
            denied = error.response["Error"]
        return {"arn": boto3.client("sts").get_caller_identity()["Arn"], "denied": denied}
"""


def assert_signed_as_its_role(body: dict, role_arn: str, curated: str) -> None:
    """What ROLE_PROBE returns when it ran with its role's credentials, held to that role."""
    role_name = role_arn.rsplit("/", 1)[1]
    assert f":assumed-role/{role_name}/" in body["arn"], body
    assert body["denied"]["Code"] == "AccessDenied", body
    assert f"assumed-role/{role_name}/" in body["denied"]["Message"]
    assert f"is not authorized to perform: s3:PutObject on resource: arn:aws:s3:::{curated}/tables/probe.json" in (
        body["denied"]["Message"])
