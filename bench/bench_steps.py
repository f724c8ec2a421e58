"""Benchmark: wall time and peak memory of each Lambda step, at several scales.

    .venv/bin/python bench/bench_steps.py [--scales 1 10 100]

For each scale, CDNOW master resampled that many times (customers drawn with replacement under
new ids) is written as the Transform job writes it (parquet grouped by customer, with its
transform.json) to an S3 emulator running as its own process (moto_server, so its memory is not
counted), and each step's pipeline function runs in a fresh Python process of its own, as a
Lambda invocation would: Features, then Segment, Churn and Value, then Publish. A step's figure
is that process's peak resident set (wait4's ru_maxrss) and wall time, imports included.
Target: every step within 3 GB at x100 (the functions have 3,008 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench-curated"
DATABASE = "cdnow_bench"
LAMBDA_MEMORY_MB = 3008

# What each step runs: the pipeline function its handler calls, on the run of the scale.
STEPS = {
    "Features": "pipeline.build_features(run)",
    "Segment": "pipeline.segment(run, database=DATABASE)",
    "Churn": "pipeline.churn(run, analysis_date=features['analysis_date'])",
    "Value": "pipeline.value(run, analysis_date=features['analysis_date'])",
    "Publish": "pipeline.publish(run, database=DATABASE, features=features)",
}
STEP_CODE = """
import json, sys
from cdnow import pipeline
run, features, DATABASE = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
result = {call}
print(json.dumps(result, default=str) if isinstance(result, dict) else "{{}}")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(port: int) -> dict[str, str]:
    return {**os.environ, "AWS_ENDPOINT_URL": f"http://localhost:{port}", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/shared", "local"))}


def prepare(scale: float, run: dict) -> int:
    """The Transform job's output for the scale, in the emulator's S3."""
    import awswrangler as wr
    import boto3

    from cdnow.runs import RunLayout
    from cdnow.storage import write_json
    from cdnow_offline.datasets import read_cdnow, resample_customers

    log = resample_customers(read_cdnow(), scale, seed=0)
    log = log.sort_values(["customer_id", "order_date"], kind="stable", ignore_index=True)
    log["line_number"] = range(1, len(log) + 1)
    layout = RunLayout(BUCKET, run["run_id"])
    wr.s3.to_parquet(log, path=layout.transactions, dataset=True, mode="overwrite", index=False,
                     max_rows_by_file=2_000_000)
    write_json(layout.transform_summary, {"read": len(log), "accepted": len(log), "quarantined": 0,
                                          "by_reason": {}, "zero_amount_rows": 0, "identical_rows": 0,
                                          "format": "parquet"})
    if DATABASE not in wr.catalog.databases()["Database"].tolist():
        boto3.client("glue").create_database(DatabaseInput={"Name": DATABASE})
    return len(log)


def run_step(name: str, run: dict, features: dict, env: dict) -> tuple[float, float, dict]:
    """(seconds, peak MB, result) of one step in a process of its own."""
    code = STEP_CODE.format(call=STEPS[name])
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-c", code, json.dumps(run), json.dumps(features), DATABASE],
                                   env=env, stdout=out, stderr=err)
        # wait4, not wait: the rusage of this one child (ru_maxrss in KiB on Linux).
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise RuntimeError(f"{name} failed:\n{err.read().decode()[-3000:]}")
        lines = out.read().decode().strip().splitlines()
    return seconds, usage.ru_maxrss / 1024, json.loads(lines[-1] if lines else "{}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 10, 100])
    args = parser.parse_args()

    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = environment(port)
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        rows_table = []
        for scale in args.scales:
            run_id = f"bench-x{scale:g}"
            run = {"run_id": run_id, "curated_bucket": BUCKET, "input_uri": f"s3://raw/incoming/{run_id}.txt",
                   "input_version": "bench", "churn_horizon_days": 180, "analysis_date": None}
            rows = prepare(scale, run)
            features = {}
            for name in STEPS:
                seconds, peak_mb, result = run_step(name, run, features, env)
                if name == "Features":
                    features = result
                rows_table.append((scale, rows, name, seconds, peak_mb))
                print(f"x{scale:g} {name:<9} {seconds:7.1f} s  peak {peak_mb:7.0f} MB", flush=True)
        print(f"\n| scale | rows | step | seconds | peak MB | share of {LAMBDA_MEMORY_MB} MB |")
        print("|---|---:|---|---:|---:|---:|")
        for scale, rows, name, seconds, peak_mb in rows_table:
            print(f"| x{scale:g} | {rows:,} | {name} | {seconds:.1f} | {peak_mb:,.0f} | {peak_mb / LAMBDA_MEMORY_MB:.0%} |")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
