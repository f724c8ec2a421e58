"""Cost of enforcement per request (S3 GetObject and Glue GetTable, role with inline + 2 managed policies)."""
import json, time
from common import *
import enforcement_fixes
enforcement_fixes.apply()
server, ep = start()
moto_api(ep, "reset", {}); moto_api(ep, "reset-auth", b"3")
admin = make_admin(); a = lambda s: client(s, admin)
a("s3").create_bucket(Bucket="bench-bucket"); a("s3").put_object(Bucket="bench-bucket", Key="k", Body=b"x")
a("glue").create_database(DatabaseInput={"Name": "db"}); a("glue").create_table(DatabaseName="db", TableInput={"Name": "t"})
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
arn = a("iam").create_role(RoleName="r", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
a("iam").put_role_policy(RoleName="r", PolicyName="p", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::bench-bucket/*"},
    {"Effect": "Allow", "Action": ["glue:GetTable"], "Resource": "*"}]}))
a("iam").attach_role_policy(RoleName="r", PolicyArn="arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess")
r = role_credentials(arn)
def bench(label):
    s3, gl = client("s3", r), client("glue", r)
    t = time.perf_counter()
    for _ in range(200):
        s3.get_object(Bucket="bench-bucket", Key="k")["Body"].read(); gl.get_table(DatabaseName="db", Name="t")
    print(f"{label}: {(time.perf_counter() - t) / 400 * 1000:.2f} ms/request")
bench("enforced")
moto_api(ep, "reset-auth", b"inf")
bench("not enforced")
server.stop()
