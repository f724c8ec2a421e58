"""Customer lifetime value: BG/NBD purchase counts and Gamma-Gamma spend per purchase.

Pure logic on a transaction log or a customer_features table; no I/O.

Models
------
``BetaGeoModel`` -- BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way").
    While alive, a customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha)
    (shape r, rate alpha); after each purchase they drop out for good with probability
    p ~ Beta(a, b). A customer is summarised by (x, t_x, T): x repeat purchases, the last one
    at age t_x, observed up to age T. Per customer, with delta = [x > 0]::

        L = Gamma(r+x) alpha^r / Gamma(r) * [ B(a, b+x)/B(a, b) (alpha+T)^-(r+x)
                                             + delta B(a+1, b+x-1)/B(a, b) (alpha+t_x)^-(r+x) ]

    ``bgnbd_log_likelihood`` evaluates log L exactly like that (no constant dropped, so the
    CDNOW fit reproduces the paper's -9582.4) with gammaln and logaddexp, so it stays finite
    for any x and T. Fitted by maximum likelihood over log-parameters (L-BFGS-B, bounded, with
    the analytic gradient). Derived quantities:

    * P(alive | x, t_x, T) = 1 / (1 + delta a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)); 1 for x = 0.
    * E[Y(t) | x, t_x, T], purchases in the next t time units (paper eq. 10). Its Gauss
      2F1(r+x, b+x; a+b+x-1; z) term overflows for large x, so it is evaluated after Euler's
      transformation, (1-z)^(r+x) 2F1(r+x, b+x; c; z) = (1-z)^(a-1) 2F1(a+b-1-r, a-1; c; z),
      whose series has small numerator parameters. scipy's hyp2f1 still returns inf/NaN for
      some large parameters (a in the hundreds, or r + x large with t >> alpha + T); those rows
      are recomputed from the equivalent integral E[Y(t)] = P(alive) E[(1 - (1+pc)^-(r+x))/p],
      p ~ Beta(a, b+x), c = t/(alpha+T), by Gauss quadrature for the Beta weight. (Given alive
      at T, lambda ~ Gamma(r+x, alpha+T) and p ~ Beta(a, b+x), and a customer with (lambda, p)
      buys (1 - exp(-lambda p t))/p times on average in the next t.)
    * E[X(t)] for a new customer: the same with x = t_x = T = 0.
    * P(no purchase in the next t | x, t_x, T) = 1 - P(alive) (1 - ((alpha+T)/(alpha+T+t))^(r+x)).

``GammaGammaModel`` -- Gamma-Gamma spend model (Colombo & Jiang 1999; Fader, Hardie & Lee 2005
    "RFM and CLV"; Fader & Hardie 2013 note). Each transaction value ~ Gamma(p, nu) with the
    customer's nu ~ Gamma(q, v); the average m_x of x transactions has a closed-form density.
    E[M | x, m_x] = (q-1)/(px+q-1) * pv/(q-1) + px/(px+q-1) * m_x: a weighted average of the
    population mean pv/(q-1) (needs q > 1) and the customer's own average. The model assumes
    spend is independent of purchase frequency; ``customer_value`` reports their correlation
    among repeat buyers as ``gg_frequency_monetary_corr`` so that can be checked.

Both ``fit`` methods first collapse identical input rows into one row with a count (weight):
the log-likelihood is a sum over customers, so sum_i l(row_i) = sum_k n_k l(row_k) over the
distinct rows k, and the same holds for the gradient. Callers holding rows already collapsed
can pass the counts as ``fit(..., weights=counts)``. On CDNOW (integer days) 23,570 customers
collapse to a few thousand distinct (x, t_x, T) rows, which makes the fit's cost independent of
the number of customers. Predictions are computed once per distinct row the same way.
Fits are deterministic: a fixed starting point, a deterministic optimizer, sorted aggregation.

Definitions used by the domain functions
----------------------------------------
* Times: customer_features gives days; the models work in ``time_unit_days`` units (default 7,
  weeks, as in the published CDNOW fits; the fit is invariant to the unit apart from alpha's
  scale and a constant in the log-likelihood, but alpha near 1-10 helps the optimizer).
* A purchase is a purchase day (customer, date), as in customer_features: frequency = distinct
  purchase days - 1, recency = last - first purchase day, T = window end (exclusive) - first day.
* ``monetary_value`` = mean spend per *repeat* purchase day: each purchase day's amounts are
  summed, the first purchase day is excluded, and the rest are averaged. This is the published
  definition (m_x, "the average value of the x repeat transactions") and reproduces the
  published CDNOW Gamma-Gamma fit (p=6.25, q=3.74, v=15.44 on 946 repeat buyers). It is NaN for
  one-time buyers (they have no repeat purchase to average). Repeat buyers whose monetary_value
  is not positive (all repeat days have amount 0, or refunds) are left out of the Gamma-Gamma
  fit, which needs m_x > 0; their expected spend is still predicted (shrunk toward the mean).
* ``clv_12m``: 12 monthly steps of 365/12 days. Month m's expected purchases are
  E[Y(m L)] - E[Y((m-1) L)], valued at the expected average spend times ``margin`` (default 1:
  revenue) and discounted to the analysis date at the end of the month with the monthly rate
  equivalent to ``annual_discount_rate``: factor (1 + annual)^(-m/12). So the undiscounted sum
  of the monthly purchases equals expected_purchases_365d.
* ``default_calibration_end(first_day, analysis_date)``: the midpoint (rounded down to a day) of
  the observed period [first_day, analysis_date). For CDNOW (1997-01-01 .. 1998-07-01) that is
  1997-10-01, the paper's 39/39-week split.

Domain functions
----------------
* ``value_inputs(transactions, calibration_end, observation_end=None)``: frequency, recency, T,
  monetary_value per customer (+ holdout_purchases, holdout_days).
* ``holdout_check(transactions, calibration_end, observation_end, time_unit_days=7)``: fit on the
  calibration window, predicted vs actual holdout purchases (JSON-ready dict).
* ``customer_value(transactions, analysis_date, annual_discount_rate=0.10, time_unit_days=7)``:
  per-customer p_alive, expected purchases (90 / 365 days), expected average spend, clv_12m;
  plus a flat metrics dict. ``value_from_inputs(inputs, ...)`` does the same from a
  value_inputs table.
* ``p_alive_scores(features, time_unit_days=7)``: P(alive) per row of a customer_features table.
* ``no_purchase_probability(features, horizon_days)``: the BG/NBD's P(no purchase in the
  horizon) per row, the churn label's event (a probability baseline for the churn model).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.linalg import eigh_tridiagonal
from scipy.optimize import minimize
from scipy.special import digamma, expit, gammaln, hyp2f1

from .features import (
    _as_day, _check_columns, _customer_codes, _day_number, _day_numbers, customer_features, purchase_rows,
)
from .support import InsufficientData

DAYS_PER_YEAR = 365
CLV_MONTHS = 12

# Log-parameter box: wide enough for any real fit, narrow enough that a degenerate data set
# (e.g. no repeat buyer at all, whose MLE runs off to 0 or infinity) still ends finite.
_LOG_BOUND = 20.0

# E[Y(t)] has a removable 0/0 at a = 1; within this distance it is interpolated across it.
_A_NEAR_ONE = 1e-5
# Cap on the Gauss-Beta quadrature's nodes (the fallback for E[Y(t)]; see _conditional_expected).
_MAX_NODES = 600


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def _float_array(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has missing or infinite values")
    return arr


def _distinct_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The distinct rows of equal-length columns (sorted), their counts, and each input row's
    index into them. Each column is factorized by hashing, then the codes are combined into
    one int64 key, which sorts far faster than np.unique(axis=0) on a float matrix."""
    n = len(columns[0])
    codes, sizes = [], []
    for col in columns:
        c, uniques = pd.factorize(col, sort=True)
        codes.append(c.astype(np.int64))
        sizes.append(max(len(uniques), 1))
    if float(np.prod(np.asarray(sizes, dtype=np.float64))) < 2.0**62:
        key = np.zeros(n, dtype=np.int64)
        for c, size in zip(codes, sizes):
            key = key * size + c
        _, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True,
                                              return_counts=True)
    else:  # too many distinct values to pack into one int64 key
        _, first, inverse, counts = np.unique(np.column_stack(codes), axis=0, return_index=True,
                                              return_inverse=True, return_counts=True)
    return [col[first] for col in columns], counts.astype(np.float64), inverse.reshape(-1)


def _fit_rows(columns: list[np.ndarray], weights, aggregate: bool):
    """The rows a fit runs on, with their weights: the distinct rows with summed weights when
    ``aggregate``, else the rows as given."""
    n = len(columns[0])
    if weights is None:
        w = np.ones(n)
    else:
        w = _float_array("weights", weights)
        if len(w) != n:
            raise ValueError("weights must have one value per row")
        if (w < 0).any():
            raise ValueError("weights must be non-negative")
    if aggregate:
        columns, counts, inverse = _distinct_rows(*columns)
        w = counts if weights is None else np.bincount(inverse, weights=w, minlength=len(counts))
    if not w.sum() > 0:
        raise ValueError("the rows' total weight must be positive")
    return columns, w


def _weighted_sum(weights: np.ndarray, values: np.ndarray) -> float:
    # Not ``weights @ values``: BLAS dot products cost a thread hand-off per call and may sum in
    # a thread-count-dependent order; numpy's pairwise sum is fast here and reproducible.
    return float(np.sum(weights * values))


def _check_rfm(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _float_array("frequency", frequency)
    tx = _float_array("recency", recency)
    t_end = _float_array("T", T)
    if not (len(x) == len(tx) == len(t_end)):
        raise ValueError("frequency, recency and T must have the same length")
    if (x < 0).any() or (tx < 0).any():
        raise ValueError("frequency and recency must be non-negative")
    if (t_end <= 0).any():
        raise ValueError("T must be positive (the window ends after the first purchase)")
    if (tx > t_end).any():
        raise ValueError("recency cannot exceed T")
    return x, tx, t_end


def _objective(terms, log_params, data, weights, penalizer):
    """Mean negative log-likelihood per customer plus ``penalizer * sum(params^2)``, and its
    gradient in the log-parameters (d/d log p = p d/dp). Per customer, so the tolerances and
    the penalty mean the same for 2 thousand and 2 million customers."""
    params = np.exp(log_params)
    ll, grads = terms(*data, *params, gradient=True)
    n = weights.sum()
    value = -_weighted_sum(weights, ll) / n + penalizer * np.sum(params**2)
    grad = (-np.array([_weighted_sum(weights, g) for g in grads]) * params / n
            + 2.0 * penalizer * params**2)
    return value, grad


def _minimize(objective, x0: np.ndarray) -> tuple[np.ndarray, bool, int]:
    """L-BFGS-B on the log-parameters; returns (log-parameters, converged, iterations)."""
    result = minimize(objective, x0, jac=True, method="L-BFGS-B",
                      bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(x0),
                      options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-9})
    # With tolerances this tight, L-BFGS-B often ends with "ABNORMAL" (the line search cannot
    # improve on a point already at machine precision). Judge convergence by the projected
    # gradient of the per-customer objective instead; components pushing against a bound
    # do not count.
    grad = np.asarray(result.jac, dtype=np.float64).copy()
    grad[(result.x <= -_LOG_BOUND) & (grad > 0)] = 0.0
    grad[(result.x >= _LOG_BOUND) & (grad < 0)] = 0.0
    converged = bool(result.success) or float(np.max(np.abs(grad))) < 1e-6
    if not converged:
        warnings.warn(f"maximum-likelihood fit did not converge: {result.message}",
                      RuntimeWarning, stacklevel=3)
    return result.x, converged, int(result.nit)


# ----------------------------------------------------------------------------------------------
# BG/NBD
# ----------------------------------------------------------------------------------------------

def _bgnbd_terms(x, tx, T, r, alpha, a, b, gradient: bool):
    """Per-row log-likelihood and (optionally) its partial derivatives in r, alpha, a, b."""
    repeat = x > 0
    ln_a_T = np.log(alpha + T)
    ln_a_tx = np.log(alpha + tx)
    bx1 = np.where(repeat, b + x - 1.0, 1.0)  # b + x - 1 only appears when x > 0
    common = (gammaln(r + x) - gammaln(r) + r * np.log(alpha)
              + gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x))
    still_alive = -(r + x) * ln_a_T                         # alive at T
    dropped = np.where(repeat, np.log(a) - np.log(bx1) - (r + x) * ln_a_tx, -np.inf)
    ll = common + np.logaddexp(still_alive, dropped)
    if not gradient:
        return ll, None
    w_drop = expit(dropped - still_alive)  # share of the dropped-out branch in L; 0 for x = 0
    w_alive = 1.0 - w_drop
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - w_alive * ln_a_T - w_drop * ln_a_tx
    d_alpha = r / alpha - (r + x) * (w_alive / (alpha + T) + w_drop / (alpha + tx))
    psi_ab, psi_abx = digamma(a + b), digamma(a + b + x)
    d_a = psi_ab - psi_abx + w_drop / a
    d_b = psi_ab + digamma(b + x) - digamma(b) - psi_abx - w_drop / bx1
    return ll, (d_r, d_alpha, d_a, d_b)


def bgnbd_log_likelihood(frequency, recency, T, r: float, alpha: float, a: float,
                         b: float) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood log L(r, alpha, a, b | x, t_x, T) (module docstring)."""
    x, tx, t_end = _check_rfm(frequency, recency, T)
    ll, _ = _bgnbd_terms(x, tx, t_end, r, alpha, a, b, gradient=False)
    return ll


def _beta_gauss_rule(A: float, B: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point Gauss rule for E[f(p)], p ~ Beta(A, B) (Golub-Welsch).
    The Jacobi-matrix recurrence is written directly on [0, 1] (not mapped from [-1, 1]), so a
    node near 0 keeps its absolute precision when B is huge; the weights are the squared first
    eigenvector components, normalized by construction (no Beta function to overflow)."""
    k = np.arange(1, n, dtype=np.float64)
    S = A + B
    diag = np.empty(n)
    diag[0] = A / S  # the Beta mean
    diag[1:] = (2 * k**2 + 2 * k * (S - 1) + A * (S - 2)) / ((2 * k + S - 2) * (2 * k + S))
    off2 = k * (k + A - 1) * (k + B - 1) * (k + S - 2) / (
        (2 * k + S - 2) ** 2 * (2 * k + S - 1) * (2 * k + S - 3))
    if n > 1:
        off2[0] = A * B / (S**2 * (S + 1))  # the Beta variance (k = 1 has a removable 0/0)
    nodes, vectors = eigh_tridiagonal(diag, np.sqrt(off2))
    return np.clip(nodes, 0.0, 1.0), vectors[0] ** 2


def _expected_alive_by_quadrature(c, s, a, B) -> np.ndarray:
    """E[(1 - (1 + p c)^-s) / p], p ~ Beta(a, B): purchases in the horizon of a customer alive
    now, with c = t / (alpha + T) and s = r + x. One Gauss rule per distinct B (= b + x)."""
    out = np.empty(len(c))
    for value in np.unique(B):
        group = np.flatnonzero(B == value)
        # The integrand bends at p ~ 1/(c s); more nodes resolve that when c s is large.
        n = int(min(_MAX_NODES, 40 + np.ceil(6.0 * np.sqrt(np.max(c[group] * s[group])))))
        nodes, weights = _beta_gauss_rule(a, float(value), n)
        safe = np.where(nodes > 0, nodes, 1.0)
        for rows in np.array_split(group, max(1, len(group) * n // 2_000_000)):
            cs, ss = c[rows, None], s[rows, None]
            h = np.where(nodes > 0, -np.expm1(-ss * np.log1p(nodes * cs)) / safe, ss * cs)
            out[rows] = (h * weights).sum(axis=1)
    return out


def _conditional_expected(t, x, tx, T, r, alpha, a, b, p_alive):
    """E[Y(t) | x, t_x, T] (module docstring): the closed form with the Euler-transformed 2F1,
    and Gauss quadrature of its integral form where scipy's hyp2f1 fails."""
    def closed_form(a_):
        z = t / (alpha + T + t)
        survive = np.exp((a_ - 1.0) * np.log1p(-z)) * hyp2f1(a_ + b - 1.0 - r, a_ - 1.0,
                                                              a_ + b + x - 1.0, z)
        return (a_ + b + x - 1.0) / (a_ - 1.0) * (1.0 - survive)

    with np.errstate(all="ignore"):  # failures are caught below, row by row
        if abs(a - 1.0) < _A_NEAR_ONE:
            # Removable singularity: the function is smooth in a, so interpolating linearly
            # between a = 1 -/+ h is accurate to O(h^2), and both ends avoid the 0/0.
            lo, hi = closed_form(1.0 - _A_NEAR_ONE), closed_form(1.0 + _A_NEAR_ONE)
            alive = lo + (hi - lo) * (a - (1.0 - _A_NEAR_ONE)) / (2.0 * _A_NEAR_ONE)
        else:
            alive = closed_form(a)
    alive = np.broadcast_to(alive, np.broadcast(x, T, t).shape).astype(np.float64)
    c = np.broadcast_to(t / (alpha + T), alive.shape)
    s = np.broadcast_to(r + x, alive.shape)
    # The integrand (1 - (1+pc)^-s)/p lies between its values at p = 1 and p -> 0.
    lower, upper = -np.expm1(-s * np.log1p(c)), s * c
    failed = ~np.isfinite(alive) | (alive < lower * (1 - 1e-9)) | (alive > upper * (1 + 1e-9))
    if failed.any():
        alive[failed] = _expected_alive_by_quadrature(
            c[failed], s[failed], a, np.broadcast_to(b + x, alive.shape)[failed])
    return p_alive * alive


class BetaGeoModel:
    """BG/NBD model of repeat purchase counts, fitted by maximum likelihood.

    Parameters
    ----------
    penalizer : L2 penalty added to the mean negative log-likelihood per customer,
        ``penalizer * (r^2 + alpha^2 + a^2 + b^2)``; 0 (default) is plain maximum likelihood.
    time_unit_days : length in days of the time unit the inputs are given in (7 = weeks). The
        model works in that unit (alpha is a rate scale per unit); it is recorded so that
        callers converting from days, and readers of ``params_``, know the scale.
    aggregate : collapse identical (frequency, recency, T) rows into weighted rows before
        fitting and predicting (exact; see the module docstring). Off only for benchmarking.

    After ``fit``: ``params_`` (dict r, alpha, a, b), ``log_likelihood_`` (total, unpenalized),
    ``n_customers_``, ``n_distinct_rows_``, ``converged_``, ``n_iter_``.
    """

    def __init__(self, penalizer: float = 0.0, time_unit_days: float = 7,
                 aggregate: bool = True):
        self.penalizer = penalizer
        self.time_unit_days = time_unit_days
        self.aggregate = aggregate

    def fit(self, frequency, recency, T, weights=None) -> "BetaGeoModel":
        """Maximum-likelihood fit. ``weights`` (optional): how many customers each row stands
        for, e.g. rows already collapsed to distinct (frequency, recency, T) with their counts."""
        if self.penalizer < 0:
            raise ValueError(f"penalizer must be >= 0, got {self.penalizer}")
        x, tx, t_end = _check_rfm(frequency, recency, T)
        if len(x) == 0:
            raise ValueError("cannot fit BG/NBD on zero customers")
        (x, tx, t_end), weights = _fit_rows([x, tx, t_end], weights, self.aggregate)
        # Start: r = a = b = 1 and alpha = mean T, i.e. about one purchase per observed lifetime.
        x0 = np.log([1.0, _weighted_sum(weights, t_end) / weights.sum(), 1.0, 1.0])
        log_params, self.converged_, self.n_iter_ = _minimize(
            lambda lp: _objective(_bgnbd_terms, lp, (x, tx, t_end), weights,
                                  float(self.penalizer)), x0)
        r, alpha, a, b = (float(v) for v in np.exp(log_params))
        self.params_ = {"r": r, "alpha": alpha, "a": a, "b": b}
        ll, _ = _bgnbd_terms(x, tx, t_end, r, alpha, a, b, gradient=False)
        self.log_likelihood_ = _weighted_sum(weights, ll)
        self.n_customers_ = int(round(weights.sum()))
        self.n_distinct_rows_ = int(len(x))
        return self

    def _params(self) -> tuple[float, float, float, float]:
        if not hasattr(self, "params_"):
            raise RuntimeError("BetaGeoModel is not fitted: call fit() first")
        p = self.params_
        return p["r"], p["alpha"], p["a"], p["b"]

    def _per_distinct_row(self, func, frequency, recency, T) -> np.ndarray:
        x, tx, t_end = _check_rfm(frequency, recency, T)
        if not self.aggregate or len(x) == 0:
            return func(x, tx, t_end)
        (ux, utx, uT), _, inverse = _distinct_rows(x, tx, t_end)
        return func(ux, utx, uT)[inverse]

    @staticmethod
    def _p_alive(x, tx, T, r, alpha, a, b):
        repeat = x > 0
        # log of the odds of having dropped out; log1p keeps (alpha+T)/(alpha+t_x) exact near 1.
        log_odds_dead = (np.log(a) - np.log(np.where(repeat, b + x - 1.0, 1.0))
                         + (r + x) * np.log1p((T - tx) / (alpha + tx)))
        return np.where(repeat, expit(-log_odds_dead), 1.0)

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        """P(still alive at T | x, t_x, T); exactly 1 for customers with no repeat purchase."""
        params = self._params()
        return self._per_distinct_row(lambda x, tx, t: self._p_alive(x, tx, t, *params),
                                      frequency, recency, T)

    def expected_purchases(self, t: float, frequency, recency, T) -> np.ndarray:
        """E[number of purchases in the next ``t`` time units | x, t_x, T]."""
        t = float(t)
        if not np.isfinite(t) or t < 0:
            raise ValueError(f"t must be a non-negative number, got {t}")
        params = self._params()

        def func(x, tx, t_end):
            alive = self._p_alive(x, tx, t_end, *params)
            return np.maximum(_conditional_expected(t, x, tx, t_end, *params, alive), 0.0)

        return self._per_distinct_row(func, frequency, recency, T)

    def probability_no_purchase(self, t: float, frequency, recency, T) -> np.ndarray:
        """P(no purchase in the next ``t`` time units | x, t_x, T): already dropped out, or
        alive and quiet. Given alive at T, lambda ~ Gamma(r+x, alpha+T), and a customer drops
        out only right after a purchase, so P(quiet | alive) = ((alpha+T)/(alpha+T+t))^(r+x).
        This is the BG/NBD's own forecast of "no purchase in the horizon" (the churn label);
        1 - P(alive) is not: it is 0 for every one-time buyer."""
        t = float(t)
        if not np.isfinite(t) or t < 0:
            raise ValueError(f"t must be a non-negative number, got {t}")
        r, alpha, a, b = params = self._params()

        def func(x, tx, t_end):
            alive = self._p_alive(x, tx, t_end, *params)
            buys_if_alive = -np.expm1(-(r + x) * np.log1p(t / (alpha + t_end)))
            return np.clip(1.0 - alive * buys_if_alive, 0.0, 1.0)

        return self._per_distinct_row(func, frequency, recency, T)

    def expected_purchases_new_customer(self, t):
        """Unconditional E[X(t)]: purchases of a new customer in their first ``t`` time units,
        the first (trial) purchase at time 0 not counted. A float for a scalar ``t``, else an
        array of the same shape."""
        t_arr = np.asarray(t, dtype=np.float64)
        if not np.isfinite(t_arr).all() or (t_arr < 0).any():
            raise ValueError("t must be non-negative and finite")
        params = self._params()
        times, inverse = np.unique(t_arr.reshape(-1), return_inverse=True)
        zero = np.zeros(len(times))
        values = np.maximum(_conditional_expected(times, zero, zero, zero, *params,
                                                  np.ones(len(times))), 0.0)
        out = values[inverse.reshape(-1)].reshape(t_arr.shape)
        return float(out) if out.ndim == 0 else out


# ----------------------------------------------------------------------------------------------
# Gamma-Gamma
# ----------------------------------------------------------------------------------------------

def _gg_terms(x, m, p, q, v, gradient: bool):
    px = p * x
    ln_x, ln_m, ln_vxm = np.log(x), np.log(m), np.log(v + x * m)
    ll = (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v)
          + (px - 1.0) * ln_m + px * ln_x - (px + q) * ln_vxm)
    if not gradient:
        return ll, None
    psi_pxq = digamma(px + q)
    d_p = x * (psi_pxq - digamma(px) + ln_m + ln_x - ln_vxm)
    d_q = psi_pxq - digamma(q) + np.log(v) - ln_vxm
    d_v = q / v - (px + q) / (v + x * m)
    return ll, (d_p, d_q, d_v)


def _check_spend(frequency, monetary_value) -> tuple[np.ndarray, np.ndarray]:
    x = _float_array("frequency", frequency)
    m = _float_array("monetary_value", monetary_value)
    if len(x) != len(m):
        raise ValueError("frequency and monetary_value must have the same length")
    if (x <= 0).any():
        raise ValueError("Gamma-Gamma needs frequency > 0 (repeat buyers) for every row")
    if (m <= 0).any():
        raise ValueError("Gamma-Gamma needs monetary_value > 0 for every row")
    return x, m


def gamma_gamma_log_likelihood(frequency, monetary_value, p: float, q: float,
                               v: float) -> np.ndarray:
    """Per-customer log density of the average spend m_x of x transactions (Gamma-Gamma)."""
    x, m = _check_spend(frequency, monetary_value)
    ll, _ = _gg_terms(x, m, p, q, v, gradient=False)
    return ll


class GammaGammaModel:
    """Gamma-Gamma model of the average spend per repeat purchase, fitted by maximum likelihood.

    ``fit(frequency, monetary_value)`` takes repeat buyers only (frequency > 0, monetary_value
    > 0). After ``fit``: ``params_`` (dict p, q, v), ``log_likelihood_``, ``n_customers_``.
    """

    def __init__(self, penalizer: float = 0.0, aggregate: bool = True):
        self.penalizer = penalizer
        self.aggregate = aggregate

    def fit(self, frequency, monetary_value, weights=None) -> "GammaGammaModel":
        """Maximum-likelihood fit on repeat buyers; ``weights`` as in BetaGeoModel.fit."""
        if self.penalizer < 0:
            raise ValueError(f"penalizer must be >= 0, got {self.penalizer}")
        x, m = _check_spend(frequency, monetary_value)
        if len(x) == 0:
            raise InsufficientData("Gamma-Gamma needs at least one repeat buyer (frequency > 0) "
                                   "with positive monetary_value; there is none")
        (x, m), weights = _fit_rows([x, m], weights, self.aggregate)
        # Start at p = 1, q = 2, v = mean spend: then the model's mean spend pv/(q-1) is the
        # observed one.
        x0 = np.log([1.0, 2.0, _weighted_sum(weights, m) / weights.sum()])
        log_params, self.converged_, self.n_iter_ = _minimize(
            lambda lp: _objective(_gg_terms, lp, (x, m), weights, float(self.penalizer)), x0)
        p, q, v = (float(val) for val in np.exp(log_params))
        self.params_ = {"p": p, "q": q, "v": v}
        ll, _ = _gg_terms(x, m, p, q, v, gradient=False)
        self.log_likelihood_ = _weighted_sum(weights, ll)
        self.n_customers_ = int(round(weights.sum()))
        return self

    def _params(self) -> tuple[float, float, float]:
        if not hasattr(self, "params_"):
            raise RuntimeError("GammaGammaModel is not fitted: call fit() first")
        return self.params_["p"], self.params_["q"], self.params_["v"]

    def population_mean_spend(self) -> float:
        """E[M] = pv/(q-1), the expected average spend of a customer with no history."""
        p, q, v = self._params()
        if q <= 1:
            raise ValueError(f"the population mean spend needs q > 1; the fit gave q = {q:.4g}")
        return p * v / (q - 1.0)

    def expected_average_spend(self, frequency, monetary_value) -> np.ndarray:
        """E[average spend per purchase | x, m_x]; the population mean for x = 0 (monetary_value
        is then ignored and may be NaN)."""
        p, q, v = self._params()
        x = _float_array("frequency", frequency)
        m = np.asarray(monetary_value, dtype=np.float64).reshape(-1)
        if len(x) != len(m):
            raise ValueError("frequency and monetary_value must have the same length")
        if (x < 0).any():
            raise ValueError("frequency must be non-negative")
        repeat = x > 0
        if not np.isfinite(m[repeat]).all():
            raise ValueError("monetary_value must be finite for repeat buyers")
        out = np.empty(len(x))
        if (~repeat).any():
            out[~repeat] = self.population_mean_spend()
        xr, mr = x[repeat], m[repeat]
        out[repeat] = p * (v + xr * mr) / (p * xr + q - 1.0)
        return out


# ----------------------------------------------------------------------------------------------
# domain functions
# ----------------------------------------------------------------------------------------------

VALUE_INPUT_COLUMNS = ["customer_id", "frequency", "recency", "T", "monetary_value"]
CUSTOMER_VALUE_COLUMNS = ["customer_id", "p_alive", "expected_purchases_90d",
                          "expected_purchases_365d", "expected_avg_spend", "clv_12m"]
HOLDOUT_BUCKETS = 7  # calibration repeat purchases 0..6, then "7+"


def value_inputs(transactions: pd.DataFrame, calibration_end,
                 observation_end=None) -> pd.DataFrame:
    """Model inputs per customer with a purchase before ``calibration_end`` (exclusive), sorted
    by customer_id like customer_features: customer_id, frequency, recency, T (days, from
    customer_features), monetary_value (mean spend per repeat purchase day; NaN for one-time
    buyers). With ``observation_end``: holdout_purchases, the number of distinct purchase days
    in [calibration_end, observation_end), and holdout_days = observation_end - calibration_end.
    """
    _check_columns(transactions)
    cal_day = _as_day(calibration_end)
    cal = _day_number(cal_day)
    end = cal
    if observation_end is not None:
        end = _day_number(_as_day(observation_end))
        if end <= cal:
            raise ValueError(f"observation_end ({_as_day(observation_end).date()}) must be "
                             f"after calibration_end ({cal_day.date()})")

    features = customer_features(transactions, cal_day)
    out = features[["customer_id", "frequency", "recency", "T"]].copy()
    # The spend per purchase comes from the purchases; a customer's returns scale it by their
    # net share of the gross spend in the calibration window, floored at zero.
    gross = transactions
    transactions = purchase_rows(transactions)
    n = len(out)
    holdout = observation_end is not None
    if n == 0:
        out["monetary_value"] = pd.Series([], dtype="float64")
        if holdout:
            out["holdout_purchases"] = pd.Series([], dtype="int64")
            out["holdout_days"] = pd.Series([], dtype="int64")
        return out

    days = _day_numbers(transactions["order_date"])
    keep = days < end
    days = days[keep]
    amount = transactions["amount"].to_numpy(dtype=np.float64)[keep]
    # The same customer codes as customer_features (ids in sorted order), over the rows up to the
    # observation end; calibration customers are then the codes seen before calibration_end,
    # in the same sorted order as the features table.
    codes, _ = _customer_codes(transactions["customer_id"].iloc[keep])
    in_cal = days < cal
    # bincount, not np.unique: a linear pass instead of hashing or sorting millions of codes.
    cal_codes = np.flatnonzero(np.bincount(codes[in_cal], minlength=int(codes.max()) + 1))
    if len(cal_codes) != n:
        raise AssertionError("customer order differs from customer_features")  # pragma: no cover
    position = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
    position[cal_codes] = np.arange(n)
    customer = position[codes]  # row -> row of the features table (-1: first bought later)

    # Purchase days in the calibration window, sorted by (customer, day) via one int64 key.
    first_day = int(days.min())
    span = int(days.max()) - first_day + 1
    key = customer[in_cal] * span + (days[in_cal] - first_day)
    day_keys, day_of_row = np.unique(key, return_inverse=True)
    day_amount = np.bincount(day_of_row.reshape(-1), weights=amount[in_cal])
    day_customer = day_keys // span
    repeat_day = np.r_[False, day_customer[1:] == day_customer[:-1]]  # not the customer's first
    repeat_total = np.bincount(day_customer[repeat_day], weights=day_amount[repeat_day],
                               minlength=n)
    frequency = out["frequency"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        monetary_value = np.where(frequency > 0, repeat_total / frequency, np.nan)
        if transactions is not gross:
            spent = np.bincount(customer[in_cal], weights=amount[in_cal], minlength=n)
            net = features["monetary_total"].to_numpy(dtype=np.float64)
            monetary_value *= np.where(spent > 0, np.clip(net / spent, 0.0, 1.0), 1.0)
        out["monetary_value"] = monetary_value

    out = out[VALUE_INPUT_COLUMNS]
    if holdout:
        in_holdout = ~in_cal & (customer >= 0)
        hkey = np.unique(customer[in_holdout] * span + (days[in_holdout] - first_day))
        out["holdout_purchases"] = np.bincount(hkey // span, minlength=n).astype(np.int64)
        out["holdout_days"] = np.full(n, end - cal, dtype=np.int64)
    return out


def _rfm_in_units(frame: pd.DataFrame, time_unit_days: float):
    unit = _check_time_unit(time_unit_days)
    return (frame["frequency"].to_numpy(dtype=np.float64),
            frame["recency"].to_numpy(dtype=np.float64) / unit,
            frame["T"].to_numpy(dtype=np.float64) / unit)


def _check_time_unit(time_unit_days) -> float:
    unit = float(time_unit_days)
    if not np.isfinite(unit) or unit <= 0:
        raise ValueError(f"time_unit_days must be positive, got {time_unit_days}")
    return unit


def _json_number(value):
    return int(value) if float(value).is_integer() else float(value)


def default_calibration_end(first_day, analysis_date) -> pd.Timestamp:
    """The midpoint of [first_day, analysis_date), rounded down to a day: calibration and holdout
    windows of (nearly) equal length. ``first_day`` is the first order date in the data."""
    start, end = _as_day(first_day), _as_day(analysis_date)
    days = (end - start).days
    if days < 2:
        raise InsufficientData(f"the period {start.date()} .. {end.date()} is too short to split into "
                               "a calibration and a holdout window")
    return start + pd.Timedelta(days=days // 2)


def holdout_check(transactions: pd.DataFrame, calibration_end, observation_end,
                  time_unit_days: float = 7, penalizer: float = 0.0) -> dict:
    """Fit BG/NBD on the purchases before ``calibration_end`` and compare, per customer, the
    predicted number of purchase days in [calibration_end, observation_end) with the actual one.

    Returns a JSON-ready dict (plain ints, floats, strings; a relative error is null only when
    its denominator is 0). ``predicted_holdout_purchases`` is the sum of the conditional
    expectations, ``relative_error`` = predicted / actual - 1. The cumulative figures follow the
    paper's tracking plot: repeat purchases from each customer's first purchase to
    observation_end, the calibration part from the unconditional E[X(T)] of the fit
    (``expected_calibration_repeat_purchases``) plus the holdout prediction, against the
    actual calibration plus holdout repeat purchases. ``by_calibration_frequency`` lists, per
    number of calibration repeat purchases ("0".."6", "7+"; empty groups left out), the
    customers, the mean actual and the mean predicted holdout purchases (the paper's
    conditional-expectation check). Customers whose first purchase falls in the holdout are
    not part of the check.
    """
    unit = _check_time_unit(time_unit_days)
    inputs = value_inputs(transactions, calibration_end, observation_end)
    if len(inputs) == 0:
        raise InsufficientData("no customer has a purchase before calibration_end")
    x, tx, t_end = _rfm_in_units(inputs, unit)
    model = BetaGeoModel(penalizer=penalizer, time_unit_days=unit).fit(x, tx, t_end)
    holdout_days = int(inputs["holdout_days"].iloc[0])
    predicted = model.expected_purchases(holdout_days / unit, x, tx, t_end)
    actual = inputs["holdout_purchases"].to_numpy()

    bucket = np.minimum(x.astype(np.int64), HOLDOUT_BUCKETS)
    table = []
    for k in range(HOLDOUT_BUCKETS + 1):
        members = bucket == k
        if members.any():
            table.append({
                "frequency": f"{k}+" if k == HOLDOUT_BUCKETS else str(k),
                "customers": int(members.sum()),
                "mean_actual": float(actual[members].mean()),
                "mean_predicted": float(predicted[members].mean()),
            })
    total_predicted, total_actual = float(predicted.sum()), int(actual.sum())
    calibration_actual = int(inputs["frequency"].sum())
    calibration_fitted = float(model.expected_purchases_new_customer(t_end).sum())
    cumulative_actual = calibration_actual + total_actual
    return {
        "calibration_end": _as_day(calibration_end).date().isoformat(),
        "observation_end": _as_day(observation_end).date().isoformat(),
        "holdout_days": holdout_days,
        "time_unit_days": _json_number(unit),
        "n_customers": int(len(inputs)),
        "params": dict(model.params_),
        "log_likelihood": model.log_likelihood_,
        "predicted_holdout_purchases": total_predicted,
        "actual_holdout_purchases": total_actual,
        "relative_error": (total_predicted / total_actual - 1.0) if total_actual else None,
        "calibration_repeat_purchases": calibration_actual,
        "expected_calibration_repeat_purchases": calibration_fitted,
        "cumulative_relative_error": (
            (calibration_fitted + total_predicted) / cumulative_actual - 1.0
            if cumulative_actual else None),
        "by_calibration_frequency": table,
    }


def _fit_on_features(features: pd.DataFrame, time_unit_days: float, penalizer: float):
    """BG/NBD fitted on a customer_features table (frequency, recency, T in days), and the
    table's (x, t_x, T) in model units."""
    missing = [c for c in ("frequency", "recency", "T") if c not in features.columns]
    if missing:
        raise ValueError(f"features lack column(s) {missing}")
    unit = _check_time_unit(time_unit_days)
    x, tx, t_end = _rfm_in_units(features, unit)
    return BetaGeoModel(penalizer=penalizer, time_unit_days=unit).fit(x, tx, t_end), (x, tx, t_end)


def p_alive_scores(features: pd.DataFrame, time_unit_days: float = 7,
                   penalizer: float = 0.0) -> np.ndarray:
    """Fit BG/NBD on a customer_features table (frequency, recency, T in days) and return
    P(alive) at T for each row, in row order. 1 - P(alive) ranks customers by the chance they
    have dropped out (a ranking only: it is 0 for every one-time buyer)."""
    if len(features) == 0:
        return np.empty(0)
    model, rfm = _fit_on_features(features, time_unit_days, penalizer)
    return model.p_alive(*rfm)


def no_purchase_probability(features: pd.DataFrame, horizon_days: float,
                            time_unit_days: float = 7, penalizer: float = 0.0) -> np.ndarray:
    """Fit BG/NBD on a customer_features table and return, per row, the model's probability
    of no purchase in the ``horizon_days`` after the table's date: the churn label's event."""
    if len(features) == 0:
        return np.empty(0)
    model, rfm = _fit_on_features(features, time_unit_days, penalizer)
    return model.probability_no_purchase(float(horizon_days) / model.time_unit_days, *rfm)


def customer_value(transactions: pd.DataFrame, analysis_date, annual_discount_rate: float = 0.10,
                   time_unit_days: float = 7, margin: float = 1.0,
                   penalizer: float = 0.0) -> tuple[pd.DataFrame, dict]:
    """Fit BG/NBD and Gamma-Gamma on all purchases before ``analysis_date`` and value every
    customer of ``customer_features(transactions, analysis_date)`` (same rows, same order).

    Table columns: customer_id, p_alive, expected_purchases_90d, expected_purchases_365d,
    expected_avg_spend, clv_12m (discounted expected value of the next 12 months' purchases
    times ``margin``; see the module docstring). Metrics: a flat dict of ints, floats, strings.
    Raises ValueError when there is no repeat buyer with positive spend (no Gamma-Gamma fit).
    """
    analysis_day = _as_day(analysis_date)
    inputs = value_inputs(transactions, analysis_day)
    if len(inputs) == 0:
        raise InsufficientData(f"no purchase before {analysis_day.date()}: nothing to value")
    table, metrics = value_from_inputs(inputs, annual_discount_rate, time_unit_days, margin,
                                       penalizer)
    return table, {"analysis_date": analysis_day.date().isoformat(), **metrics}


def value_from_inputs(inputs: pd.DataFrame, annual_discount_rate: float = 0.10,
                      time_unit_days: float = 7, margin: float = 1.0,
                      penalizer: float = 0.0) -> tuple[pd.DataFrame, dict]:
    """``customer_value`` on a ``value_inputs`` table (customer_id, frequency, recency, T in
    days, monetary_value), for callers that already hold one. Same table; metrics without
    analysis_date."""
    unit = _check_time_unit(time_unit_days)
    if not np.isfinite(annual_discount_rate) or annual_discount_rate <= -1:
        raise ValueError(f"annual_discount_rate must be > -1, got {annual_discount_rate}")
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be non-negative, got {margin}")
    if len(inputs) == 0:
        raise ValueError("no customer to value")
    x, tx, t_end = _rfm_in_units(inputs, unit)
    m = inputs["monetary_value"].to_numpy(dtype=np.float64)

    # Collapse to distinct (x, t_x, T) once: the fit and all 14 predictions run on those rows.
    (ux, utx, uT), counts, inverse = _distinct_rows(x, tx, t_end)
    bgnbd = BetaGeoModel(penalizer=penalizer, time_unit_days=unit).fit(ux, utx, uT,
                                                                       weights=counts)
    spenders = (x > 0) & (m > 0)
    gamma_gamma = GammaGammaModel(penalizer=penalizer).fit(x[spenders], m[spenders])

    def per_customer(values: np.ndarray) -> np.ndarray:
        return values[inverse]

    p_alive = per_customer(bgnbd.p_alive(ux, utx, uT))
    spend = np.clip(gamma_gamma.expected_average_spend(x, np.where(x > 0, m, np.nan)), 0.0, None)

    # Cumulative expected purchases at the end of each month; the differences are the months'.
    month = DAYS_PER_YEAR / CLV_MONTHS / unit
    cumulative = np.column_stack([np.zeros(len(ux))] + [
        bgnbd.expected_purchases(k * month, ux, utx, uT) for k in range(1, CLV_MONTHS + 1)])
    monthly = np.clip(np.diff(cumulative, axis=1), 0.0, None)
    discount = (1.0 + annual_discount_rate) ** (-np.arange(1, CLV_MONTHS + 1) / CLV_MONTHS)
    purchases_value = per_customer((monthly * discount).sum(axis=1))
    clv = margin * spend * purchases_value
    purchases_365 = per_customer(cumulative[:, -1])

    table = pd.DataFrame({
        "customer_id": inputs["customer_id"].reset_index(drop=True),
        "p_alive": p_alive,
        "expected_purchases_90d": per_customer(bgnbd.expected_purchases(90 / unit, ux, utx, uT)),
        "expected_purchases_365d": purchases_365,
        "expected_avg_spend": spend,
        "clv_12m": clv,
    })[CUSTOMER_VALUE_COLUMNS]

    repeat = x > 0
    corr = (float(np.corrcoef(x[spenders], m[spenders])[0, 1])
            if spenders.sum() > 2 and np.ptp(x[spenders]) > 0 and np.ptp(m[spenders]) > 0
            else 0.0)
    metrics = {
        "n_customers": int(len(inputs)),
        "n_repeat_buyers": int(repeat.sum()),
        "n_gamma_gamma_customers": int(spenders.sum()),
        "time_unit_days": _json_number(unit),
        "annual_discount_rate": float(annual_discount_rate),
        "margin": float(margin),
        "clv_horizon_months": CLV_MONTHS,
        **{f"bgnbd_{k}": v for k, v in bgnbd.params_.items()},
        "bgnbd_log_likelihood": bgnbd.log_likelihood_,
        **{f"gg_{k}": v for k, v in gamma_gamma.params_.items()},
        "gg_log_likelihood": gamma_gamma.log_likelihood_,
        "gg_population_avg_spend": float(gamma_gamma.population_mean_spend()),
        "gg_frequency_monetary_corr": corr,
        "mean_p_alive": float(p_alive.mean()),
        "total_expected_purchases_365d": float(purchases_365.sum()),
        "total_clv_12m": float(clv.sum()),
        "mean_clv_12m": float(clv.mean()),
    }
    return table, metrics
