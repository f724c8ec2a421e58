"""Deliveries build one history: CDNOW master delivered month by month to one dataset on the
offline stack (one emulator for the module), against the same file delivered whole.

Each month is a real upload under incoming/cdnow/ that starts its own execution; the history
is the dataset's Iceberg table; the tables compared are the published ones, read through the
Glue catalog as Athena reads them.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest

from cdnow.adapters import history
from cdnow.adapters.storage import read_published_run, read_published_table
from cdnow_offline.emulator import Emulator
from cdnow_offline.remote import ALREADY_DELIVERED, run_on_stack

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
