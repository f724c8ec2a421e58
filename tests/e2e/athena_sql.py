"""Run the Athena queries of docs/queries.sql offline: DuckDB over the parquet files that the
Glue catalog's partitions point at, the one place where Athena's dialect and DuckDB's meet.

Athena does not run offline, DuckDB does; the queries run as they are written (the text sent to
DuckDB is the text a marketer pastes into Athena), and every difference between the two that
they meet is handled here, in the session, never by editing a query:

Tables, read the way Athena reads them
  - ``database.table`` names: a DuckDB schema named like the Glue database holds one view per
    catalog table, so the two-part names resolve unchanged.
  - What a table holds: Athena reads the files under each *partition's* location in the
    catalog (not the table's location: a run's files staged there but not yet pointed at by
    Publish are invisible), subfolders included, skipping names that start with ``_`` or ``.``
    (Hive's hidden files). The files are copied from the (emulated) S3 to a local folder, since
    DuckDB's S3 reader is an extension it would download.
  - Partition keys: their values come from the catalog partition (``Values``), not from the path,
    and they are the table's last columns, as in Athena's ``SELECT *``.
  - Columns: the catalog's, in its order, with its types (schema on read); a file's column is
    found by name ignoring case (the catalog holds ``t``, the file ``T``) and a column a file
    lacks reads as NULL. A file column whose type Athena could not read as the catalog's type
    is an error here too (``TypeMismatch``) rather than a silent cast.

Functions and semantics
  - ``approx_percentile(x, p)``: DuckDB has no such function; it is a macro for
    ``quantile_disc(x, p)``, the exact value at that rank, of which Athena's answer is an
    approximation (a value within about 1% of the rank, from its quantile digest): a test
    of a query using it checks ranks, not one exact value, when the rank is the point.
  - ``map_agg(key, value)``: DuckDB has no such aggregate; it is a macro building the same
    MAP from the pairs (``map_from_entries(list(struct_pack(k := key, v := value)))``). A
    duplicate key is an error here, where Athena keeps one of the values.
  - ``/`` between integers: integer division truncating toward zero in Athena; DuckDB divides
    to a double unless ``integer_division`` is set, which it is, so a query that forgets its
    ``CAST(... AS double)`` gives the same wrong answer here as on Athena.
  - NULL ordering: Athena sorts NULLs last whether ascending or descending; DuckDB's default
    is the same, set explicitly so a change of DuckDB's default cannot hide.
  - ``contains(split(s, ','), x)``, ``nullif``, ``CAST``, window functions, ``count``/``sum``/
    ``avg``, ``ORDER BY`` an output name: the same in both, nothing to do.

Refused by ``run`` (``UnsupportedAthenaSql``): constructs both engines accept with different
meanings, so a query that uses one needs a translation here first, not a wrong answer:
  - ``date_diff``: Athena counts whole units elapsed, DuckDB the unit boundaries crossed.
  - ``contains`` of anything but ``split(...)``: Athena's takes an array (a string is an error
    there), DuckDB's is also a substring test on strings.
Anything else Athena has and DuckDB lacks (``date_add(unit, n, t)``, ``approx_distinct``, …)
fails loudly in DuckDB, which is the signal to add it here.

Not modelled (they do not change a result): Athena's timestamps are millisecond precision,
DuckDB's microsecond; ``sum`` of bigints is a HUGEINT in DuckDB, a bigint in Athena.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import boto3
import duckdb

# Athena (Hive DDL) type of a catalog column -> the DuckDB type it reads as.
_ATHENA_TYPES = {
    "string": "VARCHAR", "varchar": "VARCHAR", "char": "VARCHAR",
    "bigint": "BIGINT", "int": "INTEGER", "integer": "INTEGER", "smallint": "SMALLINT", "tinyint": "TINYINT",
    "double": "DOUBLE", "float": "FLOAT", "real": "FLOAT",
    "boolean": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMP",
}
# Parquet types (as DuckDB names them) Athena reads as a wider catalog type.
_READS_AS = {
    "TIMESTAMP": {"TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"},
    "BIGINT": {"BIGINT", "INTEGER", "SMALLINT", "TINYINT"},
    "INTEGER": {"INTEGER", "SMALLINT", "TINYINT"},
    "DOUBLE": {"DOUBLE", "FLOAT"},
}

_SETUP = (
    "SET integer_division = true",
    "SET default_null_order = 'NULLS_LAST'",
    "CREATE MACRO approx_percentile(x, p) AS quantile_disc(x, p)",
    "CREATE MACRO map_agg(k, v) AS map_from_entries(list(struct_pack(k := k, v := v)))",
)
_REFUSED = {
    re.compile(r"\bdate_diff\s*\(", re.IGNORECASE): "date_diff counts differently in DuckDB",
    re.compile(r"\bcontains\s*\(\s*(?!split\s*\()", re.IGNORECASE):
        "contains needs an array on Athena (DuckDB would test a substring)",
}
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


class UnsupportedAthenaSql(ValueError):
    """A construct that would run in DuckDB with a meaning other than Athena's."""


class TypeMismatch(TypeError):
    """A parquet column Athena could not read as the catalog column's type."""


def split_queries(text: str) -> dict[str, str]:
    """The statements of a file of queries, by the ``-- name: NAME`` line before each (the text
    up to the next name line holds exactly one statement, ended by ``;``)."""
    marks = list(_NAME.finditer(text))
    queries = {}
    for mark, following in zip(marks, marks[1:] + [None]):
        chunk = text[mark.end():following.start() if following else len(text)]
        sql = "\n".join(line for line in chunk.splitlines() if not line.lstrip().startswith("--")).strip()
        if sql.count(";") != 1 or not sql.endswith(";"):
            raise ValueError(f"query {mark.group(1)}: expected one statement ending with ';'")
        if mark.group(1) in queries:
            raise ValueError(f"two queries named {mark.group(1)}")
        queries[mark.group(1)] = sql[:-1].rstrip()
    return queries


@dataclass
class Partition:
    values: list[str]
    files: list[Path]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _duck_type(athena_type: str) -> str:
    base = athena_type.strip().lower()
    if base.startswith("decimal"):
        return base.upper()
    if base not in _ATHENA_TYPES:
        raise TypeMismatch(f"catalog type {athena_type!r} has no DuckDB equivalent here yet")
    return _ATHENA_TYPES[base]


def _download(s3, location: str, folder: Path) -> list[Path]:
    """Every file Athena would read under ``location`` (recursively, hidden names skipped)."""
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    files = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix):]
            if not relative or relative.endswith("/") or any(p[:1] in "_." for p in relative.split("/")):
                continue
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(path))
            files.append(path)
    return sorted(files)


def create_view(con: duckdb.DuckDBPyConnection, database: str, table: str, columns: list[tuple[str, str]],
                keys: list[tuple[str, str]], partitions: list[Partition]) -> None:
    """The view ``database.table`` over local parquet files: ``columns`` and partition ``keys``
    as the catalog has them (name, Athena type), one ``Partition`` per catalog partition."""
    selects = []
    for partition in partitions:
        if not partition.files:
            continue
        source = f"read_parquet([{', '.join(_quote(str(p)) for p in partition.files)}], union_by_name = true)"
        found = {name.lower(): (name, kind) for name, kind, *_ in con.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        items = []
        for name, athena_type in columns:
            wanted = _duck_type(athena_type)
            if name.lower() not in found:
                items.append(f"CAST(NULL AS {wanted}) AS {_ident(name)}")
                continue
            file_name, file_type = found[name.lower()]
            if file_type != wanted and file_type not in _READS_AS.get(wanted, ()):
                raise TypeMismatch(f"{table}.{name}: the catalog says {athena_type}, a file of "
                                   f"partition {partition.values} holds {file_type}")
            items.append(f"CAST({_ident(file_name)} AS {wanted}) AS {_ident(name)}")
        for (name, athena_type), value in zip(keys, partition.values):
            items.append(f"CAST({_quote(value)} AS {_duck_type(athena_type)}) AS {_ident(name)}")
        selects.append(f"SELECT {', '.join(items)} FROM {source}")
    if not selects:  # no partition holds a file: an empty table, as Athena shows it
        items = [f"CAST(NULL AS {_duck_type(t)}) AS {_ident(n)}" for n, t in columns + keys]
        selects.append(f"SELECT {', '.join(items)} WHERE false")
    con.execute(f"CREATE VIEW {_ident(database)}.{_ident(table)} AS\n" + "\nUNION ALL\n".join(selects))


def session(database: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB session with Athena's semantics above and an empty schema ``database``."""
    con = duckdb.connect()
    for statement in _SETUP:
        con.execute(statement)
    con.execute(f"CREATE SCHEMA {_ident(database)}")
    return con


def connect(database: str, folder: Path) -> duckdb.DuckDBPyConnection:
    """A session holding every table of the Glue ``database`` (the catalog and S3 that boto3
    reaches from the environment) as Athena would read it; the files are copied into ``folder``."""
    glue, s3 = boto3.client("glue"), boto3.client("s3")
    con = session(database)
    for page in glue.get_paginator("get_tables").paginate(DatabaseName=database):
        for table in page["TableList"]:
            name = table["Name"]
            columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
            keys = [(c["Name"], c["Type"]) for c in table.get("PartitionKeys", [])]
            if keys:
                found = [p for page_ in glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=name)
                         for p in page_["Partitions"]]
                partitions = [Partition(p["Values"], _download(s3, p["StorageDescriptor"]["Location"], folder / name / str(i)))
                              for i, p in enumerate(found)]
            else:
                partitions = [Partition([], _download(s3, table["StorageDescriptor"]["Location"], folder / name))]
            create_view(con, database, name, columns, keys, partitions)
    return con


def run(con: duckdb.DuckDBPyConnection, sql: str):
    """The query's result as a pandas DataFrame, refusing what would mean something else here."""
    for pattern, reason in _REFUSED.items():
        if pattern.search(sql):
            raise UnsupportedAthenaSql(reason)
    return con.sql(sql).df()
