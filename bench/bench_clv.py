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
from pathlib import Path

import numpy as np
import pandas as pd

from benchlib import timed
from cdnow.domain.clv import BetaGeoModel, GammaGammaModel, value_from_inputs, value_inputs
from cdnow.domain.features import default_analysis_date
from cdnow_offline.datasets import MASTER, read_cdnow, replicate

TIME_UNIT_DAYS = 7


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
    parser.add_argument("--data", type=Path, default=MASTER)
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error("--scale must be >= 1")

    print(f"CDNOW master: {args.data}")
    transactions, _ = timed("load transactions", lambda: read_cdnow(args.data))
    analysis_date = default_analysis_date(transactions)
    inputs, _ = timed("value_inputs (features, monetary value)",
                      lambda: value_inputs(transactions, analysis_date))
    print(f"  {len(transactions):,} transactions, {len(inputs):,} customers, "
          f"analysis date {analysis_date.date()}, time unit {TIME_UNIT_DAYS} days")
    (bgnbd, gamma_gamma), _ = timed("fit BG/NBD + Gamma-Gamma", lambda: fit_models(inputs))
    print("    " + describe(bgnbd, gamma_gamma))
    timed("score: value_from_inputs (fit + p_alive + CLV)", lambda: value_from_inputs(inputs))

    print(f"\nx{args.scale}: ", end="")
    if args.replicate == "features":
        print("value_inputs rows (frequency, recency, T, monetary_value) replicated with new "
              "customer ids; the transactions are NOT replicated")
        big, _ = timed("replicate feature rows", lambda: replicate(inputs, args.scale))
    else:
        print("transaction log replicated with new customer ids; inputs rebuilt from it")
        big_log, _ = timed("replicate transactions", lambda: replicate(transactions, args.scale))
        print(f"  {len(big_log):,} transactions")
        big, _ = timed("value_inputs (features, monetary value)",
                       lambda: value_inputs(big_log, analysis_date))
        del big_log
    print(f"  {len(big):,} customers")
    (bgnbd, gamma_gamma), _ = timed("fit BG/NBD + Gamma-Gamma", lambda: fit_models(big))
    print("    " + describe(bgnbd, gamma_gamma))
    (table, metrics), _ = timed("score: value_from_inputs (fit + p_alive + CLV)",
                                lambda: value_from_inputs(big))
    print(f"    {len(table):,} rows, total clv_12m {metrics['total_clv_12m']:,.0f}")
    if args.raw:
        raw_bgnbd, _ = timed("fit BG/NBD without aggregation (one row each)",
                             lambda: fit_models(big, aggregate=False)[0])
        print("    " + describe(raw_bgnbd))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
