"""The Features step's two paths on one offline stack: the CDNOW sample run once with
``engine=lambda`` (the Features Lambda computes customer_features) and once with ``engine=spark``
(the Features Lambda plans, the Features Glue job computes the table in local Spark, the Lambda
reads its summary). Both are real uploads that start their own executions (the options make
them two runs); the tables compared are the published ones, read through the Glue catalog.
"""

from __future__ import annotations

import json

import boto3
import numpy as np
import pandas as pd
import pytest

from cdnow.adapters.storage import read_published_run
from cdnow.domain.segments import segment_migration
from cdnow_offline.emulator import Emulator
from cdnow_offline.remote import run_on_stack
from same_figures import assert_same_figures, assert_same_rows

DATABASE = "cdnow_analytics"
SAMPLE_ROWS, SAMPLE_CUSTOMERS = 6_919, 2_357
MONEY = ["monetary_total", "monetary_avg_per_purchase"]


def states_entered(execution_arn: str) -> list[str]:
    sfn = boto3.client("stepfunctions")
    names, token = [], None
    while True:
        page = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000,
                                         **({"nextToken": token} if token else {}))
        names += [e["stateEnteredEventDetails"]["name"] for e in page["events"] if "stateEnteredEventDetails" in e]
        token = page.get("nextToken")
        if not token:
            return names


@pytest.fixture(scope="module")
def runs(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    sample = root / "data" / "CDNOW_sample.txt"
    with Emulator(root) as emulator:
        outputs = emulator.provision("cdnow-engines").outputs
        runs = {}
        for engine in ("lambda", "spark"):
            run = run_on_stack(outputs, sample, out, echo=lambda line: None, timeout_s=300, poll_s=0.3,
                               options={"engine": engine})
            notification = json.loads(Emulator.published(outputs["RunCompleteTopicArn"])[-1]["default"])
            tables = {table: read_published_run(DATABASE, table, run.summary["run_id"])
                      for table in ("customer_features", "customer_segments", "churn_scores", "customer_value")}
            if engine == "spark":  # the second run: its segments are compared with the first's
                tables["segment_migration"] = read_published_run(DATABASE, "segment_migration",
                                                                 run.summary["run_id"])
            runs[engine] = (run, states_entered(run.execution_arn), notification, tables)
        yield runs


def test_both_paths_succeed_and_say_which_path_ran(runs):
    lambda_run, lambda_states, lambda_message, _ = runs["lambda"]
    spark_run, spark_states, spark_message, _ = runs["spark"]
    assert lambda_run.status == spark_run.status == "SUCCEEDED", (lambda_run.summary, spark_run.summary)
    assert lambda_run.summary["run_id"] != spark_run.summary["run_id"]  # the options make two runs
    assert lambda_run.summary["engine"] == lambda_message["engine"] == "lambda"
    assert spark_run.summary["engine"] == spark_message["engine"] == "spark"
    assert "Features on Spark" in spark_states and "Features from Spark" in spark_states
    assert spark_states.index("Features") < spark_states.index("Features on Spark") < spark_states.index(
        "Features from Spark") < spark_states.index("Publish")
    assert "Features on Spark" not in lambda_states and "Features from Spark" not in lambda_states
    for run in (lambda_run, spark_run):
        assert run.summary["rows"]["read"] == run.summary["rows"]["accepted"] == SAMPLE_ROWS
        assert run.summary["customers"] == SAMPLE_CUSTOMERS
        assert run.summary["analysis_date"] == "1998-07-01"


def test_the_published_customer_features_are_the_same_table(runs):
    lambda_features, spark_features = (
        runs[engine][3]["customer_features"].drop(columns=["run_id"], errors="ignore")
        .sort_values("customer_id").reset_index(drop=True) for engine in ("lambda", "spark"))
    assert len(lambda_features) == len(spark_features) == SAMPLE_CUSTOMERS
    assert list(lambda_features.columns) == list(spark_features.columns)
    # Counts and dates exactly (the types too), money to a relative 1e-9.
    pd.testing.assert_frame_equal(lambda_features.drop(columns=MONEY), spark_features.drop(columns=MONEY))
    np.testing.assert_allclose(spark_features[MONEY].to_numpy(), lambda_features[MONEY].to_numpy(), rtol=1e-9)


def test_the_spark_path_fits_on_the_sample_then_scores_in_the_score_job(runs):
    spark_run, spark_states, _, _ = runs["spark"]
    lambda_states = runs["lambda"][1]
    order = ["Features from Spark", "Models", "Score on Spark", "Models from Spark", "Publish"]
    assert all(name in spark_states for name in order), spark_states
    assert [spark_states.index(name) for name in order] == sorted(spark_states.index(name) for name in order)
    assert "Score on Spark" not in lambda_states and "Models from Spark" not in lambda_states


def test_the_scores_are_the_lambda_path_s_when_both_fit_on_every_customer(runs):
    # The sample holds every customer of the sample file (fewer than the sample's size), so both
    # paths fit on the same customers: every score equals to 1e-9.
    for table in ("customer_segments", "churn_scores", "customer_value"):
        expected, got = (runs[engine][3][table].drop(columns=["run_id"], errors="ignore") for engine in ("lambda", "spark"))
        assert len(expected) == SAMPLE_CUSTOMERS, table
        assert_same_rows(got, expected, table)


def test_the_run_summaries_figures_are_the_lambda_path_s(runs):
    lambda_summary, spark_summary = runs["lambda"][0].summary, runs["spark"][0].summary
    # Migration compares with the run before; the Lambda run was the first of this stack.
    segmentation = {key: value for key, value in spark_summary["segmentation"].items() if key != "migration"}
    assert_same_figures(segmentation, {key: value for key, value in lambda_summary["segmentation"].items()
                                       if key != "migration"}, "segmentation")
    for key in ("segments", "churn", "churn_calibration", "churn_drivers", "value", "value_holdout", "value_models"):
        assert_same_figures(spark_summary[key], lambda_summary[key], key)
    # The Score job compared the segments with the previous published run's, the Lambda run's.
    assert spark_summary["segmentation"]["migration"] == {"previous_run_id": lambda_summary["run_id"],
                                                          "customers_moved": 0}
    migration = runs["spark"][3]["segment_migration"].drop(columns=["run_id"])
    expected = segment_migration(runs["lambda"][3]["customer_segments"], runs["spark"][3]["customer_segments"])
    pd.testing.assert_frame_equal(migration, expected.assign(previous_run_id=lambda_summary["run_id"]),
                                  check_dtype=False)  # the same parquet types; pandas' string flavours differ
    assert migration["customers"].dtype.kind == "i"
    assert sorted(spark_summary["charts"]) == sorted(
        chart.replace(lambda_summary["run_id"], spark_summary["run_id"]) for chart in lambda_summary["charts"])


def test_the_models_ran_on_either_path_s_features(runs):
    for engine in ("lambda", "spark"):
        run, _, _, tables = runs[engine]
        for table in ("customer_segments", "churn_scores", "customer_value"):
            frame = tables[table]
            assert frame is not None and len(frame) == SAMPLE_CUSTOMERS, (engine, table)
            assert frame["customer_id"].is_unique, (engine, table)
        assert sum(s["customers"] for s in run.summary["segments"].values()) == SAMPLE_CUSTOMERS
