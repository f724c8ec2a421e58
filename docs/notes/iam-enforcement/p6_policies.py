"""Q6: role credentials against SAM-style inline + managed policies, per service.

usage: p6_policies.py raw|project|fixed
  raw      moto 5.2.5 as installed
  project  + /work/main's apply_moto_fixes() (its condition patch included)
  fixed    + project fixes + enforcement_fixes.apply()
"""
import io, json, sys, zipfile
from common import *

mode = sys.argv[1] if len(sys.argv) > 1 else "raw"
if mode in ("project", "fixed"):
    sys.path.insert(0, "/work/main/local")
    from cdnow_offline.moto_defects import apply_moto_fixes
    apply_moto_fixes()
if mode == "fixed":
    import enforcement_fixes
    enforcement_fixes.apply()

server, ep = start()
moto_api(ep, "reset", {})
moto_api(ep, "config", {"lambda": {"use_docker": False}})
moto_api(ep, "reset-auth", b"3")
admin = make_admin()
a = lambda s: client(s, admin)
A = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:"
kms_key = a("kms").create_key()["KeyMetadata"]["Arn"]
s3a = a("s3")
for b in ("raw-bucket", "curated-bucket"):
    s3a.create_bucket(Bucket=b)
s3a.put_bucket_encryption(Bucket="raw-bucket", ServerSideEncryptionConfiguration={"Rules": [
    {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key}}]})
if mode != "raw":  # unpatched, this Deny (Bool aws:SecureTransport) denies every object request
  s3a.put_bucket_policy(Bucket="curated-bucket", Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
    "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
    "Resource": ["arn:aws:s3:::curated-bucket", "arn:aws:s3:::curated-bucket/*"],
    "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}))
for k in ("incoming/a.csv", "other/b.csv"):
    s3a.put_object(Bucket="raw-bucket", Key=k, Body=b"x")
print("admin put into SSE-KMS bucket -> ServerSideEncryption:", s3a.head_object(Bucket="raw-bucket", Key="incoming/a.csv").get("ServerSideEncryption"))
s3a.put_object(Bucket="curated-bucket", Key="tables/t/x", Body=b"x")
glue = a("glue")
for db in ("db", "otherdb"):
    glue.create_database(DatabaseInput={"Name": db})
glue.create_table(DatabaseName="db", TableInput={"Name": "runs", "PartitionKeys": [{"Name": "run_id", "Type": "string"}]})
topic = a("sns").create_topic(Name="done")["TopicArn"]
other_topic = a("sns").create_topic(Name="other")["TopicArn"]
trust = lambda svc: json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": svc}, "Action": "sts:AssumeRole"}]})
role_arn = a("iam").create_role(RoleName="fn-role", AssumeRolePolicyDocument=trust("lambda.amazonaws.com"))["Role"]["Arn"]
sm_def = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
sm = a("stepfunctions").create_state_machine(name="sm", definition=sm_def, roleArn=role_arn)["stateMachineArn"]
buf = io.BytesIO(); zipfile.ZipFile(buf, "w").writestr("app.py", "def h(e,c): return 1")
fn = a("lambda").create_function(FunctionName="fn", Runtime="python3.12", Role=role_arn, Handler="app.h", Code={"ZipFile": buf.getvalue()})["FunctionArn"]
a("logs").create_log_group(logGroupName="/aws/lambda/fn")
log_arn = A.format("logs") + "log-group:/aws/lambda/fn:*"
inline = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::raw-bucket/incoming/*"},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": "arn:aws:s3:::curated-bucket/runs/*"},
    {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::raw-bucket"]},
    {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": "arn:aws:s3:::raw-bucket/landing/*"},
    {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::curated-bucket", "Condition": {"StringLike": {"s3:prefix": ["tables/*"]}}},
    {"Effect": "Allow", "Action": ["glue:GetDatabase", "glue:GetTable", "glue:CreateTable", "glue:UpdateTable",
                                   "glue:BatchCreatePartition", "glue:GetPartitions"],
     "Resource": [A.format("glue") + "catalog", A.format("glue") + "database/db", A.format("glue") + "table/db/*"]},
    {"Effect": "Allow", "Action": "sns:Publish", "Resource": topic},
    {"Effect": "Allow", "Action": "states:StartExecution", "Resource": sm},
    {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": fn},
    {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
]}
a("iam").put_role_policy(RoleName="fn-role", PolicyName="inline", PolicyDocument=json.dumps(inline))
a("iam").attach_role_policy(RoleName="fn-role", PolicyArn="arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess")
customer = a("iam").create_policy(PolicyName="logs", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["logs:CreateLogStream"], "Resource": log_arn}]}))["Policy"]["Arn"]
a("iam").attach_role_policy(RoleName="fn-role", PolicyArn=customer)

creds = role_credentials(role_arn)
r = lambda s: client(s, creds)
s3 = r("s3")
big = io.BytesIO(b"0" * (9 * 1024 * 1024))
def copy(src):
    return lambda: s3.copy_object(Bucket="curated-bucket", Key="runs/copy", CopySource={"Bucket": "raw-bucket", "Key": src})
def delete_objects():
    s3a.put_object(Bucket="curated-bucket", Key="runs/d1", Body=b"x")
    resp = s3.delete_objects(Bucket="curated-bucket", Delete={"Objects": [{"Key": "runs/d1"}, {"Key": "tables/t/x"}]})
    got = {"Deleted": [d["Key"] for d in resp.get("Deleted", [])], "Errors": [e["Key"] for e in resp.get("Errors", [])]}
    print("      delete_objects ->", got)
    if got != {"Deleted": ["runs/d1"], "Errors": ["tables/t/x"]}:
        raise AssertionError(got)
gl = r("glue")
col = {"StorageDescriptor": {"Columns": [{"Name": "c", "Type": "string"}]}}
cases = [  # (what, expected on AWS, call)
    ("s3 GetObject raw/incoming/a.csv (SSE-KMS, no kms:Decrypt)", "DENY", lambda: s3.get_object(Bucket="raw-bucket", Key="incoming/a.csv")),
    ("s3 GetObject raw/other/b.csv", "DENY", lambda: s3.get_object(Bucket="raw-bucket", Key="other/b.csv")),
    ("s3 HeadObject raw/incoming/a.csv (SSE-KMS, no kms:Decrypt)", "DENY", lambda: s3.head_object(Bucket="raw-bucket", Key="incoming/a.csv")),
    ("s3 ListObjectsV2 raw", "ALLOW", lambda: s3.list_objects_v2(Bucket="raw-bucket", Prefix="incoming/")),
    ("s3 ListObjectsV2 curated prefix=tables/ (conditional allow)", "ALLOW", lambda: s3.list_objects_v2(Bucket="curated-bucket", Prefix="tables/")),
    ("s3 ListObjectsV2 curated prefix=runs/ (outside condition)", "DENY", lambda: s3.list_objects_v2(Bucket="curated-bucket", Prefix="runs/")),
    ("s3 PutObject curated/runs/x (bucket policy Deny non-TLS)", "ALLOW", lambda: s3.put_object(Bucket="curated-bucket", Key="runs/x", Body=b"x")),
    ("s3 GetObject curated/runs/x", "ALLOW", lambda: s3.get_object(Bucket="curated-bucket", Key="runs/x")),
    ("s3 PutObject curated/tables/y", "DENY", lambda: s3.put_object(Bucket="curated-bucket", Key="tables/y", Body=b"x")),
    ("s3 PutObject raw/incoming/z (SSE-KMS bucket, no kms:GenerateDataKey, no s3:PutObject)", "DENY", lambda: s3.put_object(Bucket="raw-bucket", Key="incoming/z", Body=b"x")),
    ("s3 PutObject raw/landing/z (SSE-KMS bucket, s3:PutObject but no kms:GenerateDataKey)", "DENY", lambda: s3.put_object(Bucket="raw-bucket", Key="landing/z", Body=b"x")),
    ("s3 upload_file 9 MiB curated/runs/big (multipart)", "ALLOW", lambda: s3.upload_fileobj(big, "curated-bucket", "runs/big")),
    ("s3 CopyObject raw/incoming/a.csv -> curated/runs/copy", "DENY (kms:Decrypt)", copy("incoming/a.csv")),
    ("s3 CopyObject raw/other/b.csv -> curated/runs/copy (no GetObject on source)", "DENY", copy("other/b.csv")),
    ("s3 DeleteObject curated/runs/x", "ALLOW", lambda: s3.delete_object(Bucket="curated-bucket", Key="runs/x")),
    ("s3 DeleteObjects [runs/d1 allowed, tables/t/x not]", "PER-KEY", delete_objects),
    ("glue GetDatabase db", "ALLOW", lambda: gl.get_database(Name="db")),
    ("glue GetTable db.runs", "ALLOW", lambda: gl.get_table(DatabaseName="db", Name="runs")),
    ("glue CreateTable db.t2", "ALLOW", lambda: gl.create_table(DatabaseName="db", TableInput={"Name": "t2", **col})),
    ("glue UpdateTable db.t2", "ALLOW", lambda: gl.update_table(DatabaseName="db", TableInput={"Name": "t2", **col})),
    ("glue BatchCreatePartition db.runs", "ALLOW", lambda: gl.batch_create_partition(DatabaseName="db", TableName="runs", PartitionInputList=[{"Values": ["r1"], **col}])),
    ("glue GetPartitions db.runs", "ALLOW", lambda: gl.get_partitions(DatabaseName="db", TableName="runs")),
    ("glue GetDatabase otherdb (resource not granted)", "DENY", lambda: gl.get_database(Name="otherdb")),
    ("glue DeleteTable db.t2 (action not granted)", "DENY", lambda: gl.delete_table(DatabaseName="db", Name="t2")),
    ("sns Publish granted topic ARN", "ALLOW", lambda: r("sns").publish(TopicArn=topic, Message="m")),
    ("sns Publish other topic", "DENY", lambda: r("sns").publish(TopicArn=other_topic, Message="m")),
    ("states StartExecution granted ARN", "ALLOW", lambda: r("stepfunctions").start_execution(stateMachineArn=sm)),
    ("states ListExecutions (not granted)", "DENY", lambda: r("stepfunctions").list_executions(stateMachineArn=sm)),
    ("lambda Invoke (lambda:InvokeFunction on fn ARN)", "ALLOW", lambda: r("lambda").invoke(FunctionName="fn", Payload=b"{}")),
    ("lambda GetFunction (not granted)", "DENY", lambda: r("lambda").get_function(FunctionName="fn")),
    ("xray PutTraceSegments (AWS managed AWSXrayWriteOnlyAccess)", "ALLOW", lambda: r("xray").put_trace_segments(TraceSegmentDocuments=[])),
    ("logs CreateLogStream (customer managed, log-group ARN)", "ALLOW", lambda: r("logs").create_log_stream(logGroupName="/aws/lambda/fn", logStreamName="s")),
    ("logs PutLogEvents (not granted)", "DENY", lambda: r("logs").put_log_events(logGroupName="/aws/lambda/fn", logStreamName="s", logEvents=[{"timestamp": 1, "message": "m"}])),
    ("cloudwatch PutMetricData (granted)", "ALLOW", lambda: r("cloudwatch").put_metric_data(Namespace="n", MetricData=[{"MetricName": "m", "Value": 1.0}])),
    ("kms GenerateDataKey (not granted)", "DENY", lambda: r("kms").generate_data_key(KeyId=kms_key, KeySpec="AES_256")),
]
print(f"mode={mode}")
for what, expected, fn_ in cases:
    res = err(fn_)
    got = "ALLOW" if res == "OK" else "DENY"
    print(f"  {what:86s} AWS={expected:18s} moto={got:5s} {'' if res == 'OK' else str(res)[:150]}")
moto_api(ep, "reset-auth", b"inf")
server.stop()
