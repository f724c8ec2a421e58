"""The adapters: the only code in the layer that talks to AWS (S3 and the Glue catalog).

pandas and awswrangler are imported on first use, so the Ingest function, which needs neither,
runs with this layer alone.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

# Published tables: one partition per run, so a rerun replaces exactly its own rows.
PARTITION_COLUMN = "run_id"


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def head_object(uri: str) -> dict:
    bucket, key = split_s3_uri(uri)
    return boto3.client("s3").head_object(Bucket=bucket, Key=key)


def read_json(uri: str) -> Any:
    bucket, key = split_s3_uri(uri)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return json.loads(body)


def write_json(uri: str, document: Any) -> None:
    bucket, key = split_s3_uri(uri)
    boto3.client("s3").put_object(
        Bucket=bucket, Key=key, Body=json.dumps(document, indent=2, default=str).encode(),
        ContentType="application/json",
    )


def write_text(uri: str, text: str, content_type: str) -> None:
    bucket, key = split_s3_uri(uri)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode(), ContentType=content_type)


def read_text(uri: str) -> str:
    bucket, key = split_s3_uri(uri)
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")


def presign_get(uri: str, expires_s: int) -> str:
    """A GET link to the object that works without AWS credentials until it expires.

    Signed with the caller's credentials: a link signed with temporary (role) credentials stops
    working when they expire, even before ``expires_s`` (SigV4 allows at most 7 days).
    """
    from botocore.config import Config

    bucket, key = split_s3_uri(uri)
    s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
    return s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=int(expires_s))


def delete_prefix(uri: str) -> None:
    """Remove every object under ``uri`` (what an earlier attempt of the run left behind)."""
    import awswrangler as wr

    wr.s3.delete_objects(path=uri)


def read_table(uri: str, columns: list[str] | None = None):
    """A folder of parquet files, only the columns asked for (bounded memory in Lambda)."""
    import awswrangler as wr

    try:
        return wr.s3.read_parquet(path=uri, columns=columns, path_suffix=".parquet", ignore_empty=True)
    except wr.exceptions.NoFilesFound:
        raise FileNotFoundError(f"no parquet files under {uri}") from None


def stage_table(frame, uri: str) -> None:
    """Write a run's table to its staging folder, replacing what a previous attempt left."""
    import awswrangler as wr

    wr.s3.to_parquet(frame, path=uri, dataset=True, mode="overwrite", index=False)


def publish_table(frame, location: str, database: str, table: str, run_id: str) -> None:
    """Write the run's rows as its own partition of a catalog table (Athena reads it)."""
    import awswrangler as wr

    frame = frame.assign(**{PARTITION_COLUMN: run_id})
    wr.s3.to_parquet(
        frame, path=location, dataset=True, mode="overwrite_partitions",
        partition_cols=[PARTITION_COLUMN], database=database, table=table, index=False,
    )


def read_published_table(database: str, table: str, columns: list[str] | None = None):
    """Every run's rows of a catalog table, or None when the table has never been published."""
    import awswrangler as wr

    if not wr.catalog.does_table_exist(database=database, table=table):
        return None
    return wr.s3.read_parquet_table(table=table, database=database, columns=columns)


def read_published_run(database: str, table: str, run_id: str):
    import awswrangler as wr

    return wr.s3.read_parquet_table(
        table=table, database=database, partition_filter=lambda p: p[PARTITION_COLUMN] == run_id
    )
