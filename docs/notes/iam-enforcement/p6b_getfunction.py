"""Why GetFunction fails with SignatureDoesNotMatch under enforcement (even as admin)."""
import io, json, zipfile
from common import *
server, ep = start()
moto_api(ep, "reset", {}); moto_api(ep, "reset-auth", b"3")
admin = make_admin(); a = lambda s: client(s, admin)
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
role = a("iam").create_role(RoleName="r", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
buf = io.BytesIO(); zipfile.ZipFile(buf, "w").writestr("app.py", "def h(e,c): return 1")
a("lambda").create_function(FunctionName="fn", Runtime="python3.12", Role=role, Handler="app.h", Code={"ZipFile": buf.getvalue()})
lam = a("lambda")
seen = []
lam.meta.events.register("before-send.lambda.*", lambda request, **kw: seen.append((request.method, request.url)))
for name, call in [("GetFunction", lambda: lam.get_function(FunctionName="fn")),
                   ("GetFunctionConfiguration", lambda: lam.get_function_configuration(FunctionName="fn")),
                   ("ListFunctions", lambda: lam.list_functions()),
                   ("Invoke", lambda: lam.invoke(FunctionName="fn", Payload=b"{}")),
                   ("ListTags", lambda: lam.list_tags(Resource=a("lambda").get_function_configuration(FunctionName="fn")["FunctionArn"]) if False else None)]:
    print(f"{name:26s}", err(call), seen[-1] if seen else "")
moto_api(ep, "reset-auth", b"inf")
print("auth off: GetFunction", err(lambda: lam.get_function(FunctionName="fn")))
server.stop()
