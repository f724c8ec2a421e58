"""Glue job "Transform": raw transaction log -> typed, validated parquet plus a quarantine.

Runs unchanged on AWS Glue 5.0 (plain PySpark, no ``awsglue``) and in-process offline, where
the Glue adapter calls ``main(argv, spark=shared_session, spark_path=staging_mapper)``.

Every record after the header is exactly one row, either accepted, excluded (valid input the
analysis leaves out: a line without a customer id, a guest checkout) or quarantined with a
reason code, so ``read == accepted + excluded + quarantined`` always holds and a bad row can be
traced back to its line in the file. A record is a line, except that delimited text is RFC 4180
CSV: a quoted field may hold line breaks, and its record then spans lines and is numbered by its
first. A return (a negative quantity, or a line of a cancelled order) is accepted with a negative
quantity and amount and counted.

Inputs: CDNOW master and sample fixed-width text; delimited text with a header (comma, tab,
semicolon or pipe; the columns of each role found by their common names (``ROLE_ALIASES``) or
a ``--column_mapping``; the money as a line amount or a unit price); any of those
gzip-compressed (``.gz``); parquet (a row's number is its position in the file, its raw line
the tab-joined values). Text must be UTF-8, with or without a BOM, LF or CRLF line ends. The
first 64 KiB decide what the file is (``sniff``): UTF-16/32, binary data, a non-UTF-8 text
encoding, or gzip data without ``.gz`` (in any case) in its name end the job with an error naming the file;
a later line that is not valid UTF-8 or holds control characters is quarantined as
``unparseable_line``.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import re
import sys
import zlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Callable, Sequence

import boto3
from py4j.protocol import Py4JJavaError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

log = logging.getLogger("cdnow.transform")

# Reason codes in the order they are checked: a row is reported with the first one it fails.
# A row without a customer id is excluded (counted, never quarantined nor a bad row); it is
# checked after wrong_field_count and before invalid_date.
EXCLUSIONS = ("no_customer_id",)
REASONS = (
    "blank_line",
    "unparseable_line",
    "unclosed_quote",
    "wrong_field_count",
    "invalid_date",
    "date_out_of_range",
    "date_in_future",
    "invalid_quantity",
    "quantity_out_of_range",
    "invalid_amount",
    "amount_out_of_range",
)
# Bounds of one line (issue 20): a quantity of at most a million units and a line amount of at
# most a billion (in the file's currency), finite. Beyond them a line is an export error, never a
# sale: quarantined, so that no sum can overflow (a customer's quantity stays far inside int64) and
# no infinity reaches the models.
MAX_LINE_QUANTITY = 1_000_000
MAX_LINE_AMOUNT = 1_000_000_000.0
# Decimals a line amount keeps (--amount_decimals, the currency's minor unit: Ingest passes it;
# this default is layers' currency_decimals(DEFAULT_CURRENCY), by a test). A line amount, or a
# unit price times its quantity, is rounded half up to it once, as an invoice line is; the
# summary counts the lines it changed (rounded_amounts).
DEFAULT_AMOUNT_DECIMALS = 2
MAX_AMOUNT_DECIMALS = 4

# Limits of one delivery: the template's MaxDeliveryBytes, MaxDeliveryRows, MaxCompressionRatio
# (Ingest passes them as job arguments; these defaults equal layers' runs.DEFAULT_MAX_DELIVERY_*).
DEFAULT_MAX_DELIVERY_BYTES = 20_000_000_000
DEFAULT_MAX_DELIVERY_ROWS = 100_000_000
DEFAULT_MAX_COMPRESSION_RATIO = 100
# The ratio is judged once this much is decompressed (a small file may compress very well).
RATIO_JUDGED_AFTER_BYTES = 64 * 1024 * 1024
# The shortest line a log can have ("1 19970101 1 1\n" is 15 bytes; 8 is a safe floor): a plain
# file smaller than max_rows x 8 bytes cannot pass the rows limit and is not read twice.
MIN_LINE_BYTES = 8
PRECHECK_CHUNK_BYTES = 8 * 1024 * 1024

DEFAULT_MIN_DATE = date(1900, 1, 1)
DEFAULT_MAX_DATE = date(2100, 12, 31)
DEFAULT_MAX_BAD_SHARE = 0.05

# Column names a header may use for each role, compared with case, spaces, underscores and
# hyphens ignored ("Customer ID" is customer_id); an earlier alias wins when a header carries two
# of them (e.g. both "customer_id" and "id"). The money is either a line amount or a unit price
# (line amount = |quantity| x unit price); the bare name "price" is read as described at
# ``AMBIGUOUS_PRICE``. README's "Input formats" table lists the same names.
ROLE_ALIASES = {
    "customer_id": ("customer_id", "customer", "cust_id", "customer_no", "customer_number", "client_id", "id"),
    "order_date": ("date", "order_date", "invoice_date", "purchase_date", "transaction_date", "order_time",
                   "created_at", "timestamp"),
    "quantity": ("quantity", "qty", "units", "cds"),
    "amount": ("amount", "line_total", "line_amount", "total", "sales", "revenue", "dollars", "dollar_value"),
    "unit_price": ("unit_price", "price_each", "item_price"),
    "order_id": ("order_id", "invoice", "invoice_no", "invoice_number", "order_no", "order_number",
                 "transaction_id"),
}
ROLES = tuple(ROLE_ALIASES)
REQUIRED_ROLES = ("customer_id", "order_date", "quantity")
MONEY_ROLES = ("amount", "unit_price")
# "price" alone is the row's amount (the reference notebook's customer_id,date,quantity,price
# CSV), unless the file has an order-id column: order lines give the unit price.
AMBIGUOUS_PRICE = "price"
# An order id of this letter followed by a digit is a cancellation (Online Retail's C489449):
# its lines are returns whatever the sign of their quantity.
CANCELLATION_PREFIX = "C"

# About 20 MB of parquet per file: a handful of files even for a 10M-row log.
ROWS_PER_OUTPUT_FILE = 2_000_000
MAX_OUTPUT_FILES = 8

# The accepted rows: quantity and amount are signed (a return's are negative), order_id is null
# when the file has none.
TRANSACTION_COLUMNS = ("customer_id", "order_date", "quantity", "amount", "is_return", "order_id", "line_number")
QUARANTINE_COLUMNS = ("line_number", "raw_line", "reason", "source_uri")

_BOM = "\ufeff"
# monotonically_increasing_id() puts the partition index above bit 33, the row's position
# within its partition below.
_ROW_IN_PARTITION_BITS = 33


@dataclass(frozen=True)
class Format:
    """Where each field sits in a row of one input format (0-based field positions)."""

    name: str  # "cdnow_master" | "cdnow_sample" | "csv" | "tsv" | "parquet"
    field_count: int
    customer_field: int
    date_field: int
    quantity_field: int
    money_field: int
    # None: fields are separated by runs of white space (the CDNOW files); else the delimiter.
    separator: str | None = None
    # Delimited text from a header: RFC 4180 quoting (a separator, a line break or a doubled
    # quote inside double quotes). Parquet's tab-joined values are never quoted.
    quoted: bool = False
    order_field: int | None = None
    # The money field holds a unit price, not the line's amount.
    unit_price: bool = False
    # Role -> the column's name in the file (empty for the fixed-width CDNOW files), and why the
    # money column is read as it is: what the run summary reports.
    columns: tuple[tuple[str, str], ...] = ()
    money_reading: str = "the fourth field is the line amount (CDNOW layout)"

    @property
    def has_header(self) -> bool:
        return self.separator is not None and self.name != "parquet"


CDNOW_MASTER = Format("cdnow_master", 4, customer_field=0, date_field=1, quantity_field=2, money_field=3)
# The sample's second field is its own renumbered id; the master id is the customer.
CDNOW_SAMPLE = Format("cdnow_sample", 5, customer_field=0, date_field=2, quantity_field=3, money_field=4,
                      money_reading="the fifth field is the line amount (CDNOW sample layout)")

# A header's delimiter: the one of these it holds most of (ties: earlier wins).
SEPARATORS = {",": "csv", "\t": "tsv", ";": "csv", "|": "csv"}


def detect_format(first_line: str, source: str, column_mapping: dict[str, str] | None = None) -> Format:
    """The format of a file, from its first non-blank line (the header for delimited text).

    ``column_mapping`` (role -> header name, e.g. {"customer_id": "Kunde"}) overrides the
    recognized names for the roles it gives."""
    line = first_line.lstrip(_BOM).rstrip("\r\n")
    tokens = line.split()
    if len(tokens) == 4 and _is_yyyymmdd(tokens[1]):
        return CDNOW_MASTER
    if len(tokens) == 5 and _is_yyyymmdd(tokens[2]):
        return CDNOW_SAMPLE
    counts = {sep: _outside_quotes(line).count(sep) for sep in SEPARATORS}
    separator = max(counts, key=lambda sep: counts[sep])
    if counts[separator]:
        (names,) = csv.reader([line], delimiter=separator, quotechar='"', doublequote=True)
        names = [name.strip().strip('"') for name in names]
        roles = find_columns(names, source, f"header {line[:80]!r}", column_mapping)
        return roles.format(SEPARATORS[separator], len(names), separator=separator, quoted=True)
    raise ValueError(
        f"{source}: unrecognized first line {line[:80]!r}: expected a CDNOW fixed-width row "
        "(customer_id YYYYMMDD quantity amount, optionally with a sample id) or a header of "
        "comma-, tab-, semicolon- or pipe-separated column names"
    )


# YYYY-MM-DD, optionally with a time of day (after T or a space: hours, minutes, seconds and a
# fraction) and a zone (Z or an offset).
_TIME_OF_DAY = r"(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,9})?)?"
ISO_DATE_TIME = rf"^(\d{{4}})-(\d{{2}})-(\d{{2}})(?:[T ]{_TIME_OF_DAY}(?:Z|[+-]\d{{2}}:?\d{{2}})?)?$"
# Slashed dates, with or without a time of day (12/1/2010 8:26, 01/12/2010 08:26:00 PM): day and
# month in the order the file uses (``decide_date_order``), or year first (2010/12/01).
SLASHED_DATE = rf"^(\d{{1,2}})/(\d{{1,2}})/(\d{{4}})(?:[T ]{_TIME_OF_DAY}(?:\s?[AaPp][Mm])?)?$"
YEAR_FIRST_SLASHED_DATE = rf"^(\d{{4}})/(\d{{1,2}})/(\d{{1,2}})(?:[T ]{_TIME_OF_DAY})?$"
DATE_ORDERS = ("day_first", "month_first")

# A quoted field, doubled quotes inside it included (RFC 4180).
_QUOTED_FIELD = r'"(?:[^"]|"")*"'


def _outside_quotes(line: str) -> str:
    return re.sub(_QUOTED_FIELD, "", line)


def _is_yyyymmdd(token: str) -> bool:
    return len(token) == 8 and token.isascii() and token.isdigit()


def _normalized(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


@dataclass(frozen=True)
class Columns:
    """Which column of a header plays each role, and how its money column is read."""

    names: dict[str, str]  # role -> the column's name as the file writes it
    positions: dict[str, int]
    unit_price: bool
    money_reading: str

    def format(self, name: str, field_count: int, **layout) -> Format:
        money = "unit_price" if self.unit_price else "amount"
        return Format(
            name, field_count, self.positions["customer_id"], self.positions["order_date"],
            self.positions["quantity"], self.positions[money], order_field=self.positions.get("order_id"),
            unit_price=self.unit_price, columns=tuple(self.names.items()), money_reading=self.money_reading,
            **layout)


def find_columns(names: Sequence[str], source: str, what: str,
                 column_mapping: dict[str, str] | None = None) -> Columns:
    """The role of each needed column among ``names``: the mapped name for a role in
    ``column_mapping``, else the first alias present; the money column as a line amount or a
    unit price (a mapping of either decides; else a line-amount name, a unit-price name, then
    ``AMBIGUOUS_PRICE``)."""
    mapping = column_mapping or {}
    unknown = sorted(set(mapping) - set(ROLES))
    if unknown:
        raise ValueError(f"{source}: column_mapping names unknown field(s) {unknown}; "
                         f"the fields are {', '.join(ROLES)}")
    if all(role in mapping for role in MONEY_ROLES):
        raise ValueError(f"{source}: column_mapping maps both amount and unit_price; map one of them")
    normalized = [_normalized(name) for name in names]
    positions: dict[str, int] = {}
    missing = []
    for role, aliases in ROLE_ALIASES.items():
        if role in mapping:
            wanted = [_normalized(mapping[role])]
            label = f"{mapping[role]!r} (column_mapping)"
        else:
            wanted, label = [_normalized(alias) for alias in aliases], f"one of {', '.join(aliases)}"
        found = next((normalized.index(name) for name in wanted if name in normalized), None)
        if found is not None:
            positions[role] = found
        elif role in mapping or role in REQUIRED_ROLES:
            missing.append(f"{role} ({label})")
    mapped_money = next((role for role in MONEY_ROLES if role in mapping), None)
    if mapped_money:
        for role in MONEY_ROLES:
            if role != mapped_money:
                positions.pop(role, None)
        unit_price = mapped_money == "unit_price"
        reading = f"column_mapping names {names[positions[mapped_money]]!r} as the {mapped_money}" \
            if mapped_money in positions else ""
    elif "amount" in positions:
        positions.pop("unit_price", None)
        unit_price, reading = False, f"{names[positions['amount']]!r} is the line amount"
    elif "unit_price" in positions:
        unit_price, reading = True, f"{names[positions['unit_price']]!r} is the unit price"
    elif AMBIGUOUS_PRICE in normalized:
        price = normalized.index(AMBIGUOUS_PRICE)
        if "order_id" in positions:
            unit_price = True
            positions["unit_price"] = price
            reading = (f"{names[price]!r} is the unit price: the file has an order-id column "
                       f"({names[positions['order_id']]!r}); map it as amount if it is the line amount")
        else:
            unit_price = False
            positions["amount"] = price
            reading = (f"{names[price]!r} is the line amount: the file has no order-id column; "
                       "map it as unit_price if it is a unit price")
    else:
        unit_price, reading = False, ""
        if not mapped_money:
            missing.append(f"amount (one of {', '.join(ROLE_ALIASES['amount'])}, or {AMBIGUOUS_PRICE}) or "
                           f"unit_price (one of {', '.join(ROLE_ALIASES['unit_price'])})")
    if missing:
        raise ValueError(f"{source}: {what} has no column for {'; '.join(missing)}")
    return Columns({role: names[position] for role, position in positions.items()}, positions, unit_price, reading)


# --- what the file is (pure: bytes in, a decision or a clear error out) -------------------

HEAD_BYTES = 64 * 1024
TEXT, GZIP, PARQUET_FILE = "text", "gzip", "parquet"
# Bytes that never occur in a text export (NUL and C0 controls other than tab, LF, FF, CR).
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"
MAX_CONTROL_SHARE = 0.01
MIN_CONTROL_BYTES = 8


def sniff(head: bytes, source: str) -> str:
    """TEXT, GZIP or PARQUET_FILE from a file's first bytes (``HEAD_BYTES`` of them, or the
    whole file if shorter); ValueError naming the file for what cannot be read as a log."""
    if not head:
        raise ValueError(f"{source}: empty file (0 bytes)")
    if head.startswith(b"PAR1"):
        return PARQUET_FILE
    kind = TEXT
    if head.startswith(b"\x1f\x8b"):
        if not source.lower().endswith(".gz"):
            raise ValueError(f"{source}: gzip-compressed data in a file whose name does not end "
                             "in .gz; name it ....gz so that it is decompressed")
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, HEAD_BYTES)
        except zlib.error as exc:
            raise ValueError(f"{source}: corrupt gzip data ({exc})") from None
        if not head:
            raise ValueError(f"{source}: empty file (gzip of 0 bytes)")
        kind = GZIP
    check_text(head, source)
    return kind


def check_text(head: bytes, source: str) -> None:
    """Refuse what is not UTF-8 text, saying what it looks like instead."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        raise ValueError(f"{source}: UTF-32 text; re-export the file as UTF-8")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError(f"{source}: UTF-16 text; re-export the file as UTF-8")
    # ASCII in UTF-16 puts a NUL in every other byte, and almost none in the others.
    even, odd = head[0::2].count(0) / max(len(head[0::2]), 1), head[1::2].count(0) / max(len(head[1::2]), 1)
    if len(head) >= 8 and max(even, odd) > 0.4 and min(even, odd) < 0.05:
        raise ValueError(f"{source}: UTF-16 text without a byte-order mark; re-export the file as UTF-8")
    controls = sum(head.count(bytes([b])) for b in _CONTROL)
    # The rule for "binary": more than 1% of the first 64 KiB (and more than 8 bytes) are control
    # bytes (NUL included). Fewer are stray characters: each quarantines its own line
    # (unparseable_line, with its number), a NUL as any other.
    if controls > max(MAX_CONTROL_SHARE * len(head), MIN_CONTROL_BYTES):
        raise ValueError(f"{source}: binary data, not a text transaction log "
                         f"({controls} control bytes in the first {len(head):,})")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not merely a character cut by the end of the head
            line = head.count(b"\n", 0, exc.start) + 1
            raise ValueError(
                f"{source}: not UTF-8 text: byte 0x{head[exc.start]:02x} on line {line} "
                "(Latin-1 or Windows-1252?); re-export the file as UTF-8") from None


@dataclass(frozen=True)
class NumberedLines:
    lines: DataFrame  # line_number long, raw_line string
    line_count: int
    first_nonblank_line_number: int | None
    first_nonblank_line: str | None


def read_head(spark: SparkSession, input_path: str, size: int = HEAD_BYTES) -> bytes:
    """The first ``size`` bytes of a file, through Hadoop's file system (s3:// on Glue, file://
    offline): what ``sniff`` decides on, without reading the whole object."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(input_path)
    stream = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).open(path)
    try:
        return bytes(stream.readNBytes(size))
    finally:
        stream.close()


def check_delivery_limits(source_uri: str, max_bytes: int, max_rows: int, max_ratio: int) -> dict:
    """Stream the object from S3 before Spark reads it (a Spark scan cannot stop early) and stop
    as soon as it passes a limit: uncompressed bytes, lines, or a gzip's expansion ratio. Returns
    what was counted; ValueError naming the file, the limit and the figure. A plain file too small
    to hold ``max_rows`` lines is not read (its size is its uncompressed size)."""
    bucket, _, key = source_uri.removeprefix("s3://").partition("/")
    response = boto3.client("s3").get_object(Bucket=bucket, Key=key)
    size, body = response["ContentLength"], response["Body"]
    chunk = body.read(2)
    gzipped = chunk == b"\x1f\x8b"
    if not gzipped and size < max_rows * MIN_LINE_BYTES:
        body.close()
        return {"compressed": False, "bytes": size, "rows": None}
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    read, produced, lines, last = 0, 0, 0, b""
    try:
        while chunk:
            read += len(chunk)  # compressed bytes consumed so far
            # Each piece is checked as it is produced: a bomb never expands past one piece in memory.
            for piece in _inflated(inflate, chunk) if gzipped else (chunk,):
                produced += len(piece)
                lines += piece.count(b"\n")
                last = piece[-1:] or last
                if produced > max_bytes:
                    raise ValueError(f"{source_uri}: more than {max_bytes:,} bytes uncompressed, the stack's "
                                     "MaxDeliveryBytes; split the export into smaller files")
                if lines > max_rows:
                    raise ValueError(f"{source_uri}: more than {max_rows:,} lines, the stack's MaxDeliveryRows; "
                                     "split the export into smaller files")
                if gzipped and produced > RATIO_JUDGED_AFTER_BYTES and produced > max_ratio * read:
                    raise ValueError(
                        f"{source_uri}: the gzip expands more than {max_ratio}x (to {produced:,} bytes from the "
                        f"first {read:,}), the stack's MaxCompressionRatio: a decompression bomb, or an export "
                        "far more repetitive than transactions are")
            chunk = body.read(PRECHECK_CHUNK_BYTES)
    except zlib.error as exc:
        raise ValueError(f"{source_uri}: corrupt gzip data ({exc})") from None
    finally:
        body.close()
    rows = lines + (1 if last not in (b"", b"\n") else 0)
    return {"compressed": gzipped, "bytes": produced, "rows": rows}


def _inflated(inflate, data: bytes):
    """What ``data`` decompresses to, at most PRECHECK_CHUNK_BYTES a piece."""
    while data:
        piece = inflate.decompress(data, PRECHECK_CHUNK_BYTES)
        if not piece:
            return
        yield piece
        data = inflate.unconsumed_tail


def with_lowercase_gz(spark: SparkSession, input_path: str, scratch_dir: str) -> str:
    """A gzip file named ….GZ (any case but .gz) as a copy named ….gz under ``scratch_dir``:
    Hadoop picks the gzip codec by the exact suffix ".gz", and would read the compressed bytes as
    text. The copy streams through Hadoop's file system; a name already ending in .gz is used as it is."""
    if input_path.endswith(".gz"):
        return input_path
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    source = jvm.org.apache.hadoop.fs.Path(input_path)
    name = input_path.rstrip("/").rsplit("/", 1)[-1]
    target = jvm.org.apache.hadoop.fs.Path(f"{scratch_dir.rstrip('/')}/{name[:-3]}.gz")
    jvm.org.apache.hadoop.fs.FileUtil.copy(source.getFileSystem(conf), source, target.getFileSystem(conf), target,
                                           False, True, conf)
    return target.toString()


def read_parquet_rows(spark: SparkSession, input_path: str, source: str,
                      column_mapping: dict[str, str] | None) -> tuple[DataFrame, Format]:
    """A parquet file as lines (``value``: the columns of its roles tab-joined: customer, date,
    quantity, money, then the order id if it has one), so that the same numbering and validation
    apply; dates and timestamps become YYYY-MM-DD."""
    frame = spark.read.parquet(input_path)
    roles = find_columns(frame.columns, source, f"parquet columns {frame.columns}", column_mapping)
    types = dict(frame.dtypes)

    def text(name: str) -> Column:
        column = F.col(f"`{name}`")
        if types[name] in ("date", "timestamp", "timestamp_ntz"):
            column = F.date_format(column, "yyyy-MM-dd")
        return F.coalesce(column.cast("string"), F.lit(""))

    order = ["customer_id", "order_date", "quantity", "unit_price" if roles.unit_price else "amount"]
    if "order_id" in roles.names:
        order.append("order_id")
    in_line = Columns({role: roles.names[role] for role in order}, {role: i for i, role in enumerate(order)},
                      roles.unit_price, roles.money_reading)
    value = F.concat_ws("\t", *[text(roles.names[role]) for role in order]).alias("value")
    return frame.select(value), in_line.format("parquet", len(order), separator="\t")


def read_lines(spark: SparkSession, input_path: str, source: str, rows: DataFrame | None = None) -> NumberedLines:
    """The file's lines with their 1-based physical line numbers.

    One pass over the file counts the lines of each split; the returned frame reads the file
    again. zipWithIndex would send every line through Python; this does the same in the JVM. A
    line's number is the count of lines in earlier splits of the file plus its position in its
    own split. The offsets are keyed by the split's byte offset, not by partition index, so if
    a later pass re-plans the scan (e.g. Glue autoscaling changed the default parallelism) a
    line either keeps its correct number or gets none, which ``transform`` turns into an error.
    """
    tagged = tagged_lines(spark, input_path, source, rows)
    nonblank_row = F.when(~F.col("raw_line").rlike(r"^\s*$"), _row_in_partition())
    splits = (
        tagged.groupBy(_partition().alias("partition"))
        .agg(
            F.count(F.lit(1)).alias("lines"),
            F.min("split_start").alias("split_start"),
            F.max("split_start").alias("last_split_start"),
            F.min(nonblank_row).alias("first_nonblank_row"),
            F.min_by("raw_line", nonblank_row).alias("first_nonblank_line"),
        )
        .collect()
    )
    offsets, line_count = split_offsets(splits, source)
    first_number = first_line = None
    for split in sorted(splits, key=lambda split: split.split_start):
        if split.first_nonblank_row is not None:
            first_number = offsets[split.split_start] + split.first_nonblank_row + 1
            first_line = split.first_nonblank_line
            break
    lines = tagged.select(line_number_of(offsets).alias("line_number"), "raw_line")
    return NumberedLines(lines, line_count, first_number, first_line)


def tagged_lines(spark: SparkSession, input_path: str, source: str, rows: DataFrame | None = None) -> DataFrame:
    """The file's lines (``raw_line``), each with ``row_id`` (its partition and its position in
    it, see ``_ROW_IN_PARTITION_BITS``) and ``split_start`` (the byte offset of its split)."""
    # Split on LF only, so that line numbers are what `wc -l` and editors count; CR is
    # stripped below. Hadoop's reader already drops a UTF-8 BOM; stripping it is a safeguard.
    # ``rows`` (a ``value`` column) stands in for the text of a file read another way (parquet).
    text = spark.read.option("lineSep", "\n").text(input_path) if rows is None else rows
    files = text.inputFiles()
    if len(files) != 1:
        raise ValueError(f"{source}: expected exactly one input file, found {len(files)}")
    value = F.col("value")
    return text.select(
        F.monotonically_increasing_id().alias("row_id"),
        F.input_file_block_start().alias("split_start"),
        # Bytes that are not UTF-8 reach Spark as they are; a string function (this one) turns
        # each into U+FFFD, which parse_transactions then reports as unparseable_line. A line of
        # printable ASCII alone (nearly every line) holds no BOM, CR or such byte: it is kept as
        # it is, without the regular expression.
        F.when(printable_ascii(value), value)
        .otherwise(F.regexp_replace(value, r"^\uFEFF|\r\z", "")).alias("raw_line"),
    )


# Printable ASCII and the space: a line of these alone holds no control character, no byte that
# is not UTF-8, no BOM or CR, and no white space but the space. (``\z``, not ``$``: Java's ``$``
# also matches before a CR ending the text.)
_PRINTABLE_ASCII = r"^[ -~]*\z"


def printable_ascii(text: Column) -> Column:
    """Whether ``text`` holds printable ASCII characters and spaces only (an empty text does).
    One character range: measured at a fifth of the cost of the control-character class."""
    return text.rlike(_PRINTABLE_ASCII)


def _partition(row_id: str = "row_id") -> Column:
    return F.shiftright(row_id, _ROW_IN_PARTITION_BITS)


def _row_in_partition(row_id: str = "row_id") -> Column:
    return F.col(row_id).bitwiseAND((1 << _ROW_IN_PARTITION_BITS) - 1)


def split_offsets(splits: Sequence, source: str) -> tuple[dict[int, int], int]:
    """The number of lines before each split (by its ``split_start``) and the file's line count,
    from one row per partition (``lines``, ``split_start``, ``last_split_start``)."""
    splits = sorted(splits, key=lambda split: split.split_start)
    # Spark gives each split of a single file its own partition; numbering relies on that.
    if any(split.split_start != split.last_split_start for split in splits):
        raise RuntimeError(f"{source}: a partition holds several splits of the file; cannot number its lines")
    offsets, line_count = {}, 0
    for split in splits:
        offsets[split.split_start] = line_count
        line_count += split.lines
    return offsets, line_count


def line_number_of(offsets: dict[int, int], row_id: str = "row_id") -> Column:
    """A tagged line's 1-based number: the lines of earlier splits plus its place in its own."""
    offset_of_split = F.create_map(*[F.lit(v) for item in offsets.items() for v in item])
    offset_of_split = offset_of_split.cast("map<bigint,bigint>")
    return offset_of_split[F.col("split_start")] + _row_in_partition(row_id) + 1


# Java's regular expressions (Spark's) count these as line terminators too: ``$`` matches before
# one at the end of a line, so a line holding one is left to the expressions Spark evaluates.
_JAVA_LINE_TERMINATORS = "\u0085\u2028\u2029"
_JAVA_SPACE = " \t\n\x0b\f\r"  # Java's \s


def first_nonblank_line_of_head(head: bytes, whole_file: bool) -> tuple[int, str] | None:
    """The number and text of the file's first non-blank line as ``read_lines`` gives them,
    decided from the head of the file (its first ``HEAD_BYTES``, decompressed) alone; None when
    the head cannot decide it exactly: no complete non-blank line in it, bytes that are not
    UTF-8 or a line holding one of Java's other line terminators before it."""
    if head.startswith(b"\xef\xbb\xbf"):  # Hadoop's line reader drops the file's UTF-8 BOM
        head = head[3:]
    lines = head.split(b"\n")
    if not whole_file or not lines[-1]:
        lines.pop()  # an incomplete last line, or the empty piece after the last LF
    for number, data in enumerate(lines, start=1):
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        line = line.removeprefix(_BOM).removesuffix("\r")
        if any(char in _JAVA_LINE_TERMINATORS for char in line):
            return None
        if any(char not in _JAVA_SPACE for char in line):
            return number, line
    return None


# A quoted field may hold line breaks: a record whose quote is still open at the end of a line
# goes on over the next lines, at most this many lines in all; past that its quote is unclosed.
MAX_RECORD_LINES = 100


def pair_quotes(odd_lines: Sequence[tuple[int, bool]], max_lines: int = MAX_RECORD_LINES
                ) -> tuple[list[tuple[int, int]], list[int]]:
    """Records over several lines, from the lines holding an odd number of double quotes (in
    order, each with whether it opens a quoted field: a quote at a field's start that the line
    does not close). An opener and the next odd line within ``max_lines`` are one record's first
    and last line; an opener without one is unclosed; an odd line outside a record that opens no
    field is a stray quote inside a value (``3.5" disk``) and parses on its own."""
    spans, unclosed, start = [], [], None
    for number, opens in odd_lines:
        if start is not None:
            if number - start < max_lines:
                spans.append((start, number))
                start = None
                continue
            unclosed.append(start)
            start = None
        if opens:
            start = number
    if start is not None:
        unclosed.append(start)
    return spans, unclosed


def join_quoted_records(spark: SparkSession, lines: DataFrame, fmt: Format) -> tuple[DataFrame, int]:
    """Data lines as records (``line_number``: the record's first line, ``raw_line``: its lines
    joined by LF, ``unclosed_quote``), and the number of records that span lines.

    Only lines with an odd number of quotes can open or close a multi-line record: those few are
    collected, paired on the driver (``pair_quotes``) and joined back by line number, so a file
    without line breaks inside quotes costs one filtered scan more and stays splittable (Spark's
    ``multiLine`` CSV mode would read it as one task)."""
    plain = lines.withColumn("unclosed_quote", F.lit(False))
    if not fmt.quoted:
        return plain, 0
    raw = F.col("raw_line")
    odd = ((F.length(raw) - F.length(F.regexp_replace(raw, '"', ""))) % 2) == 1
    opens = F.regexp_replace(raw, _QUOTED_FIELD, "").rlike(f'(^|{re.escape(fmt.separator)})\\s*"')
    odd_lines = (lines.where(odd & F.col("line_number").isNotNull())
                 .select("line_number", opens.alias("opens")).orderBy("line_number").collect())
    spans, unclosed = pair_quotes([(row.line_number, row.opens) for row in odd_lines])
    if not spans and not unclosed:
        return plain, 0
    members = spark.createDataFrame(
        [(number, start, False) for start, end in spans for number in range(start, end + 1)]
        + [(number, number, True) for number in unclosed],
        "line_number long, record_start long, unclosed_quote boolean",
    )
    tagged = lines.join(F.broadcast(members), "line_number", "left")
    single = tagged.where(F.col("record_start").isNull() | F.col("unclosed_quote")).select(
        "line_number", "raw_line", F.coalesce("unclosed_quote", F.lit(False)).alias("unclosed_quote"))
    in_order = F.array_sort(F.collect_list(F.struct("line_number", "raw_line")))
    joined = (
        tagged.where(F.col("record_start").isNotNull() & ~F.col("unclosed_quote"))
        .groupBy("record_start")
        .agg(F.array_join(F.transform(in_order, lambda line: line["raw_line"]), "\n").alias("raw_line"))
        .select(F.col("record_start").alias("line_number"), "raw_line", F.lit(False).alias("unclosed_quote"))
    )
    return single.unionByName(joined), len(spans)


def record_fields(records: DataFrame, fmt: Format, keep: Sequence[str] = ()) -> DataFrame:
    """Each record's raw fields as text: ``line_number, raw_line``, the structural checks
    (``is_blank``, ``is_unparseable``, ``is_unclosed_quote``, ``field_count``) and ``customer_id``,
    ``date_text``, ``quantity_text``, ``money_text``, ``order_id`` (null without an order column).

    ``records`` holds data records only (no CSV header), as ``join_quoted_records`` gives them;
    its columns named in ``keep`` are passed through.
    Each step is its own projection: Spark keeps projections apart when merging them would
    copy an expensive expression into each use (one merged tree was measured 3x slower)."""
    delimited = fmt.separator is not None
    raw = F.col("raw_line")
    # Most lines are printable ASCII (``printable_ascii``): for those, the structural checks
    # below need no regular expression (measured: the patterns were most of this step's time).
    printable = F.col("is_printable")
    if fmt.quoted:
        # Values by Spark's CSV parser (quotes, doubled quotes, separators and line breaks inside
        # quotes); the field count from the separators outside quoted fields.
        # A line without a quote is split as it is (the CSV parser costs 1.3x the time of a split).
        schema = ", ".join(f"f{i} string" for i in range(fmt.field_count))
        values = F.from_csv(raw, schema, {"sep": fmt.separator, "quote": '"', "escape": '"', "mode": "PERMISSIVE"})
        has_quote = raw.contains('"')
        fields = F.when(has_quote, F.array(*[values[f"f{i}"] for i in range(fmt.field_count)])).otherwise(
            F.split(raw, re.escape(fmt.separator), -1))
        field_count = F.when(
            has_quote, F.size(F.split(F.regexp_replace(raw, _QUOTED_FIELD, ""), re.escape(fmt.separator), -1))
        ).otherwise(F.size("fields"))
    elif delimited:
        fields = F.split("raw_line", re.escape(fmt.separator), -1)
        field_count = F.size("fields")
    else:
        # The runs of non-blank characters: for a line that is not blank (a blank one is reported
        # as such whatever its fields), the fields of the line trimmed and split at runs of white
        # space, found in one pass by a compiled pattern (a split compiles its pattern for each
        # row). A line holding another of Java's line terminators, where the trim's ``$`` matches
        # before one, takes the trim and split themselves.
        # A printable ASCII line has no white space but the space: its runs of non-blank
        # characters are its pieces between spaces, the empty ones (between two spaces) removed,
        # and a split at one character compiles no pattern.
        terminator = functools.reduce(Column.__or__, [raw.contains(char) for char in _JAVA_LINE_TERMINATORS])
        fields = (
            F.when(printable, F.array_remove(F.split(raw, " ", -1), ""))
            .when(terminator, F.split(F.regexp_replace(raw, r"^\s+|\s+$", ""), r"\s+", -1))
            .otherwise(F.regexp_extract_all(raw, F.lit(r"\S+"), 0))
        )
        field_count = F.size("fields")

    def field(position: int) -> Column:
        # get() gives null past the end even under ANSI mode.
        token = F.get(F.col("fields"), position)
        if delimited:
            # Padding around a delimited value is not part of it, nor is a pair of double quotes
            # around it; a lone quote at one end is (ID_RULES).
            token = F.regexp_replace(token, r'^\s+|\s+$', "")
            token = F.regexp_replace(token, r'^"(.*)"$', "$1")
        return F.coalesce(token, F.lit(""))

    def identifier(position: int) -> Column:
        # An integer id written with a zero decimal part (a spreadsheet's 17850.0) is the integer
        # (the pattern runs only on a field with a point: it changes no other).
        token = F.col(f"field_{position}")
        return F.when(token.contains("."), F.regexp_replace(token, r"^(\d+)\.0+$", "$1")).otherwise(token)

    # A line that was not UTF-8 (its bad bytes are U+FFFD now) or holds control characters is no
    # transaction whatever its fields look like: one character class, one pass over the line.
    # A printable ASCII line is neither (and is blank when it is spaces alone).
    unparseable = ~printable & F.col("raw_line").rlike("[\\x00-\\x08\\x0b\\x0e-\\x1f\\x7f\ufffd]")
    blank = F.when(printable, F.trim(raw) == "").otherwise(raw.rlike(r"^\s*$"))
    order_id = F.lit(None).cast("string")
    if fmt.order_field is not None:
        order_id = F.nullif(identifier(fmt.order_field), F.lit(""))
    id_fields = list(dict.fromkeys([fmt.customer_field] + ([fmt.order_field] if fmt.order_field is not None else [])))
    return (
        records.select(
            F.col("line_number").cast("long").alias("line_number"),
            *keep,
            "raw_line",
            printable_ascii(raw).alias("is_printable"),
            F.col("unclosed_quote").alias("is_unclosed_quote"),
        )
        .select(
            "line_number",
            *keep,
            "raw_line",
            "is_printable",
            fields.alias("fields"),
            "is_unclosed_quote",
        )
        .select(
            "line_number",
            *keep,
            "raw_line",
            blank.alias("is_blank"),
            unparseable.alias("is_unparseable"),
            "is_unclosed_quote",
            field_count.alias("field_count"),
            *[field(position).alias(f"field_{position}") for position in id_fields],
            field(fmt.date_field).alias("date_text"),
            field(fmt.quantity_field).alias("quantity_text"),
            field(fmt.money_field).alias("money_text"),
        )
        .select(
            "line_number",
            *keep,
            "raw_line",
            "is_blank",
            "is_unparseable",
            "is_unclosed_quote",
            "field_count",
            identifier(fmt.customer_field).alias("customer_id"),
            "date_text",
            "quantity_text",
            "money_text",
            order_id.alias("order_id"),
        )
    )


# How a field becomes an id (customer_id, order_id), as docs/RELIABILITY.md states them: spaces
# and tabs around it removed; a pair of double quotes around it removed (one at each end); an
# integer written with a zero decimal part (a spreadsheet's 17850.0) read as the integer; the rest
# verbatim: case, leading zeros (00012 is not 12), inner spaces, a lone quote at the end (45").
ID_RULES = "trimmed, a surrounding pair of quotes removed, 17850.0 read as 17850, the rest verbatim"

# Rows read before a slashed date decides whether the file's dates need a day/month order.
DATE_ORDER_SAMPLE_ROWS = 1000


@dataclass(frozen=True)
class DateOrder:
    """How a file writes day and month in a slashed date: ``order`` is one of DATE_ORDERS (None:
    the file has no such dates), ``decided_by`` "data" or "date_order option"."""

    order: str | None = None
    decided_by: str | None = None


def date_order_of(fields: DataFrame, source: str, option: str | None) -> DateOrder:
    """The day/month order of a file whose first rows carry slashed dates (d/m/yyyy or
    m/d/yyyy): a first part above 12 anywhere in the file makes it day first, a second part above
    12 month first (both: the more frequent wins, the other rows are invalid dates); a file where
    neither occurs takes the ``date_order`` option, and without one it is refused."""
    sample = [row.date_text for row in fields.select("date_text").limit(DATE_ORDER_SAMPLE_ROWS).collect()]
    if not any(re.match(SLASHED_DATE, text) for text in sample):
        return DateOrder(option, "date_order option" if option else None)
    text = F.col("date_text")
    slashed = text.rlike(SLASHED_DATE)
    first, second = (F.regexp_extract(text, SLASHED_DATE, group).cast("int") for group in (1, 2))
    evidence = fields.agg(
        F.count_if(slashed & (first > 12) & (second <= 12)).alias("day_first"),
        F.count_if(slashed & (second > 12) & (first <= 12)).alias("month_first"),
        F.first(F.when(slashed, text), ignorenulls=True).alias("example"),
    ).first()
    if evidence.day_first or evidence.month_first:
        order = "day_first" if evidence.day_first >= evidence.month_first else "month_first"
        return DateOrder(order, "data")
    if option:
        return DateOrder(option, "date_order option")
    raise ValueError(
        f"{source}: slashed dates such as {evidence.example!r} can be read day first or month first "
        "and no date in the file has a day above 12 to tell; set the date_order option to "
        f"{' or '.join(DATE_ORDERS)}")


# An amount written with two decimals and at most 12 integer digits (the exact pattern's bound)
# is read by a cast to this precision (see ``parse_transactions``).
_CANONICAL_MONEY_PRECISION = 14


def parse_transactions(
    spark: SparkSession,
    fields: DataFrame,
    fmt: Format,
    source_uri: str,
    min_date: date,
    max_date: date,
    date_order: DateOrder = DateOrder(),
    latest_date: date | None = None,
    amount_decimals: int = DEFAULT_AMOUNT_DECIMALS,
    keep: Sequence[str] = (),
) -> DataFrame:
    """Typed rows with a ``reason`` (null when the row is accepted) from ``record_fields``
    (its columns named in ``keep`` passed through).

    ``spark`` is unused, kept so every step of the job takes the session first. Regular
    expressions decide validity, and every cast runs only on text they accepted, so ANSI mode
    cannot fail the job on a bad row. A row dated after ``latest_date`` is ``date_in_future``.
    A negative quantity or a cancelled order (``CANCELLATION_PREFIX``) makes the row a return:
    accepted with a negative quantity and amount. The amount is kept to ``amount_decimals``
    (``amount_rounded`` says the rounding changed it)."""
    date_digits = F.col("date_text")
    if fmt.separator is not None:
        # ISO dates and date-times: the day is the date as written (a time and zone are dropped);
        # slashed dates in the file's day/month order, and year first.
        text = date_digits
        two = lambda column: F.lpad(column, 2, "0")  # noqa: E731
        part = lambda pattern, group: F.regexp_extract(text, pattern, group)  # noqa: E731
        slashed = F.lit(None)
        if date_order.order:
            day_group, month_group = (1, 2) if date_order.order == "day_first" else (2, 1)
            slashed = F.concat(part(SLASHED_DATE, 3), two(part(SLASHED_DATE, month_group)),
                               two(part(SLASHED_DATE, day_group)))
        date_digits = (
            F.when(text.rlike(ISO_DATE_TIME), F.regexp_replace(text, ISO_DATE_TIME, "$1$2$3"))
            .when(text.rlike(SLASHED_DATE), slashed)
            .when(text.rlike(YEAR_FIRST_SLASHED_DATE),
                  F.concat(part(YEAR_FIRST_SLASHED_DATE, 1), two(part(YEAR_FIRST_SLASHED_DATE, 2)),
                           two(part(YEAR_FIRST_SLASHED_DATE, 3))))
            .otherwise(text)
        )
    # Most numbers are written as Spark writes them back (12, -3, 11.77): for those, a cast and
    # its round trip to the same text give validity and value at a fraction of the patterns'
    # cost (measured); every other text is decided by the patterns below, as written.
    # try_cast gives null, never an error, under ANSI mode.
    tokens = fields.withColumns({
        "date_digits": F.when(date_digits.rlike(r"^\d{8}$"), date_digits),
        "quantity_cast": F.expr("try_cast(quantity_text AS BIGINT)"),
        "money_cast": F.expr(f"try_cast(money_text AS DECIMAL({_CANONICAL_MONEY_PRECISION}, 2))"),
    }).withColumns({
        # At most 18 digits, as the quantity pattern allows.
        "canonical_quantity": F.when((F.col("quantity_cast").cast("string") == F.col("quantity_text"))
                                     & (F.abs("quantity_cast") < 10**18), F.col("quantity_cast")),
        "canonical_money": F.when(F.col("money_cast").cast("string") == F.col("money_text"),
                                  F.col("money_cast").cast("decimal(20,8)")),
    })

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

    # An integral quantity may arrive as "2.0" from a spreadsheet; a minus sign is a return.
    quantity_pattern = F.col("quantity_text").rlike(r"^-?\d{1,18}(\.0*)?$")
    quantity_is_valid = F.col("canonical_quantity").isNotNull() | quantity_pattern
    quantity = F.coalesce("canonical_quantity", F.when(
        quantity_pattern, F.regexp_extract("quantity_text", r"^(-?\d+)", 1).cast("long")))
    money_is_number = F.col("canonical_money").isNotNull() | F.col("money_text").rlike(r"^-?(\d+(\.\d*)?|\.\d+)$")
    money = F.when(money_is_number, F.col("money_text").cast("double"))
    cancelled = F.coalesce(F.col("order_id").rlike(f"^{re.escape(CANCELLATION_PREFIX)}\\d"), F.lit(False))
    is_return = F.coalesce(quantity < 0, F.lit(False)) | cancelled
    # A negative amount is a return's; on a sale, or as a unit price, it is no valid amount.
    amount_is_valid = money_is_number & ((money >= 0) | (F.col("is_return") & F.lit(not fmt.unit_price)))
    line_amount = F.abs(money) * F.abs(quantity) if fmt.unit_price else F.abs(money)
    # Rounded in decimal arithmetic where the figure fits (a double's 2.55 x 6 is 15.2999...,
    # its 1.115 x 3 rounds to 3.34): an amount of at most 12 integer digits and 8 decimals times
    # a quantity inside its bound. Past that (an amount out of range anyway, or more than 8
    # decimals) the double is rounded.
    exact_money = F.coalesce("canonical_money", F.when(
        F.col("money_text").rlike(r"^-?(\d{1,12}(\.\d{0,8})?|\.\d{1,8})$"), F.col("money_text").cast("decimal(20,8)")))
    exact_amount = F.abs(exact_money)
    if fmt.unit_price:
        exact_amount = F.when(F.abs(quantity) <= MAX_LINE_QUANTITY,
                              exact_amount * F.abs(quantity).cast("decimal(7,0)"))
    kept_exact = F.round(exact_amount, amount_decimals)
    kept_amount = F.coalesce(kept_exact.cast("double"), F.round(line_amount, amount_decimals))
    amount_rounded = F.coalesce(kept_exact != exact_amount, kept_amount != line_amount)
    future = F.lit(False) if latest_date is None else F.col("order_date") > F.lit(latest_date)
    reason = (
        F.when(F.col("is_blank"), "blank_line")
        .when(F.col("is_unparseable"), "unparseable_line")
        .when(F.col("is_unclosed_quote"), "unclosed_quote")
        .when(F.col("field_count") != fmt.field_count, "wrong_field_count")
        .when(F.col("customer_id") == "", "no_customer_id")
        .when(~F.col("is_real_date"), "invalid_date")
        .when(~F.col("order_date").between(F.lit(min_date), F.lit(max_date)), "date_out_of_range")
        .when(future, "date_in_future")
        .when(~quantity_is_valid, "invalid_quantity")
        .when(F.abs(quantity) > MAX_LINE_QUANTITY, "quantity_out_of_range")
        .when(~amount_is_valid, "invalid_amount")
        # An infinity (a number too long for a double) is out of range too; NaN never parses.
        .when(~(line_amount <= MAX_LINE_AMOUNT), "amount_out_of_range")
    )
    sign = F.when(F.col("is_return"), -1).otherwise(1)
    return dated.withColumn("is_return", is_return).select(
        "line_number",
        *keep,
        "raw_line",
        "customer_id",
        "order_date",
        (F.abs(quantity) * sign).alias("quantity"),
        F.when(amount_is_valid, kept_amount * sign).alias("amount"),
        "is_return",
        "order_id",
        reason.alias("reason"),
        F.coalesce(amount_is_valid & amount_rounded, F.lit(False)).alias("amount_rounded"),
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
    column_mapping: dict[str, str] | None = None,
    date_order: str | None = None,
    last_modified_date: date | None = None,
    amount_decimals: int = DEFAULT_AMOUNT_DECIMALS,
) -> dict:
    """Read, validate and write one input file; the run summary, or ValueError for a bad file.

    ``last_modified_date`` is the object's last-modified day (UTC): a row dated more than one
    day after it is ``date_in_future``."""
    try:
        return _transform(spark, input_path, transactions_path, quarantine_path, run_id=run_id,
                          source_uri=source_uri, min_date=min_date, max_date=max_date,
                          max_bad_share=max_bad_share, column_mapping=column_mapping,
                          date_order=date_order, last_modified_date=last_modified_date,
                          amount_decimals=amount_decimals)
    except Py4JJavaError as exc:
        # The JVM could not read the file (a truncated .gz, a damaged parquet footer): say so
        # with the file's name and the innermost Java cause, not a page of stack trace.
        raise ValueError(f"{source_uri}: cannot be read: {_java_cause(exc)}") from None


def _java_cause(exc: Py4JJavaError) -> str:
    cause = exc.java_exception
    while cause.getCause() is not None:
        cause = cause.getCause()
    return f"{cause.getClass().getSimpleName()}: {cause.getMessage()}"


def _transform(spark, input_path, transactions_path, quarantine_path, *, run_id, source_uri,
               min_date, max_date, max_bad_share, column_mapping, date_order, last_modified_date,
               amount_decimals) -> dict:
    head = read_head(spark, input_path)
    container = sniff(head, source_uri)
    if container == GZIP:
        # Beside the run's outputs (its prefix), never in the raw bucket.
        input_path = with_lowercase_gz(spark, input_path, transactions_path.rstrip("/").rsplit("/", 1)[0] + "/input")
    # A CDNOW text file (no header, no quotes: a line is a record) whose first line the head shows
    # is numbered in the parse pass itself (``split_start`` kept, the lines counted per split with
    # the other counts), not in a pass of its own first.
    # A column mapping is for files with a header: such a file is read the general way.
    fmt = None if column_mapping else fixed_width_format_of_head(head, container, source_uri)
    numbered_in_parse = fmt is not None
    keep = ("split_start",) if numbered_in_parse else ()
    if numbered_in_parse:
        # ``line_number`` holds the row id until the counts give each split's offset.
        records = tagged_lines(spark, input_path, source_uri).select(
            F.col("row_id").alias("line_number"), "split_start", "raw_line", F.lit(False).alias("unclosed_quote"))
        fields, multi_line_records, order = record_fields(records, fmt, keep), 0, DateOrder()
    else:
        fmt, fields, multi_line_records, order = _records_numbered_first(
            spark, input_path, source_uri, container, column_mapping, date_order)
    latest_date = None if last_modified_date is None else last_modified_date + timedelta(days=1)
    parsed = parse_transactions(spark, fields, fmt, source_uri, min_date, max_date,
                                date_order=order, latest_date=latest_date,
                                amount_decimals=amount_decimals, keep=keep)
    # What the writes and the identical rows read again: the raw line of a quarantined row only,
    # the source (one literal) added when written. Parsed once and staged as parquet beside the
    # run's outputs (deleted at the end): measured at 2 M rows, filling an in-memory cache took
    # 1.6-2.7x the parse's own time, a parquet write 1.4x, and every later pass reads only the
    # columns it needs. Without either, each pass parses again (measured far slower).
    quarantined_row = F.col("reason").isin(*REASONS)
    staging_path = transactions_path.rstrip("/").rsplit("/", 1)[0] + "/staging"
    # Readers list a table's prefix and should find only data files there.
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    hadoop_conf.set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
    accepted_row = F.col("reason").isNull()
    try:
        # The date of an accepted row only: a quarantined row's may be before 1582, which a
        # parquet writer refuses (and nothing reads it).
        parsed.select(
            "line_number", *keep, F.when(quarantined_row, F.col("raw_line")).alias("raw_line"),
            *[F.when(accepted_row, F.col(name)).alias(name) if name == "order_date" else name
              for name in parsed.columns if name not in ("line_number", "raw_line", "source_uri", *keep)],
        ).write.mode("overwrite").parquet(staging_path)
        parsed = spark.read.parquet(staging_path)
        # One pass over the staged rows gives every count and the date span. A global
        # aggregate, not a groupBy: no shuffle stage for a few numbers (numbered in the parse:
        # one row per split, for the splits' line counts).
        accepted_date = F.when(accepted_row, F.col("order_date"))
        returned = accepted_row & F.col("is_return")
        count_columns = [
            F.count_if(accepted_row).alias("accepted"),
            F.min(accepted_date).alias("first_order_date"),
            F.max(accepted_date).alias("last_order_date"),
            F.count_if(accepted_row & (F.col("amount") == 0)).alias("zero_amount"),
            F.count_if(accepted_row & F.col("amount_rounded")).alias("rounded_amounts"),
            F.count_if(returned).alias("return_lines"),
            F.sum(F.when(returned, -F.col("amount"))).alias("returned_amount"),
            *[F.count_if(F.col("reason") == reason).alias(reason) for reason in REASONS + EXCLUSIONS],
            *[F.sum(F.when(F.col("reason") == reason, F.col("amount"))).alias(f"{reason}_amount")
              for reason in EXCLUSIONS],
        ]
        if numbered_in_parse:
            splits = parsed.groupBy(_partition("line_number").alias("partition")).agg(
                F.count(F.lit(1)).alias("lines"),
                F.min("split_start").alias("split_start"),
                F.max("split_start").alias("last_split_start"),
                *count_columns,
            ).collect()
            offsets, _ = split_offsets(splits, source_uri)
            counts = _combined_counts([split.asDict() for split in splits])
            numbered = parsed.withColumn("line_number", line_number_of(offsets, "line_number"))
        else:
            counts = parsed.agg(
                F.count_if(F.col("line_number").isNull()).alias("unnumbered"), *count_columns).first().asDict()
            if counts["unnumbered"]:
                raise RuntimeError(f"{source_uri}: the file's splits changed between passes; rerun the job")
            numbered = parsed

        accepted = counts["accepted"]
        by_reason = {reason: counts[reason] for reason in REASONS if counts[reason]}
        excluded = {reason: counts[reason] for reason in EXCLUSIONS if counts[reason]}
        excluded_amount = {reason: round(counts[f"{reason}_amount"] or 0.0, amount_decimals) for reason in excluded}
        quarantined = sum(by_reason.values())
        read = accepted + sum(excluded.values()) + quarantined
        log.info(
            "run_id=%s %s: format %s, %d rows read, %d excluded, %d quarantined",
            run_id, source_uri, fmt.name, read, sum(excluded.values()), quarantined,
        )  # fmt: skip

        # The quarantine is written even when the file is then rejected: it is what explains
        # the rejection. The summary is not, so a rejected run leaves no sign of success.
        # Excluded rows are valid input the analysis leaves out: counted, not quarantined.
        (
            numbered.where(quarantined_row)
            .select("line_number", "raw_line", "reason", F.lit(source_uri).alias("source_uri"))
            .coalesce(1)
            # In line order (the staged files are read in no set order).
            .sortWithinPartitions("line_number")
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
        if not accepted:
            raise ValueError(f"{source_uri}: no row is left to analyse ({read} rows read, "
                             f"{sum(excluded.values())} excluded, {quarantined} quarantined)")
        # Kept and counted, never dropped: a row identical to another (same customer, day,
        # quantity, amount and order) is another order line, as are zero amounts.
        identical = (
            parsed.where(accepted_row)
            .groupBy("customer_id", "order_date", "quantity", "amount", "is_return", "order_id").count()
            .agg(F.sum(F.col("count") - 1).alias("identical")).first().identical
        ) or 0
        output_files = max(1, min(MAX_OUTPUT_FILES, -(-accepted // ROWS_PER_OUTPUT_FILE)))
        # Grouped by customer in id order (files in key ranges, each sorted): the per-customer
        # work downstream then finds each customer's rows with one pass of comparisons instead
        # of hashing millions of ids. The sort is O(transactions) work, Spark's share.
        accepted_rows = numbered.where(accepted_row).select(*TRANSACTION_COLUMNS)
        # One file needs no key ranges: one partition, sorted (no sampling job, no shuffle).
        grouped = (accepted_rows.coalesce(1) if output_files == 1
                   else accepted_rows.repartitionByRange(output_files, "customer_id"))
        (
            grouped.sortWithinPartitions("customer_id", "order_date", "line_number")
            .write.mode("overwrite")
            .parquet(transactions_path)
        )
    finally:
        path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(staging_path)
        path.getFileSystem(hadoop_conf).delete(path, True)

    return {
        "run_id": run_id,
        "source_uri": source_uri,
        "format": fmt.name,
        "compression": "gzip" if container == GZIP else None,
        "columns": dict(fmt.columns) or None,
        "amount_from": "unit_price" if fmt.unit_price else "amount",
        "money_reading": fmt.money_reading,
        "order_ids": fmt.order_field is not None,
        "date_order": order.order,
        "date_order_decided_by": order.decided_by,
        "read": read,
        "accepted": accepted,
        "excluded": excluded,
        "excluded_amount": excluded_amount,
        "quarantined": quarantined,
        "by_reason": by_reason,
        "return_lines": counts["return_lines"],
        "returned_amount": round(counts["returned_amount"] or 0.0, amount_decimals),
        "zero_amount_rows": counts["zero_amount"],
        "amount_decimals": amount_decimals,
        "rounded_amounts": counts["rounded_amounts"],
        "multi_line_records": multi_line_records,
        "identical_rows": identical,
        "first_order_date": _iso(counts["first_order_date"]),
        "last_order_date": _iso(counts["last_order_date"]),
        "latest_allowed_date": _iso(latest_date),
        "max_bad_share": max_bad_share,
    }


def _records_numbered_first(spark, input_path, source_uri, container, column_mapping, date_order):
    """The format and the records' fields of a file numbered in a pass of its own first (its
    format is read from its first non-blank line, or its parquet columns)."""
    if container == PARQUET_FILE:
        rows, fmt = read_parquet_rows(spark, input_path, source_uri, column_mapping)
        numbered = read_lines(spark, input_path, source_uri, rows=rows)
        if numbered.line_count == 0:
            raise ValueError(f"{source_uri}: empty file (a parquet file with no rows)")
    else:
        numbered = read_lines(spark, input_path, source_uri)
        if numbered.line_count == 0:
            raise ValueError(f"{source_uri}: empty file (no lines)")
        if numbered.first_nonblank_line is None:
            raise ValueError(f"{source_uri}: empty file ({numbered.line_count} lines, all blank)")
        fmt = detect_format(numbered.first_nonblank_line, source_uri, column_mapping)
    header_line_number = numbered.first_nonblank_line_number if fmt.has_header else 0
    if fmt.has_header and numbered.line_count == header_line_number:
        raise ValueError(f"{source_uri}: header only, no data rows")

    # A line left unnumbered must reach the count below, which rejects it, not vanish here.
    line_number = F.col("line_number")
    data_lines = numbered.lines.where(line_number.isNull() | (line_number > header_line_number))
    records, multi_line_records = join_quoted_records(spark, data_lines, fmt)
    fields = record_fields(records, fmt)
    order = date_order_of(fields, source_uri, date_order) if fmt.separator is not None else DateOrder()
    return fmt, fields, multi_line_records, order


def fixed_width_format_of_head(head: bytes, container: str, source: str) -> Format | None:
    """The CDNOW format of a text file whose head (``HEAD_BYTES``, as ``sniff`` saw them) shows
    its first non-blank line; None for any other file, or when the head cannot tell."""
    if container == PARQUET_FILE:
        return None
    whole_file = container == TEXT and len(head) < HEAD_BYTES
    if container == GZIP:
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, HEAD_BYTES)
        except zlib.error:
            return None
    first = first_nonblank_line_of_head(head, whole_file)
    if first is None:
        return None
    try:
        fmt = detect_format(first[1], source)
    except ValueError:
        return None  # the numbering pass comes first, and whatever it finds is reported
    return fmt if fmt.separator is None else None


def _combined_counts(splits: Sequence[dict]) -> dict:
    """The counts of the whole file from those of its splits."""
    counts = {}
    for name in splits[0]:
        values = [split[name] for split in splits if split[name] is not None]
        if name == "first_order_date":
            counts[name] = min(values, default=None)
        elif name == "last_order_date":
            counts[name] = max(values, default=None)
        else:
            counts[name] = sum(values) if values else None
    return counts


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
        "column_mapping": _argument(given, "column_mapping", _column_mapping, None),
        "date_order": _argument(given, "date_order", _date_order, None),
        "last_modified_date": _argument(given, "last_modified_date", date.fromisoformat, None),
        "max_delivery_bytes": _argument(given, "max_delivery_bytes", int, DEFAULT_MAX_DELIVERY_BYTES),
        "max_delivery_rows": _argument(given, "max_delivery_rows", int, DEFAULT_MAX_DELIVERY_ROWS),
        "max_compression_ratio": _argument(given, "max_compression_ratio", int, DEFAULT_MAX_COMPRESSION_RATIO),
        "amount_decimals": _argument(given, "amount_decimals", int, DEFAULT_AMOUNT_DECIMALS),
    }
    if args["min_date"] > args["max_date"]:
        raise ValueError(f"--min_date {args['min_date']} is after --max_date {args['max_date']}")
    if not 0.0 <= args["max_bad_share"] <= 1.0:
        raise ValueError(f"--max_bad_share must be between 0 and 1, got {args['max_bad_share']}")
    if not 0 <= args["amount_decimals"] <= MAX_AMOUNT_DECIMALS:
        raise ValueError(f"--amount_decimals must be between 0 and {MAX_AMOUNT_DECIMALS}, got {args['amount_decimals']}")
    return args


def _column_mapping(text: str) -> dict[str, str] | None:
    """A JSON object of field -> column name; "null" or "{}" for none."""
    mapping = json.loads(text)
    if mapping is None or mapping == {}:
        return None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ValueError(text)
    return mapping


def _date_order(text: str) -> str | None:
    """One of DATE_ORDERS; "" or "null" for none."""
    if text in ("", "null"):
        return None
    if text not in DATE_ORDERS:
        raise ValueError(text)
    return text


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
    checked = check_delivery_limits(args["input_uri"], args["max_delivery_bytes"], args["max_delivery_rows"],
                                    args["max_compression_ratio"])
    log.info("run_id=%s delivery within its limits: %s", args["run_id"], json.dumps(checked))
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
        column_mapping=args["column_mapping"],
        date_order=args["date_order"],
        last_modified_date=args["last_modified_date"],
        amount_decimals=args["amount_decimals"],
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
