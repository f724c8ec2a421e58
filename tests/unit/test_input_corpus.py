"""The input corpus (tests/data/inputs, written by its make_corpus.py) through the Transform job.

Each case is a row of docs/RELIABILITY.md: what a file is, what the job must do with it, and the
figures it must report. Every accepted case checks read = accepted + excluded + quarantined and
the count per reason; every refused case checks the error names the file and the reason, and that nothing
was written where Features would read it.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import defaultdict
from decimal import Decimal
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cdnow_transform import transform

CORPUS = Path(__file__).resolve().parents[1] / "data" / "inputs"
RELIABILITY = Path(__file__).resolve().parents[2] / "docs" / "RELIABILITY.md"


@dataclass(frozen=True)
class Accepted:
    file: str
    format: str
    accepted: int
    by_reason: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    compression: str | None = None
    kept: tuple[int, int] = (0, 0)  # zero-amount rows, rows identical to another: accepted, counted
    excluded: dict = field(default_factory=dict)
    return_lines: int = 0


@dataclass(frozen=True)
class Refused:
    file: str
    message: str  # a regular expression the error must match after the file's URI
    options: dict = field(default_factory=dict)


GERMAN_HEADER = {"customer_id": "Kunde", "order_date": "Datum", "quantity": "Menge", "amount": "Betrag"}
GERMAN_ORDER_LINES = {"order_id": "Rechnung", "order_date": "Rechnungsdatum", "quantity": "Menge",
                      "unit_price": "Stückpreis", "customer_id": "Kundennummer"}
# The day future_dated.txt was delivered: a row dated after the next day is in the future.
DELIVERED = {"last_modified_date": dt.date(1998, 7, 1)}



def order_lines() -> list[dict]:
    """online_retail_ii.csv read by Python's csv module: the oracle for the Transform's parser."""
    with open(CORPUS / "online_retail_ii.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


ORDER_LINES_GUEST = sum(1 for line in order_lines() if not line["Customer ID"])
ORDER_LINES_CANCELLED = sum(1 for line in order_lines() if line["Customer ID"] and line["Invoice"].startswith("C"))
ORDER_LINES_ACCEPTED = len(order_lines()) - ORDER_LINES_GUEST

ACCEPTED = [
    Accepted("master_bom_crlf.txt", "cdnow_master", 60),
    Accepted("transactions.csv", "csv", 60),
    Accepted("transactions.tsv", "tsv", 60),
    Accepted("kunden.csv", "csv", 60, options={"column_mapping": GERMAN_HEADER}),
    Accepted("master.txt.gz", "cdnow_master", 60, compression="gzip"),
    Accepted("MASTER.TXT.GZ", "cdnow_master", 60, compression="gzip"),
    Accepted("transactions.parquet", "parquet", 60),
    Accepted("dirty.txt", "cdnow_master", 203, by_reason={
        "blank_line": 1, "unparseable_line": 1, "wrong_field_count": 2, "invalid_date": 1,
        "date_out_of_range": 1, "invalid_quantity": 1, "invalid_amount": 2}, kept=(2, 1), return_lines=1),
    Accepted("missing_customer.csv", "csv", 100, excluded={"no_customer_id": 1}),
    Accepted("future_dated.txt", "cdnow_master", 101, by_reason={"date_in_future": 2}, options=DELIVERED),
    Accepted("online_retail_ii.csv", "csv", ORDER_LINES_ACCEPTED, excluded={"no_customer_id": ORDER_LINES_GUEST},
             return_lines=ORDER_LINES_CANCELLED),
    Accepted("bestellungen.csv", "csv", ORDER_LINES_ACCEPTED, excluded={"no_customer_id": ORDER_LINES_GUEST},
             return_lines=ORDER_LINES_CANCELLED, options={"column_mapping": GERMAN_ORDER_LINES}),
    Accepted("slashed_day_first.csv", "csv", 3),
    Accepted("slashed_month_first.csv", "csv", 3),
    Accepted("slashed_undecidable.csv", "csv", 2, options={"date_order": "month_first"}),
    Accepted("latin1_late_line.txt", "cdnow_master", 3010, by_reason={"unparseable_line": 1}),
    Accepted("nul_on_line_501.txt", "cdnow_master", 599, by_reason={"unparseable_line": 1}),
    Accepted("out_of_range.txt", "cdnow_master", 301, by_reason={"quantity_out_of_range": 10,
                                                                 "amount_out_of_range": 2}),
]

REFUSED = [
    Refused("empty.txt", r"empty file \(0 bytes\)"),
    Refused("blank_lines.txt", r"empty file \(3 lines, all blank\)"),
    Refused("header_only.csv", r"header only, no data rows"),
    Refused("no_quantity_column.csv", r"header 'customer_id,date,price' has no column for quantity"),
    Refused("kunden.csv", r"has no column for customer_id \('Kunde-Nr' \(column_mapping\)\)",
            options={"column_mapping": {**GERMAN_HEADER, "customer_id": "Kunde-Nr"}}),
    Refused("unrecognized.txt", r"unrecognized first line '<html>"),
    Refused("binary.bin", r"binary data, not a text transaction log"),
    Refused("utf16.txt", r"UTF-16 text; re-export the file as UTF-8"),
    Refused("utf16_no_bom.txt", r"UTF-16 text without a byte-order mark"),
    Refused("latin1.csv", r"not UTF-8 text: byte 0xe9 on line 3 \(Latin-1 or Windows-1252\?\)"),
    Refused("gzip_without_gz_name.txt", r"gzip-compressed data in a file whose name does not end in \.gz"),
    Refused("truncated.txt.gz", r"cannot be read: .*(end of|EOF)"),
    Refused("slashed_undecidable.csv", r"slashed dates such as '1/2/2010' can be read day first or month first"
                                       r".*set the date_order option to day_first or month_first"),
    Refused("mostly_bad.txt", r"3 of 13 rows quarantined \(23\.08%\), above max_bad_share 5\.00%; "
                              r"top reasons: invalid_date=3"),
]


def run(spark, tmp_path: Path, name: str, **options):
    out = tmp_path / "out"
    summary = transform(
        spark, str(CORPUS / name), str(out / "transactions"), str(out / "quarantine"),
        run_id="corpus", source_uri=f"s3://raw/incoming/{name}", **options,
    )
    return summary, out


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda case: case.file)
def test_accepted_inputs_count_every_row(spark, tmp_path, case):
    summary, out = run(spark, tmp_path, case.file, **case.options)
    quarantined = sum(case.by_reason.values())
    assert (summary["format"], summary["compression"]) == (case.format, case.compression)
    assert summary["by_reason"] == case.by_reason
    assert (summary["accepted"], summary["quarantined"]) == (case.accepted, quarantined)
    assert (summary["excluded"], summary["return_lines"]) == (case.excluded, case.return_lines)
    assert summary["read"] == summary["accepted"] + sum(case.excluded.values()) + summary["quarantined"]
    assert (summary["zero_amount_rows"], summary["identical_rows"]) == case.kept
    transactions = pq.read_table(out / "transactions").to_pylist()
    assert len(transactions) == case.accepted
    quarantine = pq.read_table(out / "quarantine").to_pylist()
    assert sorted(row["reason"] for row in quarantine) == sorted(
        reason for reason, n in case.by_reason.items() for _ in range(n))
    # Every accepted or quarantined record is accounted for exactly once, by its number.
    numbers = [row["line_number"] for row in transactions + quarantine]
    assert len(set(numbers)) == len(numbers) == summary["read"] - sum(case.excluded.values())


def same_rows(name: str, spark, tmp_path, **options) -> list[tuple]:
    _, out = run(spark, tmp_path / name, name, **options)
    rows = pq.read_table(out / "transactions").to_pylist()
    return sorted((int(r["customer_id"]), r["order_date"], r["quantity"], r["amount"]) for r in rows)


def test_every_format_of_the_same_rows_gives_the_same_transactions(spark, tmp_path):
    reference = same_rows("master_bom_crlf.txt", spark, tmp_path)
    assert reference[0][1] >= dt.date(1997, 1, 1) and len(reference) == 60
    for name, options in [("transactions.csv", {}), ("transactions.tsv", {}),
                          ("kunden.csv", {"column_mapping": GERMAN_HEADER}), ("master.txt.gz", {}),
                          ("transactions.parquet", {})]:
        assert same_rows(name, spark, tmp_path, **options) == reference, name


def test_order_lines_net_to_quantity_times_price_per_customer(spark, tmp_path):
    """Online Retail II's layout with no options: price is the unit price (the file has an
    invoice column), a cancellation nets against its customer, a guest line is left out."""
    expected, cancellations = defaultdict(Decimal), 0
    for line in order_lines():
        if line["Customer ID"]:
            expected[str(int(float(line["Customer ID"])))] += int(line["Quantity"]) * Decimal(line["Price"])
            cancellations += line["Invoice"].startswith("C")
    assert cancellations and ORDER_LINES_GUEST and any("," in line["Description"] for line in order_lines())

    for name, options in [("online_retail_ii.csv", {}), ("bestellungen.csv", {"column_mapping": GERMAN_ORDER_LINES})]:
        summary, out = run(spark, tmp_path / name, name, **options)
        assert (summary["amount_from"], summary["order_ids"]) == ("unit_price", True), name
        assert summary["by_reason"] == {} and summary["multi_line_records"] == 0, name
        spent = defaultdict(float)
        for row in pq.read_table(out / "transactions").to_pylist():
            spent[row["customer_id"]] += row["amount"]
            assert row["is_return"] == row["order_id"].startswith("C") == (row["quantity"] < 0), row
        assert {c: round(v, 2) for c, v in spent.items()} == {c: float(v) for c, v in expected.items()}, name
        returned = -sum(int(line["Quantity"]) * Decimal(line["Price"]) for line in order_lines()
                        if line["Customer ID"] and line["Invoice"].startswith("C"))
        assert summary["returned_amount"] == float(returned), name
    assert "the file has an order-id column ('Invoice')" in run(spark, tmp_path / "x", "online_retail_ii.csv")[0][
        "money_reading"]


@pytest.mark.parametrize(("name", "options", "order", "decided_by"), [
    ("slashed_day_first.csv", {}, "day_first", "data"),
    ("slashed_month_first.csv", {}, "month_first", "data"),
    ("slashed_undecidable.csv", {"date_order": "month_first"}, "month_first", "date_order option"),
    ("slashed_undecidable.csv", {"date_order": "day_first"}, "day_first", "date_order option"),
])
def test_slashed_dates_in_the_order_the_file_uses(spark, tmp_path, name, options, order, decided_by):
    summary, out = run(spark, tmp_path, name, **options)
    assert (summary["date_order"], summary["date_order_decided_by"]) == (order, decided_by)
    dates = [row["order_date"] for row in sorted(pq.read_table(out / "transactions").to_pylist(),
                                                  key=lambda row: row["line_number"])]
    expected = {
        "slashed_day_first.csv": [dt.date(2010, 2, 1), dt.date(2010, 12, 25), dt.date(2011, 4, 3)],
        "slashed_month_first.csv": [dt.date(2010, 1, 2), dt.date(2010, 12, 25), dt.date(2011, 3, 4)],
    }.get(name) or ([dt.date(2010, 1, 2), dt.date(2010, 12, 11)] if order == "month_first"
                    else [dt.date(2010, 2, 1), dt.date(2010, 11, 12)])
    assert dates == expected


def test_a_line_that_is_not_utf8_is_quarantined_readably(spark, tmp_path):
    _, out = run(spark, tmp_path, "latin1_late_line.txt")
    (row,) = pq.read_table(out / "quarantine").to_pylist()
    assert row["reason"] == "unparseable_line" and row["line_number"] == 3001
    assert row["raw_line"] == " 0099\ufffd 19970105  1   10.00"  # the byte that is not UTF-8, replaced


@pytest.mark.parametrize("case", REFUSED, ids=lambda case: case.file + ("+mapping" if case.options else ""))
def test_refused_inputs_name_the_file_and_the_reason(spark, tmp_path, case):
    with pytest.raises(ValueError) as refused:
        run(spark, tmp_path, case.file, **case.options)
    message = str(refused.value)
    assert message.startswith(f"s3://raw/incoming/{case.file}: "), message
    assert re.search(case.message, message), message
    assert not (tmp_path / "out" / "transactions").exists()


def test_reliability_doc_lists_every_corpus_case():
    doc = RELIABILITY.read_text(encoding="utf-8")
    for case in ACCEPTED + REFUSED:
        assert f"`{case.file}`" in doc, case.file
    on_disk = {p.name for p in CORPUS.iterdir() if p.name != "make_corpus.py"}
    assert on_disk == {case.file for case in ACCEPTED + REFUSED}
