import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from cdnow.domain.features import (
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
    assert a["T"] == 30                      # 01-31 (the window's last day) - 01-01

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
    assert b["T"] == 26                      # 01-31 - 01-05

    d = features.loc["D"]
    # D: one row on 01-20 (2, 30.00).
    assert d["recency_days"] == 12           # 02-01 - 01-20
    assert d["purchase_days"] == 1
    assert d["orders"] == 1
    assert d["monetary_total"] == 30.00
    assert d["quantity_total"] == 2
    assert d["tenure_days"] == 12
    assert d["T"] == 11                      # 01-31 - 01-20: tenure_days - 1
    assert d["recency"] == 0
    assert math.isnan(d["avg_days_between_purchases"])


def expected_table(rows) -> pd.DataFrame:
    """A customer_features table from hand-computed rows, in OUTPUT_COLUMNS order."""
    table = pd.DataFrame(rows, columns=OUTPUT_COLUMNS)
    table["customer_id"] = table["customer_id"].astype("str")
    for name in ["first_purchase_date", "last_purchase_date"]:
        table[name] = pd.to_datetime(table[name]).astype("datetime64[us]")
    for name in ["recency_days", "purchase_days", "repeat_purchases", "orders",
                 "quantity_total", "tenure_days", "frequency", "recency", "T"]:
        table[name] = table[name].astype("int64")
    for name in ["monetary_total", "monetary_avg_per_purchase", "avg_days_between_purchases"]:
        table[name] = table[name].astype("float64")
    return table


NAN = float("nan")


def test_whole_table_by_hand():
    # Every column of every customer of tiny_transactions (see test_every_feature_by_hand).
    # Columns: id, first, last, recency_days, purchase_days, repeat_purchases, orders,
    # monetary_total, monetary_avg_per_purchase, quantity_total, tenure_days,
    # avg_days_between_purchases, frequency, recency, T (= tenure_days - 1).
    expected = expected_table([
        ("A", "1997-01-01", "1997-01-31", 1, 3, 2, 4, 35.75, 35.75 / 3, 7, 31, 15.0, 2, 30, 30),
        ("B", "1997-01-05", "1997-01-05", 27, 1, 0, 2, 24.00, 24.00, 2, 27, NAN, 0, 0, 26),
        ("D", "1997-01-20", "1997-01-20", 12, 1, 0, 1, 30.00, 30.00, 2, 12, NAN, 0, 0, 11),
    ])
    got = customer_features(tiny_transactions(), ANALYSIS_DATE)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)


def same_day_transactions() -> pd.DataFrame:
    """A one-time buyer with three orders on one day; a repeat buyer with several orders on
    some of its purchase days."""
    rows = [
        ("S", "1997-01-10", 1, 5.00),
        ("R", "1997-01-23", 2, 3.00),
        ("S", "1997-01-10", 2, 7.25),
        ("R", "1997-01-03", 1, 10.00),
        ("R", "1997-01-13", 4, 80.00),
        ("S", "1997-01-10", 3, 0.00),
        ("R", "1997-01-03", 1, 2.50),
        ("R", "1997-01-23", 1, 1.00),
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "order_date", "quantity", "amount"])
    frame["order_date"] = pd.to_datetime(frame["order_date"])
    frame["quantity"] = frame["quantity"].astype("int64")
    return frame


def test_same_day_orders_and_one_time_buyers_by_hand():
    # Analysis date 1997-02-01 (exclusive end).
    # R: purchase days 01-03 (2 orders, $12.50, qty 2), 01-13 (1 order, $80.00, qty 4),
    #    01-23 (2 orders, $4.00, qty 3): 3 purchase days, 5 orders, $96.50, qty 9;
    #    recency_days 02-01 - 01-23 = 9, tenure 02-01 - 01-03 = 29, recency 01-23 - 01-03 = 20,
    #    T 01-31 - 01-03 = 28 (to the window's last day),
    #    average gap 20 / 2 = 10 days, $96.50 / 3 per purchase day.
    # S: three orders on 01-10 only: one purchase day (a one-time buyer), 3 orders, $12.25,
    #    qty 6; recency_days = tenure = 02-01 - 01-10 = 22, T = 21; no gap: NaN, frequency 0.
    expected = expected_table([
        ("R", "1997-01-03", "1997-01-23", 9, 3, 2, 5, 96.50, 96.50 / 3, 9, 29, 10.0, 2, 20, 28),
        ("S", "1997-01-10", "1997-01-10", 22, 1, 0, 3, 12.25, 12.25, 6, 22, NAN, 0, 0, 21),
    ])
    got = customer_features(same_day_transactions(), ANALYSIS_DATE)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)


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
    assert features.loc["A", "T"] == 40         # 02-10 (the last day) - 01-01


def test_date_objects_and_row_order_do_not_matter():
    transactions = tiny_transactions()
    expected = customer_features(transactions, ANALYSIS_DATE)
    as_dates = transactions.sample(frac=1.0, random_state=3).reset_index(drop=True)
    as_dates["order_date"] = [d.date() for d in as_dates["order_date"]]
    got = customer_features(as_dates, dt.date(1997, 2, 1))
    pd.testing.assert_frame_equal(got, expected)


def test_rows_grouped_by_customer_give_the_same_table_as_any_order():
    # The Transform writes rows grouped by customer in id order (one pass finds the customers);
    # shuffled rows are hashed. Ids that sort differently as text and as numbers included.
    rng = np.random.default_rng(5)
    ids = np.array(["9", "10", "00010", "A", "a", "Ä", "b"])[rng.integers(0, 7, 400)]
    log = pd.DataFrame({
        "customer_id": pd.Series(ids, dtype="str"),
        "order_date": pd.Timestamp("1997-01-01") + pd.to_timedelta(rng.integers(0, 90, 400), unit="D"),
        "quantity": rng.integers(1, 5, 400).astype("int64"),
        "amount": np.round(rng.uniform(0, 30, 400), 2),
    })
    grouped = log.sort_values(["customer_id", "order_date"], kind="stable", ignore_index=True)
    expected = customer_features(log, "1997-04-01")
    pd.testing.assert_frame_equal(customer_features(grouped, "1997-04-01"), expected)
    assert list(expected["customer_id"]) == ["00010", "10", "9", "A", "a", "b", "Ä"]
    assert expected["orders"].sum() == 400


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


def order_lines(rows) -> pd.DataFrame:
    """Rows (customer, date, quantity, amount, is_return, order_id) as the Transform writes them."""
    frame = pd.DataFrame(rows, columns=["customer_id", "order_date", "quantity", "amount", "is_return", "order_id"])
    frame["order_date"] = pd.to_datetime(frame["order_date"])
    frame["quantity"] = frame["quantity"].astype("int64")
    return frame


def test_returns_net_spend_and_quantity_but_make_no_purchase_day():
    transactions = order_lines([
        ("A", "1997-01-01", 2, 20.00, False, "1001"),
        ("A", "1997-01-01", 1, 5.00, False, "1001"),    # another line of the same order
        ("A", "1997-01-10", -1, -10.00, True, "C1002"),  # a cancellation: nets, is no purchase day
        ("A", "1997-01-20", 1, 7.50, False, "1003"),
        ("B", "1997-01-05", 1, 3.00, False, "1004"),
        ("B", "1997-01-06", -1, -8.00, True, "C1005"),  # returns more than bought: net below zero
        ("R", "1997-01-07", -2, -4.00, True, "C1006"),  # returns only: no customer of the analysis
    ])
    features = customer_features(transactions, ANALYSIS_DATE)
    assert features.attrs["customers_without_purchase"] == 1
    by_id = features.set_index("customer_id")
    assert list(by_id.index) == ["A", "B"]
    a, b = by_id.loc["A"], by_id.loc["B"]
    # Two purchase days (01-01, 01-20): the return on 01-10 is neither a purchase day nor the last.
    assert (a["purchase_days"], a["repeat_purchases"], a["orders"]) == (2, 1, 2)
    assert (a["first_purchase_date"], a["last_purchase_date"]) == (pd.Timestamp("1997-01-01"),
                                                                   pd.Timestamp("1997-01-20"))
    assert (a["quantity_total"], a["monetary_total"]) == (3, 22.50)
    assert a["monetary_avg_per_purchase"] == pytest.approx(11.25)
    assert (b["purchase_days"], b["orders"], b["quantity_total"], b["monetary_total"]) == (1, 1, 0, -5.00)


def test_orders_count_distinct_order_ids_and_rows_without_one():
    transactions = order_lines([
        ("A", "1997-01-01", 1, 1.00, False, "1"),
        ("A", "1997-01-01", 1, 1.00, False, "1"),
        ("A", "1997-01-02", 1, 1.00, False, "2"),
        ("B", "1997-01-01", 1, 1.00, False, "1"),   # an order id is counted per customer
        ("B", "1997-01-03", 1, 1.00, False, None),  # no order id: an order of its own
        ("B", "1997-01-03", 1, 1.00, False, None),
    ])
    features = customer_features(transactions, ANALYSIS_DATE).set_index("customer_id")
    assert features["orders"].to_dict() == {"A": 2, "B": 3}
    assert features["purchase_days"].to_dict() == {"A": 2, "B": 2}


def test_a_window_with_only_returns_gives_an_empty_table_and_counts_them():
    transactions = order_lines([("R", "1997-01-07", -2, -4.00, True, "C1")])
    features = customer_features(transactions, ANALYSIS_DATE)
    assert features.empty and features.attrs["customers_without_purchase"] == 1


def test_a_log_joined_from_pieces_gives_the_same_features():
    # pd.concat keeps each piece's text column as one chunk of an arrow array: the customer
    # codes failed on it ('ChunkedArray' object has no attribute 'dictionary').
    transactions = tiny_transactions()
    transactions["customer_id"] = transactions["customer_id"].astype("str")
    half = len(transactions) // 2
    joined = pd.concat([transactions.iloc[:half], transactions.iloc[half:]], ignore_index=True)
    pd.testing.assert_frame_equal(customer_features(joined, ANALYSIS_DATE),
                                  customer_features(transactions, ANALYSIS_DATE))
