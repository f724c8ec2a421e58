"""Q4: S3 -> EventBridge -> SQS and SNS -> SQS deliveries under enforcement (they are in-process backend calls)."""
import json, time
from common import *
import enforcement_fixes
enforcement_fixes.apply()
server, ep = start()
moto_api(ep, "reset", {})
moto_api(ep, "reset-auth", b"3")
admin = make_admin()
a = lambda s: client(s, admin)
a("s3").create_bucket(Bucket="raw-bucket")
a("s3").put_bucket_notification_configuration(Bucket="raw-bucket", NotificationConfiguration={"EventBridgeConfiguration": {}})
q = a("sqs").create_queue(QueueName="events")["QueueUrl"]
qarn = a("sqs").get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
a("events").put_rule(Name="r", EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"]}))
a("events").put_targets(Rule="r", Targets=[{"Id": "q", "Arn": qarn}])
q2 = a("sqs").create_queue(QueueName="mail")["QueueUrl"]
q2arn = a("sqs").get_queue_attributes(QueueUrl=q2, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
topic = a("sns").create_topic(Name="t")["TopicArn"]
a("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q2arn)
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
role = a("iam").create_role(RoleName="writer", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
# the writer may put objects and publish, nothing on events or sqs
a("iam").put_role_policy(RoleName="writer", PolicyName="p", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::raw-bucket/incoming/*"},
    {"Effect": "Allow", "Action": "sns:Publish", "Resource": topic}]}))
w = role_credentials(role)
print("writer PutObject:", err(client("s3", w).put_object, Bucket="raw-bucket", Key="incoming/a.csv", Body=b"x"))
print("writer Publish:", err(client("sns", w).publish, TopicArn=topic, Message="hello"))
print("writer ReceiveMessage (not granted):", err(client("sqs", w).receive_message, QueueUrl=q)[:2])
msgs = a("sqs").receive_message(QueueUrl=q, WaitTimeSeconds=1).get("Messages", [])
print("EventBridge -> SQS delivered:", [json.loads(m["Body"])["detail"]["object"]["key"] for m in msgs])
msgs2 = a("sqs").receive_message(QueueUrl=q2, WaitTimeSeconds=1).get("Messages", [])
print("SNS -> SQS delivered:", [json.loads(m["Body"])["Message"] for m in msgs2])
moto_api(ep, "reset-auth", b"inf")
server.stop()
