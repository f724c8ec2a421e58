"""The Glue Transform job on small hand-written files, in a real local SparkSession."""

import datetime as dt
import gzip
import json
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdnow_transform import (
    CDNOW_MASTER,
    CDNOW_SAMPLE,
    detect_format,
    main,
    parse_args,
    transform,
)

DATA = Path(__file__).resolve().parents[2] / "data"

TRANSACTION_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("order_date", pa.date32()),
        ("quantity", pa.int64()),
        ("amount", pa.float64()),
        ("is_return", pa.bool_()),
        ("order_id", pa.string()),
        ("line_number", pa.int64()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("line_number", pa.int64()),
        ("raw_line", pa.string()),
        ("reason", pa.string()),
        ("source_uri", pa.string()),
    ]
)


def read_parquet(folder: Path) -> pa.Table:
    return pq.read_table(folder)


def column_types(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    """Names and types in order; nullability is Spark's bookkeeping, not the contract."""
    return [(field.name, field.type) for field in schema]


def transform_file(spark, source: Path, out: Path, **options):
    """Run the job on an existing file; outputs go to ``out/transactions`` and ``out/quarantine``."""
    summary = transform(
        spark,
        str(source),
        str(out / "transactions"),
        str(out / "quarantine"),
        run_id="run-1",
        source_uri=f"s3://raw/incoming/{source.name}",
        **options,
    )
    return summary, out / "transactions", out / "quarantine"


def run_transform(spark, tmp_path: Path, content, name="input.txt", **options):
    """Write ``content`` (str or bytes) as the input file and run the job on it."""
    source = tmp_path / name
    source.write_bytes(content if isinstance(content, bytes) else content.encode())
    return transform_file(spark, source, tmp_path, **options)


def rows(folder: Path) -> list[dict]:
    return sorted(read_parquet(folder).to_pylist(), key=lambda row: row["line_number"])


def reasons_by_line(quarantine: Path) -> dict[int, str]:
    return {row["line_number"]: row["reason"] for row in rows(quarantine)}


# --- format detection (pure) -----------------------------------------------------------


def test_detects_cdnow_fixed_width_formats():
    assert detect_format(" 00001 19970101  1   11.77\r\n", "s3://b/k") == CDNOW_MASTER
    assert detect_format(" 00004 0001 19970101  2   29.33", "s3://b/k") == CDNOW_SAMPLE


def test_detects_csv_columns_case_insensitively_in_any_order():
    fmt = detect_format('\ufeffSales,"Cust_ID",Extra,Purchase Date,QTY', "s3://b/k")
    assert fmt.name == "csv"
    assert fmt.field_count == 5
    assert (fmt.customer_field, fmt.date_field, fmt.quantity_field, fmt.money_field) == (1, 3, 4, 0)
    assert (fmt.unit_price, fmt.order_field) == (False, None)


def test_csv_header_missing_a_column_names_file_and_column():
    with pytest.raises(ValueError, match=r"s3://raw/in/x\.csv.*quantity"):
        detect_format("customer_id,date,price", "s3://raw/in/x.csv")


def test_unrecognized_first_line_names_file():
    with pytest.raises(ValueError, match=r"s3://raw/in/x\.txt: unrecognized first line"):
        detect_format("customer date quantity amount", "s3://raw/in/x.txt")


# --- formats end to end -----------------------------------------------------------------


def test_master_rows_are_typed_and_numbered(spark, tmp_path):
    content = " 00001 19970101  1   11.77\r\n 00002 19970112  1   12.00\r\n 00002 19970112  5   77.00\r\n"
    summary, transactions, quarantine = run_transform(spark, tmp_path, content)

    assert summary == {
        "run_id": "run-1",
        "source_uri": "s3://raw/incoming/input.txt",
        "format": "cdnow_master",
        "compression": None,
        "columns": None,
        "amount_from": "amount",
        "money_reading": "the fourth field is the line amount (CDNOW layout)",
        "order_ids": False,
        "date_order": None,
        "date_order_decided_by": None,
        "read": 3,
        "accepted": 3,
        "excluded": {},
        "excluded_amount": {},
        "quarantined": 0,
        "by_reason": {},
        "return_lines": 0,
        "returned_amount": 0.0,
        "zero_amount_rows": 0,
        "amount_decimals": 2,
        "rounded_amounts": 0,
        "multi_line_records": 0,
        "identical_rows": 0,
        "first_order_date": "1997-01-01",
        "last_order_date": "1997-01-12",
        "latest_allowed_date": None,
        "max_bad_share": 0.05,
    }
    assert column_types(read_parquet(transactions).schema) == column_types(TRANSACTION_SCHEMA)
    sale = {"is_return": False, "order_id": None}
    assert rows(transactions) == [
        {"customer_id": "00001", "order_date": dt.date(1997, 1, 1), "quantity": 1, "amount": 11.77, **sale, "line_number": 1},
        {"customer_id": "00002", "order_date": dt.date(1997, 1, 12), "quantity": 1, "amount": 12.0, **sale, "line_number": 2},
        {"customer_id": "00002", "order_date": dt.date(1997, 1, 12), "quantity": 5, "amount": 77.0, **sale, "line_number": 3},
    ]
    # An empty quarantine is still a table a reader can open.
    assert column_types(read_parquet(quarantine).schema) == column_types(QUARANTINE_SCHEMA)
    assert read_parquet(quarantine).num_rows == 0
    assert not list(tmp_path.rglob("_SUCCESS"))


def test_sample_uses_master_id_as_customer(spark, tmp_path):
    content = " 00004 0001 19970101  2   29.33\n 00004 0001 19970118  2   29.73\n 00018 0002 19970104  1   14.96"
    summary, transactions, _ = run_transform(spark, tmp_path, content)

    assert summary["format"] == "cdnow_sample"
    assert [(r["customer_id"], r["quantity"], r["amount"], r["line_number"]) for r in rows(transactions)] == [
        ("00004", 2, 29.33, 1),
        ("00004", 2, 29.73, 2),
        ("00018", 1, 14.96, 3),  # last line without a newline is still a row
    ]


def test_csv_header_is_line_one_and_not_a_row(spark, tmp_path):
    content = "Customer_ID,Date,Qty,Price\n7,1997-01-01,1,11.77\n8,19970102,2,5\n"
    summary, transactions, _ = run_transform(spark, tmp_path, content, name="orders.csv")

    assert (summary["format"], summary["read"], summary["accepted"]) == ("csv", 2, 2)
    assert [(r["customer_id"], r["order_date"], r["amount"], r["line_number"]) for r in rows(transactions)] == [
        ("7", dt.date(1997, 1, 1), 11.77, 2),
        ("8", dt.date(1997, 1, 2), 5.0, 3),
    ]


def test_csv_with_bom_and_crlf(spark, tmp_path):
    content = b'\xef\xbb\xbfcust_id,order_date,cds,dollar_value\r\n"A1", 1997-03-01 ,3,30.5\r\nA2,1997-13-01,1,1\r\n'
    summary, transactions, quarantine = run_transform(spark, tmp_path, content, name="orders.csv", max_bad_share=1.0)

    assert summary["format"] == "csv"
    assert [(r["customer_id"], r["order_date"], r["quantity"]) for r in rows(transactions)] == [
        ("A1", dt.date(1997, 3, 1), 3)
    ]
    assert rows(quarantine) == [
        {"line_number": 3, "raw_line": "A2,1997-13-01,1,1", "reason": "invalid_date", "source_uri": "s3://raw/incoming/orders.csv"}
    ]


# --- validation -------------------------------------------------------------------------


@pytest.fixture(params=["false", "true"], ids=["ansi-off", "ansi-on"])
def ansi_mode(spark, request):
    """Glue 5.0 runs with ANSI mode off; Spark 4 turns it on, and then a bad cast raises."""
    saved = spark.conf.get("spark.sql.ansi.enabled")
    spark.conf.set("spark.sql.ansi.enabled", request.param)
    yield request.param
    spark.conf.set("spark.sql.ansi.enabled", saved)


def test_every_reason_code_and_first_failing_check_wins(spark, tmp_path, ansi_mode):
    lines = [
        "customer_id,date,quantity,amount",  # 1 header
        "1,19970101,1,11.77",  # 2 valid
        "",  # 3
        "   ",  # 4
        "1,19970101,1",  # 5
        "1,19970101,1,11.77,",  # 6 trailing comma is a fifth field
        ",19970101,1,11.77",  # 7 no customer: excluded, not quarantined
        "1,19970230,1,11.77",  # 8 no 30 February
        "1,19000229,1,11.77",  # 9 1900 is not a leap year
        "1,1997011,1,11.77",  # 10
        "1,18991231,1,11.77",  # 11
        "1,19970101,-1,11.77",  # 12 valid: a return
        "1,19970101,1.5,11.77",  # 13
        "1,19970101,1,-3.00",  # 14 a negative amount on a sale
        "1,19970101,1,12,5",  # 15 a decimal comma splits the row
        "1,19970101,1,abc",  # 16
        "1,abc,x,y",  # 17 everything after the customer is wrong: the date is reported
        "1,19960229,2.0,0",  # 18 valid: leap day, integral quantity, zero amount
        "1,99999999,99999999999999999999,1e999",  # 19 casts that would overflow are never tried
    ]
    summary, transactions, quarantine = run_transform(
        spark, tmp_path, "\n".join(lines) + "\n", name="x.csv", max_bad_share=1.0
    )

    assert reasons_by_line(quarantine) == {
        3: "blank_line",
        4: "blank_line",
        5: "wrong_field_count",
        6: "wrong_field_count",
        8: "invalid_date",
        9: "invalid_date",
        10: "invalid_date",
        11: "date_out_of_range",
        13: "invalid_quantity",
        14: "invalid_amount",
        15: "wrong_field_count",
        16: "invalid_amount",
        17: "invalid_date",
        19: "invalid_date",
    }
    assert [(r["line_number"], r["quantity"], r["amount"], r["is_return"]) for r in rows(transactions)] == [
        (2, 1, 11.77, False), (12, -1, -11.77, True), (18, 2, 0.0, False)]
    assert summary["by_reason"] == {
        "blank_line": 2,
        "wrong_field_count": 3,
        "invalid_date": 5,
        "date_out_of_range": 1,
        "invalid_quantity": 1,
        "invalid_amount": 2,
    }
    assert (summary["excluded"], summary["excluded_amount"]) == ({"no_customer_id": 1}, {"no_customer_id": 11.77})
    assert (summary["return_lines"], summary["returned_amount"]) == (1, 11.77)
    assert summary["read"] == summary["accepted"] + 1 + summary["quarantined"] == len(lines) - 1


def test_fixed_width_blank_and_short_lines_and_date_window(spark, tmp_path):
    content = "\r\n 00001 19970101  1   11.77\r\n 00001 19970101  1\r\n 00002 19961231  1   1.00\r\n"
    summary, transactions, quarantine = run_transform(
        spark, tmp_path, content, min_date=dt.date(1997, 1, 1), max_date=dt.date(1998, 6, 30), max_bad_share=1.0
    )

    assert summary["format"] == "cdnow_master"  # detected from the first non-blank line
    assert reasons_by_line(quarantine) == {1: "blank_line", 3: "wrong_field_count", 4: "date_out_of_range"}
    assert rows(quarantine)[1]["raw_line"] == " 00001 19970101  1"
    assert [r["line_number"] for r in rows(transactions)] == [2]
    assert (summary["read"], summary["accepted"], summary["quarantined"]) == (4, 1, 3)


def test_zero_amounts_and_identical_rows_are_kept(spark, tmp_path):
    row = " 00003 19970102  2   20.76"
    content = "\n".join([row, row, " 00003 19970330  2    0.00", row]) + "\n"
    summary, transactions, _ = run_transform(spark, tmp_path, content)

    kept = rows(transactions)
    assert summary["accepted"] == len(kept) == 4
    assert [r["amount"] for r in kept] == [20.76, 20.76, 0.0, 20.76]


def test_line_numbers_are_physical_across_many_splits(spark, tmp_path):
    # Each line carries its own number as the customer id; bad lines are scattered.
    lines = [f" {n:05d} 19970101  1   1.00" for n in range(1, 3001)]
    for n in (1, 1234, 3000):
        lines[n - 1] = f" {n:05d} 19970101  x   1.00"
    source = tmp_path / "many.txt"
    source.write_text("\r\n".join(lines) + "\r\n")
    confs = {"spark.sql.files.maxPartitionBytes": "8192", "spark.sql.files.openCostInBytes": "0"}
    saved = {key: spark.conf.get(key) for key in confs}
    try:
        for key, value in confs.items():
            spark.conf.set(key, value)
        assert spark.read.text(str(source)).rdd.getNumPartitions() > 5
        summary, transactions, quarantine = run_transform(
            spark, tmp_path, source.read_bytes(), name="many.txt", max_bad_share=0.01
        )
    finally:
        for key, value in saved.items():
            spark.conf.set(key, value)

    assert (summary["read"], summary["quarantined"]) == (3000, 3)
    accepted = read_parquet(transactions).to_pydict()
    assert [int(c) for c in accepted["customer_id"]] == accepted["line_number"]
    assert sorted(accepted["line_number"]) == [n for n in range(1, 3001) if n not in (1, 1234, 3000)]
    assert {r["line_number"]: r["raw_line"][:6] for r in rows(quarantine)} == {
        1: " 00001",
        1234: " 01234",
        3000: " 03000",
    }


def test_rerun_replaces_its_own_output(spark, tmp_path):
    content = " 00001 19970101  1   11.77\n"
    run_transform(spark, tmp_path, content)
    summary, transactions, _ = run_transform(spark, tmp_path, content)

    assert read_parquet(transactions).num_rows == summary["accepted"] == 1


# --- file-level failures ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"s3://raw/incoming/bad\.csv: empty file \(0 bytes\)"),
        (b"\n  \r\n\n", r"s3://raw/incoming/bad\.csv: empty file \(3 lines, all blank\)"),
        (b"customer_id,date,quantity,amount\r\n", r"s3://raw/incoming/bad\.csv: header only"),
        (b"customer_id,date,amount\n1,19970101,1\n", r"s3://raw/incoming/bad\.csv: header .* no column for quantity"),
        (b"<html>oops</html>\n", r"s3://raw/incoming/bad\.csv: unrecognized first line"),
    ],
    ids=["empty", "blank-lines-only", "header-only", "missing-column", "unrecognized"],
)
def test_unusable_file_raises_naming_it(spark, tmp_path, content, message):
    with pytest.raises(ValueError, match=message):
        run_transform(spark, tmp_path, content, name="bad.csv")
    assert not (tmp_path / "transactions").exists()


def test_too_many_bad_rows_raises_after_writing_only_the_quarantine(spark, tmp_path):
    content = " 00001 19970101  1   11.77\n 00002 19970101  1   oops\n\n 00004 19970101  1   1.00\n"
    with pytest.raises(ValueError) as raised:
        run_transform(spark, tmp_path, content, name="dirty.txt", max_bad_share=0.25)

    message = str(raised.value)
    assert "s3://raw/incoming/dirty.txt" in message
    assert "2 of 4 rows quarantined (50.00%)" in message
    assert "invalid_amount=1" in message and "blank_line=1" in message
    assert reasons_by_line(tmp_path / "quarantine") == {2: "invalid_amount", 3: "blank_line"}
    assert not (tmp_path / "transactions").exists()


# --- arguments and entry point ----------------------------------------------------------


def test_parse_args_ignores_glue_system_arguments():
    args = parse_args(
        [
            "--JOB_ID", "j_123",
            "--JOB_RUN_ID", "jr_456",
            "--job-bookmark-option", "job-bookmark-disable",
            "--TempDir", "s3://aws-glue-temp/tmp",
            "--enable-metrics",
            "--run_id", "abc123",
            "--input_uri", "s3://raw/incoming/CDNOW_master.txt",
            "--run_prefix", "s3://curated/runs/run_id=abc123/",
            "--max_bad_share=0.1",
            "--JOB_NAME", "cdnow-transform",
        ]
    )  # fmt: skip
    assert args == {
        "run_id": "abc123",
        "input_uri": "s3://raw/incoming/CDNOW_master.txt",
        "run_prefix": "s3://curated/runs/run_id=abc123/",
        "min_date": dt.date(1900, 1, 1),
        "max_date": dt.date(2100, 12, 31),
        "max_bad_share": 0.1,
        "column_mapping": None,
        "date_order": None,
        "last_modified_date": None,
        "max_delivery_bytes": 20_000_000_000,
        "max_delivery_rows": 100_000_000,
        "max_compression_ratio": 100,
        "amount_decimals": 2,
    }
    mapped = parse_args(["--run_id", "r", "--input_uri", "s3://raw/k", "--run_prefix", "s3://c/r/",
                         "--column_mapping", '{"customer_id": "Kunde"}'])
    assert mapped["column_mapping"] == {"customer_id": "Kunde"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--run_id", "r", "--input_uri", "s3://raw/k"], "--run_prefix"),
        (["--run_id", "r", "--input_uri", "s3://raw/k", "--run_prefix", "s3://c/runs/run_id=r"], "end with '/'"),
        (["--run_id", "r", "--input_uri", "s3://raw/k", "--run_prefix", "s3://c/r/", "--column_mapping", "[1]"],
         "--column_mapping: cannot read"),
    ],
)
def test_parse_args_rejects_missing_or_malformed_arguments(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_args(argv)


def test_cdnow_files(spark, tmp_path):
    master, master_transactions, _ = transform_file(spark, DATA / "CDNOW_master.txt", tmp_path / "master")
    assert master["format"] == "cdnow_master"
    assert master["read"] == master["accepted"] == 69_659
    assert master["quarantined"] == 0
    # DESIGN.md: kept, each an order, and counted (data/README.md's figures).
    assert (master["zero_amount_rows"], master["identical_rows"]) == (80, 255)
    assert (master["first_order_date"], master["last_order_date"]) == ("1997-01-01", "1998-06-30")
    table = read_parquet(master_transactions)
    assert table.num_rows == 69_659
    assert len(table.column("customer_id").unique()) == 23_570
    assert round(pa.compute.sum(table.column("amount")).as_py(), 2) == 2_500_315.63
    assert pa.compute.sum(table.column("quantity")).as_py() == 167_881
    assert sorted(table.column("line_number").to_pylist()) == list(range(1, 69_660))

    sample, sample_transactions, _ = transform_file(spark, DATA / "CDNOW_sample.txt", tmp_path / "sample")
    assert (sample["format"], sample["read"], sample["accepted"]) == ("cdnow_sample", 6_919, 6_919)
    table = read_parquet(sample_transactions)
    assert len(table.column("customer_id").unique()) == 2_357


def test_main_reads_and_writes_through_s3_names(spark, tmp_path, mocked_aws):
    def spark_path(uri: str) -> str:
        return str(tmp_path / uri.removeprefix("s3://"))

    raw = Path(spark_path("s3://raw/incoming/orders.txt"))
    raw.parent.mkdir(parents=True)
    raw.write_text(" 00001 19970101  1   11.77\r\n 00002 19970112  1   12.00\r\n")
    prefix = "s3://curated/runs/run_id=r1/"

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="curated")
    s3.create_bucket(Bucket="raw")  # the pre-check of the delivery's limits reads it from S3
    s3.put_object(Bucket="raw", Key="incoming/orders.txt", Body=raw.read_bytes())
    summary = main(
        ["--JOB_NAME", "transform", "--run_id", "r1", "--input_uri", "s3://raw/incoming/orders.txt",
         "--run_prefix", prefix],
        spark=spark,
        spark_path=spark_path,
    )  # fmt: skip
    stored = json.loads(s3.get_object(Bucket="curated", Key="runs/run_id=r1/transform.json")["Body"].read())

    assert stored == summary
    assert (summary["run_id"], summary["source_uri"], summary["accepted"]) == ("r1", "s3://raw/incoming/orders.txt", 2)
    assert read_parquet(Path(spark_path(prefix + "transactions/"))).num_rows == 2
    assert read_parquet(Path(spark_path(prefix + "quarantine/"))).num_rows == 0
    assert not spark.sparkContext._jsc.sc().isStopped()  # a session it was given stays up


def test_transactions_are_written_grouped_by_customer_in_id_order(spark, tmp_path):
    content = "".join(f" {c:05d} 1997{m:02d}01  1   1.00\n" for m in (3, 1, 2) for c in (7, 3, 11, 5))
    _, transactions, _ = run_transform(spark, tmp_path, content)
    written = read_parquet(transactions).to_pylist()  # in file and row order, as readers get it
    keys = [(row["customer_id"], row["order_date"]) for row in written]
    assert keys == sorted(keys) and len(keys) == 12


# --- RFC 4180 quoting ---------------------------------------------------------------------


def test_pairing_quotes_into_records_over_several_lines():
    from cdnow_transform import pair_quotes

    # (line, opens a quoted field): 5 opens and 7 closes; 9 is a stray inch mark; 12 never closes
    spans, unclosed = pair_quotes([(5, True), (7, False), (9, False), (12, True)])
    assert spans == [(5, 7)] and unclosed == [12]
    # A closer further than the limit: the opener is unclosed, the far line parses on its own
    # (or opens a record itself).
    assert pair_quotes([(2, True), (200, False)], max_lines=100) == ([], [2])
    assert pair_quotes([(2, True), (200, True), (201, False)], max_lines=100) == ([(200, 201)], [2])


def test_quoted_fields_hold_separators_quotes_and_line_breaks(spark, tmp_path):
    lines = [
        'Invoice,Description,customer_id,date,quantity,amount',  # 1
        '1,"RED, WHITE AND BLUE",1,19970101,1,11.77',  # 2: a comma inside quotes
        '2,"THE ""BEST"" MUG",2,19970101,2,"3.50"',  # 3: doubled quotes; a quoted number
        '3,"TWO',  # 4: a line break inside quotes: lines 4-6 are one record, numbered 4
        '',  # 5: a blank line inside the quoted value is part of it
        'LINES",3,19970102,1,2.00',  # 6
        '4,3.5" DISK,4,19970103,1,1.00',  # 7: a stray quote inside an unquoted value
        '5,"DESCRIPTION, NO CLOSING QUOTE,5,19970104,1,1.00',  # 8: unclosed
        '6,PLAIN,6,19970105,1,1.00,EXTRA',  # 9: one field too many, outside quotes
    ]
    summary, transactions, quarantine = run_transform(
        spark, tmp_path, "\n".join(lines) + "\n", name="quoted.csv", max_bad_share=1.0)
    accepted = rows(transactions)
    assert [(r["line_number"], r["customer_id"], r["quantity"], r["amount"]) for r in accepted] == [
        (2, "1", 1, 11.77), (3, "2", 2, 3.5), (4, "3", 1, 2.0), (7, "4", 1, 1.0)]
    assert reasons_by_line(quarantine) == {8: "unclosed_quote", 9: "wrong_field_count"}
    # A record counts once, under its first line: read = accepted + quarantined, 6 records of 8 lines.
    assert summary["read"] == 6 == summary["accepted"] + summary["quarantined"]
    assert summary["multi_line_records"] == 1


def test_iso_date_times_and_float_written_ids(spark, tmp_path):
    lines = [
        "Invoice,customer_id,date,quantity,amount",
        "1,17850.0,2010-12-01 08:26:00,6,15.30",  # a time of day: the day as written
        "2,17850.00,2010-12-01T23:59:59.123Z,1,1.00",
        "3,00042,2010-12-02T00:30+02:00,1,1.00",  # an offset: still the date as written
        "4, 13047 ,2010-12-03 8:05,1,1.00",  # a one-digit hour; spaces around the id
        "5,1.5,2010-12-04,1,1.00",  # not an integer: kept as written
        "6,12345,2010-12-05 25:00,1,1.00",  # no 25 o'clock
    ]
    summary, transactions, quarantine = run_transform(
        spark, tmp_path, "\n".join(lines) + "\n", name="times.csv", max_bad_share=1.0)
    assert [(r["customer_id"], r["order_date"].isoformat()) for r in rows(transactions)] == [
        ("17850", "2010-12-01"), ("17850", "2010-12-01"), ("00042", "2010-12-02"), ("13047", "2010-12-03"),
        ("1.5", "2010-12-04")]
    assert reasons_by_line(quarantine) == {7: "invalid_date"}


def test_ids_are_trimmed_unquoted_and_otherwise_kept_verbatim(spark, tmp_path):
    """Issue 20, case 9 (ID_RULES): padding and a pair of quotes go, 17850.0 is 17850, and
    nothing else changes; a lone trailing quote was dropped silently before."""
    content = ("customer_id\tdate\tquantity\tamount\n"
               " 42 \t2010-01-02\t1\t1.00\n"
               '"44"\t2010-01-02\t1\t1.00\n'
               '45"\t2010-01-02\t1\t1.00\n'
               "00012\t2010-01-02\t1\t1.00\n"
               "17850.0\t2010-01-02\t1\t1.00\n"
               "Ab c\t2010-01-02\t1\t1.00\n")
    summary, transactions, _ = run_transform(spark, tmp_path, content, name="ids.tsv")
    assert summary["quarantined"] == 0
    assert [row["customer_id"] for row in rows(transactions)] == ["42", "44", '45"', "00012", "17850", "Ab c"]


# --- limits of one delivery (issue 20, case 3) ------------------------------------------------


@pytest.fixture
def s3_bucket(mocked_aws):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="raw")
    return s3


def gzip_of_repeated(line: bytes, total: int) -> bytes:
    """A gzip of ``line`` repeated to ``total`` bytes, compressed chunk by chunk (little memory)."""
    import zlib

    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = line * (1024 * 1024 // len(line))
    parts = [deflate.compress(block) for _ in range(total // len(block))]
    return b"".join(parts) + deflate.flush()


def test_a_decompression_bomb_is_stopped_as_soon_as_it_shows(s3_bucket):
    from cdnow_transform import DEFAULT_MAX_COMPRESSION_RATIO, check_delivery_limits

    bomb = gzip_of_repeated(b" 00001 19970101  1   11.77\n", 512 * 1024 * 1024)
    s3_bucket.put_object(Bucket="raw", Key="incoming/bomb.txt.gz", Body=bomb)
    with pytest.raises(ValueError, match=r"incoming/bomb\.txt\.gz: the gzip expands more than 100x .*MaxCompressionRatio"):
        check_delivery_limits("s3://raw/incoming/bomb.txt.gz", 10**12, 10**12, DEFAULT_MAX_COMPRESSION_RATIO)


def test_bytes_and_lines_past_their_limits_name_the_limit(s3_bucket):
    from cdnow_transform import check_delivery_limits

    lines = b"".join(b" %05d 19970101  1   11.77\n" % i for i in range(1000))
    s3_bucket.put_object(Bucket="raw", Key="incoming/a.txt.gz", Body=gzip.compress(lines))
    s3_bucket.put_object(Bucket="raw", Key="incoming/a.txt", Body=lines)
    assert check_delivery_limits("s3://raw/incoming/a.txt.gz", 10**9, 1000, 100) == {
        "compressed": True, "bytes": len(lines), "rows": 1000}
    with pytest.raises(ValueError, match=r"a\.txt\.gz: more than 999 lines, the stack's MaxDeliveryRows"):
        check_delivery_limits("s3://raw/incoming/a.txt.gz", 10**9, 999, 100)
    with pytest.raises(ValueError, match=r"a\.txt\.gz: more than 1,000 bytes uncompressed, the stack's MaxDeliveryBytes"):
        check_delivery_limits("s3://raw/incoming/a.txt.gz", 1000, 10**9, 100)
    # A plain file too small to hold max_rows lines is not read again: its size is what it holds.
    assert check_delivery_limits("s3://raw/incoming/a.txt", 10**9, 10**6, 100)["rows"] is None
    with pytest.raises(ValueError, match=r"a\.txt: more than 500 lines"):
        check_delivery_limits("s3://raw/incoming/a.txt", 10**9, 500, 100)


def test_the_limits_defaults_are_the_layer_s():
    import cdnow_transform
    from cdnow.domain import runs

    for name in ("DEFAULT_MAX_DELIVERY_BYTES", "DEFAULT_MAX_DELIVERY_ROWS", "DEFAULT_MAX_COMPRESSION_RATIO"):
        assert getattr(cdnow_transform, name) == getattr(runs, name), name


def test_amounts_keep_the_currency_s_decimals_rounded_once_per_line_in_decimal(spark, tmp_path):
    """Issue 20: an amount keeps the currency's minor unit (--amount_decimals, 2 by default): a
    unit price times its quantity is rounded half up once, in decimal (a double's 2.55 x 6 is
    15.2999..., its 1.115 x 3 would round down), and the lines whose amount the rounding
    changed are counted."""
    content = ("Invoice,InvoiceDate,Quantity,Price,Customer ID\n"
               "1,2010-12-01,6,2.55,17850\n"  # 15.30: no rounding, whatever the double says
               "2,2010-12-01,3,1.115,17850\n"  # 3.345 -> 3.35
               "3,2010-12-01,1,0.125,17851\n"  # 0.125 -> 0.13
               "4,2010-12-01,8,0.125,17851\n"  # 1.000: exact
               "C5,2010-12-02,-1,1.234,17851\n")  # a return of 1.234 -> -1.23
    summary, transactions, _ = run_transform(spark, tmp_path, content, name="lines.csv")
    assert [r["amount"] for r in rows(transactions)] == [15.3, 3.35, 0.13, 1.0, -1.23]
    assert (summary["amount_decimals"], summary["rounded_amounts"], summary["returned_amount"]) == (2, 3, 1.23)

    summary, transactions, _ = run_transform(spark, tmp_path, content, name="yen.csv", amount_decimals=0)
    assert [r["amount"] for r in rows(transactions)] == [15.0, 3.0, 0.0, 1.0, -1.0]
    assert summary["rounded_amounts"] == 4
    # An amount beyond the decimal arithmetic's reach (more than 8 decimals) is rounded too.
    lines = "customer_id,date,quantity,amount\n7,1997-01-01,1,11.770000000001\n7,1997-01-02,1,2.5\n"
    summary, transactions, _ = run_transform(spark, tmp_path, lines, name="long.csv")
    assert [r["amount"] for r in rows(transactions)] == [11.77, 2.5] and summary["rounded_amounts"] == 1


def test_amount_decimals_argument_is_bounded_and_its_default_is_the_layer_s():
    import cdnow_transform
    from cdnow.domain import runs

    assert cdnow_transform.DEFAULT_AMOUNT_DECIMALS == runs.currency_decimals(runs.DEFAULT_CURRENCY) == 2
    assert (runs.currency_decimals("jpy"), runs.currency_decimals("KWD"), runs.currency_decimals("EUR")) == (0, 3, 2)
    base = ["--run_id", "r", "--input_uri", "s3://b/incoming/k", "--run_prefix", "s3://c/runs/r/"]
    assert parse_args(base + ["--amount_decimals", "3"])["amount_decimals"] == 3
    with pytest.raises(ValueError, match="--amount_decimals must be between 0 and 4, got 7"):
        parse_args(base + ["--amount_decimals", "7"])


# --- numbering in the parse pass: what the head of a file decides ---------------------------

def test_the_first_non_blank_line_is_read_from_the_head_as_the_numbering_pass_reads_it():
    from cdnow_transform import first_nonblank_line_of_head

    assert first_nonblank_line_of_head(b"\xef\xbb\xbf\r\n  \n 00001 19970101  1   11.77\r\n", True) == (
        3, " 00001 19970101  1   11.77")
    # The head of a larger file: its last line may be cut, so only complete lines count.
    assert first_nonblank_line_of_head(b"\n 00001 199701", False) is None
    assert first_nonblank_line_of_head(b"\n 00001 19970101  1   11.77", True) == (2, " 00001 19970101  1   11.77")
    # Undecidable from the head: the numbering pass decides (and reports) instead.
    assert first_nonblank_line_of_head(b"\xff\xfe bad\n", True) is None
    assert first_nonblank_line_of_head("\u2028\n 00001 19970101  1   11.77\n".encode(), True) is None
    assert first_nonblank_line_of_head(b" \n\t\n", True) is None


def test_only_a_cdnow_text_file_the_head_shows_is_numbered_in_the_parse_pass():
    from cdnow_transform import GZIP, HEAD_BYTES, PARQUET_FILE, TEXT, fixed_width_format_of_head

    line = b" 00001 19970101  1   11.77\n"
    assert fixed_width_format_of_head(line * 3, TEXT, "s3://raw/a.txt") == CDNOW_MASTER
    assert fixed_width_format_of_head(gzip.compress(line * 3), GZIP, "s3://raw/a.txt.gz") == CDNOW_MASTER
    assert fixed_width_format_of_head(b"PAR1", PARQUET_FILE, "s3://raw/a.parquet") is None
    assert fixed_width_format_of_head(b"customer_id,order_date,quantity,amount\n1,1997-01-01,1,2.5\n", TEXT,
                                      "s3://raw/a.csv") is None  # a header and separators: the general path
    assert fixed_width_format_of_head(b"no transaction here at all\n", TEXT, "s3://raw/a.txt") is None
    # A head that is all blank, cut before the first line ends: the general path.
    assert fixed_width_format_of_head(b" " * HEAD_BYTES, TEXT, "s3://raw/a.txt") is None


def test_numbers_read_by_a_cast_or_by_the_patterns_agree(spark, tmp_path):
    # Texts a cast's round trip accepts (2, 11.77) and texts only the patterns decide (2.0, 011.77,
    # 11.775, .5, +2, 19 digits), on printable lines and on lines that take the patterns' way
    # (a tab, a CR, a BOM): one reading for each.
    cases = [
        ("2", "11.77", 2, 11.77), ("2.0", "11.770", 2, 11.77), ("02", "011.77", 2, 11.77),
        ("-2", "-11.77", -2, -11.77), ("1", "11.775", 1, 11.78), ("1", ".5", 1, 0.5), ("1", "5", 1, 5.0),
        ("-0", "-0.00", 0, 0.0), ("+2", "1.00", None, None), ("1234567890123456789", "1.00", None, None),
        ("1", "1e2", None, None), ("1", "123456789012.00", None, None),
    ]
    lines = [" 00001 19970101  1   1.00"]
    for quantity, amount, _, _ in cases:
        lines += [f" 00001 19970102 {quantity} {amount}", f"\ufeff00001\t19970102 {quantity} {amount}\r"]
    summary, transactions, quarantine = run_transform(spark, tmp_path, "\n".join(lines) + "\n", max_bad_share=1.0)

    kept = {r["line_number"]: (r["quantity"], r["amount"]) for r in rows(transactions)}
    bad = reasons_by_line(quarantine)
    for i, (_, _, quantity, amount) in enumerate(cases):
        for number in (2 * i + 2, 2 * i + 3):
            if quantity is None:
                assert number in bad, (number, cases[i])
            else:
                assert kept[number] == (quantity, amount), (number, cases[i])
    assert summary["by_reason"] == {"invalid_quantity": 4, "invalid_amount": 2, "amount_out_of_range": 2}


def test_no_line_is_blank_or_unparseable_by_the_printable_shortcut_alone(spark, tmp_path):
    lines = [" 00001 19970101  1   1.00", "", "   ", " \x0b ", " 00002 19970101  1   1\x01.00",
             "\x7f00004 19970101  1   1.00", " 00005 19970101  1 1.00 7"]
    content = ("\n".join(lines) + "\n").encode() + b" 00006 19970101  1   1.00\xff\n"
    summary, _, quarantine = run_transform(spark, tmp_path, content, max_bad_share=1.0)

    assert reasons_by_line(quarantine) == {2: "blank_line", 3: "blank_line", 4: "blank_line",
                                           5: "unparseable_line", 6: "unparseable_line", 7: "wrong_field_count",
                                           8: "unparseable_line"}
    assert summary["accepted"] == 1


def test_the_staged_rows_are_removed(spark, tmp_path):
    run_transform(spark, tmp_path, " 00001 19970101  1   11.77\n")

    assert sorted(path.name for path in tmp_path.iterdir() if path.is_dir()) == ["quarantine", "transactions"]
