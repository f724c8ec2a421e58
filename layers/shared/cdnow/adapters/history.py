"""A dataset's transaction history as an Apache Iceberg table in the Glue catalog (pyiceberg).

One table per dataset (``history_<dataset>`` in the stack's database, its files under
``datasets/<dataset>/history/`` of the curated bucket), so that different datasets never contend
for one table. A delivery joins the history as one Iceberg commit: the rows it replaces deleted
and its own rows appended in one transaction, so a reader (Athena, the next run) sees the history
before the delivery or after it, never half of it; older snapshots stay readable (time travel).

pyarrow's S3 client reads no AWS_ENDPOINT_URL and no per-thread credentials: both are given to
pyiceberg explicitly from boto3 (the endpoint is set only offline; on AWS it is absent).
Decision and measurements: docs/notes/iceberg-offline.md.
"""

from __future__ import annotations

import hashlib
import os
import re

import boto3

from ..domain.history import DELIVERY_COLUMNS, Replacement

TABLE_PREFIX = "history_"


def table_name(dataset: str) -> str:
    """A Glue table name for the dataset (lower-case letters, digits, underscores), with a short
    hash of the name so that "shop-eu" and "shop_eu" never share a table."""
    slug = re.sub(r"[^a-z0-9]+", "_", dataset.lower()).strip("_")[:60] or "dataset"
    return f"{TABLE_PREFIX}{slug}_{hashlib.sha256(dataset.encode()).hexdigest()[:6]}"


def table_location(curated_bucket: str, dataset: str) -> str:
    return f"s3://{curated_bucket}/datasets/{dataset}/history"


def _catalog(database: str):
    from pyiceberg.catalog import load_catalog

    # The default session: offline it resolves each thread's own role (identities.py); a new
    # Session would read the process's environment, i.e. the emulator's administrator.
    session = boto3._get_default_session()
    region = session.region_name or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    properties = {"type": "glue", "glue.region": region, "s3.region": region}
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:  # offline only
        properties.update({"glue.endpoint": endpoint, "s3.endpoint": endpoint})
    credentials = session.get_credentials().get_frozen_credentials()
    for service in ("glue", "s3"):
        properties[f"{service}.access-key-id"] = credentials.access_key
        properties[f"{service}.secret-access-key"] = credentials.secret_key
        if credentials.token:
            properties[f"{service}.session-token"] = credentials.token
    return load_catalog(f"cdnow-{database}", **properties)


def _schema():
    from pyiceberg.schema import Schema
    from pyiceberg.types import BooleanType, DateType, DoubleType, LongType, NestedField, StringType

    columns = [("customer_id", StringType()), ("order_date", DateType()), ("quantity", LongType()),
               ("amount", DoubleType()), ("is_return", BooleanType()), ("order_id", StringType()),
               *[(name, StringType()) for name in DELIVERY_COLUMNS]]
    return Schema(*[NestedField(i + 1, name, kind, required=False) for i, (name, kind) in enumerate(columns)])


def _arrow(frame):
    import pyarrow as pa

    schema = pa.schema([("customer_id", pa.string()), ("order_date", pa.date32()), ("quantity", pa.int64()),
                        ("amount", pa.float64()), ("is_return", pa.bool_()), ("order_id", pa.string()),
                        *[(name, pa.string()) for name in DELIVERY_COLUMNS]])
    frame = frame.assign(order_date=frame["order_date"].astype("datetime64[ms]").dt.date)
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def _load(database: str, dataset: str):
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return _catalog(database).load_table((database, table_name(dataset)))
    except NoSuchTableError:
        return None


def read_history(database: str, dataset: str):
    """The dataset's history as it is now (None before its first delivery)."""
    table = _load(database, dataset)
    if table is None:
        return None
    # As the Transform's rows read back (dates as date objects), so the two concatenate cleanly.
    return table.scan().to_arrow().to_pandas()


def current_snapshot(database: str, dataset: str) -> int | None:
    table = _load(database, dataset)
    snapshot = None if table is None else table.current_snapshot()
    return None if snapshot is None else snapshot.snapshot_id


def _writable(database: str, curated_bucket: str, dataset: str):
    """The dataset's table, made on its first delivery."""
    table = _load(database, dataset)
    if table is None:
        table = _catalog(database).create_table(
            (database, table_name(dataset)), schema=_schema(),
            location=table_location(curated_bucket, dataset),
            properties={"cdnow.dataset": dataset})
    return table


def current_files(database: str, dataset: str) -> tuple[list[str], int]:
    """The data files of the history as it is now, and their rows (([], 0) before its first
    delivery): what the Spark path reads instead of the table (offline Spark has no Iceberg
    reader). Listing the table's folder would also read replaced rows, which only older
    snapshots still refer to."""
    table = _load(database, dataset)
    if table is None or table.current_snapshot() is None:
        return [], 0
    tasks = list(table.scan().plan_files())
    with_deletes = [task.file.file_path for task in tasks if task.delete_files]
    if with_deletes:
        # pyiceberg writes none (its deletes rewrite files); another engine's merge-on-read deletes
        # would be ignored by a plain parquet read, so they are refused rather than misread.
        raise ValueError(f"the history of the dataset {dataset} has delete files beside {with_deletes[0]} (and "
                         f"{len(with_deletes) - 1} more data files): compact the table before a run reads it on Spark")
    return [task.file.file_path for task in tasks], sum(task.file.record_count for task in tasks)


def data_location(curated_bucket: str, dataset: str) -> str:
    """The table's data files' folder (pyiceberg's and the Spark path's alike)."""
    return f"{table_location(curated_bucket, dataset)}/data/"


def run_files_location(curated_bucket: str, dataset: str, run_id: str) -> str:
    """Where the Spark path's Features job writes the rows a run commits to the history (the
    delivery's, or the whole history after it), inside the table's own data folder: the table
    refers to them where they are written."""
    return f"{data_location(curated_bucket, dataset)}run_id={run_id}/"


def commit_files(database: str, curated_bucket: str, dataset: str, added: list[str], removed: list[str],
                 properties: dict[str, str]) -> int:
    """The Spark path's commit, one Iceberg commit: the history's ``removed`` data files leave it
    and the ``added`` parquet files (the history's columns) join it, as they are. No row is read
    here (the files' footers only), so the memory is flat at any size. A file to remove that the
    history no longer holds is an error: the table changed since the run planned. Returns the
    new snapshot id."""
    table = _writable(database, curated_bucket, dataset)
    with table.transaction() as transaction:
        if removed:
            leaving = set(removed)
            data_files = [task.file for task in table.scan().plan_files() if task.file.file_path in leaving]
            missing = leaving - {data_file.file_path for data_file in data_files}
            if missing:
                raise ValueError(f"the history of the dataset {dataset} no longer holds {sorted(missing)[0]} (and "
                                 f"{len(missing) - 1} more of the run's files): it changed since the run planned")
            with transaction.update_snapshot(snapshot_properties=properties).overwrite() as overwrite:
                for data_file in data_files:
                    overwrite.delete_data_file(data_file)
        if added:
            transaction.add_files(added, snapshot_properties=properties)
    return table.refresh().current_snapshot().snapshot_id


def commit_delivery(database: str, curated_bucket: str, dataset: str, rows, replacement: Replacement,
                    properties: dict[str, str]) -> int:
    """Join a delivery to the history in one Iceberg commit (the table is made on the first
    one): delete what ``replacement`` replaces, append ``rows``. Returns the new snapshot id."""
    from pyiceberg.expressions import AlwaysTrue, EqualTo, In, Or

    table = _writable(database, curated_bucket, dataset)
    if replacement.snapshot:
        replaced = AlwaysTrue()
    else:
        replaced = EqualTo("delivery_key", replacement.delivery_key)
        if replacement.order_ids:
            replaced = Or(replaced, In("order_id", set(replacement.order_ids)))
    with table.transaction() as transaction:
        if table.current_snapshot() is not None:
            transaction.delete(replaced, snapshot_properties=properties)
        transaction.append(_arrow(rows), snapshot_properties=properties)
    return table.refresh().current_snapshot().snapshot_id


def erase_customers(database: str, dataset: str, customer_ids, properties: dict[str, str]) -> int | None:
    """Delete every row of these customers from the history in one commit; the new snapshot id
    (None when the dataset has no history)."""
    from pyiceberg.expressions import In

    table = _load(database, dataset)
    if table is None or table.current_snapshot() is None:
        return None
    table.delete(In("customer_id", set(customer_ids)), snapshot_properties=properties)
    return table.refresh().current_snapshot().snapshot_id


def forget_earlier_snapshots(database: str, dataset: str) -> int:
    """Expire every snapshot but the current one and delete the files only they used (data files
    and manifests: rows and column bounds), so no time travel reaches what was deleted. Returns
    how many files were deleted. The metadata JSON files (locations and counts only) stay."""
    import awswrangler as wr

    table = _load(database, dataset)
    current = None if table is None else table.current_snapshot()
    if current is None:
        return 0
    earlier = [snapshot.snapshot_id for snapshot in table.snapshots() if snapshot.snapshot_id != current.snapshot_id]
    if earlier:
        table.maintenance.expire_snapshots().by_ids(earlier).commit()
    table = table.refresh()
    manifests = table.current_snapshot().manifests(table.io)
    kept = {table.current_snapshot().manifest_list, *(m.manifest_path for m in manifests)}
    kept.update(table.inspect.files().column("file_path").to_pylist())
    location = table.location().rstrip("/")
    stale = [uri for uri in wr.s3.list_objects(f"{location}/")
             if uri not in kept and not uri.endswith(".metadata.json")]
    if stale:
        wr.s3.delete_objects(path=stale)
    return len(stale)


def roll_back(database: str, dataset: str, snapshot_id: int | None) -> None:
    """Undo ``commit_delivery``: make ``snapshot_id`` (the snapshot before it) current again."""
    table = _load(database, dataset)
    if table is None or snapshot_id is None:
        return
    table.manage_snapshots().rollback_to_snapshot(snapshot_id).commit()
