"""Q7: concurrent requests signed with different role keys are authorized each by its own key."""
import json, threading
from concurrent.futures import ThreadPoolExecutor
from common import *
import enforcement_fixes
enforcement_fixes.apply()
server, ep = start()
moto_api(ep, "reset", {})
moto_api(ep, "reset-auth", b"3")
admin = make_admin()
a = lambda s: client(s, admin)
a("s3").create_bucket(Bucket="shared-bucket")
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
creds = {}
for i in range(8):
    a("iam").create_role(RoleName=f"r{i}", AssumeRolePolicyDocument=trust)
    a("iam").put_role_policy(RoleName=f"r{i}", PolicyName="p", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::shared-bucket/r{i}/*"}]}))
    creds[i] = role_credentials(f"arn:aws:iam::{ACCOUNT}:role/r{i}")

def worker(i):
    s3 = client("s3", creds[i])
    bad = []
    for n in range(25):
        mine = err(s3.put_object, Bucket="shared-bucket", Key=f"r{i}/{n}", Body=b"x")
        other = err(s3.put_object, Bucket="shared-bucket", Key=f"r{(i + 1) % 8}/{n}", Body=b"x")
        if mine != "OK" or other == "OK" or f"assumed-role/r{i}/" not in other[2]:
            bad.append((mine, other))
    return i, bad

with ThreadPoolExecutor(8) as pool:
    results = list(pool.map(worker, range(8)))
print("requests:", 8 * 25 * 2, "wrong outcomes:", sum(len(b) for _, b in results), [b[:1] for _, b in results if b])
print("server threads seen:", threading.active_count())
moto_api(ep, "reset-auth", b"inf")
server.stop()
