"""A dataset's history on both paths of the Features step: the same deliveries to two datasets on
one offline stack, one with the standing option ``engine: lambda``, the other ``engine: spark``
(the Features Glue job reads the history's Iceberg data files and writes what Publish commits).

The CDNOW sample is delivered in two parts, then its first part again under the same key with
one amount corrected, then a customer is erased (a replay). After every run the two datasets'
published customer_features are the same table and their histories the same rows; a replay of
the Spark-written history on the Lambda path then gives the Spark replay's table again.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest

from cdnow.adapters import history
from cdnow.adapters.storage import read_published_run
from cdnow_offline.emulator import Emulator
from cdnow_offline.remote import replay_on_stack, run_on_stack

DATABASE = "cdnow_analytics"
SAMPLE_ROWS = 6_919
MONEY = ["monetary_total", "monetary_avg_per_purchase"]
ENGINES = ("lambda", "spark")


def features(run_id: str) -> pd.DataFrame:
    frame = read_published_run(DATABASE, "customer_features", run_id).drop(columns=["run_id"], errors="ignore")
    return frame.sort_values("customer_id").reset_index(drop=True)


def assert_same_features(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Counts and dates exactly, money to 1e-9 relative (Spark adds in another order)."""
    pd.testing.assert_frame_equal(got.drop(columns=MONEY), expected.drop(columns=MONEY))
    np.testing.assert_allclose(got[MONEY].to_numpy(), expected[MONEY].to_numpy(), rtol=1e-9)


def history_rows(dataset: str) -> pd.DataFrame:
    """The dataset's history, sorted, its delivery keys without the dataset's folder."""
    rows = history.read_history(DATABASE, dataset)
    rows["delivery_key"] = rows["delivery_key"].str.removeprefix(f"incoming/{dataset}/")
    return rows.sort_values(list(rows.columns)).reset_index(drop=True)


def set_engine(outputs: dict, dataset: str, engine: str) -> None:
    boto3.client("s3").put_object(Bucket=outputs["RawBucketName"], Key=f"incoming/{dataset}/_dataset.json",
                                  Body=json.dumps({"engine": engine}).encode())


@pytest.fixture(scope="module")
def parts(root, tmp_path_factory) -> dict[str, Path]:
    """The sample's lines before 1997-04-01 (first.txt), the rest (rest.txt), and first.txt with
    its first line's amount raised by 1 (the correction, delivered under first.txt's key)."""
    folder = tmp_path_factory.mktemp("parts")
    lines = (root / "data" / "CDNOW_sample.txt").read_bytes().decode().splitlines(keepends=True)
    first = [line for line in lines if line.split()[1] < "19970401"]
    rest = [line for line in lines if line.split()[1] >= "19970401"]
    fields = first[0].split()
    fixed = first[0].replace(fields[3], f"{float(fields[3]) + 1:.2f}".rjust(len(fields[3])), 1)
    (folder / "first.txt").write_text("".join(first), newline="")
    (folder / "rest.txt").write_text("".join(rest), newline="")
    (folder / "corrected").mkdir()
    (folder / "corrected" / "first.txt").write_text("".join([fixed, *first[1:]]), newline="")
    return {"first": folder / "first.txt", "rest": folder / "rest.txt",
            "corrected": folder / "corrected" / "first.txt", "erased": fields[0]}


@pytest.fixture(scope="module")
def stack(root, tmp_path_factory, parts):
    """Each dataset's runs in order (delivery, delivery, correction, erasure), then a replay of
    the Spark dataset on the Lambda path."""
    out = tmp_path_factory.mktemp("out")
    with Emulator(root) as emulator:
        outputs = emulator.provision("cdnow-dataset-engines").outputs
        runs: dict[str, list[dict]] = {}
        files_after: list[set[str]] = []  # the Spark dataset's history files after each delivery
        for engine in ENGINES:
            dataset = f"shop-{engine}"
            set_engine(outputs, dataset, engine)
            summaries = []
            for part in ("first", "rest", "corrected"):
                run = run_on_stack(outputs, parts[part], out, echo=lambda line: None, timeout_s=300, poll_s=0.3,
                                   dataset=dataset)
                assert run.status == "SUCCEEDED", run.summary
                summaries.append(run.summary)
                if engine == "spark":
                    files_after.append(set(history._load(DATABASE, dataset).inspect.files()
                                           .column("file_path").to_pylist()))
            run = replay_on_stack(outputs, dataset, out, erase_customers=[parts["erased"]], echo=lambda line: None,
                                  timeout_s=300, poll_s=0.3)
            assert run.status == "SUCCEEDED", run.summary
            summaries.append(run.summary)
            runs[engine] = summaries
        set_engine(outputs, "shop-spark", "lambda")
        run = replay_on_stack(outputs, "shop-spark", out, echo=lambda line: None, timeout_s=300, poll_s=0.3)
        assert run.status == "SUCCEEDED", run.summary
        yield {"runs": runs, "lambda_replay_of_spark": run.summary, "spark_files_after": files_after,
               "histories": {engine: history_rows(f"shop-{engine}") for engine in ENGINES},
               "tables": {engine: history._load(DATABASE, f"shop-{engine}") for engine in ENGINES}}


def test_each_run_took_its_dataset_s_path(stack):
    for engine in ENGINES:
        assert [summary["engine"] for summary in stack["runs"][engine]] == [engine] * 4


def test_the_history_counts_are_the_same_on_both_paths(stack, parts):
    lambda_runs, spark_runs = stack["runs"]["lambda"], stack["runs"]["spark"]
    for got, expected in zip(spark_runs, lambda_runs):
        assert got["history"] == expected["history"]
        assert got["rows"] == expected["rows"] and got["analysis_date"] == expected["analysis_date"]
    first_rows = sum(1 for _ in parts["first"].open())
    assert spark_runs[1]["history"]["history_rows"] == SAMPLE_ROWS
    # The correction replaced its key's rows, nothing else; the erasure removed the customer's rows.
    assert spark_runs[2]["history"]["replaced_by_key"] == first_rows == spark_runs[2]["history"]["delivery_rows"]
    assert spark_runs[2]["history"]["history_rows"] == SAMPLE_ROWS
    assert spark_runs[3]["history"]["erased_customers"] == 1 and spark_runs[3]["history"]["erased_rows"] > 0


def test_every_run_s_customer_features_are_the_same_table_on_both_paths(stack, parts):
    for got, expected in zip(stack["runs"]["spark"], stack["runs"]["lambda"]):
        assert_same_features(features(got["run_id"]), features(expected["run_id"]))
    erased = features(stack["runs"]["spark"][3]["run_id"])
    assert parts["erased"] not in set(erased["customer_id"]) and len(erased) > 2_000


def test_the_histories_hold_the_same_rows(stack, parts):
    spark, lambda_ = stack["histories"]["spark"], stack["histories"]["lambda"]
    pd.testing.assert_frame_equal(spark, lambda_)
    assert parts["erased"] not in set(spark["customer_id"])
    # Erased for good on the Spark path too: one snapshot, and no file beside the table's own
    # (the runs' folders the Features job wrote included).
    table = stack["tables"]["spark"]
    assert len(table.snapshots()) == 1  # the erasure's (the Lambda replay after it committed nothing)
    bucket, prefix = table.location().removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3")
    data_files = {f"s3://{bucket}/{o['Key']}" for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/data/") for o in page.get("Contents", [])}
    assert data_files == set(table.inspect.files().column("file_path").to_pylist())


def test_the_lambda_path_reads_the_history_the_spark_path_wrote(stack):
    replay = stack["lambda_replay_of_spark"]
    assert replay["engine"] == "lambda" and replay["history"]["history_rows"] == len(stack["histories"]["spark"])
    assert_same_features(features(replay["run_id"]), features(stack["runs"]["spark"][3]["run_id"]))


def test_the_spark_path_rewrites_only_the_files_a_delivery_touches(stack):
    """Each Spark run writes into its own folder of the history's data; a delivery that replaces
    nothing adds its files, and the correction replaces the first delivery's files only."""
    runs = stack["runs"]["spark"]
    first, rest, corrected = stack["spark_files_after"]

    def written_by(run: dict, files: set[str]) -> set[str]:
        return {path for path in files if f"/data/run_id={run['run_id']}/" in path}

    assert first == written_by(runs[0], first) != set()
    assert rest == first | written_by(runs[1], rest) and written_by(runs[1], rest)
    assert corrected == written_by(runs[1], rest) | written_by(runs[2], corrected)
