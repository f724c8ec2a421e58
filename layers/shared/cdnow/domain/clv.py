"""Customer lifetime value: buy-till-you-die purchase counts (BG/NBD, MBG/NBD, Pareto/NBD) and
Gamma-Gamma spend per purchase.

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

``ModifiedBetaGeoModel`` -- MBG/NBD (Batislam, Denizel & Filiztekin 2007). The BG/NBD with a
    dropout chance at the first purchase too, so a one-time buyer is not surely alive::

        L = Gamma(r+x) alpha^r / Gamma(r) * B(a, b+x+1)/B(a, b) * [ (alpha+T)^-(r+x)
                                            + a/(b+x) (alpha+t_x)^-(r+x) ]

    P(alive) = 1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x)) for every x. Alive at T after
    x + 1 survivals, p ~ Beta(a, b+x+1): E[Y(t)] and P(no purchase) are the BG/NBD's with b+1.

``ParetoNBDModel`` -- Pareto/NBD (Schmittlein, Morrison & Colombo 1987; Fader & Hardie's 2005
    note). While alive a customer buys at rate lambda ~ Gamma(r, alpha); the lifetime is
    exponential with rate mu ~ Gamma(s, beta), independent of purchases::

        L = Gamma(r+x) alpha^r beta^s / Gamma(r) * [ (alpha+T)^-(r+x) (beta+T)^-s
              + s * integral_{t_x}^{T} (alpha+y)^-(r+x) (beta+y)^-(s+1) dy ]

    (the second term: the customer died at some y between the last purchase and T). The
    integral is the published 2F1(r+s+x, s+1; r+s+x+1; z) term; ``_power_product_integral``
    sums it as a binomial series of positive terms in z = |alpha-beta|/(max(alpha,beta)+t_x)
    < 1, in log space, together with its derivatives in all four parameters (the series
    differentiated term by term; the alpha and beta derivatives as the same integral with an
    exponent raised by one), so the fit has an exact gradient like the others; scipy's
    hyp2f1 gives no parameter derivatives. Near the optimum z is small (alpha ~ beta) and
    the series is a few dozen terms; a row whose series would be longer (z near 1, where alpha
    and beta are orders of magnitude apart, or many purchases in the binomial exponent) is
    integrated by 48-point Gauss-Legendre in log(min(alpha, beta) + y) instead, over the range
    where the integrand is within e^40 of its start (``_power_product_quadrature``). Both
    agree with a high-precision quadrature to 1e-6 or better in log J over alpha, beta in
    0.1..200, r, s in 0.05..5, x up to 300 (tests check representative rows).
    P(alive) = the first term's share of L; E[Y(t) | alive] = (r+x)(beta+T)/((alpha+T)(s-1))
    (1 - ((beta+T)/(beta+T+t))^(s-1)); P(no purchase in t | alive) = L(0, 0, t) under
    (r+x, alpha+T, s, beta+T).

All three are fitted the same way (``_PurchaseModel``): maximum likelihood over the
log-parameters, L-BFGS-B within a box, analytic gradient (checked against finite differences
by the tests), on the distinct rows. ``standard_errors_`` come from the observed information:
the Hessian in the log-parameters by central differences of the analytic gradient, inverted,
times each parameter (delta method). On the CDNOW sample they reproduce the published fits
within 1% from the pipeline's own feature table: BG/NBD r=0.2426, alpha=4.414, a=0.7929,
b=2.426 (LL -9582.43); MBG/NBD 0.5248, 6.183, 0.8914, 1.614; Pareto/NBD r=0.5533,
alpha=10.578, s=0.6062, beta=11.669 (LL -9594.98; standard errors 0.048, 0.843, 0.187, 6.21).

Why these are written here rather than taken from a library: lifetimes, the one our users know,
is in maintenance mode (its README points to pymc-marketing) and fits by Nelder-Mead on every
row without gradients or standard errors; pymc-marketing brings PyMC and pytensor (a compiler,
hundreds of MB) into a Lambda image for what is a four-parameter maximum-likelihood fit;
CLVTools and BTYDplus are R. The formulas are the published ones and the tests reproduce the
published fits, so users can compare the numbers with any of them.

Choosing the model (``compare_purchase_models``): each run fits all three on the first half
of its history and checks them on the second (``holdout_check``); the one with the smallest
mean absolute error of per-customer holdout purchases values the customers (the error of the
total is reported beside it: a model can get the total right and every customer wrong). On
CDNOW master: BG/NBD 0.819, MBG/NBD 0.795, Pareto/NBD 0.794 -> Pareto/NBD.

``GammaGammaModel`` -- Gamma-Gamma spend model (Colombo & Jiang 1999; Fader, Hardie & Lee 2005
    "RFM and CLV"; Fader & Hardie 2013 note). Each transaction value ~ Gamma(p, nu) with the
    customer's nu ~ Gamma(q, v); the average m_x of x transactions has a closed-form density.
    E[M | x, m_x] = (q-1)/(px+q-1) * pv/(q-1) + px/(px+q-1) * m_x: a weighted average of the
    population mean pv/(q-1) (needs q > 1) and the customer's own average. The model assumes
    spend is independent of purchase frequency; ``customer_value`` reports their correlation
    among repeat buyers as ``gg_frequency_monetary_corr`` so that can be checked.

Every ``fit`` method first collapse identical input rows into one row with a count (weight):
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
  purchase days - 1, recency = last - first purchase day, T = the window's last day - first day
  (the published definition; customer_features' module docstring).
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
* ``holdout_check(transactions, calibration_end, observation_end, time_unit_days=7,
  model="bgnbd")``: fit on the calibration window, predicted vs actual holdout purchases
  (JSON-ready dict). ``compare_purchase_models(...)``: the check of every model and the choice.
* ``value_inputs_from(spend, net_of_returns)``: the same table from customer_features'
  columns plus two per-customer spend sums (repeat_spend, gross_spend): the definition the
  Spark path computes (its docstring is the spec).
* ``customer_value(transactions, analysis_date, annual_discount_rate=0.10, time_unit_days=7,
  margin=1.0, model="bgnbd")``:
  per-customer p_alive, expected purchases (90 / 365 days), expected average spend, clv_12m;
  plus a flat metrics dict. ``value_from_inputs(inputs, ...)`` does the same from a
  value_inputs table. Both are ``fit_value`` then ``score_value`` of every customer.
* ``fit_value(inputs or transactions, analysis_date=None, ..., start=None, weights=None)
  -> ValueFit`` and ``score_value(inputs, fit)``: the two halves (below).
* ``p_alive_scores(features, time_unit_days=7)``: P(alive) per row of a customer_features table.
* ``no_purchase_probability(features, horizon_days)``: the BG/NBD's P(no purchase in the
  horizon) per row, the churn label's event (a probability baseline for the churn model).

Fit and score
-------------
Valuing customers is two steps, so that the fit can run on a bounded sample and the scoring on
every customer wherever the data lives (a Glue Spark job past the Lambda's size, calling
``score_value`` per partition):

* FIT, ``fit_value``: everything learnt, in a ``ValueFit``: the purchase model's and
  Gamma-Gamma's parameters, standard errors, log-parameter covariances, log-likelihoods and
  convergence, the fitting customers' counts and frequency/spend correlation, and the terms of
  the valuation (time unit, discount rate, margin, penalizer, analysis date). It works on the
  value inputs of all customers or of a sample of them (``weights``: customers per sampled
  row, for a stratified sample). ``ValueFit.to_dict()`` is JSON and ``ValueFit.from_dict``
  reads it back to an equal fit (float reprs round-trip exactly).
* SCORE, ``score_value(inputs, fit)``: the customer_value rows of exactly the customers of
  ``inputs``, each row a function of that row and the fit alone, to the bit (nothing is
  computed from the batch: the Pareto/NBD's series and the E[Y(t)] quadrature take their
  length and nodes from the row, ``own_terms``), so partitions can be scored independently.
  Per customer it needs customer_id, frequency, recency, T (customer_features' columns) and
  monetary_value, which customer_features does not determine (the mean spend per *repeat*
  purchase day needs the first purchase day's spend): ``value_inputs_from`` defines it from
  two per-customer sums a Spark aggregation computes beside the features.
* The metrics are the fit's (``ValueFit.metrics()``) and the scored customers' counts and
  sums (``value_totals``; a group-by on the Spark path).
* Segment value intervals are not per-segment sums: the simulation draws per customer (alive,
  rate, dropout or lifetime, amounts) and recomputes every customer's P(alive) per parameter
  draw; only the centre, the sum of clv_12m, is a sum. Above MAX_SIMULATED_CUSTOMERS it
  already runs on a stratified sample per segment, each customer weighted by segment size /
  sample size; ``segment_value_from_sample`` runs that simulation from such a sample and the
  per-segment counts and clv_12m sums of all customers. The sample's own centre carries
  sampling error that the interval does not include (measured: -6% for a 2,000-customer
  sample of a 5,360-customer segment of CDNOW master).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields

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
    if (t_end < 0).any():
        raise ValueError("T must be non-negative (the window cannot end before the first purchase)")
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
# BG/NBD and MBG/NBD
# ----------------------------------------------------------------------------------------------

def _beta_geometric_drop(x, b, modified: bool):
    """Where a customer can have dropped out (x > 0 for the BG/NBD, everyone for the MBG/NBD)
    and the b + x - 1 (b + x) of the dropout odds there (1 elsewhere, never used)."""
    can_drop = np.ones(np.shape(x), dtype=bool) if modified else x > 0
    return can_drop, np.where(can_drop, b + x - (0.0 if modified else 1.0), 1.0)


def _beta_geometric_terms(x, tx, T, r, alpha, a, b, gradient: bool, modified: bool):
    """Per-row log-likelihood and (optionally) its partial derivatives in r, alpha, a, b of the
    BG/NBD (``modified`` False) or the MBG/NBD (True). The MBG/NBD lets a customer drop out
    at the first purchase too: the dropped-out branch exists for every x, the Beta terms count
    x + 1 survivals, and b + x - 1 becomes b + x (module docstring)."""
    shift = 1.0 if modified else 0.0
    can_drop, b_drop = _beta_geometric_drop(x, b, modified)
    ln_a_T = np.log(alpha + T)
    ln_a_tx = np.log(alpha + tx)
    common = (gammaln(r + x) - gammaln(r) + r * np.log(alpha)
              + gammaln(a + b) + gammaln(b + x + shift) - gammaln(b) - gammaln(a + b + x + shift))
    still_alive = -(r + x) * ln_a_T                         # alive at T
    dropped = np.where(can_drop, np.log(a) - np.log(b_drop) - (r + x) * ln_a_tx, -np.inf)
    ll = common + np.logaddexp(still_alive, dropped)
    if not gradient:
        return ll, None
    w_drop = expit(dropped - still_alive)  # share of the dropped-out branch in L
    w_alive = 1.0 - w_drop
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - w_alive * ln_a_T - w_drop * ln_a_tx
    d_alpha = r / alpha - (r + x) * (w_alive / (alpha + T) + w_drop / (alpha + tx))
    psi_ab, psi_abx = digamma(a + b), digamma(a + b + x + shift)
    d_a = psi_ab - psi_abx + w_drop / a
    d_b = psi_ab + digamma(b + x + shift) - digamma(b) - psi_abx - w_drop / b_drop
    return ll, (d_r, d_alpha, d_a, d_b)


def _beta_geometric_p_alive(x, tx, T, r, alpha, a, b, modified: bool):
    """P(alive at T) of the BG/NBD (1 without a repeat purchase: no chance to drop out yet)
    or the MBG/NBD (b + x - 1 becomes b + x, for every x): the still-alive branch's share of
    ``_beta_geometric_terms``' likelihood."""
    can_drop, b_drop = _beta_geometric_drop(x, b, modified)
    # log of the odds of having dropped out; log1p keeps (alpha+T)/(alpha+t_x) exact near 1.
    log_odds_dead = np.log(a) - np.log(b_drop) + (r + x) * np.log1p((T - tx) / (alpha + tx))
    return np.where(can_drop, expit(-log_odds_dead), 1.0)


def _bgnbd_terms(x, tx, T, r, alpha, a, b, gradient: bool):
    return _beta_geometric_terms(x, tx, T, r, alpha, a, b, gradient, modified=False)


def _mbgnbd_terms(x, tx, T, r, alpha, a, b, gradient: bool):
    return _beta_geometric_terms(x, tx, T, r, alpha, a, b, gradient, modified=True)


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


def _quadrature_nodes(c, s) -> np.ndarray:
    """Gauss nodes for each row of ``_expected_alive_by_quadrature``: the integrand bends at
    p ~ 1/(c s), and more nodes resolve that when c s is large. Rounded up to a multiple of
    40 so that rows share rules; a row's own (c, s) decide its rule, never the other rows of
    the call (scoring is partition independent, module docstring)."""
    n = 40.0 + np.ceil(6.0 * np.sqrt(c * s))
    return np.minimum(_MAX_NODES, 40 * np.ceil(n / 40.0)).astype(np.int64)


def _expected_alive_by_quadrature(c, s, a, B) -> np.ndarray:
    """E[(1 - (1 + p c)^-s) / p], p ~ Beta(a, B): purchases in the horizon of a customer alive
    now, with c = t / (alpha + T) and s = r + x. One Gauss rule per distinct (B = b + x,
    number of nodes)."""
    out = np.empty(len(c))
    nodes_of_row = _quadrature_nodes(c, s)
    for value, n in sorted(set(zip(B.tolist(), nodes_of_row.tolist()))):
        group = np.flatnonzero((B == value) & (nodes_of_row == n))
        nodes, weights = _beta_gauss_rule(a, float(value), int(n))
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



# ----------------------------------------------------------------------------------------------
# Pareto/NBD
# ----------------------------------------------------------------------------------------------

# Series terms below this share of the largest one are left out of a sum.
_SERIES_TOL = 1e-17
# Rows x series terms evaluated at once: small blocks of rows of similar series lengths pad
# less and stay in cache (on CDNOW master a Pareto/NBD evaluation took 16 ms, 37 with blocks
# of 4 M cells).
_MAX_SERIES_CELLS = 200_000


def _series_length(e2: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Terms needed by the series of ``_power_product_integral``: c_n z^n, c_n = (e2)_n / n!,
    rise to a peak near n = (e2 - 1) z / (1 - z) of width ~ sqrt(e2 z) / (1 - z) and then fall
    faster than z^n; past the peak and 10 widths, log(1/tol) / log(1/z) more terms make the
    rest negligible. (Rows needing more than _SERIES_QUADRATURE_FROM terms are integrated
    instead: z near 1 or a large e2, as where alpha and beta are orders of magnitude apart.)"""
    zz = np.minimum(z, 1.0 - 1e-12)
    peak = np.maximum(e2 - 1.0, 0.0) * zz / (1.0 - zz)
    width = np.sqrt(np.maximum(e2, 1.0) * zz) / (1.0 - zz)
    with np.errstate(divide="ignore"):
        tail = np.log(1.0 / _SERIES_TOL) / np.maximum(-np.log(zz), 1e-12)
    return np.ceil(np.minimum(peak + 10.0 * width + tail + 2.0, 1e9)).astype(np.int64)


# numpy's pairwise summation adds up to this many terms in 8 interleaved partial sums.
_PAIRWISE_BLOCK = 128
# Rows whose series would be longer than this are integrated by Gauss-Legendre instead.
_SERIES_QUADRATURE_FROM = 150
_QUADRATURE_NODES, _QUADRATURE_WEIGHTS = np.polynomial.legendre.leggauss(48)
# Where the integrand has fallen by this many e-folds the rest of the range is left out.
_QUADRATURE_EFOLDS = 40.0


def _power_product_quadrature(e1, e2, P, Q, tx, T) -> np.ndarray:
    """Rows 0..4 of ``_power_product_integral`` by 48-point Gauss-Legendre in
    sigma = log((Q + y) / (Q + tx)), for rows whose series is long: Q + tx much smaller than
    P + tx (z near 1), or a large e2. The integrand, (Q + tx)^(1 - e2) e^(-(e2 - 1) sigma)
    (P + y)^-e1, is smooth in sigma and log-concave; its decay rate at 0 is
    k0 = e2 - 1 + e1 (Q + tx)/(P + tx) and only grows, so past sigma = 40 / k0 less than e^-40
    of it is left and the range is cut there. The derivatives are the integrand-weighted means
    at the same nodes of d/d(e1, e2, P, Q) of its log (differentiation under the integral)."""
    log_q_tx = np.log(Q + tx)
    span = np.log1p((T - tx) / (Q + tx))
    k0 = e2 - 1.0 + e1 * (Q + tx) / (P + tx)
    with np.errstate(divide="ignore"):
        window = np.where(k0 > 0, np.minimum(span, _QUADRATURE_EFOLDS / np.where(k0 > 0, k0, 1.0)), span)
    sigma = window[:, None] * (_QUADRATURE_NODES[None, :] + 1.0) / 2.0
    q_y = np.exp(log_q_tx[:, None] + sigma)                   # Q + y at the nodes
    p_y = P[:, None] - Q[:, None] + q_y                       # P + y
    log_p_y = np.log(p_y)
    log_f = ((1.0 - e2[:, None]) * log_q_tx[:, None] - (e2[:, None] - 1.0) * sigma
             - e1[:, None] * log_p_y + np.log(window[:, None] * _QUADRATURE_WEIGHTS[None, :] / 2.0))
    top = log_f.max(axis=1, keepdims=True)
    weight = np.exp(log_f - top)
    total = weight.sum(axis=1)
    weight /= total[:, None]
    return np.stack([
        top[:, 0] + np.log(total),
        -np.sum(weight * log_p_y, axis=1),
        -np.sum(weight * (log_q_tx[:, None] + sigma), axis=1),
        -e1 * np.sum(weight / p_y, axis=1),
        -e2 * np.sum(weight / q_y, axis=1),
    ])


def _power_product_integral(e1, e2, P, Q, tx, T, own_terms: bool = False) -> np.ndarray:
    """log J and d log J / d(e1, e2, P, Q), rows 0..4 of the result, for
    J = integral over tx < y < T of (P + y)^-e1 (Q + y)^-e2 dy, with P >= Q >= 0 < P + tx.

    With u = P + y, d = P - Q and (Q + y)^-e2 = u^-e2 (1 - d/u)^-e2 expanded by the binomial
    series (|d/u| < 1), J = A^-(M-1) sum_n c_n z^n kappa_n(M - 1 + n), where M = e1 + e2,
    A = P + tx, z = d / A in [0, 1), c_n = (e2)_n / n! and kappa_e = (1 - q^e) / e with
    q = A / (P + T). Every term is positive (no cancellation) and differentiable in closed
    form: d/de1 and d/de2 from d kappa_e / de and the digamma of the Pochhammer symbol;
    d/dP = -e1 J(e1 + 1, e2) / J and d/dQ = -e2 J(e1, e2 + 1) / J (differentiating under the
    integral), both the same series with e shifted by one. Rows with T == tx have J = 0:
    log J = -inf, derivatives 0. This is the Pareto/NBD's hypergeometric term of Fader &
    Hardie's note, 2F1(M-1, e2; M; z), summed with its parameter derivatives, which scipy's
    hyp2f1 does not give."""
    tx, T = np.asarray(tx, dtype=np.float64), np.asarray(T, dtype=np.float64)
    shape = np.shape(tx)
    e1, e2, P, Q = (np.broadcast_to(np.asarray(v, dtype=np.float64), shape) for v in (e1, e2, P, Q))
    out = np.zeros((5,) + shape)
    out[0] = -np.inf
    rows = np.flatnonzero(T > tx)
    if len(rows) == 0:
        return out
    A = P[rows] + tx[rows]
    z = (P[rows] - Q[rows]) / A
    log_q = -np.log1p((T[rows] - tx[rows]) / A)
    M, f1, f2 = e1[rows] + e2[rows], e1[rows], e2[rows]
    length = _series_length(f2, z)
    long = length > _SERIES_QUADRATURE_FROM
    if long.any():
        target = rows[long]
        out[:, target] = _power_product_quadrature(f1[long], f2[long], P[target], Q[target],
                                                   tx[target], T[target])
        keep = ~long
        rows, A, z, log_q, M, f1, f2, length = (
            v[keep] for v in (rows, A, z, log_q, M, f1, f2, length))
        if len(rows) == 0:
            return out
    # ``own_terms`` (scoring): a row's value must not depend on the other rows of the call
    # (scoring is partition independent). Each row then sums its own first `length` terms,
    # rounded up to a multiple of 8, and the terms its block pads it with are exact zeros:
    # numpy's pairwise sum adds up to 128 terms in 8 interleaved partial sums, so trailing
    # zeros in multiples of 8 leave a row's sum unchanged to the bit; above 128 terms it splits
    # by the total length, so such rows go in blocks of one length. Without it (the fits) a
    # row's padding terms are the series' own, below _SERIES_TOL of its largest term.
    if own_terms:
        length = -(-length // 8) * 8
    order = np.argsort(length, kind="stable")
    sorted_length = length[order]
    begin = 0
    while begin < len(order):
        # Blocks of rows of similar series lengths, at most _MAX_SERIES_CELLS cells each.
        end = min(len(order), begin + max(1, _MAX_SERIES_CELLS // int(sorted_length[begin])))
        if own_terms:
            longest = max(_PAIRWISE_BLOCK, int(sorted_length[begin]))
            end = min(end, begin + int(np.searchsorted(sorted_length[begin:], longest, side="right")))
        while end - begin > 1 and (end - begin) * int(sorted_length[end - 1]) > _MAX_SERIES_CELLS:
            end = begin + max(1, _MAX_SERIES_CELLS // int(sorted_length[end - 1]))
        block = order[begin:end]
        n_terms = int(sorted_length[end - 1])
        n = np.arange(n_terms, dtype=np.float64)[None, :]
        a2, zb, lq = f2[block, None], z[block, None], log_q[block, None]
        # log c_n and psi(e2 + n) - psi(e2) by their recurrences, c_(n+1) = c_n (e2 + n)/(n + 1)
        # and psi(e2 + n + 1) = psi(e2 + n) + 1/(e2 + n): cumulative sums along n, and one row
        # for the whole block when e2 is the same for every row (s + 1 when alpha >= beta).
        a2_rows = a2[:1] if np.all(a2 == a2[0, 0]) else a2
        steps = a2_rows + n[:, :-1]
        log_c = np.concatenate([np.zeros((len(a2_rows), 1)),
                                np.cumsum(np.log(steps / (n[:, :-1] + 1.0)), axis=1)], axis=1)
        psi_gain = np.concatenate([np.zeros((len(a2_rows), 1)), np.cumsum(1.0 / steps, axis=1)],
                                  axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_z = np.log(zb)  # -inf where z = 0: only the n = 0 term is left
            log_c = log_c + np.where(n > 0, n * log_z, 0.0)
        if own_terms:
            log_c = np.where(n < length[block, None], log_c, -np.inf)
        scale = log_c.max(axis=1)
        c = np.exp(log_c - scale[:, None])  # with own_terms exactly 0 past the row's own terms
        e = M[block, None] - 1.0 + n
        # 1 - q^e and 1 - q^(e+1) without cancellation: em = expm1(e log q) <= 0, and
        # q^(e+1) - 1 = em q + (q - 1).
        em = np.expm1(e * lq)
        kappa = -em / e
        kappa_next = -(em * np.exp(lq) + np.expm1(lq)) / (e + 1.0)
        d_kappa = (-(1.0 + em) * lq - kappa) / e
        ck = c * kappa
        s0 = np.sum(ck, axis=1)
        s_m = np.sum(c * d_kappa, axis=1) / s0
        s_pochhammer = np.sum(ck * psi_gain, axis=1) / s0
        ck_next = c * kappa_next
        log_a = np.log(A[block])
        target = rows[block]
        out[0, target] = -(M[block] - 1.0) * log_a + scale + np.log(s0)
        out[1, target] = -log_a + s_m
        out[2, target] = -log_a + s_m + s_pochhammer
        out[3, target] = -f1[block] / A[block] * np.sum(ck_next, axis=1) / s0
        out[4, target] = -np.sum(ck_next * (a2 + n), axis=1) / A[block] / s0
        begin = end
    return out


def _pnbd_dropped(x, tx, T, r, alpha, s, beta, own_terms: bool = False):
    """log(s J) and d log J / d(r, alpha, s, beta) for the Pareto/NBD's dropout term, J =
    integral over tx < y < T of (alpha + y)^-(r+x) (beta + y)^-(s+1) dy."""
    if np.all(np.asarray(alpha) >= np.asarray(beta)):
        j = _power_product_integral(r + x, s + 1.0, alpha, beta, tx, T, own_terms)
        d_r, d_s, d_alpha, d_beta = j[1], j[2], j[3], j[4]
    else:
        j = _power_product_integral(s + 1.0, r + x, beta, alpha, tx, T, own_terms)
        d_s, d_r, d_beta, d_alpha = j[1], j[2], j[3], j[4]
    return np.log(s) + j[0], (d_r, d_alpha, d_s, d_beta)


def _pnbd_terms(x, tx, T, r, alpha, s, beta, gradient: bool, own_terms: bool = False):
    """Per-row Pareto/NBD log-likelihood and (optionally) its partial derivatives in r, alpha,
    s, beta (module docstring)."""
    rx = r + x
    ln_a_T, ln_b_T = np.log(alpha + T), np.log(beta + T)
    common = gammaln(rx) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    still_alive = -rx * ln_a_T - s * ln_b_T
    dropped, d_j = _pnbd_dropped(x, tx, T, r, alpha, s, beta, own_terms)
    ll = common + np.logaddexp(still_alive, dropped)
    if not gradient:
        return ll, None
    w_drop = expit(dropped - still_alive)
    w_alive = 1.0 - w_drop
    d_r = digamma(rx) - digamma(r) + np.log(alpha) - w_alive * ln_a_T + w_drop * d_j[0]
    d_alpha = r / alpha - w_alive * rx / (alpha + T) + w_drop * d_j[1]
    d_s = np.log(beta) - w_alive * ln_b_T + w_drop * (1.0 / s + d_j[2])
    d_beta = s / beta - w_alive * s / (beta + T) + w_drop * d_j[3]
    return ll, (d_r, d_alpha, d_s, d_beta)


def _pnbd_quiet_if_alive(t, x, T, r, alpha, s, beta):
    """P(no purchase in the next t | alive at T) under the Pareto/NBD: given alive at T,
    lambda ~ Gamma(r+x, alpha+T) and mu ~ Gamma(s, beta+T), and "no purchase in (T, T+t]" has
    the likelihood of a customer with no repeat purchase observed for t, so it is the
    Pareto/NBD likelihood of (0, 0, t) under (r+x, alpha+T, s, beta+T)."""
    t = np.broadcast_to(np.asarray(t, dtype=np.float64), np.shape(x))
    zero = np.zeros(np.shape(x))
    ll, _ = _pnbd_terms(zero, zero, t, r + x, alpha + T, s, beta + T, gradient=False, own_terms=True)
    return np.exp(np.minimum(ll, 0.0))


def _pnbd_expected_if_alive(t, x, T, r, alpha, s, beta):
    """E[purchases in the next t | alive at T] = (r+x)/(alpha+T) E[min(tau, t)] with the
    remaining lifetime tau ~ Pareto(s, beta+T): (r+x)(beta+T)/((alpha+T)(s-1))
    (1 - ((beta+T)/(beta+T+t))^(s-1)), whose s -> 1 limit is (r+x)/(alpha+T) (beta+T)
    log(1 + t/(beta+T)); evaluated as -expm1 / (s-1), exact for s near 1 through that limit."""
    log_ratio = np.log1p(t / (beta + T))
    sm1 = s - 1.0
    if abs(sm1) < 1e-8:
        survival_mean = (beta + T) * log_ratio
    else:
        survival_mean = (beta + T) * -np.expm1(-sm1 * log_ratio) / sm1
    return (r + x) / (alpha + T) * survival_mean


# ----------------------------------------------------------------------------------------------
# the three purchase-count models
# ----------------------------------------------------------------------------------------------

class _PurchaseModel:
    """A buy-till-you-die model of repeat purchase counts, fitted by maximum likelihood.

    Parameters
    ----------
    penalizer : L2 penalty added to the mean negative log-likelihood per customer,
        ``penalizer * sum(params^2)``; 0 (default) is plain maximum likelihood.
    time_unit_days : length in days of the time unit the inputs are given in (7 = weeks). The
        model works in that unit (alpha, beta are rate scales per unit); it is recorded so that
        callers converting from days, and readers of ``params_``, know the scale.
    aggregate : collapse identical (frequency, recency, T) rows into weighted rows before
        fitting and predicting (exact; see the module docstring). Off only for benchmarking.

    After ``fit``: ``params_`` (dict), ``standard_errors_`` (dict; None where the Hessian
    gives none: a parameter at its bound or a singular information matrix), ``log_covariance_``
    (of the log-parameters, or None),
    ``log_likelihood_`` (total, unpenalized), ``n_customers_``, ``n_distinct_rows_``,
    ``converged_``, ``n_iter_``.
    """

    name = ""
    title = ""
    param_names: tuple[str, ...] = ()

    def __init__(self, penalizer: float = 0.0, time_unit_days: float = 7,
                 aggregate: bool = True):
        self.penalizer = penalizer
        self.time_unit_days = time_unit_days
        self.aggregate = aggregate

    @staticmethod
    def _terms(x, tx, T, *params, gradient: bool):
        raise NotImplementedError

    def _start(self, t_end: np.ndarray, weights: np.ndarray) -> list[float]:
        # Shapes 1 and scales = mean T: about one purchase (and, for the Pareto/NBD, one
        # dropout) per observed lifetime.
        scale = _weighted_sum(weights, t_end) / weights.sum()
        return [scale if name in ("alpha", "beta") else 1.0 for name in self.param_names]

    def fit(self, frequency, recency, T, weights=None, start: dict | None = None):
        """Maximum-likelihood fit. ``weights`` (optional): how many customers each row stands
        for, e.g. rows already collapsed to distinct (frequency, recency, T) with their counts.
        ``start`` (optional): parameters to start the search from, e.g. a fit of the same model
        on an earlier window (the holdout check's), which the search then needs fewer and
        cheaper steps to leave; the optimum is the same."""
        if self.penalizer < 0:
            raise ValueError(f"penalizer must be >= 0, got {self.penalizer}")
        x, tx, t_end = _check_rfm(frequency, recency, T)
        if len(x) == 0:
            raise ValueError(f"cannot fit {self.title} on zero customers")
        (x, tx, t_end), weights = _fit_rows([x, tx, t_end], weights, self.aggregate)
        guess = self._start(t_end, weights) if start is None else [start[p] for p in self.param_names]
        start = np.log(np.maximum(guess, 1e-3))

        def objective(log_params):
            return _objective(self._terms, log_params, (x, tx, t_end), weights,
                              float(self.penalizer))

        log_params, self.converged_, self.n_iter_ = _minimize(objective, start)
        params = np.exp(log_params)
        self.params_ = dict(zip(self.param_names, (float(v) for v in params)))
        ll, _ = self._terms(x, tx, t_end, *params, gradient=False)
        self.log_likelihood_ = _weighted_sum(weights, ll)
        self.n_customers_ = int(round(weights.sum()))
        self.n_distinct_rows_ = int(len(x))
        self.log_covariance_ = _log_covariance(objective, log_params, weights.sum())
        self.standard_errors_ = dict(zip(self.param_names,
                                         _standard_errors(log_params, self.log_covariance_)))
        return self

    def log_likelihood(self, frequency, recency, T) -> np.ndarray:
        """Per-customer log-likelihood under the fitted parameters."""
        x, tx, t_end = _check_rfm(frequency, recency, T)
        ll, _ = self._terms(x, tx, t_end, *self._params(), gradient=False)
        return ll

    def _params(self) -> tuple[float, ...]:
        if not hasattr(self, "params_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")
        return tuple(self.params_[name] for name in self.param_names)

    def _per_distinct_row(self, func, frequency, recency, T) -> np.ndarray:
        x, tx, t_end = _check_rfm(frequency, recency, T)
        if not self.aggregate or len(x) == 0:
            return func(x, tx, t_end)
        (ux, utx, uT), _, inverse = _distinct_rows(x, tx, t_end)
        return func(ux, utx, uT)[inverse]

    # Model-specific pieces: P(alive at T), E[purchases in the next t | alive at T] and
    # P(no purchase in the next t | alive at T), on arrays and the parameters.
    @staticmethod
    def _p_alive(x, tx, T, *params):
        raise NotImplementedError

    @staticmethod
    def _expected_if_alive(t, x, tx, T, *params):
        raise NotImplementedError

    @staticmethod
    def _quiet_if_alive(t, x, T, *params):
        raise NotImplementedError

    @staticmethod
    def _purchase_times(rng, horizon, rate, x, T, *params) -> tuple[np.ndarray, np.ndarray]:
        """One simulation of the next ``horizon`` of customers alive at T with purchase rates
        ``rate``: (owner, when), each purchase's customer (index into the arrays) and time."""
        raise NotImplementedError

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        """P(still alive at T | x, t_x, T)."""
        params = self._params()
        return self._per_distinct_row(lambda x, tx, t: self._p_alive(x, tx, t, *params),
                                      frequency, recency, T)

    @staticmethod
    def _check_horizon(t) -> float:
        t = float(t)
        if not np.isfinite(t) or t < 0:
            raise ValueError(f"t must be a non-negative number, got {t}")
        return t

    def expected_purchases(self, t: float, frequency, recency, T) -> np.ndarray:
        """E[number of purchases in the next ``t`` time units | x, t_x, T]."""
        return self.alive_and_expected_purchases([t], frequency, recency, T)[1][:, 0]

    def alive_and_expected_purchases(self, horizons: Sequence[float], frequency, recency,
                                     T) -> tuple[np.ndarray, np.ndarray]:
        """P(alive) and E[purchases in the next t] for each t of ``horizons`` (a column each),
        with P(alive), the costly part (the Pareto/NBD's hypergeometric terms), computed once per
        row instead of once per horizon (``expected_purchases`` is this with one horizon)."""
        horizons = [self._check_horizon(t) for t in horizons]
        params = self._params()

        def func(x, tx, t_end):
            alive = self._p_alive(x, tx, t_end, *params)
            return np.column_stack([alive] + [
                np.maximum(alive * self._expected_if_alive(t, x, tx, t_end, *params), 0.0) for t in horizons])

        table = self._per_distinct_row(func, frequency, recency, T)
        return table[:, 0], table[:, 1:]

    def probability_no_purchase(self, t: float, frequency, recency, T) -> np.ndarray:
        """P(no purchase in the next ``t`` time units | x, t_x, T): already dropped out, or
        alive and quiet. This is the model's own forecast of "no purchase in the horizon"
        (the churn label); 1 - P(alive) is not."""
        t = self._check_horizon(t)
        params = self._params()

        def func(x, tx, t_end):
            alive = self._p_alive(x, tx, t_end, *params)
            quiet = self._quiet_if_alive(t, x, t_end, *params)
            return np.clip(1.0 - alive * (1.0 - quiet), 0.0, 1.0)

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
        alive = self._p_alive(zero, zero, zero, *params)
        values = np.maximum(alive * self._expected_if_alive(times, zero, zero, zero, *params), 0.0)
        out = values[inverse.reshape(-1)].reshape(t_arr.shape)
        return float(out) if out.ndim == 0 else out


def _log_covariance(objective, log_params: np.ndarray, n: float) -> np.ndarray | None:
    """Covariance of the log-parameters from the observed information: the Hessian of the total
    negative log-likelihood in the log-parameters, by central differences of the analytic
    gradient (step 1e-5, symmetrized), inverted. A parameter at its bound keeps a zero row and
    column (it is not estimated); None when the Hessian of the others is not positive
    definite."""
    k = len(log_params)
    step = 1e-5
    hessian = np.empty((k, k))
    for i in range(k):
        up, down = log_params.copy(), log_params.copy()
        up[i] += step
        down[i] -= step
        hessian[:, i] = (objective(up)[1] - objective(down)[1]) / (2.0 * step) * n
    hessian = (hessian + hessian.T) / 2.0
    free = np.abs(log_params) < _LOG_BOUND - 1e-6
    covariance = np.zeros((k, k))
    if free.any():
        sub = hessian[np.ix_(free, free)]
        try:
            np.linalg.cholesky(sub)
        except np.linalg.LinAlgError:
            return None
        covariance[np.ix_(free, free)] = np.linalg.inv(sub)
    return covariance


def _standard_errors(log_params: np.ndarray, covariance: np.ndarray | None) -> list[float | None]:
    """By the delta method the standard error of p is p times that of log p (the Hessian's
    gradient term vanishes at the optimum). None for a parameter at its bound, or all None
    without a covariance."""
    if covariance is None:
        return [None] * len(log_params)
    return [float(np.exp(lp) * np.sqrt(var)) if var > 0 else None
            for lp, var in zip(log_params, np.diag(covariance))]


class BetaGeoModel(_PurchaseModel):
    """BG/NBD (Fader, Hardie & Lee 2005): parameters r, alpha, a, b (module docstring)."""

    name = "bgnbd"
    title = "BG/NBD"
    param_names = ("r", "alpha", "a", "b")
    _terms = staticmethod(_bgnbd_terms)

    @staticmethod
    def _p_alive(x, tx, T, r, alpha, a, b):
        return _beta_geometric_p_alive(x, tx, T, r, alpha, a, b, modified=False)

    @staticmethod
    def _expected_if_alive(t, x, tx, T, r, alpha, a, b):
        return _conditional_expected(t, x, tx, T, r, alpha, a, b, 1.0)

    @staticmethod
    def _quiet_if_alive(t, x, T, r, alpha, a, b):
        # Given alive at T, lambda ~ Gamma(r+x, alpha+T), and a customer drops out only right
        # after a purchase: quiet means no purchase event.
        return np.exp(-(r + x) * np.log1p(t / (alpha + T)))

    # Survivals behind "alive at T": x for the BG/NBD, x + 1 for the MBG/NBD (p ~ Beta(a, b+x+k)).
    _survivals_beyond_x = 0.0

    @classmethod
    def _purchase_times(cls, rng, horizon, rate, x, T, r, alpha, a, b):
        # Gone right after the Geometric(p)-th purchase: a Poisson count over the horizon at
        # uniform times, of which each customer keeps the first purchases_left.
        drop = np.clip(rng.beta(a, b + x + cls._survivals_beyond_x), 1e-12, 1.0)
        purchases_left = rng.geometric(drop)
        count = rng.poisson(rate * horizon)
        owner = np.repeat(np.arange(len(x)), count)
        when = rng.random(len(owner)) * horizon
        order = np.lexsort((when, owner))
        owner, when = owner[order], when[order]
        rank = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
        kept = rank < purchases_left[owner]
        return owner[kept], when[kept]


class ModifiedBetaGeoModel(BetaGeoModel):
    """MBG/NBD (Batislam, Denizel & Filiztekin 2007): the BG/NBD in which a customer may also
    drop out right after the first purchase, so a one-time buyer's P(alive) is below 1."""

    name = "mbgnbd"
    title = "MBG/NBD"
    _terms = staticmethod(_mbgnbd_terms)
    _survivals_beyond_x = 1.0

    @staticmethod
    def _p_alive(x, tx, T, r, alpha, a, b):
        return _beta_geometric_p_alive(x, tx, T, r, alpha, a, b, modified=True)

    @staticmethod
    def _expected_if_alive(t, x, tx, T, r, alpha, a, b):
        # Alive at T after x + 1 survivals: p ~ Beta(a, b + x + 1), the BG/NBD's with b + 1.
        return _conditional_expected(t, x, tx, T, r, alpha, a, b + 1.0, 1.0)


class ParetoNBDModel(_PurchaseModel):
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987): parameters r, alpha, s, beta."""

    name = "pnbd"
    title = "Pareto/NBD"
    param_names = ("r", "alpha", "s", "beta")
    _terms = staticmethod(_pnbd_terms)

    @staticmethod
    def _p_alive(x, tx, T, r, alpha, s, beta):
        still_alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        dropped, _ = _pnbd_dropped(x, tx, T, r, alpha, s, beta, own_terms=True)
        return expit(still_alive - dropped)

    @staticmethod
    def _expected_if_alive(t, x, tx, T, r, alpha, s, beta):
        return _pnbd_expected_if_alive(t, x, T, r, alpha, s, beta)

    @staticmethod
    def _quiet_if_alive(t, x, T, r, alpha, s, beta):
        return _pnbd_quiet_if_alive(t, x, T, r, alpha, s, beta)

    @staticmethod
    def _purchase_times(rng, horizon, rate, x, T, r, alpha, s, beta):
        # A remaining lifetime Exponential(mu), mu ~ Gamma(s, beta+T): a Poisson count over the
        # time the customer stays within the horizon, at uniform times.
        # mu drawn as 0 or nearly (s near 0): never gone, the customer stays the whole horizon.
        with np.errstate(divide="ignore", over="ignore"):
            stays = np.minimum(rng.exponential(1.0, len(x)) / rng.gamma(s, 1.0 / (beta + T)), horizon)
        count = rng.poisson(rate * stays)
        owner = np.repeat(np.arange(len(x)), count)
        return owner, rng.random(len(owner)) * stays[owner]


# The purchase-count models every run fits, by name; the first is the default.
PURCHASE_MODELS: dict[str, type[_PurchaseModel]] = {
    model.name: model for model in (BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel)}


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
    > 0). After ``fit``: ``params_`` (dict p, q, v), ``standard_errors_``, ``log_covariance_``
    (as for the purchase models), ``log_likelihood_``, ``n_customers_``.
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
        self.log_covariance_ = _log_covariance(
            lambda lp: _objective(_gg_terms, lp, (x, m), weights, float(self.penalizer)),
            log_params, weights.sum())
        self.standard_errors_ = dict(zip(("p", "q", "v"),
                                         _standard_errors(log_params, self.log_covariance_)))
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
    # net share of the gross spend in the calibration window, floored at zero
    # (value_inputs_from, the definition the Spark path computes too).
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
    out["monetary_total"] = features["monetary_total"]
    out["repeat_spend"] = np.bincount(day_customer[repeat_day], weights=day_amount[repeat_day],
                                      minlength=n)
    net_of_returns = transactions is not gross
    if net_of_returns:
        out["gross_spend"] = np.bincount(customer[in_cal], weights=amount[in_cal], minlength=n)
    out = value_inputs_from(out, net_of_returns)
    if holdout:
        in_holdout = ~in_cal & (customer >= 0)
        hkey = np.unique(customer[in_holdout] * span + (days[in_holdout] - first_day))
        out["holdout_purchases"] = np.bincount(hkey // span, minlength=n).astype(np.int64)
        out["holdout_days"] = np.full(n, end - cal, dtype=np.int64)
    return out


# The per-customer spend sums value_inputs_from needs beside customer_features' columns.
VALUE_SPEND_COLUMNS = ["repeat_spend", "gross_spend"]


def value_inputs_from(spend: pd.DataFrame, net_of_returns: bool) -> pd.DataFrame:
    """The value model's inputs (VALUE_INPUT_COLUMNS) from per-customer columns: the definition
    both paths compute, the Lambda's ``value_inputs`` from a transaction frame and the Spark
    path per customer from the history.

    customer_features alone does not determine ``monetary_value``: it is the mean spend per
    *repeat* purchase day, and no feature separates the first purchase day's spend from the
    rest (two customers buying $10 then $30, and $30 then $10, have the same feature rows and
    monetary values 30 and 10). So two per-customer sums are needed beside the features.

    ``spend`` has one row per customer of customer_features as of the analysis date (any
    subset, any order; the row order and index are kept), with columns:

    * customer_id, frequency, recency, T, monetary_total: customer_features' columns
      (frequency = purchase days - 1; recency, T in days; monetary_total = net spend,
      purchases plus returns, rounded to cents);
    * ``repeat_spend``: the sum of ``amount`` over the customer's purchase rows (not
      ``is_return``) dated before the analysis date and after the customer's first purchase day
      (order_date > first_purchase_date): the spend of the repeat purchase days, every row of
      them (zero amounts too). Equal to gross_spend minus the spend of the first purchase day;
    * ``gross_spend`` (read only with ``net_of_returns``): the sum of ``amount`` over the
      customer's purchase rows (returns excluded) dated before the analysis date.

    ``net_of_returns``: the transaction log the run reads (its whole history, any date, any
    customer) holds at least one return row. Then every customer's spend is net of their
    returns: monetary_value is scaled by min(max(monetary_total / gross_spend, 0), 1) where
    gross_spend > 0 (for a customer without returns that is 1 up to monetary_total's rounding
    to cents; the Lambda path has always applied it so, and the Spark path must too).

    monetary_value = repeat_spend / frequency (times that share) for frequency > 0, NaN for a
    one-time buyer. Returns customer_id, frequency, recency, T, monetary_value.
    """
    frequency = spend["frequency"].to_numpy()
    repeat_total = spend["repeat_spend"].to_numpy(dtype=np.float64)
    out = spend[["customer_id", "frequency", "recency", "T"]].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        monetary_value = np.where(frequency > 0, repeat_total / frequency, np.nan)
        if net_of_returns:
            spent = spend["gross_spend"].to_numpy(dtype=np.float64)
            net = spend["monetary_total"].to_numpy(dtype=np.float64)
            monetary_value *= np.where(spent > 0, np.clip(net / spent, 0.0, 1.0), 1.0)
    out["monetary_value"] = monetary_value
    return out[VALUE_INPUT_COLUMNS]


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


def _purchase_model(name: str) -> type[_PurchaseModel]:
    try:
        return PURCHASE_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown purchase model {name!r}; one of {sorted(PURCHASE_MODELS)}") from None


def holdout_check(transactions: pd.DataFrame, calibration_end, observation_end,
                  time_unit_days: float = 7, penalizer: float = 0.0,
                  model: str = "bgnbd") -> dict:
    """Fit a purchase model (``model``: a PURCHASE_MODELS name) on the purchases before
    ``calibration_end`` and compare, per customer, the predicted number of purchase days in
    [calibration_end, observation_end) with the actual one.

    Returns a JSON-ready dict (plain ints, floats, strings; a relative error is null only when
    its denominator is 0). ``predicted_holdout_purchases`` is the sum of the conditional
    expectations, ``relative_error`` = predicted / actual - 1, ``mean_absolute_error`` the
    mean over customers of |predicted - actual| (what ``compare_purchase_models`` chooses by:
    a model can get the total right with every customer wrong). The cumulative figures follow
    the paper's tracking plot: repeat purchases from each customer's first purchase to
    observation_end, the calibration part from the unconditional E[X(T)] of the fit
    (``expected_calibration_repeat_purchases``) plus the holdout prediction, against the
    actual calibration plus holdout repeat purchases. ``by_calibration_frequency`` lists, per
    number of calibration repeat purchases ("0".."6", "7+"; empty groups left out), the
    customers, the mean actual and the mean predicted holdout purchases (the paper's
    conditional-expectation check). Customers whose first purchase falls in the holdout are
    not part of the check. ``params`` and ``standard_errors`` are the calibration fit's.
    """
    model_class = _purchase_model(model)
    return _holdout_check(_holdout_inputs(transactions, calibration_end, observation_end),
                          calibration_end, observation_end, time_unit_days, penalizer, model_class)


def _holdout_inputs(transactions: pd.DataFrame, calibration_end, observation_end) -> pd.DataFrame:
    inputs = value_inputs(transactions, calibration_end, observation_end)
    if len(inputs) == 0:
        raise InsufficientData("no customer has a purchase before calibration_end")
    return inputs


def _holdout_check(inputs: pd.DataFrame, calibration_end, observation_end, time_unit_days: float,
                   penalizer: float, model_class: type[_PurchaseModel]) -> dict:
    """``holdout_check`` on the calibration/holdout ``value_inputs`` table, computed once by
    the caller for every model it checks."""
    unit = _check_time_unit(time_unit_days)
    x, tx, t_end = _rfm_in_units(inputs, unit)
    fitted = model_class(penalizer=penalizer, time_unit_days=unit).fit(x, tx, t_end)
    holdout_days = int(inputs["holdout_days"].iloc[0])
    predicted = fitted.expected_purchases(holdout_days / unit, x, tx, t_end)
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
    calibration_fitted = float(fitted.expected_purchases_new_customer(t_end).sum())
    cumulative_actual = calibration_actual + total_actual
    return {
        "model": model_class.name,
        "model_title": model_class.title,
        "calibration_end": _as_day(calibration_end).date().isoformat(),
        "observation_end": _as_day(observation_end).date().isoformat(),
        "holdout_days": holdout_days,
        "time_unit_days": _json_number(unit),
        "n_customers": int(len(inputs)),
        "params": dict(fitted.params_),
        "standard_errors": dict(fitted.standard_errors_),
        "log_likelihood": fitted.log_likelihood_,
        "converged": bool(fitted.converged_),
        "predicted_holdout_purchases": total_predicted,
        "actual_holdout_purchases": total_actual,
        "relative_error": (total_predicted / total_actual - 1.0) if total_actual else None,
        "mean_absolute_error": float(np.mean(np.abs(predicted - actual))),
        "calibration_repeat_purchases": calibration_actual,
        "expected_calibration_repeat_purchases": calibration_fitted,
        "cumulative_relative_error": (
            (calibration_fitted + total_predicted) / cumulative_actual - 1.0
            if cumulative_actual else None),
        "by_calibration_frequency": table,
    }


def compare_purchase_models(transactions: pd.DataFrame, calibration_end, observation_end,
                            time_unit_days: float = 7, penalizer: float = 0.0) -> dict:
    """``holdout_check`` of every purchase model (PURCHASE_MODELS order) and the choice: the
    model with the smallest mean absolute error of per-customer holdout purchases (ties: the
    earlier one). Returns {"chosen": name, "criterion": "mean_absolute_error",
    "checks": [check, ...]}."""
    inputs = _holdout_inputs(transactions, calibration_end, observation_end)  # once for all three
    checks = [_holdout_check(inputs, calibration_end, observation_end, time_unit_days, penalizer,
                             model_class) for model_class in PURCHASE_MODELS.values()]
    chosen = min(checks, key=lambda check: check["mean_absolute_error"])  # first on ties
    return {"chosen": chosen["model"], "criterion": "mean_absolute_error", "checks": checks}


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
                   penalizer: float = 0.0, model: str = "bgnbd",
                   segments: pd.DataFrame | None = None, start: dict | None = None
                   ) -> tuple[pd.DataFrame, dict]:
    """Fit the purchase model ``model`` (a PURCHASE_MODELS name) and Gamma-Gamma on all
    purchases before ``analysis_date`` and value every customer of
    ``customer_features(transactions, analysis_date)`` (same rows, same order). ``start``: the
    purchase model's parameters to start its fit from (its holdout check's fit, say). This is
    ``fit_value`` on every customer, then ``score_value`` of every customer.

    Table columns: customer_id, p_alive, expected_purchases_90d, expected_purchases_365d,
    expected_avg_spend, clv_12m (discounted expected value of the next 12 months' purchases
    times ``margin``; see the module docstring). Metrics: a flat dict of ints, floats, strings;
    with ``segments`` (customer_id, segment_name) also ``segment_value``, the list
    ``segment_value_intervals`` returns.
    Raises ValueError when there is no repeat buyer with positive spend (no Gamma-Gamma fit).
    """
    analysis_day = _as_day(analysis_date)
    inputs = value_inputs(transactions, analysis_day)
    if len(inputs) == 0:
        raise InsufficientData(f"no purchase before {analysis_day.date()}: nothing to value")
    table, metrics = value_from_inputs(inputs, annual_discount_rate, time_unit_days, margin,
                                       penalizer, model, segments, start)
    return table, {"analysis_date": analysis_day.date().isoformat(), **metrics}


def value_from_inputs(inputs: pd.DataFrame, annual_discount_rate: float = 0.10,
                      time_unit_days: float = 7, margin: float = 1.0,
                      penalizer: float = 0.0, model: str = "bgnbd",
                      segments: pd.DataFrame | None = None, start: dict | None = None
                      ) -> tuple[pd.DataFrame, dict]:
    """``customer_value`` on a ``value_inputs`` table (customer_id, frequency, recency, T in
    days, monetary_value), for callers that already hold one. Same table; metrics without
    analysis_date."""
    fit = fit_value(inputs, annual_discount_rate=annual_discount_rate,
                    time_unit_days=time_unit_days, margin=margin, penalizer=penalizer,
                    model=model, start=start)
    table = score_value(inputs, fit)
    metrics = value_metrics(fit, value_totals(table, inputs))
    if segments is not None:
        metrics["segment_value"] = segment_value_intervals(table, segments, fit, inputs)
    return table, metrics


# ----------------------------------------------------------------------------------------------
# fit and score
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ValueFit:
    """Everything the value model learns, and nothing about any one customer: what scoring a
    customer needs beside the customer's own value inputs.

    The purchase model (``purchase_model``: a PURCHASE_MODELS name) and Gamma-Gamma, each
    with its parameters, standard errors (None where the fit gives none), the covariance of
    its log-parameters (a list of rows, or None; the segment intervals draw parameters from
    it), total log-likelihood on the fitting customers and convergence; the fitting
    customers: ``fitted_customers`` rows (``represented_customers``: the customers they stand
    for, the sum of the weights), ``fitted_repeat_buyers``, ``gamma_gamma_customers`` (repeat
    buyers with positive spend) and ``frequency_monetary_corr`` among them; the terms of the
    valuation: ``time_unit_days``, ``annual_discount_rate``, ``margin``, ``penalizer``, and the
    ``analysis_date`` (ISO date) when the fit was given one.

    ``to_dict()`` is JSON-ready (floats, ints, strings, None, lists, dicts) and
    ``ValueFit.from_dict(json.loads(json.dumps(fit.to_dict())))`` equals ``fit``: JSON writes
    a float's shortest repr, which reads back to the same double.
    """

    purchase_model: str
    purchase_params: dict
    purchase_standard_errors: dict
    purchase_log_covariance: list | None
    purchase_log_likelihood: float
    purchase_converged: bool
    gamma_gamma_params: dict
    gamma_gamma_standard_errors: dict
    gamma_gamma_log_covariance: list | None
    gamma_gamma_log_likelihood: float
    gamma_gamma_converged: bool
    fitted_customers: int
    represented_customers: float
    fitted_repeat_buyers: int
    gamma_gamma_customers: int
    frequency_monetary_corr: float
    time_unit_days: float
    annual_discount_rate: float
    margin: float
    penalizer: float
    analysis_date: str | None = None

    def to_dict(self) -> dict:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "ValueFit":
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING]
        if unknown or missing:
            raise ValueError(f"not a value model fit: unknown key(s) {unknown}, missing {missing}")
        model_class = _purchase_model(data["purchase_model"])
        values = {name: data[name] for name in names if name in data}
        for prefix, param_names in (("purchase", model_class.param_names),
                                    ("gamma_gamma", GAMMA_GAMMA_PARAMS)):
            params, errors = data[f"{prefix}_params"], data[f"{prefix}_standard_errors"]
            if set(params) != set(param_names) or set(errors) != set(param_names):
                raise ValueError(f"{prefix} parameters must be {list(param_names)}, got {sorted(params)}")
            values[f"{prefix}_params"] = {k: float(params[k]) for k in param_names}
            values[f"{prefix}_standard_errors"] = {
                k: None if errors[k] is None else float(errors[k]) for k in param_names}
            covariance = data[f"{prefix}_log_covariance"]
            values[f"{prefix}_log_covariance"] = (
                None if covariance is None else [[float(v) for v in row] for row in covariance])
        return cls(**values)

    def purchases(self) -> _PurchaseModel:
        """The fitted purchase-count model."""
        model = PURCHASE_MODELS[self.purchase_model](penalizer=self.penalizer,
                                                     time_unit_days=self.time_unit_days)
        return _restore(model, self.purchase_params, self.purchase_standard_errors,
                        self.purchase_log_covariance, self.purchase_log_likelihood,
                        self.purchase_converged, self.fitted_customers)

    def gamma_gamma(self) -> GammaGammaModel:
        """The fitted Gamma-Gamma spend model."""
        return _restore(GammaGammaModel(penalizer=self.penalizer), self.gamma_gamma_params,
                        self.gamma_gamma_standard_errors, self.gamma_gamma_log_covariance,
                        self.gamma_gamma_log_likelihood, self.gamma_gamma_converged,
                        self.gamma_gamma_customers)

    def month(self) -> float:
        """A month (365/12 days) in the model's time unit."""
        return DAYS_PER_YEAR / CLV_MONTHS / self.time_unit_days

    def discount(self) -> np.ndarray:
        """Each month's discount factor, (1 + annual rate)^(-m/12) for m = 1..12."""
        return (1.0 + self.annual_discount_rate) ** (-np.arange(1, CLV_MONTHS + 1) / CLV_MONTHS)

    def metrics(self) -> dict:
        """The fit's entries of the value metrics (flat: ints, floats, strings)."""
        model_class = PURCHASE_MODELS[self.purchase_model]
        name = model_class.name
        return {
            "n_gamma_gamma_customers": self.gamma_gamma_customers,
            "time_unit_days": _json_number(self.time_unit_days),
            "annual_discount_rate": self.annual_discount_rate,
            "margin": self.margin,
            "clv_horizon_months": CLV_MONTHS,
            "purchase_model": name,
            "purchase_model_title": model_class.title,
            **{f"{name}_{k}": v for k, v in self.purchase_params.items()},
            **{f"{name}_{k}_se": v for k, v in self.purchase_standard_errors.items() if v is not None},
            f"{name}_log_likelihood": self.purchase_log_likelihood,
            **{f"gg_{k}": v for k, v in self.gamma_gamma_params.items()},
            "gg_log_likelihood": self.gamma_gamma_log_likelihood,
            "gg_population_avg_spend": float(self.gamma_gamma().population_mean_spend()),
            "gg_frequency_monetary_corr": self.frequency_monetary_corr,
        }


GAMMA_GAMMA_PARAMS = ("p", "q", "v")


def _restore(model, params: dict, standard_errors: dict, log_covariance, log_likelihood: float,
             converged: bool, n_customers: int):
    """A fitted model from its saved parameters, as its ``fit`` would have left it."""
    model.params_ = dict(params)
    model.standard_errors_ = dict(standard_errors)
    model.log_covariance_ = None if log_covariance is None else np.asarray(log_covariance, dtype=np.float64)
    model.log_likelihood_ = log_likelihood
    model.converged_ = converged
    model.n_customers_ = n_customers
    return model


def _check_valuation(annual_discount_rate: float, margin: float) -> None:
    if not np.isfinite(annual_discount_rate) or annual_discount_rate <= -1:
        raise ValueError(f"annual_discount_rate must be > -1, got {annual_discount_rate}")
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be non-negative, got {margin}")


def _frequency_monetary_corr(x: np.ndarray, m: np.ndarray, weights: np.ndarray | None) -> float:
    """Pearson correlation of frequency and monetary value (weighted when a sample has
    weights); 0 where it is undefined."""
    if not (len(x) > 2 and np.ptp(x) > 0 and np.ptp(m) > 0):
        return 0.0
    if weights is None:
        return float(np.corrcoef(x, m)[0, 1])
    w = weights / weights.sum()
    dx, dm = x - _weighted_sum(w, x), m - _weighted_sum(w, m)
    return float(_weighted_sum(w, dx * dm) / np.sqrt(_weighted_sum(w, dx**2) * _weighted_sum(w, dm**2)))


def fit_value(data: pd.DataFrame, analysis_date=None, annual_discount_rate: float = 0.10,
              time_unit_days: float = 7, margin: float = 1.0, penalizer: float = 0.0,
              model: str = "bgnbd", start: dict | None = None, weights=None) -> ValueFit:
    """Fit the value model: the purchase model ``model`` (a PURCHASE_MODELS name) on every row's
    (frequency, recency, T) and Gamma-Gamma on the repeat buyers with positive spend.

    ``data``: a ``value_inputs`` table (customer_id, frequency, recency, T in days,
    monetary_value) of all customers or of a sample of them; or a transaction log (it has an
    order_date column), whose ``value_inputs`` as of ``analysis_date`` are fitted.
    ``weights`` (optional, one per row): how many customers each row stands for, for a
    stratified sample (stratum size / stratum sample size); the fit maximizes the weighted
    likelihood, an estimate of the likelihood of all the customers. The weights are rescaled
    to a mean of 1 for the fit, so standard errors and log-likelihoods are those of the rows
    fitted: a fit on a tenth of the customers reports about sqrt(10) times the standard
    errors of a fit on all, and its segment intervals carry that uncertainty. ``start``: the
    purchase model's parameters to start its search from. The rest: see ``customer_value``.
    """
    analysis_day = None if analysis_date is None else _as_day(analysis_date)
    if "order_date" in data.columns:
        if analysis_day is None:
            raise ValueError("fitting on a transaction log needs its analysis_date")
        inputs = value_inputs(data, analysis_day)
        if len(inputs) == 0:
            raise InsufficientData(f"no purchase before {analysis_day.date()}: nothing to value")
    else:
        inputs = data
    unit = _check_time_unit(time_unit_days)
    model_class = _purchase_model(model)
    _check_valuation(annual_discount_rate, margin)
    if len(inputs) == 0:
        raise ValueError("no customer to value")
    x, tx, t_end = _rfm_in_units(inputs, unit)
    m = inputs["monetary_value"].to_numpy(dtype=np.float64)

    # The purchase model fits the distinct (x, t_x, T) rows with their counts (or weights).
    (ux, utx, uT), counts, inverse = _distinct_rows(x, tx, t_end)
    spenders = (x > 0) & (m > 0)
    if weights is None:
        row_weights, spender_weights, represented = counts, None, float(len(inputs))
    else:
        w = _float_array("weights", weights)
        if len(w) != len(inputs) or (w < 0).any() or not w.sum() > 0:
            raise ValueError("weights must be one non-negative number per row, not all 0")
        represented = float(w.sum())
        w = w * (len(w) / represented)
        row_weights = np.bincount(inverse, weights=w, minlength=len(counts))
        spender_weights = w[spenders]
    purchases = model_class(penalizer=penalizer, time_unit_days=unit).fit(
        ux, utx, uT, weights=row_weights, start=start)
    gamma_gamma = GammaGammaModel(penalizer=penalizer).fit(x[spenders], m[spenders],
                                                          weights=spender_weights)

    def covariance(model_) -> list | None:
        return None if model_.log_covariance_ is None else model_.log_covariance_.tolist()

    return ValueFit(
        purchase_model=model_class.name,
        purchase_params=dict(purchases.params_),
        purchase_standard_errors=dict(purchases.standard_errors_),
        purchase_log_covariance=covariance(purchases),
        purchase_log_likelihood=float(purchases.log_likelihood_),
        purchase_converged=bool(purchases.converged_),
        gamma_gamma_params=dict(gamma_gamma.params_),
        gamma_gamma_standard_errors=dict(gamma_gamma.standard_errors_),
        gamma_gamma_log_covariance=covariance(gamma_gamma),
        gamma_gamma_log_likelihood=float(gamma_gamma.log_likelihood_),
        gamma_gamma_converged=bool(gamma_gamma.converged_),
        fitted_customers=int(len(inputs)),
        represented_customers=represented,
        fitted_repeat_buyers=int((x > 0).sum()),
        gamma_gamma_customers=int(spenders.sum()),
        frequency_monetary_corr=_frequency_monetary_corr(x[spenders], m[spenders], spender_weights),
        time_unit_days=unit,
        annual_discount_rate=float(annual_discount_rate),
        margin=float(margin),
        penalizer=float(penalizer),
        analysis_date=None if analysis_day is None else analysis_day.date().isoformat(),
    )


def score_value(inputs: pd.DataFrame, fit: ValueFit) -> pd.DataFrame:
    """The customer_value table's rows (CUSTOMER_VALUE_COLUMNS) for exactly the customers of
    ``inputs``, in its row order: customer_id, p_alive, expected_purchases_90d,
    expected_purchases_365d, expected_avg_spend, clv_12m.

    ``inputs``: per customer, customer_id, frequency, recency, T (days, as in
    customer_features) and monetary_value (``value_inputs_from``: customer_features does not
    carry it). Each row's values depend on that row and ``fit`` alone, to the bit: scoring a
    table whole, in batches, shuffled or one row at a time gives the same rows, so a Spark job
    can score its partitions independently (``mapInPandas``). Identical rows are computed
    once per call, which changes no value.
    """
    purchases, gamma_gamma = fit.purchases(), fit.gamma_gamma()
    x, tx, t_end = _rfm_in_units(inputs, fit.time_unit_days)
    m = inputs["monetary_value"].to_numpy(dtype=np.float64)
    (ux, utx, uT), _, inverse = _distinct_rows(x, tx, t_end)

    def per_customer(values: np.ndarray) -> np.ndarray:
        return values[inverse]

    # Cumulative expected purchases at the end of each month (the differences are the months'),
    # then at 90 days.
    month = fit.month()
    alive, expected = purchases.alive_and_expected_purchases(
        [k * month for k in range(1, CLV_MONTHS + 1)] + [90 / fit.time_unit_days], ux, utx, uT)
    p_alive = per_customer(alive)
    spend = np.clip(gamma_gamma.expected_average_spend(x, np.where(x > 0, m, np.nan)), 0.0, None)
    cumulative = np.column_stack([np.zeros(len(ux)), expected[:, :CLV_MONTHS]])
    monthly = np.clip(np.diff(cumulative, axis=1), 0.0, None)
    purchases_value = per_customer((monthly * fit.discount()).sum(axis=1))
    return pd.DataFrame({
        "customer_id": inputs["customer_id"].reset_index(drop=True),
        "p_alive": p_alive,
        "expected_purchases_90d": per_customer(expected[:, CLV_MONTHS]),
        "expected_purchases_365d": per_customer(cumulative[:, -1]),
        "expected_avg_spend": spend,
        "clv_12m": fit.margin * spend * purchases_value,
    })[CUSTOMER_VALUE_COLUMNS]


VALUE_TOTALS = ("n_customers", "n_repeat_buyers", "mean_p_alive", "total_expected_purchases_365d",
                "total_clv_12m", "mean_clv_12m")


def value_metrics(fit: ValueFit, totals: dict) -> dict:
    """The run's value metrics: the scored customers' counts, the fit's figures, then the
    scored customers' sums and means (``value_totals``, or the same figures from a Spark
    aggregation), in the order the run summary shows them."""
    return {"n_customers": int(totals["n_customers"]), "n_repeat_buyers": int(totals["n_repeat_buyers"]),
            **fit.metrics(), **{key: float(totals[key]) for key in VALUE_TOTALS[2:]}}


def value_totals(table: pd.DataFrame, inputs: pd.DataFrame) -> dict:
    """The scored customers' entries of the value metrics: n_customers, n_repeat_buyers
    (frequency > 0), mean_p_alive, total_expected_purchases_365d, total_clv_12m, mean_clv_12m.
    Counts and sums of per-customer values: on the Spark path a group-by of the scored table
    gives them (in another summation order: equal to rounding)."""
    p_alive = table["p_alive"].to_numpy(dtype=np.float64)
    clv = table["clv_12m"].to_numpy(dtype=np.float64)
    return {
        "n_customers": int(len(inputs)),
        "n_repeat_buyers": int((inputs["frequency"].to_numpy() > 0).sum()),
        "mean_p_alive": float(p_alive.mean()),
        "total_expected_purchases_365d": float(table["expected_purchases_365d"].to_numpy(dtype=np.float64).sum()),
        "total_clv_12m": float(clv.sum()),
        "mean_clv_12m": float(clv.mean()),
    }


# The 12-month CLV histogram: bins of equal width in log10 of the amount, this many per decade.
CLV_BINS_PER_DECADE = 10
# Values below this (a tenth of the currency's unit) fall in the first bin.
CLV_HISTOGRAM_FLOOR = 0.1


def clv_histogram_edges(max_clv: float) -> np.ndarray:
    """The histogram's edges in log10 of the amount, from -1 to the decade above the largest
    clv_12m (at least 1): what every partition of the customers is counted against."""
    top = max(1, math.ceil(float(np.log10(max(float(max_clv), CLV_HISTOGRAM_FLOOR)))))
    return np.linspace(-1.0, top, CLV_BINS_PER_DECADE * (top + 1) + 1)


def clv_histogram_counts(clv, edges) -> np.ndarray:
    """Customers per bin of ``edges`` (``clv_histogram_edges``): counts, so the counts of the
    parts of the customers add up to the counts of all of them."""
    exponents = np.log10(np.clip(np.asarray(clv, dtype=np.float64), CLV_HISTOGRAM_FLOOR, None))
    counts, _ = np.histogram(exponents, bins=np.asarray(edges, dtype=np.float64))
    return counts.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# segment value intervals
# ----------------------------------------------------------------------------------------------

# Draws of the segments' realised value: parameter draws x purchase draws per parameter draw.
PARAMETER_DRAWS = 25
PURCHASE_DRAWS = 8
VALUE_INTERVAL = 0.90
# Customers simulated at most; above it a stratified sample per segment, scaled up.
MAX_SIMULATED_CUSTOMERS = 50_000
# Customers simulated at least per segment (or all of it) when sampling.
MIN_SIMULATED_PER_SEGMENT = 2000
SIMULATION_SEED = 0
NO_SEGMENT = "(no segment)"


def segment_sample_size(segment_customers: int, all_customers: int) -> int:
    """Customers of a segment the interval simulation takes: all of them up to
    MAX_SIMULATED_CUSTOMERS customers in all; above it the segment's share of
    MAX_SIMULATED_CUSTOMERS, at least MIN_SIMULATED_PER_SEGMENT (or the whole segment). The
    Spark path draws its simulation sample per segment with these sizes."""
    if all_customers <= MAX_SIMULATED_CUSTOMERS:
        return int(segment_customers)
    return min(int(segment_customers), max(MIN_SIMULATED_PER_SEGMENT,
                                           int(MAX_SIMULATED_CUSTOMERS * segment_customers / all_customers)))


def segment_value_intervals(table: pd.DataFrame, segments: pd.DataFrame, fit: ValueFit,
                            inputs: pd.DataFrame, seed: int = SIMULATION_SEED) -> list[dict]:
    """A 90% predictive interval of each segment's realised value over the next 12 months
    (discounted like clv_12m, times ``margin``), from both sources of uncertainty, simulated
    with a fixed seed, for the customers of ``table`` (``score_value`` of ``inputs``) in the
    segments of ``segments`` (customer_id, segment_name; a customer without one is in
    "(no segment)").

    Parameter uncertainty: PARAMETER_DRAWS draws of each model's log-parameters from the normal
    approximation N(log theta, log_covariance_) (the observed information; the point estimates
    alone, and ``parameter_uncertainty`` False, when a model has no covariance or a draw leaves
    the fit's box: a flat likelihood ridge, whose normal approximation means nothing). Purchase uncertainty: for each of those,
    PURCHASE_DRAWS simulations of every customer's next 12 months from the model's posterior at
    T: alive with probability P(alive); if alive, a purchase rate lambda ~ Gamma(r+x, alpha+T)
    and, for the BG/NBD and MBG/NBD, p ~ Beta(a, b+x) (b+x+1) with a dropout after each
    purchase (the number of purchases left is Geometric(p)), for the Pareto/NBD a remaining
    lifetime Exponential(mu), mu ~ Gamma(s, beta+T); a Poisson number of purchases over the
    time the customer stays within the 12 months, at uniform times (the first Geometric(p) of
    them kept for the BG/NBD and MBG/NBD); each purchase's amount ~ Gamma(p, nu) with the
    customer's nu ~ Gamma(q + p x, v + x m_x) (the Gamma-Gamma posterior, whose mean is
    expected_avg_spend), discounted from the end of its month as in clv_12m. 25 parameter
    draws x 8 purchase draws: the P(alive) of every customer is recomputed per parameter draw,
    the costly part for the Pareto/NBD (about 1 s for CDNOW master in all). Above MAX_SIMULATED_CUSTOMERS customers a stratified
    sample (``segment_sample_size`` per segment) is simulated and scaled by
    segment size / sample size.

    Returns one dict per segment (sorted by name): segment_name, customers, expected_clv_12m (the sum of clv_12m), simulated_mean,
    lower and upper (the 5th and 95th percentiles), draws, parameter_uncertainty (bool).
    ``segment_value_from_sample`` is the same from a sample and per-segment totals."""
    frame = pd.DataFrame({"customer_id": table["customer_id"].astype("str")})
    labels = frame.merge(segments[["customer_id", "segment_name"]].astype({"customer_id": "str"}),
                         on="customer_id", how="left")["segment_name"].fillna(NO_SEGMENT)
    codes, names = pd.factorize(labels.to_numpy(), sort=True)
    n_groups = len(names)
    rng = np.random.default_rng(seed)
    sizes = np.bincount(codes, minlength=n_groups)
    if len(codes) > MAX_SIMULATED_CUSTOMERS:
        chosen = []
        for group in range(n_groups):
            members = np.flatnonzero(codes == group)
            take = segment_sample_size(len(members), len(codes))
            chosen.append(np.sort(rng.choice(members, take, replace=False)))
        rows = np.concatenate(chosen)
    else:
        rows = np.arange(len(codes))
    expected = np.bincount(codes, weights=table["clv_12m"].to_numpy(dtype=np.float64),
                           minlength=n_groups)
    return _simulate_segment_value(fit, inputs.iloc[rows], codes[rows], names, sizes, expected, rng)


def segment_value_from_sample(sample: pd.DataFrame, segment_totals: pd.DataFrame, fit: ValueFit,
                              seed: int = SIMULATION_SEED) -> list[dict]:
    """``segment_value_intervals`` when the customers are too many to hold (the Spark path):
    the simulation runs on a sample and is scaled up, and the expected values come from sums.

    The intervals are not a function of per-segment sums of per-customer quantities: a
    segment's realised value is a sum of independent per-customer draws (alive or not, a
    rate, a dropout or lifetime, amounts), whose quantiles depend on every customer's own
    distribution, and each parameter draw changes every customer's P(alive). Only their
    centre, expected_clv_12m, is a sum (of clv_12m). So the simulation needs customers:
    ``sample`` holds the value inputs (VALUE_INPUT_COLUMNS) and segment_name of a sample drawn
    per segment (``segment_sample_size`` customers of each, uniformly within it), and
    ``segment_totals`` one row per segment of all customers: segment_name, customers (count)
    and expected_clv_12m (sum of clv_12m), a Spark group-by of the scored table. Each sampled
    customer stands for customers / sample size of their segment, as in the Lambda path above
    MAX_SIMULATED_CUSTOMERS. Same return value as ``segment_value_intervals``."""
    totals = segment_totals.sort_values("segment_name", kind="stable")
    names = totals["segment_name"].astype("str").to_numpy()
    if len(set(names)) != len(names):
        raise ValueError("segment_totals has a segment more than once")
    codes = pd.Index(names).get_indexer(sample["segment_name"].fillna(NO_SEGMENT).astype("str"))
    if (codes < 0).any():
        raise ValueError("the sample has a segment that segment_totals lacks")
    return _simulate_segment_value(
        fit, sample, codes, names, totals["customers"].to_numpy(dtype=np.int64),
        totals["expected_clv_12m"].to_numpy(dtype=np.float64), np.random.default_rng(seed))


def _simulate_segment_value(fit: ValueFit, inputs: pd.DataFrame, codes_s: np.ndarray, names,
                            sizes: np.ndarray, expected: np.ndarray, rng) -> list[dict]:
    """The simulation of ``segment_value_intervals`` on the simulated customers ``inputs``
    (their segment codes ``codes_s`` into ``names``), each scaled by its segment's size over
    its simulated customers; ``expected`` the segments' sums of clv_12m."""
    purchases, gamma_gamma = fit.purchases(), fit.gamma_gamma()
    month, discount, margin = fit.month(), fit.discount(), fit.margin
    n_groups = len(names)
    scale = (sizes / np.maximum(np.bincount(codes_s, minlength=n_groups), 1))[codes_s]
    x, tx, t_end = _rfm_in_units(inputs, fit.time_unit_days)
    m_all = inputs["monetary_value"].to_numpy(dtype=np.float64)
    m = np.where((x > 0) & (m_all > 0), m_all, 0.0)
    (ux, utx, uT), _, inverse = _distinct_rows(x, tx, t_end)

    def parameter_draws(model) -> tuple[np.ndarray, bool]:
        """The draws, and whether they carry the parameters' uncertainty: not when the model has
        no covariance, nor when a draw leaves the fit's box (a flat ridge of the likelihood, e.g.
        a Pareto/NBD on a month of history, gives log-sds of millions: no normal approximation)."""
        log_theta = np.log([model.params_[k] for k in model.params_])
        point = np.tile(np.exp(log_theta), (PARAMETER_DRAWS, 1))
        if model.log_covariance_ is None:
            return point, False
        draws = rng.multivariate_normal(log_theta, model.log_covariance_, PARAMETER_DRAWS, method="eigh")
        if not np.all(np.abs(draws) <= _LOG_BOUND):
            return point, False
        return np.exp(draws), True

    (bt_draws, bt_uncertain), (gg_draws, gg_uncertain) = parameter_draws(purchases), parameter_draws(gamma_gamma)
    n = len(codes_s)
    horizon = CLV_MONTHS * month
    totals = np.empty((n_groups, PARAMETER_DRAWS * PURCHASE_DRAWS))
    column = 0
    for theta, (p_gg, q_gg, v_gg) in zip(bt_draws, gg_draws):
        alive_p = purchases._p_alive(ux, utx, uT, *theta)[inverse]
        r, alpha = theta[:2]
        for _ in range(PURCHASE_DRAWS):
            # Only customers alive at T buy, at a rate drawn from its posterior; each purchase
            # is valued at the discount of its month.
            live = np.flatnonzero(rng.random(n) < alive_p)
            rate = rng.gamma(r + x[live], 1.0 / (alpha + t_end[live]))
            owner, when = purchases._purchase_times(rng, horizon, rate, x[live], t_end[live], *theta)
            nu = rng.gamma(q_gg + p_gg * x[live], 1.0 / (v_gg + x[live] * m[live]))
            amount = rng.gamma(p_gg, 1.0 / nu[owner])
            month_of = np.minimum((when / month).astype(np.int64), CLV_MONTHS - 1)
            value = np.bincount(owner, weights=amount * discount[month_of], minlength=len(live))
            totals[:, column] = np.bincount(codes_s[live], weights=margin * value * scale[live],
                                            minlength=n_groups)
            column += 1
    tail = (1.0 - VALUE_INTERVAL) / 2.0
    lower, upper = np.quantile(totals, [tail, 1.0 - tail], axis=1)
    has_covariance = bt_uncertain and gg_uncertain
    return [{"segment_name": str(names[g]), "customers": int(sizes[g]),
             "expected_clv_12m": float(expected[g]), "simulated_mean": float(totals[g].mean()),
             "lower": float(lower[g]), "upper": float(upper[g]), "interval": VALUE_INTERVAL,
             "draws": int(totals.shape[1]), "simulated_customers": int((codes_s == g).sum()),
             "parameter_uncertainty": bool(has_covariance)}
            for g in range(n_groups)]
