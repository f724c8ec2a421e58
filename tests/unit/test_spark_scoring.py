"""The Glue Score job (glue/cdnow_score.py) against the Lambda path's scores.

The job runs in the offline stack's local SparkSession with the ``cdnow`` package as Glue gets
it: the archive the Features Lambda ships (``adapters.glue_code``), added to Spark's Python path
as ``--extra-py-files`` adds it on Glue; the executors' Python workers import it from there. Its
inputs are the Features job's own outputs on the CDNOW master file, and the fits are the Lambda
path's fits on every customer: then every score must equal the Lambda's (acceptance of issue 18:
to 1e-9; they are computed by the same functions row by row, so they are equal to the bit).
"""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path

import boto3
import cdnow_features
import cdnow_score
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cdnow.adapters import glue_code
from cdnow.domain import churn, clv, segments
from cdnow.domain.features import customer_features
from same_figures import assert_same_figures, assert_same_rows
from cdnow_offline.datasets import MASTER, read_cdnow

ANALYSIS_DATE = dt.date(1998, 7, 1)
HORIZON_DAYS = 180
PREFIX = "s3://curated/runs/run_id=r1/"


@pytest.fixture(scope="module")
def master_log(tmp_path_factory) -> Path:
    """CDNOW master as the Transform writes it (its columns and types)."""
    frame = read_cdnow(MASTER)
    folder = tmp_path_factory.mktemp("master") / "transactions"
    folder.mkdir()
    table = pa.table({
        "customer_id": pa.array(frame["customer_id"].astype(str).tolist(), pa.string()),
        "order_date": pa.array(pd.to_datetime(frame["order_date"]).to_numpy().astype("datetime64[D]"), pa.date32()),
        "quantity": pa.array(frame["quantity"].to_numpy(dtype=np.int64)),
        "amount": pa.array(frame["amount"].to_numpy(dtype=np.float64)),
    })
    pq.write_table(table, folder / "part-00000.parquet")
    return folder


@pytest.fixture(scope="module")
def lambda_path(master_log):
    """The Lambda path on every customer: its fits and its three scored tables."""
    rows = pq.read_table(master_log).to_pandas()
    features = customer_features(rows, ANALYSIS_DATE)
    inputs = clv.value_inputs(rows, pd.Timestamp(ANALYSIS_DATE))
    fits = {
        "segment": segments.fit_segments(features),
        "churn": churn.fit_churn(rows, pd.Timestamp(ANALYSIS_DATE), HORIZON_DAYS,
                                 baselines=churn.bgnbd_baselines(HORIZON_DAYS)),
        "value": clv.fit_value(inputs, model="pnbd"),
    }
    tables = {
        "segment": segments.score_segments(features, fits["segment"]),
        "churn": churn.score_churn(features, fits["churn"]),
        "value": clv.score_value(inputs, fits["value"]),
    }
    return fits, tables


def fit_objects(fits) -> dict[str, bytes]:
    return {
        "segment.json": json.dumps(fits["segment"].to_dict()).encode(),
        "churn.bin": fits["churn"].to_bytes(),
        "value.json": json.dumps(fits["value"].to_dict()).encode(),
    }


@pytest.fixture
def shipped_code(spark, tmp_path):
    """The package archive on the executors' path, as Glue puts ``--extra-py-files``."""
    archive = tmp_path / "cdnow.zip"
    archive.write_bytes(glue_code.package_archive())
    spark.sparkContext.addPyFile(str(archive))
    return archive


def run_jobs(spark, master_log: Path, tmp_path: Path, fits: dict[str, bytes], *options: str) -> tuple[dict, dict]:
    """The Features job (with the value spend), then the Score job; the Score summary and its
    tables read back."""
    def spark_path(uri: str) -> str:
        if uri == PREFIX + "transactions/":
            return str(master_log)
        return str(tmp_path / uri.removeprefix("s3://"))

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="curated")
    for name, body in fits.items():
        s3.put_object(Bucket="curated", Key=f"runs/run_id=r1/fits/{name}", Body=body)
    features = cdnow_features.main(
        ["--transactions_uri", PREFIX + "transactions/", "--analysis_date", ANALYSIS_DATE.isoformat(),
         "--output_uri", PREFIX + "staged/customer_features/", "--summary_uri", PREFIX + "features_job.json",
         "--value_spend_uri", PREFIX + "value_spend/"], spark=spark, spark_path=spark_path)
    summary = cdnow_score.main(
        ["--run_id", "r1", "--features_uri", PREFIX + "staged/customer_features/", "--fits_uri", PREFIX + "fits/",
         "--value_spend_uri", PREFIX + "value_spend/",
         "--net_of_returns", "true" if features["models"]["net_of_returns"] else "false",
         "--segments_uri", PREFIX + "staged/customer_segments/", "--churn_uri", PREFIX + "staged/churn_scores/",
         "--value_uri", PREFIX + "staged/customer_value/", "--profiles_uri", PREFIX + "staged/segment_profiles/",
         "--simulation_sample_uri", PREFIX + "value_simulation_sample/",
         "--migration_uri", PREFIX + "staged/segment_migration/", "--summary_uri", PREFIX + "score_job.json",
         *options],
        spark=spark, spark_path=spark_path)
    tables = {model: pq.read_table(spark_path(scored["uri"])).to_pandas()
              for model, scored in summary["scored"].items()}
    return summary, tables


def test_every_score_equals_the_lambda_path_s_with_the_same_fits(spark, shipped_code, master_log, lambda_path,
                                                                tmp_path, mocked_aws):
    fits, expected = lambda_path
    summary, tables = run_jobs(spark, master_log, tmp_path, fit_objects(fits))
    assert summary["customers"] == 23_570
    assert {model: scored["rows"] for model, scored in summary["scored"].items()} == {
        "segment": 23_570, "churn": 23_570, "value": 23_570}
    for model in ("segment", "churn", "value"):
        assert_same_rows(tables[model], expected[model])
    # The run's figures, aggregated in Spark, are the Lambda's functions' on the Lambda's tables.
    scored = summary["scored"]
    lambda_churn = churn.churn_score_summary(expected["churn"])
    for key, value in lambda_churn.items():
        assert scored["churn"][key] == pytest.approx(value, rel=1e-9), key
    inputs = clv.value_inputs(pq.read_table(master_log).to_pandas(), pd.Timestamp(ANALYSIS_DATE))
    for key, value in clv.value_totals(expected["value"], inputs).items():
        assert scored["value"][key] == pytest.approx(value, rel=1e-9), key
    # The profiles (exact medians) are segmentation_from_scores'.
    features = customer_features(pq.read_table(master_log).to_pandas(), ANALYSIS_DATE)
    scored_with_cluster = segments.score_segments(features, fits["segment"], with_cluster=True)
    lambda_profiles = segments.segmentation_from_scores(features, scored_with_cluster, fits["segment"]).profiles
    got_profiles = pq.read_table(tmp_path / "curated/runs/run_id=r1/staged/segment_profiles").to_pandas()
    assert list(got_profiles.columns) == list(lambda_profiles.columns)
    assert got_profiles["segment_name"].tolist() == lambda_profiles["segment_name"].tolist()
    for column in lambda_profiles.columns[1:]:
        if column == "recency_status":
            assert got_profiles[column].tolist() == lambda_profiles[column].tolist()
        else:
            np.testing.assert_allclose(got_profiles[column].to_numpy(dtype=float),
                                       lambda_profiles[column].to_numpy(dtype=float), rtol=1e-9, err_msg=column)
    counts = expected["segment"].groupby(["segment_name", "segment_rank"]).size()
    assert scored["segment"]["segments"] == {name: {"rank": int(rank), "customers": int(n)}
                                             for (name, rank), n in counts.items()}
    # The segmentation's summary and chart data from the job's aggregates are the Lambda path's.
    lambda_result = segments.segmentation_from_scores(features, scored_with_cluster, fits["segment"])
    aggregates = scored["segment"]
    spark_result = segments.segmentation_from_aggregates(
        fits["segment"], got_profiles, aggregates["cells"]["customers"], aggregates["cells"]["revenue_cents"],
        aggregates["overall_means"], pd.DataFrame(aggregates["clusters"]), aggregates["cluster_split"])
    assert_same_figures(spark_result.summary(), lambda_result.summary())
    # The value charts' data: counts exactly, sums to 1e-9.
    from cdnow.presentation.figures import value_chart_data
    lambda_chart = value_chart_data(expected["value"], features)
    got_chart = scored["value"]["chart_data"]
    for key in ("clv_edges", "clv_counts", "cell_customers"):
        assert got_chart[key] == lambda_chart[key], key
    np.testing.assert_allclose(got_chart["cell_p_alive_sum"], lambda_chart["cell_p_alive_sum"], rtol=1e-9)
    # The segments' value intervals from the job's sample (every customer: fewer than the
    # simulation's cap) are the Lambda path's simulation.
    sample = pq.read_table(tmp_path / "curated/runs/run_id=r1/value_simulation_sample").to_pandas()
    assert len(sample) == 23_570 and sample["customer_id"].is_monotonic_increasing
    lambda_intervals = clv.segment_value_intervals(expected["value"], expected["segment"], fits["value"], inputs)
    spark_intervals = clv.segment_value_from_sample(sample, pd.DataFrame(scored["value"]["segment_totals"]),
                                                    fits["value"])
    assert_same_figures(spark_intervals, lambda_intervals)
    # Every customer has a segment, a risk band and a value.
    assert tables["segment"]["segment_name"].notna().all() and tables["churn"]["risk_band"].notna().all()
    assert tables["value"]["clv_12m"].ge(0).all()


def test_a_model_without_a_fit_is_not_scored(spark, shipped_code, master_log, lambda_path, tmp_path, mocked_aws):
    fits, expected = lambda_path
    objects = fit_objects(fits)
    del objects["churn.bin"]
    # A previous run's segments to compare with: some customers moved, some left, one is new.
    previous = expected["segment"].iloc[100:].copy()
    previous.loc[previous.index[:500], "segment_name"] = "Lost"
    previous = pd.concat([previous, pd.DataFrame({"customer_id": ["gone"], "segment_name": ["Loyal"],
                                                  "segment_rank": [1]})], ignore_index=True)
    folder = tmp_path / "curated/tables/customer_segments/run_id=r0/a1"
    folder.mkdir(parents=True)
    previous.to_parquet(folder / "part-0.parquet", index=False)
    summary, tables = run_jobs(spark, master_log, tmp_path, objects, "--previous_run_id", "r0",
                               "--previous_segments_uri", "s3://curated/tables/customer_segments/run_id=r0/a1/")
    assert sorted(summary["scored"]) == ["segment", "value"]
    assert not (tmp_path / "curated" / "runs" / "run_id=r1" / "staged" / "churn_scores").exists()
    # segment_migration is the Lambda path's table of the same two runs.
    migration = pq.read_table(tmp_path / "curated/runs/run_id=r1/staged/segment_migration").to_pandas()
    lambda_migration = segments.segment_migration(previous, expected["segment"]).assign(previous_run_id="r0")
    pd.testing.assert_frame_equal(migration, lambda_migration, check_dtype=False)
    moved = lambda_migration.loc[lambda_migration["from_segment"] != lambda_migration["to_segment"], "customers"].sum()
    assert summary["scored"]["segment"]["migration"] == {
        "previous_run_id": "r0", "customers_moved": int(moved), "rows": len(lambda_migration),
        "uri": PREFIX + "staged/segment_migration/"}
    assert moved > 100


def test_the_shipped_archive_holds_the_package_and_is_the_same_every_time():
    archive = glue_code.package_archive()
    names = zipfile.ZipFile(__import__("io").BytesIO(archive)).namelist()
    assert "cdnow/domain/segments.py" in names and "cdnow/__init__.py" in names
    assert not [name for name in names if "__pycache__" in name or not name.startswith("cdnow/")]
    glue_code.package_archive.cache_clear()
    assert glue_code.package_archive() == archive
    assert glue_code.archive_uri("curated").startswith("s3://curated/code/cdnow-")


@pytest.mark.parametrize(("argv", "message"), [
    ([], "missing job argument"),
    (["--net_of_returns", "maybe"], "true or false"),
    (["--features_uri", "s3://curated/f"], "ending with '/'"),
    (["--summary_uri", "s3://curated/s/"], "name an s3:// object"),
    (["--previous_run_id", "r0"], "go together"),
])
def test_parse_args_names_the_bad_argument(argv, message):
    base = {"--features_uri": "s3://c/f/", "--fits_uri": "s3://c/fits/", "--value_spend_uri": "s3://c/v/",
            "--segments_uri": "s3://c/s/", "--churn_uri": "s3://c/c/", "--value_uri": "s3://c/val/",
            "--profiles_uri": "s3://c/p/", "--simulation_sample_uri": "s3://c/sim/", "--migration_uri": "s3://c/m/",
            "--summary_uri": "s3://c/score.json", "--net_of_returns": "false"}
    if argv:
        base.update(dict(zip(argv[::2], argv[1::2])))
        given = [part for item in base.items() for part in item]
    else:
        given = []
    with pytest.raises(ValueError, match=message):
        cdnow_score.parse_args(given)
