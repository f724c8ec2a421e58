"""The input corpus (tests/data/inputs, written by its make_corpus.py) through the Transform job.

Each case is a row of docs/RELIABILITY.md: what a file is, what the job must do with it, and the
figures it must report. Every accepted case checks read = accepted + quarantined and the count
per reason; every refused case checks the error names the file and the reason, and that nothing
was written where Features would read it.
"""

from __future__ import annotations

import datetime as dt
import re
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


@dataclass(frozen=True)
class Refused:
    file: str
    message: str  # a regular expression the error must match after the file's URI
    options: dict = field(default_factory=dict)


GERMAN_HEADER = {"customer_id": "Kunde", "order_date": "Datum", "quantity": "Menge", "amount": "Betrag"}

ACCEPTED = [
    Accepted("master_bom_crlf.txt", "cdnow_master", 60),
    Accepted("transactions.csv", "csv", 60),
    Accepted("transactions.tsv", "tsv", 60),
    Accepted("kunden.csv", "csv", 60, options={"column_mapping": GERMAN_HEADER}),
    Accepted("master.txt.gz", "cdnow_master", 60, compression="gzip"),
    Accepted("transactions.parquet", "parquet", 60),
    Accepted("dirty.txt", "cdnow_master", 202, by_reason={
        "blank_line": 1, "unparseable_line": 1, "wrong_field_count": 2, "invalid_date": 1,
        "date_out_of_range": 1, "invalid_quantity": 2, "invalid_amount": 2}, kept=(2, 1)),
    Accepted("missing_customer.csv", "csv", 100, by_reason={"missing_customer_id": 1}),
    Accepted("latin1_late_line.txt", "cdnow_master", 3010, by_reason={"unparseable_line": 1}),
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
    assert summary["read"] == summary["accepted"] + summary["quarantined"]
    assert (summary["zero_amount_rows"], summary["identical_rows"]) == case.kept
    transactions = pq.read_table(out / "transactions").to_pylist()
    assert len(transactions) == case.accepted
    quarantine = pq.read_table(out / "quarantine").to_pylist()
    assert sorted(row["reason"] for row in quarantine) == sorted(
        reason for reason, n in case.by_reason.items() for _ in range(n))
    # Every line is accounted for exactly once, by its number.
    numbers = [row["line_number"] for row in transactions + quarantine]
    assert len(set(numbers)) == len(numbers) == summary["read"]


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
