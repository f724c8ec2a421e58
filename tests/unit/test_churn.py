import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cdnow.churn import (
    CHURN_FEATURES,
    ChurnModel,
    churn_training_set,
    train_and_score,
)
from cdnow.features import FEATURE_COLUMNS, customer_features, default_analysis_date

MASTER = Path(__file__).resolve().parents[2] / "data" / "CDNOW_master.txt"


def frame(rows) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=["customer_id", "order_date", "quantity", "amount"])
    out["order_date"] = pd.to_datetime(out["order_date"])
    out["quantity"] = out["quantity"].astype("int64")
    return out


def tiny_log() -> pd.DataFrame:
    return frame([
        ("A", "1997-02-01", 1, 10.0),
        ("A", "1997-03-01", 1, 10.0),   # on the cutoff: inside the label window
        ("B", "1997-01-15", 2, 20.0),
        ("B", "1997-03-31", 1, 5.0),    # on cutoff + 30: just outside the window
        ("C", "1997-02-20", 1, 8.0),
        ("C", "1997-03-15", 1, 8.0),
        ("D", "1997-03-10", 1, 9.0),    # first purchase after the cutoff
        ("E", "1997-02-10", 1, 0.0),
    ])


def test_label_by_hand():
    # Cutoff 1997-03-01, horizon 30 days: the label window is [03-01, 03-31).
    training = churn_training_set(tiny_log(), "1997-03-01", 30).set_index("customer_id")
    # D has no purchase before the cutoff: not a customer yet, not in the training set.
    assert list(training.index) == ["A", "B", "C", "E"]
    assert training["churned"].dtype == bool
    assert training["churned"].to_dict() == {
        "A": False,  # bought on 03-01, the window's first day
        "B": True,   # next purchase on 03-31, the day after the window
        "C": False,  # bought on 03-15
        "E": True,   # never again
    }
    # Features are as of the cutoff: A's 03-01 purchase is not in them.
    assert training.loc["A", "purchase_days"] == 1
    assert training.loc["A", "recency_days"] == 28  # 03-01 - 02-01
    assert training.loc["B", "monetary_total"] == 20.0


def random_log(seed: int = 0, customers: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = customers * 6
    start = np.datetime64("1997-01-01")
    return pd.DataFrame({
        "customer_id": [f"{i:05d}" for i in rng.integers(0, customers, n)],
        "order_date": pd.to_datetime(start + rng.integers(0, 365, n).astype("timedelta64[D]")),
        "quantity": rng.integers(1, 5, n).astype("int64"),
        "amount": np.round(rng.uniform(0, 50, n), 2),
    })


def test_rows_on_or_after_cutoff_do_not_change_features():
    cutoff, horizon = pd.Timestamp("1997-08-01"), 90
    log = random_log()
    baseline = churn_training_set(log, cutoff, horizon)

    later = log["order_date"] >= cutoff
    changed = log.copy()
    changed.loc[later, "amount"] = changed.loc[later, "amount"] * 10 + 1
    changed.loc[later, "quantity"] = changed.loc[later, "quantity"] + 7
    # Delete half of the later rows, and add a purchase on the cutoff day for everyone and
    # one on the last observed day (which keeps the window observed).
    later_index = changed.index[later.to_numpy()]
    changed = changed.drop(later_index[::2])
    extra = pd.DataFrame({
        "customer_id": baseline["customer_id"].to_numpy(),
        "order_date": cutoff,
        "quantity": np.int64(3),
        "amount": 99.0,
    })
    last = pd.DataFrame({"customer_id": ["new"], "order_date": [log["order_date"].max()],
                         "quantity": np.array([1], dtype="int64"), "amount": [1.0]})
    changed = pd.concat([changed, extra, last], ignore_index=True)

    after = churn_training_set(changed, cutoff, horizon)
    pd.testing.assert_frame_equal(
        after[["customer_id", "first_purchase_date", "last_purchase_date", *FEATURE_COLUMNS]],
        baseline[["customer_id", "first_purchase_date", "last_purchase_date",
                  *FEATURE_COLUMNS]])
    # The label did see the change: everyone bought on the cutoff day.
    assert not after["churned"].any()
    assert baseline["churned"].any()


def test_unobserved_label_window_is_an_error():
    log = tiny_log()  # last transaction 1997-03-31
    # 03-02 + 30 days = 04-01 = last + 1 day: fully observed, allowed.
    churn_training_set(log, "1997-03-02", 30)
    with pytest.raises(ValueError, match=r"1997-03-03.*1997-04-02.*1997-03-31"):
        churn_training_set(log, "1997-03-03", 30)


def test_model_outputs_churn_probability():
    log = random_log(seed=1)
    training = churn_training_set(log, "1997-08-01", 90)
    model = ChurnModel(random_state=0).fit(training, training["churned"])
    p = model.predict_proba(training)
    assert p.shape == (len(training),)
    assert ((p >= 0) & (p <= 1)).all()
    # P(churn), not P(stay): churners score higher on average.
    churned = training["churned"].to_numpy()
    assert p[churned].mean() > p[~churned].mean()
    assert set(CHURN_FEATURES).isdisjoint({"churned"})


def load_master() -> pd.DataFrame:
    raw = pd.read_csv(MASTER, sep=r"\s+", header=None,
                      names=["customer_id", "order_date", "quantity", "amount"],
                      dtype={"customer_id": str, "order_date": str})
    return pd.DataFrame({
        "customer_id": raw["customer_id"],
        "order_date": pd.to_datetime(raw["order_date"], format="%Y%m%d"),
        "quantity": raw["quantity"].astype("int64"),
        "amount": raw["amount"].astype("float64"),
    })


@pytest.mark.skipif(not MASTER.exists(), reason=f"{MASTER} not present")
def test_train_and_score_on_cdnow_master():
    transactions = load_master()
    analysis_date = default_analysis_date(transactions)
    assert analysis_date == pd.Timestamp("1998-07-01")
    scores, metrics = train_and_score(transactions, analysis_date, horizon_days=180)

    assert list(scores.columns) == ["customer_id", "churn_probability"]
    assert len(scores) == 23570 and scores["customer_id"].is_unique
    features = customer_features(transactions, analysis_date)
    assert list(scores["customer_id"]) == list(features["customer_id"])
    p = scores["churn_probability"].to_numpy()
    assert ((p >= 0) & (p <= 1)).all()

    assert metrics["roc_auc"] > 0.7
    assert metrics["cutoff"] == "1998-01-02"  # 1998-07-01 - 180 days
    assert metrics["horizon_days"] == 180
    assert metrics["n_train"] + metrics["n_validation"] == 23570
    for key in ["roc_auc", "pr_auc", "brier", "log_loss", "base_rate",
                "recency_baseline_roc_auc", "recency_baseline_pr_auc"]:
        assert type(metrics[key]) is float, key
    assert type(metrics["n_train"]) is int
    json.dumps(metrics, allow_nan=False)
