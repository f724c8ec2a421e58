"""Benchmark: customer_features + segment_customers on CDNOW master repeated x100.

The master file's transactions are replicated 100 times, each replica's customer ids prefixed
with its replica number ("00-00001" ... "99-23570"), which gives 2,357,000 customers and
6,965,900 rows. Phases are timed separately; peak memory is the process's ru_maxrss.

    .venv/bin/python bench/bench_segments.py [--replicas 100] [--input data/CDNOW_master.txt]

Targets (2-core machine): whole run under 60 s, peak RSS under 4 GB.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchlib import peak_rss_mb, timed
from cdnow.domain.features import customer_features, default_analysis_date
from cdnow.domain.segments import segment_customers
from cdnow_offline.datasets import MASTER, read_cdnow, replicate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--input", type=Path, default=MASTER)
    args = parser.parse_args()

    phases = {}
    master, phases["load master"] = timed("load master", lambda: read_cdnow(args.input))
    transactions, phases["replicate"] = timed(f"replicate x{args.replicas}",
                                              lambda: replicate(master, args.replicas))
    analysis_date = default_analysis_date(master)
    del master
    print(f"  {len(transactions):,} rows, analysis date {analysis_date.date()}")
    features, phases["features"] = timed("customer_features",
                                         lambda: customer_features(transactions, analysis_date))
    print(f"  {len(features):,} customers")
    del transactions
    result, phases["segments"] = timed("segment_customers", lambda: segment_customers(features))

    print(f"  {'total':<46} {sum(phases.values()):8.3f} s   peak RSS {peak_rss_mb():7.0f} MB")
    print(f"  features + segments: {phases['features'] + phases['segments']:.2f} s")
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
