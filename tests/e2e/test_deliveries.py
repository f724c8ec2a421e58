"""Deliveries build one history: CDNOW master delivered month by month to one dataset on the
offline stack (one emulator for the module), against the same file delivered whole.

Each month is a real upload under incoming/cdnow/ that starts its own execution; the history
is the dataset's Iceberg table; the tables compared are the published ones, read through the
Glue catalog as Athena reads them.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import defaultdict
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest

from cdnow.adapters import history
from cdnow.adapters.storage import read_published_run, read_published_table
from cdnow_offline import cli
from cdnow_offline.emulator import Emulator
from cdnow_offline.remote import ALREADY_DELIVERED, Upload, find_execution, run_on_stack

DATABASE = "cdnow_analytics"
DATASET = "cdnow"
MASTER_ROWS = 69_659


def months_of(master: Path, folder: Path) -> list[tuple[Path, list[str]]]:
    """The master file's lines by calendar month, each month a file of its own lines as they are."""
    by_month: dict[str, list[str]] = defaultdict(list)
    for line in master.read_bytes().decode().splitlines(keepends=True):
        by_month[line.split()[1][:6]].append(line)
    files = []
    for month in sorted(by_month):
        path = folder / f"cdnow-{month}.txt"
        path.write_text("".join(by_month[month]), newline="")
        files.append((path, by_month[month]))
    return files


def day_after_last(lines: list[str]) -> str:
    last = max(dt.datetime.strptime(line.split()[1], "%Y%m%d").date() for line in lines)
    return (last + dt.timedelta(days=1)).isoformat()


class Stack:
    def __init__(self, outputs: dict, out: Path):
        self.outputs, self.out = outputs, out

    def deliver(self, path: Path, dataset: str | None = DATASET):
        result = run_on_stack(self.outputs, path, self.out, echo=lambda line: None, timeout_s=300, poll_s=0.3,
                              dataset=dataset)
        assert result.status in ("SUCCEEDED", ALREADY_DELIVERED), result.summary
        return result.status, result.summary


@pytest.fixture(scope="module")
def stack(root, tmp_path_factory):
    with Emulator(root) as emulator:
        yield Stack(emulator.provision("cdnow-deliveries").outputs, tmp_path_factory.mktemp("out"))


@pytest.fixture(scope="module")
def months(root, tmp_path_factory):
    return months_of(root / "data" / "CDNOW_master.txt", tmp_path_factory.mktemp("months"))


@pytest.fixture(scope="module")
def monthly_runs(stack, months):
    return [stack.deliver(path)[1] for path, _ in months]


@pytest.fixture(scope="module")
def whole_run(stack, root, monthly_runs):
    return stack.deliver(root / "data" / "CDNOW_master.txt", dataset=None)[1]


def features(run_id: str) -> pd.DataFrame:
    frame = read_published_run(DATABASE, "customer_features", run_id).drop(columns=["run_id"], errors="ignore")
    return frame.sort_values("customer_id").reset_index(drop=True)


def test_each_month_is_analysed_with_the_history_before_it(monthly_runs, months):
    assert len(months) == len(monthly_runs) == 18
    seen = []
    for summary, (_, lines) in zip(monthly_runs, months):
        seen += lines
        assert summary["dataset"] == DATASET
        # Only the new month is parsed; the history is read, not parsed again.
        assert summary["rows"]["read"] == summary["rows"]["accepted"] == len(lines)
        assert summary["history"]["history_rows"] == len(seen)
        assert summary["history"]["delivery_rows"] == len(lines)
        assert summary["analysis_date"] == day_after_last(seen)
    assert monthly_runs[0]["segmentation"]["migration"] is None
    for summary, previous in zip(monthly_runs[1:], monthly_runs):
        assert summary["segmentation"]["migration"]["previous_run_id"] == previous["run_id"]
    assert len(history.read_history(DATABASE, DATASET)) == MASTER_ROWS
    # The deliveries table: one row per delivery, as Athena reads it.
    deliveries = read_published_table(DATABASE, "deliveries")
    deliveries = deliveries[deliveries["dataset"] == DATASET].sort_values("delivered_at")
    assert list(deliveries["run_id"]) == [summary["run_id"] for summary in monthly_runs]
    assert list(deliveries["rows"]) == [len(lines) for _, lines in months]
    assert list(deliveries["delivery_key"]) == [f"incoming/{DATASET}/{path.name}" for path, _ in months]
    assert list(deliveries["history_rows"]) == list(np.cumsum([len(lines) for _, lines in months]))
    assert deliveries["sha256"].str.fullmatch("[0-9a-f]{64}").all()


def test_after_the_last_month_the_features_equal_the_whole_file_s(monthly_runs, whole_run):
    assert whole_run["dataset"] is None and whole_run["analysis_date"] == monthly_runs[-1]["analysis_date"]
    monthly, whole = features(monthly_runs[-1]["run_id"]), features(whole_run["run_id"])
    assert len(monthly) == len(whole) == 23_570
    money = ["monetary_total", "monetary_avg_per_purchase"]
    pd.testing.assert_frame_equal(monthly.drop(columns=money), whole.drop(columns=money))
    np.testing.assert_allclose(monthly[money].to_numpy(), whole[money].to_numpy(), rtol=1e-9)


def test_the_same_content_again_starts_no_computation(stack, monthly_runs, whole_run, months, tmp_path):
    s3 = boto3.client("s3")
    runs_before = len(read_published_table(DATABASE, "runs"))
    snapshot = history.current_snapshot(DATABASE, DATASET)
    july, _ = months[6]
    copy = tmp_path / "july-again.txt"
    copy.write_bytes(july.read_bytes())
    for path in (july, copy):  # the same key, and the same content under another key
        status, summary = stack.deliver(path)
        assert status == ALREADY_DELIVERED
        assert summary["already_delivered"]["key"] == f"incoming/{DATASET}/{july.name}"
        assert summary["already_delivered"]["run_id"] == monthly_runs[6]["run_id"]
    assert history.current_snapshot(DATABASE, DATASET) == snapshot
    assert len(read_published_table(DATABASE, "runs")) == runs_before
    assert "Contents" in s3.list_objects_v2(Bucket=stack.outputs["RawBucketName"], Prefix=f"incoming/{DATASET}/july")


def test_a_corrected_month_replaces_its_own_rows_only(stack, monthly_runs, whole_run, months, tmp_path):
    july, lines = months[6]
    corrected = tmp_path / july.name
    first = lines[0].split()
    customer = first[0]
    # One row's amount changed: the same key, other content.
    fixed = lines[0].replace(first[3], f"{float(first[3]) + 1:.2f}".rjust(len(first[3])), 1)
    corrected.write_text("".join([fixed, *lines[1:]]), newline="")
    status, summary = stack.deliver(corrected)
    assert status == "SUCCEEDED"
    assert summary["history"]["replaced_by_key"] == len(lines) == summary["history"]["delivery_rows"]
    assert summary["history"]["history_rows"] == MASTER_ROWS  # nothing duplicated
    # Compared with the dataset's previous run, not with the whole file published since.
    assert summary["segmentation"]["migration"]["previous_run_id"] == monthly_runs[-1]["run_id"]
    before, after = features(monthly_runs[-1]["run_id"]), features(summary["run_id"])
    changed = before.compare(after)
    assert list(before.loc[changed.index, "customer_id"]) == [customer]
    assert after.loc[after["customer_id"] == customer, "monetary_total"].item() == pytest.approx(
        before.loc[before["customer_id"] == customer, "monetary_total"].item() + 1)
    assert len(history.read_history(DATABASE, DATASET)) == MASTER_ROWS


def _wait_for(execution_arn: str, timeout_s: float = 300) -> dict:
    sfn = boto3.client("stepfunctions")
    deadline = time.monotonic() + timeout_s
    while (execution := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{execution_arn} still running"
        time.sleep(0.3)
    return execution


def _states_entered(execution_arn: str) -> list[str]:
    events = boto3.client("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def test_deliveries_arriving_together_run_one_after_the_other(stack, months, tmp_path):
    """Two files dropped into one dataset at once: the second waits for the first, then runs on
    the history with the first's rows; the same event delivered again starts no second run."""
    dataset = "together"
    s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
    (first, first_lines), (second, second_lines) = months[0], months[1]
    uploads = []
    for path in (first, second):
        s3.upload_file(str(path), stack.outputs["RawBucketName"], f"incoming/{dataset}/{path.name}")
        head = s3.head_object(Bucket=stack.outputs["RawBucketName"], Key=f"incoming/{dataset}/{path.name}")
        uploads.append(Upload(stack.outputs["RawBucketName"], f"incoming/{dataset}/{path.name}",
                              head["ETag"].strip('"'), head["LastModified"] - dt.timedelta(seconds=1)))
    arns = [find_execution(stack.outputs, upload) for upload in uploads]
    executions = [_wait_for(arn) for arn in arns]
    assert [e["status"] for e in executions] == ["SUCCEEDED", "SUCCEEDED"]
    summaries = [json.loads(e["output"]) for e in executions]
    # One after the other: the first to take the dataset ran on its own rows, the other waited for
    # it and ran on both (event-time order within a second is the uploads' race: tests/unit/test_leases.py).
    earlier, later = sorted(range(2), key=lambda i: summaries[i]["history"]["history_rows"])
    assert summaries[earlier]["history"]["history_rows"] == summaries[earlier]["history"]["delivery_rows"]
    assert summaries[later]["history"]["history_rows"] == len(first_lines) + len(second_lines)
    assert sorted(s["history"]["delivery_rows"] for s in summaries) == sorted([len(first_lines), len(second_lines)])
    assert "Wait for the dataset" in _states_entered(arns[later])
    assert "Wait for the dataset" not in _states_entered(arns[earlier])
    assert len(history.read_history(DATABASE, dataset)) == len(first_lines) + len(second_lines)
    # EventBridge delivers an event at least once: the same event again is one run, not two.
    event = sfn.describe_execution(executionArn=arns[0])["input"]
    again = sfn.start_execution(stateMachineArn=stack.outputs["StateMachineArn"], name="redelivered",
                                input=event)["executionArn"]
    execution = _wait_for(again)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["run"]["duplicate_of"] == arns[0]
    assert "Transform" not in _states_entered(again)
    assert len(history.read_history(DATABASE, dataset)) == len(first_lines) + len(second_lines)


def test_an_aborted_run_gives_the_dataset_back(stack, months):
    """An execution stopped while it holds the dataset skips every state of its own: the
    status-change event (EventBridge to Ingest) gives the dataset back, and the next delivery runs."""
    dataset = "aborted"
    s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
    (first, _), (second, second_lines) = months[2], months[3]
    key = f"incoming/{dataset}/{first.name}"
    s3.upload_file(str(first), stack.outputs["RawBucketName"], key)
    head = s3.head_object(Bucket=stack.outputs["RawBucketName"], Key=key)
    arn = find_execution(stack.outputs, Upload(stack.outputs["RawBucketName"], key, head["ETag"].strip('"'),
                                               head["LastModified"] - dt.timedelta(seconds=1)))
    deadline = time.monotonic() + 120
    while "Features" not in _states_entered(arn):  # past Ingest: the lease is held
        assert time.monotonic() < deadline
        time.sleep(0.2)
    sfn.stop_execution(executionArn=arn, error="Operator", cause="stopped by the test")
    assert _wait_for(arn)["status"] == "ABORTED"
    # Held still, the dataset would keep the next delivery waiting for hours (the lease's expiry).
    status, summary = stack.deliver(second, dataset=dataset)
    assert status == "SUCCEEDED"
    assert summary["history"]["history_rows"] == len(second_lines)  # the aborted run joined nothing


def test_a_replay_recomputes_the_latest_run_from_the_history(stack, monthly_runs, whole_run, tmp_path, capsys):
    """No file delivered: the run analyses the dataset's history as it is (after the corrected
    July above), with the same results as the run that last changed it."""
    latest = read_published_table(DATABASE, "runs")
    latest = latest[latest["dataset"] == DATASET].sort_values("published_at").iloc[-1]
    code = cli.main(["replay", "--stack", "deliveries", "--dataset", DATASET, "--out", str(tmp_path)],
                    stack_outputs=lambda name: stack.outputs)
    assert code == 0, capsys.readouterr()
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "run_summary.json").read_text())
    assert summary["run_id"].startswith("cdnow-replay-") and summary["run_id"] != latest["run_id"]
    assert summary["history"] == {"history_rows": MASTER_ROWS, "replayed": True, "erased_rows": 0,
                                  "erased_customers": 0}
    assert summary["rows"]["read"] == summary["rows"]["accepted"] == MASTER_ROWS
    pd.testing.assert_frame_equal(features(summary["run_id"]), features(latest["run_id"]))
    assert summary["segmentation"]["migration"]["previous_run_id"] == latest["run_id"]


def test_erasing_a_customer_removes_every_row_of_theirs(stack, monthly_runs, months, tmp_path, capsys):
    customer = months[0][1][0].split()[0]
    rows_of_customer = sum(1 for _, lines in months for line in lines if line.split()[0] == customer)
    assert rows_of_customer > 0
    code = cli.main(["erase", "--stack", "deliveries", "--dataset", DATASET, "--customer", customer,
                     "--out", str(tmp_path)], stack_outputs=lambda name: stack.outputs)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"Erased {rows_of_customer:,} row(s) of 1 customer(s)" in out
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "run_summary.json").read_text())
    assert summary["history"]["erased_rows"] == rows_of_customer
    remaining = history.read_history(DATABASE, DATASET)
    assert len(remaining) == MASTER_ROWS - rows_of_customer and customer not in set(remaining["customer_id"])
    for table in ("customer_features", "customer_segments", "churn_scores", "customer_value"):
        published = read_published_run(DATABASE, table, summary["run_id"])
        assert len(published) > 20_000 and customer not in set(published["customer_id"]), table
    # No earlier snapshot of the history (time travel) and no file of one holds their rows.
    table = history._load(DATABASE, DATASET)
    assert len(table.snapshots()) == 1
    s3 = boto3.client("s3")
    location = table.location().removeprefix("s3://")
    bucket, prefix = location.split("/", 1)
    data_files = {f"s3://{bucket}/{o['Key']}" for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/data/") for o in page.get("Contents", [])}
    assert data_files == set(table.inspect.files().column("file_path").to_pylist())
