"""Benchmark: wall time and peak memory of each Lambda step, at several scales.

    .venv/bin/python bench/bench_steps.py [--scales 1 10 100]

For each scale, CDNOW master resampled that many times (customers drawn with replacement under
new ids) is written as the Transform job writes it (parquet grouped by customer, with its
transform.json) to an S3 and Glue emulator running as its own process (moto_server, so its
memory is not counted), and each step's real handler runs in a fresh Python process of its own
with the payload the state machine gives it, as a cold Lambda invocation would: Features, then
Segment, Churn and Value, then Publish and Report. A step's figure is that process's peak
resident set (wait4's ru_maxrss) and wall time, imports included.
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

# Each step is its function's real handler (functions/<step>/app.py), invoked with the payload the
# state machine gives it (statemachine/pipeline.asl.json), in order.
STEPS = ("features", "segment", "churn", "value", "publish", "report")
STEP_CODE = """
import importlib.util, json, sys
from cdnow_offline.lambda_runner import LambdaContext
step, event = sys.argv[1], json.loads(sys.argv[2])
spec = importlib.util.spec_from_file_location("app", f"functions/{step}/app.py")
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
context = LambdaContext(function_name=f"bench-{step}", invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:bench-{step}",
                        memory_limit_in_mb=3008, timeout_s=900)
print(json.dumps(app.lambda_handler(event, context), default=str))
"""


def payload(step: str, run: dict, results: dict) -> dict:
    if step in ("features", "report"):
        return {"run": run}
    if step == "publish":
        return {"run": run, "transform": {}, "features": results["features"],
                "models": {name: results[name] for name in ("segment", "churn", "value")}}
    return {"run": run, "features": results["features"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(port: int) -> dict[str, str]:
    return {**os.environ, "AWS_ENDPOINT_URL": f"http://localhost:{port}", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "CURATED_BUCKET": BUCKET, "GLUE_DATABASE": DATABASE, "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "bench",
            "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/shared", "local"))}


PREPARE_CODE = """
import json, sys
sys.path.insert(0, "bench")
from bench_steps import prepare
print(prepare(float(sys.argv[1]), json.loads(sys.argv[2])))
"""


def prepare(scale: float, run: dict) -> int:
    """The Transform job's output for the scale, in the emulator's S3 (run in a process of its
    own: see ``staged``)."""
    import awswrangler as wr
    import boto3

    from cdnow.adapters.storage import write_json
    from cdnow.domain.runs import RunLayout
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


def staged(scale: float, run: dict, env: dict) -> int:
    """``prepare`` in a child process: this process stays small, so a step's child, which starts
    as a copy of it (fork), measures only its own peak."""
    done = subprocess.run([sys.executable, "-c", PREPARE_CODE, str(scale), json.dumps(run)],
                          env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"preparing x{scale:g} failed:\n{done.stderr[-3000:]}")
    return int(done.stdout.strip().splitlines()[-1])


def run_step(step: str, event: dict, env: dict) -> tuple[float, float, dict]:
    """(seconds, peak MB, result) of one handler invocation in a process of its own."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-c", STEP_CODE, step, json.dumps(event)],
                                   env=env, stdout=out, stderr=err, cwd=ROOT)
        # wait4, not wait: the rusage of this one child (ru_maxrss in KiB on Linux).
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise RuntimeError(f"{step} failed:\n{err.read().decode()[-3000:]}")
        lines = out.read().decode().strip().splitlines()
    return seconds, usage.ru_maxrss / 1024, json.loads(lines[-1])


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
            rows = staged(scale, run, env)
            results: dict[str, dict] = {}
            for step in STEPS:
                seconds, peak_mb, results[step] = run_step(step, payload(step, run, results), env)
                rows_table.append((scale, rows, step.capitalize(), seconds, peak_mb))
                print(f"x{scale:g} {step:<9} {seconds:7.1f} s  peak {peak_mb:7.0f} MB", flush=True)
        print(f"\n| scale | rows | step | seconds | peak MB | share of {LAMBDA_MEMORY_MB} MB |")
        print("|---|---:|---|---:|---:|---:|")
        for scale, rows, name, seconds, peak_mb in rows_table:
            print(f"| x{scale:g} | {rows:,} | {name} | {seconds:.1f} | {peak_mb:,.0f} | {peak_mb / LAMBDA_MEMORY_MB:.0%} |")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
