"""`cdnow run/runs/show/report --stack NAME` against a stack the offline provisioner made.

The CLI reads a deployed stack's outputs from CloudFormation; here it gets the emulated stack's
outputs instead (the one thing that differs), so every other call is the one it makes on AWS:
upload under incoming/, find the execution the upload started, follow it through Step
Functions' history, read the runs table, run_summary.json and reports/ of the curated bucket.
Two runs are published, the second without a tenth of the first's customers, so it has a
segment migration with customers who left, and every table exists for the queries of
docs/queries.sql, which run in DuckDB over the published files (athena_sql.py).
"""

import contextlib
import io
import json
import re
import shutil
import urllib.request

from pathlib import Path

import athena_sql
import boto3
import pandas as pd
import pytest

from cdnow_offline.cli import main
from cdnow_offline.emulator import Emulator
from cdnow_offline.remote import StackNotFound

STACK = "cdnow-e2e"
DATABASE = "cdnow_analytics"
SAMPLE_CUSTOMERS = 2_357
# Rows and customers of each run's input: the sample, then the sample without the 239 customers
# whose id ends in 7.
INPUTS = {"cdnow_sample.txt": (6_919, SAMPLE_CUSTOMERS), "cdnow_sample_week2.txt": (6_297, 2_118)}


@pytest.fixture(scope="module")
def stack(root):
    with Emulator(root) as emulator:
        yield emulator.provision(STACK)


@pytest.fixture(scope="module")
def cli(stack):
    def outputs(name):
        if name != STACK:
            raise StackNotFound(f"stack {name}: Stack with id {name} does not exist")
        return stack.outputs

    def run(*argv):
        return main(list(argv), stack_outputs=outputs)

    return run


@pytest.fixture(scope="module")
def two_runs(root, cli, tmp_path_factory):
    """The sample, then a later export under another name (a second run) that has lost the
    customers whose id ends in 7: the migration matrix then counts customers who left."""
    folder = tmp_path_factory.mktemp("inputs")
    first, second = folder / "cdnow_sample.txt", folder / "cdnow_sample_week2.txt"
    shutil.copy(root / "data" / "CDNOW_sample.txt", first)
    with open(first, newline="") as lines, open(second, "w", newline="") as kept:
        kept.writelines(line for line in lines if not line.split()[0].endswith("7"))
    out = tmp_path_factory.mktemp("out")
    statuses, printed = [], []
    for path in (first, second):
        with contextlib.redirect_stdout(io.StringIO()) as stdout:
            statuses.append(cli("run", "--stack", STACK, "--input", str(path), "--out", str(out)))
        printed.append(stdout.getvalue().splitlines())
        print(stdout.getvalue())
    return out, statuses, printed


def _summaries(out):
    return sorted((json.loads(p.read_text()) for p in out.glob("*/run_summary.json")),
                  key=lambda s: s["segmentation"]["migration"] is not None)


def test_runs_on_the_stack_succeed_and_land_in_one_folder_each(two_runs):
    out, statuses, _ = two_runs
    assert statuses == [0, 0]
    first, second = _summaries(out)
    assert first["run_id"] != second["run_id"]
    for summary, (_, customers) in zip((first, second), INPUTS.values()):
        folder = out / summary["run_id"]
        assert summary["customers"] == customers
        assert (folder / "report.html").read_text().startswith("<!DOCTYPE html>")
        assert {p.stem for p in (folder / "charts").glob("*.svg")} == {
            uri.rsplit("/", 1)[-1].removesuffix(".svg") for uri in summary["charts"]}
    assert second["segmentation"]["migration"]["previous_run_id"] == first["run_id"]
    assert "changed segment" in (out / second["run_id"] / "report.html").read_text()


def test_progress_shows_states_with_times_and_counts(two_runs):
    _, _, printed = two_runs
    lines = printed[0]
    assert any(line.startswith("Put ") and f"at s3://{STACK}-rawbucket/incoming/cdnow_sample.txt" in line
               for line in lines)
    features = next(line for line in lines if line.startswith("  <- Features ("))
    assert f"6,919 rows read, 6,919 accepted, 0 quarantined; {SAMPLE_CUSTOMERS:,} customers" in features
    assert any(line.startswith("  <- Segment (") and "segments:" in line for line in lines)
    assert any(line.startswith("  <- Churn (") and "ROC AUC" in line for line in lines)
    assert any(line.startswith("  <- Report (") and "/reports/" in line for line in lines)
    assert lines[-3].startswith("SUCCEEDED run cdnow-sample-")


def test_runs_lists_the_published_runs_newest_first(two_runs, cli, capsys):
    out, _, _ = two_runs
    first, second = _summaries(out)
    capsys.readouterr()
    assert cli("runs", "--stack", STACK, "--json") == 0
    listed = [row["run_id"] for row in json.loads(capsys.readouterr().out)]
    assert listed.index(second["run_id"]) < listed.index(first["run_id"])
    assert cli("runs", "--stack", STACK) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["RUN", "ID"] and any(first["run_id"] in line for line in table[1:])


def test_show_and_report_read_the_stack(two_runs, cli, tmp_path, capsys):
    out, _, _ = two_runs
    _, second = _summaries(out)
    capsys.readouterr()
    assert cli("show", second["run_id"], "--stack", STACK) == 0
    text = capsys.readouterr().out
    assert f"Customers: {INPUTS['cdnow_sample_week2.txt'][1]:,}" in text and "changed segment since run" in text
    assert cli("show", second["run_id"], "--stack", STACK, "--json") == 0
    assert json.loads(capsys.readouterr().out) == second

    assert cli("report", second["run_id"], "--stack", STACK, "--out", str(tmp_path)) == 0
    printed = capsys.readouterr().out.splitlines()
    path = tmp_path / second["run_id"] / "report.html"
    assert printed[0] == f"Report: {path}" and path.is_file()
    link = printed[1].split(": ", 1)[1]
    with urllib.request.urlopen(link) as response:  # noqa: S310 - the emulator on loopback
        assert response.read() == path.read_bytes()


def test_unknown_runs_and_stacks_are_usage_errors(two_runs, cli, capsys):
    assert cli("show", "no-such-run", "--stack", STACK) == 2
    assert "has no published run no-such-run" in capsys.readouterr().err
    assert cli("runs", "--stack", "no-such-stack") == 2
    assert "no-such-stack" in capsys.readouterr().err


# ----------------------------------------------------------------- docs/queries.sql
# Every query runs as written, in DuckDB over the parquet files the catalog's partitions point at
# (athena_sql.py: the one place Athena's dialect is handled), and its result is checked against
# the published tables read by the pipeline's own reader (the oracle: pandas, no SQL).

QUERIES = athena_sql.split_queries((Path(__file__).resolve().parents[2] / "docs" / "queries.sql").read_text())
CHECKS = {}


def check(name):
    def register(function):
        CHECKS[name] = function
        return function
    return register


@pytest.fixture(scope="module")
def athena(two_runs, tmp_path_factory):
    """The published tables as Athena reads them, snapshotted before the rerun test below."""
    assert two_runs[1] == [0, 0]
    return athena_sql.connect(DATABASE, tmp_path_factory.mktemp("athena"))


@pytest.fixture(scope="module")
def published(athena):
    """Every table of the catalog as the pipeline itself reads it (pandas, run_id column added)."""
    from cdnow.adapters.storage import read_published_table

    names = [t["Name"] for t in boto3.client("glue").get_tables(DatabaseName=DATABASE)["TableList"]]
    return {name: read_published_table(DATABASE, name) for name in names}


def _latest(published, *tables):
    """The newest run whose published_tables hold ``tables`` (what the queries' CTE picks)."""
    runs = published["runs"]
    holds = runs["published_tables"].str.split(",").map(lambda names: set(tables) <= set(names))
    return runs[holds].sort_values("published_at")["run_id"].iloc[-1]


def _of_run(published, table, run_id):
    frame = published[table]
    return frame[frame["run_id"] == run_id].drop(columns="run_id").reset_index(drop=True)


def _customers(published, run_id):
    return int(published["runs"].set_index("run_id").loc[run_id, "customers"])


@check("latest_run")
def _(result, published):
    runs = published["runs"].sort_values("published_at")
    newest = runs.iloc[-1]
    assert len(result) == 1 and result["run_id"].iloc[0] == newest["run_id"]
    row = result.iloc[0]
    for column in result.columns:
        assert row[column] == newest[column], column
    assert row["customers"] == len(_of_run(published, "customer_features", row["run_id"]))
    rows, customers = INPUTS[row["input_uri"].rsplit("/", 1)[-1]]
    assert (row["rows_read"], row["rows_quarantined"], row["rows_excluded"], row["customers"]) == (rows, 0, 0, customers)


@check("win_back")
def _(result, published):
    from cdnow.domain.churn import RISK_BAND_THRESHOLDS

    run_id = _latest(published, "churn_scores", "customer_value", "customer_segments")
    features = _of_run(published, "customer_features", run_id)
    customers = (features
                 .merge(_of_run(published, "churn_scores", run_id), on="customer_id")
                 .merge(_of_run(published, "customer_value", run_id), on="customer_id")
                 .merge(_of_run(published, "customer_segments", run_id), on="customer_id")
                 .set_index("customer_id"))
    spend = features["monetary_total"]
    share_spending_more = {c: (spend > m).mean() for c, m in customers["monetary_total"].items()}
    high = customers[customers["risk_band"] == "high"]
    assert 0 < len(result) <= 500 and result["customer_id"].is_unique
    assert result["monetary_total"].is_monotonic_decreasing
    for row in result.itertuples():
        expected = customers.loc[row.customer_id]
        assert expected["risk_band"] == "high" and row.churn_probability >= RISK_BAND_THRESHOLDS["high"]
        assert share_spending_more[row.customer_id] < 0.10, "a top-10% spender"
        for column in ("segment_name", "churn_probability", "top_driver_1", "monetary_total", "purchase_days",
                       "last_purchase_date", "recency_days", "p_alive", "clv_12m"):
            assert getattr(row, column) == expected[column], (row.customer_id, column)
    # and none left out: every high-risk customer well inside the top decile is listed
    clearly_top = {c for c in high.index if share_spending_more[c] + (spend == customers.loc[c, "monetary_total"]).mean() <= 0.09}
    assert clearly_top and clearly_top <= set(result["customer_id"])


@check("segment_profiles_latest")
def _(result, published):
    run_id = _latest(published, "segment_profiles")
    profiles = _of_run(published, "segment_profiles", run_id).sort_values("segment_rank")
    pd.testing.assert_frame_equal(result, profiles[list(result.columns)].reset_index(drop=True), check_dtype=False)
    assert result["customers"].sum() == _customers(published, run_id) == len(_of_run(published, "customer_segments", run_id))
    assert result["customer_share"].sum() == pytest.approx(1.0)
    assert result["revenue"].sum() == pytest.approx(_of_run(published, "customer_features", run_id)["monetary_total"].sum())


@check("segment_sizes_over_runs")
def _(result, published):
    profiles, runs = published["segment_profiles"], published["runs"]
    assert len(result) == len(profiles)
    assert result["published_at"].is_monotonic_increasing
    assert set(result["run_id"]) == set(runs["run_id"])
    for run_id, rows in result.groupby("run_id"):
        assert rows["customers"].sum() == _customers(published, run_id), run_id
        assert rows["customer_share"].sum() == pytest.approx(1.0) and rows["revenue_share"].sum() == pytest.approx(1.0)
        assert sorted(rows["segment_name"]) == sorted(_of_run(published, "segment_profiles", run_id)["segment_name"])


@check("clv_by_segment")
def _(result, published):
    run_id = _latest(published, "customer_value", "customer_segments")
    value = _of_run(published, "customer_value", run_id).merge(
        _of_run(published, "customer_segments", run_id), on="customer_id")
    assert result["customers"].sum() == len(value) == _customers(published, run_id)
    assert result["clv_12m_total"].is_monotonic_decreasing
    for row in result.itertuples():
        clv = value.loc[value["segment_name"] == row.segment_name, "clv_12m"]
        members = value[value["segment_name"] == row.segment_name]
        assert row.customers == len(members)
        assert row.clv_12m_total == pytest.approx(clv.sum()) and row.clv_12m_mean == pytest.approx(clv.mean())
        assert row.p_alive_mean == pytest.approx(members["p_alive"].mean())
        assert row.expected_purchases_365d == pytest.approx(members["expected_purchases_365d"].sum())
        # a median is one of the segment's values with half of them at or below it, half at or above
        assert row.clv_12m_median in set(clv)
        assert (clv <= row.clv_12m_median).mean() >= 0.5 and (clv >= row.clv_12m_median).mean() >= 0.5


@check("risk_by_segment")
def _(result, published):
    from cdnow.domain.churn import RISK_BAND_THRESHOLDS, RISK_BANDS

    run_id = _latest(published, "churn_scores", "customer_segments")
    scores = _of_run(published, "churn_scores", run_id).merge(
        _of_run(published, "customer_segments", run_id), on="customer_id")
    expected = scores.groupby(["segment_name", "risk_band"])["churn_probability"].agg(["size", "mean"])
    assert result.set_index(["segment_name", "risk_band"])["customers"].to_dict() == expected["size"].to_dict()
    for row in result.itertuples():
        assert row.mean_churn_probability == pytest.approx(expected.loc[(row.segment_name, row.risk_band), "mean"])
    assert result["customers"].sum() == _customers(published, run_id)
    assert list(result[["segment_name", "risk_band"]].itertuples(index=False)) == sorted(
        result[["segment_name", "risk_band"]].itertuples(index=False))
    bounds = {"low": (0.0, RISK_BAND_THRESHOLDS["medium"]), "medium": (RISK_BAND_THRESHOLDS["medium"], RISK_BAND_THRESHOLDS["high"]),
              "high": (RISK_BAND_THRESHOLDS["high"], 1.0)}
    assert set(bounds) == set(RISK_BANDS)
    for row in result.itertuples():
        low, high = bounds[row.risk_band]
        assert low <= row.mean_churn_probability <= high, (row.segment_name, row.risk_band)


def _expected_migration(published):
    """From/to pairs recounted from the two runs' customer_segments (an outer join, as the
    matrix counts a customer missing from either run)."""
    from cdnow.domain.segments import NOT_IN_CURRENT, NOT_IN_PREVIOUS

    run_id = _latest(published, "segment_migration")
    runs = published["runs"].sort_values("published_at")["run_id"].tolist()
    previous = runs[runs.index(run_id) - 1]
    both = _of_run(published, "customer_segments", previous).merge(
        _of_run(published, "customer_segments", run_id), on="customer_id", how="outer", suffixes=("_from", "_to"))
    pairs = both.fillna({"segment_name_from": NOT_IN_PREVIOUS, "segment_name_to": NOT_IN_CURRENT}).groupby(
        ["segment_name_from", "segment_name_to"]).size()
    return previous, {key: int(n) for key, n in pairs.items()}, len(both)


@check("migration_matrix")
def _(result, published):
    from cdnow.domain.segments import NOT_IN_CURRENT

    previous, pairs, union = _expected_migration(published)
    assert set(result["previous_run_id"]) == {previous}
    assert {(r.from_segment, r.to_segment): r.customers for r in result.itertuples()} == pairs
    # the second run's input is the first's without some customers: the matrix counts them all,
    # the ones who left going nowhere
    assert result["customers"].sum() == union == SAMPLE_CUSTOMERS
    left = result.loc[result["to_segment"] == NOT_IN_CURRENT, "customers"].sum()
    assert left == SAMPLE_CUSTOMERS - INPUTS["cdnow_sample_week2.txt"][1]
    for from_segment, rows in result.groupby("from_segment"):
        assert rows["share_of_from_segment"].sum() == pytest.approx(1.0)
        assert rows["share_of_from_segment"].tolist() == pytest.approx((rows["customers"] / rows["customers"].sum()).tolist())
        assert rows["customers"].is_monotonic_decreasing
    assert result["from_segment"].is_monotonic_increasing


@check("migration_matrix_wide")
def _(result, published):
    _, pairs, union = _expected_migration(published)
    wide = {(r.from_segment, to): n for r in result.itertuples() for to, n in r.customers_by_to_segment.items()}
    assert wide == pairs and sum(wide.values()) == union
    assert result["from_segment"].is_unique and result["from_segment"].is_monotonic_increasing


@check("churn_model_over_runs")
def _(result, published):
    metrics = published["model_metrics"]
    churn = metrics[metrics["model"] == "churn"].set_index(["run_id", "metric"])["value"]
    runs = published["runs"].sort_values("published_at")
    assert result["run_id"].tolist() == [r for r in runs["run_id"] if r in churn.index.get_level_values(0)]
    assert len(result) == len(runs)
    for row in result.itertuples():
        for column, metric in (("roc_auc", "roc_auc"), ("recency_rule_roc_auc", "recency_baseline_roc_auc"),
                               ("pr_auc", "pr_auc"), ("share_high_risk", "share_high_risk")):
            assert getattr(row, column) == churn[(row.run_id, metric)], (row.run_id, column)
        assert 0.5 < row.roc_auc <= 1 and 0 < row.share_high_risk < 1


@check("data_quality_over_runs")
def _(result, published):
    runs = published["runs"].sort_values("published_at", ascending=False).reset_index(drop=True)
    assert result["run_id"].tolist() == runs["run_id"].tolist()
    for column in ("input_uri", "rows_read", "rows_excluded", "rows_quarantined"):
        assert result[column].tolist() == runs[column].tolist(), column
    assert result["quarantined_share"].tolist() == pytest.approx((runs["rows_quarantined"] / runs["rows_read"]).tolist())
    for row in result.itertuples():
        assert row.rows_read == INPUTS[row.input_uri.rsplit("/", 1)[-1]][0]


def test_every_query_of_the_docs_is_checked_and_every_table_queried(athena):
    assert len(QUERIES) >= 8 and set(QUERIES) == set(CHECKS)
    tables = {row[0] for row in athena.sql(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{DATABASE}'").fetchall()}
    assert {"runs", "segment_migration", "customer_value"} <= tables
    queried = {table for sql in QUERIES.values() for table in re.findall(rf"\b{DATABASE}\.(\w+)", sql)}
    assert queried == tables, "every published table has a query"


def test_the_tables_read_as_athena_reads_them(athena, published):
    """The DuckDB views hold each run's rows where the catalog's partitions point, as many as
    the pipeline's own reader finds there, with the catalog's columns, partition key last."""
    glue = boto3.client("glue")
    for name, frame in published.items():
        counted = dict(athena.sql(f"SELECT run_id, count(*) FROM {DATABASE}.{name} GROUP BY run_id").fetchall())
        assert counted == frame.groupby("run_id").size().to_dict(), name
        table = glue.get_table(DatabaseName=DATABASE, Name=name)["Table"]
        columns = [c["Name"] for c in table["StorageDescriptor"]["Columns"] + table["PartitionKeys"]]
        assert athena.sql(f"SELECT * FROM {DATABASE}.{name}").columns == columns


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_query_runs_on_the_published_tables(name, athena, published):
    result = athena_sql.run(athena, QUERIES[name])
    assert len(result) > 0, name
    CHECKS[name](result, published)


def test_the_dialect_differences_are_athenas(tmp_path):
    """Each difference athena_sql.py handles, shown on DuckDB: the answer is Athena's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    con = athena_sql.session(DATABASE)
    assert con.sql("SELECT 7 / 2, -7 / 2, CAST(7 AS double) / 2").fetchall() == [(3, -3, 3.5)]
    assert con.sql("SELECT approx_percentile(x, 0.9) FROM range(100) AS t(x)").fetchall() == [(89,)]
    assert con.sql("SELECT map_agg(k, v) FROM (VALUES ('a', 1), ('b', 2)) AS t(k, v)").fetchall() == [({"a": 1, "b": 2},)]
    assert con.sql("SELECT x FROM (VALUES (1), (NULL), (2)) AS t(x) ORDER BY x DESC").fetchall() == [(2,), (1,), (None,)]
    assert athena_sql.run(con, "SELECT contains(split('a,bc', ','), 'b') AS c")["c"].tolist() == [False]
    for refused in ("SELECT contains('abc', 'b')",
                    "SELECT date_diff('day', TIMESTAMP '2020-01-01 23:00', TIMESTAMP '2020-01-02 01:00')"):
        with pytest.raises(athena_sql.UnsupportedAthenaSql):
            athena_sql.run(con, refused)

    pq.write_table(pa.table({"T": [1, 2], "name": ["x", "y"]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"T": [3]}), tmp_path / "b.parquet")
    athena_sql.create_view(con, DATABASE, "t1", [("name", "string"), ("t", "bigint"), ("absent", "double")],
                           [("run_id", "string")], [athena_sql.Partition(["r1"], [tmp_path / "a.parquet"]),
                                                    athena_sql.Partition(["r2"], [tmp_path / "b.parquet"]),
                                                    athena_sql.Partition(["r3"], [])])
    assert con.sql(f"SELECT * FROM {DATABASE}.t1 ORDER BY t").fetchall() == [
        ("x", 1, None, "r1"), ("y", 2, None, "r1"), (None, 3, None, "r2")]
    with pytest.raises(athena_sql.TypeMismatch, match="t2.name"):
        athena_sql.create_view(con, DATABASE, "t2", [("name", "bigint")], [], [athena_sql.Partition([], [tmp_path / "a.parquet"])])


def test_queries_split_by_name():
    text = "-- header; with a semicolon\n-- name: a\n-- a comment; too\nSELECT 1\n;\n\n-- name: b\nSELECT 'x;y' AS s;\n"
    with pytest.raises(ValueError, match="query b"):
        athena_sql.split_queries(text)
    assert athena_sql.split_queries(text.replace("'x;y'", "'xy'")) == {"a": "SELECT 1", "b": "SELECT 'xy' AS s"}
    with pytest.raises(ValueError, match="two queries named a"):
        athena_sql.split_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_a_rerun_replaces_its_folder(root, cli, two_runs, tmp_path):
    """Issue 20, case 8: a rerun's folder holds only that run's files (files were overwritten and
    anything else already there stayed)."""
    out, _, _ = two_runs
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and p.name.startswith("cdnow-sample-") and "week2" not in p.name]
    stray = run_dir / "charts" / "from-an-older-version.svg"
    stray.write_text("<svg/>")
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*") if p != stray)
    path = tmp_path / "cdnow_sample.txt"
    shutil.copy(root / "data" / "CDNOW_sample.txt", path)
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli("run", "--stack", STACK, "--input", str(path), "--out", str(out)) == 0
    assert not stray.exists()
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before
