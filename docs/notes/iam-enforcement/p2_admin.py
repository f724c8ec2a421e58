"""Q2: admin identity created during the unauthenticated allowance, then everything signed with its key."""
import io, json, sys, zipfile
from common import *
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin as A

server, ep = start()
moto_api(ep, "reset", {})
moto_api(ep, "config", {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}})
mode = sys.argv[1] if len(sys.argv) > 1 else "http"
if mode == "http":
    # allowance of exactly 3 signed-but-unchecked requests, counter zeroed by reset-auth
    moto_api(ep, "reset-auth", b"3")
    admin = make_admin()
    print("allowance used:", A.request_count, "of", settings.INITIAL_NO_AUTH_ACTION_COUNT)
else:
    # in-process: create the user through the IAM backend (no HTTP, nothing counted), then enforce from 0
    from moto.iam.models import iam_backends
    iam_b = iam_backends[ACCOUNT]["aws"]
    iam_b.create_user(region_name=REGION, user_name="offline-admin", path="/", tags=[])
    iam_b.put_user_policy("offline-admin", "admin", ADMIN_POLICY)
    k = iam_b.create_access_key("offline-admin")
    admin = {"AccessKeyId": k.access_key_id, "SecretAccessKey": k.secret_access_key}
    moto_api(ep, "reset-auth", b"0")
print("admin key", admin["AccessKeyId"])
print("anonymous-key call now:", err(client("s3").list_buckets))

c = lambda s: client(s, admin)
results = {}
def check(name, fn):
    results[name] = err(fn)

s3 = c("s3")
check("s3 create_bucket", lambda: s3.create_bucket(Bucket="bucket-one"))
check("s3 put/get", lambda: (s3.put_object(Bucket="bucket-one", Key="k", Body=b"x"), s3.get_object(Bucket="bucket-one", Key="k")))
iam = c("iam")
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
check("iam create_role+attach", lambda: (iam.create_role(RoleName="r1", AssumeRolePolicyDocument=json.dumps(trust)),
                                         iam.attach_role_policy(RoleName="r1", PolicyArn="arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess")))
check("glue create_database/job", lambda: (c("glue").create_database(DatabaseInput={"Name": "db"}),
                                           c("glue").create_job(Name="j", Role="arn:aws:iam::123456789012:role/r1", Command={"Name": "glueetl", "ScriptLocation": "s3://bucket-one/s.py"})))
check("sns create_topic/publish", lambda: c("sns").publish(TopicArn=c("sns").create_topic(Name="t")["TopicArn"], Message="m"))
check("sqs create/send", lambda: c("sqs").send_message(QueueUrl=c("sqs").create_queue(QueueName="q")["QueueUrl"], MessageBody="m"))
check("events put_rule", lambda: c("events").put_rule(Name="r", EventPattern=json.dumps({"source": ["aws.s3"]})))
check("kms create_key/gdk", lambda: c("kms").generate_data_key(KeyId=c("kms").create_key()["KeyMetadata"]["KeyId"], KeySpec="AES_256"))
check("logs create_log_group", lambda: c("logs").create_log_group(logGroupName="/g"))
buf = io.BytesIO(); zipfile.ZipFile(buf, "w").writestr("app.py", "def h(e,c): return 1")
check("lambda create/invoke", lambda: (c("lambda").create_function(FunctionName="f", Runtime="python3.12", Role="arn:aws:iam::123456789012:role/r1", Handler="app.h", Code={"ZipFile": buf.getvalue()}),
                                       c("lambda").invoke(FunctionName="f", Payload=b"{}")))
sm_def = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
check("stepfunctions create/start", lambda: c("stepfunctions").start_execution(stateMachineArn=c("stepfunctions").create_state_machine(name="sm", definition=sm_def, roleArn="arn:aws:iam::123456789012:role/r1")["stateMachineArn"]))
check("sts get_caller_identity", lambda: print("   identity:", c("sts").get_caller_identity()["Arn"]))
check("sts assume_role(lambda-trust role) over HTTP", lambda: c("sts").assume_role(RoleArn="arn:aws:iam::123456789012:role/r1", RoleSessionName="sess"))
for k, v in results.items():
    print(f"  {k:45s} {v}")
moto_api(ep, "reset-auth", b"inf")
server.stop()
