"""Churn risk: a temporal classifier that only ever sees the past.

Pure logic on a transaction log; no I/O.

Training (``churn_training_set``)
    features: ``customer_features(transactions, cutoff)``, i.e. only rows before the cutoff;
    label:    ``churned`` = no purchase in [cutoff, cutoff + horizon_days).
    The label window must be fully observed (cutoff + horizon <= last order date + 1 day).
    No feature is computed from the label window, and the label is not a threshold on a
    feature (a "recency > 90 days means churned" label would be leakage: the model would just
    learn the threshold back).

Scoring (``train_and_score``)
    cutoff = analysis_date - horizon_days, so the newest fully observed window trains the
    model; it is validated on held-out customers (stratified split), refitted on all of them,
    and applied to the features as of the analysis date: P(no purchase in the horizon_days
    after the analysis date).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from .features import _as_day, _check_columns, _day_number, _day_numbers, customer_features

# Feature-table columns the model reads, and how each enters it. Counts, amounts and day gaps
# are heavy-tailed, so they enter as log1p; tenure is bounded by the data's age and enters as is.
CHURN_FEATURES = ["recency_days", "purchase_days", "monetary_total", "quantity_total",
                  "tenure_days"]
LOG1P_FEATURES = ("recency_days", "purchase_days", "monetary_total", "quantity_total")

LABEL = "churned"


def churn_design_matrix(features: pd.DataFrame) -> pd.DataFrame:
    """The model's inputs: CHURN_FEATURES, log1p where listed in LOG1P_FEATURES."""
    missing = [c for c in CHURN_FEATURES if c not in features.columns]
    if missing:
        raise ValueError(f"features lack column(s) {missing} needed by the churn model")
    columns = {}
    for name in CHURN_FEATURES:
        values = features[name].to_numpy(dtype=np.float64)
        if name in LOG1P_FEATURES:
            # Clipped at 0: a net refund (negative total) counts as no spend.
            columns[f"log1p_{name}"] = np.log1p(np.clip(values, 0.0, None))
        else:
            columns[name] = values
    return pd.DataFrame(columns, index=features.index)


def churn_training_set(transactions: pd.DataFrame, cutoff, horizon_days: int) -> pd.DataFrame:
    """Features as of ``cutoff`` plus ``churned`` = no purchase in [cutoff, cutoff + horizon)."""
    _check_columns(transactions)
    horizon_days = int(horizon_days)
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    cutoff_day = _as_day(cutoff)
    window_end = cutoff_day + pd.Timedelta(days=horizon_days)
    days = _day_numbers(transactions["order_date"])
    if len(days) == 0:
        raise ValueError("transactions are empty")
    observed_end = pd.Timestamp(np.datetime64(int(days.max()) + 1, "D"))
    if window_end > observed_end:
        raise ValueError(
            f"label window [{cutoff_day.date()}, {window_end.date()}) is not fully observed: "
            f"the last transaction is on {(observed_end - pd.Timedelta(days=1)).date()}, so "
            f"cutoff + horizon_days must be on or before {observed_end.date()} "
            f"(use a cutoff on or before "
            f"{(observed_end - pd.Timedelta(days=horizon_days)).date()})")

    features = customer_features(transactions, cutoff_day)
    start, end = _day_number(cutoff_day), _day_number(window_end)
    in_window = (days >= start) & (days < end)
    ids = transactions["customer_id"].astype("str")
    active = ids.iloc[in_window].unique()
    # pyarrow's is_in: pandas' isin on pyarrow strings builds a Python list of the values
    # (seconds for millions of customers).
    bought_in_window = pc.is_in(pa.array(features["customer_id"], type=pa.large_string()),
                                value_set=pa.array(active, type=pa.large_string()))
    features[LABEL] = ~np.asarray(bought_in_window.to_numpy(zero_copy_only=False), dtype=bool)
    return features


def _check_labels(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        raise ValueError("churn labels hold a single class: cannot train a classifier")
    return y


class ChurnModel:
    """StandardScaler + LogisticRegression on ``churn_design_matrix(features)``.

    ``predict_proba`` returns P(churn) as a 1-D array (not scikit-learn's two columns).
    After ``fit``: ``pipeline_`` and ``coefficients_`` (intercept and one weight per
    standardized input, for saving with the model's metrics).
    """

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    def fit(self, features: pd.DataFrame, y) -> "ChurnModel":
        y = _check_labels(y)
        x = churn_design_matrix(features)
        self.pipeline_ = Pipeline([
            ("scale", StandardScaler()),
            ("logit", LogisticRegression(max_iter=1000, random_state=self.random_state)),
        ]).fit(x, y)
        logit = self.pipeline_.named_steps["logit"]
        self._churn_column = int(np.flatnonzero(logit.classes_ == True)[0])  # noqa: E712
        self.feature_names_in_ = list(x.columns)
        self.coefficients_ = {"intercept": float(logit.intercept_[0]),
                              **{n: float(w) for n, w in zip(x.columns, logit.coef_[0])}}
        return self

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        proba = self.pipeline_.predict_proba(churn_design_matrix(features))
        return proba[:, self._churn_column]


def _metrics(y: np.ndarray, p: np.ndarray) -> dict:
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[False, True])),
    }


def train_and_score(transactions: pd.DataFrame, analysis_date, horizon_days: int = 180,
                    test_size: float = 0.25,
                    random_state: int = 0) -> tuple[pd.DataFrame, dict]:
    """Train at cutoff = analysis_date - horizon_days, validate, refit, score at analysis_date.

    Returns (scores, metrics): scores has customer_id and churn_probability for every
    customer in ``customer_features(transactions, analysis_date)``; metrics are plain
    JSON-serializable values.
    """
    analysis_day = _as_day(analysis_date)
    horizon_days = int(horizon_days)
    cutoff = analysis_day - pd.Timedelta(days=horizon_days)
    training = churn_training_set(transactions, cutoff, horizon_days)
    if len(training) == 0:
        raise ValueError(f"no customer purchased before the cutoff {cutoff.date()}")
    y = _check_labels(training[LABEL].to_numpy())
    if min(int(y.sum()), int((~y).sum())) < 2:
        raise ValueError("each churn class needs at least two customers for a stratified split")

    train_idx, valid_idx = train_test_split(np.arange(len(training)), test_size=test_size,
                                            stratify=y, random_state=random_state)
    train_rows, valid_rows = training.iloc[train_idx], training.iloc[valid_idx]
    model = ChurnModel(random_state=random_state).fit(train_rows, y[train_idx])
    y_valid = y[valid_idx]
    metrics = _metrics(y_valid, model.predict_proba(valid_rows))
    # The rule a marketer would use without a model: longer since the last purchase, more
    # likely gone. The model has to beat it to earn its place.
    recency_score = valid_rows["recency_days"].to_numpy(dtype=np.float64)
    metrics["recency_baseline_roc_auc"] = float(roc_auc_score(y_valid, recency_score))
    metrics["recency_baseline_pr_auc"] = float(average_precision_score(y_valid, recency_score))
    metrics.update({
        "base_rate": float(y.mean()),
        "validation_base_rate": float(y_valid.mean()),
        "n_train": int(len(train_idx)),
        "n_validation": int(len(valid_idx)),
        "cutoff": cutoff.date().isoformat(),
        "analysis_date": analysis_day.date().isoformat(),
        "horizon_days": horizon_days,
    })

    final = ChurnModel(random_state=random_state).fit(training, y)
    # Flat keys, so the metrics stay one level deep (a JSON object of numbers and strings).
    metrics.update({f"coef_{name}": w for name, w in final.coefficients_.items()})
    current = customer_features(transactions, analysis_day)
    scores = pd.DataFrame({
        "customer_id": current["customer_id"].to_numpy(),
        "churn_probability": (final.predict_proba(current) if len(current)
                              else np.empty(0, dtype=np.float64)),
    })
    scores["customer_id"] = scores["customer_id"].astype("str")
    metrics["n_scored"] = int(len(scores))
    return scores, metrics
