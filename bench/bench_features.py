"""Benchmark: per-customer features, ours against what users would otherwise run, same rows.

    .venv/bin/python bench/bench_features.py [--scale 100] [--skip-naive]

The log is CDNOW master resampled ``--scale`` times (customers drawn with replacement under new
ids; 100 gives about 7 M rows and 2.36 M customers). In one process, on the same frame:

  ours       cdnow.domain.features.customer_features on the log as an export lists it (date order), and
             on the Transform job's output order (sorted by customer and date), the pipeline's case
  naive      the reference notebook's way: pandas group-by with Python lambdas
  lifetimes  lifetimes.utils.summary_data_from_transaction_data (frequency, recency, T, monetary)
  duckdb     one SQL group-by with a distinct count (what a data engineer would write)

Prints wall time, rows per second and the ratio to ours, and checks the others' figures agree
with ours on every customer. lifetimes and duckdb are benchmark-only dependencies
(requirements/bench.txt; ``make bench`` installs them).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from cdnow.domain.features import customer_features, default_analysis_date
from cdnow_offline.datasets import read_cdnow, resample_customers


def naive_notebook(log: pd.DataFrame, analysis_date: pd.Timestamp) -> pd.DataFrame:
    """The reference notebook's features: one group-by, Python lambdas for the date arithmetic.
    (Its "frequency" counts rows and a one-time buyer's gap is 0: we compare only the columns
    that mean the same as ours.)"""
    features = log.groupby("customer_id").agg(
        recency_days=("order_date", lambda d: (analysis_date - d.max()).days),
        tenure_days=("order_date", lambda d: (analysis_date - d.min()).days),
        orders=("order_date", "count"),
        monetary_total=("amount", "sum"),
        quantity_total=("quantity", "sum"),
    )
    features["avg_days_between_purchases"] = (
        (features["tenure_days"] - features["recency_days"]) / (features["orders"] - 1)).fillna(0)
    return features


def lifetimes_summary(log: pd.DataFrame, analysis_date: pd.Timestamp) -> pd.DataFrame:
    from lifetimes.utils import summary_data_from_transaction_data

    # lifetimes measures T to the last observed day (inclusive); ours to the day after.
    return summary_data_from_transaction_data(
        log, "customer_id", "order_date", monetary_value_col="amount",
        observation_period_end=analysis_date - pd.Timedelta(days=1), freq="D")


def duckdb_group_by(log: pd.DataFrame, analysis_date: pd.Timestamp) -> pd.DataFrame:
    import duckdb

    day = analysis_date.date().isoformat()
    return duckdb.sql(f"""
        SELECT customer_id,
               min(order_date) AS first_purchase_date, max(order_date) AS last_purchase_date,
               DATE '{day}' - max(order_date)::DATE AS recency_days,
               count(DISTINCT order_date) AS purchase_days, count(*) AS orders,
               round(sum(amount), 2) AS monetary_total, sum(quantity) AS quantity_total,
               DATE '{day}' - min(order_date)::DATE AS tenure_days
        FROM log GROUP BY customer_id ORDER BY customer_id""").df()


def timed(func):
    start = time.perf_counter()
    result = func()
    return result, time.perf_counter() - start


def check_agrees(name: str, ours: pd.DataFrame, other: pd.DataFrame, columns: dict[str, str]) -> None:
    """``columns``: our column -> theirs; every customer's value must match."""
    other = other.reset_index() if "customer_id" not in other.columns else other
    merged = ours.merge(other, on="customer_id", suffixes=("", "_other"), validate="one_to_one")
    assert len(merged) == len(ours), f"{name}: {len(merged)} of {len(ours)} customers"
    for mine, theirs in columns.items():
        a = merged[mine].to_numpy(dtype=np.float64)
        b = merged[theirs + ("_other" if theirs in ours.columns else "")].to_numpy(dtype=np.float64)
        assert np.allclose(a, b, rtol=1e-9, atol=1e-6, equal_nan=True), f"{name}: {mine} differs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=100)
    parser.add_argument("--skip-naive", action="store_true", help="leave out the slow notebook way")
    args = parser.parse_args()

    master = read_cdnow()
    log = resample_customers(master, args.scale, seed=0)
    analysis_date = default_analysis_date(log)
    by_customer = log.sort_values(["customer_id", "order_date"], kind="stable", ignore_index=True)
    rows = len(log)
    print(f"{rows:,} rows, {log['customer_id'].nunique():,} customers (CDNOW master resampled x{args.scale:g})")

    results = []
    ours, seconds = timed(lambda: customer_features(log, analysis_date))
    results.append(("ours, export order", seconds))
    ours_sorted, seconds = timed(lambda: customer_features(by_customer, analysis_date))
    results.append(("ours, Transform output order", seconds))
    pd.testing.assert_frame_equal(ours, ours_sorted)

    same = {c: c for c in ("recency_days", "purchase_days", "orders", "monetary_total", "quantity_total",
                           "tenure_days")}
    if not args.skip_naive:
        naive, seconds = timed(lambda: naive_notebook(log, analysis_date))
        results.append(("naive notebook (pandas lambdas)", seconds))
        check_agrees("naive", ours, naive, {c: c for c in ("recency_days", "orders", "monetary_total",
                                                           "quantity_total", "tenure_days")})
    try:
        summary, seconds = timed(lambda: lifetimes_summary(log, analysis_date))
        results.append(("lifetimes summary_data_from_transaction_data", seconds))
        check_agrees("lifetimes", ours.assign(T_inclusive=ours["T"] - 1), summary,
                     {"frequency": "frequency", "recency": "recency", "T_inclusive": "T"})
    except ImportError:
        print("  lifetimes not installed: pip install -r requirements/bench.txt")
    try:
        duck, seconds = timed(lambda: duckdb_group_by(log, analysis_date))
        results.append(("duckdb group-by, distinct count", seconds))
        check_agrees("duckdb", ours, duck, same)
    except ImportError:
        print("  duckdb not installed: pip install -r requirements/bench.txt")

    export_order, transform_order = results[0][1], results[1][1]
    print("| method | seconds | M rows/s | time vs ours (Transform order) | time vs ours (export order) |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds in results:
        print(f"| {name} | {seconds:.2f} | {rows / seconds / 1e6:.2f} | {seconds / transform_order:.1f}x "
              f"| {seconds / export_order:.1f}x |")


if __name__ == "__main__":
    main()
