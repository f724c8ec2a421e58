"""Shared helpers for the prototypes: an in-process ThreadedMotoServer on 127.0.0.1:0."""
import json
import os
import urllib.request

os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
for k in ("AWS_PROFILE",):
    os.environ.pop(k, None)
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_ACCESS_KEY_ID"] = "offline"
os.environ["AWS_SECRET_ACCESS_KEY"] = "offline"

import logging
logging.getLogger('werkzeug').setLevel(logging.ERROR)
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCOUNT = "123456789012"
NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"})


def start():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    endpoint = f"http://localhost:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ["MOTO_PORT"] = str(port)
    return server, endpoint


def moto_api(endpoint, action, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    # text/plain: with urllib's default form content type werkzeug eats the body (reset-auth -> 500)
    req = urllib.request.Request(f"{endpoint}/moto-api/{action}", data=data, method="POST",
                                 headers={"Content-Type": "text/plain"})
    return json.loads(urllib.request.urlopen(req).read() or b"{}")


def client(service, creds=None, **kw):
    creds = creds or {}
    return boto3.client(
        service, region_name=REGION, config=NO_RETRY,
        aws_access_key_id=creds.get("AccessKeyId", "offline"),
        aws_secret_access_key=creds.get("SecretAccessKey", "offline"),
        aws_session_token=creds.get("SessionToken"), **kw,
    )


def err(fn, *a, **kw):
    """Call; return 'OK' or (http status, code, message)."""
    try:
        fn(*a, **kw)
        return "OK"
    except ClientError as e:
        r = e.response
        return (r["ResponseMetadata"].get("HTTPStatusCode"), r["Error"].get("Code"), r["Error"].get("Message"))
    except Exception as e:  # noqa: BLE001 - e.g. a 500 HTML page boto cannot parse
        text = str(e)
        return ("EXC", type(e).__name__, "500 Internal Server Error" if "500 Internal" in text else text[:200])


ADMIN_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


def make_admin(user="offline-admin"):
    """Run during the unauthenticated allowance: 3 requests (CreateUser, PutUserPolicy, CreateAccessKey)."""
    iam = client("iam")
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="admin", PolicyDocument=ADMIN_POLICY)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}


def role_credentials(role_arn, session="offline"):
    """Mint assume-role credentials in-process through the STS backend (no HTTP, no auth, no trust check)."""
    from moto.sts.models import sts_backends
    assumed = sts_backends[ACCOUNT]["aws"].assume_role(
        region_name=REGION, role_session_name=session, role_arn=role_arn,
        policy=None, duration=43200, external_id=None,
    )
    return {"AccessKeyId": assumed.access_key_id, "SecretAccessKey": assumed.secret_access_key,
            "SessionToken": assumed.session_token}
