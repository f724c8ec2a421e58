"""Glue job "Transform": raw transaction log -> typed, validated parquet plus a quarantine.

Runs unchanged on AWS Glue 5.0 (plain PySpark, no ``awsglue``) and in-process offline, where
the Glue adapter calls ``main(argv, spark=shared_session, spark_path=staging_mapper)``.

Every physical line after the header is exactly one row, either accepted or quarantined with
a reason code, so ``read == accepted + quarantined`` always holds and a bad row can be traced
back to its line in the file.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass
from datetime import date
from typing import Callable, Sequence

import boto3
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

log = logging.getLogger("cdnow.transform")

# Reason codes in the order they are checked: a row is reported with the first one it fails.
REASONS = (
    "blank_line",
    "wrong_field_count",
    "missing_customer_id",
    "invalid_date",
    "date_out_of_range",
    "invalid_quantity",
    "invalid_amount",
)

DEFAULT_MIN_DATE = date(1900, 1, 1)
DEFAULT_MAX_DATE = date(2100, 12, 31)
DEFAULT_MAX_BAD_SHARE = 0.05

# Column names a CSV header may use for each field, matched case-insensitively; an earlier
# alias wins when a header carries two of them (e.g. both "customer_id" and "id").
CSV_COLUMN_ALIASES = {
    "customer_id": ("customer_id", "customer", "cust_id", "id"),
    "order_date": ("date", "order_date", "purchase_date"),
    "quantity": ("quantity", "qty", "cds"),
    "amount": ("price", "amount", "dollars", "dollar_value", "revenue", "sales"),
}

# About 20 MB of parquet per file: a handful of files even for a 10M-row log.
ROWS_PER_OUTPUT_FILE = 2_000_000
MAX_OUTPUT_FILES = 8

TRANSACTION_COLUMNS = ("customer_id", "order_date", "quantity", "amount", "line_number")
QUARANTINE_COLUMNS = ("line_number", "raw_line", "reason", "source_uri")

_BOM = "\ufeff"
# monotonically_increasing_id() puts the partition index above bit 33, the row's position
# within its partition below.
_ROW_IN_PARTITION_BITS = 33


@dataclass(frozen=True)
class Format:
    """Where each field sits in a row of one input format (0-based field positions)."""

    name: str  # "cdnow_master" | "cdnow_sample" | "csv"
    field_count: int
    customer_field: int
    date_field: int
    quantity_field: int
    amount_field: int

    @property
    def has_header(self) -> bool:
        return self.name == "csv"


CDNOW_MASTER = Format("cdnow_master", 4, customer_field=0, date_field=1, quantity_field=2, amount_field=3)
# The sample's second field is its own renumbered id; the master id is the customer.
CDNOW_SAMPLE = Format("cdnow_sample", 5, customer_field=0, date_field=2, quantity_field=3, amount_field=4)


def detect_format(first_line: str, source: str) -> Format:
    """The format of a file, from its first non-blank line (the header for CSV)."""
    line = first_line.lstrip(_BOM).rstrip("\r\n")
    if "," in line:
        return _csv_format(line, source)
    tokens = line.split()
    if len(tokens) == 4 and _is_yyyymmdd(tokens[1]):
        return CDNOW_MASTER
    if len(tokens) == 5 and _is_yyyymmdd(tokens[2]):
        return CDNOW_SAMPLE
    raise ValueError(
        f"{source}: unrecognized first line {line[:80]!r}: expected a CDNOW fixed-width row "
        "(customer_id YYYYMMDD quantity amount, optionally with a sample id) or a CSV header"
    )


def _is_yyyymmdd(token: str) -> bool:
    return len(token) == 8 and token.isascii() and token.isdigit()


def _csv_format(header: str, source: str) -> Format:
    names = [re.sub(r"[\s\-]+", "_", name.strip().strip('"').strip().lower()) for name in header.split(",")]
    positions, missing = {}, []
    for role, aliases in CSV_COLUMN_ALIASES.items():
        found = next((names.index(alias) for alias in aliases if alias in names), None)
        if found is None:
            missing.append(f"{role} (one of {', '.join(aliases)})")
        positions[role] = found
    if missing:
        raise ValueError(
            f"{source}: CSV header {header[:80]!r} has no column for {'; '.join(missing)}"
        )
    return Format(
        "csv",
        len(names),
        customer_field=positions["customer_id"],
        date_field=positions["order_date"],
        quantity_field=positions["quantity"],
        amount_field=positions["amount"],
    )


@dataclass(frozen=True)
class NumberedLines:
    lines: DataFrame  # line_number long, raw_line string
    line_count: int
    first_nonblank_line_number: int | None
    first_nonblank_line: str | None


def read_lines(spark: SparkSession, input_path: str, source: str) -> NumberedLines:
    """The file's lines with their 1-based physical line numbers.

    One pass over the file counts the lines of each split; the returned frame reads the file
    again. zipWithIndex would send every line through Python; this does the same in the JVM. A
    line's number is the count of lines in earlier splits of the file plus its position in its
    own split. The offsets are keyed by the split's byte offset, not by partition index, so if
    a later pass re-plans the scan (e.g. Glue autoscaling changed the default parallelism) a
    line either keeps its correct number or gets none, which ``transform`` turns into an error.
    """
    # Split on LF only, so that line numbers are what `wc -l` and editors count; CR is
    # stripped below. Hadoop's reader already drops a UTF-8 BOM; stripping it is a safeguard.
    text = spark.read.option("lineSep", "\n").text(input_path)
    files = text.inputFiles()
    if len(files) != 1:
        raise ValueError(f"{source}: expected exactly one input file, found {len(files)}")
    tagged = text.select(
        F.monotonically_increasing_id().alias("row_id"),
        F.input_file_block_start().alias("split_start"),
        F.regexp_replace("value", r"^\uFEFF|\r\z", "").alias("raw_line"),
    )
    partition = F.shiftright("row_id", _ROW_IN_PARTITION_BITS)
    row_in_partition = F.col("row_id").bitwiseAND((1 << _ROW_IN_PARTITION_BITS) - 1)
    nonblank_row = F.when(~F.col("raw_line").rlike(r"^\s*$"), row_in_partition)
    splits = (
        tagged.groupBy(partition.alias("partition"))
        .agg(
            F.count(F.lit(1)).alias("lines"),
            F.min("split_start").alias("split_start"),
            F.max("split_start").alias("last_split_start"),
            F.min(nonblank_row).alias("first_nonblank_row"),
            F.min_by("raw_line", nonblank_row).alias("first_nonblank_line"),
        )
        .collect()
    )
    splits.sort(key=lambda split: split.split_start)
    # Spark gives each split of a single file its own partition; numbering relies on that.
    if any(split.split_start != split.last_split_start for split in splits):
        raise RuntimeError(f"{source}: a partition holds several splits of the file; cannot number its lines")

    offsets, line_count = {}, 0
    first_number = first_line = None
    for split in splits:
        offsets[split.split_start] = line_count
        if first_number is None and split.first_nonblank_row is not None:
            first_number = line_count + split.first_nonblank_row + 1
            first_line = split.first_nonblank_line
        line_count += split.lines

    offset_of_split = F.create_map(*[F.lit(v) for item in offsets.items() for v in item])
    offset_of_split = offset_of_split.cast("map<bigint,bigint>")
    lines = tagged.select(
        (offset_of_split[F.col("split_start")] + row_in_partition + 1).alias("line_number"),
        "raw_line",
    )
    return NumberedLines(lines, line_count, first_number, first_line)


def parse_transactions(
    spark: SparkSession,
    lines_df: DataFrame,
    fmt: Format,
    source_uri: str,
    min_date: date,
    max_date: date,
) -> DataFrame:
    """Typed rows with a ``reason`` (null when the row is valid) from ``line_number, raw_line``.

    ``lines_df`` holds data rows only (no CSV header); ``spark`` is unused, kept so every step
    of the job takes the session first. Regular expressions decide validity, and every cast
    runs only on text they accepted, so ANSI mode cannot fail the job on a bad row.
    Each step is its own projection: Spark keeps projections apart when merging them would
    copy an expensive expression into each use (one merged tree was measured 3x slower).
    """
    if fmt.name == "csv":
        fields = F.split("raw_line", ",", -1)
    else:
        fields = F.split(F.regexp_replace("raw_line", r"^\s+|\s+$", ""), r"\s+", -1)

    def field(position: int) -> Column:
        # get() gives null past the end even under ANSI mode.
        token = F.get(F.col("fields"), position)
        if fmt.name == "csv":
            # Padding and quotes around a CSV value are not part of it.
            token = F.regexp_extract(token, r'^\s*"?(.*?)"?\s*$', 1)
        return F.coalesce(token, F.lit(""))

    date_digits = F.col("date_text")
    if fmt.name == "csv":
        date_digits = F.regexp_replace(date_digits, r"^(\d{4})-(\d{2})-(\d{2})$", "$1$2$3")

    tokens = (
        lines_df.select(
            F.col("line_number").cast("long").alias("line_number"),
            "raw_line",
            fields.alias("fields"),
        )
        .select(
            "line_number",
            "raw_line",
            F.col("raw_line").rlike(r"^\s*$").alias("is_blank"),
            F.size("fields").alias("field_count"),
            field(fmt.customer_field).alias("customer_id"),
            field(fmt.date_field).alias("date_text"),
            field(fmt.quantity_field).alias("quantity_text"),
            field(fmt.amount_field).alias("amount_text"),
        )
        .withColumn("date_digits", F.when(date_digits.rlike(r"^\d{8}$"), date_digits))
    )

    year, month, day = F.col("year"), F.col("month"), F.col("day")
    leap_year = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    days_in_month = (
        F.when(month == 2, F.when(leap_year, 29).otherwise(28))
        .when(month.isin(4, 6, 9, 11), 30)
        .otherwise(31)
    )
    # Checked arithmetically rather than by to_date: Spark 3's default parser policy raises
    # on strings such as 19970230 that the legacy parser would have rolled over.
    dated = (
        tokens.withColumns(
            {
                "year": F.substring("date_digits", 1, 4).cast("int"),
                "month": F.substring("date_digits", 5, 2).cast("int"),
                "day": F.substring("date_digits", 7, 2).cast("int"),
            }
        )
        .withColumn(
            "is_real_date",
            F.coalesce(month.between(1, 12) & day.between(F.lit(1), days_in_month), F.lit(False)),
        )
        .withColumn("order_date", F.when(F.col("is_real_date"), F.make_date(year, month, day)))
    )

    # An integral quantity may arrive as "2.0" from a spreadsheet; a sign is never valid.
    quantity_is_valid = F.col("quantity_text").rlike(r"^\d{1,18}(\.0*)?$")
    amount_is_valid = F.col("amount_text").rlike(r"^(\d+(\.\d*)?|\.\d+)$")
    reason = (
        F.when(F.col("is_blank"), "blank_line")
        .when(F.col("field_count") != fmt.field_count, "wrong_field_count")
        .when(F.col("customer_id") == "", "missing_customer_id")
        .when(~F.col("is_real_date"), "invalid_date")
        .when(~F.col("order_date").between(F.lit(min_date), F.lit(max_date)), "date_out_of_range")
        .when(~quantity_is_valid, "invalid_quantity")
        .when(~amount_is_valid, "invalid_amount")
    )
    return dated.select(
        "line_number",
        "raw_line",
        "customer_id",
        "order_date",
        F.when(quantity_is_valid, F.regexp_extract("quantity_text", r"^(\d+)", 1).cast("long"))
        .alias("quantity"),
        F.when(amount_is_valid, F.col("amount_text").cast("double")).alias("amount"),
        reason.alias("reason"),
        F.lit(source_uri).alias("source_uri"),
    )


def transform(
    spark: SparkSession,
    input_path: str,
    transactions_path: str,
    quarantine_path: str,
    *,
    run_id: str,
    source_uri: str,
    min_date: date = DEFAULT_MIN_DATE,
    max_date: date = DEFAULT_MAX_DATE,
    max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
) -> dict:
    """Read, validate and write one input file; the run summary, or ValueError for a bad file."""
    numbered = read_lines(spark, input_path, source_uri)
    if numbered.line_count == 0:
        raise ValueError(f"{source_uri}: empty file (no lines)")
    if numbered.first_nonblank_line is None:
        raise ValueError(f"{source_uri}: empty file ({numbered.line_count} lines, all blank)")
    fmt = detect_format(numbered.first_nonblank_line, source_uri)
    header_line_number = numbered.first_nonblank_line_number if fmt.has_header else 0
    if fmt.has_header and numbered.line_count == header_line_number:
        raise ValueError(f"{source_uri}: header only, no data rows")

    # A line left unnumbered must reach the count below, which rejects it, not vanish here.
    line_number = F.col("line_number")
    data_lines = numbered.lines.where(line_number.isNull() | (line_number > header_line_number))
    parsed = parse_transactions(spark, data_lines, fmt, source_uri, min_date, max_date).cache()
    try:
        # One pass fills the cache and gives every count and the date span; both writes then
        # read the cache. A global aggregate, not a groupBy: no shuffle stage for 8 numbers.
        accepted_date = F.when(F.col("reason").isNull(), F.col("order_date"))
        counts = parsed.agg(
            F.count_if(F.col("reason").isNull()).alias("accepted"),
            F.count_if(F.col("line_number").isNull()).alias("unnumbered"),
            F.min(accepted_date).alias("first_order_date"),
            F.max(accepted_date).alias("last_order_date"),
            *[F.count_if(F.col("reason") == reason).alias(reason) for reason in REASONS],
        ).first()
        if counts.unnumbered:
            raise RuntimeError(f"{source_uri}: the file's splits changed between passes; rerun the job")

        accepted = counts.accepted
        by_reason = {reason: counts[reason] for reason in REASONS if counts[reason]}
        quarantined = sum(by_reason.values())
        read = accepted + quarantined
        log.info(
            "run_id=%s %s: format %s, %d rows read, %d quarantined",
            run_id, source_uri, fmt.name, read, quarantined,
        )  # fmt: skip

        # Readers list a table's prefix and should find only data files there.
        hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
        hadoop_conf.set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        # The quarantine is written even when the file is then rejected: it is what explains
        # the rejection. The summary is not, so a rejected run leaves no sign of success.
        (
            parsed.where(F.col("reason").isNotNull())
            .select(*QUARANTINE_COLUMNS)
            .coalesce(1)
            .write.mode("overwrite")
            .parquet(quarantine_path)
        )
        bad_share = quarantined / read
        if bad_share > max_bad_share:
            top = sorted(by_reason.items(), key=lambda item: -item[1])[:3]
            top_reasons = ", ".join(f"{reason}={rows}" for reason, rows in top)
            raise ValueError(
                f"{source_uri}: {quarantined} of {read} rows quarantined ({bad_share:.2%}), "
                f"above max_bad_share {max_bad_share:.2%}; top reasons: {top_reasons}"
            )
        output_files = max(1, min(MAX_OUTPUT_FILES, -(-accepted // ROWS_PER_OUTPUT_FILE)))
        (
            parsed.where(F.col("reason").isNull())
            .select(*TRANSACTION_COLUMNS)
            .coalesce(output_files)
            .write.mode("overwrite")
            .parquet(transactions_path)
        )
    finally:
        parsed.unpersist()

    return {
        "run_id": run_id,
        "source_uri": source_uri,
        "format": fmt.name,
        "read": read,
        "accepted": accepted,
        "quarantined": quarantined,
        "by_reason": by_reason,
        "first_order_date": _iso(counts.first_order_date),
        "last_order_date": _iso(counts.last_order_date),
        "max_bad_share": max_bad_share,
    }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def parse_args(argv: Sequence[str]) -> dict:
    """Job arguments from Glue's ``--key value`` list; keys Glue adds itself are ignored."""
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

    missing = [f"--{key}" for key in ("run_id", "input_uri", "run_prefix") if not given.get(key)]
    if missing:
        raise ValueError(f"missing job argument(s): {', '.join(missing)}")
    for key in ("input_uri", "run_prefix"):
        if not given[key].startswith("s3://"):
            raise ValueError(f"--{key} must be an s3:// URI, got {given[key]!r}")
    if not given["run_prefix"].endswith("/"):
        raise ValueError(f"--run_prefix must end with '/', got {given['run_prefix']!r}")

    args = {
        "run_id": given["run_id"],
        "input_uri": given["input_uri"],
        "run_prefix": given["run_prefix"],
        "min_date": _argument(given, "min_date", date.fromisoformat, DEFAULT_MIN_DATE),
        "max_date": _argument(given, "max_date", date.fromisoformat, DEFAULT_MAX_DATE),
        "max_bad_share": _argument(given, "max_bad_share", float, DEFAULT_MAX_BAD_SHARE),
    }
    if args["min_date"] > args["max_date"]:
        raise ValueError(f"--min_date {args['min_date']} is after --max_date {args['max_date']}")
    if not 0.0 <= args["max_bad_share"] <= 1.0:
        raise ValueError(f"--max_bad_share must be between 0 and 1, got {args['max_bad_share']}")
    return args


def _argument(given: dict[str, str], key: str, parse: Callable, default):
    if key not in given:
        return default
    try:
        return parse(given[key])
    except ValueError:
        raise ValueError(f"--{key}: cannot read {given[key]!r}") from None


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
    run_prefix = args["run_prefix"]
    summary = transform(
        spark,
        spark_path(args["input_uri"]),
        spark_path(f"{run_prefix}transactions/"),
        spark_path(f"{run_prefix}quarantine/"),
        run_id=args["run_id"],
        source_uri=args["input_uri"],
        min_date=args["min_date"],
        max_date=args["max_date"],
        max_bad_share=args["max_bad_share"],
    )
    bucket, _, prefix = run_prefix.removeprefix("s3://").partition("/")
    boto3.client("s3").put_object(
        Bucket=bucket,
        Key=f"{prefix}transform.json",
        Body=json.dumps(summary, indent=2).encode(),
        ContentType="application/json",
    )
    log.info("run_id=%s summary %s", args["run_id"], json.dumps(summary))
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    main(sys.argv[1:])
