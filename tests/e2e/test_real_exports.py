"""A retailer's own export on the whole offline stack, started the documented way: an upload
under incoming/ (with the run's options as the object's cdnow-options metadata), one emulator
for the module.

The order-line export is made here in the layout of the public "Online Retail II" data set
(invoice lines, a unit price, date-times, ids written 17850.0 or left empty for guests, quoted
descriptions with commas, cancellations "C..." with negative quantities); Python's csv module
and Decimal arithmetic are the oracle for what each customer spent.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import boto3
import pytest

from cdnow.adapters.storage import read_published_run
from cdnow.domain.runs import OPTIONS_METADATA_KEY, decode_options_metadata
from cdnow_offline.cli import main
from cdnow_offline.emulator import Emulator
from cdnow_offline.remote import run_on_stack

DATABASE = "cdnow_analytics"
HEADER = ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country"]
GERMAN = ["Rechnung", "Artikel", "Beschreibung", "Menge", "Rechnungsdatum", "Stückpreis", "Kundennummer", "Land"]
GERMAN_MAPPING = {"order_id": "Rechnung", "order_date": "Rechnungsdatum", "quantity": "Menge",
                  "unit_price": "Stückpreis", "customer_id": "Kundennummer"}
DESCRIPTIONS = ["WHITE HANGING HEART T-LIGHT HOLDER", "SET 7 BABUSHKA NESTING BOXES", "PAPER CHAIN KIT, 50'S CHRISTMAS",
                "RED, WHITE AND BLUE BUNTING", 'THE "BEST" MUG, LARGE', "HAND WARMER RED POLKA DOT"]


def retail_lines(customers: int = 400, start: datetime = datetime(2010, 1, 4), days: int = 540,
                 seed: int = 11) -> list[list[str]]:
    """Invoice lines of ``customers`` customers who each buy now and then over ``days`` days
    (some stop buying), a fifth of the invoices by guests, some lines cancelled later."""
    rng = random.Random(seed)
    invoices = []  # (time, customer id as written, lines)
    for number in range(customers):
        customer = f"{12346 + number}.0"
        when = start + timedelta(days=rng.randrange(days // 3), minutes=rng.randrange(600))
        stops = start + timedelta(days=rng.randrange(60, days * 2))
        while when < min(stops, start + timedelta(days=days)):
            invoices.append((when, customer))
            when += timedelta(days=rng.expovariate(1 / 45) + 1, minutes=rng.randrange(600))
    for _ in range(len(invoices) // 4):  # guest checkouts: no customer id
        invoices.append((start + timedelta(days=rng.randrange(days), minutes=rng.randrange(600)), ""))
    invoices.sort()
    lines = []
    for number, (when, customer) in enumerate(invoices):
        invoice = str(489434 + number)
        stamp = when.strftime("%Y-%m-%d %H:%M:%S")
        for code in range(1 + rng.randrange(4)):
            line = [invoice, f"{85000 + code}", rng.choice(DESCRIPTIONS), str(1 + rng.randrange(24)), stamp,
                    f"{rng.randrange(10, 2000) / 100:.2f}", customer, "United Kingdom"]
            lines.append(line)
            if customer and rng.random() < 0.04:  # cancelled an hour later
                later = (when + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
                lines.append([f"C{invoice}", line[1], line[2], f"-{line[3]}", later, line[5], customer, line[7]])
    return lines


def write_csv(path: Path, header: list[str], lines: list[list[str]], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(lines)
    return path


def spent_per_customer(lines: list[list[str]]) -> dict[str, float]:
    """quantity x price over each customer's lines, cancellations netted, to the cent."""
    spent: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        if line[6]:
            spent[str(int(float(line[6])))] += int(line[3]) * Decimal(line[5])
    return {customer: float(total) for customer, total in spent.items()}


@pytest.fixture(scope="module")
def stack(root):
    with Emulator(root) as emulator:
        yield emulator.provision("cdnow-exports").outputs


@pytest.fixture(scope="module")
def lines():
    return retail_lines()


def run(stack, path: Path, out: Path, options: dict | None = None):
    result = run_on_stack(stack, path, out, echo=lambda line: None, timeout_s=300, poll_s=0.3, options=options)
    assert result.status == "SUCCEEDED", result.summary
    return result.summary


def published(table: str, run_id: str) -> dict[str, float]:
    frame = read_published_run(DATABASE, table, run_id)
    return dict(zip(frame["customer_id"], frame["monetary_total"].round(2)))


@pytest.fixture(scope="module")
def retail_run(stack, lines, tmp_path_factory):
    folder = tmp_path_factory.mktemp("retail")
    return run(stack, write_csv(folder / "online_retail_II.csv", HEADER, lines), folder / "out")


def test_an_order_line_export_runs_with_no_options(retail_run, lines):
    summary = retail_run
    rows = summary["rows"]
    guests = sum(1 for line in lines if not line[6])
    cancellations = sum(1 for line in lines if line[0].startswith("C"))
    assert any("," in line[2] for line in lines) and guests and cancellations
    assert rows["by_reason"] == {} and rows["quarantined"] == 0  # no cancellation, no quoted comma quarantined
    assert rows["excluded"] == {"no_customer_id": guests}
    assert rows["return_lines"] == cancellations
    assert rows["read"] == len(lines) == rows["accepted"] + guests
    assert summary["input_reading"]["amount_from"] == "unit_price" and summary["input_reading"]["order_ids"]
    assert summary["warnings"] == [] and summary["churn"]["roc_auc"] > 0.5 and summary["value"]
    assert published("customer_features", summary["run_id"]) == spent_per_customer(lines)


def test_german_headers_through_upload_metadata_work_the_same(stack, retail_run, lines, tmp_path):
    path = write_csv(tmp_path / "bestellungen.csv", GERMAN, lines, delimiter=";")
    options = {"column_mapping": GERMAN_MAPPING, "currency": "EUR"}
    summary = run(stack, path, tmp_path / "out", options)
    # The mapping's non-ASCII name went through S3's ASCII-only metadata, percent-encoded.
    metadata = boto3.client("s3").head_object(Bucket=stack["RawBucketName"], Key="incoming/bestellungen.csv")["Metadata"]
    assert metadata[OPTIONS_METADATA_KEY].isascii()
    assert decode_options_metadata(metadata[OPTIONS_METADATA_KEY], "upload") == options
    assert summary["options"] == options and summary["currency"] == "EUR"
    assert summary["input_reading"]["columns"]["unit_price"] == "Stückpreis"
    assert {k: summary["rows"][k] for k in ("read", "accepted", "excluded", "return_lines")} == {
        k: retail_run["rows"][k] for k in ("read", "accepted", "excluded", "return_lines")}
    assert published("customer_features", summary["run_id"]) == spent_per_customer(lines)


def test_rows_dated_after_the_delivery_are_quarantined_and_the_analysis_date_stays_real(stack, root, tmp_path):
    path = tmp_path / "cdnow_future.txt"
    future = [" 00004 0001 20990101  2   29.33\r\n", " 00005 0002 20990615  1   11.77\r\n"]
    path.write_bytes((root / "data" / "CDNOW_sample.txt").read_bytes() + "".join(future).encode())
    summary = run(stack, path, tmp_path / "out")
    assert summary["rows"]["by_reason"] == {"date_in_future": 2}
    assert summary["analysis_date"] == "1998-07-01"
    assert summary["warnings"] == [] and summary["churn"]["roc_auc"] > 0.5


def test_sixty_days_publish_all_but_churn_with_its_reason(stack, lines, tmp_path):
    first = datetime(2010, 1, 4)
    short = [line for line in lines if line[4] < (first + timedelta(days=60)).strftime("%Y-%m-%d")]
    summary = run(stack, write_csv(tmp_path / "sixty_days.csv", HEADER, short), tmp_path / "out")
    (warning,) = summary["warnings"]
    assert warning["model"] == "churn"
    assert "is not longer than the churn horizon of 180 days" in warning["reason"]
    assert set(summary["tables"]) >= {"customer_features", "customer_segments", "segment_profiles",
                                      "customer_value", "model_metrics", "runs"}
    assert "churn_scores" not in summary["tables"] and summary["churn"] is None
    run_dir = tmp_path / "out" / summary["run_id"]
    report = (run_dir / "report.html").read_text()
    assert "Churn model skipped: the history" in report
    runs = read_published_run(DATABASE, "runs", summary["run_id"])
    assert runs["warnings"].iloc[0] == warning["message"]


def test_cli_flags_ride_on_the_upload_and_start_the_run_with_them(stack, root, tmp_path, capsys):
    path = tmp_path / "CDNOW_sample.txt"
    path.write_bytes((root / "data" / "CDNOW_sample.txt").read_bytes())
    code = main(["run", "--stack", "cdnow-exports", "--input", str(path), "--out", str(tmp_path / "out"),
                 "--analysis-date", "1998-01-01", "--horizon-days", "90"], stack_outputs=lambda name: stack)
    out = capsys.readouterr().out
    assert code == 0, out
    run_id = next(line.split()[2] for line in out.splitlines() if line.startswith("SUCCEEDED run "))
    summary = json.loads((tmp_path / "out" / run_id / "run_summary.json").read_text())
    assert summary["options"] == {"analysis_date": "1998-01-01", "churn_horizon_days": 90}
    assert summary["analysis_date"] == "1998-01-01" and summary["churn"]["horizon_days"] == 90
    metadata = boto3.client("s3").head_object(Bucket=stack["RawBucketName"], Key="incoming/CDNOW_sample.txt")["Metadata"]
    assert decode_options_metadata(metadata[OPTIONS_METADATA_KEY], "upload") == summary["options"]
    # The same file without options is another run.
    plain = run(stack, path, tmp_path / "plain")
    assert plain["run_id"] != run_id and plain["analysis_date"] == "1998-07-01"


def test_a_bad_option_fails_the_cli_before_any_upload(stack, root, tmp_path, capsys):
    code = main(["run", "--stack", "cdnow-exports", "--input", str(root / "data" / "CDNOW_sample.txt"),
                 "--column-mapping", '{"price": "Preis"}'], stack_outputs=lambda name: stack)
    assert code == 2
    assert "column_mapping names unknown field(s) price" in capsys.readouterr().err


def test_a_dataset_s_standing_options_apply_to_its_deliveries(stack, root, tmp_path):
    """incoming/<dataset>/_dataset.json is checked when it is uploaded (its execution computes
    nothing) and every later delivery to the dataset runs with it; an upload's option wins."""
    s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
    before = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=stack["StateMachineArn"])["executions"]}
    s3.put_object(Bucket=stack["RawBucketName"], Key="incoming/cdnow-shop/_dataset.json",
                  Body=json.dumps({"currency": "EUR", "churn_horizon_days": 90}).encode())
    path = tmp_path / "CDNOW_sample.txt"
    path.write_bytes((root / "data" / "CDNOW_sample.txt").read_bytes())
    result = run_on_stack(stack, path, tmp_path / "out", echo=lambda line: None, timeout_s=300, poll_s=0.3,
                          options={"churn_horizon_days": 120}, dataset="cdnow-shop")
    assert result.status == "SUCCEEDED", result.summary
    summary = result.summary
    assert summary["dataset"] == "cdnow-shop" and summary["currency"] == "EUR"
    assert summary["options"] == {"currency": "EUR", "churn_horizon_days": 120}
    assert summary["churn"]["horizon_days"] == 120
    settings = [e for e in sfn.list_executions(stateMachineArn=stack["StateMachineArn"])["executions"]
                if e["executionArn"] not in before and "_dataset.json" in
                sfn.describe_execution(executionArn=e["executionArn"])["input"]]
    (options_run,) = settings
    history = sfn.get_execution_history(executionArn=options_run["executionArn"], maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert options_run["status"] == "SUCCEEDED" and entered == ["Ingest", "Delivery?", "Dataset options checked"]


def test_several_inputs_are_delivered_one_after_the_other(stack, root, tmp_path, capsys):
    lines = (root / "data" / "CDNOW_sample.txt").read_text().splitlines(keepends=True)
    first, second = tmp_path / "1997.txt", tmp_path / "1998.txt"
    first.write_text("".join(line for line in lines if line.split()[2].startswith("1997")))
    second.write_text("".join(line for line in lines if line.split()[2].startswith("1998")))
    code = main(["run", "--stack", "cdnow-exports", "--dataset", "months", "--input", str(first), "--input",
                 str(second), "--out", str(tmp_path / "out")], stack_outputs=lambda name: stack)
    out = capsys.readouterr().out
    assert code == 0, out
    ended = [line for line in out.splitlines() if line.startswith("SUCCEEDED run ")]
    assert [line.split()[2].split("-")[0] for line in ended] == ["1997", "1998"]
    summaries = [json.loads((tmp_path / "out" / line.split()[2] / "run_summary.json").read_text()) for line in ended]
    assert [s["dataset"] for s in summaries] == ["months", "months"]
    assert [s["analysis_date"] for s in summaries] == ["1998-01-01", "1998-07-01"]
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=stack["RawBucketName"],
                                                                  Prefix="incoming/months/")["Contents"]}
    assert keys == {"incoming/months/1997.txt", "incoming/months/1998.txt"}
