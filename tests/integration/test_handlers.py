"""Each step against the emulator, invoked the way the state machine invokes it (Lambda Invoke,
Glue StartJobRun), in pipeline order on the CDNOW sample."""

import json
import time
from pathlib import Path

import boto3
import pytest

SAMPLE_ROWS, SAMPLE_CUSTOMERS = 6_919, 2_357


def invoke(function: str, payload: dict) -> tuple[dict, str | None]:
    response = boto3.client("lambda").invoke(FunctionName=f"cdnow-it-{function}", Payload=json.dumps(payload))
    return json.loads(response["Payload"].read()), response.get("FunctionError")


def object_created_event(root: Path, bucket: str, key: str) -> dict:
    event = json.loads((root / "events" / "s3-object-created.json").read_text())
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"]["key"] = key
    return event


def run_glue_job(run: dict) -> dict:
    glue = boto3.client("glue")
    job_run_id = glue.start_job_run(JobName="cdnow-it-TransformJob", Arguments={
        "--run_id": run["run_id"], "--input_uri": run["input_uri"], "--run_prefix": run["run_prefix"],
    })["JobRunId"]
    deadline = time.monotonic() + 180
    while True:
        job_run = glue.get_job_run(JobName="cdnow-it-TransformJob", RunId=job_run_id)["JobRun"]
        if job_run["JobRunState"] not in ("STARTING", "RUNNING"):
            return job_run
        assert time.monotonic() < deadline, "Glue job run did not finish"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def ingested(stack, root):
    for relay in stack.relays:
        relay.stop()  # these tests drive the steps themselves: no execution may start on the side
    raw = stack.outputs["RawBucketName"]
    boto3.client("s3").upload_file(str(root / "data" / "CDNOW_sample.txt"), raw, "incoming/sample-handlers.txt")
    run, error = invoke("IngestFunction", object_created_event(root, raw, "incoming/sample-handlers.txt"))
    assert error is None, run
    return run


def test_ingest_derives_a_stable_run_and_writes_its_manifest(stack, root, ingested):
    again, _ = invoke("IngestFunction", object_created_event(root, stack.outputs["RawBucketName"], "incoming/sample-handlers.txt"))
    assert again["run_id"] == ingested["run_id"]
    assert ingested["run_prefix"] == f"s3://{stack.outputs['CuratedBucketName']}/runs/run_id={ingested['run_id']}/"
    manifest = boto3.client("s3").get_object(
        Bucket=stack.outputs["CuratedBucketName"], Key=f"runs/run_id={ingested['run_id']}/manifest.json"
    )
    assert json.loads(manifest["Body"].read())["input_uri"] == ingested["input_uri"]


def test_ingest_refuses_objects_outside_incoming_and_empty_files(stack, root):
    raw = stack.outputs["RawBucketName"]
    s3 = boto3.client("s3")
    s3.put_object(Bucket=raw, Key="other/file.txt", Body=b"x")
    payload, error = invoke("IngestFunction", {"bucket": raw, "key": "other/file.txt"})
    assert error == "Unhandled" and payload["errorType"] == "InvalidRunRequest"
    assert "incoming/" in payload["errorMessage"]
    s3.put_object(Bucket=raw, Key="incoming/empty.txt", Body=b"")
    payload, error = invoke("IngestFunction", {"bucket": raw, "key": "incoming/empty.txt"})
    assert payload["errorType"] == "InvalidRunRequest" and "empty" in payload["errorMessage"]


@pytest.fixture(scope="module")
def transformed(ingested):
    job_run = run_glue_job(ingested)
    assert job_run["JobRunState"] == "SUCCEEDED", job_run.get("ErrorMessage")
    return ingested


def test_transform_job_counts_every_row(stack, transformed):
    summary = json.loads(boto3.client("s3").get_object(
        Bucket=stack.outputs["CuratedBucketName"], Key=f"runs/run_id={transformed['run_id']}/transform.json"
    )["Body"].read())
    assert summary["read"] == SAMPLE_ROWS == summary["accepted"] + summary["quarantined"]


def test_failed_glue_job_reports_the_file_and_reason(stack):
    raw = stack.outputs["RawBucketName"]
    boto3.client("s3").put_object(Bucket=raw, Key="incoming/not-a-log.txt", Body=b"hello world\n")
    run = {"run_id": "bad-file", "input_uri": f"s3://{raw}/incoming/not-a-log.txt",
           "run_prefix": f"s3://{stack.outputs['CuratedBucketName']}/runs/run_id=bad-file/"}
    job_run = run_glue_job(run)
    assert job_run["JobRunState"] == "FAILED"
    assert "not-a-log.txt" in job_run["ErrorMessage"]


def test_features_models_and_publish(stack, transformed):
    features, error = invoke("FeaturesFunction", {"run": transformed})
    assert error is None, features
    assert features["customers"] == SAMPLE_CUSTOMERS
    assert features["rows"]["read"] == SAMPLE_ROWS

    segment, error = invoke("SegmentFunction", {"run": transformed, "features": features})
    assert error is None, segment
    assert sum(s["customers"] for s in segment["segments"].values()) == SAMPLE_CUSTOMERS
    churn, error = invoke("ChurnFunction", {"run": transformed, "features": features})
    assert error is None, churn
    assert 0.0 <= churn["metrics"]["brier"] <= 1.0

    models = {"segment": segment, "churn": churn}
    summary, error = invoke("PublishFunction", {"run": transformed, "transform": {}, "features": features, "models": models})
    assert error is None, summary
    assert summary["status"] == "SUCCEEDED" and summary["customers"] == SAMPLE_CUSTOMERS
    tables = {t["Name"] for t in boto3.client("glue").get_tables(DatabaseName="cdnow_analytics")["TableList"]}
    assert tables == {"customer_features", "customer_segments", "segment_profiles", "churn_scores", "model_metrics"}
    partitions = boto3.client("glue").get_partitions(DatabaseName="cdnow_analytics", TableName="churn_scores")["Partitions"]
    assert [p["Values"] for p in partitions] == [[transformed["run_id"]]]

    # Publishing the same run again replaces its partition: still one row per customer.
    invoke("PublishFunction", {"run": transformed, "transform": {}, "features": features, "models": models})
    from cdnow.storage import read_published_run

    scores = read_published_run("cdnow_analytics", "churn_scores", transformed["run_id"])
    assert len(scores) == SAMPLE_CUSTOMERS and scores["customer_id"].is_unique
