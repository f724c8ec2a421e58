"""The whole offline run, as `cdnow run --local` does it, on the CDNOW sample file."""

import json

import pandas as pd
import pytest

from cdnow.presentation import messages
from cdnow_offline.cli import main
from cdnow_offline.run import run_local

SAMPLE_ROWS, SAMPLE_CUSTOMERS = 6_919, 2_357
KEYED_TABLES = ("customer_features", "customer_segments", "churn_scores")


@pytest.fixture(scope="module")
def sample_run(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    lines = []
    result = run_local(root / "data" / "CDNOW_sample.txt", out, root, echo=lines.append)
    return result, out, lines


def test_run_succeeds_and_counts_every_row(sample_run):
    result, out, _ = sample_run
    assert result.run_dir == out / result.summary["run_id"]  # one folder per run
    summary = json.loads((result.run_dir / "run_summary.json").read_text())
    assert result.status == summary["status"] == "SUCCEEDED"
    rows = summary["rows"]
    assert rows["read"] == SAMPLE_ROWS == rows["accepted"] + rows["quarantined"]
    assert summary["customers"] == SAMPLE_CUSTOMERS
    assert summary["analysis_date"] == "1998-07-01"  # the day after the last transaction
    assert sum(s["customers"] for s in summary["segments"].values()) == SAMPLE_CUSTOMERS
    assert 0.5 < summary["churn"]["roc_auc"] <= 1.0


def test_progress_names_every_state_entered_and_left(sample_run):
    _, _, lines = sample_run
    for state in ("Ingest", "Transform", "Features", "Segment", "Churn", "Value", "Publish", "Report",
                  "Notify success"):
        assert f"  -> {state}" in lines
        assert any(line.startswith(f"  <- {state} (") for line in lines)
    # the counts as they become known
    features = next(line for line in lines if line.startswith("  <- Features ("))
    assert features.endswith(f"{SAMPLE_ROWS:,} rows read, {SAMPLE_ROWS:,} accepted, 0 quarantined; "
                             f"{SAMPLE_CUSTOMERS:,} customers as of 1998-07-01")
    assert any(line.startswith("  <- Segment (") and " segments: " in line for line in lines)


def test_tables_hold_one_row_per_customer(sample_run):
    result, _, _ = sample_run
    tables = result.run_dir / "tables"
    for table in KEYED_TABLES:
        frame = pd.read_parquet(tables / f"{table}.parquet")
        assert len(frame) == SAMPLE_CUSTOMERS, table
        assert frame["customer_id"].is_unique, table
    segments = pd.read_parquet(tables / "customer_segments.parquet")
    assert segments["segment_name"].notna().all()
    scores = pd.read_parquet(tables / "churn_scores.parquet")
    assert scores["churn_probability"].between(0, 1).all()
    profiles = pd.read_parquet(tables / "segment_profiles.parquet")
    assert profiles["customers"].sum() == SAMPLE_CUSTOMERS
    metrics = pd.read_parquet(tables / "model_metrics.parquet")
    assert {"roc_auc", "pr_auc", "brier"} <= set(metrics["metric"])


def test_notification_carries_the_summary(sample_run):
    result, _, _ = sample_run
    notification = json.loads((result.run_dir / "notification.json").read_text())
    # An SQS subscriber gets the JSON summary (the "sqs" part of the per-protocol message) ...
    message = json.loads(notification["Message"])
    assert message["status"] == "SUCCEEDED"
    assert message["run_id"] == result.summary["run_id"]
    assert message["rows"]["read"] == SAMPLE_ROWS
    assert message["report"]["uri"].endswith(f"/reports/{result.summary['run_id']}.html")
    attributes = {name: value["Value"] for name, value in notification["MessageAttributes"].items()}
    assert attributes == {"status": "SUCCEEDED", "run_id": result.summary["run_id"]}
    # ... under a subject a person reads.
    assert notification["Subject"] == messages.subject(result.summary)
    assert notification["Subject"].endswith(f"SUCCEEDED: {SAMPLE_CUSTOMERS:,} customers, "
                                            f"{len(result.summary['segments'])} segments")
    # The e-mail subscriber's part of the same message, kept beside it.
    email = (result.run_dir / "notification-email.txt").read_text()
    assert email == f"Subject: {notification['Subject']}\n\n{messages.email_text(result.summary, message['report'])}"


def test_the_report_is_in_the_run_folder(sample_run):
    result, _, _ = sample_run
    assert result.report == result.run_dir / "report.html"
    html = result.report.read_text()
    assert html.startswith("<!DOCTYPE html>") and result.summary["run_id"] in html
    assert html.count("<figure") == len(result.summary["charts"])


def test_a_bad_file_fails_the_run_with_the_state_and_cause(root, tmp_path, capsys):
    bad = tmp_path / "garbage.txt"
    bad.write_text("this is not a transaction log\n" * 20)
    status = main(["run", "--local", "--input", str(bad), "--out", str(tmp_path / "out")])
    assert status == 1
    [run_dir] = [p.parent for p in (tmp_path / "out").glob("*/run_summary.json")]
    summary = json.loads((run_dir / "run_summary.json").read_text())
    assert summary["status"] == "FAILED" and run_dir.name == summary["run_id"]
    assert summary["failed_state"] == "Transform"
    assert "garbage.txt" in summary["cause"]
    assert "in state Transform" in capsys.readouterr().err
    notification = json.loads((run_dir / "notification.json").read_text())
    message = json.loads(notification["Message"])
    assert message["status"] == "FAILED" and message["failed_state"] == "Transform"
    assert notification["Subject"] == f"CDNOW run {summary['run_id']} FAILED in Transform"
    assert notification["MessageAttributes"]["run_id"]["Value"] == summary["run_id"]
    email = (run_dir / "notification-email.txt").read_text()
    assert email.startswith(f"Subject: {notification['Subject']}\n\nCDNOW customer analytics: run {summary['run_id']} "
                            "FAILED in the Transform step.\n")
    assert "garbage.txt" in email
    assert not (run_dir / "tables").exists() and not (run_dir / "report.html").exists()  # nothing published
    # show and report of a failed run say so, with the run-failed exit status
    assert main(["show", summary["run_id"], "--out", str(tmp_path / "out")]) == 1
    assert "FAILED in state Transform" in capsys.readouterr().out
    assert main(["report", summary["run_id"], "--out", str(tmp_path / "out")]) == 1
