"""Q1: INITIAL_NO_AUTH_ACTION_COUNT is read per request from moto.settings; /moto-api/reset does not reset the counter."""
from common import *
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin as A

server, ep = start()
print("at import: settings.INITIAL_NO_AUTH_ACTION_COUNT =", settings.INITIAL_NO_AUTH_ACTION_COUNT, "request_count =", A.request_count)
s3 = client("s3")
s3.list_buckets(); s3.list_buckets()
print("after 2 unsigned-ish calls with inf: request_count =", A.request_count, "(counts even when enforcement is off)")

# A. patch the module attribute in-process
settings.INITIAL_NO_AUTH_ACTION_COUNT = A.request_count + 1
print("A patched to request_count+1; next call:", err(s3.list_buckets), "then:", err(s3.list_buckets))

# /moto-api/reset does not touch the counter or the limit
before = A.request_count
moto_api(ep, "reset", {})
print("after /moto-api/reset: request_count", before, "->", A.request_count, "limit", settings.INITIAL_NO_AUTH_ACTION_COUNT,
      "call:", err(s3.list_buckets))

# B. /moto-api/reset-auth: body is the number; sets limit and zeroes the counter
print("reset-auth inf ->", moto_api(ep, "reset-auth", b"inf"), "count", A.request_count, "call:", err(s3.list_buckets))
print("reset-auth 2 ->", moto_api(ep, "reset-auth", b"2"), "count", A.request_count)
print(" call1", err(s3.list_buckets), "call2", err(s3.list_buckets), "call3", err(s3.list_buckets), "count", A.request_count)

# moto-api requests themselves are not counted / not blocked while enforcing
for i in range(3):
    moto_api(ep, "config", {"stepfunctions": {"execute_state_machine": True}})
r = moto_api(ep, "reset", {})
print("Q5: /moto-api/config x3 + reset under enforcement:", r, "count still", A.request_count)
import urllib.request
print("Q5: /moto-api/data.json GET status:", urllib.request.urlopen(ep + "/moto-api/data.json").status)
# reset-auth 0 => enforce immediately
moto_api(ep, "reset-auth", b"0")
print("reset-auth 0: call:", err(s3.list_buckets), "; iam call:", err(client("iam").list_users))
moto_api(ep, "reset-auth", b"inf")
server.stop()

# Setting the environment variable after moto is imported changes nothing (settings.py:16-18 read it at import)
server, ep = start()
moto_api(ep, "reset-auth", b"inf")
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
print("env INITIAL_NO_AUTH_ACTION_COUNT=0 after import: limit", settings.INITIAL_NO_AUTH_ACTION_COUNT, "call:", err(client("s3").list_buckets))
# An unsigned request (no Authorization header) under enforcement
moto_api(ep, "reset-auth", b"0")
import urllib.request, urllib.error
try:
    urllib.request.urlopen(ep + "/?Action=ListTopics", data=b"Action=ListTopics")
except urllib.error.HTTPError as e:
    print("unsigned POST under enforcement: HTTP", e.code)
moto_api(ep, "reset-auth", b"inf")
server.stop()
