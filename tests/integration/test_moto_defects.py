"""Each moto defect worked around in local/cdnow_offline/moto_defects.py: shown on the pinned moto
as it is, and gone with the workaround. Each case runs in a fresh interpreter, because the
workarounds patch moto for the whole process. If a moto upgrade fixes or moves a defect, the
"defect" half fails here and the workaround can go."""

import json
import subprocess
import sys
import textwrap

import pytest

PRELUDE = textwrap.dedent('''
    import json, os, sys, time
    os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3
    from moto import mock_aws
    if sys.argv[1] == "fixed":
        from cdnow_offline.moto_defects import apply_moto_fixes
        apply_moto_fixes()
    ROLE = "arn:aws:iam::123456789012:role/sfn"

    def execute(definition, timeout=30):
        sfn = boto3.client("stepfunctions")
        machine = sfn.create_state_machine(name="m", definition=json.dumps(definition), roleArn=ROLE)
        arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"])["executionArn"]
        deadline = time.monotonic() + timeout
        while (e := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        print(json.dumps({"status": e["status"], "error": e.get("error"), "cause": e.get("cause")}))
''')

GLUE_SYNC = PRELUDE + textwrap.dedent('''
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        boto3.client("glue").create_job(Name="job", Role=ROLE, Command={"Name": "glueetl", "ScriptLocation": "s3://b/k.py"})
        execute({"StartAt": "T", "States": {"T": {"Type": "Task",
            "Resource": "arn:aws:states:::glue:startJobRun.sync", "Parameters": {"JobName": "job"},
            "ResultSelector": {"state.$": "$.JobRunState"}, "End": True}}})
''')

PARALLEL_STATES_ERROR = PRELUDE + textwrap.dedent('''
    from moto.glue.models import FakeJob
    original = FakeJob.start_job_run
    def failing_start(job, *args, **kwargs):  # a Glue job run that fails: States.TaskFailed
        run_id = original(job, *args, **kwargs)
        run = job.job_runs[-1]
        run._transitions = []
        run.status = "FAILED"
        return run_id
    FakeJob.start_job_run = failing_start
    from cdnow_offline.moto_defects import glue_sync_has_no_callback_endpoint
    glue_sync_has_no_callback_endpoint()  # only the Parallel defect is under test here
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        boto3.client("glue").create_job(Name="job", Role=ROLE, Command={"Name": "glueetl", "ScriptLocation": "s3://b/k.py"})
        execute({"StartAt": "P", "States": {
            "P": {"Type": "Parallel", "Branches": [{"StartAt": "T", "States": {"T": {"Type": "Task",
                "Resource": "arn:aws:states:::glue:startJobRun.sync", "Parameters": {"JobName": "job"},
                "ResultSelector": {"state.$": "$.JobRunState"}, "End": True}}}],
                "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Caught"}], "End": True},
            "Caught": {"Type": "Pass", "End": True}}})
''')

EVENTBRIDGE_SFN_TARGET = PRELUDE + textwrap.dedent('''
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn, events, s3 = boto3.client("stepfunctions"), boto3.client("events"), boto3.client("s3")
        machine = sfn.create_state_machine(name="m", roleArn=ROLE,
            definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
        s3.create_bucket(Bucket="raw")
        s3.put_bucket_notification_configuration(Bucket="raw", NotificationConfiguration={"EventBridgeConfiguration": {}})
        pattern = {"source": ["aws.s3"], "detail-type": ["Object Created"],
                   "detail": {"bucket": {"name": ["raw"]}, "object": {"key": [{"prefix": "incoming/"}]}}}
        events.put_rule(Name="r", EventPattern=json.dumps(pattern))
        if sys.argv[1] == "fixed":
            from cdnow_offline.moto_defects import EventBridgeDropsStepFunctionsTargets
            relay = EventBridgeDropsStepFunctionsTargets(machine, "relay")
            events.put_targets(Rule="r", Targets=[{"Id": "sfn", "Arn": relay.queue_arn}])
        else:
            events.put_targets(Rule="r", Targets=[{"Id": "sfn", "Arn": machine, "RoleArn": ROLE}])
        s3.put_object(Bucket="raw", Key="incoming/a.txt", Body=b"x")
        s3.put_object(Bucket="raw", Key="other/b.txt", Body=b"x")
        if sys.argv[1] == "fixed":
            relay.relay_once()
        executions = sfn.list_executions(stateMachineArn=machine)["executions"]
        inputs = [json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"]) for e in executions]
        print(json.dumps({"keys": [i["detail"]["object"]["key"] for i in inputs]}))
''')

# The raw bucket's Object Created events, through an EventBridge rule, into the SQS queue `queue`.
S3_EVENTS_TO_QUEUE = '''
    with mock_aws():
        sqs, events, s3 = boto3.client("sqs"), boto3.client("events"), boto3.client("s3")
        queue = sqs.create_queue(QueueName="q")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.create_bucket(Bucket="raw")
        s3.put_bucket_notification_configuration(Bucket="raw", NotificationConfiguration={"EventBridgeConfiguration": {}})
        events.put_rule(Name="r", EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"]}))
        events.put_targets(Rule="r", Targets=[{"Id": "q", "Arn": queue_arn}])
'''

S3_EVENT_IDS = PRELUDE + textwrap.dedent(S3_EVENTS_TO_QUEUE + '''
        s3.put_object(Bucket="raw", Key="a.txt", Body=b"x")
        s3.put_object(Bucket="raw", Key="b.txt", Body=b"x")
        received = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]]
        if sys.argv[1] == "fixed":
            from cdnow_offline.moto_defects import s3_events_share_one_id
            received = [s3_events_share_one_id(event) for event in received]
        print(json.dumps({"events": len(received), "ids": len({e["id"] for e in received}),
                          "etag": sorted({k for e in received for k in e["detail"]["object"] if k.lower() == "etag"})}))
''')

MULTIPART_EVENTS = PRELUDE + textwrap.dedent(S3_EVENTS_TO_QUEUE + '''
        upload = s3.create_multipart_upload(Bucket="raw", Key="big.txt")["UploadId"]
        parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket="raw", Key="big.txt", UploadId=upload, PartNumber=n,
                                                          Body=b"x" * (5 * 1024 * 1024))["ETag"]} for n in (1, 2)]
        s3.complete_multipart_upload(Bucket="raw", Key="big.txt", UploadId=upload, MultipartUpload={"Parts": parts})
        s3.put_object(Bucket="raw", Key="small.txt", Body=b"x")
        received = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]]
        print(json.dumps({"events": sorted(e["detail"]["object"]["key"] for e in received)}))
''')

STATUS_CHANGE_EVENTS = PRELUDE + textwrap.dedent('''
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sqs, events = boto3.client("sqs"), boto3.client("events")
        queue = sqs.create_queue(QueueName="q")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="r", EventPattern=json.dumps({"source": ["aws.states"],
                        "detail-type": ["Step Functions Execution Status Change"]}))
        events.put_targets(Rule="r", Targets=[{"Id": "q", "Arn": queue_arn}])
        execute({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
        time.sleep(0.5)
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        print(json.dumps({"statuses": [json.loads(m["Body"])["detail"]["status"] for m in messages]}))
''')

GLUE_STALE_VERSION = PRELUDE + textwrap.dedent('''
    from botocore.exceptions import ClientError
    with mock_aws():
        glue = boto3.client("glue")
        glue.create_database(DatabaseInput={"Name": "d"})
        glue.create_table(DatabaseName="d", TableInput={"Name": "t", "Parameters": {"v": "0"}})
        read = glue.get_table(DatabaseName="d", Name="t")["Table"]["VersionId"]
        outcomes = []
        for writer in ("a", "b"):  # both read the same version, then update
            try:
                glue.update_table(DatabaseName="d", VersionId=read, TableInput={"Name": "t", "Parameters": {"v": writer}})
                outcomes.append("ok")
            except ClientError as error:
                outcomes.append(error.response["Error"]["Code"])
        print(json.dumps({"outcomes": outcomes}))
''')

GLUE_JOB_RUNS = PRELUDE + textwrap.dedent('''
    from moto.glue.models import glue_backends
    with mock_aws():
        glue = boto3.client("glue")
        glue.create_job(Name="job", Role=ROLE, Command={"Name": "glueetl", "ScriptLocation": "s3://b/k.py"})
        run_id = glue.start_job_run(JobName="job")["JobRunId"]
        job_run = next(r for r in glue_backends["123456789012"]["us-east-1"].jobs["job"].job_runs if r.job_run_id == run_id)
        if sys.argv[1] == "fixed":
            from cdnow_offline.moto_defects import hold_glue_job_run
            hold_glue_job_run(job_run)
        states = [glue.get_job_run(JobName="job", RunId=run_id)["JobRun"]["JobRunState"] for _ in range(4)]
        job_run.status, job_run.error_message = "FAILED", "ValueError: the file is empty"
        failed = glue.get_job_run(JobName="job", RunId=run_id)["JobRun"]
        print(json.dumps({"states": states, "error": failed.get("ErrorMessage")}))
''')

POLICY_WITHOUT_VERSION = PRELUDE + textwrap.dedent('''
    from botocore.exceptions import ClientError
    with mock_aws():
        iam = boto3.client("iam")
        iam.create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
        document = {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]}
        if sys.argv[1] == "fixed":
            from cdnow_offline.moto_defects import iam_refuses_a_policy_without_version
            document = iam_refuses_a_policy_without_version(document)
        try:
            iam.put_role_policy(RoleName="r", PolicyName="p", PolicyDocument=json.dumps(document))
            print(json.dumps({"put": "ok"}))
        except ClientError as error:
            print(json.dumps({"put": error.response["Error"]["Code"]}))
''')

SNS_EMAIL = PRELUDE + textwrap.dedent('''
    with mock_aws():
        sns = boto3.client("sns")
        topic = sns.create_topic(Name="t")["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="ops@example.com")
        sns.publish(TopicArn=topic, MessageStructure="json",
                    Message=json.dumps({"default": "{}", "email": "Run r FAILED"}))
        # No API of SNS (or anything moto offers) shows what the e-mail subscriber was sent.
        seen = [s["Protocol"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]]
        sent = None
        if sys.argv[1] == "fixed":
            from cdnow_offline.moto_defects import sns_sends_no_email
            sent = [m["email"] for m in sns_sends_no_email(topic)]
        print(json.dumps({"subscriptions": seen, "email": sent}))
''')

ALARM_ACTIONS = PRELUDE + textwrap.dedent('''
    with mock_aws():
        sns, sqs, cloudwatch = boto3.client("sns"), boto3.client("sqs"), boto3.client("cloudwatch")
        topic = sns.create_topic(Name="ops")["TopicArn"]
        queue = sqs.create_queue(QueueName="q")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        cloudwatch.put_metric_alarm(AlarmName="a", Namespace="AWS/States", MetricName="ExecutionsTimedOut",
            Statistic="Sum", Period=300, EvaluationPeriods=1, Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold", AlarmActions=[topic])
        cloudwatch.set_alarm_state(AlarmName="a", StateValue="ALARM", StateReason="1 execution timed out")
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        bodies = [json.loads(json.loads(m["Body"])["Message"]) for m in messages]
        print(json.dumps({"alarms": [(b["AlarmName"], b["NewStateValue"], b["NewStateReason"]) for b in bodies]}))
''')

DENY_WITHOUT_TLS = PRELUDE + textwrap.dedent('''
    from botocore.exceptions import ClientError
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="tls-only")
        s3.put_bucket_policy(Bucket="tls-only", Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": ["arn:aws:s3:::tls-only", "arn:aws:s3:::tls-only/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}))
        try:
            s3.put_object(Bucket="tls-only", Key="k", Body=b"x")
            print(json.dumps({"put": "ok", "body": s3.get_object(Bucket="tls-only", Key="k")["Body"].read().decode()}))
        except ClientError as error:
            print(json.dumps({"put": error.response["Error"]["Code"]}))
''')


def run_case(script: str, mode: str, root) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=120,
        cwd=root, env={"PYTHONPATH": f"{root}/local", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_glue_sync_has_no_callback_endpoint(mode, root):
    result = run_case(GLUE_SYNC, mode, root)
    if mode == "defect":
        assert result["status"] == "FAILED" and "interrupt_all" in result["cause"]
    else:
        assert result["status"] == "SUCCEEDED", result


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_parallel_rewraps_states_errors(mode, root):
    result = run_case(PARALLEL_STATES_ERROR, mode, root)
    if mode == "defect":
        assert result["status"] == "FAILED" and result["error"] == "States.Runtime"
        assert "MUST NOT begin with the prefix 'States.'" in result["cause"]
    else:
        assert result["status"] == "SUCCEEDED", result  # the Parallel's Catch fired


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_eventbridge_drops_step_functions_targets(mode, root):
    result = run_case(EVENTBRIDGE_SFN_TARGET, mode, root)
    assert result["keys"] == ([] if mode == "defect" else ["incoming/a.txt"])


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_policy_condition_on_unknown_key_holds(mode, root):
    result = run_case(DENY_WITHOUT_TLS, mode, root)
    assert result == ({"put": "403"} if mode == "defect" else {"put": "ok", "body": "x"})


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_s3_events_share_one_id(mode, root):
    result = run_case(S3_EVENT_IDS, mode, root)
    assert result == {"events": 2, "ids": 1 if mode == "defect" else 2, "etag": ["eTag" if mode == "defect" else "etag"]}


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_s3_multipart_upload_sends_two_events(mode, root):
    result = run_case(MULTIPART_EVENTS, mode, root)
    # One "Object Created" event per object, as S3 sends; moto sent two for the multipart upload.
    assert result["events"] == (["big.txt", "big.txt", "small.txt"] if mode == "defect" else ["big.txt", "small.txt"])


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_step_functions_send_no_status_change_events(mode, root):
    result = run_case(STATUS_CHANGE_EVENTS, mode, root)
    assert result["statuses"] == ([] if mode == "defect" else ["SUCCEEDED"])


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_glue_update_table_ignores_version_id(mode, root):
    result = run_case(GLUE_STALE_VERSION, mode, root)
    assert result["outcomes"] == (["ok", "ok"] if mode == "defect" else ["ok", "ConcurrentModificationException"])


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_glue_job_runs_walk_by_themselves_and_have_no_error_message(mode, root):
    result = run_case(GLUE_JOB_RUNS, mode, root)
    if mode == "defect":
        assert result["states"][-1] == "SUCCEEDED" and result["error"] is None  # nothing ran
    else:
        assert result == {"states": ["RUNNING"] * 4, "error": "ValueError: the file is empty"}


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_iam_refuses_a_policy_without_version(mode, root):
    assert run_case(POLICY_WITHOUT_VERSION, mode, root) == {"put": "MalformedPolicyDocument" if mode == "defect" else "ok"}


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_sns_sends_no_email(mode, root):
    result = run_case(SNS_EMAIL, mode, root)
    assert result == {"subscriptions": ["email"], "email": None if mode == "defect" else ["Run r FAILED"]}


@pytest.mark.parametrize("mode", ["defect", "fixed"])
def test_cloudwatch_runs_no_alarm_actions(mode, root):
    result = run_case(ALARM_ACTIONS, mode, root)
    assert result["alarms"] == ([] if mode == "defect" else [["a", "ALARM", "1 execution timed out"]])


# IAM enforced on a moto server in the case's process, as the emulator runs it: an administrator
# made in-process, then one role's credentials for every call, each defect's call recorded.
IAM_ENFORCED = textwrap.dedent('''
    import json, os, sys, time, urllib.request
    os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    os.environ.update(AWS_ENDPOINT_URL=f"http://localhost:{port}", MOTO_PORT=str(port))
    urllib.request.urlopen(urllib.request.Request(f"http://localhost:{port}/moto-api/config", method="POST",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}).encode()))
    from cdnow_offline.identities import Identities
    identities = Identities("us-east-1")
    if sys.argv[1] == "fixed":
        from cdnow_offline.moto_defects import apply_moto_fixes
        apply_moto_fixes(role_credentials=identities.role)
    s3, sns, lam, sfn, iam = (boto3.client(s) for s in ("s3", "sns", "lambda", "stepfunctions", "iam"))
    s3.create_bucket(Bucket="bkt")
    topic = sns.create_topic(Name="t")["TopicArn"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]}, "Action": "sts:AssumeRole"}]})
    role = iam.create_role(RoleName="probe", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    function = lam.create_function(FunctionName="f", Runtime="python3.12", Role=role, Handler="app.handler",
                                   Code={"ZipFile": b"PK\\x05\\x06" + b"\\x00" * 18})["FunctionArn"]
    iam.put_role_policy(RoleName="probe", PolicyName="grants", PolicyDocument=json.dumps({"Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "sns:Publish", "Resource": topic},
            {"Effect": "Allow", "Action": ["lambda:InvokeFunction", "lambda:GetFunction"], "Resource": function},
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": "arn:aws:s3:::bkt/runs/*"},
        ]}))
    s3.put_object(Bucket="bkt", Key="runs/a", Body=b"a")
    s3.put_object(Bucket="bkt", Key="tables/b", Body=b"b")
    identities.start()  # enforced from here on: every call below is the role's
    credentials = identities.role(role)
    session = boto3.session.Session(aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"], aws_session_token=credentials["SessionToken"])
    once = Config(retries={"max_attempts": 1})
    results = {}
    def attempt(name, call):
        try:
            call()
            results[name] = "ok"
        except ClientError as error:
            results[name] = error.response["Error"]
    attempt("publish_to_the_granted_topic", lambda: session.client("sns").publish(TopicArn=topic, Message="m"))
    attempt("invoke_the_granted_function", lambda: session.client("lambda", config=once).invoke(FunctionName="f", Payload=b"{}"))
    attempt("get_the_granted_function", lambda: session.client("lambda", config=once).get_function(FunctionName="f"))
    attempt("get_databases", lambda: session.client("glue", config=once).get_databases())
    attempt("get_tables_b", lambda: session.client("s3").get_object(Bucket="bkt", Key="tables/b"))
    deleted = session.client("s3").delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": "runs/a"}, {"Key": "tables/b"}]})
    results["delete_objects"] = {"deleted": sorted(d["Key"] for d in deleted.get("Deleted", [])),
                                 "errors": sorted(e["Key"] for e in deleted.get("Errors", []))}
    s3v4 = session.client("s3", config=Config(signature_version="s3v4"))
    s3v4.put_object(Bucket="bkt", Key="runs/p", Body=b"presigned")
    for name, key in (("presigned_granted", "runs/p"), ("presigned_not_granted", "tables/b")):
        url = s3v4.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": key}, ExpiresIn=60)
        try:
            results[name] = urllib.request.urlopen(url).read().decode()
        except urllib.error.HTTPError as error:
            results[name] = error.code
    sfn = boto3.client("stepfunctions")  # the administrator's, now that only known keys are served
    machine = sfn.create_state_machine(name="m", roleArn=role, definition=json.dumps({"StartAt": "N", "States": {
        "N": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish",
              "Parameters": {"TopicArn": topic, "Message": "done"}, "End": True}}}))["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    deadline = time.monotonic() + 30
    while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    results["state_machine_publish"] = {"status": execution["status"], "error": execution.get("error"),
                                        "cause": (execution.get("cause") or "")[:300]}
    identities.stop()
    print(json.dumps(results))
''')


@pytest.fixture(scope="module")
def enforced(root):
    return {mode: run_case(IAM_ENFORCED, mode, root) for mode in ("defect", "fixed")}


def test_requests_outside_s3_sqs_iam_have_no_resource(enforced):
    """A grant on the topic's ARN is denied (moto authorizes SNS against "*"), then allowed."""
    assert enforced["defect"]["publish_to_the_granted_topic"]["Code"] == "AccessDenied"
    assert enforced["fixed"]["publish_to_the_granted_topic"] == "ok"


def test_actions_named_after_the_signing_name(enforced):
    denied = enforced["defect"]["invoke_the_granted_function"]
    assert "is not authorized to perform: lambda:Invoke</Message>" in denied["Message"], denied
    assert enforced["fixed"]["invoke_the_granted_function"] == "ok"


def test_access_denied_names_nothing(enforced):
    defect, fixed = enforced["defect"]["get_databases"], enforced["fixed"]["get_databases"]
    assert defect["Message"].startswith("<?xml")  # the whole XML as the message
    assert fixed["Code"] == "AccessDeniedException"
    assert ":assumed-role/probe/" in fixed["Message"] and "is not authorized to perform: glue:GetDatabases" in fixed["Message"]
    assert enforced["defect"]["get_tables_b"]["Message"] == "Access Denied"
    assert "s3:GetObject on resource: arn:aws:s3:::bkt/tables/b" in enforced["fixed"]["get_tables_b"]["Message"]


def test_delete_objects_authorized_on_the_bucket(enforced):
    assert enforced["defect"]["delete_objects"] == {"deleted": [], "errors": ["runs/a", "tables/b"]}
    assert enforced["fixed"]["delete_objects"] == {"deleted": ["runs/a"], "errors": ["tables/b"]}


def test_bodiless_requests_signed_over_their_headers(enforced):
    assert "<Code>SignatureDoesNotMatch</Code>" in enforced["defect"]["get_the_granted_function"]["Message"]
    assert enforced["fixed"]["get_the_granted_function"] == "ok"


def test_presigned_requests_fail_under_enforcement(enforced):
    assert enforced["defect"]["presigned_granted"] == 500
    assert enforced["fixed"]["presigned_granted"] == "presigned"
    assert enforced["fixed"]["presigned_not_granted"] == 403


def test_step_functions_tasks_ignore_the_state_machine_role(enforced):
    defect, fixed = enforced["defect"]["state_machine_publish"], enforced["fixed"]["state_machine_publish"]
    assert defect["status"] == "FAILED" and "RequestId" in defect["cause"], defect  # key "ak" refused
    assert fixed == {"status": "SUCCEEDED", "error": None, "cause": ""}, fixed


def test_the_server_lists_its_modules_once(monkeypatch):
    import os

    from moto import backends

    from cdnow_offline.moto_defects import the_server_lists_its_modules_per_request

    monkeypatch.setattr(backends, "list_of_moto_modules", backends.list_of_moto_modules)
    listed = list(backends.list_of_moto_modules())
    the_server_lists_its_modules_per_request()

    def no_listing(path):
        raise AssertionError(f"listed {path} again")

    monkeypatch.setattr(os, "listdir", no_listing)
    assert list(backends.list_of_moto_modules()) == listed and "s3" in listed
    assert "s3" in backends.list_of_moto_modules()  # as the server asks
