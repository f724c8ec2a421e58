import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cdnow.domain.churn import (
    CANDIDATE_MODELS,
    CHURN_FEATURES,
    CHURN_INPUTS,
    FEATURE_BASIS,
    LABEL,
    RISK_BANDS,
    SCORE_COLUMNS,
    Baseline,
    ChurnResult,
    ClipToTrainingRange,
    LeakageError,
    ThresholdLabel,
    bgnbd_baselines,
    check_features_as_of,
    check_label,
    churn_design_matrix,
    churn_training_set,
    cumulative_gains,
    risk_band,
    train_and_score,
)
from cdnow.domain.churn import _candidate, _folds, _nested_out_of_fold
from cdnow.domain.features import FEATURE_COLUMNS, OUTPUT_COLUMNS, customer_features, default_analysis_date
from cdnow_offline.datasets import MASTER, read_cdnow



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


def lifecycle_log(seed: int = 0, customers: int = 2000,
                  spend_matters: bool = False) -> pd.DataFrame:
    """Customers who buy at a steady rate until they silently leave (1997-01-01..1998-12-31).

    Lifetimes are exponential (mean 300 days); with ``spend_matters`` the mean is 900 days for
    customers whose typical basket is within exp(+-0.4) of $15 and 120 days otherwise: a
    churn hazard that is not monotone in spend, which a linear model cannot express.
    """
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 90, customers)
    price = np.exp(rng.normal(np.log(15), 0.6, customers))
    if spend_matters:
        mid = np.abs(np.log(price) - np.log(15)) < 0.4
        life = rng.exponential(np.where(mid, 900.0, 120.0))
    else:
        life = rng.exponential(300.0, customers)
    rate = rng.uniform(3, 12, customers) / 365
    end = np.minimum(first + life, 730)
    repeats = rng.poisson(rate * (end - first))
    who = np.repeat(np.arange(customers), repeats)
    when = first[who] + rng.uniform(0, 1, repeats.sum()) * (end - first)[who]
    who, when = np.r_[np.arange(customers), who], np.r_[first, when].astype(np.int64)
    return pd.DataFrame({
        "customer_id": pd.array([f"c{i:05d}" for i in who], dtype="str"),
        "order_date": pd.Timestamp("1997-01-01") + pd.to_timedelta(when, unit="D"),
        "quantity": rng.integers(1, 4, len(who)).astype("int64"),
        "amount": np.round(price[who] * rng.uniform(0.8, 1.2, len(who)), 2),
    })


# --- temporal design --------------------------------------------------------------------------

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


def change_from(log: pd.DataFrame, cutoff: pd.Timestamp, customers) -> pd.DataFrame:
    """``log`` with every row on or after ``cutoff`` altered, half of them deleted, and a
    purchase on the cutoff day for each of ``customers`` (and one on the last day)."""
    later = log["order_date"] >= cutoff
    changed = log.copy()
    changed.loc[later, "amount"] = changed.loc[later, "amount"] * 10 + 1
    changed.loc[later, "quantity"] = changed.loc[later, "quantity"] + 7
    changed = changed.drop(changed.index[later.to_numpy()][::2])
    extra = pd.DataFrame({"customer_id": list(customers), "order_date": cutoff,
                          "quantity": np.int64(3), "amount": 99.0})
    last = pd.DataFrame({"customer_id": ["new"], "order_date": [log["order_date"].max()],
                         "quantity": np.array([1], dtype="int64"), "amount": [1.0]})
    return pd.concat([changed, extra, last], ignore_index=True)


def test_rows_on_or_after_cutoff_do_not_change_features():
    cutoff, horizon = pd.Timestamp("1997-08-01"), 90
    log = random_log()
    baseline = churn_training_set(log, cutoff, horizon)
    changed = change_from(log, cutoff, baseline["customer_id"])

    after = churn_training_set(changed, cutoff, horizon)
    columns = ["customer_id", "first_purchase_date", "last_purchase_date", *FEATURE_COLUMNS]
    pd.testing.assert_frame_equal(after[columns], baseline[columns])
    # The model's inputs too (and they never read the label column).
    pd.testing.assert_frame_equal(churn_design_matrix(after), churn_design_matrix(baseline))
    # The label did see the change: everyone bought on the cutoff day.
    assert not after["churned"].any()
    assert baseline["churned"].any()


def test_train_and_score_trains_on_features_as_of_the_cutoff():
    # Through the public entry point: a baseline receives exactly the training window's
    # feature table. Rewriting everything on or after the cutoff changes the labels (and so the
    # model), never that table.
    log = lifecycle_log(seed=3, customers=600)
    analysis = pd.Timestamp("1998-07-01")
    cutoff = analysis - pd.Timedelta(days=180)
    seen = []

    def spy(features: pd.DataFrame) -> np.ndarray:
        seen.append(features)
        return np.zeros(len(features))

    original = train_and_score(log, analysis, 180, baselines={"spy": spy})
    changed_log = change_from(log, cutoff, ["c00000", "c00001"])
    changed = train_and_score(changed_log, analysis, 180, baselines={"spy": spy})

    assert original.metrics["cutoff"] == cutoff.date().isoformat() == "1998-01-02"
    expected = customer_features(log, cutoff)
    assert LABEL not in seen[0].columns
    pd.testing.assert_frame_equal(seen[0].reset_index(drop=True), expected)
    pd.testing.assert_frame_equal(seen[1].reset_index(drop=True), expected)
    assert original.metrics["base_rate"] != changed.metrics["base_rate"]


def test_unobserved_label_window_is_an_error():
    log = tiny_log()  # last transaction 1997-03-31
    # 03-02 + 30 days = 04-01 = last + 1 day: fully observed, allowed.
    churn_training_set(log, "1997-03-02", 30)
    with pytest.raises(ValueError, match=r"1997-03-03.*1997-04-02.*1997-03-31"):
        churn_training_set(log, "1997-03-03", 30)


def test_label_window_must_end_by_the_analysis_date():
    log = lifecycle_log(seed=1, customers=300)
    with pytest.raises(ValueError, match=r"ends after the analysis date 1998-07-01.*1998-01-02"):
        train_and_score(log, "1998-07-01", 180, cutoff="1998-01-03")
    result = train_and_score(log, "1998-07-01", 180, cutoff="1997-12-01")
    assert result.metrics["cutoff"] == "1997-12-01"
    assert result.metrics["analysis_date"] == "1998-07-01"


# --- leakage guard ----------------------------------------------------------------------------

def test_a_threshold_label_is_refused_as_leakage():
    log = lifecycle_log(seed=1, customers=300)
    with pytest.raises(LeakageError) as refused:
        train_and_score(log, "1998-07-01", horizon_days=180,
                        label={"feature": "recency_days", "threshold": 90})
    message = str(refused.value)
    assert isinstance(refused.value, ValueError)
    assert "'recency_days > 90'" in message
    assert "log1p_recency_days" in message          # the input that restates it
    assert "no_purchase_in_horizon" in message      # what to do instead

    # A restatement of a model input is refused too: T is the model's tenure_days.
    with pytest.raises(LeakageError, match=r"'T'.*tenure_days"):
        train_and_score(log, "1998-07-01", 180, label=ThresholdLabel("T", 300))
    with pytest.raises(LeakageError, match="frequency"):
        churn_training_set(log, "1998-01-02", 180,
                           label={"feature": "frequency", "threshold": 0, "direction": "<="})


@pytest.mark.parametrize("feature", sorted(FEATURE_BASIS))
def test_every_customer_feature_threshold_is_leakage(feature):
    with pytest.raises(LeakageError, match=repr(feature)):
        check_label({"feature": feature, "threshold": 1})


def test_every_feature_column_has_a_basis():
    # A new column of the customer table cannot dodge the guard without saying what it restates.
    assert set(FEATURE_BASIS) == set(OUTPUT_COLUMNS) - {"customer_id"}
    assert set(CHURN_FEATURES) <= set(FEATURE_COLUMNS)
    assert LABEL not in CHURN_FEATURES


def test_unknown_labels_are_errors_but_not_leakage():
    assert check_label("no_purchase_in_horizon") == "no_purchase_in_horizon"
    for label in ["recency_days > 90", {"feature": "customer_id", "threshold": 1},
                  {"column": "recency_days"}, 90]:
        with pytest.raises(ValueError) as error:
            check_label(label)
        assert not isinstance(error.value, LeakageError), label


def test_features_not_computed_as_of_the_cutoff_are_refused():
    log = random_log()
    cutoff = pd.Timestamp("1997-08-01")
    check_features_as_of(customer_features(log, cutoff), cutoff)
    # Computed at the end of the label window: sees purchases in it.
    with pytest.raises(LeakageError, match="on or after 1997-08-01"):
        check_features_as_of(customer_features(log, cutoff + pd.Timedelta(days=90)), cutoff)
    # Computed earlier: no late purchase, but ages are measured to another date.
    with pytest.raises(LeakageError, match="not computed as of 1997-08-01"):
        check_features_as_of(customer_features(log, cutoff - pd.Timedelta(days=30)), cutoff)


# --- model inputs and helpers -----------------------------------------------------------------

def test_design_matrix_by_hand():
    log = frame([
        ("A", "1997-01-01", 1, 10.0),
        ("A", "1997-01-11", 2, 30.0),
        ("B", "1997-01-05", 1, -5.0),   # a net refund
    ])
    features = customer_features(log, "1997-02-01")
    x = churn_design_matrix(features)
    assert list(x.columns) == list(CHURN_INPUTS)
    a, b = x.iloc[0], x.iloc[1]
    assert a["log1p_recency_days"] == pytest.approx(math.log1p(21))
    assert a["log1p_purchase_days"] == pytest.approx(math.log1p(2))
    assert a["log1p_monetary_avg_per_purchase"] == pytest.approx(math.log1p(20))
    assert a["log1p_avg_days_between_purchases"] == pytest.approx(math.log1p(10))
    assert a["one_time_buyer"] == 0.0 and b["one_time_buyer"] == 1.0
    assert math.isnan(b["log1p_avg_days_between_purchases"])  # no gap for a one-time buyer
    assert b["log1p_monetary_total"] == 0.0                    # refund clipped to no spend
    assert a["tenure_days"] == 31


def test_cumulative_gains_by_hand_with_ties():
    # 20 customers, 4 churners. Top 10% = 2 customers: the 0.9 (a churner) and one of the four
    # tied at 0.5, two of whom churn: 1 + 1 * 2/4 = 1.5 churners expected. Top 25% = the 0.9
    # and the whole tie: 3 churners.
    score = np.array([0.9, 0.5, 0.5, 0.5, 0.5] + [0.1] * 15)
    y = np.array([1, 1, 0, 1, 0] + [1] + [0] * 14)
    gains = cumulative_gains(y, score, [0.0, 0.1, 0.25, 1.0])
    np.testing.assert_allclose(gains, [0.0, 1.5 / 4, 3 / 4, 1.0])
    # A constant score captures exactly the share targeted.
    np.testing.assert_allclose(cumulative_gains(y, np.ones(20), [0.1, 0.5]), [0.1, 0.5])


def test_risk_bands():
    p = [0.0, 0.3999, 0.4, 0.6999, 0.7, 1.0]
    assert list(risk_band(p)) == ["low", "low", "medium", "medium", "high", "high"]
    assert RISK_BANDS == ("low", "medium", "high")


# --- train_and_score --------------------------------------------------------------------------

CV_FIGURES = ("roc_auc", "pr_auc", "brier", "log_loss", "lift_top_decile")
BACKTEST_FIGURES = ("roc_auc", "pr_auc", "brier", "log_loss", "lift_top_decile",
                    "predicted_churn_rate", "actual_churn_rate", "recency_baseline_roc_auc")


def cv_keys(prefix: str = "", suffix: str = "", probability: bool = True) -> list[str]:
    """The mean and sd keys of every cross-validated figure of one score."""
    return [f"{prefix}cv_{figure}_{stat}{suffix}" for figure in CV_FIGURES
            if probability or figure not in ("brier", "log_loss") for stat in ("mean", "sd")]


def check_backtest(metrics: dict, cutoff: pd.Timestamp) -> None:
    """Either a complete back-test one horizon back, or a reason and none of its figures."""
    horizon = pd.Timedelta(days=metrics["horizon_days"])
    assert metrics["backtest_train_cutoff"] == (cutoff - horizon).date().isoformat()
    assert metrics["backtest_score_date"] == cutoff.date().isoformat()
    figures = [f"backtest_{name}" for name in BACKTEST_FIGURES]
    if "backtest_skipped" in metrics:
        assert type(metrics["backtest_skipped"]) is str and metrics["backtest_skipped"]
        assert not any(key in metrics for key in [*figures, "backtest_n_customers"])
        return
    for key in figures:
        assert type(metrics[key]) is float, key
    assert type(metrics["backtest_n_customers"]) is int and type(metrics["backtest_n_train"]) is int
    # It scores the customers of the main training window, whose labels are its truth.
    assert metrics["backtest_n_customers"] == metrics["n_train"]
    assert metrics["backtest_actual_churn_rate"] == pytest.approx(metrics["base_rate"])
    assert 0 < metrics["backtest_predicted_churn_rate"] < 1


def check_result(result: ChurnResult, transactions: pd.DataFrame, analysis_date) -> None:
    """What every run must satisfy, whatever the data."""
    scores, metrics = result  # the tuple form the pipeline unpacks
    features = customer_features(transactions, analysis_date)
    assert list(scores.columns) == SCORE_COLUMNS
    assert list(scores["customer_id"]) == list(features["customer_id"])
    p = scores["churn_probability"].to_numpy()
    assert p.dtype == np.float64 and ((p >= 0) & (p <= 1)).all()
    assert set(scores["risk_band"]) <= set(RISK_BANDS)
    np.testing.assert_array_equal(scores["risk_band"].to_numpy(dtype=object), risk_band(p))
    drivers = scores[[f"top_driver_{i}" for i in (1, 2, 3)]]
    for row in drivers.itertuples(index=False):
        named = [d for d in row if isinstance(d, str)]
        assert set(named) <= set(CHURN_INPUTS)
        assert len(set(named)) == len(named)
        # Once a slot is empty, the later ones are too.
        assert list(row[:len(named)]) == named

    # Flat and JSON-ready: numbers (no bool, no NaN) and strings only, one level.
    assert all(type(v) in (int, float, str) for v in metrics.values()), metrics
    assert all(math.isfinite(v) for v in metrics.values() if type(v) is float)
    json.dumps(metrics, allow_nan=False)
    for key in ["roc_auc", "pr_auc", "brier", "log_loss", "calibration_error",
                "lift_top_decile", "capture_top_decile", "base_rate", "validation_base_rate",
                "recency_baseline_roc_auc", "recency_baseline_pr_auc",
                "recency_baseline_lift_top_decile", "recency_baseline_capture_top_decile",
                *(f"cv_pr_auc_{name}" for name in CANDIDATE_MODELS),
                *cv_keys(), *cv_keys(prefix="recency_baseline_", probability=False),
                *(key for name in CANDIDATE_MODELS for key in cv_keys(suffix=f"_{name}"))]:
        assert type(metrics[key]) is float, key
    for key in ["n_train", "n_validation", "n_scored", "horizon_days", "cv_folds", "cv_rows"]:
        assert type(metrics[key]) is int, key
    # The recency rule ranks customers by days; it is not a probability.
    for key in ["recency_baseline_brier", "recency_baseline_log_loss",
                "recency_baseline_cv_brier_mean", "recency_baseline_cv_log_loss_sd"]:
        assert key not in metrics, key
    # Mean and spread over the folds: an sd is a spread, not a placeholder, and smaller than
    # the mean it qualifies. (A candidate's can be 0: gradient boosting makes no split on a
    # few hundred customers with min_samples_leaf=200, and scores 0.5 on every fold.)
    for key in metrics:
        if key.startswith("cv_") and "_sd" in key or "_baseline_cv_" in key and key.endswith("_sd"):
            assert 0 <= metrics[key] < 0.5 * metrics[key.replace("_sd", "_mean")], key
    for key in cv_keys() + cv_keys(prefix="recency_baseline_", probability=False):
        assert metrics[key] > 0, key
    # The headline is the chosen candidate's own cross-validated figures.
    chosen = metrics["chosen_model"]
    assert chosen in CANDIDATE_MODELS and metrics["selection_metric"] == "cv_log_loss_mean"
    assert {key: metrics[key] for key in cv_keys()} == {
        key: metrics[f"{key}_{chosen}"] for key in cv_keys()}
    for name in CANDIDATE_MODELS:
        assert metrics[f"cv_pr_auc_{name}"] == metrics[f"cv_pr_auc_mean_{name}"]
    if chosen != "logistic_regression":  # the simpler model unless clearly beaten
        assert (metrics[f"cv_log_loss_mean_{chosen}"]
                < metrics["cv_log_loss_mean_logistic_regression"])
    assert metrics["n_scored"] == len(scores)
    cutoff = pd.Timestamp(metrics["cutoff"])
    # No fixed split: the final model learns from the whole window, and every customer of
    # the cross-validation (all of them below max_cv_rows) is held out once.
    assert metrics["n_train"] == len(
        churn_training_set(transactions, cutoff, metrics["horizon_days"]))
    assert metrics["n_validation"] == metrics["cv_rows"] <= metrics["n_train"]
    assert metrics["cv_folds"] == 5
    # The pooled out-of-fold figures agree with the fold means for the additive ones (folds
    # of near-equal size).
    for figure in ["brier", "log_loss"]:
        assert metrics[figure] == pytest.approx(metrics[f"cv_{figure}_mean"], abs=2e-3)
    check_backtest(metrics, cutoff)
    assert sum(metrics[f"share_{band}_risk"] for band in RISK_BANDS) == pytest.approx(1.0)

    # Lift and capture: capture = lift x 0.1 by definition.
    for prefix in ["", "recency_baseline_"]:
        assert metrics[f"{prefix}capture_top_decile"] == pytest.approx(
            metrics[f"{prefix}lift_top_decile"] * 0.1, rel=1e-12)

    table = result.calibration
    assert len(table) == 10
    assert sum(row["count"] for row in table) == metrics["n_validation"]
    # The table bins the same out-of-fold probabilities the pooled figures are measured on.
    predicted = sum(row["count"] * row["mean_predicted"] for row in table if row["count"])
    observed = sum(row["count"] * row["observed_rate"] for row in table if row["count"])
    assert observed / metrics["n_validation"] == pytest.approx(metrics["validation_base_rate"])
    assert (abs(predicted - observed) / metrics["n_validation"]
            <= metrics["calibration_error"] + 1e-12)
    for row in table:
        if row["count"]:
            assert row["lower"] <= row["mean_predicted"] <= row["upper"]
            assert 0 <= row["observed_rate"] <= 1
        else:
            assert row["mean_predicted"] is None and row["observed_rate"] is None
    json.dumps(table, allow_nan=False)

    for prefix in ["", "recency_baseline_"]:
        for name in ["roc", "precision_recall", "gains", "lift"]:
            curve = result.curves[prefix + name]
            assert 2 <= len(curve["x"]) == len(curve["y"]) <= 100
            assert all(type(v) is float for v in curve["x"] + curve["y"])
        gains = result.curves[prefix + "gains"]
        assert gains["x"][0] == 0.0 and gains["y"][0] == 0.0 and gains["y"][-1] == 1.0
        assert gains["y"][1] == metrics[f"{prefix}capture_top_decile"]
        assert result.curves[prefix + "lift"]["y"][0] == pytest.approx(
            metrics[f"{prefix}lift_top_decile"])
    json.dumps(result.curves, allow_nan=False)

    assert sorted(row["feature"] for row in result.drivers) == sorted(CHURN_INPUTS)
    assert all(CHURN_INPUTS[row["feature"]][0] == row["source"] for row in result.drivers)
    json.dumps(result.drivers, allow_nan=False)


def test_train_and_score_on_a_synthetic_log_is_complete_and_deterministic():
    log = lifecycle_log(seed=0, customers=1000)
    result = train_and_score(log, "1998-07-01", horizon_days=180)
    check_result(result, log, "1998-07-01")
    again = train_and_score(log.sample(frac=1.0, random_state=1), "1998-07-01", 180)
    pd.testing.assert_frame_equal(again.scores, result.scores)
    # Every figure, the cross-validated ones and the back-test's included.
    assert "backtest_roc_auc" in result.metrics and "cv_roc_auc_sd" in result.metrics
    assert again.metrics == result.metrics
    assert again.curves == result.curves and again.calibration == result.calibration


def test_gradient_boosting_is_kept_when_it_cross_validates_better():
    # Churn hazard not monotone in spend: the trees see it, the linear model cannot.
    log = lifecycle_log(seed=0, customers=2000, spend_matters=True)
    result = train_and_score(log, "1998-07-01", 180)
    metrics = result.metrics
    assert metrics["chosen_model"] == "hist_gradient_boosting"
    # Chosen by cross-validated log loss, lower by 10%: no tie.
    assert (metrics["cv_log_loss_mean_hist_gradient_boosting"]
            < 0.9 * metrics["cv_log_loss_mean_logistic_regression"])
    assert (metrics["cv_roc_auc_mean_hist_gradient_boosting"]
            > metrics["cv_roc_auc_mean_logistic_regression"] + 0.01)
    assert (metrics["cv_pr_auc_hist_gradient_boosting"]
            > metrics["cv_pr_auc_logistic_regression"] + 0.005)
    assert metrics["cv_roc_auc_mean"] == metrics["cv_roc_auc_mean_hist_gradient_boosting"]
    assert metrics["cv_roc_auc_mean"] > metrics["recency_baseline_cv_roc_auc_mean"]
    assert metrics["pr_auc"] > metrics["recency_baseline_pr_auc"]
    # Drivers still come from the logistic regression fitted on the same window.
    check_result(result, log, "1998-07-01")

    linear = train_and_score(lifecycle_log(seed=0, customers=2000), "1998-07-01", 180)
    assert linear.metrics["chosen_model"] == "logistic_regression"


def test_extra_baselines_are_compared_on_the_same_customers():
    log = lifecycle_log(seed=2, customers=800)

    def p_alive_churn(features: pd.DataFrame) -> np.ndarray:
        # Stands in for a model's P(no purchase in the horizon): a probability in [0, 1].
        return 1 - np.exp(-features["recency_days"].to_numpy() / 60)

    def recent_spend(features: pd.DataFrame) -> pd.Series:
        return -features["monetary_total"]

    result = train_and_score(log, "1998-07-01", 180, baselines={
        "bgnbd": Baseline(p_alive_churn, is_probability=True), "spend": recent_spend})
    m = result.metrics
    for name in ["bgnbd", "spend"]:
        for key in ["roc_auc", "pr_auc", "lift_top_decile", "capture_top_decile"]:
            assert type(m[f"{name}_baseline_{key}"]) is float
        assert f"{name}_baseline_roc" in result.curves
    assert type(m["bgnbd_baseline_brier"]) is float and type(m["bgnbd_baseline_log_loss"]) is float
    assert "spend_baseline_brier" not in m
    # 1 - exp(-recency / 60) is increasing in recency: it ranks exactly like the recency rule.
    assert m["bgnbd_baseline_roc_auc"] == pytest.approx(m["recency_baseline_roc_auc"])
    assert m["bgnbd_baseline_pr_auc"] == pytest.approx(m["recency_baseline_pr_auc"])
    assert m["bgnbd_baseline_capture_top_decile"] == pytest.approx(
        m["recency_baseline_capture_top_decile"])
    # The same customers on the same folds: every cross-validated ranking figure agrees too,
    # and only the probability gets a cross-validated Brier score and log loss.
    for key in cv_keys(probability=False):
        assert m[f"bgnbd_baseline_{key}"] == pytest.approx(m[f"recency_baseline_{key}"]), key
        assert type(m[f"spend_baseline_{key}"]) is float, key
    for key in ["cv_brier_mean", "cv_brier_sd", "cv_log_loss_mean", "cv_log_loss_sd"]:
        assert type(m[f"bgnbd_baseline_{key}"]) is float
        assert f"spend_baseline_{key}" not in m

    with pytest.raises(ValueError, match="one score per customer"):
        train_and_score(log, "1998-07-01", 180, baselines={"short": lambda f: np.zeros(3)})
    with pytest.raises(ValueError, match="outside"):
        train_and_score(log, "1998-07-01", 180, baselines={
            "bad": Baseline(lambda f: f["recency_days"], is_probability=True)})
    with pytest.raises(ValueError, match="taken"):
        train_and_score(log, "1998-07-01", 180, baselines={"recency": lambda f: np.zeros(len(f))})
    with pytest.raises(ValueError, match="lowercase"):
        train_and_score(log, "1998-07-01", 180, baselines={"P alive": lambda f: np.zeros(len(f))})


# --- cross-validation, clipping, back-test ---------------------------------------------------

def test_out_of_fold_probabilities_never_saw_their_fold_nor_did_their_calibrator():
    # Each fold's calibrated probabilities come from a model and a Platt map fitted without
    # the fold: rewriting every label of the fold cannot change them (it changes the others).
    log = lifecycle_log(seed=4, customers=600)
    training = churn_training_set(log, "1998-01-02", 180)
    x = churn_design_matrix(training).to_numpy()
    y = training[LABEL].to_numpy(dtype=np.int64)
    folds = _folds(y, 5, random_state=0)
    for name in CANDIDATE_MODELS:
        raw, calibrated = _nested_out_of_fold(_candidate(name, 0), x, y, folds)
        assert ((calibrated > 0) & (calibrated < 1)).all()
        for k, (_, held_out) in enumerate(folds):
            flipped = y.copy()
            flipped[held_out] = 1 - flipped[held_out]
            raw_k, calibrated_k = _nested_out_of_fold(_candidate(name, 0), x, flipped, folds)
            np.testing.assert_array_equal(calibrated_k[held_out], calibrated[held_out])
            np.testing.assert_array_equal(raw_k[held_out], raw[held_out])
            others = np.setdiff1d(np.arange(len(y)), held_out)
            assert not np.allclose(calibrated_k[others], calibrated[others]), (name, k)


def test_clip_to_training_range_by_hand():
    train = np.array([[1.0, 10.0, np.nan], [3.0, np.nan, np.nan], [2.0, 30.0, np.nan]])
    clip = ClipToTrainingRange().fit(train)
    np.testing.assert_array_equal(clip.data_min_[:2], [1.0, 10.0])
    np.testing.assert_array_equal(clip.data_max_[:2], [3.0, 30.0])
    out = clip.transform(np.array([[0.0, 50.0, 7.0], [2.5, np.nan, np.nan], [9.0, 20.0, 1.0]]))
    # Below, inside and above the range; NaN stays NaN; a column the model only saw as NaN
    # maps to NaN.
    np.testing.assert_array_equal(out[:, :2], [[1.0, 30.0], [2.5, np.nan], [3.0, 20.0]])
    assert np.isnan(out[:, 2]).all()


def test_scoring_never_takes_an_input_outside_the_training_range():
    # A single cohort (first purchases in Q1 1997): at the analysis date every tenure, and the
    # recency of everyone who lapsed before the cutoff, is larger than any seen in training.
    # Two one-time buyers of the same basket, 15 days apart, are then the same to the model
    # (unclipped, the later one would look less lapsed); a recent buyer is not.
    extra = pd.DataFrame({
        "customer_id": pd.array(["x_early", "x_late", "z_recent"], dtype="str"),
        "order_date": pd.to_datetime(["1997-01-05", "1997-01-20", "1998-03-01"]),
        "quantity": np.array([1, 1, 1], dtype="int64"),
        "amount": [15.0, 15.0, 15.0],
    })
    log = pd.concat([lifecycle_log(seed=5, customers=800), extra], ignore_index=True)
    result = train_and_score(log, "1998-07-01", 180)
    check_result(result, log, "1998-07-01")
    p = result.scores.set_index("customer_id")["churn_probability"]
    now, then = customer_features(log, "1998-07-01"), customer_features(log, "1998-01-02")
    cohort = now[now["customer_id"].isin(then["customer_id"])]
    assert cohort["tenure_days"].min() > then["tenure_days"].max()
    assert p["x_early"] == p["x_late"]
    assert p["z_recent"] < p["x_early"]


def shifted_log() -> pd.DataFrame:
    """lifecycle_log with all but five customers starting 200 days later (rows past
    1998-06-30 dropped): only five had bought by 1997-07-06."""
    log = lifecycle_log(seed=6, customers=600)
    late = ~log["customer_id"].isin([f"c{i:05d}" for i in range(5)])
    log.loc[late, "order_date"] += pd.Timedelta(days=200)
    return log[log["order_date"] < "1998-07-01"].reset_index(drop=True)


@pytest.mark.parametrize("case", ["250 days", "380 days", "few customers"])
def test_a_history_too_short_for_the_backtest_skips_it_with_a_reason(case):
    if case == "few customers":
        log, analysis = shifted_log(), pd.Timestamp("1998-07-01")
        reason = (r"of the 5 customers who bought before the back-test's training cutoff "
                  r"1997-07-06, .* each class needs at least 10")
    else:
        days = int(case.split()[0])
        analysis = pd.Timestamp("1997-01-01") + pd.Timedelta(days=days)
        log = lifecycle_log(seed=0, customers=1000)
        log = log[log["order_date"] < analysis].reset_index(drop=True)
        reason = (r"the history starts on 1997-01-01, less than two 180-day horizons before "
                  r"the end of the label window" if days == 250 else
                  r"the back-test would train as of 1997-01-21, with 20 day\(s\) of history "
                  r"before it, fewer than 28")
    with pytest.warns(UserWarning, match="churn back-test skipped: " + reason):
        result = train_and_score(log, analysis, 180)
    m = result.metrics
    assert re.match(reason, m["backtest_skipped"])
    assert ". " not in m["backtest_skipped"]  # one sentence
    # The model still trains, cross-validates and scores.
    check_result(result, log, analysis)
    # (Better than chance; with 70 days of history before the cutoff, not by much: 0.57.)
    assert m["cv_roc_auc_mean"] > 0.55 and len(result.scores) == m["n_scored"] > 0


def test_the_cross_validation_uses_at_most_max_cv_rows_customers():
    log = lifecycle_log(seed=1, customers=1000)
    result = train_and_score(log, "1998-07-01", 180, max_cv_rows=400)
    m = result.metrics
    assert m["n_train"] == 1000 and m["cv_rows"] == m["n_validation"] == 400
    assert sum(row["count"] for row in result.calibration) == 400
    assert m["backtest_n_customers"] == 1000  # the back-test scores everyone
    check_result(result, log, "1998-07-01")


def test_cv_folds_must_allow_the_nested_calibration():
    log = lifecycle_log(seed=1, customers=300)
    with pytest.raises(ValueError, match="cv_folds must be at least 3"):
        train_and_score(log, "1998-07-01", 180, cv_folds=2)
    m = train_and_score(log, "1998-07-01", 180, cv_folds=3).metrics
    assert m["cv_folds"] == 3 and m["cv_roc_auc_sd"] > 0


# --- CDNOW master -----------------------------------------------------------------------------

needs_master = pytest.mark.skipif(not MASTER.exists(), reason=f"{MASTER} not present")


@pytest.fixture(scope="module")
def master():
    return read_cdnow()


@pytest.fixture(scope="module")
def master_run(master):
    analysis_date = default_analysis_date(master)
    return analysis_date, train_and_score(master, analysis_date, horizon_days=180,
                                          baselines=bgnbd_baselines(180))


@needs_master
def test_train_and_score_on_cdnow_master(master, master_run):
    analysis_date, result = master_run
    assert analysis_date == pd.Timestamp("1998-07-01")
    check_result(result, master, analysis_date)
    m = result.metrics
    # Deterministic: the same call, the same figures (folds, models, back-test).
    assert train_and_score(master, analysis_date, 180, baselines=bgnbd_baselines(180)).metrics == m
    assert len(result.scores) == m["n_scored"] == 23570
    # Every scoring tenure is above the training range, so clipped to one value: tenure_days
    # drives no one's risk (unclipped, it would rank customers by the week they joined).
    drivers = result.scores[[f"top_driver_{i}" for i in (1, 2, 3)]]
    assert not (drivers == "tenure_days").any().any()
    assert (drivers["top_driver_1"] == "log1p_recency_days").any()
    assert result.scores["customer_id"].is_unique
    assert m["cutoff"] == "1998-01-02"  # 1998-07-01 - 180 days
    assert m["horizon_days"] == 180
    assert m["n_train"] == 23570                      # every customer joined in Q1 1997
    assert m["cv_rows"] == m["n_validation"] == 23570  # no subsampling at this size

    # The headline: 5-fold cross-validated mean and sd. The model beats the recency rule (and
    # every baseline) on mean ROC AUC, by more than a fold sd.
    assert m["cv_folds"] == 5
    assert m["chosen_model"] == "logistic_regression"  # gradient boosting is a tie here
    assert m["cv_roc_auc_mean"] >= 0.805
    assert m["cv_roc_auc_mean"] > m["recency_baseline_cv_roc_auc_mean"] + m["cv_roc_auc_sd"]
    for name in ("recency", "bgnbd_no_purchase", "bgnbd_p_alive"):
        assert m["cv_roc_auc_mean"] > m[f"{name}_baseline_cv_roc_auc_mean"], name
        for key in cv_keys(prefix=f"{name}_baseline_", probability=name == "bgnbd_no_purchase"):
            assert type(m[key]) is float, key
    for figure in ("brier", "log_loss"):
        assert m[f"cv_{figure}_mean"] < m[f"bgnbd_no_purchase_baseline_cv_{figure}_mean"], figure
    # Error bars: real, and small next to the differences they qualify.
    for figure in CV_FIGURES:
        assert 0 < m[f"cv_{figure}_sd"] < 0.02, figure
        assert figure in ("brier", "log_loss") or 0 < m[f"recency_baseline_cv_{figure}_sd"] < 0.03
    assert m["cv_brier_mean"] < m["base_rate"] * (1 - m["base_rate"])
    # The two candidates and what they measured, for the audit.
    assert abs(m["cv_log_loss_mean_hist_gradient_boosting"]
               - m["cv_log_loss_mean_logistic_regression"]) < m["cv_log_loss_sd"]

    # The back-test: trained as of 1997-07-06 on the half year after it, scored as of
    # 1998-01-02, checked against the half year the main model trains on.
    assert "backtest_skipped" not in m
    assert m["backtest_train_cutoff"] == "1997-07-06" and m["backtest_score_date"] == "1998-01-02"
    assert m["backtest_n_customers"] == m["backtest_n_train"] == 23570
    assert m["backtest_roc_auc"] > m["backtest_recency_baseline_roc_auc"] + 0.005
    assert m["backtest_roc_auc"] > 0.79 and m["backtest_pr_auc"] > 0.9
    assert m["backtest_lift_top_decile"] > 1.1
    actual = m["backtest_actual_churn_rate"]
    assert actual == pytest.approx(m["base_rate"])
    assert m["backtest_brier"] < actual * (1 - actual)
    # The level does not carry across the half year as the ranking does: the cohort's churn
    # rate rose as it aged (documented); the model, clipped to its training range, stays low.
    assert actual - 0.1 < m["backtest_predicted_churn_rate"] < actual

    # Pooled out-of-fold figures (the former validation keys): the model beats the recency
    # rule on PR-AUC (and ROC-AUC), and its Brier score beats always predicting the base rate.
    assert m["pr_auc"] > m["recency_baseline_pr_auc"]
    assert m["roc_auc"] > m["recency_baseline_roc_auc"]
    # And the BG/NBD's own forecast of no purchase in the horizon, on every figure.
    for figure in ("pr_auc", "roc_auc", "lift_top_decile"):
        assert m[figure] > m[f"bgnbd_no_purchase_baseline_{figure}"], figure
    for figure in ("brier", "log_loss"):
        assert m[figure] < m[f"bgnbd_no_purchase_baseline_{figure}"], figure
    # 1 - P(alive) calls every one-time buyer alive: worse than chance at this label.
    assert m["bgnbd_p_alive_baseline_roc_auc"] < 0.5
    assert m["roc_auc"] > 0.78
    assert m["brier"] < m["validation_base_rate"] * (1 - m["validation_base_rate"])
    assert m["calibration_error"] < 0.03


@needs_master
def test_scores_on_cdnow_master_predict_the_next_half_year(master, master_run):
    # Out of time: as of 1998-01-02 (trained at 1997-07-06), then compared with what the
    # customers did in the following 180 days, which the run never saw. That is the master
    # run's own back-test, and it finds the same figures.
    with pytest.warns(UserWarning, match="churn back-test skipped"):
        result = train_and_score(master, "1998-01-02", horizon_days=180)
    # Its own back-test would train as of 1997-01-07: six days of history.
    assert result.metrics["backtest_skipped"] == (
        "the back-test would train as of 1997-01-07, with 6 day(s) of history before it, "
        "fewer than 28")
    truth = churn_training_set(master, "1998-01-02", 180)
    assert list(result.scores["customer_id"]) == list(truth["customer_id"])
    y = truth["churned"].to_numpy()
    p = result.scores["churn_probability"].to_numpy()
    assert roc_auc_score(y, p) > roc_auc_score(y, truth["recency_days"])

    _, run = master_run
    backtest = run.metrics
    assert result.metrics["cutoff"] == backtest["backtest_train_cutoff"] == "1997-07-06"
    assert result.metrics["chosen_model"] == backtest["chosen_model"]
    assert backtest["backtest_roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert backtest["backtest_predicted_churn_rate"] == pytest.approx(p.mean(), abs=1e-12)
    assert backtest["backtest_actual_churn_rate"] == pytest.approx(y.mean(), abs=1e-12)
    assert backtest["backtest_recency_baseline_roc_auc"] == pytest.approx(
        roc_auc_score(y, truth["recency_days"]), abs=1e-12)
    # Every input at scoring inside the training range: the probabilities stay within what
    # the model learned (no extrapolated tenure), so across the shift to a later date they
    # follow the training window's churn rate (0.73) more than the later, higher one (0.77).
    trained_rate = result.metrics["base_rate"]
    assert abs(p.mean() - trained_rate) < abs(p.mean() - y.mean()) < 0.1


def test_data_that_cannot_support_the_model_is_insufficient_data_not_a_fault():
    """The pipeline skips the model on InsufficientData and fails the run on anything else."""
    from cdnow.domain.support import InsufficientData

    log = random_log(seed=3, customers=300)  # purchases 1997-01-01 .. 1997-12-30
    with pytest.raises(InsufficientData, match=r"\(1997-01-01 \.\. 1997-12-30, 364 days\) is not longer than "
                                               r"the churn horizon of 365 days"):
        train_and_score(log, "1997-12-31", 365)
    few = log[log["customer_id"].isin(sorted(log["customer_id"].unique())[:12])]
    with pytest.raises(InsufficientData, match=r"each class needs at least 10 customers"):
        train_and_score(few, "1997-12-31", 90)
    with pytest.raises(ValueError) as refused:  # a genuine misuse stays a plain error
        train_and_score(log, "1997-12-31", 0)
    assert not isinstance(refused.value, InsufficientData)


def test_too_few_distinct_customers_to_segment_is_insufficient_data():
    from cdnow.domain.segments import segment_customers
    from cdnow.domain.support import InsufficientData

    features = customer_features(frame([("A", "1997-01-01", 1, 10.0), ("B", "1997-01-01", 1, 10.0)]),
                                 "1997-02-01")
    with pytest.raises(InsufficientData, match="cannot be split into segments"):
        segment_customers(features)
