"""Benchmark: the Glue Transform job's throughput in local Spark (the offline stack's session).

    .venv/bin/python bench/bench_transform.py [--rows 10000000]

Writes a CDNOW master-format text file of about ``--rows`` rows (master resampled: customers
drawn with replacement under new ids, in date order), then runs ``glue/cdnow_transform.py``'s
``transform`` on it twice in the same SparkSession (local[2], as offline): cold (the JVM's first
job, code generation) and warm. Prints rows per second. On Glue, G.1X workers run the same code
spread over executors.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "glue"))

from cdnow_offline import spark  # noqa: E402
from cdnow_offline.datasets import read_cdnow, resample_customers  # noqa: E402
from cdnow_transform import transform  # noqa: E402


def write_master_format(path: Path, rows: int) -> int:
    master = read_cdnow()
    log = resample_customers(master, rows / len(master), seed=0)
    with path.open("w", encoding="utf-8") as out:
        out.writelines(f" {c} {d:%Y%m%d} {q:2d} {a:8.2f}\n" for c, d, q, a in zip(
            log["customer_id"], log["order_date"], log["quantity"], log["amount"]))
    return len(log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cdnow-bench-transform-"))
    try:
        started = time.perf_counter()
        source = work / "transactions.txt"
        rows = write_master_format(source, args.rows)
        print(f"{rows:,} rows, {source.stat().st_size / 1e6:,.0f} MB written in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        session = spark.session()
        print(f"SparkSession up in {time.perf_counter() - started:.1f} s")
        print("| run | seconds | M rows/s |")
        print("|---|---:|---:|")
        for attempt in ("cold", "warm"):
            out = work / attempt
            started = time.perf_counter()
            summary = transform(session, str(source), str(out / "transactions"), str(out / "quarantine"),
                                run_id="bench", source_uri="s3://raw/incoming/transactions.txt")
            seconds = time.perf_counter() - started
            assert summary["read"] == summary["accepted"] == rows, summary
            print(f"| {attempt} | {seconds:.1f} | {rows / seconds / 1e6:.2f} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
