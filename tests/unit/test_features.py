import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from cdnow.features import (
    FEATURE_COLUMNS,
    OUTPUT_COLUMNS,
    customer_features,
    default_analysis_date,
)

ANALYSIS_DATE = pd.Timestamp("1997-02-01")


def tiny_transactions() -> pd.DataFrame:
    """Three customers before 1997-02-01 and one row each on/after it, rows out of order."""
    rows = [
        # customer, date, quantity, amount
        ("A", "1997-01-31", 3, 20.25),
        ("B", "1997-01-05", 1, 12.00),
        ("A", "1997-01-01", 1, 10.00),
        ("C", "1997-02-10", 1, 7.00),   # after the analysis date: C must not appear
        ("A", "1997-01-11", 1, 0.00),   # zero amount: still an order and a purchase day
        ("D", "1997-01-20", 2, 30.00),
        ("A", "1997-02-01", 5, 99.99),  # on the analysis date (exclusive end): excluded
        ("B", "1997-01-05", 1, 12.00),  # identical to B's other row: a separate order
        ("A", "1997-01-01", 2, 5.50),   # same day as A's 10.00 order: one purchase day
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "order_date", "quantity", "amount"])
    frame["order_date"] = pd.to_datetime(frame["order_date"])
    frame["quantity"] = frame["quantity"].astype("int64")
    return frame


def test_columns_order_and_types():
    features = customer_features(tiny_transactions(), ANALYSIS_DATE)
    assert list(features.columns) == OUTPUT_COLUMNS
    assert OUTPUT_COLUMNS[3:] == FEATURE_COLUMNS
    assert features["first_purchase_date"].dtype.kind == "M"
    assert features["last_purchase_date"].dtype.kind == "M"
    for name in ["recency_days", "purchase_days", "repeat_purchases", "orders",
                 "quantity_total", "tenure_days", "frequency", "recency", "T"]:
        assert features[name].dtype == np.int64, name
    for name in ["monetary_total", "monetary_avg_per_purchase", "avg_days_between_purchases"]:
        assert features[name].dtype == np.float64, name


def test_every_feature_by_hand():
    features = customer_features(tiny_transactions(), ANALYSIS_DATE).set_index("customer_id")
    # Sorted by customer_id; C only bought on 1997-02-10, after the window.
    assert list(features.index) == ["A", "B", "D"]

    a = features.loc["A"]
    # A's rows before 1997-02-01: 01-01 (1, 10.00), 01-01 (2, 5.50), 01-11 (1, 0.00),
    # 01-31 (3, 20.25). The 02-01 row is on the analysis date, outside the window.
    assert a["first_purchase_date"] == pd.Timestamp("1997-01-01")
    assert a["last_purchase_date"] == pd.Timestamp("1997-01-31")
    assert a["recency_days"] == 1            # 02-01 - 01-31
    assert a["purchase_days"] == 3           # 01-01, 01-11, 01-31 (01-11's $0 counts)
    assert a["repeat_purchases"] == 2        # 3 - 1
    assert a["orders"] == 4                  # every row, both 01-01 rows included
    assert a["monetary_total"] == 35.75      # 10.00 + 5.50 + 0.00 + 20.25
    assert a["monetary_avg_per_purchase"] == pytest.approx(35.75 / 3)  # per purchase day
    assert a["quantity_total"] == 7          # 1 + 2 + 1 + 3
    assert a["tenure_days"] == 31            # 02-01 - 01-01
    assert a["avg_days_between_purchases"] == 15.0  # (01-31 - 01-01) / 2 = 30 / 2
    assert a["frequency"] == 2
    assert a["recency"] == 30                # 01-31 - 01-01
    assert a["T"] == 31

    b = features.loc["B"]
    # B: two identical rows on 01-05 (1, 12.00): two orders, one purchase day, one-time buyer.
    assert b["first_purchase_date"] == b["last_purchase_date"] == pd.Timestamp("1997-01-05")
    assert b["recency_days"] == 27           # 02-01 - 01-05
    assert b["purchase_days"] == 1
    assert b["repeat_purchases"] == 0
    assert b["orders"] == 2
    assert b["monetary_total"] == 24.00
    assert b["monetary_avg_per_purchase"] == 24.00
    assert b["quantity_total"] == 2
    assert b["tenure_days"] == 27
    assert math.isnan(b["avg_days_between_purchases"])  # no interval: NaN, never 0
    assert b["frequency"] == 0
    assert b["recency"] == 0
    assert b["T"] == 27

    d = features.loc["D"]
    # D: one row on 01-20 (2, 30.00).
    assert d["recency_days"] == 12           # 02-01 - 01-20
    assert d["purchase_days"] == 1
    assert d["orders"] == 1
    assert d["monetary_total"] == 30.00
    assert d["quantity_total"] == 2
    assert d["tenure_days"] == d["T"] == 12
    assert d["recency"] == 0
    assert math.isnan(d["avg_days_between_purchases"])


def test_default_analysis_date_is_day_after_last_order():
    # The last order is C's on 1997-02-10.
    assert default_analysis_date(tiny_transactions()) == pd.Timestamp("1997-02-11")


def test_default_window_includes_last_day():
    transactions = tiny_transactions()
    features = customer_features(transactions, default_analysis_date(transactions))
    features = features.set_index("customer_id")
    assert list(features.index) == ["A", "B", "C", "D"]
    # C bought on 02-10 only; the analysis date 02-11 is one day later.
    assert features.loc["C", "recency_days"] == 1
    # A's 02-01 row (5, 99.99) is now inside: 35.75 + 99.99, 4 purchase days.
    assert features.loc["A", "monetary_total"] == 135.74
    assert features.loc["A", "purchase_days"] == 4
    assert features.loc["A", "recency"] == 31   # 02-01 - 01-01
    assert features.loc["A", "T"] == 41         # 02-11 - 01-01


def test_date_objects_and_row_order_do_not_matter():
    transactions = tiny_transactions()
    expected = customer_features(transactions, ANALYSIS_DATE)
    as_dates = transactions.sample(frac=1.0, random_state=3).reset_index(drop=True)
    as_dates["order_date"] = [d.date() for d in as_dates["order_date"]]
    got = customer_features(as_dates, dt.date(1997, 2, 1))
    pd.testing.assert_frame_equal(got, expected)


def test_amounts_rounded_to_cents():
    transactions = pd.DataFrame({
        "customer_id": ["X", "X", "X"],
        "order_date": pd.to_datetime(["1997-01-01"] * 3),
        "quantity": np.array([1, 1, 1], dtype="int64"),
        "amount": [0.1, 0.2, 0.7],  # binary floats: the raw sum is 0.9999999999999999
    })
    features = customer_features(transactions, pd.Timestamp("1997-01-02"))
    assert features["monetary_total"].iloc[0] == 1.0


def test_nothing_before_analysis_date_gives_empty_table():
    features = customer_features(tiny_transactions(), pd.Timestamp("1997-01-01"))
    assert len(features) == 0
    assert list(features.columns) == OUTPUT_COLUMNS


def test_customer_ids_sort_as_text():
    transactions = pd.DataFrame({
        "customer_id": ["9", "10", "00010"],
        "order_date": pd.to_datetime(["1997-01-01"] * 3),
        "quantity": np.array([1, 1, 1], dtype="int64"),
        "amount": [1.0, 1.0, 1.0],
    })
    features = customer_features(transactions, pd.Timestamp("1997-01-02"))
    assert list(features["customer_id"]) == ["00010", "10", "9"]


def test_missing_column_is_an_error():
    with pytest.raises(ValueError, match="amount"):
        customer_features(tiny_transactions().drop(columns="amount"), ANALYSIS_DATE)
