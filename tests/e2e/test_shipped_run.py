"""The whole run on CDNOW master with every function in its shipped environment.

The same file run twice, once with the functions in this process (the default of `cdnow run
--local`) and once with each in a Python 3.12 process holding only what its artifact ships
(`--shipped`): the runs must publish the same tables, row for row.
"""

import json

import pandas as pd
import pytest

from cdnow_offline.run import run_local

MASTER_ROWS, MASTER_CUSTOMERS = 69_659, 23_570
# What differs between two uploads of one file: the object version S3 gave each, and when each
# run was published.
RUN_TIME_COLUMNS = {"input_version", "published_at"}


@pytest.fixture(scope="module")
def runs(root, tmp_path_factory):
    master = root / "data" / "CDNOW_master.txt"
    in_process = run_local(master, tmp_path_factory.mktemp("in-process"), root, echo=lambda line: None)
    shipped = run_local(master, tmp_path_factory.mktemp("shipped"), root, echo=lambda line: None, shipped=True)
    return in_process, shipped


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.drop(columns=[c for c in RUN_TIME_COLUMNS if c in frame.columns])
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_the_shipped_run_succeeds_on_master(runs):
    _, shipped = runs
    assert shipped.status == "SUCCEEDED", shipped.summary
    summary = json.loads((shipped.run_dir / "run_summary.json").read_text())
    assert summary["rows"]["read"] == summary["rows"]["accepted"] == MASTER_ROWS
    assert summary["customers"] == MASTER_CUSTOMERS


def test_both_runs_publish_the_same_tables(runs):
    in_process, shipped = runs
    assert in_process.status == "SUCCEEDED", in_process.summary
    assert in_process.summary["run_id"] == shipped.summary["run_id"]
    tables = sorted(p.name for p in (in_process.run_dir / "tables").glob("*.parquet"))
    assert tables == sorted(p.name for p in (shipped.run_dir / "tables").glob("*.parquet"))
    assert len(tables) >= 7
    for table in tables:
        expected = _sorted(pd.read_parquet(in_process.run_dir / "tables" / table))
        actual = _sorted(pd.read_parquet(shipped.run_dir / "tables" / table))
        assert len(actual) > 0, table
        pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=1e-9, obj=table)
