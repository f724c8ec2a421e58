"""A Glue-like script on a thread, calling boto3.client("s3") at module level, runs as the job role."""
import json, threading
from common import *
import enforcement_fixes, thread_sessions
enforcement_fixes.apply()
server, ep = start()
moto_api(ep, "reset", {})
moto_api(ep, "reset-auth", b"3")
admin = make_admin()
# the emulator's own default credentials become the admin's
os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = admin["AccessKeyId"], admin["SecretAccessKey"]
sessions = thread_sessions.install()
boto3.client("s3").create_bucket(Bucket="curated-bucket")
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "glue.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
job_role = boto3.client("iam").create_role(RoleName="job", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
boto3.client("iam").put_role_policy(RoleName="job", PolicyName="p", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::curated-bucket/runs/*"}]}))

def script():  # what glue/cdnow_transform.py does: boto3.client("s3").put_object(...)
    s3 = boto3.client("s3")
    print("  job thread identity:", boto3.client("sts").get_caller_identity()["Arn"])
    print("  job put runs/summary.json:", err(s3.put_object, Bucket="curated-bucket", Key="runs/summary.json", Body=b"{}"))
    print("  job put tables/x:", str(err(s3.put_object, Bucket="curated-bucket", Key="tables/x", Body=b"{}"))[:160])

def run_job():
    with sessions.as_credentials(role_credentials(job_role, "glue-job"), REGION):
        script()
t = threading.Thread(target=run_job); t.start(); t.join()
print("main thread identity:", boto3.client("sts").get_caller_identity()["Arn"])
moto_api(ep, "reset-auth", b"inf")
server.stop()
