"""The offline stack is template.yaml itself: resources, state machine, event rule."""

import json
import time

import boto3

from cdnow_offline.template import load_template


def test_outputs_name_live_resources(stack):
    outputs = stack.outputs
    buckets = {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]}
    assert {outputs["RawBucketName"], outputs["CuratedBucketName"]} <= buckets
    assert boto3.client("glue").get_database(Name=outputs["DatabaseName"])["Database"]["Name"] == "cdnow_analytics"
    assert outputs["RunCompleteTopicArn"] in {t["TopicArn"] for t in boto3.client("sns").list_topics()["Topics"]}
    # Athena's first query needs a result location: the stack's workgroup has one, and enforces it.
    workgroup = boto3.client("athena").get_work_group(WorkGroup=outputs["AthenaWorkGroupName"])["WorkGroup"]
    assert workgroup["Configuration"]["ResultConfiguration"]["OutputLocation"] == (
        f"s3://{outputs['CuratedBucketName']}/athena-results/")
    assert workgroup["Configuration"]["EnforceWorkGroupConfiguration"] is True


def test_every_function_of_the_template_exists_with_its_environment(stack, root):
    template = load_template(root / "template.yaml")
    declared = {lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    functions = {f["FunctionName"]: f for f in boto3.client("lambda").list_functions()["Functions"]}
    assert {f"cdnow-it-{lid}" for lid in declared} == set(functions)
    for function in functions.values():
        variables = function["Environment"]["Variables"]
        assert variables["CURATED_BUCKET"] == stack.outputs["CuratedBucketName"]
        assert variables["GLUE_DATABASE"] == "cdnow_analytics"


def test_state_machine_is_the_asl_file_with_its_substitutions(stack, root):
    lam, glue = boto3.client("lambda"), boto3.client("glue")

    def arn(logical_id):
        return lam.get_function(FunctionName=f"cdnow-it-{logical_id}")["Configuration"]["FunctionArn"]

    substitutions = {
        "IngestFunctionArn": arn("IngestFunction"),
        "FeaturesFunctionArn": arn("FeaturesFunction"),
        "SegmentFunctionArn": arn("SegmentFunction"),
        "ChurnFunctionArn": arn("ChurnFunction"),
        "ValueFunctionArn": arn("ValueFunction"),
        "PublishFunctionArn": arn("PublishFunction"),
        "ReportFunctionArn": arn("ReportFunction"),
        "TransformJobName": glue.get_job(JobName="cdnow-it-TransformJob")["Job"]["Name"],
        "FeaturesJobName": glue.get_job(JobName="cdnow-it-FeaturesJob")["Job"]["Name"],
        "ScoreJobName": glue.get_job(JobName="cdnow-it-ScoreJob")["Job"]["Name"],
        "RunCompleteTopicArn": stack.outputs["RunCompleteTopicArn"],
        "RunCoordinationTableName": boto3.client("dynamodb").describe_table(
            TableName="cdnow-it-RunCoordinationTable")["Table"]["TableName"],
    }
    expected = (root / "statemachine" / "pipeline.asl.json").read_text()
    for key, value in substitutions.items():
        expected = expected.replace("${" + key + "}", value)
    deployed = boto3.client("stepfunctions").describe_state_machine(
        stateMachineArn=stack.outputs["StateMachineArn"]
    )["definition"]
    assert json.loads(deployed) == json.loads(expected)


def _executions(stack):
    return boto3.client("stepfunctions").list_executions(stateMachineArn=stack.outputs["StateMachineArn"])["executions"]


def test_only_objects_under_incoming_start_a_run(stack):
    s3 = boto3.client("s3")
    before = len(_executions(stack))
    s3.put_object(Bucket=stack.outputs["RawBucketName"], Key="elsewhere/file.txt", Body=b" 00001 19970101  1   11.77\n")
    time.sleep(1.0)
    assert len(_executions(stack)) == before
    s3.put_object(Bucket=stack.outputs["RawBucketName"], Key="incoming/one.txt", Body=b" 00001 19970101  1   11.77\n")
    deadline = time.monotonic() + 10
    while len(_executions(stack)) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    executions = _executions(stack)
    assert len(executions) == before + 1
    first_input = json.loads(
        boto3.client("stepfunctions").describe_execution(executionArn=executions[0]["executionArn"])["input"]
    )
    assert first_input["detail-type"] == "Object Created"
    assert first_input["detail"]["object"]["key"] == "incoming/one.txt"
    # Let the run finish before the emulator goes away (it is a one-row file: any outcome).
    sfn = boto3.client("stepfunctions")
    deadline = time.monotonic() + 120
    while sfn.describe_execution(executionArn=executions[0]["executionArn"])["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.3)
