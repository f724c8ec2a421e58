"""Benchmark: whole runs through the Spark path on the offline stack, at several scales.

    .venv/bin/python bench/bench_spark_path.py [--scales 10 100 1000] [--driver-memory 6g]

For each scale, in a process of its own: CDNOW master resampled that many times (customers
drawn with replacement under new ids) is written as a CDNOW text file (kept as
``.bench/cdnow-x<scale>.txt``, or ``$BENCH_OUT``, and reused: the same seed), and a fresh offline stack
(``Emulator`` with every function in its shipped environment: a Python 3.12 process with only
what its artifact ships, its MemorySize enforced, its resident set polled) runs it with the
option ``engine`` ``spark``, as ``cdnow run --local --shipped --engine spark`` does. The Glue
jobs run in the stack's local SparkSession (local[2]; the driver's heap ``--driver-memory``).

Prints, per scale: rows, customers, the run's wall time (upload to notification); each state's
wall time from the execution's history (a state of the Models and Models from Spark parallels:
its branch's longest); the Features and Score jobs' throughput (rows or customers per second of
their states, staging to and from the emulated S3 included); and each Lambda function's peak
resident set over the run (the Spark path's model steps hold only their sample: flat from x10
to x1000). The JVM and the emulator run in this process, not counted in any function's figure.

``--runs 3`` runs each scale three times (a fresh process and stack each) and reports the median
run (by its wall time) with every run's wall time beside it. Beside each run's wall time, the
CPU seconds the whole machine spent meanwhile (/proc/stat: the run's process, its JVM and its
functions' processes are one tree whose grandchildren no rusage counts) and the load before it:
a figure for a machine with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The states whose wall times the table shows, in the order the path runs them.
STATES = ("Ingest", "Transform", "Features", "Features on Spark", "Features from Spark", "Models", "Score on Spark",
          "Models from Spark", "Publish", "Report")
FUNCTIONS = ("Features", "Segment", "Churn", "Value", "Publish", "Report")


def write_text_log(path: Path, scale: float) -> int:
    """CDNOW master resampled ``scale`` times, in the master file's text format."""
    from cdnow_offline.datasets import read_cdnow, resample_customers

    log = resample_customers(read_cdnow(), scale, seed=0)
    with path.open("w", encoding="utf-8") as out:
        out.writelines(f" {c} {d:%Y%m%d} {q:2d} {a:8.2f}\n" for c, d, q, a in zip(
            log["customer_id"], log["order_date"], log["quantity"], log["amount"]))
    return len(log)


def state_seconds(execution_arn: str) -> dict[str, float]:
    """Each state's wall time, entered to exited (a state entered twice: the sum)."""
    import boto3

    sfn = boto3.client("stepfunctions")
    events, token = [], None
    while True:
        page = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000,
                                         **({"nextToken": token} if token else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    entered: dict[str, datetime] = {}
    seconds: dict[str, float] = {}
    for event in events:
        if "stateEnteredEventDetails" in event:
            entered[event["stateEnteredEventDetails"]["name"]] = event["timestamp"]
        elif "stateExitedEventDetails" in event:
            name = event["stateExitedEventDetails"]["name"]
            if name in entered:
                seconds[name] = seconds.get(name, 0.0) + (event["timestamp"] - entered.pop(name)).total_seconds()
    return seconds


def one_scale(scale: float, work: Path) -> dict:
    """The run of one scale on a fresh offline stack (in this process)."""
    from cdnow_offline.emulator import Emulator
    from cdnow_offline.remote import run_on_stack

    # The file is the same for a scale every time (seed 0): kept beside the logs and reused.
    text = Path(os.environ.get("BENCH_OUT", ROOT / ".bench")) / f"cdnow-x{scale:g}.txt"
    started = time.perf_counter()
    if text.exists():
        with text.open("rb") as lines:
            rows = sum(chunk.count(b"\n") for chunk in iter(lambda: lines.read(1 << 24), b""))
    else:
        text.parent.mkdir(parents=True, exist_ok=True)
        rows = write_text_log(text.with_suffix(".partial"), scale)
        text.with_suffix(".partial").rename(text)
    generated_s = time.perf_counter() - started
    with Emulator(ROOT, shipped=True) as emulator:
        outputs = emulator.provision(f"cdnow-bench-x{scale:g}".replace(".", "-")).outputs
        started = time.perf_counter()
        run = run_on_stack(outputs, text, work / "out", echo=lambda line: None, timeout_s=4 * 3600, poll_s=1.0,
                           options={"engine": "spark"})
        wall_s = time.perf_counter() - started
        if run.status != "SUCCEEDED":
            raise SystemExit(f"x{scale:g}: the run {run.status}: {json.dumps(run.summary)[:3000]}")
        peaks = emulator.lambdas.peak_memory_mb()
        seconds = state_seconds(run.execution_arn)
        from cdnow.adapters.storage import read_json
        from cdnow.domain.runs import RunLayout

        score_job = read_json(RunLayout(outputs["CuratedBucketName"], run.summary["run_id"]).score_job_summary)
    peak_of = {function: max((mb for name, mb in peaks.items() if name.endswith(f"{function}Function")), default=0.0)
               for function in FUNCTIONS}
    return {"scale": scale, "rows": rows, "customers": run.summary["customers"], "wall_s": wall_s,
            "generated_s": generated_s, "states": {name: seconds.get(name) for name in STATES},
            "peak_mb": peak_of, "bench_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "engine": run.summary.get("engine"),
            "score_seconds": {model: scored.get("seconds") for model, scored in score_job["scored"].items()}}


def machine_cpu_seconds() -> float:
    """CPU seconds every process on the machine has spent since boot (user, nice, system, irq,
    softirq: /proc/stat), to take the difference of around a run."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:8]
    user, nice, system, _idle, _iowait, irq, softirq = (int(value) for value in fields)
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def one_process(scale: float, env: dict, log: Path) -> dict:
    """One scale's run in a process of its own, with its process's wall and the machine's CPU."""
    load = Path("/proc/loadavg").read_text().split()[0]
    started, cpu_before = time.perf_counter(), machine_cpu_seconds()
    with log.open("w") as err:
        done = subprocess.run([sys.executable, __file__, "--one", str(scale)], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=err, text=True)
    process_s, cpu_s = time.perf_counter() - started, machine_cpu_seconds() - cpu_before
    if done.returncode:
        raise SystemExit(f"x{scale:g} failed after {process_s:.0f} s (its log: {log}):\n{done.stdout[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "process_s": process_s, "machine_cpu_s": cpu_s, "load_before": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[10, 100])
    parser.add_argument("--driver-memory", default="6g", help="the local Spark driver's heap (default 6g)")
    parser.add_argument("--runs", type=int, default=1, help="runs per scale; the median run is reported (default 1)")
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)  # the child process of one scale
    args = parser.parse_args()
    if args.one is not None:
        with tempfile.TemporaryDirectory(prefix="cdnow-bench-spark-") as work:
            print(json.dumps(one_scale(args.one, Path(work))))
        return

    env = {**os.environ, "CDNOW_SPARK_DRIVER_MEMORY": args.driver_memory,
           "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/shared", "local"))}
    logs = Path(os.environ.get("BENCH_OUT", ROOT / ".bench"))
    logs.mkdir(parents=True, exist_ok=True)
    results = []
    for scale in args.scales:
        runs = []
        for attempt in range(args.runs):
            # The run's own lines (the functions', Spark's), one file per run.
            log = logs / (f"spark_path_x{scale:g}.log" if args.runs == 1 else f"spark_path_x{scale:g}_run{attempt + 1}.log")
            result = one_process(scale, env, log)
            runs.append(result)
            print(f"x{scale:g} run {attempt + 1}: {result['rows']:,} rows, {result['customers']:,} customers, "
                  f"run {result['wall_s']:.1f} s; its process {result['process_s']:.1f} s wall for "
                  f"{result['machine_cpu_s']:.1f} s CPU (the machine's; load {result['load_before']} before); file "
                  f"written in {result['generated_s']:.0f} s; the Score job's seconds per model "
                  f"{result['score_seconds']}", flush=True)
        median = sorted(runs, key=lambda run: run["wall_s"])[(len(runs) - 1) // 2]
        results.append({**median, "walls": [run["wall_s"] for run in runs]})

    print(f"\nThe median of {args.runs} run(s) per scale; the state columns are that run's.")
    print("\n| scale | rows | customers | run wall s (runs) | process wall s | machine CPU s | "
          + " | ".join(f"{s} s" for s in STATES) + " |")
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len(STATES))
    for r in results:
        cells = " | ".join("" if r["states"][s] is None else f"{r['states'][s]:.1f}" for s in STATES)
        walls = ", ".join(f"{wall:.0f}" for wall in r["walls"])
        print(f"| x{r['scale']:g} | {r['rows']:,} | {r['customers']:,} | {r['wall_s']:.0f} ({walls}) | "
              f"{r['process_s']:.0f} | {r['machine_cpu_s']:.0f} | {cells} |")
    print("\n| scale | Features job rows/s | Score job customers/s | " + " | ".join(
        f"{f} peak MB" for f in FUNCTIONS) + " |")
    print("|---|---:|---:|" + "---:|" * len(FUNCTIONS))
    for r in results:
        features_s, score_s = r["states"]["Features on Spark"], r["states"]["Score on Spark"]
        peaks = " | ".join(f"{r['peak_mb'][f]:,.0f}" for f in FUNCTIONS)
        print(f"| x{r['scale']:g} | {r['rows'] / features_s:,.0f} | {r['customers'] / score_s:,.0f} | {peaks} |")


if __name__ == "__main__":
    main()
