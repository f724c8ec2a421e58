"""Benchmark: the scale curve of the per-customer features, 1x to 1000x CDNOW master.

    .venv/bin/python bench/bench_scale.py [--scales 1 10 100 1000]

Each scale runs in a process of its own: the log is generated (master resampled: customers drawn
with replacement under new ids), grouped by customer as the Transform job writes it, and
``customer_features`` runs on it. Prints rows, customers, seconds, rows per second and the
process's peak resident set (which includes the generated log itself).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = """
import json, resource, sys, time
from cdnow.domain.features import customer_features
from cdnow_offline.datasets import read_cdnow, resample_customers
started = time.perf_counter()
log = resample_customers(read_cdnow(), float(sys.argv[1]), seed=0)
log = log.sort_values(["customer_id", "order_date"], kind="stable", ignore_index=True)
generated = time.perf_counter() - started
started = time.perf_counter()
features = customer_features(log, "1998-07-01")
seconds = time.perf_counter() - started
print(json.dumps({"rows": len(log), "customers": len(features), "generate_s": generated, "features_s": seconds,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 10, 100, 1000])
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/shared", "local"))}
    print("| scale | rows | customers | features s | M rows/s | peak MB (log included) | log generated in s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for scale in args.scales:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CODE, str(scale)], env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"x{scale:g} failed after {time.perf_counter() - started:.0f} s:\n{done.stderr[-2000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| x{scale:g} | {r['rows']:,} | {r['customers']:,} | {r['features_s']:.2f} | "
              f"{r['rows'] / r['features_s'] / 1e6:.2f} | {r['peak_mb']:,.0f} | {r['generate_s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
