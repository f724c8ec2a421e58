"""`cdnow run/runs/show/report --stack NAME` against a stack the offline provisioner made.

The CLI reads a deployed stack's outputs from CloudFormation; here it gets the emulated stack's
outputs instead (the one thing that differs), so every other call is the one it makes on AWS:
upload under incoming/, find the execution the upload started, follow it through Step
Functions' history, read the runs table, run_summary.json and reports/ of the curated bucket.
Two runs are published, so the second has a segment migration and every table exists for the
check of docs/queries.sql against the catalog.
"""

import contextlib
import io
import json
import re
import shutil
import urllib.request

import boto3
import pytest
from sql_references import Query, check_query, split_queries

from cdnow_offline.cli import main
from cdnow_offline.emulator import Emulator
from cdnow_offline.remote import StackNotFound

STACK = "cdnow-e2e"
DATABASE = "cdnow_analytics"
SAMPLE_CUSTOMERS = 2_357


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
    """The sample, then the same customers a week later under another name (a second run)."""
    folder = tmp_path_factory.mktemp("inputs")
    first, second = folder / "cdnow_sample.txt", folder / "cdnow_sample_week2.txt"
    shutil.copy(root / "data" / "CDNOW_sample.txt", first)
    shutil.copy(root / "data" / "CDNOW_sample.txt", second)
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
    for summary in (first, second):
        folder = out / summary["run_id"]
        assert summary["customers"] == SAMPLE_CUSTOMERS
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
    assert f"Customers: {SAMPLE_CUSTOMERS:,}" in text and "changed segment since run" in text
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


def test_every_query_names_only_published_tables_and_columns(two_runs, root, stack):
    """Athena cannot run offline: the queries are checked against the catalog real runs made."""
    import awswrangler as wr

    glue = boto3.client("glue")
    schemas = {}
    for table in glue.get_tables(DatabaseName=DATABASE)["TableList"]:
        columns = table["StorageDescriptor"]["Columns"] + table.get("PartitionKeys", [])
        schemas[table["Name"]] = {column["Name"].lower() for column in columns}
    assert {"runs", "segment_migration", "customer_value"} <= set(schemas)

    queries = split_queries((root / "docs" / "queries.sql").read_text())
    assert len(queries) >= 8 and len({q.name for q in queries}) == len(queries)
    used_tables = set()
    for query in queries:
        for table, column, value in check_query(query, DATABASE, schemas):
            values = set(wr.s3.read_parquet_table(table=table, database=DATABASE, columns=[column])[column])
            if value not in values:
                query.problems.append(f"{table}.{column} never holds {value!r}")
        assert query.problems == [], query.name
        used_tables |= set(re.findall(rf"{DATABASE}\.(\w+)", query.sql))
    assert used_tables == set(schemas), "every published table has a query"


def test_the_reference_check_catches_what_it_is_for():
    schemas = {"runs": {"run_id", "published_at"}, "churn_scores": {"run_id", "risk_band"}}
    sql = ("SELECT r.run_id, r.publishd_at, risk_band FROM cdnow_analytics.runs AS r "
           "JOIN cdnow_analytics.churn_scores AS c ON c.run_id = r.run_id JOIN cdnow_analytics.nope AS n "
           "ON n.x = c.run_id WHERE c.risk_band = 'high' AND q.run_id = ''")
    query = Query("bad", sql)
    literals = check_query(query, DATABASE, schemas)
    assert literals == [("churn_scores", "risk_band", "high")]
    joined = " | ".join(query.problems)
    for expected in ("r.publishd_at", "bare word 'risk_band'", "no table cdnow_analytics.nope", "q is no alias"):
        assert expected in joined, expected
    assert split_queries("-- name: a\n-- a comment; with a semicolon\nSELECT 1;\n-- name: b\nSELECT 2;") == [
        Query("a", "SELECT 1"), Query("b", "SELECT 2")]


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
