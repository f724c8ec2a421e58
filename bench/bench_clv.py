"""Benchmark: BG/NBD + Gamma-Gamma fits (and the CLV scoring) on CDNOW master and on a copy
scaled to millions of customers.

    .venv/bin/python bench/bench_clv.py [--scale 100] [--replicate features|transactions] [--raw]

Scaling: ``--replicate features`` (default) copies the value_inputs rows (frequency, recency,
T, monetary_value) ``scale`` times with new customer ids; ``--replicate transactions`` copies the
transaction log instead (new ids) and rebuilds the inputs from it, so that step is timed too.
Either way every copy of a customer has the same (x, t_x, T), so the fit aggregates to the same
distinct rows as master; ``--raw`` also times a BG/NBD fit with aggregation switched off (every
customer a row), i.e. the cost of the vectorized likelihood itself.

Memory is the process's peak resident set (ru_maxrss) after each step, so it only grows.
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

from cdnow.clv import (  # noqa: E402
    BetaGeoModel,
    GammaGammaModel,
    value_from_inputs,
    value_inputs,
)
from cdnow.features import default_analysis_date  # noqa: E402

TIME_UNIT_DAYS = 7


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(label: str, func):
    start = time.perf_counter()
    result = func()
    print(f"  {label:<44} {time.perf_counter() - start:8.3f} s   peak RSS {peak_mb():7.0f} MB")
    return result


def load_master(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, sep=r"\s+", header=None, dtype=str,
                      names=["customer_id", "date", "quantity", "amount"])
    return pd.DataFrame({
        "customer_id": raw["customer_id"].astype("str"),
        "order_date": pd.to_datetime(raw["date"], format="%Y%m%d"),
        "quantity": raw["quantity"].astype("int64"),
        "amount": raw["amount"].astype("float64"),
    })


def with_new_ids(frame: pd.DataFrame, scale: int) -> pd.DataFrame:
    """``scale`` copies of ``frame``; copy k's customer ids get the suffix "-k"."""
    copies = np.repeat(np.arange(scale), len(frame))
    out = pd.concat([frame] * scale, ignore_index=True)
    suffix = pd.Series(copies, dtype="int64").astype("str")
    out["customer_id"] = (out["customer_id"].astype("str") + "-" + suffix).astype("str")
    return out


def fit_models(inputs: pd.DataFrame, aggregate: bool = True):
    x = inputs["frequency"].to_numpy(dtype=np.float64)
    tx = inputs["recency"].to_numpy(dtype=np.float64) / TIME_UNIT_DAYS
    t_end = inputs["T"].to_numpy(dtype=np.float64) / TIME_UNIT_DAYS
    m = inputs["monetary_value"].to_numpy(dtype=np.float64)
    bgnbd = BetaGeoModel(time_unit_days=TIME_UNIT_DAYS, aggregate=aggregate).fit(x, tx, t_end)
    spenders = (x > 0) & (m > 0)
    gamma_gamma = GammaGammaModel(aggregate=aggregate).fit(x[spenders], m[spenders])
    return bgnbd, gamma_gamma


def describe(bgnbd: BetaGeoModel, gamma_gamma: GammaGammaModel | None = None) -> str:
    text = ("BG/NBD " + ", ".join(f"{k}={v:.6g}" for k, v in bgnbd.params_.items())
            + f", LL={bgnbd.log_likelihood_:.6g}, {bgnbd.n_customers_:,} customers as "
            f"{bgnbd.n_distinct_rows_:,} distinct rows, {bgnbd.n_iter_} iterations, "
            f"converged={bgnbd.converged_}")
    if gamma_gamma is not None:
        text += ("\n    Gamma-Gamma " + ", ".join(f"{k}={v:.6g}" for k, v in gamma_gamma.params_.items())
                 + f", LL={gamma_gamma.log_likelihood_:.6g}, {gamma_gamma.n_customers_:,} repeat buyers")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100, help="copies of master (default 100)")
    parser.add_argument("--replicate", choices=["features", "transactions"], default="features")
    parser.add_argument("--raw", action="store_true",
                        help="also time the scaled BG/NBD fit without aggregation")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "CDNOW_master.txt")
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error("--scale must be >= 1")

    print(f"CDNOW master: {args.data}")
    transactions = timed("load transactions", lambda: load_master(args.data))
    analysis_date = default_analysis_date(transactions)
    inputs = timed("value_inputs (features, monetary value)",
                   lambda: value_inputs(transactions, analysis_date))
    print(f"  {len(transactions):,} transactions, {len(inputs):,} customers, "
          f"analysis date {analysis_date.date()}, time unit {TIME_UNIT_DAYS} days")
    bgnbd, gamma_gamma = timed("fit BG/NBD + Gamma-Gamma", lambda: fit_models(inputs))
    print("    " + describe(bgnbd, gamma_gamma))
    timed("score: value_from_inputs (fit + p_alive + CLV)", lambda: value_from_inputs(inputs))

    print(f"\nx{args.scale}: ", end="")
    if args.replicate == "features":
        print("value_inputs rows (frequency, recency, T, monetary_value) replicated with new "
              "customer ids; the transactions are NOT replicated")
        big = timed("replicate feature rows", lambda: with_new_ids(inputs, args.scale))
    else:
        print("transaction log replicated with new customer ids; inputs rebuilt from it")
        big_log = timed("replicate transactions", lambda: with_new_ids(transactions, args.scale))
        print(f"  {len(big_log):,} transactions")
        big = timed("value_inputs (features, monetary value)",
                    lambda: value_inputs(big_log, analysis_date))
        del big_log
    print(f"  {len(big):,} customers")
    bgnbd, gamma_gamma = timed("fit BG/NBD + Gamma-Gamma", lambda: fit_models(big))
    print("    " + describe(bgnbd, gamma_gamma))
    table, metrics = timed("score: value_from_inputs (fit + p_alive + CLV)",
                           lambda: value_from_inputs(big))
    print(f"    {len(table):,} rows, total clv_12m {metrics['total_clv_12m']:,.0f}")
    if args.raw:
        raw_bgnbd, _ = timed("fit BG/NBD without aggregation (one row each)",
                             lambda: (fit_models(big, aggregate=False)[0], None))
        print("    " + describe(raw_bgnbd))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
