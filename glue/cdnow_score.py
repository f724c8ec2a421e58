"""Glue job "Score": every customer scored by the fits the model steps made (issue 18's Spark path).

On the Spark path the model Lambdas fit on a bounded sample of customers (the Features job's
``model_sample``) and write their fits; this job applies them to every customer of
``customer_features`` and writes the three per-customer tables, with the aggregates the Lambdas
then summarize and chart, so that no Lambda reads a table that grows with the customers.

One implementation of each formula: the job calls the shared layer's own scoring functions
(``segments.score_segments``, ``churn.score_churn``, ``clv.score_value``) on each partition with
``mapInPandas``; it restates none of them in Spark SQL. Each of them scores a row from that row
and the fit alone, so a partition's rows are the rows the Lambda path gives the same customers.
The ``cdnow`` package reaches Glue as the job's ``--extra-py-files`` zip (the Features Lambda
uploads its own copy, content-addressed), and numpy, pandas, pyarrow, scipy and scikit-learn
as ``--additional-python-modules`` at the model images' pins (a test checks they are equal), so
the driver and every executor run the code and the libraries the Lambdas run.

Inputs: ``--features_uri`` (the run's customer_features prefix), ``--fits_uri`` (a prefix with
``segment.json``, ``churn.bin`` and ``value.json``: the fits the model steps wrote; a model whose
fit is absent was skipped and is not scored), ``--value_spend_uri`` (the Features job's value
spend per customer) with ``--net_of_returns`` (true/false, the Features job's), the outputs
``--segments_uri``, ``--churn_uri``, ``--value_uri``, ``--profiles_uri`` (prefixes the tables'
parquet files replace; the last is segment_profiles), ``--migration_uri`` (segment_migration's
prefix, written when ``--previous_run_id`` and ``--previous_segments_uri`` name the published run
and customer_segments files to compare with), ``--simulation_sample_uri`` (a prefix: the
value inputs and segment of the customers the segments' value intervals are simulated on,
``clv.segment_value_from_sample``) and ``--summary_uri`` (the s3:// key of the job's JSON
summary), optionally ``--run_id``.

The summary holds, per model scored, the rows written and every aggregate the model step then
reports and charts, so that step reads no customer's row: churn's ``churn_score_summary``
figures; value's ``value_totals`` figures, ``chart_data`` (``figures.value_chart_data``) and the
segments' ``segment_totals``; the segments per segment and what
``segments.segmentation_from_aggregates`` takes (the rfm cells, the overall means, the cluster
statistics and split). Counts are exact; sums and means equal the Lambda path's up to the
order of summation.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import boto3
import numpy as np
import pandas as pd
from cdnow.domain import churn, clv, segments
from cdnow.domain.defaults import FIT_FILES
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StructField, StructType
from pyspark.sql.window import Window

log = logging.getLogger("cdnow.score")

MODELS = ("segment", "churn", "value")
OUTPUT_ARGUMENTS = {"segment": "segments_uri", "churn": "churn_uri", "value": "value_uri"}
# The segments' profiles (a few rows) beside the scored customers.
PROFILES_ARGUMENT = "profiles_uri"

# The tables' columns and Spark types: the Lambda path's tables (segments.SEGMENT_TABLE_COLUMNS,
# churn.SCORE_COLUMNS, clv.CUSTOMER_VALUE_COLUMNS), in their order.
_SPARK_TYPES = {"customer_id": "string", "segment_name": "string", "segment_rank": "bigint", "cluster": "bigint",
                "risk_band": "string"}


def _schema(columns: Sequence[str]) -> str:
    return ", ".join(f"{name} {_SPARK_TYPES.get(name, 'string' if name.startswith('top_driver') else 'double')}"
                     for name in columns)


SEGMENT_COLUMNS = list(segments.SEGMENT_TABLE_COLUMNS)
CHURN_COLUMNS = list(churn.SCORE_COLUMNS)
VALUE_COLUMNS = list(clv.CUSTOMER_VALUE_COLUMNS)


def s3_bytes(uri: str) -> bytes | None:
    """The object's bytes, or None when there is none (a skipped model wrote no fit)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3")
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


def _scored(frame: DataFrame, scorer: Callable[[], Callable[[pd.DataFrame], pd.DataFrame]],
            columns: list[str]) -> DataFrame:
    """Each partition's rows scored a pandas batch at a time by the function ``scorer()`` makes
    (once per partition: it loads the fit), as a frame of ``columns``."""
    def batches(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        score = scorer()
        for batch in frames:
            yield score(batch)[columns]

    return frame.mapInPandas(batches, schema=_schema(columns))


def score_segments(features: DataFrame, fit_json: bytes) -> DataFrame:
    """customer_segments of every customer of ``features``, by the fit ``SegmentFit.to_dict``
    wrote, with each customer's ``cluster`` (what the cluster table groups by; not written)."""
    def scorer():
        fit = segments.SegmentFit.from_dict(json.loads(fit_json))
        return lambda batch: segments.score_segments(batch, fit, with_cluster=True)

    return _scored(features.select(*segments.SCORE_COLUMNS), scorer, [*SEGMENT_COLUMNS, "cluster"])


def with_cell(features: DataFrame, *columns: str) -> DataFrame:
    """customer_id and ``columns`` of ``features`` with each customer's recency x purchase-days
    cell (``segments.sample_stratum``: the rfm grid's and the P(alive) matrix's cells), computed
    by the layer's own function on each partition (no join)."""
    frame = features.select("customer_id", "recency_days", "purchase_days", *columns)

    def cells(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in frames:
            yield batch.assign(cell=segments.sample_stratum(batch))

    # A new schema: StructType.add would change the frame's own.
    return frame.mapInPandas(cells, schema=StructType([*frame.schema.fields, StructField("cell", LongType())]))


def segment_aggregates(scored: DataFrame, features: DataFrame, fit_json: bytes) -> dict:
    """What ``segments.segmentation_from_aggregates`` needs beside the profiles: per cell the
    customers and revenue in whole cents, every profile-index feature's mean over all customers,
    and per cluster the statistics of ``segments._cluster_stats`` and its customers per segment."""
    fit = segments.SegmentFit.from_dict(json.loads(fit_json))
    size = len(segments.RECENCY_BINS) * len(segments.PURCHASE_DAYS_BINS)
    cents = F.rint(F.col("monetary_total") * 100.0).cast("long")
    by_cell = {row["cell"]: row for row in with_cell(features, "monetary_total").groupBy("cell").agg(
        F.count(F.lit(1)).alias("customers"), F.sum(cents).alias("revenue_cents")).collect()}
    means = features.agg(*[F.avg(F.col(name).cast("double")).alias(name)
                           for name in segments.PROFILE_INDEX_FEATURES]).first()
    active = fit.thresholds.active_days
    established = ((F.col("recency_days") <= active) & (F.col("tenure_days") > active)).cast("double")
    rows = scored.select("customer_id", "cluster", "segment_name").join(
        features.select("customer_id", "recency_days", "purchase_days", "tenure_days", "monetary_total"),
        "customer_id")
    stats = {row["cluster"]: row for row in rows.groupBy("cluster").agg(
        F.count(F.lit(1)).alias("customers"),
        F.avg(F.col("monetary_total").cast("double")).alias("mean_monetary_total"),
        F.avg(F.col("purchase_days").cast("double")).alias("mean_purchase_days"),
        F.percentile(F.col("recency_days").cast("double"), F.lit(0.5)).alias("median_recency_days"),
        F.avg(established).alias("established_active_share")).collect()}
    code = {name: j for j, name in enumerate(segments.SEGMENT_NAMES)}
    split = [[0] * len(segments.SEGMENT_NAMES) for _ in range(fit.n_clusters)]
    for row in rows.groupBy("cluster", "segment_name").count().collect():
        split[row["cluster"]][code[row["segment_name"]]] = int(row["count"])

    def number(value):
        return None if value is None else float(value)

    return {
        "cells": {"customers": [int(by_cell[c]["customers"]) if c in by_cell else 0 for c in range(size)],
                  "revenue_cents": [int(by_cell[c]["revenue_cents"]) if c in by_cell else 0 for c in range(size)]},
        "overall_means": {name: number(means[name]) for name in segments.PROFILE_INDEX_FEATURES},
        "clusters": [{"customers": int(stats[c]["customers"]) if c in stats else 0,
                      **{name: number(stats[c][name]) if c in stats else None
                         for name in segments.CLUSTER_STATISTICS[1:]}}
                     for c in range(fit.n_clusters)],
        "cluster_split": split,
    }


def score_churn(features: DataFrame, fit_bytes: bytes) -> DataFrame:
    """churn_scores of every customer of ``features``, by the fit ``ChurnFit.to_bytes`` wrote."""
    def scorer():
        fit = churn.ChurnFit.from_bytes(fit_bytes)
        return lambda batch: churn.score_churn(batch, fit)

    return _scored(features, scorer, CHURN_COLUMNS)


def score_value(inputs: DataFrame, net_of_returns: bool, fit_json: bytes) -> DataFrame:
    """customer_value of every customer of ``inputs`` (``value_inputs``), by the fit
    ``ValueFit.to_dict`` wrote (``clv.value_inputs_from`` per batch)."""
    def scorer():
        fit = clv.ValueFit.from_dict(json.loads(fit_json))
        return lambda batch: clv.score_value(clv.value_inputs_from(batch, net_of_returns), fit)

    return _scored(inputs, scorer, VALUE_COLUMNS)


def value_inputs(features: DataFrame, spend: DataFrame) -> DataFrame:
    """Every customer's columns ``clv.value_inputs_from`` reads: customer_features' with the
    Features job's value spend. What score_value scores and the simulation sample is drawn from."""
    columns = ["customer_id", "frequency", "recency", "T", "monetary_total"]
    return features.select(*columns).join(spend.select("customer_id", "repeat_spend", "gross_spend"),
                                          "customer_id", "left")


def value_chart_data(scored: DataFrame, features: DataFrame) -> dict:
    """``figures.value_chart_data``'s dict from group-bys: the CLV histogram against edges from
    the largest clv_12m (each partition counted with ``clv.clv_histogram_counts``, the counts
    summed) and per cell the customers and their P(alive)'s sum."""
    size = len(segments.RECENCY_BINS) * len(segments.PURCHASE_DAYS_BINS)
    edges = clv.clv_histogram_edges(float(scored.agg(F.max("clv_12m")).first()[0]))
    bins = len(edges) - 1

    def histogram(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        counts = np.zeros(bins, dtype=np.int64)
        for batch in frames:
            counts += clv.clv_histogram_counts(batch["clv_12m"].to_numpy(dtype=np.float64), edges)
        yield pd.DataFrame({"bin": np.arange(bins, dtype=np.int64), "customers": counts})

    counts = {row["bin"]: int(row["customers"]) for row in scored.select("clv_12m").mapInPandas(
        histogram, schema="bin bigint, customers bigint").groupBy("bin").agg(
        F.sum("customers").alias("customers")).collect()}
    cells = {row["cell"]: row for row in scored.select("customer_id", "p_alive").join(
        with_cell(features).select("customer_id", "cell"), "customer_id").groupBy("cell").agg(
        F.count(F.lit(1)).alias("customers"), F.sum("p_alive").alias("p_alive_sum")).collect()}
    return {
        "clv_edges": edges.tolist(),
        "clv_counts": [counts.get(b, 0) for b in range(bins)],
        "cell_customers": [int(cells[c]["customers"]) if c in cells else 0 for c in range(size)],
        "cell_p_alive_sum": [float(cells[c]["p_alive_sum"]) if c in cells else 0.0 for c in range(size)],
    }


def segment_value_inputs(scored: DataFrame, segments_scored: DataFrame, inputs: DataFrame,
                         net_of_returns: bool, sample_path: str) -> list[dict]:
    """What ``clv.segment_value_from_sample`` needs: per segment the customers and the sum of
    their clv_12m (returned), and the value inputs with segment_name of a sample drawn per
    segment (``clv.segment_sample_size`` customers of each, those first in a hash of their id:
    uniform within the segment), written to ``sample_path`` in customer_id order."""
    labelled = scored.select("customer_id", "clv_12m").join(
        segments_scored.select("customer_id", "segment_name"), "customer_id", "left").fillna(
        {"segment_name": clv.NO_SEGMENT})
    totals = [{"segment_name": row["segment_name"], "customers": int(row["customers"]),
               "expected_clv_12m": float(row["expected_clv_12m"])}
              for row in labelled.groupBy("segment_name").agg(
                  F.count(F.lit(1)).alias("customers"), F.sum("clv_12m").alias("expected_clv_12m")).collect()]
    totals.sort(key=lambda row: row["segment_name"])
    everyone = sum(row["customers"] for row in totals)
    take = {row["segment_name"]: clv.segment_sample_size(row["customers"], everyone) for row in totals}
    rank = F.row_number().over(Window.partitionBy("segment_name").orderBy(F.xxhash64("customer_id"), "customer_id"))
    limit = F.create_map(*[F.lit(x) for name, n in take.items() for x in (name, n)])
    drawn = labelled.select("customer_id", "segment_name")
    if everyone > clv.MAX_SIMULATED_CUSTOMERS:
        drawn = drawn.withColumn("rank", rank).where(F.col("rank") <= limit[F.col("segment_name")]).drop("rank")

    def rows(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in frames:
            inputs = clv.value_inputs_from(batch, net_of_returns)
            yield inputs.astype({name: "float64" for name in clv.VALUE_INPUT_COLUMNS[1:]}).assign(
                segment_name=batch["segment_name"].to_numpy())[[*clv.VALUE_INPUT_COLUMNS, "segment_name"]]

    schema = ", ".join(f"{name} {'string' if name == 'customer_id' else 'double'}"
                       for name in clv.VALUE_INPUT_COLUMNS) + ", segment_name string"
    sample = inputs.join(drawn, "customer_id").mapInPandas(rows, schema=schema)
    sample.orderBy("customer_id").coalesce(1).write.mode("overwrite").parquet(sample_path)
    return totals


def segment_migration(spark: SparkSession, previous: DataFrame, scored: DataFrame, previous_run_id: str,
                      path: str) -> dict:
    """The segment_migration table (``segments.segment_migration``'s rows, with previous_run_id)
    from the previous run's customer_segments and this run's, written to ``path``: customers per
    (from_segment, to_segment) pair, those only in one run from or to its placeholder. Returns
    {"previous_run_id", "customers_moved", "rows"}."""
    before = previous.select(F.col("customer_id").cast("string").alias("customer_id"),
                             F.col("segment_name").cast("string").alias("from_segment"))
    after = scored.select("customer_id", F.col("segment_name").alias("to_segment"))
    pairs = before.join(after, "customer_id", "full_outer").select(
        F.coalesce("from_segment", F.lit(segments.NOT_IN_PREVIOUS)).alias("from_segment"),
        F.coalesce("to_segment", F.lit(segments.NOT_IN_CURRENT)).alias("to_segment"))
    counted = pairs.groupBy("from_segment", "to_segment").agg(F.count(F.lit(1)).alias("customers")).toPandas()
    table = pd.DataFrame({
        "from_segment": counted["from_segment"].astype("str"),
        "to_segment": counted["to_segment"].astype("str"),
        "customers": counted["customers"].astype("int64"),
    }).sort_values(["from_segment", "to_segment"]).reset_index(drop=True)
    table["previous_run_id"] = previous_run_id
    spark.createDataFrame(table).coalesce(1).write.mode("overwrite").parquet(path)
    moved = table.loc[table["from_segment"] != table["to_segment"], "customers"].sum()
    return {"previous_run_id": previous_run_id, "customers_moved": int(moved), "rows": len(table)}


def segment_profiles(scored: DataFrame, features: DataFrame) -> pd.DataFrame:
    """The segment_profiles table (``segments.segment_profiles`` with the recency status, as
    ``segmentation_from_scores`` makes it): one row per segment with customers, rank order.
    Sums, means and exact medians (``percentile``: the middle value, or the mean of the two
    middle values, as pandas' median) in one aggregation; the few rows are finished here."""
    features = features.select("customer_id", *segments.PROFILE_FEATURES)
    rows = scored.select("customer_id", "segment_name", "segment_rank").join(features, "customer_id")
    # Whole cents, rounded half to even as numpy rounds, summed exactly as integers.
    cents = F.rint(F.col("monetary_total") * 100.0).cast("long")
    aggregates = [F.count(F.lit(1)).alias("customers"), F.sum(cents).alias("revenue_cents")]
    for name in segments.PROFILE_FEATURES:
        value = F.col(name).cast("double")
        aggregates += [F.avg(value).alias(f"mean_{name}"), F.percentile(value, F.lit(0.5)).alias(f"median_{name}")]
    grouped = rows.groupBy("segment_name", "segment_rank").agg(*aggregates).toPandas()
    table = grouped.sort_values("segment_rank").reset_index(drop=True)
    customers = table["customers"].astype("int64")
    revenue_cents = table["revenue_cents"].astype("int64")
    total_cents = int(revenue_cents.sum())
    profiles = pd.DataFrame({
        "segment_name": table["segment_name"].astype("str"),
        "segment_rank": table["segment_rank"].astype("int64"),
        "recency_status": table["segment_name"].map(segments.STATUS_OF_SEGMENT).astype("str"),
        "customers": customers,
        "customer_share": customers / int(customers.sum()),
        "revenue_cents": revenue_cents,
        "revenue": revenue_cents / 100.0,
        "revenue_share": revenue_cents / total_cents if total_cents else float("nan"),
    })
    for name in segments.PROFILE_FEATURES:
        for stat in ("mean", "median"):
            profiles[f"{stat}_{name}"] = table[f"{stat}_{name}"].astype("float64").to_numpy()
    return profiles


def churn_summary(scored: DataFrame) -> dict:
    """``churn.churn_score_summary``'s figures, as one aggregation over the scored table."""
    bands = [F.count_if(F.col("risk_band") == band).alias(band) for band in churn.RISK_BANDS]
    row = scored.agg(F.count(F.lit(1)).alias("n"), F.avg("churn_probability").alias("mean"), *bands).first()
    n = int(row["n"])
    return {
        "n_scored": n,
        "mean_churn_probability": float(row["mean"]),
        **{f"share_{band}_risk": row[band] / n for band in reversed(churn.RISK_BANDS)},
    }


def value_summary(scored: DataFrame, features: DataFrame) -> dict:
    """``clv.value_totals``'s figures, as one aggregation over the scored table (the repeat
    buyers counted from the features)."""
    row = scored.agg(F.count(F.lit(1)).alias("n"), F.avg("p_alive").alias("mean_p_alive"),
                     F.sum("expected_purchases_365d").alias("purchases"), F.sum("clv_12m").alias("total"),
                     F.avg("clv_12m").alias("mean")).first()
    repeat = features.where(F.col("frequency") > 0).count()
    return {
        "n_customers": int(row["n"]),
        "n_repeat_buyers": int(repeat),
        "mean_p_alive": float(row["mean_p_alive"]),
        "total_expected_purchases_365d": float(row["purchases"]),
        "total_clv_12m": float(row["total"]),
        "mean_clv_12m": float(row["mean"]),
    }


def parse_args(argv: Sequence[str]) -> dict:
    """Job arguments from Glue's ``--key value`` list (keys Glue adds itself are ignored)."""
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
    prefixes = ("features_uri", "fits_uri", "value_spend_uri", *OUTPUT_ARGUMENTS.values(), PROFILES_ARGUMENT,
                "simulation_sample_uri", "migration_uri")
    missing = [f"--{key}" for key in (*prefixes, "summary_uri", "net_of_returns") if not given.get(key)]
    if missing:
        raise ValueError(f"missing job argument(s): {', '.join(missing)}")
    for key in prefixes:
        if not re.fullmatch(r"s3://[^/]+/.*/", given[key]):
            raise ValueError(f"--{key} must be an s3:// prefix ending with '/', got {given[key]!r}")
    if not given["summary_uri"].startswith("s3://") or given["summary_uri"].endswith("/"):
        raise ValueError(f"--summary_uri must name an s3:// object, got {given['summary_uri']!r}")
    previous = [key for key in ("previous_run_id", "previous_segments_uri") if given.get(key)]
    if len(previous) == 1:
        raise ValueError("--previous_run_id and --previous_segments_uri go together (the run segment_migration "
                         "compares with)")
    if previous and not re.fullmatch(r"s3://[^/]+/.*/", given["previous_segments_uri"]):
        raise ValueError(f"--previous_segments_uri must be an s3:// prefix ending with '/', "
                         f"got {given['previous_segments_uri']!r}")
    if given["net_of_returns"] not in ("true", "false"):
        raise ValueError(f"--net_of_returns must be true or false, got {given['net_of_returns']!r}")
    return {**{key: given[key] for key in (*prefixes, "summary_uri")},
            "net_of_returns": given["net_of_returns"] == "true", "run_id": given.get("run_id"),
            "previous_run_id": given.get("previous_run_id"), "previous_segments_uri": given.get("previous_segments_uri")}


def segment_figures(spark: SparkSession, scored: DataFrame, features: DataFrame, profiles_path: str) -> dict:
    """Writes segment_profiles; the scored rows and the customers per segment, read off it:
    {"rows", "segments": {name: {"rank", "customers"}}}."""
    profiles = segment_profiles(scored, features)
    spark.createDataFrame(profiles).coalesce(1).write.mode("overwrite").parquet(profiles_path)
    return {"rows": int(profiles["customers"].sum()),
            "segments": {row.segment_name: {"rank": int(row.segment_rank), "customers": int(row.customers)}
                         for row in profiles.itertuples()}}


def _write(frame: DataFrame, path: str) -> DataFrame:
    """The table's parquet files under ``path`` (replacing a rerun's), read back: the scoring
    runs once, and the counts and aggregates read the files."""
    frame.write.mode("overwrite").parquet(path)
    return frame.sparkSession.read.parquet(path)


def main(
    argv: Sequence[str] | None = None,
    spark: SparkSession | None = None,
    spark_path: Callable[[str], str] = lambda uri: uri,
) -> dict:
    """Run the job; ``spark_path`` maps an s3:// URI to what Spark reads (identity on Glue)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if spark is None:
        spark = SparkSession.builder.getOrCreate()
    # Readers list a table's prefix and should find only data files there.
    spark.sparkContext._jsc.hadoopConfiguration().set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
    features = spark.read.parquet(spark_path(args["features_uri"]))
    fits = {model: s3_bytes(args["fits_uri"] + FIT_FILES[model]) for model in MODELS}
    tables: dict[str, DataFrame] = {}
    if fits["segment"] is not None:
        tables["segment"] = score_segments(features, fits["segment"])
    if fits["churn"] is not None:
        tables["churn"] = score_churn(features, fits["churn"])
    if fits["value"] is not None:
        inputs = value_inputs(features, spark.read.parquet(spark_path(args["value_spend_uri"])))
        tables["value"] = score_value(inputs, args["net_of_returns"], fits["value"])
    summary: dict = {"customers": features.count(), "scored": {}}
    written: dict[str, DataFrame] = {}
    for model, table in tables.items():
        started = time.monotonic()
        uri = args[OUTPUT_ARGUMENTS[model]]
        if model == "segment":
            # The cluster is what the cluster table groups by; the table has no such column.
            table = table.persist(StorageLevel.MEMORY_AND_DISK)
            table.drop("cluster").write.mode("overwrite").parquet(spark_path(uri))
            written[model] = table
        else:
            written[model] = _write(table, spark_path(uri))
        # Each model's figures: aggregations over its written table, which count its rows too.
        if model == "segment":
            figures = {**segment_figures(spark, written[model], features, spark_path(args[PROFILES_ARGUMENT])),
                       "profiles_uri": args[PROFILES_ARGUMENT],
                       **segment_aggregates(written[model], features, fits["segment"])}
            if args["previous_segments_uri"]:
                previous = spark.read.parquet(spark_path(args["previous_segments_uri"]))
                figures["migration"] = {**segment_migration(spark, previous, written[model], args["previous_run_id"],
                                                            spark_path(args["migration_uri"])),
                                        "uri": args["migration_uri"]}
        elif model == "churn":
            figures = churn_summary(written[model])
            figures["rows"] = figures["n_scored"]
        else:
            figures = value_summary(written[model], features)
            figures["rows"] = figures["n_customers"]
            figures["chart_data"] = value_chart_data(written[model], features)
            if "segment" in written:
                figures["segment_totals"] = segment_value_inputs(
                    written[model], written["segment"], inputs, args["net_of_returns"],
                    spark_path(args["simulation_sample_uri"]))
                figures["simulation_sample_uri"] = args["simulation_sample_uri"]
        # Wall seconds of its scoring, writing and aggregations (progress on long work).
        figures["seconds"] = round(time.monotonic() - started, 1)
        log.info("run_id=%s %s scored: %s rows in %.1f s", args["run_id"], model, figures["rows"], figures["seconds"])
        summary["scored"][model] = {"uri": uri, **figures}
    if "segment" in written:
        written["segment"].unpersist()
    bucket, _, key = args["summary_uri"].removeprefix("s3://").partition("/")
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(summary, indent=2).encode(),
                                  ContentType="application/json")
    log.info("run_id=%s score summary %s", args["run_id"], json.dumps(summary))
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    main(sys.argv[1:])
