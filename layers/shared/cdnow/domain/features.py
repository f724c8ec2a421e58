"""Per-customer features from a transaction log, as of an analysis date.

Pure logic: a DataFrame in, a DataFrame out, no I/O. Every feature is a per-customer
reduction: bincounts by customer code and one sort of int64 values, never a reordering of the
rows, so it stays loop-free for millions of customers. The customer codes come from hashing
the ids (only the distinct ids are sorted), or, for rows already grouped by customer in id
order as the Transform job writes them, from one pass of adjacent comparisons.

Input (``transactions``): customer_id (string), order_date (datetime64 or ``date`` objects;
normalized to the day), quantity (int), amount (float), and optionally ``is_return`` (bool) and
``order_id`` (string, null where the file has none). Without order ids every row counts as an
order: same-day rows, zero amounts and rows identical to another row are separate orders; with
them, ``orders`` counts a customer's distinct order ids among their purchases.

A return (``is_return``; its quantity and amount are negative) nets against the customer's
``quantity_total`` and ``monetary_total`` but never makes a purchase day or an order, so a
customer's totals may be below zero (the spend models floor them: segments clip at zero, the
value model scales its spend per purchase by the customer's net share, floored at zero). A
customer with returns but no purchase in the window is no customer of the analysis: left out,
and counted in the frame's ``attrs["customers_without_purchase"]``.

The analysis date is the *exclusive* end of the observation window: only rows with
``order_date < analysis_date`` are used, and ages are measured up to it, so a customer who
bought on the last day of the window has ``recency_days == 1`` and ``tenure_days`` counts the
days from the first purchase to the window's end. The buy-till-you-die columns follow the
published definition instead (Fader & Hardie's CDNOW data, lifetimes, BTYD, CLVTools): the
customer is observed up to the window's *last day*, so ``T = (analysis_date - 1 day) - first
purchase = tenure_days - 1`` and ``recency = last - first purchase`` (a customer who bought on
the window's last day has ``recency == T``; one whose only purchase was that day has T = 0).
With it the pipeline's own features reproduce the published CDNOW fits (39 weeks ending
1997-09-30 inclusive) without adjustment; T to the exclusive end would be one day longer for
every customer and moved the BG/NBD's a and b 2-3% off the paper.

A *purchase day* is a (customer, date) pair of a purchase row. The probabilistic-model counts
(purchase_days, repeat_purchases, frequency, recency, avg_days_between_purchases) use purchase
days, also where the file has order ids (two orders on one day are one purchase day, as in the
published BTYD fits); quantities and amounts keep every row.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

REQUIRED_COLUMNS = ("customer_id", "order_date", "quantity", "amount")

# The numeric columns of the customer_features table, in table order.
FEATURE_COLUMNS = [
    "recency_days",
    "purchase_days",
    "repeat_purchases",
    "orders",
    "monetary_total",
    "monetary_avg_per_purchase",
    "quantity_total",
    "tenure_days",
    "avg_days_between_purchases",
    "frequency",
    "recency",
    "T",
]

OUTPUT_COLUMNS = ["customer_id", "first_purchase_date", "last_purchase_date", *FEATURE_COLUMNS]

# Dates leave this module at microsecond resolution: pandas 3's default for parsed dates, and the
# finest unit Spark (Glue) reads back from parquet without extra configuration.
DATE_DTYPE = "datetime64[us]"


def _day_numbers(order_date: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 as int64, whatever the input's unit (or ``date`` objects)."""
    dates = pd.to_datetime(order_date)
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    return dates.to_numpy().astype("datetime64[D]").astype(np.int64)


def _as_day(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    return ts.normalize()


def _day_number(day: pd.Timestamp) -> int:
    return int(np.datetime64(day.date(), "D").astype(np.int64))


def _days_to_dates(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[D]").astype(DATE_DTYPE)


def _check_columns(transactions: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in transactions.columns]
    if missing:
        raise ValueError(f"transactions lack column(s) {missing}; need {list(REQUIRED_COLUMNS)}")
    nulls = [c for c in REQUIRED_COLUMNS if transactions[c].isna().any()]
    if nulls:
        raise ValueError(f"transactions have missing values in {nulls}; validate rows upstream")


def default_analysis_date(transactions: pd.DataFrame) -> pd.Timestamp:
    """The day after the last order date (so the last day's orders are inside the window)."""
    _check_columns(transactions)
    if len(transactions) == 0:
        raise ValueError("transactions are empty: no analysis date can be derived")
    last_day = int(_day_numbers(transactions["order_date"]).max())
    return pd.Timestamp(np.datetime64(last_day + 1, "D"))


def run_analysis_date(option: str | None, day_after_last: date, latest_allowed_date: str | None) -> date:
    """A run's analysis date: the run's own ``analysis_date`` option if it has one; otherwise the
    day after the last transaction, never later than ``latest_allowed_date`` (the day after the
    delivery, from the Transform's summary). Both Features paths decide it so."""
    if option:
        return date.fromisoformat(option)
    if latest_allowed_date:
        return min(day_after_last, date.fromisoformat(latest_allowed_date))
    return day_after_last


def _empty_features() -> pd.DataFrame:
    int_cols = {"recency_days", "purchase_days", "repeat_purchases", "orders",
                "quantity_total", "tenure_days", "frequency", "recency", "T"}
    columns = {
        "customer_id": pd.Series([], dtype="str"),
        "first_purchase_date": pd.Series([], dtype=DATE_DTYPE),
        "last_purchase_date": pd.Series([], dtype=DATE_DTYPE),
    }
    for name in FEATURE_COLUMNS:
        columns[name] = pd.Series([], dtype="int64" if name in int_cols else "float64")
    return pd.DataFrame(columns)


def _customer_codes(customer_ids: pd.Series) -> tuple[np.ndarray, pa.Array]:
    """(each row's customer code, the distinct ids): codes number the ids in sorted (text) order.

    Rows already grouped by customer in id order (the Transform job writes them so) take one
    pass of adjacent comparisons; any other order is hashed (pyarrow's dictionary encoding)
    and only the distinct ids are sorted."""
    ids = pa.array(customer_ids.astype("str"))
    if isinstance(ids, pa.ChunkedArray):  # a column pd.concat joined keeps its pieces
        ids = ids.combine_chunks()
    n = len(ids)
    if n > 1:
        # A cheap look at the head first: most unsorted logs show it in a few rows.
        head = min(n, 1024)
        if pc.all(pc.less_equal(ids.slice(0, head - 1), ids.slice(1, head - 1))).as_py() and pc.all(
                pc.less_equal(ids.slice(0, n - 1), ids.slice(1))).as_py():
            new_customer = np.r_[True, pc.not_equal(ids.slice(0, n - 1), ids.slice(1)).to_numpy(
                zero_copy_only=False)]
            return np.cumsum(new_customer) - 1, ids.filter(pa.array(new_customer))
    encoded = pc.dictionary_encode(ids)
    first_seen = encoded.dictionary
    order = pc.sort_indices(first_seen).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[encoded.indices.to_numpy(zero_copy_only=False)], first_seen.take(pa.array(order))


def purchase_rows(transactions: pd.DataFrame) -> pd.DataFrame:
    """The rows that are purchases: all of them unless an ``is_return`` column marks returns."""
    if "is_return" not in transactions.columns:
        return transactions
    returns = transactions["is_return"].to_numpy(dtype=bool)
    return transactions.loc[~returns] if returns.any() else transactions


def customer_features(transactions: pd.DataFrame, analysis_date) -> pd.DataFrame:
    """One row per customer with a purchase before ``analysis_date``, sorted by customer_id.

    Columns: customer_id, first_purchase_date, last_purchase_date, then FEATURE_COLUMNS.
    """
    _check_columns(transactions)
    analysis_day = _as_day(analysis_date)
    end = _day_number(analysis_day)

    days = _day_numbers(transactions["order_date"])
    keep = days < end
    purchase = np.ones(len(days), dtype=bool)
    if "is_return" in transactions.columns:
        purchase = ~transactions["is_return"].to_numpy(dtype=bool)
    if not (keep & purchase).any():
        empty = _empty_features()
        empty.attrs["customers_without_purchase"] = int(transactions["customer_id"].iloc[keep].nunique())
        return empty

    customer_ids = transactions["customer_id"]
    quantity = transactions["quantity"].to_numpy(dtype=np.int64)
    amount = transactions["amount"].to_numpy(dtype=np.float64)
    order_ids = transactions["order_id"] if "order_id" in transactions.columns else None
    if not keep.all():
        days, customer_ids, quantity, amount = days[keep], customer_ids.iloc[keep], quantity[keep], amount[keep]
        purchase = purchase[keep]
        order_ids = None if order_ids is None else order_ids.iloc[keep]
    codes, uniques = _customer_codes(customer_ids)
    n_customers = len(uniques)

    # Every feature is a per-customer reduction, so the rows are never reordered: counts and
    # sums are bincounts by customer code, and first day, last day and purchase days come from
    # the sorted values of one int64 key per purchase row, customer * span + day (customers x
    # days stays far below 2**63): a customer's keys are contiguous there, days ascending, and
    # distinct keys are distinct purchase days. Sorting values is several times cheaper than
    # argsort.
    all_purchases = bool(purchase.all())
    purchase_codes = codes if all_purchases else codes[purchase]
    purchase_row_count = np.bincount(purchase_codes, minlength=n_customers).astype(np.int64, copy=False)
    orders = purchase_row_count
    if order_ids is not None and order_ids.notna().any():
        orders = _distinct_orders(purchase_codes, order_ids if all_purchases else order_ids.iloc[purchase],
                                  n_customers)
    quantity_total = np.bincount(codes, weights=quantity, minlength=n_customers).astype(np.int64)
    monetary_total = np.round(np.bincount(codes, weights=amount, minlength=n_customers), 2)
    purchase_days_of_rows = days if all_purchases else days[purchase]
    first_day_in_data = int(purchase_days_of_rows.min())
    span = int(purchase_days_of_rows.max()) - first_day_in_data + 1
    keys = np.sort(purchase_codes * span + (purchase_days_of_rows - first_day_in_data))
    buyers = purchase_row_count > 0
    starts = np.r_[0, np.cumsum(purchase_row_count)[:-1]]
    # A customer without a purchase row has no keys: its start is the next customer's, masked below.
    first_day = keys[np.minimum(starts, len(keys) - 1)] % span + first_day_in_data
    last_day = keys[np.maximum(starts + purchase_row_count - 1, 0)] % span + first_day_in_data
    new_day = np.r_[True, keys[1:] != keys[:-1]]
    purchase_days = np.bincount(keys[new_day] // span, minlength=n_customers).astype(np.int64, copy=False)
    del keys, new_day

    repeat_purchases = purchase_days - 1
    recency = last_day - first_day
    with np.errstate(divide="ignore", invalid="ignore"):
        # One-time buyers have no interval between purchases: NaN, never 0 (0 would read as
        # "buys every day").
        avg_days_between = np.where(repeat_purchases > 0,
                                    recency / np.maximum(repeat_purchases, 1), np.nan)
    tenure_days = end - first_day

    # copy=False: each column keeps its own array (no stacking into 2-D blocks, which costs a copy
    # of the whole table); the ids go from arrow to pandas' "str" without Python objects.
    features = pd.DataFrame({
        "customer_id": pa.table({"customer_id": uniques}).to_pandas()["customer_id"],
        "first_purchase_date": _days_to_dates(first_day),
        "last_purchase_date": _days_to_dates(last_day),
        "recency_days": end - last_day,
        "purchase_days": purchase_days,
        "repeat_purchases": repeat_purchases,
        "orders": orders,
        "monetary_total": monetary_total,
        "monetary_avg_per_purchase": monetary_total / np.maximum(purchase_days, 1),
        "quantity_total": quantity_total,
        "tenure_days": tenure_days,
        "avg_days_between_purchases": avg_days_between,
        # The lifetimes / BG-NBD names: frequency counts repeat purchase days, recency is the
        # age at the last purchase (last - first), T the age at the end of the window.
        "frequency": repeat_purchases.copy(),
        "recency": recency,
        "T": tenure_days - 1,  # to the window's last day (module docstring)
    }, copy=False)[OUTPUT_COLUMNS]
    without_purchase = int(n_customers - buyers.sum())
    if without_purchase:
        features = features[buyers].reset_index(drop=True)
    features.attrs["customers_without_purchase"] = without_purchase
    return features


def _distinct_orders(codes: np.ndarray, order_ids: pd.Series, n_customers: int) -> np.ndarray:
    """Per customer code, the number of distinct order ids among its rows (a row without an
    order id is an order of its own)."""
    order_codes, _ = pd.factorize(order_ids, use_na_sentinel=True)
    order_codes = order_codes.astype(np.int64)
    missing = order_codes < 0
    n_orders = int(order_codes.max()) + 1
    if missing.any():
        order_codes[missing] = n_orders + np.arange(int(missing.sum()))
        n_orders += int(missing.sum())
    distinct = np.unique(codes.astype(np.int64) * n_orders + order_codes)
    return np.bincount(distinct // n_orders, minlength=n_customers).astype(np.int64)
