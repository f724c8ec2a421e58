"""Benchmark: the Glue Transform job's throughput in local Spark (the offline stack's session).

    .venv/bin/python bench/bench_transform.py [--rows 10000000] [--module path/to/cdnow_transform.py]

First the CDNOW master file (data/CDNOW_master.txt, 70k rows), in a process of its own: its
first ``transform`` in a fresh SparkSession (what every offline pipeline run pays) and a second
one. Then writes a CDNOW master-format text file of about ``--rows`` rows (master resampled:
customers drawn with replacement under new ids, in date order) and runs ``transform`` on it twice
in the same SparkSession (local[2], as offline): cold (the JVM's first job, code generation) and
warm. Prints seconds and rows per second. ``--module`` times another copy of the job instead;
``--compare`` times another copy after it in the same run, on the same file (e.g. the job before
a change, in its own SparkSession: a fresh JVM each, so the second is cold as well). Each line
notes the machine's load average. On Glue, G.1X workers run the same code spread over executors.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "glue"))

from cdnow_offline import spark  # noqa: E402
from cdnow_offline.datasets import read_cdnow, resample_customers  # noqa: E402

MASTER = ROOT / "data" / "CDNOW_master.txt"


def load_transform(module: str | None):
    """``transform`` of glue/cdnow_transform.py, or of the copy at ``module``."""
    if module is None:
        from cdnow_transform import transform

        return transform
    spec = importlib.util.spec_from_file_location("cdnow_transform_under_test", module)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    spec.loader.exec_module(loaded)
    return loaded.transform


def time_runs(transform, session, source: Path, work: Path, runs: Sequence[str], rows: int | None = None,
              label: str = "job") -> None:
    for attempt in runs:
        out = work / attempt
        started = time.perf_counter()
        summary = transform(session, str(source), str(out / "transactions"), str(out / "quarantine"),
                            run_id="bench", source_uri=f"s3://raw/incoming/{source.name}")
        seconds = time.perf_counter() - started
        assert summary["read"] == summary["accepted"] == (rows or summary["read"]), summary
        load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
        print(f"| {label} | {source.name} | {attempt} | {summary['read']:,} | {seconds:.1f} | "
              f"{summary['read'] / seconds / 1e6:.2f} | {load} |", flush=True)


def write_master_format(path: Path, rows: int) -> int:
    master = read_cdnow()
    log = resample_customers(master, rows / len(master), seed=0)
    with path.open("w", encoding="utf-8") as out:
        out.writelines(f" {c} {d:%Y%m%d} {q:2d} {a:8.2f}\n" for c, d, q, a in zip(
            log["customer_id"], log["order_date"], log["quantity"], log["amount"]))
    return len(log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="0: the master file only")
    parser.add_argument("--module", help="another copy of glue/cdnow_transform.py to time")
    parser.add_argument("--compare", help="a copy of the job to time after it, on the same file")
    parser.add_argument("--master-only", action="store_true", help=argparse.SUPPRESS)  # the child processes
    parser.add_argument("--input", help=argparse.SUPPRESS)  # the child process timing the large file
    parser.add_argument("--label", default="job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    transform = load_transform(args.module)

    work = Path(tempfile.mkdtemp(prefix="cdnow-bench-transform-"))
    try:
        if args.master_only:
            session = spark.session()  # the JVM up, no job run yet: as a pipeline run finds it
            time_runs(transform, session, MASTER, work, ("first", "second"), label=args.label)
            return
        if args.input:
            source = Path(args.input)
            time_runs(transform, spark.session(), source, work, ("cold", "warm"), args.rows, label=args.label)
            return
        print("| job | file | run | rows | seconds | M rows/s | load |")
        print("|---|---|---|---:|---:|---:|---:|", flush=True)
        # A fresh session of its own for each job and file, one heavy process at a time.
        jobs = [("job", args.module), *([("compare", args.compare)] if args.compare else [])]

        def child(label: str, module: str | None, *extra: str) -> None:
            subprocess.run([sys.executable, __file__, "--label", label, *extra,
                            *(["--module", module] if module else [])], check=True)

        for label, module in jobs:
            child(label, module, "--master-only")
        if not args.rows:
            return
        started = time.perf_counter()
        source = work / "transactions.txt"
        rows = write_master_format(source, args.rows)
        print(f"{rows:,} rows, {source.stat().st_size / 1e6:,.0f} MB written in {time.perf_counter() - started:.0f} s",
              flush=True)
        for label, module in jobs:
            child(label, module, "--input", str(source), "--rows", str(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
