"""The S3 adapter's table copy: files copied byte for byte, rows and types from the footers."""

import io

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from cdnow.adapters import storage


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


@pytest.fixture
def bucket(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="curated")
        yield "curated"


def test_rows_come_from_the_footer_short_or_longer_than_one_read(bucket):
    s3 = boto3.client("s3")
    narrow = _parquet(pa.table({"customer_id": [f"c{i}" for i in range(5000)], "x": range(5000)}))
    # 600 columns make a footer of more than 64 KiB: the second, exact ranged read.
    wide = _parquet(pa.table({f"column_{i:03d}": [1.5, 2.5, 3.5] for i in range(600)}))
    assert int.from_bytes(wide[-8:-4], "little") > 64 * 1024
    s3.put_object(Bucket=bucket, Key="a/narrow.parquet", Body=narrow)
    s3.put_object(Bucket=bucket, Key="a/wide.parquet", Body=wide)
    assert storage.parquet_rows(bucket, "a/narrow.parquet") == 5000
    assert storage.parquet_rows(bucket, "a/wide.parquet") == 3


def test_a_file_that_is_not_parquet_is_named(bucket):
    boto3.client("s3").put_object(Bucket=bucket, Key="a/notes.parquet", Body=b"customer_id,amount\n1,2\n")
    with pytest.raises(ValueError, match="s3://curated/a/notes.parquet: not a parquet file"):
        storage.parquet_rows(bucket, "a/notes.parquet")


def test_copy_table_copies_every_file_as_it_is_and_reports_types_and_rows(bucket):
    frame = pd.DataFrame({"customer_id": ["a", "b", "c"], "clv_12m": [1.0, 0.0, 2.5], "orders": [1, 2, 3],
                          "first_purchase": pd.to_datetime(["1997-01-01", "1997-02-01", "1997-03-01"]).date})
    storage.stage_table(frame, "s3://curated/runs/run_id=r/staging/customer_value/")
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="runs/run_id=r/staging/customer_value/notes.txt", Body=b"not a table file")

    columns, rows = storage.copy_table("s3://curated/runs/run_id=r/staging/customer_value/",
                                       "s3://curated/tables/customer_value/run_id=r/attempt-1/")

    assert rows == 3
    assert columns == storage.athena_columns(frame)
    staged = s3.list_objects_v2(Bucket=bucket, Prefix="runs/run_id=r/staging/customer_value/")["Contents"]
    copied = s3.list_objects_v2(Bucket=bucket, Prefix="tables/customer_value/run_id=r/attempt-1/")["Contents"]
    parquet = [o["Key"] for o in staged if o["Key"].endswith(".parquet")]
    assert [o["Key"].rsplit("/", 1)[1] for o in copied] == [key.rsplit("/", 1)[1] for key in parquet]
    for key in parquet:
        name = key.rsplit("/", 1)[1]
        original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        copy = s3.get_object(Bucket=bucket, Key=f"tables/customer_value/run_id=r/attempt-1/{name}")["Body"].read()
        assert copy == original
    copied_frame = storage.read_table("s3://curated/tables/customer_value/run_id=r/attempt-1/")
    pd.testing.assert_frame_equal(copied_frame, frame, check_dtype=False)


def test_copy_table_of_an_empty_folder_is_an_error(bucket):
    with pytest.raises(FileNotFoundError, match="no parquet files under s3://curated/runs/nothing/"):
        storage.copy_table("s3://curated/runs/nothing/", "s3://curated/tables/x/")
