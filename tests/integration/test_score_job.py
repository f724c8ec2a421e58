"""The Spark path's Glue jobs on the offline stack, as the state machine will start them: the
Features job writing the models' sample and the value spend, then the Score job with the cdnow
package shipped as `--extra-py-files` (`adapters.glue_code.shipped_package`), each under its own
role with IAM enforced, its inputs staged from and its outputs uploaded to the emulated S3.

The fits are the Lambda path's, made here from the rows the Features job sampled (a sample as
large as the file: every customer), so the scored tables must equal the Lambda path's scores.
"""

from __future__ import annotations

import io
import json
import time

import boto3
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cdnow.adapters import glue_code
from cdnow.domain import churn, clv, segments
from cdnow.domain.features import customer_features
from cdnow_offline.datasets import SAMPLE, read_cdnow
from same_figures import assert_same_rows

ANALYSIS_DATE = "1998-07-01"
HORIZON_DAYS = 180


def run_job(job: str, arguments: dict[str, str], timeout_s: float = 300) -> dict:
    glue = boto3.client("glue")
    run_id = glue.start_job_run(JobName=job, Arguments=arguments)["JobRunId"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job_run = glue.get_job_run(JobName=job, RunId=run_id)["JobRun"]
        if job_run["JobRunState"] not in ("STARTING", "RUNNING"):
            return job_run
        time.sleep(0.5)
    raise AssertionError(f"{job} run {run_id} did not end in {timeout_s} s")


def read_parquet(s3, bucket: str, prefix: str) -> pd.DataFrame:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
            if o["Key"].endswith(".parquet")]
    assert keys, f"no parquet file under s3://{bucket}/{prefix}"
    return pd.concat([pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())).to_pandas()
                      for key in keys], ignore_index=True)


def test_features_then_score_on_the_offline_stack(stack):
    s3 = boto3.client("s3")
    bucket = stack.outputs["CuratedBucketName"]
    run = f"runs/run_id=score-it/"
    prefix = f"s3://{bucket}/{run}"
    rows = read_cdnow(SAMPLE)
    table = pa.table({
        "customer_id": pa.array(rows["customer_id"].astype(str).tolist(), pa.string()),
        "order_date": pa.array(pd.to_datetime(rows["order_date"]).to_numpy().astype("datetime64[D]"), pa.date32()),
        "quantity": pa.array(rows["quantity"].to_numpy(dtype=np.int64)),
        "amount": pa.array(rows["amount"].to_numpy(dtype=np.float64)),
    })
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    s3.put_object(Bucket=bucket, Key=f"{run}transactions/part-00000.parquet", Body=buffer.getvalue())

    features_run = run_job("cdnow-it-FeaturesJob", {
        "--run_id": "score-it", "--transactions_uri": prefix + "transactions/", "--analysis_date": ANALYSIS_DATE,
        "--output_uri": prefix + "staged/customer_features/", "--summary_uri": prefix + "features_job.json",
        "--sample_uri": prefix + "model_sample/customers/",
        "--sample_transactions_uri": prefix + "model_sample/transactions/",
        "--value_spend_uri": prefix + "value_spend/",
    })
    assert features_run["JobRunState"] == "SUCCEEDED", features_run.get("ErrorMessage")
    summary = json.loads(s3.get_object(Bucket=bucket, Key=f"{run}features_job.json")["Body"].read())
    assert summary["models"]["sample"]["rate"] == 1.0 and summary["models"]["net_of_returns"] is False

    # The model steps' part, as they will do it: fit on the sample's rows, write the fits.
    sampled = read_parquet(s3, bucket, f"{run}model_sample/transactions/")
    sampled["order_date"] = pd.to_datetime(sampled["order_date"])
    day = pd.Timestamp(ANALYSIS_DATE)
    features = customer_features(sampled, day)
    inputs = clv.value_inputs(sampled, day)
    fits = {
        "segment": segments.fit_segments(features),
        "churn": churn.fit_churn(sampled, day, HORIZON_DAYS, baselines=churn.bgnbd_baselines(HORIZON_DAYS)),
        "value": clv.fit_value(inputs),
    }
    s3.put_object(Bucket=bucket, Key=f"{run}fits/segment.json", Body=json.dumps(fits["segment"].to_dict()).encode())
    s3.put_object(Bucket=bucket, Key=f"{run}fits/churn.bin", Body=fits["churn"].to_bytes())
    s3.put_object(Bucket=bucket, Key=f"{run}fits/value.json", Body=json.dumps(fits["value"].to_dict()).encode())

    archive = glue_code.shipped_package(bucket)
    assert glue_code.shipped_package(bucket) == archive  # uploaded once, found the second time
    arguments = {
        "--run_id": "score-it", "--extra-py-files": archive,
        "--features_uri": prefix + "staged/customer_features/", "--fits_uri": prefix + "fits/",
        "--value_spend_uri": prefix + "value_spend/", "--net_of_returns": "false",
        "--segments_uri": prefix + "staged/customer_segments/", "--churn_uri": prefix + "staged/churn_scores/",
        "--value_uri": prefix + "staged/customer_value/", "--profiles_uri": prefix + "staged/segment_profiles/",
        "--simulation_sample_uri": prefix + "value_simulation_sample/",
        "--migration_uri": prefix + "staged/segment_migration/", "--summary_uri": prefix + "score_job.json",
    }
    for attempt in ("first", "rerun"):  # a rerun adds the same archive again: once per name
        score_run = run_job("cdnow-it-ScoreJob", arguments)
        assert score_run["JobRunState"] == "SUCCEEDED", (attempt, score_run.get("ErrorMessage"))
    scored = json.loads(s3.get_object(Bucket=bucket, Key=f"{run}score_job.json")["Body"].read())
    assert scored["customers"] == len(features) == 2357

    expected = {
        "customer_segments": segments.score_segments(features, fits["segment"]),
        "churn_scores": churn.score_churn(features, fits["churn"]),
        "customer_value": clv.score_value(inputs, fits["value"]),
    }
    for name, table in expected.items():
        assert_same_rows(read_parquet(s3, bucket, f"{run}staged/{name}/"), table, name)


def test_a_missing_archive_fails_the_score_job_naming_it(stack):
    bucket = stack.outputs["CuratedBucketName"]
    prefix = f"s3://{bucket}/runs/run_id=score-missing/"
    run = run_job("cdnow-it-ScoreJob", {
        "--extra-py-files": f"s3://{bucket}/code/cdnow-missing.zip",
        "--features_uri": prefix + "f/", "--fits_uri": prefix + "fits/", "--value_spend_uri": prefix + "v/",
        "--net_of_returns": "false", "--segments_uri": prefix + "s/", "--churn_uri": prefix + "c/",
        "--value_uri": prefix + "val/", "--profiles_uri": prefix + "p/", "--simulation_sample_uri": prefix + "sim/",
        "--migration_uri": prefix + "mig/",
        "--summary_uri": prefix + "score_job.json",
    })
    assert run["JobRunState"] == "FAILED"
    assert "cdnow-missing.zip" in run["ErrorMessage"]


pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
