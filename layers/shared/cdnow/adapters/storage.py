"""The adapters: the only code in the layer that talks to AWS (S3 and the Glue catalog).

pandas and awswrangler are imported on first use, so the Ingest function, which needs neither,
runs with this layer alone.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
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
    write_bytes(uri, text.encode(), content_type)


def write_bytes(uri: str, body: bytes, content_type: str) -> None:
    bucket, key = split_s3_uri(uri)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


def read_bytes_if_exists(uri: str, limit: int) -> bytes | None:
    """The object's first ``limit`` bytes, or None when there is no such object (404; with
    s3:ListBucket on the prefix, S3 answers a missing key with 404, not 403)."""
    from botocore.exceptions import ClientError

    bucket, key = split_s3_uri(uri)
    try:
        response = boto3.client("s3").get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{limit - 1}")
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return response["Body"].read()


def content_sha256(uri: str, chunk_bytes: int = 8 * 1024 * 1024) -> str:
    """The SHA-256 of the object's content, streamed (an ETag is no content hash under SSE-KMS
    or for a multipart upload)."""
    import hashlib

    bucket, key = split_s3_uri(uri)
    digest = hashlib.sha256()
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in iter(lambda: body.read(chunk_bytes), b""):
        digest.update(chunk)
    return digest.hexdigest()


def read_bytes(uri: str) -> bytes:
    bucket, key = split_s3_uri(uri)
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def presign_get(uri: str, expires_s: int) -> str:
    """A GET link to the object that works without AWS credentials until it expires.

    Signed with the caller's credentials: a link signed with temporary (role) credentials stops
    working when they expire, even before ``expires_s`` (SigV4 allows at most 7 days).
    """
    from botocore.config import Config

    bucket, key = split_s3_uri(uri)
    s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
    return s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=int(expires_s))


def delete_prefix(uri: str, keep: str | None = None) -> None:
    """Remove every object under ``uri`` (what an earlier attempt left behind), except those
    under ``keep``."""
    import awswrangler as wr

    paths = wr.s3.list_objects(uri)
    if keep:
        paths = [path for path in paths if not path.startswith(keep)]
    if paths:
        wr.s3.delete_objects(path=paths)


def read_table(uri: str, columns: list[str] | None = None):
    """A folder of parquet files, only the columns asked for (bounded memory in Lambda)."""
    import awswrangler as wr

    try:
        return wr.s3.read_parquet(path=uri, columns=columns, path_suffix=".parquet", ignore_empty=True)
    except wr.exceptions.NoFilesFound:
        raise FileNotFoundError(f"no parquet files under {uri}") from None


def stage_table(frame, uri: str) -> None:
    """Write a table's rows as the parquet files of folder ``uri``, replacing what was there
    (a previous attempt's files). Nothing reads them until a catalog partition points there."""
    import awswrangler as wr

    wr.s3.to_parquet(frame, path=uri, dataset=True, mode="overwrite", index=False)


def parquet_files(uri: str) -> list[str]:
    """The parquet files of a table's folder (empty when there are none)."""
    import awswrangler as wr

    return wr.s3.list_objects(uri, suffix=".parquet")


@contextmanager
def _naming(uri: str):
    """An object that went missing is named in the error (S3's NoSuchKey names no key)."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
            raise
        raise FileNotFoundError(f"{uri}: the object is gone (listed a moment before)") from exc


def copy_table(source: str, target: str, paths: list[str] | None = None) -> tuple[dict[str, str], int]:
    """Copy the parquet files of folder ``source`` (``paths``, when already listed) into folder
    ``target`` as they are, each streamed in parts (memory does not grow with the table, and no
    row is parsed); return the table's Athena column types and its row count, both read from the
    files' footers."""
    import awswrangler as wr

    paths = parquet_files(source) if paths is None else paths
    if not paths:
        raise FileNotFoundError(f"no parquet files under {source}")
    s3 = boto3.client("s3")
    target_bucket, target_key = split_s3_uri(target)
    rows = 0
    for path in paths:
        bucket, key = split_s3_uri(path)
        with _naming(path):
            rows += parquet_rows(bucket, key)
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            s3.upload_fileobj(body, target_bucket, target_key + path[len(source):])
    columns, _ = wr.s3.read_parquet_metadata(path=paths)
    return columns, rows


# A parquet file ends with its metadata, the metadata's length (4 bytes) and "PAR1".
_PARQUET_TAIL = 64 * 1024


def parquet_rows(bucket: str, key: str) -> int:
    """The row count in a parquet file's footer: one ranged read of its last 64 KiB (two when
    the footer is longer)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    s3 = boto3.client("s3")
    tail = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{_PARQUET_TAIL}")["Body"].read()
    if tail[-4:] != b"PAR1":
        raise ValueError(f"s3://{bucket}/{key}: not a parquet file (no PAR1 at its end)")
    footer = int.from_bytes(tail[-8:-4], "little") + 8
    if footer > len(tail):
        tail = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{footer}")["Body"].read()
    return pq.read_metadata(pa.BufferReader(tail[-footer:])).num_rows


def athena_columns(frame) -> dict[str, str]:
    """A frame's columns as the Athena types its parquet files get."""
    import awswrangler as wr

    columns, _ = wr.catalog.extract_athena_types(frame, index=False)
    return columns


def point_partition(columns: dict[str, str], database: str, table: str, table_location: str,
                    partition_location: str, run_id: str) -> str | None:
    """Make the catalog table's partition ``run_id`` point at ``partition_location`` (parquet
    files of ``columns``, name -> Athena type): the table is created, or its columns updated.
    Returns the partition's previous location, None when it is new. One catalog call switches
    what Athena reads for the run, so readers see the old rows or the new, never both."""
    import awswrangler as wr

    wr.catalog.create_parquet_table(
        database=database, table=table, path=table_location, columns_types=columns,
        partitions_types={PARTITION_COLUMN: "string"}, compression="snappy", mode="update",
    )
    glue = boto3.client("glue")
    previous = partition_location_of(database, table, run_id)
    descriptor = dict(glue.get_table(DatabaseName=database, Name=table)["Table"]["StorageDescriptor"])
    descriptor["Location"] = partition_location
    partition = {"Values": [run_id], "StorageDescriptor": descriptor}
    if previous is None:
        glue.create_partition(DatabaseName=database, TableName=table, PartitionInput=partition)
    else:
        glue.update_partition(DatabaseName=database, TableName=table, PartitionValueList=[run_id],
                              PartitionInput=partition)
    return previous


def restore_partition(database: str, table: str, run_id: str, location: str | None) -> None:
    """Undo ``point_partition``: point the partition back at ``location``, or remove it."""
    glue = boto3.client("glue")
    if location is None:
        try:
            glue.delete_partition(DatabaseName=database, TableName=table, PartitionValues=[run_id])
        except glue.exceptions.EntityNotFoundException:
            pass
        return
    partition = glue.get_partition(DatabaseName=database, TableName=table, PartitionValues=[run_id])["Partition"]
    descriptor = {**partition["StorageDescriptor"], "Location": location}
    glue.update_partition(DatabaseName=database, TableName=table, PartitionValueList=[run_id],
                          PartitionInput={"Values": [run_id], "StorageDescriptor": descriptor})


def partition_location_of(database: str, table: str, run_id: str) -> str | None:
    """Where the catalog says the run's rows of a table are, or None (no table or no partition)."""
    glue = boto3.client("glue")
    try:
        partition = glue.get_partition(DatabaseName=database, TableName=table, PartitionValues=[run_id])
    except glue.exceptions.EntityNotFoundException:
        return None
    return partition["Partition"]["StorageDescriptor"]["Location"]


def _with_partition(frame, run_id: str):
    return frame.assign(**{PARTITION_COLUMN: run_id})


def read_published_table(database: str, table: str, columns: list[str] | None = None):
    """Every run's rows of a catalog table, read where its partitions point (as Athena does), or
    None when the table has never been published."""
    import awswrangler as wr
    import pandas as pd

    if not wr.catalog.does_table_exist(database=database, table=table):
        return None
    partitions = wr.catalog.get_parquet_partitions(database=database, table=table)
    wanted = None if columns is None else [c for c in columns if c != PARTITION_COLUMN]
    frames = [_with_partition(read_table(location, columns=wanted), values[0])
              for location, values in sorted(partitions.items(), key=lambda item: item[1])]
    if not frames:
        return None
    out = pd.concat(frames, ignore_index=True)
    return out if columns is None else out[columns]


def read_published_run(database: str, table: str, run_id: str):
    """The run's rows of a catalog table, read where its partition points."""
    location = partition_location_of(database, table, run_id)
    if location is None:
        raise FileNotFoundError(f"{database}.{table} has no partition {PARTITION_COLUMN}={run_id}")
    return _with_partition(read_table(location), run_id)
