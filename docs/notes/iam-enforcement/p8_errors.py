"""Q8: what a denied action looks like through boto3, per service (a role with no permissions)."""
import io, json, zipfile
from common import *
from botocore.exceptions import ClientError
import sys
if 'fixed' in sys.argv:
    import enforcement_fixes
    enforcement_fixes.apply()

server, ep = start()
moto_api(ep, "reset", {})
moto_api(ep, "reset-auth", b"3")
admin = make_admin()
a = lambda s: client(s, admin)
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
role = a("iam").create_role(RoleName="nothing", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
a("iam").put_role_policy(RoleName="nothing", PolicyName="p", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"}]}))
a("s3").create_bucket(Bucket="bucket-one"); a("s3").put_object(Bucket="bucket-one", Key="k", Body=b"x")
a("glue").create_database(DatabaseInput={"Name": "db"})
topic = a("sns").create_topic(Name="t")["TopicArn"]
buf = io.BytesIO(); zipfile.ZipFile(buf, "w").writestr("app.py", "def h(e,c): return 1")
a("lambda").create_function(FunctionName="f", Runtime="python3.12", Role=role, Handler="app.h", Code={"ZipFile": buf.getvalue()})
q = a("sqs").create_queue(QueueName="q")["QueueUrl"]
key = a("kms").create_key()["KeyMetadata"]["KeyId"]
sm = a("stepfunctions").create_state_machine(name="sm", definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}), roleArn=role)["stateMachineArn"]

creds = role_credentials(role)
r = lambda s: client(s, creds)
calls = {
    "s3 GetObject": lambda: r("s3").get_object(Bucket="bucket-one", Key="k"),
    "s3 HeadObject": lambda: r("s3").head_object(Bucket="bucket-one", Key="k"),
    "s3 PutObject": lambda: r("s3").put_object(Bucket="bucket-one", Key="k2", Body=b"x"),
    "s3 ListObjectsV2": lambda: r("s3").list_objects_v2(Bucket="bucket-one"),
    "glue GetDatabase": lambda: r("glue").get_database(Name="db"),
    "sns Publish": lambda: r("sns").publish(TopicArn=topic, Message="m"),
    "lambda Invoke": lambda: r("lambda").invoke(FunctionName="f", Payload=b"{}"),
    "sqs SendMessage": lambda: r("sqs").send_message(QueueUrl=q, MessageBody="m"),
    "kms GenerateDataKey": lambda: r("kms").generate_data_key(KeyId=key, KeySpec="AES_256"),
    "states StartExecution": lambda: r("stepfunctions").start_execution(stateMachineArn=sm),
    "logs CreateLogGroup": lambda: r("logs").create_log_group(logGroupName="/x"),
    "events PutEvents": lambda: r("events").put_events(Entries=[{"Source": "x", "DetailType": "d", "Detail": "{}"}]),
    "iam ListRoles": lambda: r("iam").list_roles(),
    "sts GetCallerIdentity (always allowed)": lambda: print("   ", r("sts").get_caller_identity()["Arn"]),
}
for name, fn in calls.items():
    try:
        fn(); print(f"{name:40s} OK")
    except ClientError as e:
        md = e.response["ResponseMetadata"]
        print(f"{name:40s} {md['HTTPStatusCode']} code={e.response['Error'].get('Code')!r} msg={e.response['Error'].get('Message')!r} RequestId={'RequestId' in md}")
        print(f"{'':40s} str(e)= {str(e)[:200]}")
moto_api(ep, "reset-auth", b"inf")
server.stop()
