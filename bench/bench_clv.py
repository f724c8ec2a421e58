"""Benchmark: the fits of the three purchase models (BG/NBD, MBG/NBD, Pareto/NBD) and
Gamma-Gamma (and the CLV scoring) on CDNOW master and on a copy scaled to millions of customers.

    .venv/bin/python bench/bench_clv.py [--scale 100] [--replicate features|transactions] [--raw]

Scaling: ``--replicate features`` (default) copies the value_inputs rows (frequency, recency,
T, monetary_value) ``scale`` times with new customer ids; ``--replicate transactions`` copies the
transaction log instead (new ids) and rebuilds the inputs from it, so that step is timed too.
Either way every copy of a customer has the same (x, t_x, T), so the fit aggregates to the same
distinct rows as master; ``--raw`` also times each purchase model's fit with aggregation switched
off (every customer a row), i.e. the cost of the vectorized likelihood itself (``--raw-scale``
copies, default 10: the Pareto/NBD's series makes a row-by-row fit of x100 take minutes).
Targets (issue 19): each fit under 2 s on master and under 60 s on x100.

Memory is the process's peak resident set (ru_maxrss) after each step, so it only grows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from benchlib import timed
from cdnow.domain.clv import PURCHASE_MODELS, GammaGammaModel, value_from_inputs, value_inputs
from cdnow.domain.features import default_analysis_date
from cdnow_offline.datasets import MASTER, read_cdnow, replicate

TIME_UNIT_DAYS = 7


def rfm(inputs: pd.DataFrame):
    return (inputs["frequency"].to_numpy(dtype=np.float64),
            inputs["recency"].to_numpy(dtype=np.float64) / TIME_UNIT_DAYS,
            inputs["T"].to_numpy(dtype=np.float64) / TIME_UNIT_DAYS)


def fit_each(inputs: pd.DataFrame, aggregate: bool = True) -> dict[str, float]:
    """Fit every purchase model and Gamma-Gamma, each timed on its own; the fit seconds."""
    x, tx, t_end = rfm(inputs)
    seconds = {}
    for name, model in PURCHASE_MODELS.items():
        fitted, seconds[name] = timed(f"fit {model.title}{'' if aggregate else ' (row by row)'}",
                                      lambda: model(time_unit_days=TIME_UNIT_DAYS,
                                                    aggregate=aggregate).fit(x, tx, t_end))
        print("    " + describe(fitted))
    m = inputs["monetary_value"].to_numpy(dtype=np.float64)
    spenders = (x > 0) & (m > 0)
    gamma_gamma, seconds["gamma_gamma"] = timed(
        "fit Gamma-Gamma", lambda: GammaGammaModel(aggregate=aggregate).fit(x[spenders], m[spenders]))
    print("    Gamma-Gamma " + ", ".join(f"{k}={v:.6g}" for k, v in gamma_gamma.params_.items())
          + f", LL={gamma_gamma.log_likelihood_:.6g}, {gamma_gamma.n_customers_:,} repeat buyers")
    return seconds


def describe(model) -> str:
    return (model.title + " " + ", ".join(f"{k}={v:.6g}" for k, v in model.params_.items())
            + f", LL={model.log_likelihood_:.6g}, {model.n_customers_:,} customers as "
            f"{model.n_distinct_rows_:,} distinct rows, {model.n_iter_} iterations, "
            f"converged={model.converged_}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100, help="copies of master (default 100)")
    parser.add_argument("--replicate", choices=["features", "transactions"], default="features")
    parser.add_argument("--raw", action="store_true",
                        help="also time each fit without aggregation, on --raw-scale copies")
    parser.add_argument("--raw-scale", type=int, default=10,
                        help="copies of master for the row-by-row fits (default 10)")
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
    master_fits = fit_each(inputs)
    timed("score: value_from_inputs (BG/NBD fit + CLV)", lambda: value_from_inputs(inputs))

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
    big_fits = fit_each(big)
    (table, metrics), _ = timed("score: value_from_inputs (BG/NBD fit + CLV)",
                                lambda: value_from_inputs(big))
    print(f"    {len(table):,} rows, total clv_12m {metrics['total_clv_12m']:,.0f}")
    raw_fits = {}
    if args.raw:
        raw = inputs if args.raw_scale == 1 else replicate(inputs, args.raw_scale)
        print(f"\nx{args.raw_scale}, every customer a row ({len(raw):,} rows):")
        raw_fits = fit_each(raw, aggregate=False)

    print(f"\n{'fit seconds':<14}{'master':>10}{f'x{args.scale}':>10}"
          + (f"{f'x{args.raw_scale} raw':>12}" if raw_fits else "")
          + "   targets: master < 2 s, x100 < 60 s")
    for name in master_fits:
        print(f"{name:<14}{master_fits[name]:>10.3f}{big_fits[name]:>10.3f}"
              + (f"{raw_fits[name]:>12.3f}" if raw_fits else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
