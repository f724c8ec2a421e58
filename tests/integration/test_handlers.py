"""Each step against the emulator, invoked the way the state machine invokes it (Lambda Invoke,
Glue StartJobRun), in pipeline order on the CDNOW sample."""

import datetime as dt
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


def run_glue_job(arguments: dict) -> dict:
    """Start the Transform job with ``arguments`` as the state machine does; its final job run."""
    glue = boto3.client("glue")
    job_run_id = glue.start_job_run(JobName="cdnow-it-TransformJob", Arguments=arguments)["JobRunId"]
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
    head = boto3.client("s3").head_object(Bucket=stack.outputs["RawBucketName"], Key="incoming/sample-handlers.txt")
    # What the state machine hands the Glue job: strings only, the stack's bad-row share, the
    # object's last-modified day (UTC) that bounds the dates of its rows.
    assert ingested["transform_arguments"] == {
        "--run_id": ingested["run_id"], "--input_uri": ingested["input_uri"],
        "--run_prefix": ingested["run_prefix"], "--max_bad_share": "0.05", "--column_mapping": "null",
        "--last_modified_date": head["LastModified"].astimezone(dt.timezone.utc).date().isoformat(),
        "--amount_decimals": "2",
        # The stack's delivery limits (template parameters, through Ingest's environment).
        "--max_delivery_bytes": "20000000000", "--max_delivery_rows": "100000000", "--max_compression_ratio": "100",
    }


def test_a_run_can_set_its_bad_row_share_and_column_mapping(stack, root, ingested):
    raw = stack.outputs["RawBucketName"]
    mapping = {"customer_id": "Kunde"}
    run, error = invoke("IngestFunction", {"bucket": raw, "key": "incoming/sample-handlers.txt",
                                           "max_bad_share": 0.2, "column_mapping": mapping})
    assert error is None, run
    # The same object with other options is another run; with the same options, the same run.
    assert run["run_id"] != ingested["run_id"] and run["run_id"].startswith("sample-handlers-")
    again, _ = invoke("IngestFunction", {"bucket": raw, "key": "incoming/sample-handlers.txt",
                                         "column_mapping": mapping, "max_bad_share": "0.2"})
    assert again["run_id"] == run["run_id"]
    assert run["transform_arguments"]["--max_bad_share"] == "0.2"
    assert json.loads(run["transform_arguments"]["--column_mapping"]) == mapping
    payload, error = invoke("IngestFunction", {"bucket": raw, "key": "incoming/sample-handlers.txt",
                                               "max_bad_share": "half"})
    assert payload["errorType"] == "InvalidRunRequest" and "max_bad_share" in payload["errorMessage"]


def test_options_on_the_upload_reach_the_run_and_a_bad_one_fails_ingest_naming_it(stack, root):
    from urllib.parse import quote

    raw, s3 = stack.outputs["RawBucketName"], boto3.client("s3")
    body = (root / "data" / "CDNOW_sample.txt").read_bytes()
    options = {"churn_horizon_days": 90, "column_mapping": {"unit_price": "Stückpreis"}, "currency": "GBP"}
    s3.put_object(Bucket=raw, Key="incoming/with-options.txt", Body=body,
                  Metadata={"cdnow-options": quote(json.dumps(options))})
    event = object_created_event(root, raw, "incoming/with-options.txt")
    run, error = invoke("IngestFunction", event)
    assert error is None, run
    assert run["options"] == options and run["churn_horizon_days"] == 90 and run["currency"] == "GBP"
    assert json.loads(run["transform_arguments"]["--column_mapping"]) == {"unit_price": "Stückpreis"}
    # A hand-started execution's option wins over the upload's.
    direct, _ = invoke("IngestFunction", {"bucket": raw, "key": "incoming/with-options.txt", "churn_horizon_days": 30})
    assert direct["churn_horizon_days"] == 30 and direct["currency"] == "GBP"
    # The amounts keep the currency's minor unit: yen have none.
    yen, _ = invoke("IngestFunction", {"bucket": raw, "key": "incoming/with-options.txt", "currency": "jpy"})
    assert yen["currency"] == "JPY" and yen["transform_arguments"]["--amount_decimals"] == "0"

    future, _ = invoke("IngestFunction", {"bucket": raw, "key": "incoming/with-options.txt",
                                          "analysis_date": "2099-01-01"})
    assert future["errorType"] == "InvalidRunRequest"
    assert "analysis_date 2099-01-01 is after the file was delivered" in future["errorMessage"]

    s3.put_object(Bucket=raw, Key="incoming/bad-options.txt", Body=body,
                  Metadata={"cdnow-options": quote(json.dumps({"horizon_days": 90}))})
    payload, error = invoke("IngestFunction", object_created_event(root, raw, "incoming/bad-options.txt"))
    assert error == "Unhandled" and payload["errorType"] == "InvalidRunRequest"
    assert payload["errorMessage"].startswith(
        f"s3://{raw}/incoming/bad-options.txt: metadata cdnow-options names unknown option(s) horizon_days")


def test_a_delivery_to_a_dataset_folder_takes_the_dataset_s_standing_options(stack, root):
    raw, s3 = stack.outputs["RawBucketName"], boto3.client("s3")
    body = (root / "data" / "CDNOW_sample.txt").read_bytes()
    s3.put_object(Bucket=raw, Key="incoming/shop/plain.txt", Body=body)
    run, error = invoke("IngestFunction", object_created_event(root, raw, "incoming/shop/plain.txt"))
    assert error is None, run
    assert (run["dataset"], run["options"], run["dataset_options_uri"]) == ("shop", {}, None)

    # The options file itself is checked, and starts no computation.
    s3.put_object(Bucket=raw, Key="incoming/shop/_dataset.json", Body=b'{"currency": "GBP", "churn_horizon_days": 90}')
    checked, error = invoke("IngestFunction", object_created_event(root, raw, "incoming/shop/_dataset.json"))
    assert error is None and checked["dataset_options"] == {"currency": "GBP", "churn_horizon_days": 90}
    s3.put_object(Bucket=raw, Key="incoming/shop/with-metadata.txt", Body=body,
                  Metadata={"cdnow-options": "%7B%22churn_horizon_days%22%3A%2030%7D"})
    run, error = invoke("IngestFunction", object_created_event(root, raw, "incoming/shop/with-metadata.txt"))
    assert error is None, run
    assert run["options"] == {"currency": "GBP", "churn_horizon_days": 30}  # the upload's option wins
    assert run["dataset_options_uri"] == f"s3://{raw}/incoming/shop/_dataset.json"

    s3.put_object(Bucket=raw, Key="incoming/broken/_dataset.json", Body=b'{"horizon": 90}')
    payload, error = invoke("IngestFunction", object_created_event(root, raw, "incoming/broken/_dataset.json"))
    assert payload["errorType"] == "InvalidRunRequest"
    assert f"s3://{raw}/incoming/broken/_dataset.json: names unknown option(s) horizon" in payload["errorMessage"]


def test_a_dataset_s_engine_comes_from_the_upload_or_its_standing_options(stack, root):
    """A delivery to a dataset takes any engine (the Spark path reads the dataset's history too),
    from the upload's options or the dataset's standing options; the upload's wins."""
    raw, s3 = stack.outputs["RawBucketName"], boto3.client("s3")
    body = (root / "data" / "CDNOW_sample.txt").read_bytes()
    s3.put_object(Bucket=raw, Key="incoming/big/spark.txt", Body=body,
                  Metadata={"cdnow-options": "%7B%22engine%22%3A%22spark%22%7D"})
    run, error = invoke("IngestFunction", object_created_event(root, raw, "incoming/big/spark.txt"))
    assert error is None and run["engine"] == "spark" and run["dataset"] == "big", run
    s3.put_object(Bucket=raw, Key="incoming/big/_dataset.json", Body=b'{"engine": "spark"}')
    s3.put_object(Bucket=raw, Key="incoming/big/plain.txt", Body=body)
    run, error = invoke("IngestFunction", object_created_event(root, raw, "incoming/big/plain.txt"))
    assert error is None and run["engine"] == "spark", run
    s3.put_object(Bucket=raw, Key="incoming/big/_dataset.json", Body=b'{"engine": "lambda"}')
    run, error = invoke("IngestFunction", object_created_event(root, raw, "incoming/big/spark.txt"))
    assert error is None and run["engine"] == "spark", run


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
    job_run = run_glue_job(ingested["transform_arguments"])
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
    job_run = run_glue_job({"--run_id": "bad-file", "--input_uri": f"s3://{raw}/incoming/not-a-log.txt",
                            "--run_prefix": f"s3://{stack.outputs['CuratedBucketName']}/runs/run_id=bad-file/"})
    assert job_run["JobRunState"] == "FAILED"
    assert "not-a-log.txt" in job_run["ErrorMessage"]


PUBLISHED_TABLES = {"customer_features", "customer_segments", "segment_profiles", "churn_scores",
                    "customer_value", "model_metrics", "runs"}


@pytest.fixture(scope="module")
def modelled(stack, transformed):
    features, error = invoke("FeaturesFunction", {"run": transformed})
    assert error is None, features
    payload = {"run": transformed, "features": features}
    models = {}
    for step in ("segment", "churn", "value"):
        models[step], error = invoke(f"{step.capitalize()}Function", payload)
        assert error is None, models[step]
    return features, models


def test_features_models_and_publish(stack, transformed, modelled):
    features, models = modelled
    assert features["customers"] == SAMPLE_CUSTOMERS
    assert features["rows"]["read"] == SAMPLE_ROWS
    assert sum(s["customers"] for s in models["segment"]["segments"].values()) == SAMPLE_CUSTOMERS
    assert models["segment"]["migration"] is None  # nothing was published before
    assert 0.0 <= models["churn"]["metrics"]["brier"] <= 1.0
    assert models["value"]["metrics"]["n_customers"] == SAMPLE_CUSTOMERS

    summary, error = invoke("PublishFunction", {"run": transformed, "transform": {}, "features": features, "models": models})
    assert error is None, summary
    assert summary["status"] == "SUCCEEDED" and summary["customers"] == SAMPLE_CUSTOMERS
    tables = {t["Name"] for t in boto3.client("glue").get_tables(DatabaseName="cdnow_analytics")["TableList"]}
    assert tables == PUBLISHED_TABLES
    partitions = boto3.client("glue").get_partitions(DatabaseName="cdnow_analytics", TableName="churn_scores")["Partitions"]
    assert [p["Values"] for p in partitions] == [[transformed["run_id"]]]
    # Every chart the summary lists was written.
    s3 = boto3.client("s3")
    for uri in summary["charts"]:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read().startswith(b"<svg"), uri

    # Publishing the same run again replaces its partition: still one row per customer.
    invoke("PublishFunction", {"run": transformed, "transform": {}, "features": features, "models": models})
    from cdnow.adapters.storage import read_published_run

    scores = read_published_run("cdnow_analytics", "churn_scores", transformed["run_id"])
    assert len(scores) == SAMPLE_CUSTOMERS and scores["customer_id"].is_unique
    runs = read_published_run("cdnow_analytics", "runs", transformed["run_id"])
    assert len(runs) == 1 and runs["customers"].iloc[0] == SAMPLE_CUSTOMERS


def test_report_step_writes_a_report_a_link_opens_and_a_readable_message(stack, transformed, modelled):
    import urllib.request

    from cdnow.presentation import messages
    from cdnow.presentation.report import chart_name

    features, models = modelled
    summary, error = invoke("PublishFunction", {"run": transformed, "transform": {}, "features": features,
                                                "models": models})
    assert error is None, summary
    result, error = invoke("ReportFunction", {"run": transformed})
    assert error is None, result
    run_id = transformed["run_id"]
    assert result["uri"] == f"s3://{stack.outputs['CuratedBucketName']}/reports/{run_id}.html"
    # The pre-signed link needs no credentials.
    with urllib.request.urlopen(result["url"]) as response:  # noqa: S310 - the emulator on loopback
        html = response.read().decode()
    assert html.startswith("<!DOCTYPE html>") and len(html.encode()) == result["bytes"]
    assert all(f'data-chart="{chart_name(uri)}"' in html for uri in summary["charts"])
    assert "Champions" in html and f"{SAMPLE_CUSTOMERS:,}" in html
    assert result["subject"] == messages.subject(summary)
    document = json.loads(result["message"]["sqs"])
    assert document["run_id"] == run_id and document["report"]["url"] == result["url"]
    assert result["url"] in result["message"]["email"]


def test_a_later_run_reports_segment_migration_against_the_published_one(stack, transformed, modelled):
    from cdnow.adapters.storage import read_published_run, read_table, stage_table
    from cdnow.domain.runs import RunLayout

    features, models = modelled
    published = invoke("PublishFunction", {"run": transformed, "transform": {}, "features": features, "models": models})[0]
    assert published["status"] == "SUCCEEDED"
    # A second run over the same customers (its staged features copied from the first).
    later = {**transformed, "run_id": "later-run"}
    first, second = RunLayout(transformed["curated_bucket"], transformed["run_id"]), RunLayout(later["curated_bucket"], "later-run")
    stage_table(read_table(first.staged("customer_features")), second.staged("customer_features"))

    segment, error = invoke("SegmentFunction", {"run": later, "features": features})
    assert error is None, segment
    assert segment["migration"] == {"previous_run_id": transformed["run_id"], "customers_moved": 0}
    migration = read_table(second.staged("segment_migration"))
    assert migration["customers"].sum() == SAMPLE_CUSTOMERS
    assert (migration["from_segment"] == migration["to_segment"]).all()
    before = read_published_run("cdnow_analytics", "customer_segments", transformed["run_id"])
    expected = before.groupby("segment_name").size().to_dict()
    assert dict(zip(migration["to_segment"], migration["customers"])) == expected


def test_churn_step_refuses_a_label_that_is_a_threshold_on_its_own_features(stack, transformed, modelled):
    features, _ = modelled
    leaky = {**transformed, "churn_label": {"feature": "recency_days", "threshold": 90}}
    payload, error = invoke("ChurnFunction", {"run": leaky, "features": features})
    assert error == "Unhandled" and payload["errorType"] == "LeakageError"
    assert "'recency_days > 90'" in payload["errorMessage"]
    assert "no_purchase_in_horizon" in payload["errorMessage"]


def shape(value):
    """The keys of a JSON document, recursively (a list by its first element), without values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def test_sample_events_have_the_shape_the_steps_produce(root, transformed, modelled):
    features, models = modelled
    events = {name: json.loads((root / "events" / f"{name}.json").read_text())
              for name in ("features", "models", "publish", "report")}
    assert shape(events["features"]) == shape({"run": transformed})
    assert shape(events["report"]) == shape({"run": transformed})
    assert shape(events["models"]) == shape({"run": transformed, "features": features})
    assert shape(events["publish"]["models"]) == shape(models)
    assert shape(events["publish"]["features"]) == shape(features)


def test_a_margin_turns_lifetime_value_from_revenue_into_profit(stack, transformed, modelled):
    features, models = modelled
    revenue = models["value"]["metrics"]
    assert revenue["margin"] == 1.0 and revenue["purchase_model"] in ("bgnbd", "mbgnbd", "pnbd")
    run = {**transformed, "margin": 0.3}
    profit, error = invoke("ValueFunction", {"run": run, "features": features})
    assert error is None, profit
    # Staged again without the margin, as the run above had it.
    restored, error = invoke("ValueFunction", {"run": transformed, "features": features})
    assert error is None and restored["metrics"] == revenue
    assert profit["metrics"]["margin"] == 0.3
    assert profit["metrics"]["total_clv_12m"] == pytest.approx(0.3 * revenue["total_clv_12m"], rel=1e-12)
    assert profit["purchase_models"]["chosen"] == models["value"]["purchase_models"]["chosen"]
