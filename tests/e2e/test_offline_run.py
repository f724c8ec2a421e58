"""The whole offline run, as `cdnow run --local` does it, on the CDNOW sample file."""

import json

import pandas as pd
import pytest

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
    summary = json.loads((out / "run_summary.json").read_text())
    assert result.status == summary["status"] == "SUCCEEDED"
    rows = summary["rows"]
    assert rows["read"] == SAMPLE_ROWS == rows["accepted"] + rows["quarantined"]
    assert summary["customers"] == SAMPLE_CUSTOMERS
    assert summary["analysis_date"] == "1998-07-01"  # the day after the last transaction
    assert sum(s["customers"] for s in summary["segments"].values()) == SAMPLE_CUSTOMERS
    assert 0.5 < summary["churn"]["roc_auc"] <= 1.0


def test_progress_names_every_state_entered_and_left(sample_run):
    _, _, lines = sample_run
    for state in ("Ingest", "Transform", "Features", "Segment", "Churn", "Value", "Publish", "Notify success"):
        assert f"  -> {state}" in lines
        assert any(line.startswith(f"  <- {state} (") for line in lines)


def test_tables_hold_one_row_per_customer(sample_run):
    _, out, _ = sample_run
    for table in KEYED_TABLES:
        frame = pd.read_parquet(out / "tables" / f"{table}.parquet")
        assert len(frame) == SAMPLE_CUSTOMERS, table
        assert frame["customer_id"].is_unique, table
    segments = pd.read_parquet(out / "tables" / "customer_segments.parquet")
    assert segments["segment_name"].notna().all()
    scores = pd.read_parquet(out / "tables" / "churn_scores.parquet")
    assert scores["churn_probability"].between(0, 1).all()
    profiles = pd.read_parquet(out / "tables" / "segment_profiles.parquet")
    assert profiles["customers"].sum() == SAMPLE_CUSTOMERS
    metrics = pd.read_parquet(out / "tables" / "model_metrics.parquet")
    assert {"roc_auc", "pr_auc", "brier"} <= set(metrics["metric"])


def test_notification_carries_the_summary(sample_run):
    result, out, _ = sample_run
    notification = json.loads((out / "notification.json").read_text())
    message = json.loads(notification["Message"])
    assert message["status"] == "SUCCEEDED"
    assert message["run_id"] == result.summary["run_id"]
    assert message["rows"]["read"] == SAMPLE_ROWS
    assert notification["MessageAttributes"]["status"]["Value"] == "SUCCEEDED"


def test_a_bad_file_fails_the_run_with_the_state_and_cause(root, tmp_path, capsys):
    bad = tmp_path / "garbage.txt"
    bad.write_text("this is not a transaction log\n" * 20)
    status = main(["run", "--local", "--input", str(bad), "--out", str(tmp_path / "out")])
    assert status != 0
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["status"] == "FAILED"
    assert summary["failed_state"] == "Transform"
    assert "garbage.txt" in summary["cause"]
    assert "in state Transform" in capsys.readouterr().err
    message = json.loads(json.loads((tmp_path / "out" / "notification.json").read_text())["Message"])
    assert message["status"] == "FAILED" and message["failed_state"] == "Transform"
    assert not (tmp_path / "out" / "tables").exists()  # nothing published
