"""Q6: sts:AssumeRole over HTTP and trust policies; admin via attached AdministratorAccess.

usage: p6c_assume_role.py [fixed]
"""
import json, sys
from common import *
if "fixed" in sys.argv:
    import enforcement_fixes
    enforcement_fixes.apply()
server, ep = start()
moto_api(ep, "reset", {})
moto_api(ep, "reset-auth", b"5")
iam0 = client("iam")
iam0.create_user(UserName="admin2")
iam0.attach_user_policy(UserName="admin2", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")  # needs MOTO_IAM_LOAD_MANAGED_POLICIES=true
k = iam0.create_access_key(UserName="admin2")["AccessKey"]
admin = {"AccessKeyId": k["AccessKeyId"], "SecretAccessKey": k["SecretAccessKey"]}
svc_trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
iam0.create_role(RoleName="svc-role", AssumeRolePolicyDocument=svc_trust)  # request 4
# request 5: AssumeRole of a Service-trust role while the allowance lasts: no check at all
during = client("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/svc-role", RoleSessionName="during-allowance")["Credentials"]
print("AssumeRole during allowance (Service trust, anonymous key):", during["AccessKeyId"][:4], "...")
a = lambda s: client(s, admin)
print("AdministratorAccess admin: s3 create_bucket", err(a("s3").create_bucket, Bucket="bucket-two"), "iam list_roles", err(a("iam").list_roles))
user_arn = a("sts").get_caller_identity()["Arn"]
for name, principal in [("user-trust", {"AWS": user_arn}), ("root-trust", {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}),
                        ("star-trust", {"AWS": "*"}), ("mixed-trust", {"AWS": user_arn, "Service": "glue.amazonaws.com"})]:
    a("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]}))
for name in ("svc-role", "user-trust", "root-trust", "star-trust", "mixed-trust"):
    print(f"  admin AssumeRole {name:12s}", str(err(a("sts").assume_role, RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{name}", RoleSessionName="sess"))[:170])
# temporary credentials from an HTTP AssumeRole work like the in-process ones
creds = a("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/user-trust", RoleSessionName="sess")["Credentials"]
print("  assumed identity:", client("sts", creds).get_caller_identity()["Arn"], "| s3 list (no policy):", str(err(client("s3", creds).list_buckets))[:60])
moto_api(ep, "reset-auth", b"inf")
server.stop()
