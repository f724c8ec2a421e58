"""Q3 with the fixes: SNS/Lambda/Glue tasks run as the state machine role; denials name the action.

usage: p3b_sfn_fixed.py [nofix]   (nofix: only the interpreter-credentials patch, no enforcement_fixes)
"""
import io, json, sys, time, zipfile
from common import *
import sfn_credentials

if "nofix" not in sys.argv:
    import enforcement_fixes
    enforcement_fixes.apply()
server, ep = start()
moto_api(ep, "reset", {})
moto_api(ep, "config", {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}})
moto_api(ep, "reset-auth", b"3")
admin = make_admin()
sfn_credentials.install(sfn_credentials.RoleCredentials())
c = lambda s: client(s, admin)

# Lambda runs in-process and answers {"ok": true}: patch LambdaSimpleBackend.invoke as lambda_runner.py does
from moto.awslambda_simple.models import LambdaSimpleBackend
LambdaSimpleBackend.invoke = lambda self, *a, **k: b'{"ok": true}'

topic = c("sns").create_topic(Name="done")["TopicArn"]
trust = lambda svc: json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": svc}, "Action": "sts:AssumeRole"}]})
fn_role = c("iam").create_role(RoleName="fn", AssumeRolePolicyDocument=trust("lambda.amazonaws.com"))["Role"]["Arn"]
buf = io.BytesIO(); zipfile.ZipFile(buf, "w").writestr("app.py", "def h(e,c): return 1")
fn = c("lambda").create_function(FunctionName="fn", Runtime="python3.12", Role=fn_role, Handler="app.h", Code={"ZipFile": buf.getvalue()})["FunctionArn"]
job_role = c("iam").create_role(RoleName="job", AssumeRolePolicyDocument=trust("glue.amazonaws.com"))["Role"]["Arn"]
c("glue").create_job(Name="job", Role=job_role, Command={"Name": "glueetl", "ScriptLocation": "s3://x/y.py"})

def sm_role(name, actions):
    arn = c("iam").create_role(RoleName=name, AssumeRolePolicyDocument=trust("states.amazonaws.com"))["Role"]["Arn"]
    c("iam").put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["sns:Publish"], "Resource": topic},
        {"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": [fn, fn + ":*"]},
        {"Effect": "Allow", "Action": actions, "Resource": f"arn:aws:glue:{REGION}:{ACCOUNT}:job/job"}]}))
    return arn

definition = json.dumps({"StartAt": "Invoke", "States": {
    "Invoke": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": fn, "Payload": {}}, "Next": "Notify"},
    "Notify": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish", "Parameters": {"TopicArn": topic, "Message": "hi"}, "Next": "Glue"},
    "Glue": {"Type": "Task", "Resource": "arn:aws:states:::glue:startJobRun", "Parameters": {"JobName": "job"}, "End": True}}})
sfn = c("stepfunctions")

def run(label, role_arn):
    sm = sfn.create_state_machine(name=f"sm-{time.time_ns()}", definition=definition, roleArn=role_arn)["stateMachineArn"]
    ex = sfn.start_execution(stateMachineArn=sm)["executionArn"]
    for _ in range(100):
        d = sfn.describe_execution(executionArn=ex)
        if d["status"] != "RUNNING":
            break
        time.sleep(0.1)
    print(f"  {label:28s} {d['status']:10s} error={d.get('error')}\n  {'':28s} cause={(d.get('cause') or '')[:300]}")

run("glue:StartJobRun granted", sm_role("sm-ok", ["glue:StartJobRun"]))
run("glue:StartJobRun missing", sm_role("sm-noglue", ["glue:GetJobRun"]))
moto_api(ep, "reset-auth", b"inf")
server.stop()
