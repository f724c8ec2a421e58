"""Where Features runs: the ``engine`` option, and the Features Lambda as the planner of the two
paths (the Lambda's own computation, or the Features Glue job for a large run: a single file's,
or a dataset's delivery or replay, counted with the dataset's history)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import date

import pytest

from cdnow import pipeline
from cdnow.domain.features import run_analysis_date
from cdnow.domain.runs import (
    DEFAULT_ENGINE, ENGINES, RUN_OPTIONS, InvalidRunRequest, RunLayout, decode_options_metadata,
    encode_options_metadata, features_engine, parse_replay_request, parse_run_request,
)

TRANSFORM_SUMMARY = {"read": 150, "accepted": 150, "excluded": 0, "quarantined": 0, "by_reason": {},
                     "format": "cdnow_text", "first_order_date": "1997-01-01", "last_order_date": "1998-06-30",
                     "latest_allowed_date": "2026-12-07"}


def test_engine_is_an_option_of_every_run_with_three_values():
    assert "engine" in RUN_OPTIONS and ENGINES == ("auto", "lambda", "spark") and DEFAULT_ENGINE == "auto"
    for engine in ENGINES:
        assert parse_run_request({"bucket": "raw", "key": "incoming/a", "engine": engine}).options == {"engine": engine}
    # Unset: left out of the options (and so of the run_id's hash); the run carries the default.
    assert parse_run_request({"bucket": "raw", "key": "incoming/a"}).options == {}
    assert decode_options_metadata(encode_options_metadata({"engine": "spark"}), "s3://raw/a") == {"engine": "spark"}


@pytest.mark.parametrize("engine", ["Spark", "glue", "", 1, True])
def test_an_unknown_engine_is_refused_naming_the_values(engine):
    with pytest.raises(InvalidRunRequest, match=r"run input: engine must be one of auto, lambda, spark"):
        parse_run_request({"bucket": "raw", "key": "incoming/a", "engine": engine})


def test_a_replay_takes_the_engine_option_too():
    assert parse_replay_request({"bucket": "raw", "dataset": "shop", "replay": True,
                                 "engine": "spark"}).options == {"engine": "spark"}


@pytest.mark.parametrize("run, accepted, expected", [
    ({"engine": "auto"}, 99, "lambda"),
    ({"engine": "auto"}, 100, "spark"),  # from the threshold on
    ({}, 100, "spark"),  # a run from before the option: auto
    ({"engine": "lambda"}, 10**9, "lambda"),
    ({"engine": "spark"}, 1, "spark"),
    # A dataset's run: the rows counted are the delivery's plus the history's (the caller's sum).
    ({"engine": "auto", "dataset": "shop"}, 10**9, "spark"),
    ({"engine": "auto", "dataset": "shop", "replay": {"erase_customers": []}}, 99, "lambda"),
])
def test_the_planner_s_decision(run, accepted, expected):
    assert features_engine(run, accepted, spark_min_rows=100) == expected


def test_the_analysis_date_rule():
    day_after = date(1998, 7, 1)
    assert run_analysis_date(None, day_after, "2026-12-07") == day_after
    # Never later than the day after the delivery ...
    assert run_analysis_date(None, day_after, "1998-06-15") == date(1998, 6, 15)
    assert run_analysis_date(None, day_after, None) == day_after
    # ... unless the run names its own.
    assert run_analysis_date("1998-01-01", day_after, "2026-12-07") == date(1998, 1, 1)


@pytest.fixture
def storage(monkeypatch):
    """The run's files as a dict of URI -> JSON; reading the rows is an error (the Spark path
    must not read them)."""
    files: dict[str, dict] = {}

    def read_table(uri, columns=None):
        raise AssertionError(f"the rows were read: {uri}")

    monkeypatch.setattr(pipeline.storage, "read_json", lambda uri: files[uri])
    monkeypatch.setattr(pipeline.storage, "write_json", files.__setitem__)
    monkeypatch.setattr(pipeline.storage, "read_table", read_table)
    return files


def _run(**settings) -> dict:
    return {"run_id": "r-1", "curated_bucket": "curated", "input_uri": "s3://raw/incoming/a.txt",
            "dataset": None, "analysis_date": None, "currency": "USD", "engine": "auto", **settings}


def test_a_large_single_file_run_is_planned_for_spark_from_the_summary_alone(storage):
    layout = RunLayout("curated", "r-1")
    storage[layout.transform_summary] = TRANSFORM_SUMMARY
    plan = pipeline.build_features(_run(), "db", spark_min_rows=150)
    assert plan["engine"] == "spark" and plan["analysis_date"] == "1998-07-01"
    assert plan["rows"]["accepted"] == 150
    assert plan["job_arguments"] == {
        "--run_id": "r-1",
        "--transactions_uri": layout.transactions,
        "--analysis_date": "1998-07-01",
        "--output_uri": layout.staged("customer_features"),
        "--summary_uri": layout.features_job_summary,
        "--sample_uri": layout.model_sample,
        "--sample_transactions_uri": layout.model_sample_transactions,
        "--value_spend_uri": layout.value_spend,
    }
    assert all(isinstance(value, str) for value in plan["job_arguments"].values())  # Glue's arguments
    assert layout.features_job_summary.startswith(layout.prefix)
    # The run's own analysis date wins; without one, never past the day after the delivery.
    assert pipeline.build_features(_run(engine="spark", analysis_date="1998-03-01"), "db")["analysis_date"] == \
        "1998-03-01"
    storage[layout.transform_summary] = {**TRANSFORM_SUMMARY, "latest_allowed_date": "1998-06-20"}
    assert pipeline.build_features(_run(engine="spark"), "db")["analysis_date"] == "1998-06-20"


def test_below_the_threshold_the_lambda_computes(storage):
    storage[RunLayout("curated", "r-1").transform_summary] = TRANSFORM_SUMMARY
    for run in (_run(), _run(engine="lambda")):
        with pytest.raises(AssertionError, match="the rows were read"):
            pipeline.build_features(run, "db", spark_min_rows=151 if run["engine"] == "auto" else 1)


HISTORY_FILES = ["s3://curated/datasets/shop/history/data/a.parquet", "s3://curated/datasets/shop/history/data/b.parquet"]


@pytest.fixture
def history(monkeypatch):
    """The dataset's history as Features plans from it: its current files and their rows."""
    from cdnow.adapters import history

    current = {"shop": (HISTORY_FILES, 100)}
    monkeypatch.setattr(history, "current_files", lambda database, dataset: current.get(dataset, ([], 0)))
    return current


def test_a_dataset_s_run_counts_its_history_and_plans_the_job_with_it(storage, history):
    layout = RunLayout("curated", "r-1")
    storage[layout.transform_summary] = TRANSFORM_SUMMARY
    delivery = {"id": "d-1", "key": "incoming/shop/m.txt", "snapshot": False, "sha256": "f" * 64}
    run = _run(dataset="shop", delivery=delivery)
    # 150 delivered + 100 in the history: below 251 the Lambda computes, from 250 on Spark does.
    with pytest.raises(AssertionError, match="the rows were read"):
        pipeline.build_features(run, "db", spark_min_rows=251)
    plan = pipeline.build_features(run, "db", spark_min_rows=250)
    assert plan["engine"] == "spark" and plan["analysis_date"] is None  # decided by the job
    arguments = plan["job_arguments"]
    assert arguments["--transactions_uri"] == layout.transactions and "--analysis_date" not in arguments
    assert arguments["--history_plan_uri"] == layout.history_plan
    assert arguments["--history_data_uri"] == "s3://curated/datasets/shop/history/data/"
    assert arguments["--latest_allowed_date"] == TRANSFORM_SUMMARY["latest_allowed_date"]
    assert storage[layout.history_plan] == {
        "dataset": "shop", "files": HISTORY_FILES,
        "delivery": {"id": "d-1", "key": "incoming/shop/m.txt", "snapshot": False}, "erase_customers": [],
        "output_uri": "s3://curated/datasets/shop/history/data/run_id=r-1/"}
    # The run's own analysis date is passed on as it is, and the latest allowed date is then moot.
    arguments = pipeline.build_features({**run, "analysis_date": "1998-03-01"}, "db", spark_min_rows=1)["job_arguments"]
    assert arguments["--analysis_date"] == "1998-03-01" and "--latest_allowed_date" not in arguments


def test_after_a_dataset_s_job_the_history_counts_and_the_commit_come_from_its_summary(storage, history,
                                                                                        monkeypatch):
    layout = RunLayout("curated", "r-1")
    storage[layout.transform_summary] = {**TRANSFORM_SUMMARY, "latest_allowed_date": "1998-06-20"}
    monkeypatch.setattr(pipeline.storage, "read_bytes_if_exists", lambda uri, limit: b"P")
    monkeypatch.setattr(pipeline.storage, "read_published_table", lambda database, table: None)
    delivery = {"id": "d-1", "key": "incoming/shop/m.txt", "snapshot": False, "sha256": "f" * 64}
    run = _run(dataset="shop", delivery=delivery, engine="spark")
    plan = pipeline.build_features(run, "db")
    counts = {"history_rows_kept": 90, "replaced_by_key": 10, "replaced_by_order_id": 0, "replaced_by_snapshot": 0,
              "delivery_rows": 150, "history_rows": 240}
    commit = {"files_uri": "s3://curated/datasets/shop/history/data/run_id=r-1/", "written": True,
              "removed_files": [HISTORY_FILES[1]]}
    models = {"sample": {"customers": 40, "sampled": 40, "rate": 1.0}, "value_spend_uri": layout.value_spend,
              "first_order_date": "1997-01-01", "last_order_date": "1998-06-30", "net_of_returns": False}
    # The history's last order is 1998-06-30, but never past the day after the delivery: 1998-06-20.
    storage[layout.features_job_summary] = {"analysis_date": "1998-06-20", "rows_read": 240, "customers": 40,
                                            "features_uri": plan["features_uri"], "models": models,
                                            "history": {**counts, **commit}}
    result = pipeline.features_from_spark(run, plan, "db")
    assert result["analysis_date"] == "1998-06-20" and result["history"] == counts
    assert result["history_commit"] == commit and result["rows"]["accepted"] == 150
    # A date the rule does not give is refused.
    storage[layout.features_job_summary]["analysis_date"] = "1998-07-01"
    with pytest.raises(ValueError, match=r"not this plan's \(analysis date 1998-07-01, expected 1998-06-20\)"):
        pipeline.features_from_spark(run, plan, "db")


def test_a_replay_on_spark_reads_only_the_history(storage, history):
    layout = RunLayout("curated", "r-1")  # no Transform summary: a replay has no file
    run = _run(dataset="shop", delivery=None, replay={"erase_customers": ["c9"]}, engine="spark")
    plan = pipeline.build_features(run, "db")
    arguments = plan["job_arguments"]
    assert "--transactions_uri" not in arguments and "--latest_allowed_date" not in arguments
    assert storage[layout.history_plan]["delivery"] is None
    assert storage[layout.history_plan]["erase_customers"] == ["c9"]
    with pytest.raises(InvalidRunRequest, match="the dataset empty has no history to replay"):
        pipeline.build_features({**run, "dataset": "empty"}, "db")


def test_after_the_job_features_returns_the_lambda_path_s_shape(storage, monkeypatch):
    from cdnow.adapters import glue_code

    layout = RunLayout("curated", "r-1")
    storage[layout.transform_summary] = TRANSFORM_SUMMARY
    # The package's archive is in the bucket already (adapters.glue_code uploads it otherwise).
    monkeypatch.setattr(pipeline.storage, "read_bytes_if_exists", lambda uri, limit: b"P")
    published_runs = None  # no run published yet: no migration to compute
    monkeypatch.setattr(pipeline.storage, "read_published_table", lambda database, table: published_runs)
    plan = pipeline.build_features(_run(engine="spark"), "db")
    models = {"sample": {"customers": 40, "sampled": 40, "rate": 1.0, "strata": [],
                         "customers_uri": layout.model_sample, "transactions_uri": layout.model_sample_transactions},
              "value_spend_uri": layout.value_spend, "first_order_date": "1997-01-01",
              "last_order_date": "1998-06-30", "net_of_returns": False}
    storage[layout.features_job_summary] = {"analysis_date": "1998-07-01", "rows_read": 150, "customers": 40,
                                            "customers_without_purchase": 2, "features_uri": plan["features_uri"],
                                            "partitions": 1, "models": models}
    result = pipeline.features_from_spark(_run(engine="spark"), plan, "db")
    spark_models = result.pop("spark_models")
    assert result == {
        "analysis_date": "1998-07-01", "customers": 40, "customers_without_purchase": 2,
        "rows": {k: TRANSFORM_SUMMARY[k] for k in ("read", "accepted", "excluded", "quarantined", "by_reason")},
        "input_format": "cdnow_text", "input_reading": {k: TRANSFORM_SUMMARY.get(k) for k in pipeline.INPUT_READING},
        "currency": "USD", "transactions_uri": layout.transactions, "history": None, "engine": "spark",
    }
    # What the model steps fit on, and the Score job's arguments (Glue's: strings).
    assert spark_models["sample"] == {"customers": 40, "sampled": 40, "rate": 1.0}
    assert (spark_models["first_order_date"], spark_models["last_order_date"]) == ("1997-01-01", "1998-06-30")
    arguments = spark_models["score_arguments"]
    assert all(isinstance(value, str) for value in arguments.values())
    assert arguments["--extra-py-files"] == glue_code.archive_uri("curated")
    assert arguments["--fits_uri"] == layout.fits and arguments["--summary_uri"] == layout.score_job_summary
    assert arguments["--net_of_returns"] == "false" and "--previous_segments_uri" not in arguments
    # After a published run, the Score job compares the segments with that run's.
    import pandas as pd

    published_runs = pd.DataFrame({"run_id": ["r-0"], "dataset": [""], "published_at": [pd.Timestamp("2026-01-01")]})
    monkeypatch.setattr(pipeline.storage, "partition_location_of",
                        lambda database, table, run_id: f"s3://curated/tables/{table}/run_id={run_id}/a1")
    arguments = pipeline.features_from_spark(_run(engine="spark"), plan, "db")["spark_models"]["score_arguments"]
    assert arguments["--previous_run_id"] == "r-0"
    assert arguments["--previous_segments_uri"] == "s3://curated/tables/customer_segments/run_id=r-0/a1/"
    # A summary without the models' sample (a job run without the plan's arguments) is refused.
    storage[layout.features_job_summary] = {**storage[layout.features_job_summary], "models": {}}
    with pytest.raises(ValueError, match="no models' sample"):
        pipeline.features_from_spark(_run(engine="spark"), plan, "db")
    # A summary of another plan (a stale one) is refused, not published.
    storage[layout.features_job_summary] = {**storage[layout.features_job_summary], "models": models,
                                            "analysis_date": "1998-01-01"}
    with pytest.raises(ValueError, match="not this plan's"):
        pipeline.features_from_spark(_run(engine="spark"), plan, "db")


@dataclass
class Context:
    function_name: str = "features"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:features"
    aws_request_id: str = "request-1"


def test_the_handler_takes_the_threshold_from_its_environment(root, storage, monkeypatch):
    spec = importlib.util.spec_from_file_location("test_engine_features_app", root / "functions/features/app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    monkeypatch.setenv("GLUE_DATABASE", "db")
    # The layer's one Metrics object read its namespace when first imported: set it on the object.
    from cdnow.adapters import observability

    monkeypatch.setattr(observability.metrics, "namespace", "Test")
    storage[RunLayout("curated", "r-1").transform_summary] = TRANSFORM_SUMMARY
    monkeypatch.setenv("SPARK_FEATURES_MIN_ROWS", "150")
    assert app.lambda_handler({"run": _run()}, Context())["engine"] == "spark"
    monkeypatch.setenv("SPARK_FEATURES_MIN_ROWS", "151")
    with pytest.raises(AssertionError, match="the rows were read"):
        app.lambda_handler({"run": _run()}, Context())
    # Unset: the template's default, 10 M rows.
    monkeypatch.delenv("SPARK_FEATURES_MIN_ROWS")
    with pytest.raises(AssertionError, match="the rows were read"):
        app.lambda_handler({"run": _run()}, Context())


def test_following_a_run_names_the_spark_path_s_states():
    from cdnow_offline.remote import progress_note

    rows = {"read": 150, "accepted": 150, "quarantined": 0}
    planned = {"steps": {"features": {"engine": "spark", "analysis_date": "1998-07-01", "rows": rows}}}
    assert progress_note("Features", planned).endswith("planned for the Features Glue job as of 1998-07-01")
    assert progress_note("Features on Spark", {"features_job": {"job_run_id": "jr_1", "state": "SUCCEEDED"}}) == \
        "Glue job run jr_1 SUCCEEDED"
    done = {"steps": {"features": {"engine": "spark", "analysis_date": "1998-07-01", "rows": rows, "customers": 40}}}
    assert progress_note("Features from Spark", done).endswith("40 customers as of 1998-07-01")
