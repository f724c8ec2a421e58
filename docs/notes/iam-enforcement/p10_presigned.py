"""Presigned S3 GET (query-string SigV4, no Authorization header) under enforcement."""
import json, urllib.request, urllib.error
from botocore.config import Config
from common import *
import sys
if "fixed" in sys.argv:
    import enforcement_fixes; enforcement_fixes.apply()
server, ep = start()
moto_api(ep, "reset", {}); moto_api(ep, "reset-auth", b"3")
admin = make_admin()
s3 = client("s3", admin, )
s3.create_bucket(Bucket="curated-bucket"); s3.put_object(Bucket="curated-bucket", Key="report.html", Body=b"<html/>")
url = boto3.client("s3", region_name=REGION, config=Config(signature_version="s3v4"), aws_access_key_id=admin["AccessKeyId"], aws_secret_access_key=admin["SecretAccessKey"]).generate_presigned_url("get_object", Params={"Bucket": "curated-bucket", "Key": "report.html"}, ExpiresIn=60)
try:
    print("presigned GET:", urllib.request.urlopen(url).status)
except urllib.error.HTTPError as e:
    print("presigned GET: HTTP", e.code, e.read()[:200])
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
arn = client("iam", admin).create_role(RoleName="publisher", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
client("iam", admin).put_role_policy(RoleName="publisher", PolicyName="p", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::curated-bucket/report.html"}]}))
role = client("s3", role_credentials(arn), )
role = boto3.client("s3", region_name=REGION, config=Config(signature_version="s3v4"), aws_access_key_id=role._request_signer._credentials.access_key, aws_secret_access_key=role._request_signer._credentials.secret_key, aws_session_token=role._request_signer._credentials.token)  # as cdnow.storage.presign_get
print("url:", role.generate_presigned_url("get_object", Params={"Bucket": "curated-bucket", "Key": "x"})[:200])
for key in ("report.html", "secret.html"):
    s3.put_object(Bucket="curated-bucket", Key=key, Body=b"<html/>")
    u = role.generate_presigned_url("get_object", Params={"Bucket": "curated-bucket", "Key": key}, ExpiresIn=60)
    try:
        print(f"role-presigned GET {key}:", urllib.request.urlopen(u).status)
    except urllib.error.HTTPError as e:
        print(f"role-presigned GET {key}: HTTP", e.code, e.read()[:250])
try:
    urllib.request.urlopen(ep + "/curated-bucket/report.html")
except urllib.error.HTTPError as e:
    print("anonymous GET: HTTP", e.code, e.read()[:250])
moto_api(ep, "reset-auth", b"inf")
server.stop()
