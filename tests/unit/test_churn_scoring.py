"""Churn split into fit and score: the Spark path fits on a sample of customers and scores every
customer batch by batch (``mapInPandas``); the Lambda path fits and scores every customer."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cdnow.domain.churn import (
    CHURN_FIT_FORMAT,
    CHURN_INPUTS,
    RISK_BAND_THRESHOLDS,
    SCORE_COLUMNS,
    ChurnFit,
    LeakageError,
    bgnbd_baselines,
    churn_score_summary,
    churn_training_set,
    fit_churn,
    score_churn,
    train_and_score,
)
from cdnow.domain.features import customer_features, default_analysis_date
from cdnow.domain.support import InsufficientData
from cdnow_offline.datasets import MASTER, SAMPLE, read_cdnow
from test_churn import lifecycle_log

needs_master = pytest.mark.skipif(not MASTER.exists(), reason=f"{MASTER} not present")
needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason=f"{SAMPLE} not present")

HORIZON = 180
SCORE_SUMMARY = ("n_scored", "mean_churn_probability", "share_high_risk", "share_medium_risk",
                 "share_low_risk")


@pytest.fixture(scope="module")
def master():
    return read_cdnow()


@pytest.fixture(scope="module")
def master_date(master):
    return default_analysis_date(master)


@pytest.fixture(scope="module")
def master_features(master, master_date):
    return customer_features(master, master_date)


@pytest.fixture(scope="module")
def master_fit(master, master_date):
    return fit_churn(master, master_date, HORIZON, baselines=bgnbd_baselines(HORIZON))


@pytest.fixture(scope="module")
def gradient_boosting():
    """A synthetic log on which gradient boosting is kept (the drivers then come from a second
    model, the logistic regression): its fit and its features as of the analysis date."""
    log = lifecycle_log(seed=0, customers=2000, spend_matters=True)
    fit = fit_churn(log, "1998-07-01", HORIZON)
    assert fit.model_name == "hist_gradient_boosting" and fit.driver_model is not fit.model
    return fit, customer_features(log, "1998-07-01")


def by_customer(scores: pd.DataFrame) -> pd.DataFrame:
    return scores.sort_values("customer_id", kind="stable").reset_index(drop=True)


def assert_same_rows(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """The same rows, bit for bit and dtype for dtype, in any order."""
    assert list(left.columns) == list(right.columns) == SCORE_COLUMNS
    pd.testing.assert_frame_equal(by_customer(left), by_customer(right), check_exact=True)


def check_fit_then_score_is_train_and_score(fit: ChurnFit, features: pd.DataFrame, result) -> None:
    scores = score_churn(features, fit)
    pd.testing.assert_frame_equal(scores, result.scores, check_exact=True)
    summary = churn_score_summary(scores)
    # train_and_score's metrics are the fit's and the scored table's, in their former order.
    assert result.metrics == {**fit.metrics, **summary}
    assert list(result.metrics)[-len(SCORE_SUMMARY) - 3:] == [
        "n_scored", "cutoff", "analysis_date", "horizon_days", *SCORE_SUMMARY[1:]]
    assert summary["n_scored"] == len(features)
    assert result.calibration == fit.calibration
    assert result.curves == fit.curves
    assert result.drivers == fit.drivers


# --- fit + score is train_and_score --------------------------------------------------------------

@needs_master
def test_fit_then_score_every_customer_is_train_and_score_on_cdnow_master(
        master, master_date, master_features, master_fit):
    result = train_and_score(master, master_date, HORIZON, baselines=bgnbd_baselines(HORIZON))
    check_fit_then_score_is_train_and_score(master_fit, master_features, result)
    fit = master_fit
    assert (fit.model_name, fit.analysis_date, fit.cutoff, fit.horizon_days) == (
        "logistic_regression", "1998-07-01", "1998-01-02", HORIZON)
    assert fit.driver_model is fit.model  # the kept model is the logistic regression
    assert fit.driver_center_customers == len(master_features) == 23570
    assert fit.inputs == list(CHURN_INPUTS)
    assert fit.risk_band_thresholds == RISK_BAND_THRESHOLDS
    # Every scoring tenure lies above the training range (one cohort, 180 days older).
    low, high = fit.input_ranges["tenure_days"]
    assert master_features["tenure_days"].min() > high > low


@needs_sample
def test_fit_then_score_every_customer_is_train_and_score_on_cdnow_sample():
    sample = read_cdnow(SAMPLE)
    analysis_date = default_analysis_date(sample)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a back-test skipped, if it is
        result = train_and_score(sample, analysis_date, HORIZON)
        fit = fit_churn(sample, analysis_date, HORIZON)
    check_fit_then_score_is_train_and_score(fit, customer_features(sample, analysis_date), result)


def test_fit_then_score_is_train_and_score_when_gradient_boosting_is_kept(gradient_boosting):
    fit, features = gradient_boosting
    result = train_and_score(lifecycle_log(seed=0, customers=2000, spend_matters=True),
                             "1998-07-01", HORIZON)
    check_fit_then_score_is_train_and_score(fit, features, result)


# --- the fit as bytes ----------------------------------------------------------------------------

@needs_master
def test_a_fit_scores_the_same_after_a_round_trip_through_bytes(master_fit, master_features,
                                                                gradient_boosting):
    for fit, features in [(master_fit, master_features), gradient_boosting]:
        data = fit.to_bytes()
        loaded = ChurnFit.from_bytes(data)
        assert_same_rows(score_churn(features, loaded), score_churn(features, fit))
        pd.testing.assert_frame_equal(score_churn(features, loaded), score_churn(features, fit),
                                      check_exact=True)
        # The plain fields come back equal (and as plain JSON types), the pipelines as models.
        for name in ("model_name", "platt_slope", "platt_intercept", "driver_center",
                     "driver_center_customers", "analysis_date", "cutoff", "horizon_days",
                     "metrics", "calibration", "curves", "drivers", "inputs",
                     "risk_band_thresholds"):
            assert getattr(loaded, name) == getattr(fit, name), name
        assert loaded.input_ranges == fit.input_ranges
        assert (loaded.driver_model is loaded.model) == (fit.driver_model is fit.model)
        # The first line is JSON anyone can read without unpickling: the run summary's figures
        # and every plain number scoring uses.
        header = json.loads(data.partition(b"\n")[0])
        assert header["format"] == CHURN_FIT_FORMAT
        assert set(header["libraries"]) == {"scikit-learn", "scipy", "numpy"}
        assert header["fit"]["metrics"] == fit.metrics
        assert header["fit"]["driver_center"] == fit.driver_center
    # Small: 45 KB on CDNOW master with the BG/NBD baselines' curves, the pipelines 2 KB of it.
    assert len(master_fit.to_bytes()) < 100_000


@needs_master
def test_a_fit_from_another_scikit_learn_or_not_a_fit_is_refused(master_fit):
    head, _, body = master_fit.to_bytes().partition(b"\n")
    header = json.loads(head)
    header["libraries"]["scikit-learn"] = "0.0.1"
    with pytest.raises(ValueError, match=r"saved with scikit-learn 0\.0\.1"):
        ChurnFit.from_bytes(json.dumps(header).encode() + b"\n" + body)
    for junk in [b"", b"not json\n", b'{"format": "something else"}\n' + body]:
        with pytest.raises(ValueError, match="not a serialized churn fit"):
            ChurnFit.from_bytes(junk)


# --- partition independence ----------------------------------------------------------------------

def partitions(features: pd.DataFrame, seed: int) -> list[pd.DataFrame]:
    """The rows shuffled and cut into uneven batches: single rows, an empty one, odd sizes
    (a row's place in a block of 4 changes the rounding of a BLAS matrix-vector product)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(features))
    sizes = [1, 0, 2, 3, 5, 7, 1, 4099]
    cuts = np.cumsum(sizes)
    cuts = np.r_[cuts[cuts < len(order)], np.sort(rng.choice(
        np.arange(cuts[-1] + 1, len(order)), size=min(5, max(0, len(order) - cuts[-1] - 1)),
        replace=False))]
    return [features.iloc[rows] for rows in np.split(order, cuts)]


@needs_master
def test_scoring_in_batches_gives_the_rows_of_scoring_everyone(master_fit, master_features,
                                                               gradient_boosting):
    for fit, features in [(master_fit, master_features), gradient_boosting]:
        whole = score_churn(features, fit)
        for seed in (0, 1):
            batches = partitions(features, seed)
            assert sum(len(batch) for batch in batches) == len(features)
            assert any(len(batch) == 0 for batch in batches)
            scored = [score_churn(batch, fit) for batch in batches]
            for batch, rows in zip(batches, scored):
                # Exactly the batch's customers, in its order, whatever its index.
                assert list(rows["customer_id"]) == list(batch["customer_id"].astype(str))
                assert list(rows.index) == list(range(len(batch)))
            assert_same_rows(pd.concat(scored, ignore_index=True), whole)
        # The table's figures are aggregates of the rows: partial counts and sums add up.
        summary = churn_score_summary(whole)
        counts = sum(len(part) for part in scored)
        high = sum(int((part["risk_band"] == "high").sum()) for part in scored)
        total = sum(float(part["churn_probability"].sum()) for part in scored)
        assert counts == summary["n_scored"]
        assert high / counts == summary["share_high_risk"]
        assert total / counts == pytest.approx(summary["mean_churn_probability"], rel=1e-12)


@needs_master
def test_an_empty_batch_gives_an_empty_table_of_the_same_columns(master_fit, master_features):
    empty = score_churn(master_features.iloc[:0], master_fit)
    assert len(empty) == 0
    pd.testing.assert_series_equal(empty.dtypes, score_churn(master_features.iloc[:10],
                                                             master_fit).dtypes)


@needs_master
def test_scoring_refuses_features_of_another_day(master, master_fit):
    with pytest.raises(LeakageError, match="not computed as of 1998-07-01"):
        score_churn(customer_features(master, master_fit.cutoff), master_fit)


@needs_master
def test_scoring_refuses_a_fit_made_for_other_inputs(master_fit, master_features):
    import dataclasses

    reordered = dataclasses.replace(master_fit, inputs=list(reversed(master_fit.inputs)))
    with pytest.raises(ValueError, match="refit the model"):
        score_churn(master_features, reordered)


# --- the fit on a sample of customers ------------------------------------------------------------

def customers_sample(transactions: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """Every row of a random ``share`` of the customers."""
    customers = pd.Series(transactions["customer_id"].unique())
    chosen = customers.sample(frac=share, random_state=seed)
    return transactions[transactions["customer_id"].isin(chosen)].reset_index(drop=True)


@needs_master
@pytest.mark.parametrize("share, seed", [(0.1, 0), (0.15, 1), (0.2, 2)])
def test_a_fit_on_a_sample_of_customers_ranks_every_customer_as_the_full_fit_does(
        master, share, seed):
    # Out of time, where the truth is known: fitted as of 1998-01-02 (trained at 1997-07-06),
    # every customer scored as of 1998-01-02 and compared with what they did in the next 180
    # days, which neither fit saw. (Each skips its back-test: six days of history before it.)
    as_of = pd.Timestamp("1998-01-02")
    sample = customers_sample(master, share, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        full = fit_churn(master, as_of, HORIZON)
        fit = fit_churn(sample, as_of, HORIZON)
    everyone = customer_features(master, as_of)
    truth = churn_training_set(master, as_of, HORIZON)
    assert list(truth["customer_id"]) == list(everyone["customer_id"])
    y = truth["churned"].to_numpy()
    p_full = score_churn(everyone, full)["churn_probability"].to_numpy()
    p_sample = score_churn(everyone, fit)["churn_probability"].to_numpy()

    # The sample fit learnt from its customers only: share x 23,570 of them.
    assert fit.metrics["n_train"] == fit.driver_center_customers == sample["customer_id"].nunique()
    assert fit.metrics["n_train"] == pytest.approx(share * len(everyone), rel=0.01)
    auc_full, auc_sample = roc_auc_score(y, p_full), roc_auc_score(y, p_sample)
    assert auc_full > 0.8
    assert abs(auc_sample - auc_full) < 0.01, (auc_sample, auc_full)
    assert auc_sample > roc_auc_score(y, truth["recency_days"])  # still beats the recency rule
    # The level too, within the sampling error of a churn rate on a few thousand customers
    # (calibrated on the sample's own out-of-fold probabilities; 12 samples of 10-20% moved the
    # mean by -0.014..+0.022 and their ROC AUC by at most 0.004).
    assert abs(p_sample.mean() - p_full.mean()) < 0.03
    assert pd.Series(p_sample).corr(pd.Series(p_full), method="spearman") > 0.9


@needs_master
def test_a_sample_whose_rows_end_before_the_history_gives_its_span(master, master_date):
    # Every row of the customers who did not buy in the history's last month: the sample's
    # last row is a month before the analysis date, but the history (and the label window) runs
    # to it, and the caller knows.
    late = master.loc[master["order_date"] >= "1998-06-01", "customer_id"].unique()
    sample = master[~master["customer_id"].isin(late)].reset_index(drop=True)
    assert sample["order_date"].max() < pd.Timestamp("1998-06-01")
    with pytest.raises(ValueError, match="is not fully observed"):
        fit_churn(sample, master_date, HORIZON)
    fit = fit_churn(sample, master_date, HORIZON, history_end=master_date)
    assert (fit.cutoff, fit.analysis_date) == ("1998-01-02", "1998-07-01")
    assert fit.metrics["n_train"] == sample["customer_id"].nunique()
    scores = score_churn(customer_features(master, master_date), fit)
    assert len(scores) == 23570 and scores["churn_probability"].between(0, 1).all()


def test_a_sample_whose_rows_start_after_the_history_gives_its_span():
    # The history starts on 1997-01-01; a sample of the customers who joined from 1997-01-20
    # would see 21 days before a 1997-02-10 cutoff (fewer than 28) and refuse to train.
    log = lifecycle_log(seed=7, customers=3000)
    first = log.groupby("customer_id")["order_date"].transform("min")
    sample = log[first >= "1997-01-20"].reset_index(drop=True)
    analysis = pd.Timestamp("1997-02-10") + pd.Timedelta(days=HORIZON)
    with pytest.raises(InsufficientData, match="21 day"):
        fit_churn(sample, analysis, HORIZON)
    with pytest.warns(UserWarning, match="back-test skipped"):
        fit = fit_churn(sample, analysis, HORIZON, history_start="1997-01-01")
    assert fit.cutoff == "1997-02-10"
