"""Q3: the interpreter signs with "ak"/"sk"; under enforcement its SNS publish fails; patched, it runs as roleArn."""
import json, sys, time
from common import *
from moto.iam.models import iam_backends
import sfn_credentials
if 'fixed' in sys.argv:
    import enforcement_fixes
    enforcement_fixes.apply()

server, ep = start()
moto_api(ep, "reset", {})
moto_api(ep, "config", {"stepfunctions": {"execute_state_machine": True}})
moto_api(ep, "reset-auth", b"3")
admin = make_admin()
c = lambda s: client(s, admin)
topic = c("sns").create_topic(Name="done")["TopicArn"]
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}]})

def role(name, statements):
    arn = c("iam").create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    if statements:
        c("iam").put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}))
    return arn

roles = {
    "publish-star": role("sm-star", [{"Effect": "Allow", "Action": "sns:Publish", "Resource": "*"}]),
    "publish-topic-arn": role("sm-arn", [{"Effect": "Allow", "Action": "sns:Publish", "Resource": topic}]),
    "no-publish": role("sm-none", [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]),
}
definition = json.dumps({"StartAt": "Notify", "States": {"Notify": {
    "Type": "Task", "Resource": "arn:aws:states:::sns:publish",
    "Parameters": {"TopicArn": topic, "Message": {"hello": "world"}}, "End": True}}})
sfn = c("stepfunctions")

def run(label, role_arn):
    sm = sfn.create_state_machine(name=f"sm-{label}-{time.time_ns()}", definition=definition, roleArn=role_arn)["stateMachineArn"]
    ex = sfn.start_execution(stateMachineArn=sm)["executionArn"]
    for _ in range(100):
        d = sfn.describe_execution(executionArn=ex)
        if d["status"] != "RUNNING":
            break
        time.sleep(0.1)
    print(f"  {label:20s} {d['status']:10s} error={d.get('error')} cause={(d.get('cause') or '')[:230]}")

print("unpatched (interpreter signs with ak/sk):")
run("publish-star", roles["publish-star"])
sfn_credentials.install(sfn_credentials.RoleCredentials())
print("patched (interpreter signs with assume-role credentials of roleArn):")
for label, arn in roles.items():
    run(label, arn)
from moto.sns.models import sns_backends
print("  messages sent to the topic:", len(sns_backends[ACCOUNT][REGION].topics[topic].sent_notifications))
moto_api(ep, "reset-auth", b"inf")
server.stop()
