"""Glue job "Features": per-customer features of a large transaction log, in Spark.

The second path of the Features step (issue 18): a run too large for one Lambda computes its
customer_features table here, from the Transform's rows (or the dataset's history), instead of
in the Features Lambda. The table is the Lambda's, row for row and column for column:
``layers/shared/cdnow/domain/features.py`` holds the definitions (read its docstring); this
module restates them as Spark SQL aggregations, and tests/unit/test_spark_features.py compares
the two on the CDNOW files and on hand-made edge cases. The script runs alone on Glue 5.0 (plain
PySpark and boto3, nothing from the layer), so the column list and the definitions are copied,
not imported: a change to one side must be made on the other, and the comparison tests fail
until it is.

The definitions, briefly: only rows with ``order_date < analysis_date`` count. A return
(``is_return``) nets into ``quantity_total`` and ``monetary_total`` but makes no purchase day and
no order; a customer whose rows in the window are all returns is left out and counted
(``customers_without_purchase``). ``orders`` counts a customer's distinct order ids among their
purchase rows, and a purchase row without an order id as an order of its own (so without order
ids every purchase row is an order). A purchase day is a (customer, day) pair of a purchase row.
``monetary_total`` is the sum of the amounts rounded to cents as numpy rounds (``rint(x * 100) /
100``); ``avg_days_between_purchases`` is null for a customer with one purchase day (the Lambda's
NaN, which its parquet stores as null); ``T = tenure_days - 1``. Rows are sorted by customer_id as
text (bytewise, as arrow sorts).

The plan: one shuffle. The window's rows are range-partitioned on customer_id (one partition,
without any shuffle, for a log of up to ROWS_PER_PARTITION rows), so every customer's rows are in
one partition, in key order across partitions. Every later step groups by keys that begin with
customer_id and so needs no exchange: by (customer, day) first, which folds same-day lines into
one row, then by customer. With order ids the first step groups by (customer, day, order id), and
each order is counted on its first day (a window over the customer's orders, a sort within the
partition) rather than with two distinct counts, which Spark would plan as an expansion of the rows
and two more shuffles. The sort by customer_id is a sort within each range partition, in the same
plan. The customers' rows (O(customers)) are kept by a local checkpoint so that the counts and the
write read them, not the log; the job writes one sorted file per partition, the files in key
order.

Inputs: ``--transactions_uri`` (a prefix of parquet files with the Transform's TRANSACTION
columns; ``is_return`` and ``order_id`` may be absent), ``--analysis_date`` (YYYY-MM-DD, the
exclusive end of the window), ``--output_uri`` (the prefix the table's parquet files replace),
``--summary_uri`` (the s3:// key of the run's small JSON summary), optionally ``--run_id`` (for
log lines). Dates are written as the Lambda's writer (awswrangler, Spark flavor) writes them:
INT96 timestamps at midnight, which pyarrow and pandas read as naive ``timestamp[ns]``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime

import boto3
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

log = logging.getLogger("cdnow.features")

# Copied from layers/shared/cdnow/domain/features.py (Glue cannot import the layer): the input
# columns the features need, and the table's columns in table order.
REQUIRED_COLUMNS = ("customer_id", "order_date", "quantity", "amount")
FEATURE_COLUMNS = [
    "recency_days",
    "purchase_days",
    "repeat_purchases",
    "orders",
    "monetary_total",
    "monetary_avg_per_purchase",
    "quantity_total",
    "tenure_days",
    "avg_days_between_purchases",
    "frequency",
    "recency",
    "T",
]
OUTPUT_COLUMNS = ["customer_id", "first_purchase_date", "last_purchase_date", *FEATURE_COLUMNS]

# Transaction rows per partition (and so per output file): a log of up to this many rows is
# aggregated in one partition with no shuffle at all; a larger one is range-partitioned on
# customer_id. The Transform's ROWS_PER_OUTPUT_FILE, copied (its script is not imported).
ROWS_PER_PARTITION = 2_000_000
# 70 M rows make 35 partitions; past 64 a partition grows instead (a few million customers each
# still aggregate in an executor's memory).
MAX_PARTITIONS = 64

_EPOCH = date(1970, 1, 1)
_SECONDS_PER_DAY = 86_400


def partitions_for(rows: int) -> int:
    """Partitions (and output files) for a log of ``rows`` transaction rows."""
    return max(1, min(MAX_PARTITIONS, math.ceil(rows / ROWS_PER_PARTITION)))


def _as_date(value) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    raise TypeError(f"analysis_date must be a date, got {value!r}")


def _window_rows(transactions: DataFrame, analysis_day: date) -> tuple[DataFrame, bool]:
    """The rows before ``analysis_day``, typed as the features need them (the day as days since
    1970-01-01), and whether order ids are to be counted; rows with a missing value are kept, to
    be counted."""
    missing = [c for c in REQUIRED_COLUMNS if c not in transactions.columns]
    if missing:
        raise ValueError(f"transactions lack column(s) {missing}; need {list(REQUIRED_COLUMNS)}")
    customer_id = F.col("customer_id").cast("string")
    order_day = F.to_date(F.col("order_date"))  # a date column as it is (a filter parquet can use)
    day = F.unix_date(order_day).cast("long")
    purchase: Column = F.lit(True)
    if "is_return" in transactions.columns:
        purchase = ~F.coalesce(F.col("is_return").cast("boolean"), F.lit(False))
    # Without any order id, every purchase row is an order: the (customer, day) pre-aggregation
    # then needs no order key and the customer aggregation no distinct count. With parquet the
    # probe reads only the order_id column, and skips row groups whose statistics say all null.
    with_orders = "order_id" in transactions.columns and bool(
        transactions.where(F.col("order_id").isNotNull()).limit(1).count())
    columns = [
        customer_id.alias("customer_id"),
        day.alias("day"),
        F.col("quantity").cast("long").alias("quantity"),
        F.col("amount").cast("double").alias("amount"),
        purchase.alias("purchase"),
    ]
    if with_orders:
        # A purchase's order id; a return's never makes an order.
        columns.append(F.when(purchase, F.col("order_id").cast("string")).alias("order_id"))
    # A row with a missing value goes on to be counted (the Lambda refuses such a log); a null day
    # compares as null, so it is let through by name.
    in_window = (order_day < F.lit(analysis_day)) | order_day.isNull()
    return transactions.where(in_window).select(*columns), with_orders


def _per_customer(rows: DataFrame, end_day: int, with_orders: bool) -> DataFrame:
    """One row per customer in the window (buyers and return-only customers alike), from rows
    clustered by customer: every step groups by keys that start with customer_id, so none of
    them needs an exchange."""
    purchase = F.col("purchase")
    invalid = (F.col("customer_id").isNull() | F.col("day").isNull() | F.col("quantity").isNull()
               | F.col("amount").isNull())
    day_sums = [F.sum("quantity").alias("quantity"), F.sum("amount").alias("amount")]
    if with_orders:
        # A customer's distinct order ids and distinct purchase days are two distinct counts over
        # different keys: Spark would expand the rows once per count and shuffle them by the new
        # keys. Instead each order is counted on its first day (a window over the customer's
        # orders: a sort within the partition), and the days are then grouped as without ids.
        lines = rows.groupBy("customer_id", "day", "order_id").agg(
            F.count_if(purchase).alias("purchase_rows"),
            # Purchases without an order id: orders of their own.
            F.count_if(purchase & F.col("order_id").isNull()).alias("unnumbered"),
            *day_sums,
            F.count_if(invalid).alias("invalid"),
        )
        first_day_of_order = F.min("day").over(Window.partitionBy("customer_id", "order_id"))
        new_order = F.col("order_id").isNotNull() & (F.col("day") == first_day_of_order)
        days = lines.withColumn("new_order", new_order).groupBy("customer_id", "day").agg(
            F.sum("purchase_rows").alias("purchase_rows"),
            (F.sum("unnumbered") + F.count_if(F.col("new_order"))).alias("orders"),
            *day_sums,
            F.sum("invalid").alias("invalid"),
        )
    else:
        # Without order ids every purchase row is an order.
        days = rows.groupBy("customer_id", "day").agg(
            F.count_if(purchase).alias("purchase_rows"),
            F.count_if(purchase).alias("orders"),
            *day_sums,
            F.count_if(invalid).alias("invalid"),
        )
    purchase_day = F.when(F.col("purchase_rows") > 0, F.col("day"))
    customers = days.groupBy("customer_id").agg(
        F.count(purchase_day).alias("purchase_days"),
        F.sum("orders").alias("orders"),
        F.min(purchase_day).alias("first_day"),
        F.max(purchase_day).alias("last_day"),
        F.sum("quantity").alias("quantity_total"),
        F.sum("amount").alias("amount_total"),
        F.sum("invalid").alias("invalid"),
    )
    first, last = F.col("first_day"), F.col("last_day")
    repeat_purchases = F.col("purchase_days") - 1
    recency = last - first
    tenure_days = F.lit(end_day) - first
    # numpy's round(x, 2): rint(x * 100) / 100, ties to even; the same operations on doubles.
    monetary_total = F.rint(F.col("amount_total") * 100.0) / 100.0
    return customers.select(
        "customer_id",
        # Midnight UTC of the day, whatever the session's time zone: the instant pandas' naive
        # datetime stands for when the Lambda's writer stores it.
        F.timestamp_seconds(first * _SECONDS_PER_DAY).alias("first_purchase_date"),
        F.timestamp_seconds(last * _SECONDS_PER_DAY).alias("last_purchase_date"),
        (F.lit(end_day) - last).alias("recency_days"),
        F.col("purchase_days"),
        repeat_purchases.alias("repeat_purchases"),
        F.col("orders").cast("long").alias("orders"),
        monetary_total.alias("monetary_total"),
        (monetary_total / F.col("purchase_days")).alias("monetary_avg_per_purchase"),
        F.col("quantity_total"),
        tenure_days.alias("tenure_days"),
        # One purchase day has no interval: null (the Lambda's NaN, stored as null), never 0.
        F.when(repeat_purchases > 0, recency / repeat_purchases).alias("avg_days_between_purchases"),
        repeat_purchases.alias("frequency"),
        recency.alias("recency"),
        (tenure_days - 1).alias("T"),
        F.col("invalid"),
    )


def customer_features(transactions: DataFrame, analysis_date, *,
                      partitions: int | None = None) -> tuple[DataFrame, dict]:
    """One row per customer with a purchase before ``analysis_date``, sorted by customer_id, and
    the counts {"customers", "customers_without_purchase"}.

    The frame has OUTPUT_COLUMNS with the Lambda's types (customer_id string, the two dates as
    timestamps at midnight UTC, counts long, money double). ``partitions`` (default: from the
    rows, ``partitions_for``; an extra count of the input) is the number of range partitions of
    the work and of the frame. Runs the aggregation once (the counts need it) and keeps the
    customers' rows (O(customers)) for the frame."""
    analysis_day = _as_date(analysis_date)
    end_day = (analysis_day - _EPOCH).days
    rows, with_orders = _window_rows(transactions, analysis_day)
    if partitions is None:
        partitions = partitions_for(transactions.count())
    # One partition: no exchange at all (a single partition is clustered by any key).
    clustered = rows.coalesce(1) if partitions == 1 else rows.repartitionByRange(partitions, "customer_id")
    # The sort by customer_id is within partitions (the key ranges are already in order), in the
    # same plan as the aggregation: a plan that starts from stored rows no longer knows their
    # partitioning and would shuffle them again. The customers' rows (O(customers)) are then kept
    # by a local checkpoint, so that the counts and the write read them instead of the log; it
    # keeps each partition's row order, and its blocks go when no frame refers to them any more
    # (no unpersist for the caller to remember). Unlike a cache it has no lineage: an executor
    # lost before the write fails the job, which is then retried whole.
    customers = (_per_customer(clustered, end_day, with_orders)
                 .orderBy("customer_id")
                 .localCheckpoint(eager=True))
    counts = customers.agg(
        F.count_if(F.col("purchase_days") > 0).alias("customers"),
        F.count_if(F.col("purchase_days") == 0).alias("customers_without_purchase"),
        F.sum("invalid").alias("invalid"),
    ).first()
    if counts.invalid:
        # The Lambda checks every row; here the window's rows, the only ones the features read.
        raise ValueError(f"transactions have {counts.invalid} row(s) with missing values in "
                         f"{list(REQUIRED_COLUMNS)}; validate rows upstream")
    # A filter and a projection keep the checkpoint's order: rows in customer_id order within each
    # partition, partitions in key order (what a write or a collect gives; Spark itself does not
    # know the frame is sorted, so a later orderBy would sort it again).
    features = customers.where(F.col("purchase_days") > 0).select(*OUTPUT_COLUMNS)
    return features, {
        "customers": counts.customers,
        "customers_without_purchase": counts.customers_without_purchase,
    }


@contextmanager
def _lambda_compatible_parquet(spark: SparkSession) -> Iterator[None]:
    """Timestamps written as the Lambda's writer writes them (awswrangler's Spark flavor: INT96,
    proleptic Gregorian), the session's settings restored after (offline, jobs share one)."""
    settings = {
        "spark.sql.parquet.outputTimestampType": "INT96",
        "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
    }
    before = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def write_features(spark: SparkSession, features: DataFrame, path: str) -> None:
    """The table's parquet files under ``path``, replacing what was there (a rerun's own)."""
    # Readers list a table's prefix and should find only data files there (as the Transform).
    spark.sparkContext._jsc.hadoopConfiguration().set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
    with _lambda_compatible_parquet(spark):
        features.write.mode("overwrite").parquet(path)


def parse_args(argv: Sequence[str]) -> dict:
    """Job arguments from Glue's ``--key value`` list (as the Transform reads them; keys Glue adds
    itself are ignored)."""
    given: dict[str, str] = {}
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("--"):
            continue
        key, has_value, value = token[2:].partition("=")
        if not has_value:
            if i < len(tokens) and not tokens[i].startswith("--"):
                value = tokens[i]
                i += 1
            else:
                value = "true"
        given[key] = value

    required = ("transactions_uri", "analysis_date", "output_uri", "summary_uri")
    missing = [f"--{key}" for key in required if not given.get(key)]
    if missing:
        raise ValueError(f"missing job argument(s): {', '.join(missing)}")
    for key in ("transactions_uri", "output_uri", "summary_uri"):
        if not given[key].startswith("s3://"):
            raise ValueError(f"--{key} must be an s3:// URI, got {given[key]!r}")
    for key in ("transactions_uri", "output_uri"):
        if not given[key].endswith("/"):
            raise ValueError(f"--{key} must be a prefix ending with '/', got {given[key]!r}")
    if given["summary_uri"].endswith("/"):
        raise ValueError(f"--summary_uri must name an object, got {given['summary_uri']!r}")
    try:
        # Exactly YYYY-MM-DD (Python 3.11's fromisoformat would also take 19971001 or 1997-W40).
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", given["analysis_date"]):
            raise ValueError
        analysis_date = date.fromisoformat(given["analysis_date"])
    except ValueError:
        raise ValueError(f"--analysis_date: cannot read {given['analysis_date']!r}; expected YYYY-MM-DD") from None
    return {
        "transactions_uri": given["transactions_uri"],
        "analysis_date": analysis_date,
        "output_uri": given["output_uri"],
        "summary_uri": given["summary_uri"],
        "run_id": given.get("run_id"),
    }


def main(
    argv: Sequence[str] | None = None,
    spark: SparkSession | None = None,
    spark_path: Callable[[str], str] = lambda uri: uri,
) -> dict:
    """Run the job; ``spark_path`` maps an s3:// URI to what Spark reads (identity on Glue)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # A session passed in belongs to the caller (offline, several jobs share one): never stop it.
    if spark is None:
        spark = SparkSession.builder.getOrCreate()
    run_id, analysis_date = args["run_id"], args["analysis_date"]
    transactions = spark.read.parquet(spark_path(args["transactions_uri"]))
    # No column is read for the count: the files' row counts.
    rows_read = transactions.count()
    if not rows_read:
        raise ValueError(f"{args['transactions_uri']}: no valid transactions to build features from")
    partitions = partitions_for(rows_read)
    features, counts = customer_features(transactions, analysis_date, partitions=partitions)
    if not counts["customers"]:
        raise ValueError(f"{args['transactions_uri']}: no customer bought anything before the analysis date "
                         f"{analysis_date.isoformat()}")
    write_features(spark, features, spark_path(args["output_uri"]))
    summary = {
        "analysis_date": analysis_date.isoformat(),
        "rows_read": rows_read,
        "customers": counts["customers"],
        # Customers whose only rows in the window are returns: left out of the analysis.
        "customers_without_purchase": counts["customers_without_purchase"],
        "features_uri": args["output_uri"],
        "partitions": partitions,
    }
    bucket, _, key = args["summary_uri"].removeprefix("s3://").partition("/")
    boto3.client("s3").put_object(
        Bucket=bucket, Key=key, Body=json.dumps(summary, indent=2).encode(), ContentType="application/json",
    )
    log.info("run_id=%s features summary %s", run_id, json.dumps(summary))
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    main(sys.argv[1:])
