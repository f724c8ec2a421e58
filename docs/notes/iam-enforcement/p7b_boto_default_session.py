"""Q7 corollary: in-process handlers cannot get their own credentials through a per-thread os.environ:
boto3's default session resolves credentials once and caches them (botocore Session._credentials)."""
import os, sys, threading
sys.path.insert(0, "/work/main/local")
from cdnow_offline.lambda_runner import thread_local_environ
import boto3
env = thread_local_environ()
os.environ["AWS_ACCESS_KEY_ID"] = "AKIABASEBASEBASEBASE"; os.environ["AWS_SECRET_ACCESS_KEY"] = "base"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
print("main thread client key:", boto3.client("s3").meta.events and boto3.client("s3")._request_signer._credentials.access_key)
def handler():
    env.enter({"AWS_ACCESS_KEY_ID": "ASIAROLEROLEROLEROLE", "AWS_SECRET_ACCESS_KEY": "role", "AWS_SESSION_TOKEN": "tok"})
    try:
        print("handler thread sees env key:", os.environ["AWS_ACCESS_KEY_ID"])
        print("handler thread boto3.client key:", boto3.client("s3")._request_signer._credentials.access_key)
        print("handler thread boto3.Session().client key:", boto3.Session().client("s3")._request_signer._credentials.access_key)
    finally:
        env.leave()
t = threading.Thread(target=handler); t.start(); t.join()
