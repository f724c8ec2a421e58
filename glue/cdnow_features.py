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

For the Spark path's models (issue 18) the job also writes, when asked:

* ``--sample_uri`` and ``--sample_transactions_uri``: the models' sample. The model Lambdas fit
  on it, so their memory stays bounded whatever the number of customers. Every customer when
  there are at most ``--sample_customers`` (default DEFAULT_SAMPLE_CUSTOMERS), else about that
  many, drawn at one rate in every stratum of the segments' RFM grid (recency bins x purchase-day
  bins, 36 cells, copied from ``domain/segments.py``): a customer is drawn when a hash of its id
  falls below the rate, the same customers for the same data on every run and every cluster, with
  no sort of the customers. The sample's rows are customer_features rows plus ``stratum`` and
  ``sample_weight`` (the stratum's customers per drawn customer: post-stratification weights,
  which correct the draw's chance deviations); the sample's transactions are every row of the
  drawn customers, as the Transform wrote them, so each model computes its own windows, cutoffs
  and holdouts from them as the Lambda path does from all rows.
* ``--value_spend_uri``: per customer of the table, ``repeat_spend`` and ``gross_spend``, the two
  sums the value model needs beside customer_features (``clv.value_inputs_from`` defines them);
  the summary then says whether the log holds any return (``net_of_returns``), which decides how
  they are used.

For a dataset's run (``--history_plan_uri``: a delivery to a dataset, or a replay) the job first
computes the rows the run analyses, the dataset's history after the run, as the Features Lambda
does with ``layers/shared/cdnow/domain/history.py`` (read its docstring; the rules are restated
here as Spark filters and a join, and tests/unit/test_spark_features.py compares the two):

* the plan (a JSON object the Features Lambda wrote) lists the history's current data files (the
  Iceberg table's, which offline Spark cannot read as a table), the delivery (its id, key and
  whether it is a full snapshot) or the customers a replay erases, and where to write;
* a history row is replaced when it came under the delivery's key, or its order id is one the
  delivery carries, or the delivery is a snapshot; the delivery's rows join, tagged with it; a
  replay leaves out the erased customers' rows;
* the job works file by file: a history file holding a replaced (or erased) row leaves the
  history, and the job writes its other rows again, with the delivery's rows, under the history
  table's folder, in the history's types; every other file stays as it is, so a delivery that
  replaces nothing writes only its own rows, and a correction rewrites only the files it touches;
* the features and the models' files are then computed on the history after the run, and the
  summary's ``history`` gives the counts (those of ``domain.history.Combined.counts``, or a
  replay's) and what Publish commits (``files_uri`` if ``written``, ``removed_files``).

The summary also gives the log's first and last order dates (``first_order_date``,
``last_order_date``): the span of the history, which a model fitting on a sample needs.

Inputs: ``--transactions_uri`` (a prefix of parquet files with the Transform's TRANSACTION
columns; ``is_return`` and ``order_id`` may be absent), ``--analysis_date`` (YYYY-MM-DD, the
exclusive end of the window), ``--output_uri`` (the prefix the table's parquet files replace),
``--summary_uri`` (the s3:// key of the run's small JSON summary), optionally ``--run_id`` (for
log lines); for a dataset's run ``--history_plan_uri`` and ``--history_data_uri`` (the history's
data folder: every file the plan lists, and the folder it writes, are under it), and then
``--transactions_uri`` is the delivery's rows (none for a replay). Dates are written as the Lambda's writer (awswrangler, Spark flavor) writes them:
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
from datetime import date, datetime, timedelta

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

# The models' sample on the Spark path. Copied from layers/shared/cdnow/domain/segments.py
# (RECENCY_BINS, PURCHASE_DAYS_BINS: the lower bound of each bin; a test checks they are equal):
# a customer's stratum is its cell of the RFM grid, recency bin x len(PURCHASE_DAYS_LOWS) +
# purchase-days bin, as ``segments.sample_stratum`` numbers it.
RECENCY_LOWS = (1, 31, 91, 181, 366, 731)
PURCHASE_DAYS_LOWS = (1, 2, 3, 4, 6, 11)
# About this many customers at most: what the model Lambdas fit on (their memory is set for it).
DEFAULT_SAMPLE_CUSTOMERS = 200_000
# The hash's seed: a fixed value, so the same customers are drawn on every run.
SAMPLE_SEED = 18
_HASH_RANGE = 1 << 53
SAMPLE_COLUMNS = [*OUTPUT_COLUMNS, "stratum", "sample_weight"]
VALUE_SPEND_COLUMNS = ["customer_id", "repeat_spend", "gross_spend"]

# A dataset's history: its columns and types, copied from layers/shared/cdnow/adapters/history.py
# (the Iceberg table's schema; a test checks they are equal). The files the job writes for
# Publish to commit have exactly these.
HISTORY_SCHEMA = (("customer_id", "string"), ("order_date", "date"), ("quantity", "bigint"), ("amount", "double"),
                  ("is_return", "boolean"), ("order_id", "string"), ("delivery_id", "string"),
                  ("delivery_key", "string"))
# The history's own columns beside the Transform's (domain/history.py's DELIVERY_COLUMNS, copied):
# the models' sample transactions leave them out, as the Lambda path's rows have none.
DELIVERY_COLUMNS = ("delivery_id", "delivery_key")


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


def _per_customer(rows: DataFrame, end_day: int, with_orders: bool, with_spend: bool = False) -> DataFrame:
    """One row per customer in the window (buyers and return-only customers alike), from rows
    clustered by customer: every step groups by keys that start with customer_id, so none of
    them needs an exchange. ``with_spend`` adds ``gross_spend`` and ``repeat_spend``."""
    purchase = F.col("purchase")
    invalid = (F.col("customer_id").isNull() | F.col("day").isNull() | F.col("quantity").isNull()
               | F.col("amount").isNull())
    # The purchases' own amount (returns left out), for the value model's spend sums.
    purchase_amount = F.sum(F.when(purchase, F.col("amount"))).alias("purchase_amount")
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
            purchase_amount,
            F.count_if(invalid).alias("invalid"),
        )
        first_day_of_order = F.min("day").over(Window.partitionBy("customer_id", "order_id"))
        new_order = F.col("order_id").isNotNull() & (F.col("day") == first_day_of_order)
        days = lines.withColumn("new_order", new_order).groupBy("customer_id", "day").agg(
            F.sum("purchase_rows").alias("purchase_rows"),
            (F.sum("unnumbered") + F.count_if(F.col("new_order"))).alias("orders"),
            *day_sums,
            F.sum("purchase_amount").alias("purchase_amount"),
            F.sum("invalid").alias("invalid"),
        )
    else:
        # Without order ids every purchase row is an order.
        days = rows.groupBy("customer_id", "day").agg(
            F.count_if(purchase).alias("purchase_rows"),
            F.count_if(purchase).alias("orders"),
            *day_sums,
            purchase_amount,
            F.count_if(invalid).alias("invalid"),
        )
    purchase_day = F.when(F.col("purchase_rows") > 0, F.col("day"))
    # The purchase days' amounts in day order: the spend of all of them (gross_spend) and of all
    # but the first (repeat_spend), each summed day by day in day order, as the Lambda sums them.
    spend_by_day = F.array_sort(F.collect_list(F.when(F.col("purchase_rows") > 0,
                                                      F.struct(F.col("day"), F.col("purchase_amount")))))
    customers = days.groupBy("customer_id").agg(
        F.count(purchase_day).alias("purchase_days"),
        *([spend_by_day.alias("spend_by_day")] if with_spend else []),
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
    def spend_of(days: Column) -> Column:
        return F.aggregate(days, F.lit(0.0), lambda total, day: total + F.coalesce(day["purchase_amount"], F.lit(0.0)))

    spend = [
        spend_of(F.col("spend_by_day")).alias("gross_spend"),
        spend_of(F.slice("spend_by_day", 2, F.greatest(F.size("spend_by_day") - 1, F.lit(0)))).alias("repeat_spend"),
    ] if with_spend else []
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
        *spend,
    )


def customer_features(transactions: DataFrame, analysis_date, *,
                      partitions: int | None = None, with_spend: bool = False) -> tuple[DataFrame, dict]:
    """One row per customer with a purchase before ``analysis_date``, sorted by customer_id, and
    the counts {"customers", "customers_without_purchase"}. ``with_spend``: the frame also has
    ``repeat_spend`` and ``gross_spend`` (after OUTPUT_COLUMNS).

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
    customers = (_per_customer(clustered, end_day, with_orders, with_spend)
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
    columns = [*OUTPUT_COLUMNS, *(["repeat_spend", "gross_spend"] if with_spend else [])]
    features = customers.where(F.col("purchase_days") > 0).select(*columns)
    return features, {
        "customers": counts.customers,
        "customers_without_purchase": counts.customers_without_purchase,
    }


def _bin_of(value: Column, lows: Sequence[int]) -> Column:
    """The index of the last lower bound at or below ``value`` (below the first: 0), as
    ``segments.bin_codes`` computes it."""
    index = F.lit(0)
    for i, low in enumerate(lows[1:], start=1):
        index = F.when(value >= low, F.lit(i)).otherwise(index)
    return index


def sample_stratum(features: DataFrame) -> Column:
    """A customer's stratum: its cell of the segments' RFM grid, numbered as
    ``segments.sample_stratum`` numbers it."""
    return (_bin_of(F.col("recency_days"), RECENCY_LOWS) * len(PURCHASE_DAYS_LOWS)
            + _bin_of(F.col("purchase_days"), PURCHASE_DAYS_LOWS))


def model_sample(features: DataFrame, max_customers: int, seed: int = SAMPLE_SEED) -> tuple[DataFrame, dict]:
    """The customers the models fit on, and a summary of the draw.

    Every customer when there are at most ``max_customers``; else each customer whose hash of
    (``seed``, customer_id) falls below max_customers / customers, in every stratum alike (so the
    sample keeps each stratum's share up to chance). The rows are ``features``' OUTPUT_COLUMNS
    plus ``stratum`` and ``sample_weight``: the stratum's customers over its drawn customers.
    The summary: {"customers", "sampled", "rate", "strata": [{"stratum", "customers",
    "sampled"}, ...]}. Reads ``features`` twice (the strata's sizes, then the draw's): pass a
    checkpointed frame.
    """
    if max_customers < 1:
        raise ValueError(f"the models' sample needs at least one customer, got {max_customers}")
    with_stratum = features.select(*OUTPUT_COLUMNS).withColumn("stratum", sample_stratum(features))
    sizes = {row["stratum"]: row["count"] for row in with_stratum.groupBy("stratum").count().collect()}
    total = sum(sizes.values())
    rate = min(1.0, max_customers / total) if total else 1.0
    if rate < 1.0:
        draw = F.pmod(F.xxhash64(F.lit(seed), F.col("customer_id")), F.lit(_HASH_RANGE)) / float(_HASH_RANGE)
        drawn = with_stratum.where(draw < F.lit(rate)).localCheckpoint(eager=True)
        sampled = {row["stratum"]: row["count"] for row in drawn.groupBy("stratum").count().collect()}
    else:
        drawn, sampled = with_stratum, dict(sizes)
    weight = F.lit(None).cast("double")
    for stratum in sorted(sampled):
        weight = F.when(F.col("stratum") == stratum, F.lit(sizes[stratum] / sampled[stratum])).otherwise(weight)
    summary = {
        "customers": total,
        "sampled": sum(sampled.values()),
        "rate": rate,
        "strata": [{"stratum": int(s), "customers": sizes[s], "sampled": sampled.get(s, 0)} for s in sorted(sizes)],
    }
    return drawn.withColumn("stratum", F.col("stratum").cast("long")).withColumn("sample_weight", weight), summary


def as_history_rows(rows: DataFrame, delivery: dict | None = None, keep: Sequence[str] = ()) -> DataFrame:
    """``rows`` with exactly the history's columns and types (HISTORY_SCHEMA), then ``keep``; a
    column the rows lack is null, and with ``delivery`` ({"id", "key"}) every row is tagged with it."""
    tags = {"delivery_id": "id", "delivery_key": "key"} if delivery else {}
    columns = []
    for name, kind in HISTORY_SCHEMA:
        if name in tags:
            value = F.lit(delivery[tags[name]])
        elif name in rows.columns:
            value = F.to_date(F.col(name)) if kind == "date" else F.col(name)
        else:
            value = F.lit(None)
        columns.append(value.cast(kind).alias(name))
    return rows.select(*columns, *keep)


def history_after(history: DataFrame | None, delivery_rows: DataFrame | None, plan: dict) -> tuple[DataFrame | None, list[str], dict]:
    """The dataset's history after the run, as ``domain.history.combine`` (a delivery) or the
    Features Lambda's replay computes it, file by file: (the rows to write, the history's files
    they replace, the counts).

    ``history`` is the current history's rows with ``source_file``, the name of the file each
    came from (None when it has none); ``delivery_rows`` the delivery's accepted rows (None for
    a replay); ``plan`` gives ``delivery`` ({"id", "key", "snapshot"}) or ``erase_customers``.
    A file holding any replaced (or erased) row leaves the history and its other rows are
    written again, beside the delivery's rows; every other file stays as it is. The rows to
    write are None when there are none. The counts are ``Combined.counts``'s keys for a
    delivery, a replay's ("history_rows", "replayed", "erased_rows", "erased_customers")
    otherwise. One pass over the history for the counts and the files, one to write."""
    columns = [name for name, _ in HISTORY_SCHEMA]
    if plan.get("delivery") is None:
        erased_ids = sorted(set(plan.get("erase_customers") or ()))
        erased = F.col("customer_id").isin(erased_ids) if erased_ids else F.lit(False)
        row = history.agg(F.count_if(erased).alias("erased"), F.count(F.lit(1)).alias("rows"),
                          F.collect_set(F.when(erased, F.col("source_file"))).alias("files")).first()
        counts = {"history_rows": row["rows"] - row["erased"], "replayed": True, "erased_rows": row["erased"],
                  "erased_customers": len(erased_ids)}
        files = sorted(row["files"])
        rewritten = history.where(F.col("source_file").isin(files) & ~erased).select(*columns)
        return (rewritten if files else None), files, counts
    delivery = plan["delivery"]
    added = as_history_rows(delivery_rows, delivery)
    added_rows = added.count()
    if history is None or delivery["snapshot"]:
        if history is None:
            dropped, files = 0, []
        else:
            row = history.agg(F.count(F.lit(1)).alias("rows"), F.collect_set("source_file").alias("files")).first()
            dropped, files = row["rows"], sorted(row["files"])
        counts = {"history_rows_kept": 0, "replaced_by_key": 0, "replaced_by_order_id": 0,
                  "replaced_by_snapshot": dropped, "delivery_rows": added_rows, "history_rows": added_rows}
        return added, files, counts
    same_key = F.col("delivery_key") == F.lit(delivery["key"])
    numbered = added.where(F.col("order_id").isNotNull())
    if numbered.limit(1).count():
        # The delivery's order ids, as a join (a delivery may carry millions): a history row whose
        # order id is among them is replaced by the delivery's lines of that order.
        order_ids = numbered.select("order_id").distinct().withColumn("in_delivery", F.lit(True))
        marked = (history.join(order_ids, "order_id", "left")
                  .withColumn("same_order", F.coalesce(F.col("in_delivery"), F.lit(False))))
    else:  # rows without order ids are never replaced by order
        marked = history.withColumn("same_order", F.lit(False))
    replaced = same_key | F.col("same_order")
    row = marked.agg(
        F.count_if(~replaced).alias("kept"),
        F.count_if(same_key).alias("by_key"),
        F.count_if(F.col("same_order") & ~same_key).alias("by_order"),
        F.collect_set(F.when(replaced, F.col("source_file"))).alias("files"),
    ).first()
    counts = {"history_rows_kept": row["kept"], "replaced_by_key": row["by_key"],
              "replaced_by_order_id": row["by_order"], "replaced_by_snapshot": 0, "delivery_rows": added_rows,
              "history_rows": row["kept"] + added_rows}
    files = sorted(row["files"])
    if not files:
        return added, [], counts
    rewritten = marked.where(F.col("source_file").isin(files) & ~replaced).select(*columns)
    return rewritten.unionByName(added), files, counts


def read_plan(uri: str) -> dict:
    """A small JSON object the Features Lambda wrote (the history plan)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def write_history_files(spark: SparkSession, rows: DataFrame, path: str) -> None:
    """The rows Publish commits to the history, as parquet files under ``path`` (replacing what
    was there: a rerun's own), in the history's types and without field ids (Iceberg maps the
    columns by name)."""
    spark.sparkContext._jsc.hadoopConfiguration().set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
    rows.select(*[name for name, _ in HISTORY_SCHEMA]).write.mode("overwrite").parquet(path)


def sample_transactions(transactions: DataFrame, sample: DataFrame) -> DataFrame:
    """Every row of the sampled customers, as the Transform wrote it."""
    ids = sample.select(F.col("customer_id").alias("sampled_id"))
    return (transactions.join(F.broadcast(ids), F.col("customer_id").cast("string") == F.col("sampled_id"), "left_semi"))


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


def log_span(transactions: DataFrame) -> dict:
    """The log's rows, first and last order dates (any row, any date) and whether any row is a
    return: one pass over two columns."""
    has_returns = (F.count_if(F.coalesce(F.col("is_return").cast("boolean"), F.lit(False)))
                   if "is_return" in transactions.columns else F.lit(0))
    row = transactions.agg(F.count(F.lit(1)).alias("rows"), F.min(F.to_date("order_date")).alias("first"),
                           F.max(F.to_date("order_date")).alias("last"), has_returns.alias("returns")).first()
    return {
        "rows": row["rows"],
        "first_order_date": row["first"].isoformat() if row["first"] else None,
        "last_order_date": row["last"].isoformat() if row["last"] else None,
        "net_of_returns": bool(row["returns"]),
    }


def _argument_date(key: str, value: str) -> date:
    try:
        # Exactly YYYY-MM-DD (Python 3.11's fromisoformat would also take 19971001 or 1997-W40).
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--{key}: cannot read {value!r}; expected YYYY-MM-DD") from None


def default_analysis_date(last_order_date: str, latest_allowed_date: date | None) -> date:
    """A dataset's run without its own analysis date: the day after the last order of the history
    after the run, never later than the latest allowed date (``run_analysis_date``'s rule, copied
    from layers/shared/cdnow/domain/features.py; the Features Lambda checks the job's date by it)."""
    day_after_last = date.fromisoformat(last_order_date) + timedelta(days=1)
    return day_after_last if latest_allowed_date is None else min(day_after_last, latest_allowed_date)


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

    # A dataset's run reads the history through its plan; a replay has no delivery's rows.
    history_keys = ("history_plan_uri", "history_data_uri")
    given_history = [key for key in history_keys if given.get(key)]
    if given_history and len(given_history) != len(history_keys):
        raise ValueError("--history_plan_uri and --history_data_uri go together (a dataset's history)")
    # A dataset's analysis date may be left to the job: it depends on the history after the run.
    required = ("output_uri", "summary_uri", *([] if given_history else ["transactions_uri", "analysis_date"]))
    missing = [f"--{key}" for key in required if not given.get(key)]
    if missing:
        raise ValueError(f"missing job argument(s): {', '.join(missing)}")
    for key in ("output_uri", "summary_uri", *given_history):
        if not given[key].startswith("s3://"):
            raise ValueError(f"--{key} must be an s3:// URI, got {given[key]!r}")
    # The Spark path's models: the sample's two prefixes go together; the value spend is apart.
    sample_keys = ("sample_uri", "sample_transactions_uri")
    given_sample = [key for key in sample_keys if given.get(key)]
    if given_sample and len(given_sample) != len(sample_keys):
        raise ValueError("--sample_uri and --sample_transactions_uri go together (the models' sample)")
    prefixes = [*(["transactions_uri"] if given.get("transactions_uri") else []), "output_uri", *given_sample,
                *(["value_spend_uri"] if given.get("value_spend_uri") else []), *given_history[1:]]
    for key in prefixes:
        if not given[key].startswith("s3://"):
            raise ValueError(f"--{key} must be an s3:// URI, got {given[key]!r}")
        if not given[key].endswith("/"):
            raise ValueError(f"--{key} must be a prefix ending with '/', got {given[key]!r}")
    sample_customers = given.get("sample_customers", str(DEFAULT_SAMPLE_CUSTOMERS))
    if not sample_customers.isdigit() or int(sample_customers) < 1:
        raise ValueError(f"--sample_customers must be a whole number of customers, at least 1, got {sample_customers!r}")
    for key in ("summary_uri", *given_history[:1]):
        if given[key].endswith("/"):
            raise ValueError(f"--{key} must name an object, got {given[key]!r}")
    dates = {key: _argument_date(key, given[key]) if given.get(key) else None
             for key in ("analysis_date", "latest_allowed_date")}
    return {
        "transactions_uri": given.get("transactions_uri"),
        "history_plan_uri": given.get("history_plan_uri"),
        "history_data_uri": given.get("history_data_uri"),
        **dates,
        "output_uri": given["output_uri"],
        "summary_uri": given["summary_uri"],
        "run_id": given.get("run_id"),
        "sample_uri": given.get("sample_uri"),
        "sample_transactions_uri": given.get("sample_transactions_uri"),
        "sample_customers": int(sample_customers),
        "value_spend_uri": given.get("value_spend_uri"),
    }


def _history_after_run(spark: SparkSession, args: dict, spark_path: Callable[[str], str]) -> tuple[DataFrame, dict]:
    """A dataset's run: the history after it (``history_after``), written for Publish, and the
    rows the run analyses (the history after the run, read from the files it is made of). The
    summary's part: the counts, where the rows were written (``files_uri``, with ``written``)
    and the history's files they replace (``removed_files``)."""
    plan = read_plan(args["history_plan_uri"])
    data_uri, output_uri = args["history_data_uri"], plan["output_uri"]
    outside = [uri for uri in [*plan["files"], output_uri] if not uri.startswith(data_uri)]
    if outside:
        raise ValueError(f"{args['history_plan_uri']}: {outside[0]} is not under --history_data_uri {data_uri}")
    if plan.get("delivery") is not None and not args["transactions_uri"]:
        raise ValueError("--transactions_uri: a delivery's run needs the delivery's rows")
    if plan.get("delivery") is None and not plan["files"]:
        raise ValueError(f"{args['history_plan_uri']}: a replay needs the history's files, the plan lists none")
    # Each row knows its file by name (Spark's file metadata; offline the staged copy keeps it).
    by_name = {uri.rsplit("/", 1)[-1]: uri for uri in plan["files"]}
    if len(by_name) != len(plan["files"]):
        raise ValueError(f"{args['history_plan_uri']}: two of the history's files share a name")
    history = None
    if plan["files"]:
        stored = spark.read.parquet(*[spark_path(uri) for uri in plan["files"]])
        history = as_history_rows(stored.withColumn("source_file", F.col("_metadata.file_name")), keep=["source_file"])
    delivery_rows = spark.read.parquet(spark_path(args["transactions_uri"])) if plan.get("delivery") else None
    rows, removed, counts = history_after(history, delivery_rows, plan)
    if rows is not None:
        write_history_files(spark, rows, spark_path(output_uri))
    kept = [spark_path(uri) for name, uri in by_name.items() if name not in set(removed)]
    analysed = kept + ([spark_path(output_uri)] if rows is not None else [])
    return spark.read.parquet(*analysed), {**counts, "files_uri": output_uri, "written": rows is not None,
                                           "removed_files": [by_name[name] for name in removed]}


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
    source = args["history_plan_uri"] or args["transactions_uri"]  # what an error names
    history = None
    if args["history_plan_uri"]:
        transactions, history = _history_after_run(spark, args, spark_path)
    else:
        transactions = spark.read.parquet(spark_path(args["transactions_uri"]))
    for_models = bool(args["sample_uri"] or args["value_spend_uri"])
    # No column is read for the count alone (the files' row counts); the models also need the
    # log's span and whether it holds returns.
    span = log_span(transactions) if for_models else {"rows": transactions.count()}
    rows_read = span["rows"]
    if not rows_read:
        raise ValueError(f"{source}: no valid transactions to build features from")
    if analysis_date is None:
        if not for_models:
            span = log_span(transactions)
        analysis_date = default_analysis_date(span["last_order_date"], args["latest_allowed_date"])
    partitions = partitions_for(rows_read)
    with_spend = bool(args["value_spend_uri"])
    features, counts = customer_features(transactions, analysis_date, partitions=partitions, with_spend=with_spend)
    if not counts["customers"]:
        raise ValueError(f"{source}: no customer bought anything before the analysis date "
                         f"{analysis_date.isoformat()}")
    write_features(spark, features.select(*OUTPUT_COLUMNS), spark_path(args["output_uri"]))
    models = {}
    if with_spend:
        write_features(spark, features.select(*VALUE_SPEND_COLUMNS), spark_path(args["value_spend_uri"]))
        models["value_spend_uri"] = args["value_spend_uri"]
    if args["sample_uri"]:
        sample, drawn = model_sample(features, args["sample_customers"])
        write_features(spark, sample.select(*SAMPLE_COLUMNS), spark_path(args["sample_uri"]))
        with _lambda_compatible_parquet(spark):
            (sample_transactions(transactions.drop(*DELIVERY_COLUMNS), sample).write.mode("overwrite")
             .parquet(spark_path(args["sample_transactions_uri"])))
        models["sample"] = {**drawn, "customers_uri": args["sample_uri"],
                            "transactions_uri": args["sample_transactions_uri"]}
    if for_models:
        models.update({key: span[key] for key in ("first_order_date", "last_order_date", "net_of_returns")})
    summary = {
        "analysis_date": analysis_date.isoformat(),
        "rows_read": rows_read,
        "customers": counts["customers"],
        # Customers whose only rows in the window are returns: left out of the analysis.
        "customers_without_purchase": counts["customers_without_purchase"],
        "features_uri": args["output_uri"],
        "partitions": partitions,
        **({"models": models} if for_models else {}),
        **({"history": history} if history is not None else {}),
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
