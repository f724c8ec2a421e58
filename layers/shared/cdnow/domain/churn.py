"""Churn risk: a temporal classifier that only ever sees the past.

Pure logic on a transaction log; no I/O. Two halves and the call that joins them:
``fit_churn`` learns everything (a ``ChurnFit``), ``score_churn`` applies a fit to any batch of
customer_features rows, and ``train_and_score`` (the Lambda path) is the one on every customer
followed by the other on every customer. See "Fit and score" below.

Temporal design
    cutoff   = analysis_date - horizon_days unless given (default horizon 180 days);
    features = ``customer_features(transactions, cutoff)``: only rows before the cutoff;
    label    = ``churned`` = no purchase in [cutoff, cutoff + horizon_days).
    The label window must be fully observed (cutoff + horizon <= last order date + 1 day) and
    end on or before the analysis date. Every customer with a purchase before the cutoff is in
    the training window.

Leakage guards (``LeakageError``, a ``ValueError``)
    - The label is a parameter, and only ``"no_purchase_in_horizon"`` can be trained. A label
      that is a threshold on a customer feature (``{"feature": "recency_days", "threshold":
      90}``, or a ``ThresholdLabel``) is refused: every feature of the customer table restates
      a quantity the model reads (``FEATURE_BASIS``: recency_days, last_purchase_date,
      recency, tenure_days, T and avg_days_between_purchases share the first and last
      purchase dates; purchase_days, repeat_purchases and frequency are one count; ...), so
      the model would only learn the threshold back.
    - ``check_features_as_of`` verifies that a feature table was computed as of a given day
      (no purchase on or after it; recency_days and tenure_days measured to it). It runs on the
      training features (as of the cutoff), on the back-test's (a horizon earlier) and on the
      scoring features (as of the analysis date), so no model input can come from a label
      window.

Model inputs (``CHURN_INPUTS``, all from the customer_features table at the cutoff)
    log1p of recency_days, purchase_days, orders, monetary_total, monetary_avg_per_purchase,
    quantity_total and avg_days_between_purchases (counts, amounts and gaps are heavy-tailed;
    amounts clipped at 0 first), tenure_days as is, and one_time_buyer (repeat_purchases == 0).
    One-time buyers have no gap between purchases: log1p_avg_days_between_purchases is NaN for
    them. Gradient boosting takes the NaN natively; the logistic regression imputes the
    training mean, and one_time_buyer carries the difference.

    Inputs that grow with calendar time are clipped to the training range. Scoring happens
    horizon_days after the cutoff, so every customer's tenure_days is horizon_days larger than
    at training, and a lapsed customer's recency_days too: on CDNOW (a single cohort, everyone
    joined in Q1 1997) every scoring tenure (463..546 days) lies above the training range
    (283..366), and in the back-test 73% of the scoring recencies lie above theirs. The first
    step of both candidates, ``ClipToTrainingRange``, clips every input to the [min, max] it
    had in the rows the model was fitted on (NaN stays NaN), so scoring (and the back-test's,
    and a cross-validation fold's) never asks a model to extrapolate; the drivers read the
    same clipped inputs. Trees were constant beyond their last split anyway; for the logistic
    regression this is a choice with a measured cost: unclipped, its tenure slope within the
    Q1 1997 cohort (+0.09 log-odds per sd, 23 days) extrapolated over 180 days (7.7 sd) added
    0.7 log-odds to everyone, which happened to track the cohort's ageing (back-test predicted
    churn rate 0.778 for an actual 0.773; clipped 0.704; ROC AUC 0.807 vs 0.805). That was a
    cross-sectional slope (join month) read as a trend over calendar time; nothing makes it
    hold elsewhere. Clipped, the model ranks as well as it did and does not invent a trend it
    never saw; the back-test shows how much the base rate drifts in one horizon.

    BTYD candidate inputs (logit of the BG/NBD's P(no purchase in the horizon) and of
    P(alive), ``clv``) were measured and left out: +0.001 CV ROC AUC for the logistic
    regression on CDNOW master, within one fold sd (0.008), for two more model fits per
    feature table.

Candidates, cross-validation, selection, calibration
    - ``logistic_regression``: clipping, mean imputation, StandardScaler, LogisticRegression
      (L2, C=1); its coefficients are per standard deviation of each input.
    - ``hist_gradient_boosting``: clipping, HistGradientBoostingClassifier(max_iter=50,
      learning_rate=0.1, max_depth=3, min_samples_leaf=200, early_stopping=False): fixed
      settings, no tuning loop (on CDNOW, 100 trees at 0.05 or depth 4 scored the same CV
      PR-AUC within 0.001, and cost more).
    There is no fixed validation split any more. A single 25% split was one draw among many:
    on CDNOW master its ROC AUC (0.793) sat at the minimum of the recency rule's 200 random
    splits (mean 0.796, sd 0.006). Every figure is now out of fold over the whole training
    window: StratifiedKFold(``cv_folds``=5, shuffled with ``random_state``), the same folds
    for both candidates and every baseline.
    Each candidate gets out-of-fold probabilities that are calibrated out of fold too
    (nested): the model for outer fold k is fitted on the other folds, and its Platt map on
    inner out-of-fold probabilities of the neighbouring folds k - 1 and k + 1, from models
    fitted without fold k (``_nested_out_of_fold``; 2k fits per candidate). Neither the model
    nor its calibrator ever saw the customers it is measured on.
    Selection: the candidate with the lower mean fold log loss of those calibrated
    probabilities, ties to the logistic regression. Log loss is a proper scoring rule on the
    probabilities the run publishes (its risk bands are thresholds on them), and unlike PR
    AUC at a 77% base rate it is far from saturated. A tie is a difference that a one-sided
    corrected resampled t-test on the paired fold log losses (Nadeau and Bengio 2003, 5%)
    does not find: on CDNOW master the candidates differ by ~0.0005 (HGB 0.4085, logistic
    regression 0.4090, fold sd 0.007), and with a plain one-standard-error rule the choice
    flipped between them with the fold seed; with the test it is the logistic regression for
    every seed tried (0..5).
    The kept model is refitted on the whole window and calibrated with a sigmoid (Platt) map
    fitted on its outer out-of-fold probabilities, so the calibrator never sees a probability
    from a model fitted on the same row. Sigmoid rather than isotonic: Platt's map is
    monotone, so it keeps the model's ranking (ROC-AUC, PR-AUC and lift per fold are the
    uncalibrated model's); on CDNOW isotonic did not lower the Brier score and its ties cost
    ~0.003 PR-AUC. Everything takes ``random_state`` (default 0): same input, same output.

    Large inputs: the cross-validated steps (the candidates' nested out-of-fold
    probabilities, every cv_* and pooled figure, the baselines', the final calibrator's and
    the back-test's calibrator's out-of-fold probabilities) use a stratified subsample of at
    most ``max_cv_rows`` customers (default 100,000; CDNOW's 23,570 are never subsampled).
    The models themselves are always fitted on all the rows of their window, and the back-test
    scores every customer of the training window. CDNOW master repeated 100 times under new
    ids (2.36 M customers, 7 M rows, gradient boosting kept): 42 s against 32 s before the
    nested cross-validation and the back-test, and a peak RSS 0.19 GB higher (1.65 GB against
    1.46 GB in one process that also built the input), on 2 busy cores; the peak is
    customer_features' sort of the 7 M rows, now once more for the back-test's window while
    the main window's design matrix is held.

Back-test (one horizon back in time)
    The same procedure (the chosen model kind, fitted and Platt-calibrated on out-of-fold
    probabilities exactly as the final model is) trained as of cutoff - horizon_days, on
    labels [cutoff - horizon, cutoff), scores the training window's customers with their
    features as of the cutoff, and is compared with what they did in [cutoff, cutoff +
    horizon), the main label window, which it never saw. With the default cutoff these are
    analysis date - 2 x horizon and analysis date - horizon. (With an earlier ``cutoff`` the
    back-test moves with it: it always checks the model one horizon before the window the
    main model learned from.) It is skipped, never an error, when the history starts less than
    two horizons (plus MIN_DAYS_BEFORE_CUTOFF days) before the end of the label window, when
    its training window has fewer than MIN_CUSTOMERS_PER_CLASS customers in a class, or when
    it fails: ``backtest_skipped`` is a one-sentence reason and a ``UserWarning`` says the
    same. When it runs, ``backtest_skipped`` is absent (the metrics hold no None).
    Measured on CDNOW master (trained as of 1997-07-06, scored as of 1998-01-02, 23,570
    customers): ROC AUC 0.805 (the recency rule 0.796), PR AUC 0.912, Brier 0.134, log loss
    0.427, top-decile lift 1.21; predicted churn rate 0.704 for an actual 0.773. The ranking
    carries across a half-year shift; the level does not: the cohort's churn rate rose from
    0.731 (1997-07-06 window) to 0.773 as it aged, a trend one training window cannot see, so
    today's probabilities are likely low by a similar margin.

Threads
    ``n_threads`` (default 1) caps the native thread pools (OpenMP for gradient boosting, BLAS)
    during the call. With the libraries' default of one thread per core, a CPU shared with
    other work (or a Lambda function's fractional vCPU share) makes OpenMP's spinning threads
    wait on each other: on CDNOW master the whole call took 6-7 s instead of 1 s on a busy
    2-core machine. Pass ``n_threads=None`` for the libraries' default on dedicated cores.
    ``fit_churn`` and ``score_churn`` take the same argument (one thread per Spark task).
    The whole call on CDNOW master: ~1.45 s with the logistic regression kept (~0.72 s before
    the nested cross-validation and the back-test), 2-core machine shared with other work.

Baselines (same folds, same customers)
    The recency rule, always: score = recency_days at the cutoff (longer since the last
    purchase, more likely gone). More with ``baselines={"name": score_fn}``: ``score_fn``
    receives the cutoff feature table (``customer_features(transactions, cutoff)``: every
    customer of the training window, no label column) and returns one churn score per row,
    higher = more likely to churn (e.g. 1 - P(alive) of a BG/NBD model fitted on that table;
    such a fit never sees a label, so scoring the whole table once and reading each fold's
    rows keeps the folds honest). A plain callable is a ranking score; wrap it as
    ``Baseline(score_fn, is_probability=True)`` when it returns probabilities in [0, 1] of the
    same event, no purchase in the horizon (then it also gets a Brier score and log loss).
    1 - P(alive) is the probability of another event (an alive customer may still not buy
    within the horizon; P(alive) is 1 for every one-time buyer), so it is a ranking score;
    the BG/NBD's P(no purchase in the horizon) is a probability of the label's event. The
    pipeline passes both, ``baselines=bgnbd_baselines(horizon_days)``.
    Measured on CDNOW master (horizon 180 days, 5 folds, mean +- sd over the folds):
        score                       ROC AUC         PR AUC          Brier           log loss
        logistic regression (kept)  0.808 +- 0.008  0.915 +- 0.004  0.128 +- 0.003  0.409 +- 0.007
        gradient boosting           0.807 +- 0.007  0.912 +- 0.004  0.127 +- 0.003  0.408 +- 0.007
        recency rule                0.796 +- 0.009  0.910 +- 0.005
        BG/NBD P(no purchase)       0.789 +- 0.012  0.891 +- 0.007  0.131 +- 0.003  0.424 +- 0.008
        BG/NBD 1 - P(alive)         0.321 +- 0.004  0.760 +- 0.004
    Top-decile lift: 1.21 +- 0.01 (model), 1.21 +- 0.02 (recency rule), 1.15 +- 0.02 (BG/NBD
    P(no purchase)), 1.03 +- 0.01 (1 - P(alive), which ranks every one-time buyer as surely
    alive). The model's ROC AUC edge over the recency rule (0.012) is about one fold sd, and
    it holds on every fold and in the back-test; at a 77% base rate the top decile is nearly
    all churners for both, so lift does not separate them.

Metrics (``ChurnResult.metrics``: flat, one level, JSON-ready numbers and a few strings)
    Headline, the chosen model, mean and sample sd (ddof=1) over the folds of its nested
    out-of-fold probabilities:
        cv_roc_auc_mean, cv_roc_auc_sd, cv_pr_auc_mean, cv_pr_auc_sd, cv_brier_mean,
        cv_brier_sd, cv_log_loss_mean, cv_log_loss_sd, cv_lift_top_decile_mean,
        cv_lift_top_decile_sd.
    Each candidate, the same figures suffixed ``_<name>`` (cv_log_loss_mean_logistic_regression,
    cv_roc_auc_sd_hist_gradient_boosting, ...), and cv_pr_auc_<name> (= cv_pr_auc_mean_<name>,
    kept for earlier readers).
    Each baseline, prefixed ``<name>_baseline_`` (``recency_baseline_cv_roc_auc_mean``...):
        cv_roc_auc_*, cv_pr_auc_*, cv_lift_top_decile_* (mean and sd); cv_brier_* and
        cv_log_loss_* only for a probability baseline. The recency rule is a rank (days), not
        a probability: it has no Brier score or log loss.
    Pooled over the whole window (every customer's out-of-fold probability, all folds at
    once; these replace the former validation split's figures under the same keys, and the
    ``calibration`` table and ``curves`` are drawn from the same probabilities):
        roc_auc, pr_auc (average precision), brier, log_loss, calibration_error (expected
        calibration error over the 10 bins of ``calibration``), lift_top_decile,
        capture_top_decile; and per baseline ``<name>_baseline_`` roc_auc, pr_auc,
        lift_top_decile, capture_top_decile (brier, log_loss for a probability baseline).
    Selection: chosen_model, selection_metric ("cv_log_loss_mean"), calibration_method
        ("sigmoid"), cv_folds, cv_rows (customers in the cross-validation).
    Back-test: backtest_train_cutoff, backtest_score_date (ISO dates, always present);
        when it runs: backtest_n_train (customers it trained on), backtest_n_customers
        (customers scored), backtest_roc_auc, backtest_pr_auc, backtest_brier,
        backtest_log_loss, backtest_lift_top_decile, backtest_predicted_churn_rate (mean
        predicted probability), backtest_actual_churn_rate,
        backtest_recency_baseline_roc_auc; when skipped: backtest_skipped (the reason).
    Data: base_rate (churn rate of the training window), n_train (customers of the training
        window, all of whom the final model is fitted on), n_validation (customers with an
        out-of-fold probability: every one of them held out once; = cv_rows),
        validation_base_rate (their churn rate), n_scored, cutoff, analysis_date (ISO dates),
        horizon_days.
    Scores: mean_churn_probability, share_high_risk, share_medium_risk, share_low_risk.
    Top decile, with ties: the customers ranked by score, the top 10% taken, and a tie group
    straddling the boundary counted pro rata (the expectation under random tie-breaking), so
    capture_top_decile = lift_top_decile * 0.1 exactly; lift = churn rate in the top decile /
    base rate of the same customers (the fold's, for a cv figure).

Scoring
    The kept model, refitted on the whole training window and calibrated on its out-of-fold
    probabilities, is applied to the customer_features rows as of the analysis date, inputs
    clipped to the training range: churn_probability = P(no purchase in the horizon_days after
    the analysis date). ``risk_band``: "high" if p >= 0.7, "medium" if p >= 0.4, else "low"
    (``RISK_BANDS``, lowest risk first; ``RISK_BAND_THRESHOLDS``).
    top_driver_1..3: the inputs with the largest positive contribution coef_j * d_ij toward
    churn in the logistic regression fitted on that same window, even when gradient boosting
    is the kept model (the drivers then explain a linear view of the same data, not the
    boosted trees); empty (null) when fewer inputs push toward churn. d_ij is the customer's
    clipped input minus the typical customer's (``driver_center``: each input's mean over the
    fitted customers' features as of the analysis date), in training standard deviations:
    what makes this customer riskier than today's typical customer. (Measured from the
    training window's mean instead, every customer is horizon_days older at the analysis date
    than at the cutoff, and on a single-cohort log like CDNOW tenure_days was the first driver
    of 96% of the customers.)

Fit and score
    ``fit_churn(transactions, analysis_date, horizon_days, ...) -> ChurnFit`` does everything
    above that learns: the training set at the cutoff, the nested cross-validation, the
    choice, the calibration, the back-test, the final refit, and the drivers' center. It
    reads whole customers only, so ``transactions`` may be every row of a sample of customers
    (the Spark path fits on a bounded, stratified sample; ``history_start`` / ``history_end``
    then give the whole history's span, which the sample's rows may not reach). The
    ``ChurnFit`` holds the two scikit-learn pipelines (the kept model, whose first step holds
    the training ranges, and the drivers' logistic regression), the Platt map's two numbers,
    the drivers' center, the dates, the input order and the risk band thresholds, and the run
    summary's figures (metrics, calibration, curves, drivers); ``to_bytes()`` /
    ``ChurnFit.from_bytes()`` carry it to the scoring job (JSON for the plain fields, one
    pickle for the pipelines: 45 KB on CDNOW master with the pipeline's baselines, nearly all
    of it the curves; the pipelines are 2 KB).
    ``score_churn(features, fit) -> DataFrame`` gives the churn_scores rows of exactly the
    customers of ``features`` (customer_features rows as of the fit's analysis date, any
    subset: a Spark partition through ``mapInPandas``). Each row depends on itself and the fit
    alone, to the bit: scoring a batch in parts, in any order, gives the same rows.
    Two things in the former one-call scoring were not row-wise, and are no longer:
    - the drivers' center was a batch statistic, the mean over the customers scored in the
      call. It is now a fitted quantity, the same mean measured by ``fit_churn`` on the
      customers it fitted: on the Lambda path (every customer) exactly the former value, so
      every driver is unchanged; on a sample, the sample's estimate of it (with a 15% sample
      of CDNOW master's center and nothing else changed, 0.9% of the first drivers moved).
    - the logistic regression's log-odds came from a BLAS matrix-vector product, which rounds
      a row's sum differently with its position in the batch (a few ulp of the log-odds).
      Scoring now sums coef_j * input_j in input order, element-wise
      (``_row_wise_churn_proba``): on CDNOW master 12% of the probabilities moved by at most
      4.4e-16 from the BLAS ones, no band, driver or metric changed.
    What is a statistic of the scored table (n_scored, mean_churn_probability, the risk band
    shares) is an aggregate computed after scoring: ``churn_score_summary(scores)``, counts
    and sums a Spark job computes with one aggregation. ``train_and_score`` =
    ``fit_churn`` + ``score_churn`` of every customer + ``churn_score_summary``; its outputs
    are what they were before the split, but for those last bits.
    A fit on a sample ranks as the full fit does: fitted out of time (as of 1998-01-02) on 12
    random samples of 10-20% of CDNOW master's customers, every customer's scores reached a
    ROC AUC on what they did next within 0.004 of the full fit's (0.805), with a mean
    probability within -0.014..+0.022 of its. Its drivers are less stable than its
    probabilities: orders and purchase days are nearly the same count on CDNOW, and a 15%
    sample's logistic regression split their weight differently (log1p_orders -0.49,
    log1p_purchase_days -0.44 per sd, against -0.04 and -0.73 on every customer), so 40-68%
    of the first drivers agreed with the full fit's on 10-20% samples (95-98% of the risk
    bands did).
"""

from __future__ import annotations

import json
import math
import pickle
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import expit, logit
from scipy.stats import t as student_t
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from .features import _as_day, _check_columns, _day_number, _day_numbers, customer_features
from .defaults import DEFAULT_CHURN_HORIZON_DAYS
from .support import InsufficientData

LABEL = "churned"
# Fewer customers than this in either churn class (churned, stayed) is too little to train,
# calibrate and validate on: the model is skipped (InsufficientData), not fitted on noise.
MIN_CUSTOMERS_PER_CLASS = 10
# The training features describe each customer's behaviour before the cutoff: with less history
# than this there is none to learn from (every customer alike: one first-purchase day, constant
# features).
MIN_DAYS_BEFORE_CUTOFF = 28
NO_PURCHASE_IN_HORIZON = "no_purchase_in_horizon"
DEFAULT_MAX_CV_ROWS = 100_000
DEFAULT_CV_FOLDS = 5
# The nested cross-validation calibrates each outer fold's model on the other folds, used as
# inner folds: it needs at least two of them.
MIN_CV_FOLDS = 3

# Model input -> (customer_features column it is computed from, transform).
#   log1p:   log1p(max(value, 0)); NaN stays NaN. identity: as is. is_zero: 1.0 if value == 0.
CHURN_INPUTS: dict[str, tuple[str, str]] = {
    "log1p_recency_days": ("recency_days", "log1p"),
    "log1p_purchase_days": ("purchase_days", "log1p"),
    "log1p_orders": ("orders", "log1p"),
    "log1p_monetary_total": ("monetary_total", "log1p"),
    "log1p_monetary_avg_per_purchase": ("monetary_avg_per_purchase", "log1p"),
    "log1p_quantity_total": ("quantity_total", "log1p"),
    "tenure_days": ("tenure_days", "identity"),
    "log1p_avg_days_between_purchases": ("avg_days_between_purchases", "log1p"),
    "one_time_buyer": ("repeat_purchases", "is_zero"),
}
# The customer_features columns the model reads.
CHURN_FEATURES = list(dict.fromkeys(source for source, _ in CHURN_INPUTS.values()))

# What each column of the customer_features table is a function of (the analysis date, common
# to all, left out). Two columns that share a quantity restate each other: a threshold on one is
# a threshold on what the other measures.
FEATURE_BASIS: dict[str, tuple[str, ...]] = {
    "first_purchase_date": ("first purchase date",),
    "last_purchase_date": ("last purchase date",),
    "recency_days": ("last purchase date",),
    "purchase_days": ("number of purchase days",),
    "repeat_purchases": ("number of purchase days",),
    "orders": ("number of orders",),
    "monetary_total": ("total spend",),
    "monetary_avg_per_purchase": ("total spend", "number of purchase days"),
    "quantity_total": ("total quantity",),
    "tenure_days": ("first purchase date",),
    "avg_days_between_purchases": ("first purchase date", "last purchase date",
                                   "number of purchase days"),
    "frequency": ("number of purchase days",),
    "recency": ("first purchase date", "last purchase date"),
    "T": ("first purchase date",),
}

LOGISTIC_REGRESSION = "logistic_regression"
HIST_GRADIENT_BOOSTING = "hist_gradient_boosting"
CANDIDATE_MODELS = (LOGISTIC_REGRESSION, HIST_GRADIENT_BOOSTING)

RISK_BANDS = ("low", "medium", "high")  # ordered, lowest risk first
RISK_BAND_THRESHOLDS = {"medium": 0.4, "high": 0.7}  # lower bounds, inclusive
N_TOP_DRIVERS = 3
# Rows per block when the drivers are computed (bounded memory on millions of customers).
DRIVER_CHUNK = 250_000
CALIBRATION_BINS = 10
MAX_CURVE_POINTS = 100
TOP_DECILE = 0.1
# Figures measured on each cross-validation fold (mean and sd over the folds); brier and
# log_loss only for probabilities.
CV_METRICS = ("roc_auc", "pr_auc", "brier", "log_loss", "lift_top_decile")
# The model is chosen by this cross-validated figure, lower is better (see the module doc).
SELECTION_METRIC = "log_loss"

SCORE_COLUMNS = ["customer_id", "churn_probability", "risk_band",
                 *(f"top_driver_{i}" for i in range(1, N_TOP_DRIVERS + 1))]


class LeakageError(ValueError):
    """The churn step was asked to learn from information it would not have at the cutoff."""


# --- label ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ThresholdLabel:
    """churned = ``feature`` <direction> ``threshold``: the leaky kind, always refused."""

    feature: str
    threshold: float
    direction: str = ">"

    def describe(self) -> str:
        return f"{self.feature} {self.direction} {self.threshold:g}"


def check_label(label) -> str:
    """Return the label name if it can be trained; raise LeakageError for a feature threshold.

    ``label``: ``"no_purchase_in_horizon"``, a ``ThresholdLabel``, or a mapping with
    ``feature`` and ``threshold`` (and optional ``direction``) as a run's JSON config gives it.
    """
    if isinstance(label, str):
        if label == NO_PURCHASE_IN_HORIZON:
            return label
        raise ValueError(f"unknown churn label {label!r}: use {NO_PURCHASE_IN_HORIZON!r}")
    if isinstance(label, Mapping):
        unknown = set(label) - {"feature", "threshold", "direction"}
        if "feature" not in label or "threshold" not in label or unknown:
            raise ValueError(f"a threshold label needs keys 'feature' and 'threshold' "
                             f"(optional 'direction'), got {sorted(label)}")
        label = ThresholdLabel(str(label["feature"]), float(label["threshold"]),
                               str(label.get("direction", ">")))
    if not isinstance(label, ThresholdLabel):
        raise ValueError(f"unknown churn label {label!r}: use {NO_PURCHASE_IN_HORIZON!r}")
    if label.feature not in FEATURE_BASIS:
        raise ValueError(f"churn label {label.describe()!r}: {label.feature!r} is not a column "
                         f"of the customer features ({sorted(FEATURE_BASIS)})")
    shared = FEATURE_BASIS[label.feature]
    restating = [name for name, (source, _) in CHURN_INPUTS.items()
                 if set(FEATURE_BASIS[source]) & set(shared)]
    reads = (f"; the model reads the same {' and '.join(shared)} through "
             f"{', '.join(restating)}" if restating else "")
    raise LeakageError(
        f"churn label {label.describe()!r} is a threshold on the customer feature "
        f"{label.feature!r}{reads}. A label that restates the features is leakage: the model "
        f"would learn the threshold back (a near-perfect score and no prediction about the "
        f"future). Use label={NO_PURCHASE_IN_HORIZON!r}: features as of the cutoff, "
        f"churned = no purchase in the horizon after it.")


# --- features and training set ----------------------------------------------------------------

def check_features_as_of(features: pd.DataFrame, day) -> None:
    """Raise LeakageError unless ``features`` is a customer_features table as of ``day``.

    No purchase on or after ``day``, and recency_days / tenure_days measured up to ``day``
    (a table computed at a later date, e.g. at the end of the label window, fails).
    """
    if len(features) == 0:
        return
    end = _day_number(_as_day(day))
    first = _day_numbers(features["first_purchase_date"])
    last = _day_numbers(features["last_purchase_date"])
    if (last >= end).any():
        raise LeakageError(f"features hold purchases on or after {_as_day(day).date()}: "
                           f"they would see the label window")
    if not (np.array_equal(features["recency_days"].to_numpy(dtype=np.int64), end - last)
            and np.array_equal(features["tenure_days"].to_numpy(dtype=np.int64), end - first)):
        raise LeakageError(f"features were not computed as of {_as_day(day).date()}: "
                           f"recency_days / tenure_days are measured to another date")


def churn_design_matrix(features: pd.DataFrame) -> pd.DataFrame:
    """The model's inputs, CHURN_INPUTS in order, computed from CHURN_FEATURES only."""
    return pd.DataFrame(_design_array(features), columns=list(CHURN_INPUTS),
                        index=features.index)


def _design_array(features: pd.DataFrame) -> np.ndarray:
    missing = [c for c in CHURN_FEATURES if c not in features.columns]
    if missing:
        raise ValueError(f"features lack column(s) {missing} needed by the churn model")
    x = np.empty((len(features), len(CHURN_INPUTS)), dtype=np.float64)
    for j, (source, transform) in enumerate(CHURN_INPUTS.values()):
        values = features[source].to_numpy(dtype=np.float64)
        if transform == "log1p":
            # Clipped at 0: a net refund (negative total) counts as no spend.
            x[:, j] = np.log1p(np.clip(values, 0.0, None))
        elif transform == "is_zero":
            x[:, j] = values == 0
        else:
            x[:, j] = values
    return x


def churn_training_set(transactions: pd.DataFrame, cutoff, horizon_days: int,
                       label=NO_PURCHASE_IN_HORIZON, *, history_end=None) -> pd.DataFrame:
    """Features as of ``cutoff`` plus ``churned`` = no purchase in [cutoff, cutoff + horizon).

    The label window must be observed: end on or before ``history_end``, the day after the
    last transaction of the history (default: of ``transactions``). Give it when
    ``transactions`` are all the rows of a sample of customers, whose own last row may come
    before the history's last day.
    """
    check_label(label)
    _check_columns(transactions)
    horizon_days = int(horizon_days)
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    cutoff_day = _as_day(cutoff)
    window_end = cutoff_day + pd.Timedelta(days=horizon_days)
    days = _day_numbers(transactions["order_date"])
    if len(days) == 0:
        raise ValueError("transactions are empty")
    observed_end = (pd.Timestamp(np.datetime64(int(days.max()) + 1, "D")) if history_end is None
                    else _as_day(history_end))
    if window_end > observed_end:
        raise ValueError(
            f"label window [{cutoff_day.date()}, {window_end.date()}) is not fully observed: "
            f"the last transaction is on {(observed_end - pd.Timedelta(days=1)).date()}, so "
            f"cutoff + horizon_days must be on or before {observed_end.date()} "
            f"(use a cutoff on or before "
            f"{(observed_end - pd.Timedelta(days=horizon_days)).date()})")

    features = customer_features(transactions, cutoff_day)
    check_features_as_of(features, cutoff_day)
    start, end = _day_number(cutoff_day), _day_number(window_end)
    # Only a purchase in the window is activity: a return there is not.
    in_window = (days >= start) & (days < end)
    if "is_return" in transactions.columns:
        in_window &= ~transactions["is_return"].to_numpy(dtype=bool)
    ids = transactions["customer_id"].astype("str")
    active = ids.iloc[in_window].unique()
    # pyarrow's is_in: pandas' isin on pyarrow strings builds a Python list of the values
    # (seconds for millions of customers).
    bought_in_window = pc.is_in(pa.array(features["customer_id"], type=pa.large_string()),
                                value_set=pa.array(active, type=pa.large_string()))
    features[LABEL] = ~np.asarray(bought_in_window.to_numpy(zero_copy_only=False), dtype=bool)
    return features


# --- models -----------------------------------------------------------------------------------

class ClipToTrainingRange(TransformerMixin, BaseEstimator):
    """Clip each input to the [min, max] it had in ``fit``; NaN stays NaN.

    The first step of every candidate, so a model never extrapolates: inputs that grow with
    calendar time (tenure_days, and recency_days of a lapsed customer) are larger at scoring
    than anywhere in the training window. A column that was all NaN in training has NaN
    bounds, and maps every value to NaN, the only value the model saw.
    """

    def fit(self, x, y=None):
        x = np.asarray(x, dtype=np.float64)
        # fmin/fmax skip NaN (and give NaN for an all-NaN column, without a warning).
        self.data_min_ = np.fmin.reduce(x, axis=0)
        self.data_max_ = np.fmax.reduce(x, axis=0)
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, x):
        return np.minimum(np.maximum(np.asarray(x, dtype=np.float64), self.data_min_),
                          self.data_max_)


def _candidate(name: str, random_state: int) -> Pipeline:
    if name == LOGISTIC_REGRESSION:
        return Pipeline([
            ("clip", ClipToTrainingRange()),
            ("impute", SimpleImputer(strategy="mean", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("logit", LogisticRegression(max_iter=1000)),
        ])
    if name == HIST_GRADIENT_BOOSTING:
        return Pipeline([
            ("clip", ClipToTrainingRange()),
            ("boost", HistGradientBoostingClassifier(
                max_iter=50, learning_rate=0.1, max_depth=3, min_samples_leaf=200,
                early_stopping=False, random_state=random_state)),
        ])
    raise ValueError(f"unknown churn model {name!r}")


def _churn_proba(estimator, x: np.ndarray) -> np.ndarray:
    return estimator.predict_proba(x)[:, list(estimator.classes_).index(1)]


class _Platt:
    """Sigmoid calibration: P = expit(a * logit(p) + b), fitted on held-out probabilities.

    A logistic regression on logit(p) with scikit-learn's default L2 penalty (C=1): negligible
    on thousands of rows, and it keeps a and b finite when held-out scores separate the
    classes on a tiny log.
    """

    def fit(self, p: np.ndarray, y: np.ndarray) -> "_Platt":
        fit = LogisticRegression().fit(self._logit(p)[:, None], y)
        self.a, self.b = float(fit.coef_[0, 0]), float(fit.intercept_[0])
        return self

    @classmethod
    def of(cls, a: float, b: float) -> "_Platt":
        """The map with slope ``a`` and intercept ``b`` (a saved fit's)."""
        platt = cls()
        platt.a, platt.b = float(a), float(b)
        return platt

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return expit(self.a * self._logit(p) + self.b)

    @staticmethod
    def _logit(p: np.ndarray) -> np.ndarray:
        return logit(np.clip(p, 1e-9, 1 - 1e-9))


@dataclass
class _CalibratedModel:
    name: str
    estimator: Pipeline  # starts with ClipToTrainingRange: inputs clipped to the training range
    calibrator: _Platt

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.calibrator(_churn_proba(self.estimator, x))


def _folds(y: np.ndarray, cv_folds: int, random_state: int) -> list:
    n_splits = min(int(cv_folds), int(y.sum()), int((1 - y).sum()))
    if n_splits < MIN_CV_FOLDS:
        raise InsufficientData(f"too few customers in a churn class for cross-validation "
                               f"(each class needs at least {MIN_CV_FOLDS})")
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return list(splitter.split(np.zeros(len(y)), y))


def _cv_rows(y: np.ndarray, max_rows: int, random_state: int) -> np.ndarray:
    """All rows, or a stratified subsample of ``max_rows`` for the cross-validated steps."""
    if len(y) <= max_rows:
        return np.arange(len(y))
    rows, _ = train_test_split(np.arange(len(y)), train_size=int(max_rows), stratify=y,
                               random_state=random_state)
    return np.sort(rows)


def _out_of_fold(estimator, x: np.ndarray, y: np.ndarray, folds: list) -> np.ndarray:
    oof = np.empty(len(y), dtype=np.float64)
    for fit_rows, held_out in folds:
        oof[held_out] = _churn_proba(clone(estimator).fit(x[fit_rows], y[fit_rows]),
                                     x[held_out])
    return oof


def _nested_out_of_fold(estimator, x: np.ndarray, y: np.ndarray,
                        folds: list) -> tuple[np.ndarray, np.ndarray]:
    """(raw, calibrated) out-of-fold churn probabilities, the calibrator out of fold too.

    Outer fold k: the model is fitted on the other folds, and its Platt map on inner
    out-of-fold probabilities of the two neighbouring folds k - 1 and k + 1 (cyclically):
    the rows of fold k + 1 get theirs from a model fitted without folds k and k + 1, those of
    fold k - 1 from one fitted without k - 1 and k. Neither the model nor its calibrator ever
    sees fold k. The model without folds {k, k + 1} serves both of them, so this costs 2k
    fits (k pair models on (k - 2)/k of the rows, k outer models) instead of k^2 for a full
    inner cross-validation; a Platt map has two parameters, and two folds' rows are plenty.
    """
    k = len(folds)
    inner = np.full((k, len(y)), np.nan)  # inner[k]: inner out-of-fold p of k's neighbours
    for i in range(k):
        j = (i + 1) % k
        rows_i, rows_j = folds[i][1], folds[j][1]
        fit_rows = np.setdiff1d(folds[i][0], rows_j, assume_unique=True)
        model = clone(estimator).fit(x[fit_rows], y[fit_rows])
        p = _churn_proba(model, x[np.r_[rows_i, rows_j]])
        inner[j, rows_i], inner[i, rows_j] = p[:len(rows_i)], p[len(rows_i):]
    raw = np.empty(len(y), dtype=np.float64)
    calibrated = np.empty(len(y), dtype=np.float64)
    for i, (fit_rows, held_out) in enumerate(folds):
        raw[held_out] = _churn_proba(clone(estimator).fit(x[fit_rows], y[fit_rows]),
                                     x[held_out])
        neighbours = np.flatnonzero(~np.isnan(inner[i]))
        calibrated[held_out] = _Platt().fit(inner[i, neighbours], y[neighbours])(raw[held_out])
    return raw, calibrated


def _fit_calibrated(name: str, x: np.ndarray, y: np.ndarray, held_out_p: np.ndarray,
                    held_out_y: np.ndarray, random_state: int) -> _CalibratedModel:
    estimator = _candidate(name, random_state).fit(x, y)
    return _CalibratedModel(name, estimator, _Platt().fit(held_out_p, held_out_y))


def _fit_calibrated_by_cv(name: str, x: np.ndarray, y: np.ndarray, cv_folds: int,
                          max_cv_rows: int, random_state: int) -> _CalibratedModel:
    """The model fitted on all rows, its Platt map on out-of-fold probabilities (of at most
    ``max_cv_rows`` of them)."""
    rows = _cv_rows(y, max_cv_rows, random_state)
    folds = _folds(y[rows], cv_folds, random_state)
    held_out_p = _out_of_fold(_candidate(name, random_state), x[rows], y[rows], folds)
    return _fit_calibrated(name, x, y, held_out_p, y[rows], random_state)


# --- evaluation -------------------------------------------------------------------------------

def cumulative_gains(y, score, fractions) -> np.ndarray:
    """Share of all churners found in the top ``fractions`` (0..1) of customers by score.

    A tie group that straddles a boundary counts pro rata: the expectation under a random
    order within the tie (so a constant score captures exactly ``fractions``).
    """
    y, score = np.asarray(y, dtype=np.float64), np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="stable")
    ranked, hits = score[order], y[order]
    group_ends = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1]
    taken = np.r_[0, group_ends + 1]
    caught = np.r_[0, np.cumsum(hits)[group_ends]]
    return np.interp(np.asarray(fractions) * len(y), taken, caught) / hits.sum()


def _downsample(x, y) -> dict:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) > MAX_CURVE_POINTS:
        keep = np.unique(np.linspace(0, len(x) - 1, MAX_CURVE_POINTS).round().astype(np.int64))
        x, y = x[keep], y[keep]
    return {"x": [float(v) for v in x], "y": [float(v) for v in y]}


def _evaluate(y: np.ndarray, score: np.ndarray, is_probability: bool) -> tuple[dict, dict]:
    """Flat metrics and chart curves of one score on the validation customers."""
    metrics = _point_metrics(y, score, is_probability)
    metrics["capture_top_decile"] = float(cumulative_gains(y, score, np.array([TOP_DECILE]))[0])

    fpr, tpr, _ = roc_curve(y, score)
    precision, recall, _ = precision_recall_curve(y, score)
    deciles = np.arange(11) / 10
    gains = cumulative_gains(y, score, deciles)
    curves = {
        "roc": _downsample(fpr, tpr),                      # x = false positive rate, y = TPR
        "precision_recall": _downsample(recall[::-1], precision[::-1]),  # x = recall
        "gains": _downsample(deciles, gains),              # x = share targeted, y = capture
        "lift": _downsample(deciles[1:], gains[1:] / deciles[1:]),  # x = share targeted
    }
    return metrics, curves


def _point_metrics(y: np.ndarray, score: np.ndarray, is_probability: bool) -> dict[str, float]:
    """CV_METRICS of one score on one set of customers (brier, log_loss: probabilities only)."""
    out = {"roc_auc": float(roc_auc_score(y, score)),
           "pr_auc": float(average_precision_score(y, score))}
    if is_probability:
        out["brier"] = float(brier_score_loss(y, score))
        out["log_loss"] = float(log_loss(y, np.clip(score, 1e-15, 1 - 1e-15), labels=[0, 1]))
    out["lift_top_decile"] = float(cumulative_gains(y, score, np.array([TOP_DECILE]))[0]
                                   / TOP_DECILE)
    return out


def _fold_metrics(y: np.ndarray, score: np.ndarray, folds: list,
                  is_probability: bool) -> dict[str, np.ndarray]:
    """Each CV metric on each fold's held-out customers: name -> one value per fold."""
    per_fold = [_point_metrics(y[rows], score[rows], is_probability) for _, rows in folds]
    return {name: np.array([fold[name] for fold in per_fold]) for name in per_fold[0]}


def _cv_summary(per_fold: Mapping[str, np.ndarray], prefix: str = "",
                suffix: str = "") -> dict[str, float]:
    """``{prefix}cv_{metric}_mean{suffix}`` and ``..._sd{suffix}`` (sample sd, ddof=1)."""
    out = {}
    for name in CV_METRICS:
        if name in per_fold:
            values = per_fold[name]
            out[f"{prefix}cv_{name}_mean{suffix}"] = float(values.mean())
            out[f"{prefix}cv_{name}_sd{suffix}"] = float(values.std(ddof=1))
    return out


def _choose(per_fold: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """The candidate to keep, by fold mean SELECTION_METRIC (lower is better), ties to the
    simpler model.

    Candidates are tried in CANDIDATE_MODELS order, simplest first; a later one replaces the
    current choice only if its per-fold log losses are lower in a one-sided corrected
    resampled t-test at 5% (Nadeau and Bengio 2003): the paired fold differences d (same
    folds) give t = mean(d) / (sd(d) * sqrt(1/k + 1/(k - 1))), the second term for the
    overlap of the folds' training sets, which a plain paired t-test ignores. A smaller
    difference is a tie. (On CDNOW master the two candidates differ by ~0.0005 in log loss
    and a plain one-standard-error rule flipped between them with the fold seed.)
    """
    chosen = CANDIDATE_MODELS[0]
    for name in CANDIDATE_MODELS[1:]:
        diff = per_fold[name][SELECTION_METRIC] - per_fold[chosen][SELECTION_METRIC]
        k = len(diff)
        se = diff.std(ddof=1) * math.sqrt(1 / k + 1 / (k - 1))
        if diff.mean() < 0 and (se == 0 or -diff.mean() / se > student_t.ppf(0.95, k - 1)):
            chosen = name
    return chosen


def _calibration_table(y: np.ndarray, p: np.ndarray) -> list[dict]:
    bins = np.minimum((p * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    table = []
    for b in range(CALIBRATION_BINS):
        inside = bins == b
        count = int(inside.sum())
        table.append({
            "bin": b,
            "lower": b / CALIBRATION_BINS,
            "upper": (b + 1) / CALIBRATION_BINS,
            "count": count,
            "mean_predicted": float(p[inside].mean()) if count else None,
            "observed_rate": float(y[inside].mean()) if count else None,
        })
    return table


def _calibration_error(table: list[dict], n: int) -> float:
    return float(sum(row["count"] / n * abs(row["mean_predicted"] - row["observed_rate"])
                     for row in table if row["count"]))


# --- baselines --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Baseline:
    """A churn score to compare the model with; ``score(cutoff_features)`` -> one per row.

    Higher = more likely to churn. ``is_probability``: the score is P(churn) in [0, 1], so it
    gets a Brier score and log loss too (a rank-only score gets ROC-AUC, PR-AUC and lift).
    """

    score: Callable[[pd.DataFrame], np.ndarray]
    is_probability: bool = False


def _recency_rule(features: pd.DataFrame) -> np.ndarray:
    return features["recency_days"].to_numpy(dtype=np.float64)


RECENCY_BASELINE = Baseline(_recency_rule, is_probability=False)


def bgnbd_baselines(horizon_days: int) -> dict[str, Baseline]:
    """The BG/NBD model fitted on the cutoff features, as two baselines: 1 - P(alive), the
    chance of having dropped out (a ranking; 0 for every one-time buyer), and P(no purchase
    in the horizon), the model's forecast of the label's own event (a probability)."""
    from .clv import no_purchase_probability, p_alive_scores

    return {
        "bgnbd_p_alive": Baseline(lambda features: 1.0 - p_alive_scores(features)),
        "bgnbd_no_purchase": Baseline(
            lambda features: no_purchase_probability(features, horizon_days), is_probability=True),
    }


def _baselines(extra: Mapping[str, Callable | Baseline] | None) -> dict[str, Baseline]:
    out = {"recency": RECENCY_BASELINE}
    for name, spec in (extra or {}).items():
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"baseline name {name!r}: use lowercase letters, digits and _")
        if name in out:
            raise ValueError(f"baseline name {name!r} is taken (the recency rule is built in)")
        if not isinstance(spec, Baseline):
            if not callable(spec):
                raise ValueError(f"baseline {name!r} is neither callable nor a Baseline")
            spec = Baseline(spec)
        out[name] = spec
    return out


def _baseline_scores(name: str, spec: Baseline, features: pd.DataFrame) -> np.ndarray:
    # A shallow copy: with pandas' copy-on-write the callable cannot change our table.
    score = np.asarray(spec.score(features.copy(deep=False)), dtype=np.float64)
    if score.shape != (len(features),):
        raise ValueError(f"baseline {name!r} returned shape {score.shape}, "
                         f"expected one score per customer ({len(features)},)")
    if not np.isfinite(score).all():
        raise ValueError(f"baseline {name!r} returned non-finite scores")
    if spec.is_probability and ((score < 0) | (score > 1)).any():
        raise ValueError(f"baseline {name!r} is declared a probability but has scores "
                         f"outside [0, 1]")
    return score


# --- scoring ----------------------------------------------------------------------------------

def risk_band(p, thresholds: Mapping[str, float] = RISK_BAND_THRESHOLDS) -> np.ndarray:
    """"high" if p >= 0.7, "medium" if p >= 0.4, else "low" (RISK_BAND_THRESHOLDS, or the
    lower bounds of a fit's ``risk_band_thresholds``)."""
    p = np.asarray(p, dtype=np.float64)
    return np.where(p >= thresholds["high"], "high",
                    np.where(p >= thresholds["medium"], "medium", "low")).astype(object)


def _row_wise_churn_proba(pipeline: Pipeline, x: np.ndarray) -> np.ndarray:
    """The fitted pipeline's P(churn) for each row of ``x``, every row's bits independent of
    the other rows of the batch.

    scikit-learn's logistic regression takes the matrix-vector product x @ coef from BLAS,
    whose kernel sums a row's products in an order that depends on the row's place in the
    batch (blocks of 4 rows on OpenBLAS): the same customer's log-odds came out a few ulp
    apart in two batches. Scoring sums coef_j * input_j in CHURN_INPUTS order, element by
    element, instead: the same IEEE operations for every row, whatever the batch, the
    partition or the machine. Gradient boosting needs nothing of the kind: a row's raw score
    is its leaf values added tree by tree.
    """
    if not isinstance(pipeline.steps[-1][1], LogisticRegression):
        return _churn_proba(pipeline, x)
    inputs = pipeline[:-1].transform(x)
    coef, intercept = _linear_parts(pipeline)
    log_odds = np.zeros(len(inputs))
    for j in range(inputs.shape[1]):
        log_odds += inputs[:, j] * coef[j]
    return expit(log_odds + intercept)


def _linear_parts(pipeline: Pipeline) -> tuple[np.ndarray, float]:
    logit_step = pipeline.named_steps["logit"]
    sign = 1.0 if list(logit_step.classes_).index(1) == 1 else -1.0
    return sign * logit_step.coef_[0], sign * float(logit_step.intercept_[0])


def _driver_inputs(pipeline: Pipeline, x: np.ndarray) -> np.ndarray:
    """The logistic regression's inputs before scaling: clipped to the training range (as the
    model reads them) and imputed."""
    return pipeline.named_steps["impute"].transform(pipeline.named_steps["clip"].transform(x))


def _driver_center(pipeline: Pipeline, x: np.ndarray, chunk: int = DRIVER_CHUNK) -> np.ndarray:
    """Each input's mean over the customers of ``x`` (clipped and imputed), accumulated chunk by
    chunk (bounded memory): the typical customer the drivers compare each customer with."""
    total = np.zeros(x.shape[1])
    for start in range(0, len(x), chunk):
        total += _driver_inputs(pipeline, x[start:start + chunk]).sum(axis=0)
    return total / len(x)


def _top_drivers(pipeline: Pipeline, x: np.ndarray, center: np.ndarray,
                 chunk: int = DRIVER_CHUNK) -> np.ndarray:
    """(n, N_TOP_DRIVERS) input names by contribution coef_j * d_ij > 0, largest first.

    d_ij is customer i's input j (clipped to the training range, as the model reads it)
    minus ``center[j]``, in training standard deviations: a driver says what makes this
    customer riskier than the typical customer. ``center`` is a fitted quantity (the fit's
    ``driver_center``: the mean over the fitted customers' features as of the analysis date),
    never a statistic of the rows scored, so each row's drivers depend on that row alone.
    (Against the training window's mean instead, the horizon_days every customer has aged
    since the cutoff made tenure_days the first driver of nearly everyone on CDNOW, before
    clipping.)
    """
    coef, _ = _linear_parts(pipeline)
    k = min(N_TOP_DRIVERS, len(coef))
    inputs = np.array(list(CHURN_INPUTS), dtype=object)
    names = np.full((len(x), k), None, dtype=object)
    scale = pipeline.named_steps["scale"].scale_
    for start in range(0, len(x), chunk):
        part = _driver_inputs(pipeline, x[start:start + chunk])
        contribution = (part - center) / scale * coef
        order = np.argsort(-contribution, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(contribution, order, axis=1)
        block = inputs[order]
        block[~(top > 0)] = None
        names[start:start + chunk] = block
    return names


def _driver_table(pipeline: Pipeline) -> list[dict]:
    coef, _ = _linear_parts(pipeline)
    rows = [{"feature": name, "source": CHURN_INPUTS[name][0], "coefficient": float(w),
             "odds_ratio": float(math.exp(w))} for name, w in zip(CHURN_INPUTS, coef)]
    return sorted(rows, key=lambda row: -abs(row["coefficient"]))


# --- entry point ------------------------------------------------------------------------------

@dataclass
class ChurnResult:
    """What ``train_and_score`` returns.

    scores       DataFrame, one row per customer of customer_features(transactions,
                 analysis_date), same order: SCORE_COLUMNS = customer_id, churn_probability
                 (calibrated, in [0, 1]), risk_band (RISK_BANDS), top_driver_1..3 (names from
                 CHURN_INPUTS, or null).
    metrics      flat dict of JSON-ready numbers and strings (no NaN); see the module doc.
    calibration  10 equal-width bins of the chosen model's out-of-fold probabilities (every
                 customer of the cross-validation, each once): dicts with bin, lower, upper,
                 count, mean_predicted, observed_rate (None when the bin is empty); the counts
                 add up to n_validation.
    curves       name -> {"x": [...], "y": [...]} (plain floats, at most 100 points each):
                 roc (fpr, tpr), precision_recall (recall, precision), gains (share of
                 customers targeted 0..1 by decile, share of churners captured), lift (share
                 targeted 0.1..1, lift) for the model, from the same out-of-fold
                 probabilities; the same names prefixed ``<name>_baseline_`` for each
                 baseline, on the same customers.
    drivers      the logistic regression fitted on the whole training window: dicts with
                 feature (a CHURN_INPUTS name), source (its customer_features column),
                 coefficient (log-odds of churn per standard deviation), odds_ratio; sorted by
                 |coefficient|, largest first.

    Unpacks as ``scores, metrics = result`` for callers of the former tuple return.
    """

    scores: pd.DataFrame
    metrics: dict[str, Any]
    calibration: list[dict] = field(default_factory=list)
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    drivers: list[dict] = field(default_factory=list)

    def __iter__(self) -> Iterator:
        return iter((self.scores, self.metrics))


CHURN_FIT_FORMAT = "cdnow.churn_fit/1"
_FIT_ESTIMATORS = ("model", "driver_model")  # pickled; every other field of ChurnFit is plain
_PICKLE_PROTOCOL = 5  # Python 3.8+: Lambda's 3.12 and Glue 5.0's 3.11 alike


@dataclass(eq=False)
class ChurnFit:
    """What ``fit_churn`` learnt: everything ``score_churn`` needs, and the run summary's figures.

    model_name            the kept candidate (CANDIDATE_MODELS).
    model                 that candidate refitted on the whole training window: a scikit-learn
                          Pipeline whose first step, ClipToTrainingRange, holds every input's
                          training range (``input_ranges``).
    platt_slope, platt_intercept
                          its Platt map, fitted on its out-of-fold probabilities:
                          churn_probability = expit(slope * logit(p) + intercept), p the model's.
    driver_model          the logistic regression fitted on the same window (the same object as
                          ``model`` when it is the kept one): coefficients, imputation means
                          and scales of the drivers.
    driver_center         the typical customer the drivers compare each customer with: every
                          input's mean (clipped, imputed) over the fitted customers' features
                          as of the analysis date, ``driver_center_customers`` of them (every
                          customer on the Lambda path, the sample's on the Spark path).
    analysis_date, cutoff ISO dates the features are scored and were trained as of;
    horizon_days          P(churn) is of no purchase in this many days after the analysis date.
    metrics, calibration, curves, drivers
                          the run summary's figures, ``ChurnResult``'s (metrics without those of
                          the scored table, ``churn_score_summary``).
    inputs                CHURN_INPUTS names in the order of the model's columns; scoring
                          refuses a fit made for another order.
    risk_band_thresholds  lower bounds (inclusive) of the "medium" and "high" bands.

    ``to_bytes()`` / ``ChurnFit.from_bytes()`` serialize it for the scoring job: a line of JSON
    with every plain field (readable without unpickling), then the two scikit-learn pipelines
    as one pickle, which needs the same scikit-learn and this module to load (``from_bytes``
    refuses another scikit-learn version). Load only bytes the run itself wrote: unpickling
    runs code.
    """

    model_name: str
    model: Pipeline
    platt_slope: float
    platt_intercept: float
    driver_model: Pipeline
    driver_center: list[float]
    driver_center_customers: int
    analysis_date: str
    cutoff: str
    horizon_days: int
    metrics: dict[str, Any]
    calibration: list[dict] = field(default_factory=list)
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    drivers: list[dict] = field(default_factory=list)
    inputs: list[str] = field(default_factory=lambda: list(CHURN_INPUTS))
    risk_band_thresholds: dict[str, float] = field(
        default_factory=lambda: dict(RISK_BAND_THRESHOLDS))

    @property
    def input_ranges(self) -> dict[str, tuple[float, float]]:
        """input -> (min, max) over the training window: scoring clips every input to it
        (NaN bounds for an input that was NaN for every training customer)."""
        clip = self.model.named_steps["clip"]
        return {name: (float(low), float(high))
                for name, low, high in zip(self.inputs, clip.data_min_, clip.data_max_)}

    def to_bytes(self) -> bytes:
        plain = {f.name: getattr(self, f.name) for f in fields(self)
                 if f.name not in _FIT_ESTIMATORS}
        header = {"format": CHURN_FIT_FORMAT, "libraries": _library_versions(), "fit": plain}
        estimators = {name: getattr(self, name) for name in _FIT_ESTIMATORS}
        # json.dumps escapes every newline inside strings: the first b"\n" ends the header.
        return (json.dumps(header, allow_nan=False).encode("utf-8") + b"\n"
                + pickle.dumps(estimators, protocol=_PICKLE_PROTOCOL))

    @classmethod
    def from_bytes(cls, data: bytes) -> "ChurnFit":
        head, newline, body = bytes(data).partition(b"\n")
        try:
            header = json.loads(head.decode("utf-8"))
        except ValueError:
            header = None
        if not newline or not isinstance(header, dict) or header.get("format") != CHURN_FIT_FORMAT:
            raise ValueError(f"not a serialized churn fit ({CHURN_FIT_FORMAT})")
        saved, here = header["libraries"]["scikit-learn"], _library_versions()["scikit-learn"]
        if saved != here:
            raise ValueError(f"the churn fit was saved with scikit-learn {saved} and this is "
                             f"{here}: its models load only under the same version (pin it)")
        estimators = pickle.loads(body)  # noqa: S301 - the run's own fit, see the docstring
        return cls(**header["fit"], **{name: estimators[name] for name in _FIT_ESTIMATORS})


def _library_versions() -> dict[str, str]:
    import scipy
    import sklearn

    return {"scikit-learn": sklearn.__version__, "scipy": scipy.__version__,
            "numpy": np.__version__}


def fit_churn(transactions: pd.DataFrame, analysis_date,
              horizon_days: int = DEFAULT_CHURN_HORIZON_DAYS, *,
              cutoff=None,
              label=NO_PURCHASE_IN_HORIZON,
              baselines: Mapping[str, Callable[[pd.DataFrame], np.ndarray] | Baseline]
              | None = None,
              cv_folds: int = DEFAULT_CV_FOLDS,
              max_cv_rows: int = DEFAULT_MAX_CV_ROWS,
              random_state: int = 0,
              n_threads: int | None = 1,
              history_start=None,
              history_end=None) -> ChurnFit:
    """Everything churn learns, for ``score_churn`` to apply to any batch of customers.

    The training set at the cutoff, the nested cross-validation and the choice of model, the
    calibration, the back-test, the final refit, and the drivers' center (see "Fit and score"
    in the module doc). The arguments are ``train_and_score``'s. ``transactions`` may be every
    row of a sample of customers (all the rows of each sampled customer): every step reads
    whole customers, so the fit is the same procedure on fewer of them. The history then
    spans more than the sample's rows may show: ``history_start`` and ``history_end`` (the
    first transaction day and the day after the last of the whole history; default: the
    sample's) decide whether the label windows are observed and the history is long enough.
    """
    return _with_threads(n_threads, lambda: _fit_churn(
        transactions, analysis_date, horizon_days, cutoff, label, baselines,
        _checked_cv_folds(cv_folds), max_cv_rows, random_state, history_start, history_end)[0])


def score_churn(features: pd.DataFrame, fit: ChurnFit, *,
                n_threads: int | None = 1) -> pd.DataFrame:
    """The churn_scores rows (SCORE_COLUMNS) of the customers of ``features``, in their order.

    ``features``: customer_features rows as of the fit's analysis date (any subset of the
    customers, a Spark partition for example; LeakageError for rows computed as of another
    day). Each row's scores depend on that row and the fit only: scoring a batch in parts
    gives the same rows as scoring it whole. An empty batch gives an empty table.
    """
    return _with_threads(n_threads, lambda: _score(fit, features))


# The figures of ``churn_score_summary``.
SCORE_SUMMARY_FIGURES = ("n_scored", "mean_churn_probability",
                         *(f"share_{band}_risk" for band in reversed(RISK_BANDS)))


def churn_score_summary(scores: pd.DataFrame) -> dict[str, Any]:
    """The run's figures on its scored table: n_scored, mean_churn_probability and the share
    of each risk band (share_high_risk, share_medium_risk, share_low_risk).

    An aggregate over every scored customer, computed after scoring (a count and sums: a
    Spark job computes the same figures with one aggregation over its scores).
    """
    bands = scores["risk_band"].value_counts()
    n = len(scores)
    return {
        "n_scored": int(n),
        "mean_churn_probability": float(scores["churn_probability"].mean()),
        **{f"share_{band}_risk": float(bands.get(band, 0) / n) for band in reversed(RISK_BANDS)},
    }


def train_and_score(transactions: pd.DataFrame, analysis_date,
                    horizon_days: int = DEFAULT_CHURN_HORIZON_DAYS, *,
                    cutoff=None,
                    label=NO_PURCHASE_IN_HORIZON,
                    baselines: Mapping[str, Callable[[pd.DataFrame], np.ndarray] | Baseline]
                    | None = None,
                    cv_folds: int = DEFAULT_CV_FOLDS,
                    max_cv_rows: int = DEFAULT_MAX_CV_ROWS,
                    random_state: int = 0,
                    n_threads: int | None = 1) -> ChurnResult:
    """Train at the cutoff, cross-validate, select, calibrate, back-test; refit; score at
    ``analysis_date``: ``fit_churn`` on every customer, then ``score_churn`` of every
    customer's features as of the analysis date (the Lambda path).

    ``cutoff`` defaults to analysis_date - horizon_days; the label window [cutoff, cutoff +
    horizon_days) must end on or before the analysis date. ``label`` must be
    "no_purchase_in_horizon" (a feature threshold raises LeakageError). ``baselines``: extra
    scores compared with the model on the same cross-validation folds, name -> callable (or
    ``Baseline``) taking the cutoff feature table; the recency rule is always included.

    There is no fixed validation split: every figure is out of fold (``cv_folds``, at least 3;
    stratified and shuffled with ``random_state``), on at most ``max_cv_rows`` customers. The
    headline is the mean and sd over the folds (``cv_*_mean`` / ``cv_*_sd``); the unprefixed
    roc_auc, pr_auc, brier, ... as well as ``calibration`` and ``curves`` pool the same
    out-of-fold probabilities over the whole training window. The back-test (trained a
    horizon earlier, scored at the cutoff) is skipped with a UserWarning and a
    ``backtest_skipped`` reason when the history is too short for it; it never fails the
    run. See the module docstring for the method and ``ChurnResult`` for the return value.
    ``n_threads``: native threads (OpenMP, BLAS) for the model fits; None = the libraries'
    default (one per core). See "Threads" in the module docstring.
    """
    cv_folds = _checked_cv_folds(cv_folds)
    return _with_threads(n_threads, lambda: _train_and_score(
        transactions, analysis_date, horizon_days, cutoff, label, baselines, cv_folds,
        max_cv_rows, random_state))


def _checked_cv_folds(cv_folds) -> int:
    if int(cv_folds) < MIN_CV_FOLDS:
        raise ValueError(f"cv_folds must be at least {MIN_CV_FOLDS} (the calibrator of each "
                         f"fold is cross-validated on the others), got {cv_folds}")
    return int(cv_folds)


def _with_threads(n_threads: int | None, call: Callable[[], Any]) -> Any:
    if n_threads is None:
        return call()
    with threadpool_limits(limits=int(n_threads)):
        return call()


# The fit's own figures that train_and_score's metrics list after n_scored (their former order).
_FIT_FIGURES_AFTER_N_SCORED = ("cutoff", "analysis_date", "horizon_days")


def _train_and_score(transactions, analysis_date, horizon_days, cutoff, label, baselines,
                     cv_folds, max_cv_rows, random_state) -> ChurnResult:
    fit, current = _fit_churn(transactions, analysis_date, horizon_days, cutoff, label,
                              baselines, cv_folds, max_cv_rows, random_state, None, None)
    scores = _score(fit, current)
    del current
    return ChurnResult(scores=scores, metrics=churn_metrics(fit.metrics, churn_score_summary(scores)),
                       calibration=fit.calibration, curves=fit.curves, drivers=fit.drivers)


def churn_metrics(fit_metrics: dict[str, Any], score_summary: dict[str, Any]) -> dict[str, Any]:
    """The run's churn metrics: the fit's (``ChurnFit.metrics``) with the scored table's
    (``churn_score_summary``, or the same figures a Spark aggregation computed), in the order
    the run summary shows them."""
    summary = dict(score_summary)
    metrics = {key: value for key, value in fit_metrics.items()
               if key not in _FIT_FIGURES_AFTER_N_SCORED}
    metrics["n_scored"] = summary.pop("n_scored")
    metrics.update({key: fit_metrics[key] for key in _FIT_FIGURES_AFTER_N_SCORED})
    metrics.update(summary)
    return metrics


def _fit_churn(transactions, analysis_date, horizon_days, cutoff, label, baselines, cv_folds,
               max_cv_rows, random_state, history_start,
               history_end) -> tuple[ChurnFit, pd.DataFrame]:
    """(the fit, the fitted customers' features as of the analysis date, which its drivers'
    center was measured on and train_and_score scores)."""
    check_label(label)
    baseline_specs = _baselines(baselines)
    analysis_day = _as_day(analysis_date)
    horizon_days = int(horizon_days)
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    horizon = pd.Timedelta(days=horizon_days)
    cutoff_day = analysis_day - horizon if cutoff is None else _as_day(cutoff)
    if cutoff_day + horizon > analysis_day:
        raise ValueError(f"the label window [{cutoff_day.date()}, {(cutoff_day + horizon).date()})"
                         f" ends after the analysis date {analysis_day.date()}: use a cutoff on "
                         f"or before {(analysis_day - horizon).date()}")

    first_day = _as_day(transactions["order_date"].min())
    if history_start is not None:
        first_day = min(first_day, _as_day(history_start))
    if cutoff_day <= first_day:
        history = (analysis_day - first_day).days
        raise InsufficientData(
            f"the history ({first_day.date()} .. {(analysis_day - pd.Timedelta(days=1)).date()}, {history} days) "
            f"is not longer than the churn horizon of {horizon_days} days: no customer can be followed "
            "through a whole horizon to learn from")
    if (cutoff_day - first_day).days < MIN_DAYS_BEFORE_CUTOFF:
        raise InsufficientData(
            f"the cutoff {cutoff_day.date()} (the analysis date less the {horizon_days}-day horizon) leaves "
            f"{(cutoff_day - first_day).days} day(s) of history before it, fewer than {MIN_DAYS_BEFORE_CUTOFF}: "
            "too little behaviour to learn from")
    training = churn_training_set(transactions, cutoff_day, horizon_days, label=label,
                                  history_end=history_end)
    if len(training) == 0:
        raise InsufficientData(f"no customer purchased before the cutoff {cutoff_day.date()}")
    y = training[LABEL].to_numpy(dtype=np.int64)
    churned, stayed = int(y.sum()), int((1 - y).sum())
    if min(churned, stayed) < MIN_CUSTOMERS_PER_CLASS:
        raise InsufficientData(
            f"of the {len(y):,} customers who bought before the cutoff {cutoff_day.date()}, {churned:,} made no "
            f"purchase in the next {horizon_days} days and {stayed:,} did; each class needs at least "
            f"{MIN_CUSTOMERS_PER_CLASS} customers to train and validate on")
    x = _design_array(training)
    recency = _recency_rule(training)  # the back-test's recency rule, at its scoring date
    cutoff_features = training.drop(columns=[LABEL])
    del training  # large inputs: free each phase's tables before the next one
    cv_rows = _cv_rows(y, max_cv_rows, random_state)
    baseline_cv = {name: _baseline_scores(name, spec, cutoff_features)[cv_rows]
                   for name, spec in baseline_specs.items()}
    del cutoff_features

    metrics, calibration, curves, held_out_raw = _cross_validate(
        x[cv_rows], y[cv_rows], baseline_specs, baseline_cv, cv_folds, random_state)
    chosen = metrics["chosen_model"]
    metrics.update({
        "base_rate": float(y.mean()),
        "validation_base_rate": float(y[cv_rows].mean()),
        "n_train": int(len(y)),
        "n_validation": int(len(cv_rows)),
    })
    metrics.update(_backtest(transactions, first_day, cutoff_day, horizon_days, chosen, x, y,
                             recency, cv_folds, max_cv_rows, random_state, history_end))
    del recency

    # Refit on the whole window, calibrated on its out-of-fold probabilities (the outer folds').
    final = _fit_calibrated(chosen, x, y, held_out_raw, y[cv_rows], random_state)
    linear = (final.estimator if chosen == LOGISTIC_REGRESSION
              else _candidate(LOGISTIC_REGRESSION, random_state).fit(x, y))
    del x, y
    metrics.update({
        "cutoff": cutoff_day.date().isoformat(),
        "analysis_date": analysis_day.date().isoformat(),
        "horizon_days": horizon_days,
    })

    # The drivers' center: the typical customer as of the analysis date, among those fitted on.
    current = customer_features(transactions, analysis_day)
    check_features_as_of(current, analysis_day)
    center = (_driver_center(linear, _design_array(current)) if len(current)
              else np.zeros(len(CHURN_INPUTS)))
    fit = ChurnFit(
        model_name=chosen, model=final.estimator,
        platt_slope=final.calibrator.a, platt_intercept=final.calibrator.b,
        driver_model=linear, driver_center=[float(v) for v in center],
        driver_center_customers=int(len(current)),
        analysis_date=analysis_day.date().isoformat(), cutoff=cutoff_day.date().isoformat(),
        horizon_days=horizon_days, metrics=metrics, calibration=calibration, curves=curves,
        drivers=_driver_table(linear))
    return fit, current


def _cross_validate(x, y, baseline_specs, baseline_scores, cv_folds,
                    random_state) -> tuple[dict, list, dict, np.ndarray]:
    """Nested out-of-fold probabilities of every candidate on the same folds; the choice; the
    chosen model's and the baselines' figures per fold (mean, sd) and pooled over the window.

    Returns (metrics, calibration table, curves, the chosen model's raw out-of-fold
    probabilities, for the final model's calibrator).
    """
    folds = _folds(y, cv_folds, random_state)
    raw, calibrated, per_fold = {}, {}, {}
    for name in CANDIDATE_MODELS:
        raw[name], calibrated[name] = _nested_out_of_fold(_candidate(name, random_state), x, y,
                                                          folds)
        per_fold[name] = _fold_metrics(y, calibrated[name], folds, is_probability=True)
    chosen = _choose(per_fold)

    metrics: dict[str, Any] = {"chosen_model": chosen, "calibration_method": "sigmoid",
                               "selection_metric": f"cv_{SELECTION_METRIC}_mean"}
    metrics.update(_cv_summary(per_fold[chosen]))
    for name in CANDIDATE_MODELS:
        metrics.update(_cv_summary(per_fold[name], suffix=f"_{name}"))
    # Kept for earlier readers: the former selection figure, the same as cv_pr_auc_mean_<name>.
    metrics.update({f"cv_pr_auc_{name}": float(per_fold[name]["pr_auc"].mean())
                    for name in CANDIDATE_MODELS})
    metrics.update({"cv_folds": len(folds), "cv_rows": int(len(y))})

    p = calibrated[chosen]
    pooled, curves = _evaluate(y, p, is_probability=True)
    calibration = _calibration_table(y, p)
    pooled["calibration_error"] = _calibration_error(calibration, len(y))
    metrics.update(pooled)
    for name, spec in baseline_specs.items():
        score = baseline_scores[name]
        prefix = f"{name}_baseline_"
        metrics.update(_cv_summary(_fold_metrics(y, score, folds, spec.is_probability), prefix))
        baseline_metrics, baseline_curves = _evaluate(y, score, spec.is_probability)
        metrics.update({prefix + k: v for k, v in baseline_metrics.items()})
        curves.update({prefix + k: v for k, v in baseline_curves.items()})
    return metrics, calibration, curves, raw[chosen]


class _BacktestSkipped(Exception):
    pass


def _backtest(transactions, first_day, cutoff_day, horizon_days, chosen, x_then, y_then,
              recency_then, cv_folds, max_cv_rows, random_state,
              history_end=None) -> dict[str, Any]:
    """The chosen model kind, trained and calibrated a horizon before the cutoff, scores the
    training window's customers at the cutoff; compared with what they did in the label
    window. Skipped (a reason and a UserWarning, never an error) when it cannot run."""
    horizon = pd.Timedelta(days=horizon_days)
    train_cutoff = cutoff_day - horizon
    out: dict[str, Any] = {"backtest_train_cutoff": train_cutoff.date().isoformat(),
                           "backtest_score_date": cutoff_day.date().isoformat()}
    try:
        if train_cutoff <= first_day:
            raise _BacktestSkipped(
                f"the history starts on {first_day.date()}, less than two {horizon_days}-day "
                f"horizons before the end of the label window, so the back-test would train as "
                f"of {train_cutoff.date()} with no purchase before it")
        if (train_cutoff - first_day).days < MIN_DAYS_BEFORE_CUTOFF:
            raise _BacktestSkipped(
                f"the back-test would train as of {train_cutoff.date()}, with "
                f"{(train_cutoff - first_day).days} day(s) of history before it, fewer than "
                f"{MIN_DAYS_BEFORE_CUTOFF}")
        training = churn_training_set(transactions, train_cutoff, horizon_days,
                                      history_end=history_end)
        y_train = training[LABEL].to_numpy(dtype=np.int64)
        churned, stayed = int(y_train.sum()), int((1 - y_train).sum())
        if min(churned, stayed) < MIN_CUSTOMERS_PER_CLASS:
            raise _BacktestSkipped(
                f"of the {len(y_train):,} customers who bought before the back-test's training "
                f"cutoff {train_cutoff.date()}, {churned:,} made no purchase in the next "
                f"{horizon_days} days and {stayed:,} did, and each class needs at least "
                f"{MIN_CUSTOMERS_PER_CLASS}")
        x_train = _design_array(training)
        del training
        model = _fit_calibrated_by_cv(chosen, x_train, y_train, cv_folds, max_cv_rows,
                                      random_state)
        n_train = len(y_train)
        del x_train, y_train
        p = model.predict_proba(x_then)
        figures = _point_metrics(y_then, p, is_probability=True)
        recency_auc = float(roc_auc_score(y_then, recency_then))
    except _BacktestSkipped as skipped:
        reason = str(skipped)
    except Exception as failed:  # noqa: BLE001 - the back-test must never fail the run
        reason = f"the back-test failed ({type(failed).__name__}: {failed})"
    else:
        out.update({
            "backtest_n_train": int(n_train),
            "backtest_n_customers": int(len(y_then)),
            **{f"backtest_{name}": value for name, value in figures.items()},
            "backtest_predicted_churn_rate": float(p.mean()),
            "backtest_actual_churn_rate": float(y_then.mean()),
            "backtest_recency_baseline_roc_auc": recency_auc,
        })
        return out
    warnings.warn(f"churn back-test skipped: {reason}", UserWarning, stacklevel=4)
    out["backtest_skipped"] = reason
    return out


def _score(fit: ChurnFit, current: pd.DataFrame) -> pd.DataFrame:
    if list(fit.inputs) != list(CHURN_INPUTS):
        raise ValueError(f"the churn fit's inputs {fit.inputs} are not this code's "
                         f"{list(CHURN_INPUTS)}: refit the model")
    check_features_as_of(current, fit.analysis_date)
    x_now = _design_array(current)
    if len(x_now):
        p_now = _Platt.of(fit.platt_slope, fit.platt_intercept)(
            _row_wise_churn_proba(fit.model, x_now))
        drivers_now = _top_drivers(fit.driver_model, x_now, np.asarray(fit.driver_center))
    else:  # an empty batch (a Spark partition can be empty)
        p_now = np.empty(0, dtype=np.float64)
        drivers_now = np.full((0, N_TOP_DRIVERS), None, dtype=object)
    del x_now
    return pd.DataFrame({
        "customer_id": current["customer_id"].astype("str").reset_index(drop=True),
        "churn_probability": p_now,
        "risk_band": pd.Series(risk_band(p_now, fit.risk_band_thresholds), dtype="str"),
        **{f"top_driver_{i + 1}": pd.Series(drivers_now[:, i], dtype="str")
           for i in range(drivers_now.shape[1])},
    })
