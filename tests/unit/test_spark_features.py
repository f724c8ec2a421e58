"""The Glue Features job (glue/cdnow_features.py) against the Features Lambda's definitions.

Every test runs the Lambda's own ``cdnow.domain.features.customer_features`` on the rows the
Spark job reads (the same parquet file, written with the Transform's schema) and compares the
tables as their readers get them: the Spark table through the job's writer and pyarrow, the
Lambda's frame as it is. Customers, their order, counts and dates must be equal; money equal to
1e-9 relative (Spark adds in another order). One local SparkSession for all (tests/conftest.py).
"""

import ast
import datetime as dt
import io
import itertools
import json
import shutil
import sys
from pathlib import Path

import boto3
import cdnow_features
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cdnow.domain import clv, segments
from cdnow.domain import features as lambda_features
from cdnow_features import (
    OUTPUT_COLUMNS,
    customer_features,
    main,
    parse_args,
    write_features,
)
from cdnow_offline.datasets import MASTER, SAMPLE, read_cdnow
from pyspark.sql import functions as F

INT_COLUMNS = ["recency_days", "purchase_days", "repeat_purchases", "orders", "quantity_total", "tenure_days",
               "frequency", "recency", "T"]
MONEY_COLUMNS = ["monetary_total", "monetary_avg_per_purchase", "avg_days_between_purchases"]
DATE_COLUMNS = ["first_purchase_date", "last_purchase_date"]

# The Transform's accepted rows (glue/cdnow_transform.py's TRANSACTION_COLUMNS and types).
TRANSACTION_SCHEMA = pa.schema([
    ("customer_id", pa.string()),
    ("order_date", pa.date32()),
    ("quantity", pa.int64()),
    ("amount", pa.float64()),
    ("is_return", pa.bool_()),
    ("order_id", pa.string()),
    ("line_number", pa.int64()),
])


def write_transactions(frame: pd.DataFrame, folder: Path) -> Path:
    """The frame's rows as a parquet file of the Transform's types; the columns it lacks
    (is_return, order_id, line_number) are left out, as a log without them has none."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "customer_id": pa.array(frame["customer_id"].astype(object), pa.string()),
        "order_date": pa.array(pd.to_datetime(frame["order_date"]).to_numpy().astype("datetime64[D]"), pa.date32()),
        "quantity": pa.array(frame["quantity"].to_numpy(dtype=np.int64)),
        "amount": pa.array(frame["amount"].to_numpy(dtype=np.float64)),
    }
    if "is_return" in frame:
        arrays["is_return"] = pa.array(frame["is_return"].to_numpy(dtype=bool))
    if "order_id" in frame:
        arrays["order_id"] = pa.array(frame["order_id"].astype(object).where(frame["order_id"].notna(), None),
                                      pa.string())
        arrays["line_number"] = pa.array(np.arange(1, len(frame) + 1, dtype=np.int64))
    schema = pa.schema([TRANSACTION_SCHEMA.field(name) for name in arrays])
    pq.write_table(pa.table(arrays, schema=schema), folder / "part-00000.parquet")
    return folder


def lambda_table(folder: Path, analysis_date) -> pd.DataFrame:
    """The Lambda's features of the rows in ``folder``, read as its pipeline reads them."""
    return lambda_features.customer_features(pq.read_table(folder).to_pandas(), analysis_date)


def spark_table(spark, folder: Path, out: Path, analysis_date, **options) -> tuple[pd.DataFrame, dict]:
    """The job's features of the rows in ``folder``, written by the job's writer and read back."""
    frame, counts = customer_features(spark.read.parquet(str(folder)), analysis_date, **options)
    write_features(spark, frame, str(out))
    return pq.read_table(out).to_pandas(), counts


def assert_same_table(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == OUTPUT_COLUMNS == lambda_features.OUTPUT_COLUMNS
    assert got["customer_id"].tolist() == expected["customer_id"].tolist()  # same customers, same order
    for name in DATE_COLUMNS:
        assert got[name].dtype.kind == "M"
        np.testing.assert_array_equal(got[name].to_numpy().astype("datetime64[D]"),
                                      expected[name].to_numpy().astype("datetime64[D]"), err_msg=name)
    for name in INT_COLUMNS:
        assert got[name].dtype == np.int64, name
        np.testing.assert_array_equal(got[name].to_numpy(), expected[name].to_numpy(), err_msg=name)
    for name in MONEY_COLUMNS:
        assert got[name].dtype == np.float64, name
        # NaN where the Lambda has NaN (one purchase day), nowhere else.
        np.testing.assert_allclose(got[name].to_numpy(), expected[name].to_numpy(), rtol=1e-9, atol=0,
                                   err_msg=name)


# --- the CDNOW files ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def cdnow_logs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cdnow")
    logs = {}
    for path in (MASTER, SAMPLE):
        frame = read_cdnow(path).assign(is_return=False, order_id=None)
        logs[path.name] = write_transactions(frame, root / path.stem)
    return logs


@pytest.mark.parametrize("name", [MASTER.name, SAMPLE.name])
@pytest.mark.parametrize("analysis", ["default", "1997-10-01"])
def test_cdnow_files_give_the_lambda_s_table(spark, cdnow_logs, tmp_path, name, analysis):
    folder = cdnow_logs[name]
    rows = pq.read_table(folder).to_pandas()
    if analysis == "default":
        analysis_date = lambda_features.default_analysis_date(rows).date()
        assert analysis_date == dt.date(1998, 7, 1)
    else:
        # The published fits' calibration end (39 weeks to 1997-09-30): later rows are left out.
        analysis_date = dt.date.fromisoformat(analysis)
        assert (pd.to_datetime(rows["order_date"]) >= pd.Timestamp(analysis_date)).any()
    expected = lambda_table(folder, analysis_date)
    got, counts = spark_table(spark, folder, tmp_path / "features", analysis_date)

    assert_same_table(got, expected)
    assert counts == {"customers": len(expected), "customers_without_purchase": 0}
    assert pd.Timestamp(got["last_purchase_date"].max()) < pd.Timestamp(analysis_date)
    if name == MASTER.name and analysis == "default":
        assert len(got) == 23_570 and got["orders"].sum() == 69_659
        assert round(got["monetary_total"].sum(), 2) == 2_500_315.63 and got["quantity_total"].sum() == 167_881


# --- hand-made edge cases -----------------------------------------------------------------

ANALYSIS_DATE = dt.date(1997, 2, 1)
LAST_DAY = "1997-01-31"  # the window's last day (the analysis date is its exclusive end)


def order_lines(rows) -> pd.DataFrame:
    """Rows (customer, date, quantity, amount, is_return, order_id) as the Transform writes them."""
    frame = pd.DataFrame(rows, columns=["customer_id", "order_date", "quantity", "amount", "is_return", "order_id"])
    frame["order_date"] = pd.to_datetime(frame["order_date"])
    return frame


EDGE_CASES = order_lines([
    # Two lines of one order, and a second order on the same day: one purchase day, two orders;
    # then a cancellation on another day that nets but makes no purchase day.
    ("A", "1997-01-03", 2, 20.00, False, "1001"),
    ("A", "1997-01-03", 1, 5.00, False, "1001"),
    ("A", "1997-01-03", 1, 7.25, False, "1002"),
    ("A", "1997-01-10", -1, -10.00, True, "C1003"),
    # Returns only in the window: no customer of the analysis, counted.
    ("R", "1997-01-07", -2, -4.00, True, "C2001"),
    ("R", "1997-02-03", 1, 4.00, False, "2002"),  # a purchase after the window does not count
    # Some order ids missing: each purchase without one is an order of its own; an order whose
    # lines span two days is one order (on two purchase days).
    ("C", "1997-01-02", 1, 1.00, False, "3001"),
    ("C", "1997-01-02", 1, 1.00, False, None),
    ("C", "1997-01-05", 1, 1.00, False, None),
    ("C", "1997-01-06", 1, 1.00, False, "3001"),
    # A return of a purchase's own order: neither an order nor a purchase day; the net spend
    # goes below zero.
    ("N", "1997-01-04", 1, 3.00, False, "4001"),
    ("N", "1997-01-08", -2, -8.00, True, "4001"),
    # One purchase: no interval between purchases (NaN in the Lambda, null in its parquet).
    ("S", "1997-01-15", 1, 11.77, False, "5001"),
    # Same-day purchases without order ids, one of them identical to another, one with a zero
    # amount, and a purchase on the window's last day; the row on the analysis date is out.
    ("D", "1997-01-09", 1, 2.50, False, None),
    ("D", "1997-01-09", 1, 2.50, False, None),
    ("D", "1997-01-09", 3, 0.00, False, None),
    ("D", LAST_DAY, 1, 0.10, False, None),
    ("D", "1997-02-01", 5, 99.99, False, None),
    # Only on the analysis date: neither a customer nor counted as one without a purchase.
    ("F", "1997-02-01", 1, 1.00, False, "6001"),
    # Ids sort as text, bytewise (arrow's order): "00010" < "10" < "9" < "Z" < "a" < "é".
    ("9", "1997-01-01", 1, 0.1, False, None),
    ("9", "1997-01-01", 1, 0.2, False, None),
    ("9", "1997-01-01", 1, 0.7, False, None),  # 0.1 + 0.2 + 0.7 rounds to 1.00 exactly
    ("10", LAST_DAY, 1, 1.00, False, "7001"),
    ("00010", "1997-01-01", 1, 1.00, False, "7002"),
    ("é", "1997-01-20", 1, 1.00, False, "7003"),
    ("a", "1997-01-21", 1, 1.00, False, "7004"),
    ("Z", "1997-01-22", 1, 1.00, False, "7005"),
])


def test_edge_cases_give_the_lambda_s_table(spark, tmp_path):
    folder = write_transactions(EDGE_CASES, tmp_path / "transactions")
    expected = lambda_table(folder, ANALYSIS_DATE)
    got, counts = spark_table(spark, folder, tmp_path / "features", ANALYSIS_DATE)

    assert_same_table(got, expected)
    assert counts == {"customers": len(expected), "customers_without_purchase": 1}
    assert expected.attrs["customers_without_purchase"] == 1
    assert got["customer_id"].tolist() == ["00010", "10", "9", "A", "C", "D", "N", "S", "Z", "a", "é"]
    by_id = got.set_index("customer_id")
    columns = ["purchase_days", "orders", "quantity_total", "monetary_total"]
    assert by_id.loc["A", columns].tolist() == [1, 2, 3, 22.25]
    assert by_id.loc["C", columns].tolist() == [3, 3, 4, 4.00]
    assert by_id.loc["N", columns].tolist() == [1, 1, -1, -5.00]
    assert by_id.loc["D", columns].tolist() == [2, 4, 6, 5.10]
    assert by_id.loc["9", "monetary_total"] == 1.0
    s = by_id.loc["S"]
    assert np.isnan(s["avg_days_between_purchases"]) and (s["recency"], s["frequency"]) == (0, 0)
    assert (s["tenure_days"], s["T"]) == (17, 16)
    d = by_id.loc["D"]
    # A purchase on the window's last day: recency_days 1, recency == T (published BTYD definition).
    assert (d["recency_days"], d["recency"], d["T"]) == (1, 22, 22)
    assert d["avg_days_between_purchases"] == 22.0
    assert by_id.loc["10", ["recency_days", "tenure_days", "T", "recency"]].tolist() == [1, 1, 0, 0]


def test_without_return_and_order_columns_every_row_is_an_order(spark, tmp_path):
    frame = EDGE_CASES.loc[~EDGE_CASES["is_return"], ["customer_id", "order_date", "quantity", "amount"]]
    folder = write_transactions(frame, tmp_path / "transactions")
    assert pq.read_schema(folder / "part-00000.parquet").names == ["customer_id", "order_date", "quantity", "amount"]
    expected = lambda_table(folder, ANALYSIS_DATE)
    got, counts = spark_table(spark, folder, tmp_path / "features", ANALYSIS_DATE)

    assert_same_table(got, expected)
    assert counts == {"customers": len(expected), "customers_without_purchase": 0}
    by_id = got.set_index("customer_id")
    assert by_id.loc["A", ["purchase_days", "orders"]].tolist() == [1, 3]
    assert by_id.loc["C", ["purchase_days", "orders"]].tolist() == [3, 4]


def test_ids_present_only_on_returns_leave_purchases_orders_of_their_own(spark, tmp_path):
    frame = order_lines([
        ("A", "1997-01-03", 1, 2.00, False, None),
        ("A", "1997-01-03", 1, 2.00, False, None),
        ("A", "1997-01-04", -1, -2.00, True, "C1"),
    ])
    folder = write_transactions(frame, tmp_path / "transactions")
    expected = lambda_table(folder, ANALYSIS_DATE)
    got, _ = spark_table(spark, folder, tmp_path / "features", ANALYSIS_DATE)
    assert_same_table(got, expected)
    assert got["orders"].tolist() == [2]


def test_a_window_with_only_returns_gives_no_rows_and_counts_them(spark):
    rows = spark.createDataFrame(
        [("R", dt.date(1997, 1, 7), -2, -4.0, True, "C1"), ("B", dt.date(1997, 3, 1), 1, 4.0, False, "1")],
        "customer_id string, order_date date, quantity long, amount double, is_return boolean, order_id string")
    frame, counts = customer_features(rows, ANALYSIS_DATE)
    assert frame.collect() == [] and frame.columns == OUTPUT_COLUMNS
    assert counts == {"customers": 0, "customers_without_purchase": 1}


def test_missing_columns_and_values_are_errors_as_in_the_lambda(spark):
    rows = spark.createDataFrame([("A", dt.date(1997, 1, 7), 1, None)],
                                 "customer_id string, order_date date, quantity long, amount double")
    with pytest.raises(ValueError, match="amount"):
        customer_features(rows.drop("amount"), ANALYSIS_DATE)
    with pytest.raises(ValueError, match="missing values"):
        customer_features(rows, ANALYSIS_DATE)


def test_the_table_s_parquet_types_are_the_lambda_s(spark, tmp_path, mocked_aws):
    """The Lambda stages its frame with awswrangler (Spark-flavored parquet: INT96 dates, null
    where a mean has no interval); the job writes the same physical and logical types."""
    folder = write_transactions(EDGE_CASES, tmp_path / "transactions")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="curated")
    from cdnow.adapters.storage import stage_table

    stage_table(lambda_table(folder, ANALYSIS_DATE), "s3://curated/staged/customer_features/")
    (key,) = [o["Key"] for o in s3.list_objects_v2(Bucket="curated")["Contents"]]
    staged = pq.ParquetFile(io.BytesIO(s3.get_object(Bucket="curated", Key=key)["Body"].read()))
    frame, _ = customer_features(spark.read.parquet(str(folder)), ANALYSIS_DATE)
    write_features(spark, frame, str(tmp_path / "features"))
    (written_path,) = (tmp_path / "features").glob("*.parquet")
    written = pq.ParquetFile(written_path)

    def types(file: pq.ParquetFile) -> list[tuple]:
        return [(c.name, c.physical_type, str(c.logical_type)) for c in file.schema]

    assert types(written) == types(staged)
    assert [(f.name, f.type) for f in written.schema_arrow] == [(f.name, f.type) for f in staged.schema_arrow]
    assert written.schema.column(1).physical_type == "INT96"
    mean = "avg_days_between_purchases"
    assert written.read([mean]).column(0).null_count == staged.read([mean]).column(0).null_count > 0


def test_the_script_imports_only_what_glue_provides():
    script = Path(cdnow_features.__file__)
    modules = set()
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            modules.add(node.module.split(".")[0])
    allowed = {"pyspark", "py4j", "boto3", "botocore", "__future__"} | set(sys.stdlib_module_names)
    assert modules - allowed == set()


# --- the job's entry point ----------------------------------------------------------------

def test_main_writes_sorted_key_range_files_and_the_summary(spark, cdnow_logs, tmp_path, monkeypatch, mocked_aws):
    # Small partitions, so that the master file's 69,659 rows make several range partitions.
    monkeypatch.setattr(cdnow_features, "ROWS_PER_PARTITION", 20_000)

    def spark_path(uri: str) -> str:
        return str(tmp_path / uri.removeprefix("s3://"))

    prefix = "s3://curated/runs/run_id=r1/"
    transactions = Path(spark_path(prefix + "transactions/"))
    shutil.copytree(cdnow_logs[MASTER.name], transactions)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="curated")
    argv = ["--JOB_NAME", "features", "--run_id", "r1", "--transactions_uri", prefix + "transactions/",
            "--analysis_date", "1997-10-01", "--output_uri", prefix + "staged/customer_features/",
            "--summary_uri", prefix + "features.json"]
    summary = main(argv, spark=spark, spark_path=spark_path)
    stored = json.loads(s3.get_object(Bucket="curated", Key="runs/run_id=r1/features.json")["Body"].read())

    assert stored == summary == {
        "analysis_date": "1997-10-01", "rows_read": 69_659, "customers": summary["customers"],
        "customers_without_purchase": 0, "features_uri": prefix + "staged/customer_features/", "partitions": 4,
    }
    output = Path(spark_path(prefix + "staged/customer_features/"))
    files = sorted(output.glob("*.parquet"))
    # Only the data files (no _SUCCESS marker; Spark's hidden .crc files aside).
    assert sorted(p.name for p in output.iterdir() if not p.name.startswith(".")) == [p.name for p in files]
    ids = [pq.read_table(path, columns=["customer_id"]).column(0).to_pylist() for path in files]
    assert len(files) == 4 and all(ids)
    # Each file sorted, the files in key order: the whole table reads back sorted.
    assert all(a == sorted(a) for a in ids) and all(a[-1] < b[0] for a, b in itertools.pairwise(ids))
    expected = lambda_table(cdnow_logs[MASTER.name], dt.date(1997, 10, 1))
    assert summary["customers"] == len(expected)
    assert_same_table(pq.read_table(output).to_pandas(), expected)
    assert not spark.sparkContext._jsc.sc().isStopped()  # a session it was given stays up


def test_main_refuses_a_window_without_a_purchase(spark, cdnow_logs, tmp_path, mocked_aws):
    boto3.client("s3").create_bucket(Bucket="curated")

    def spark_path(uri: str) -> str:
        return str(cdnow_logs[SAMPLE.name]) if "transactions" in uri else str(tmp_path / uri.removeprefix("s3://"))

    with pytest.raises(ValueError, match="no customer bought anything before the analysis date 1990-01-01"):
        main(["--transactions_uri", "s3://curated/transactions/", "--analysis_date", "1990-01-01",
              "--output_uri", "s3://curated/features/", "--summary_uri", "s3://curated/features.json"],
             spark=spark, spark_path=spark_path)
    assert not (tmp_path / "curated" / "features").exists()


def test_parse_args_ignores_glue_system_arguments():
    args = parse_args(["--JOB_NAME", "features", "--job-bookmark-option", "job-bookmark-disable",
                       "--transactions_uri=s3://b/t/", "--analysis_date", "1997-10-01",
                       "--output_uri", "s3://b/f/", "--summary_uri", "s3://b/f.json", "--enable-metrics"])
    assert args == {"transactions_uri": "s3://b/t/", "analysis_date": dt.date(1997, 10, 1),
                    "output_uri": "s3://b/f/", "summary_uri": "s3://b/f.json", "run_id": None,
                    "sample_uri": None, "sample_transactions_uri": None,
                    "sample_customers": cdnow_features.DEFAULT_SAMPLE_CUSTOMERS, "value_spend_uri": None,
                    "history_plan_uri": None, "history_data_uri": None, "latest_allowed_date": None}


@pytest.mark.parametrize("argv, message", [
    (["--transactions_uri", "s3://b/t/", "--output_uri", "s3://b/f/", "--summary_uri", "s3://b/f.json"],
     "--analysis_date"),
    (["--transactions_uri", "/tmp/t/", "--analysis_date", "1997-10-01", "--output_uri", "s3://b/f/",
      "--summary_uri", "s3://b/f.json"], "s3://"),
    (["--transactions_uri", "s3://b/t", "--analysis_date", "1997-10-01", "--output_uri", "s3://b/f/",
      "--summary_uri", "s3://b/f.json"], "ending with '/'"),
    (["--transactions_uri", "s3://b/t/", "--analysis_date", "1997-10-01", "--output_uri", "s3://b/f/",
      "--summary_uri", "s3://b/f/"], "name an object"),
    (["--transactions_uri", "s3://b/t/", "--analysis_date", "19971001", "--output_uri", "s3://b/f/",
      "--summary_uri", "s3://b/f.json"], "YYYY-MM-DD"),
    # A dataset's run: the plan and the history's folder go together; its dates are checked too.
    (["--history_plan_uri", "s3://b/p.json", "--output_uri", "s3://b/f/", "--summary_uri", "s3://b/f.json"],
     "go together"),
    (["--history_plan_uri", "s3://b/p/", "--history_data_uri", "s3://b/h/", "--output_uri", "s3://b/f/",
      "--summary_uri", "s3://b/f.json"], "--history_plan_uri must name an object"),
    (["--history_plan_uri", "s3://b/p.json", "--history_data_uri", "s3://b/h", "--output_uri", "s3://b/f/",
      "--summary_uri", "s3://b/f.json"], "--history_data_uri must be a prefix"),
    (["--history_plan_uri", "s3://b/p.json", "--history_data_uri", "s3://b/h/", "--output_uri", "s3://b/f/",
      "--summary_uri", "s3://b/f.json", "--latest_allowed_date", "2020-1-1"], "--latest_allowed_date: cannot read"),
])
def test_parse_args_rejects_missing_or_malformed_arguments(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_args(argv)


# --- what the Spark path's models read (issue 18) -------------------------------------------

def test_the_sample_s_strata_are_the_segments_rfm_grid(spark, cdnow_logs):
    assert cdnow_features.RECENCY_LOWS == tuple(low for _, low, _ in segments.RECENCY_BINS)
    assert cdnow_features.PURCHASE_DAYS_LOWS == tuple(low for _, low, _ in segments.PURCHASE_DAYS_BINS)
    frame, _ = customer_features(spark.read.parquet(str(cdnow_logs[MASTER.name])), dt.date(1998, 7, 1))
    got = frame.select("customer_id", cdnow_features.sample_stratum(frame).alias("stratum")).toPandas()
    expected = lambda_table(cdnow_logs[MASTER.name], dt.date(1998, 7, 1))
    assert got["customer_id"].tolist() == expected["customer_id"].tolist()
    np.testing.assert_array_equal(got["stratum"].to_numpy(), segments.sample_stratum(expected))
    assert got["stratum"].nunique() == 26  # 18 months of history leave the 731+ days bin empty


def run_for_models(spark, folder: Path, tmp_path: Path, analysis_date: str, *options: str) -> tuple[dict, dict]:
    """The job's main with the models' outputs; its summary and the outputs read back."""
    prefix = "s3://curated/run/"

    def spark_path(uri: str) -> str:
        return str(folder) if uri == prefix + "transactions/" else str(tmp_path / uri.removeprefix("s3://"))

    boto3.client("s3").create_bucket(Bucket="curated")
    summary = main(["--transactions_uri", prefix + "transactions/", "--analysis_date", analysis_date,
                    "--output_uri", prefix + "customer_features/", "--summary_uri", prefix + "features.json",
                    "--sample_uri", prefix + "model_sample/customers/",
                    "--sample_transactions_uri", prefix + "model_sample/transactions/",
                    "--value_spend_uri", prefix + "value_spend/", *options],
                   spark=spark, spark_path=spark_path)
    outputs = {name: pq.read_table(spark_path(prefix + name)).to_pandas()
               for name in ("customer_features/", "model_sample/customers/", "model_sample/transactions/",
                            "value_spend/")}
    return summary, outputs


def test_the_models_sample_is_a_reproducible_weighted_draw_of_whole_customers(spark, cdnow_logs, tmp_path,
                                                                               mocked_aws):
    folder = cdnow_logs[MASTER.name]
    summary, out = run_for_models(spark, folder, tmp_path / "first", "1998-07-01", "--sample_customers", "2000")
    sample, rows = out["model_sample/customers/"], out["model_sample/transactions/"]
    drawn = summary["models"]["sample"]
    assert drawn["customers"] == summary["customers"] == 23_570
    assert drawn["rate"] == pytest.approx(2000 / 23_570)
    # A hash draw: about the rate's share (binomial spread: 3 sigma is about 130 customers).
    assert abs(len(sample) - 2000) < 130 and drawn["sampled"] == len(sample)
    assert list(sample.columns) == [*OUTPUT_COLUMNS, "stratum", "sample_weight"]
    # The drawn customers' rows are the table's rows, in the table's order.
    table = out["customer_features/"].set_index("customer_id")
    assert sample["customer_id"].is_monotonic_increasing
    assert_same_table(sample[OUTPUT_COLUMNS], table.loc[sample["customer_id"]].reset_index())
    # Each stratum's weights add up to its customers; together, to every customer.
    np.testing.assert_array_equal(sample["stratum"].to_numpy(), segments.sample_stratum(sample))
    per_stratum = sample.groupby("stratum")["sample_weight"].sum()
    sizes = {s["stratum"]: s["customers"] for s in drawn["strata"]}
    for stratum, weight in per_stratum.items():
        assert weight == pytest.approx(sizes[stratum], rel=1e-12)
    assert sum(sizes.values()) == 23_570 and len(sizes) == 26
    # Every row of every drawn customer, and no other row.
    log = pq.read_table(folder).to_pandas()
    expected_rows = log[log["customer_id"].isin(set(sample["customer_id"]))]
    assert len(rows) == len(expected_rows)
    assert sorted(zip(rows["customer_id"], rows["amount"])) == sorted(zip(expected_rows["customer_id"],
                                                                          expected_rows["amount"]))
    assert summary["models"]["first_order_date"] == "1997-01-01"
    assert summary["models"]["last_order_date"] == "1998-06-30"
    assert summary["models"]["net_of_returns"] is False
    # The same data gives the same customers.
    again, out_again = run_for_models(spark, folder, tmp_path / "again", "1998-07-01", "--sample_customers", "2000")
    assert out_again["model_sample/customers/"]["customer_id"].tolist() == sample["customer_id"].tolist()


def test_a_sample_as_large_as_the_customers_is_every_customer_with_weight_one(spark, cdnow_logs, tmp_path,
                                                                            mocked_aws):
    summary, out = run_for_models(spark, cdnow_logs[SAMPLE.name], tmp_path, "1998-07-01")
    sample = out["model_sample/customers/"]
    assert summary["models"]["sample"]["rate"] == 1.0
    assert sample["customer_id"].tolist() == out["customer_features/"]["customer_id"].tolist()
    assert (sample["sample_weight"] == 1.0).all()
    assert len(out["model_sample/transactions/"]) == summary["rows_read"]


@pytest.mark.parametrize("case", ["master", "edge cases"])
def test_the_value_spend_gives_the_lambda_s_value_inputs(spark, cdnow_logs, tmp_path, mocked_aws, case):
    if case == "master":
        folder, analysis_date, net_of_returns = cdnow_logs[MASTER.name], "1997-10-01", False
    else:
        folder, analysis_date, net_of_returns = (write_transactions(EDGE_CASES, tmp_path / "transactions"),
                                                 ANALYSIS_DATE.isoformat(), True)
    summary, out = run_for_models(spark, folder, tmp_path, analysis_date)
    assert summary["models"]["net_of_returns"] is net_of_returns
    spend = out["value_spend/"]
    features = out["customer_features/"]
    assert spend["customer_id"].tolist() == features["customer_id"].tolist()
    got = clv.value_inputs_from(features.merge(spend, on="customer_id"), net_of_returns)
    expected = clv.value_inputs(pq.read_table(folder).to_pandas(), pd.Timestamp(analysis_date))
    assert got["customer_id"].tolist() == expected["customer_id"].tolist()
    np.testing.assert_array_equal(got[["frequency", "recency", "T"]].to_numpy(),
                                  expected[["frequency", "recency", "T"]].to_numpy())
    np.testing.assert_allclose(got["monetary_value"].to_numpy(), expected["monetary_value"].to_numpy(),
                               rtol=1e-12, atol=0)
    assert got["monetary_value"].notna().sum() > 0


@pytest.mark.parametrize(("argv", "message"), [
    (["--sample_uri", "s3://b/s/"], "go together"),
    (["--sample_uri", "s3://b/s/", "--sample_transactions_uri", "s3://b/t"], "ending with '/'"),
    (["--value_spend_uri", "b/v/"], "must be an s3:// URI"),
    (["--sample_customers", "0"], "at least 1"),
    (["--sample_customers", "many"], "whole number"),
])
def test_parse_args_checks_the_models_outputs(argv, message):
    base = ["--transactions_uri", "s3://b/t/", "--analysis_date", "1998-07-01", "--output_uri", "s3://b/f/",
            "--summary_uri", "s3://b/f.json"]
    with pytest.raises(ValueError, match=message):
        parse_args(base + argv)


# --- a dataset's history after the run (domain/history.py's rules) ------------------------------

HISTORY_FRAME_COLUMNS = ["customer_id", "order_date", "quantity", "amount", "is_return", "order_id",
                         "delivery_id", "delivery_key"]


def history_rows(rows, delivery_id: str, delivery_key: str) -> pd.DataFrame:
    """(customer, day, quantity, amount, is_return, order id) rows of one delivery."""
    frame = pd.DataFrame(rows, columns=HISTORY_FRAME_COLUMNS[:6])
    frame["order_date"] = pd.to_datetime(frame["order_date"]).dt.date
    return frame.assign(delivery_id=delivery_id, delivery_key=delivery_key)


def spark_history(spark, frame: pd.DataFrame | None, with_files: bool = True):
    """The rows as a Spark frame of the history's types; ``with_files``: each row's
    ``source_file`` as the job reads it, one file per delivery (jan.csv's rows in jan.parquet)."""
    if frame is None:
        return None
    schema = ", ".join(f"{name} {kind}" for name, kind in cdnow_features.HISTORY_SCHEMA)
    rows = spark.createDataFrame(frame[HISTORY_FRAME_COLUMNS].astype(object).where(frame.notna(), None)
                                 .itertuples(index=False, name=None), schema)
    if not with_files:
        return rows
    return rows.withColumn("source_file", F.concat(F.regexp_extract("delivery_key", r"([a-z]+)\.csv$", 1),
                                                   F.lit(".parquet")))


def sorted_rows(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[HISTORY_FRAME_COLUMNS].astype({"quantity": "int64", "amount": "float64"})
    return frame.sort_values(HISTORY_FRAME_COLUMNS[:4] + ["delivery_key"]).reset_index(drop=True)


EARLIER = pd.concat([
    history_rows([("c1", "2020-01-01", 1, 10.0, False, "o1"), ("c1", "2020-01-01", 2, 5.0, False, "o1"),
                  ("c2", "2020-01-03", 1, 7.0, False, "o2"), ("c3", "2020-01-04", 1, 3.0, False, None)],
                 "d-jan", "incoming/shop/jan.csv"),
    history_rows([("c2", "2020-02-01", 1, 8.0, False, "o3"), ("c4", "2020-02-02", -1, -4.0, True, "o4"),
                  ("c5", "2020-02-03", 1, 9.0, False, None)], "d-feb", "incoming/shop/feb.csv"),
], ignore_index=True)


@pytest.mark.parametrize("case, history, delivery, key, snapshot, removed", [
    # Nothing replaced (new order ids, a new key): the delivery's rows are added, no file removed.
    ("new orders", EARLIER, [("c6", "2020-03-01", 1, 6.0, False, "o5"), ("c1", "2020-03-02", 1, 1.0, False, None)],
     "incoming/shop/mar.csv", False, []),
    # The same key again: a correction replaces that key's rows (its file; January's stays).
    ("correction", EARLIER, [("c2", "2020-02-01", 1, 8.5, False, "o3")], "incoming/shop/feb.csv", False,
     ["feb.parquet"]),
    # An order sent again (under another key) replaces that order's lines, none of the others: its
    # file's other rows are written again.
    ("order again", EARLIER, [("c1", "2020-01-01", 3, 15.0, False, "o1"), ("c7", "2020-03-05", 1, 2.0, False, "o9")],
     "incoming/shop/late.csv", False, ["jan.parquet"]),
    # A snapshot replaces the whole history.
    ("snapshot", EARLIER, [("c8", "2020-03-01", 1, 1.0, False, None)], "incoming/shop/all.csv", True,
     ["feb.parquet", "jan.parquet"]),
    # The first delivery (no history), snapshot or not: added.
    ("first", None, [("c1", "2020-01-01", 1, 10.0, False, None)], "incoming/shop/jan.csv", False, []),
    ("first snapshot", None, [("c1", "2020-01-01", 1, 10.0, False, None)], "incoming/shop/jan.csv", True, []),
    # Without order ids in the delivery, nothing is replaced by order (CDNOW's identical rows).
    ("no ids", EARLIER, [("c3", "2020-01-04", 1, 3.0, False, None)], "incoming/shop/apr.csv", False, []),
])
def test_the_history_after_a_delivery_is_the_domain_s(spark, case, history, delivery, key, snapshot, removed):
    from cdnow.domain.history import combine, replacement_of

    delivered = history_rows(delivery, "d-new", key)
    earlier = history if history is not None else delivered.iloc[0:0]
    expected = combine(earlier, delivered, replacement_of(delivered, key, snapshot))
    plan = {"delivery": {"id": "d-new", "key": key, "snapshot": snapshot}}
    transform_rows = spark_history(spark, delivered, with_files=False).drop("delivery_id", "delivery_key")
    rows, got_removed, counts = cdnow_features.history_after(spark_history(spark, history), transform_rows, plan)
    assert got_removed == removed, case
    assert counts == expected.counts(), case
    # The history after: the files not removed, and the rows written.
    files = earlier["delivery_key"].str.extract(r"([a-z]+)\.csv$")[0] + ".parquet"
    after = pd.concat([earlier[~files.isin(removed)], rows.toPandas()], ignore_index=True)
    pd.testing.assert_frame_equal(sorted_rows(after), sorted_rows(expected.rows), check_dtype=False)
    assert [(f.name, f.dataType.simpleString()) for f in rows.schema.fields] == list(cdnow_features.HISTORY_SCHEMA)


def test_a_replay_rewrites_only_the_files_of_the_erased_customers(spark):
    history = spark_history(spark, EARLIER)
    rows, removed, counts = cdnow_features.history_after(history, None, {"delivery": None, "erase_customers": ["c4"]})
    assert removed == ["feb.parquet"] and counts == {"history_rows": 6, "replayed": True, "erased_rows": 1,
                                                     "erased_customers": 1}
    assert sorted(rows.toPandas()["customer_id"]) == ["c2", "c5"]  # February without c4
    rows, removed, counts = cdnow_features.history_after(history, None, {"delivery": None, "erase_customers": []})
    assert rows is None and removed == [] and counts["history_rows"] == len(EARLIER) and counts["erased_rows"] == 0


def test_the_history_s_columns_are_the_iceberg_table_s():
    from cdnow.adapters import history

    iceberg = [(field.name, str(field.field_type)) for field in history._schema().fields]
    spark_types = {"string": "string", "date": "date", "bigint": "long", "double": "double", "boolean": "boolean"}
    assert iceberg == [(name, spark_types[kind]) for name, kind in cdnow_features.HISTORY_SCHEMA]
    from cdnow.domain.history import DELIVERY_COLUMNS

    assert cdnow_features.DELIVERY_COLUMNS == DELIVERY_COLUMNS


def test_main_on_a_dataset_s_delivery_writes_the_history_for_publish(spark, tmp_path, mocked_aws):
    """The job reads the plan's files and the delivery, writes what Publish commits, and computes
    the features on the history after the run, with the analysis date the rule gives."""
    def spark_path(uri: str) -> str:
        return str(tmp_path / uri.removeprefix("s3://"))

    data = "s3://curated/datasets/shop/history/data/"
    prefix = "s3://curated/runs/run_id=r2/"
    jan = EARLIER[EARLIER["delivery_key"] == "incoming/shop/jan.csv"]
    feb = EARLIER[EARLIER["delivery_key"] == "incoming/shop/feb.csv"]
    for name, frame in (("jan", jan), ("feb", feb)):  # the history's current files
        path = Path(spark_path(f"{data}{name}.parquet"))
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(frame[HISTORY_FRAME_COLUMNS].astype({"quantity": "int64"}), preserve_index=False)
        pq.write_table(table, path)
    corrected = history_rows([("c2", "2020-02-01", 1, 8.5, False, "o3")], "d-new", "incoming/shop/feb.csv")
    write_transactions(corrected, Path(spark_path(prefix + "transactions/")))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="curated")
    plan = {"dataset": "shop", "files": [f"{data}jan.parquet", f"{data}feb.parquet"],
            "delivery": {"id": "d-new", "key": "incoming/shop/feb.csv", "snapshot": False},
            "erase_customers": [], "output_uri": f"{data}run_id=r2/"}
    s3.put_object(Bucket="curated", Key="runs/run_id=r2/history_plan.json", Body=json.dumps(plan).encode())
    argv = ["--run_id", "r2", "--transactions_uri", prefix + "transactions/", "--latest_allowed_date", "2020-01-20",
            "--output_uri", prefix + "staging/customer_features/", "--summary_uri", prefix + "features_job.json",
            "--history_plan_uri", prefix + "history_plan.json", "--history_data_uri", data,
            "--sample_uri", prefix + "sample/customers/", "--sample_transactions_uri", prefix + "sample/transactions/",
            "--value_spend_uri", prefix + "value_spend/"]
    summary = main(argv, spark=spark, spark_path=spark_path)
    assert summary["history"] == {"history_rows_kept": 4, "replaced_by_key": 3, "replaced_by_order_id": 0,
                                  "replaced_by_snapshot": 0, "delivery_rows": 1, "history_rows": 5,
                                  "files_uri": f"{data}run_id=r2/", "written": True,
                                  "removed_files": [f"{data}feb.parquet"]}
    # Never later than the latest allowed date; the last order is the history's after the run (the
    # replaced February's last, 2020-02-03, is gone).
    assert summary["analysis_date"] == "2020-01-20" and summary["models"]["last_order_date"] == "2020-02-01"
    # February's file replaced by its fix; January's file stays as it is.
    written = pq.read_table(spark_path(f"{data}run_id=r2/")).to_pandas()
    assert list(written["customer_id"]) == ["c2"] and list(written["amount"]) == [8.5]
    assert summary["customers"] == 3  # c1, c2, c3 bought before 2020-01-20
    # A file outside the history's data folder is refused.
    s3.put_object(Bucket="curated", Key="runs/run_id=r2/history_plan.json",
                  Body=json.dumps({**plan, "files": ["s3://curated/elsewhere/x.parquet"]}).encode())
    with pytest.raises(ValueError, match="is not under --history_data_uri"):
        main(argv, spark=spark, spark_path=spark_path)
