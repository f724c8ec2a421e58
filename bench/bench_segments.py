"""Benchmark: customer_features + segment_customers on CDNOW master repeated x100.

The master file's transactions are replicated 100 times, each replica's customer ids prefixed
with its replica number ("00-00001" ... "99-23570"), which gives 2,357,000 customers and
6,965,900 rows. Phases are timed separately; peak memory is the process's ru_maxrss.

    .venv/bin/python bench/bench_segments.py [--replicas 100] [--input data/CDNOW_master.txt]

Targets (2-core machine): whole run under 60 s, peak RSS under 4 GB.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "shared"))

from cdnow.features import customer_features, default_analysis_date  # noqa: E402
from cdnow.segments import segment_customers  # noqa: E402


def peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def load_master(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, sep=r"\s+", header=None,
                      names=["customer_id", "order_date", "quantity", "amount"],
                      dtype={"customer_id": str, "order_date": str})
    return pd.DataFrame({
        "customer_id": raw["customer_id"],
        "order_date": pd.to_datetime(raw["order_date"], format="%Y%m%d"),
        "quantity": raw["quantity"].astype("int64"),
        "amount": raw["amount"].astype("float64"),
    })


def replicate(transactions: pd.DataFrame, replicas: int) -> pd.DataFrame:
    """``replicas`` copies of the log, customer ids prefixed with the replica number."""
    n = len(transactions)
    width = len(str(replicas - 1))
    prefixes = pd.Series([f"{r:0{width}d}-" for r in range(replicas)], dtype="str")
    ids = pd.Series(np.tile(transactions["customer_id"].to_numpy(dtype=object), replicas),
                    dtype="str")
    return pd.DataFrame({
        "customer_id": prefixes.repeat(n).reset_index(drop=True) + ids,
        "order_date": np.tile(transactions["order_date"].to_numpy(), replicas),
        "quantity": np.tile(transactions["quantity"].to_numpy(), replicas),
        "amount": np.tile(transactions["amount"].to_numpy(), replicas),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--input", type=Path, default=ROOT / "data" / "CDNOW_master.txt")
    args = parser.parse_args()

    phases: list[tuple[str, float]] = []

    def phase(name: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        phases.append((name, elapsed))
        print(f"{name:<28} {elapsed:7.2f} s   peak RSS {peak_rss_mb():7.0f} MB", flush=True)

    t = time.perf_counter()
    master = load_master(args.input)
    phase("load master", t)

    t = time.perf_counter()
    transactions = replicate(master, args.replicas)
    analysis_date = default_analysis_date(master)
    del master
    phase(f"replicate x{args.replicas}", t)
    print(f"  {len(transactions):,} rows, analysis date {analysis_date.date()}")

    t = time.perf_counter()
    features = customer_features(transactions, analysis_date)
    phase("customer_features", t)
    print(f"  {len(features):,} customers")
    del transactions

    t = time.perf_counter()
    result = segment_customers(features)
    phase("segment_customers", t)

    total = sum(seconds for _, seconds in phases)
    print(f"{'total':<28} {total:7.2f} s   peak RSS {peak_rss_mb():7.0f} MB")
    print(f"  features + segments: {phases[2][1] + phases[3][1]:.2f} s")
    print(f"  chosen k = {result.n_clusters}")
    for row in result.k_selection:
        print(f"    k={row['k']}  silhouette={row['silhouette']:.4f}  "
              f"stability={row['stability']:.4f}{'  <- chosen' if row['chosen'] else ''}")
    cols = ["segment_name", "customers", "revenue_share", "median_recency_days",
            "mean_purchase_days", "mean_monetary_total"]
    print(result.profiles[cols].round(4).to_string(index=False))
    cents = int(result.profiles["revenue_cents"].sum())
    print(f"  customers {int(result.profiles['customers'].sum()):,}, revenue ${cents / 100:,.2f}")


if __name__ == "__main__":
    main()
