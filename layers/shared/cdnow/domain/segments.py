"""Customer segments a marketing team can act on: k-means clusters refined by RFM rules.

Pure logic on the customer_features table (see ``cdnow.domain.features``); no I/O. The
Lambda path's entry point is ``segment_customers(features, n_clusters=None)``, which returns
a ``SegmentationResult``: it fits on every customer, scores every customer and aggregates, in
three steps a Spark job can take apart (see "Fit and score" below).
``segment_migration(previous, current)`` compares the assignments of two runs.

Design in two layers
    1. K-means on log RFM (k by silhouette and stability, below) finds the value structure of
       the customer base; its most valuable cluster of current customers is the *champion
       cluster*.
    2. A rule layer names every customer from their own recency, purchase days, first
       purchase and spend (and, for Champions only, their cluster), with documented
       thresholds. A k-means cluster mixes customers who bought last week with ones gone for
       a year and a half (its name used to come from its median customer); the rules split it,
       so every segment is homogeneous in what its name promises: a recency-named segment
       holds only customers inside its stated recency range, Lost only single-purchase
       customers gone for 4 I, and New appears whenever first purchases are recent. Each rule
       is a complete condition (not "the first rule that matches"); together they are a
       partition, checked on every run.

Clustering inputs (why these, and why transformed so)
    Three columns, the classic RFM triple: recency_days, purchase_days, monetary_total.
    Counts and amounts are heavy-tailed: on raw values a handful of extreme spenders dominate
    the Euclidean distances (the reference notebook's seven raw columns gave one cluster of 9
    customers). Skewness (Fisher, biased, ``scipy.stats.skew``) on CDNOW master, analysis date
    1998-07-01, 23,570 customers:

        column           raw    log1p   sqrt   used
        recency_days    -0.85   -1.99  -1.19   raw (log1p and sqrt make the skew worse)
        purchase_days   10.54    1.46   2.59   log1p
        monetary_total  17.65    0.47   2.99   log1p

    purchase_days keeps some skew after log1p because 51% of customers are one-time buyers
    (a point mass at 1 no monotone transform can spread). recency_days is bounded by the window
    and left-skewed, so it stays linear. Negative totals (refunds) are clipped to 0 before
    log1p. Each column is then standardized (mean 0, standard deviation 1 over the fitted
    customers).
    tenure_days is left out on purpose: on CDNOW every customer joined in Q1 1997, so it only
    adds a cohort axis; the other features are restatements or near-restatements of these three.

Determinism
    Customers are sorted by customer_id before anything is computed (duplicate ids are an
    error), every random choice takes a seed derived from ``random_state``, so the same
    customers give identical labels whatever the input row order.

Choosing k (``n_clusters=None``)
    On a sample of ``sample_size`` (10,000) customers drawn with ``random_state`` (all of them
    when there are fewer), for every k in 2..8:
      - five k-means fits, each one k-means++ start (n_init=1) with seeds random_state+0..4;
      - stability  = mean adjusted Rand index over the 10 pairs of those five labelings
                     (1 = every start finds the same partition);
      - silhouette = silhouette coefficient (Euclidean, in the standardized space) of the
                     lowest-inertia of the five fits.
    Criterion: the k with the highest silhouette among k in 3..8 whose stability >= 0.9 (ties:
    smaller k). If no k in 3..8 is that stable, the most stable one (ties: higher silhouette).
    k = 2 is reported but never chosen by default: it is the active/lapsed split the marketer
    already knows. The final model starts from the chosen k's lowest-inertia sample fit and is
    refined by k-means on every fitted customer. ``n_clusters=<k>`` overrides the choice (the
    table is still computed and its chosen row is the override).

    Measured on CDNOW master (analysis date 1998-07-01, random_state=0):

         k   silhouette   stability
         2     0.5899       0.9996   (not a candidate)
         3     0.5112       0.9890   <- chosen
         4     0.4253       0.9668
         5     0.4135       0.7009
         6     0.4057       0.8909
         7     0.4207       0.8426
         8     0.4094       0.7638

    The silhouette drops from 0.51 at k=3 to 0.43 at k=4 and stays at 0.41-0.42 for k=5..8,
    where single starts no longer agree (stability < 0.9): three clusters is what the data
    supports. The clusters are the value structure, not the segments: the rule layer below
    names the customers, and of k only the champion cluster's size reaches the names.
    (On the master file repeated x100 with new ids, 2,357,000 customers, a different sample:
    silhouettes within 0.01 of these, stabilities 0.80-1.00 for k >= 5, k=3 chosen again.)

    Cost: the fits on the sample run single-threaded, and the silhouettes of all k share one
    pass over the sample's pairwise distances (``silhouettes``), so choosing k takes about
    1.5 s whatever the number of customers.

The rule layer (thresholds in the module constants, derived from the data where they can be)
    I = the customers' typical purchase interval: the median avg_days_between_purchases over
    the fitted repeat buyers (82.5 days on CDNOW master; DEFAULT_INTERVAL_DAYS = 90 if there is
    no repeat buyer). A = ACTIVE_INTERVALS x I = 2 I and L = LAPSED_INTERVALS x I = 4 I, rounded
    down to whole days (recency is in whole days): 165 and 330 on master. M* = the mean
    monetary_total over the fitted customers (106.08 on master): "high spend" is M >= M*.
    Per customer, with R = recency_days (1 = bought on the window's last day), D = tenure_days
    (days since the first purchase), F = purchase_days, M = monetary_total:

        status    active  R <= A        lapsing  A < R <= L        lapsed  R > L

        segment         status   rule (each one complete; together a partition)
        Champions       active   R <= A, D > A, in the champion cluster
        Need attention  lapsing  A < R <= L, M >= M*
        Loyal           active   R <= A, D > A, not in the champion cluster (so F >= 2)
        New             active   D <= A: first purchase within A days (so R <= A)
        At risk         lapsed   R > L, F >= 2, M >= M*  (were valuable: win-back priority)
        About to sleep  lapsing  A < R <= L, M < M*
        Hibernating     lapsed   R > L, F >= 2, M < M*
        Lost            lapsed   R > L, F = 1: a single purchase, none in L days

    A one-time buyer has R = D, so an active one is always New (a "Promising" one-time buyer
    who is active but not new cannot exist). The champion cluster is the most valuable k-means
    cluster (highest mean monetary_total; ties: higher mean purchase_days, lower median
    recency_days, larger size) among those in which at least CHAMPION_CLUSTER_MIN_ACTIVE_SHARE
    (25%) of the customers are established actives (R <= A, D > A): a lapsed cluster's few
    stragglers do not make Champions. With no such cluster there are no Champions (established
    actives are Loyal). Only Champions depend on k: the chosen k moves customers between
    Champions and Loyal, never in or out of the other segments.

    segment_rank and profile order follow the vocabulary order SEGMENT_NAMES (segments no
    fitted customer falls in skipped; ranks 0..n-1), which is the order of value measured on
    CDNOW: segments as of an earlier analysis date, then each segment's revenue per customer in
    the rest of the file:

        as of           Champions  Need att.  Loyal  At risk  About to sleep  Hibernating  Lost
        1997-10-01        198.83      54.22   53.49    26.09           20.32        14.08   8.97
        1998-01-01        103.33      35.51   23.80    13.63           14.40         6.95   3.91

    (New has no CDNOW customers to measure; it is placed after the active repeat buyers. At
    risk and About to sleep are level on future revenue; At risk spent far more.) On a short
    history I is short (intervals longer than the history cannot be seen), so customers lapse
    early: as of 1997-10-01 (9 months of data) Lost held 57% of customers and 16% of the next
    9 months' revenue; as of 1998-01-01 56% and 11% of the next 6 months'.

    SegmentationResult.summary() states the rules for the report: ``segment_rules`` (every
    rule in plain words with this run's numbers, its recency range and customers),
    ``rule_thresholds``, ``large_segments`` (any segment above MAX_SEGMENT_SHARE = 40% of the
    customers, with the one rule every member meets) and ``clusters`` (how the rules split
    each k-means cluster).

    Measured on CDNOW master (analysis date 1998-07-01, random_state=0, k = 3; revenue
    share of $2,500,315.63):

        segment         customers  share  revenue share  median recency  mean purchase days  mean $
        Champions           2,912  12.4%         48.4%            45 d                9.83  415.31
        Need attention      1,196   5.1%         11.5%           231 d                5.19  239.51
        Loyal               2,201   9.3%          7.8%            91 d                3.13   89.09
        At risk               967   4.1%          8.2%           422 d                3.48  211.66
        About to sleep      1,454   6.2%          3.5%           239 d                2.77   59.73
        Hibernating         2,786  11.8%          6.0%           450 d                2.31   53.58
        Lost               12,054  51.1%         14.7%           503 d                1.00   30.50

    Lost is the one segment above 40%: every customer with a single purchase day more than
    330 days ago, and nobody else (on master their one purchase was 463-546 days ago, so none
    in the last 12 months either). No "New": every CDNOW customer's first purchase was in Q1
    1997 (D >= 463). The champion cluster (3,406 customers, mean $412.24) splits into
    Champions 2,912, Need attention 426, At risk 65 and About to sleep 3; the middle cluster
    (6,110, median recency 224 d) into Loyal 2,201, About to sleep 1,427, At risk 837,
    Hibernating 860, Need attention 770 and Lost 15. n_clusters = 2..8 give Champions of 5,091
    / 2,912 / 2,381 / 1,299 / 1,223 / 1,189 / 1,048 customers (mean $276 .. $733), the rest
    going to Loyal; the other six segments are the same for every k.

Fit and score (the Spark path)
    ``fit_segments(features) -> SegmentFit`` learns from the customers it is given, all of
    them or a sample (``stratified_sample``, strata = the rfm_grid cells): the standardization
    (center and scale per input), the k-selection table and k, the k-means centroids, the
    clusters' value order and the champion cluster, the RuleThresholds (I and M*) and the
    segment ranks (the segments the fitted customers fall in). ``SegmentFit.to_dict()`` is
    JSON (floats round-trip exactly) and ``SegmentFit.from_dict`` reads it back.
    ``score_segments(features, fit)`` gives the customer_segments rows of any batch of
    customer_features rows from the fit alone: each row from its own values (the distances to
    the centroids are summed column by column, not by a matrix product whose summation order
    could depend on the batch), so a Spark job scores partitions with ``mapInPandas`` and gets
    the rows of scoring everyone. A segment the fit did not see (a sample can miss a rare one)
    ranks after the fitted segments, in vocabulary order.
    ``segmentation_from_scores(features, scored, fit)`` makes everything else of the
    ``SegmentationResult`` from the scored rows (with their ``cluster``) and the features.
    Fitted on every customer (the Lambda path, ``segment_customers``) the three steps give the
    results of fitting and naming in one pass, bit for bit. What each aggregate needs, for a
    group-by on Spark:
      - decomposable (sums and counts per group, added over partitions): the profiles'
        customers, customer_share, revenue_cents (sum of round(monetary_total x 100)), revenue,
        revenue_share and every mean_<f> (sum and count of non-missing values); rfm_grid (per
        cell: count, cents); profile_index (segment means over the overall mean, both sums and
        counts); the cluster table's customers, mean_monetary_total, mean_purchase_days,
        established_active_share (the mean of an indicator) and customers per (cluster,
        segment); the summary's counts and shares, which come from the profiles.
      - not decomposable: every median_<f> of the profiles and the cluster table's
        median_recency_days (an exact median per group: Spark's ``percentile(col, 0.5)``, which
        interpolates between the two middle values as pandas does, not percentile_approx).
      - from the fit, not the customers: k_selection, n_clusters, thresholds (so
        typical_interval_days), the cluster order, label and champion flag, segment ranks.
    On the Spark path a segment's profile and the rule statements describe all customers while
    the thresholds and the champion cluster come from the sample: on CDNOW master, fits on 10%
    stratified samples moved every segment's share by less than one point (the tests check it).

Profiles
    One row per segment that has customers, in rank order: its recency status (every
    member's: each rule fixes one), size and share, revenue in integer cents (segments add up
    to the total to the cent), revenue share, and mean and median of every FEATURE_COLUMNS
    column, including the restatements (repeat_purchases, frequency, recency, T) so the
    profile table maps one-to-one onto the feature table. Means and medians skip NaN:
    avg_days_between_purchases is over repeat buyers only.

Chart data
    rfm_grid: customers, revenue and mean monetary_total per cell of recency_days bins
    1-30, 31-90, 91-180, 181-365, 366-730, 731+ days x purchase_days bins 1, 2, 3, 4-5, 6-10,
    11+ (fixed calendar bins, so heat maps of different runs are comparable; every cell is
    listed, empty ones with 0 customers and a missing mean).
    profile_index: per segment, segment mean / overall mean of PROFILE_INDEX_FEATURES
    (1.0 = the average customer), for a profile (snake) plot.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from .features import FEATURE_COLUMNS
from .support import InsufficientData

SEGMENT_INPUTS = ["recency_days", "purchase_days", "monetary_total"]
# log1p for the heavy-tailed count and amount; recency_days stays linear (see the docstring).
LOG_INPUTS = ("purchase_days", "monetary_total")

# Every feature column is profiled (restatements included, see the module docstring).
PROFILE_FEATURES = list(FEATURE_COLUMNS)
PROFILE_INDEX_FEATURES = [
    "recency_days", "purchase_days", "monetary_total", "monetary_avg_per_purchase",
    "quantity_total", "avg_days_between_purchases", "tenure_days",
]

# k selection.
K_RANGE = range(2, 9)
MIN_DEFAULT_K = 3
MIN_STABILITY = 0.9
SAMPLE_SIZE = 10_000
STABILITY_SEEDS = 5

# The rule layer (every threshold of the naming rules; the module docstring has the table).
ACTIVE_INTERVALS = 2       # active: last purchase within 2 I days (I: typical purchase interval)
LAPSED_INTERVALS = 4       # lapsed: no purchase in 4 I days; lapsing in between
DEFAULT_INTERVAL_DAYS = 90.0  # I when there is no repeat buyer
# "High spend": monetary_total >= the mean over all customers (RuleThresholds.high_spend).
# The champion cluster is the most valuable k-means cluster in which at least this share of the
# customers are established actives (a lapsed cluster's few stragglers do not make Champions).
CHAMPION_CLUSTER_MIN_ACTIVE_SHARE = 0.25
# A segment holding more than this share of the customers is listed in the summary's
# large_segments with the one rule every member meets, for the report to state.
MAX_SEGMENT_SHARE = 0.40
CHAMPIONS = "Champions"
NEED_ATTENTION = "Need attention"
LOYAL = "Loyal"
NEW = "New"
AT_RISK = "At risk"
ABOUT_TO_SLEEP = "About to sleep"
HIBERNATING = "Hibernating"
LOST = "Lost"
# The vocabulary from most to least valuable: segment_rank and profile order (measured on
# CDNOW, see the module docstring).
SEGMENT_NAMES = [CHAMPIONS, NEED_ATTENTION, LOYAL, NEW, AT_RISK, ABOUT_TO_SLEEP, HIBERNATING,
                 LOST]
ACTIVE, LAPSING, LAPSED = "active", "lapsing", "lapsed"
STATUS_OF_SEGMENT = {CHAMPIONS: ACTIVE, LOYAL: ACTIVE, NEW: ACTIVE, NEED_ATTENTION: LAPSING,
                     ABOUT_TO_SLEEP: LAPSING, AT_RISK: LAPSED, HIBERNATING: LAPSED, LOST: LAPSED}

# Chart bins: (label, lowest value, highest value or None).
RECENCY_BINS = [("1-30", 1, 30), ("31-90", 31, 90), ("91-180", 91, 180),
                ("181-365", 181, 365), ("366-730", 366, 730), ("731+", 731, None)]
PURCHASE_DAYS_BINS = [("1", 1, 1), ("2", 2, 2), ("3", 3, 3), ("4-5", 4, 5), ("6-10", 6, 10),
                      ("11+", 11, None)]


@dataclass
class SegmentationResult:
    """What ``segment_customers`` returns.

    assignments    customer_id, segment_name, segment_rank (0 = most valuable); one row per
                   customer, in the input's row order
    profiles       one row per segment, segment_rank order (see ``segment_profiles``)
    k_selection    JSON-ready list of {"k", "silhouette", "stability", "eligible", "chosen"}
                   (plain int/float/bool, rounded to 4 decimals, no NaN)
    n_clusters     the number of k-means clusters fitted (k); the number of named segments is
                   ``len(profiles)``
    typical_interval_days  I of the naming rules
    rfm_grid       recency bin x purchase-days bin cells: recency_bin, purchase_days_bin,
                   customers, revenue, mean_monetary (NaN for empty cells)
    profile_index  segment_name, segment_rank, then segment mean / overall mean of each
                   PROFILE_INDEX_FEATURES column
    thresholds     the rule layer's thresholds (``RuleThresholds``)
    clusters       one row per k-means cluster in value order (``cluster`` 0 = highest mean
                   spend): label, customers, mean_monetary_total, mean_purchase_days,
                   median_recency_days, established_active_share, champion_cluster, then one
                   column per segment name with the cluster's customers in it
    cluster_of_customer  each assignments row's ``cluster`` (int64 array)

    For callers of the former API, it unpacks as ``assignments, profiles = result``.
    """

    assignments: pd.DataFrame
    profiles: pd.DataFrame
    k_selection: list[dict]
    n_clusters: int
    typical_interval_days: float
    rfm_grid: pd.DataFrame
    profile_index: pd.DataFrame
    thresholds: RuleThresholds | None = None
    clusters: pd.DataFrame | None = None
    cluster_of_customer: np.ndarray | None = None

    def __iter__(self):
        return iter((self.assignments, self.profiles))

    def segment_rules(self) -> list[dict]:
        """Every rule of the vocabulary, in SEGMENT_NAMES order, with its customers this run.

        {"segment_name", "segment_rank" (None when empty), "recency_status", "rule",
        "recency_days_min", "recency_days_max" (None: open), "customers", "customer_share"}.
        """
        thresholds = self.thresholds or RuleThresholds(self.typical_interval_days, 0.0)
        champion = None
        if self.clusters is not None and self.clusters["champion_cluster"].any():
            champion = self.clusters[self.clusters["champion_cluster"]].iloc[0].to_dict()
        rows = {row.segment_name: row for row in self.profiles.itertuples()}
        out = []
        for name in SEGMENT_NAMES:
            row = rows.get(name)
            out.append({
                "segment_name": name,
                "segment_rank": int(row.segment_rank) if row is not None else None,
                **segment_rule(name, thresholds, champion),
                "customers": int(row.customers) if row is not None else 0,
                "customer_share": (_plain(round(float(row.customer_share), 4))
                                   if row is not None else 0.0),
            })
        return out

    def summary(self) -> dict:
        """A JSON-ready digest for the run summary (plain Python values; None for missing)."""
        rules = self.segment_rules()
        total = int(self.profiles["customers"].sum())
        clusters = [] if self.clusters is None else [
            {"cluster": int(row["cluster"]), "customers": int(row["customers"]),
             "mean_monetary_total": _plain(round(float(row["mean_monetary_total"]), 2)),
             "mean_purchase_days": _plain(round(float(row["mean_purchase_days"]), 2)),
             "median_recency_days": _plain(float(row["median_recency_days"])),
             "champion_cluster": bool(row["champion_cluster"]),
             "segments": {name: int(row[name]) for name in SEGMENT_NAMES if row[name]}}
            for _, row in self.clusters.iterrows()]
        return {
            "n_clusters": int(self.n_clusters),
            "n_segments": int(len(self.profiles)),
            "typical_interval_days": _plain(self.typical_interval_days),
            "k_selection": [dict(row) for row in self.k_selection],
            "segments": {
                row.segment_name: {
                    "segment_rank": int(row.segment_rank),
                    "customers": int(row.customers),
                    "revenue_share": _plain(round(float(row.revenue_share), 4)),
                }
                for row in self.profiles.itertuples()
            },
            "rule_thresholds": (self.thresholds.summary() if self.thresholds is not None
                                else None),
            "segment_rules": rules,
            "max_segment_share": MAX_SEGMENT_SHARE,
            "large_segments": [
                {key: rule[key] for key in ("segment_name", "customers", "customer_share",
                                            "rule")}
                for rule in rules if rule["customers"] > MAX_SEGMENT_SHARE * total],
            "clusters": clusters,
            "rfm_grid": _records(self.rfm_grid),
            "profile_index": _records(self.profile_index),
        }


def _plain(value):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) else round(value, 4)
    return str(value)


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: _plain(v) for k, v in zip(frame.columns, row)}
            for row in frame.itertuples(index=False, name=None)]


# ---------------------------------------------------------------------------------------------
# Inputs

def _sorted_features(features: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Features sorted by customer_id, and the permutation used (None if already sorted)."""
    missing = [c for c in ["customer_id", *FEATURE_COLUMNS] if c not in features.columns]
    if missing:
        raise ValueError(f"features lack column(s) {missing}: segments need the "
                         "customer_features table")
    ids = features["customer_id"].astype("str")
    if ids.isna().any():
        raise ValueError("features have a missing customer_id")
    if not ids.is_unique:
        raise ValueError("features have duplicate customer_id values: one row per customer")
    features = features.reset_index(drop=True)
    if ids.is_monotonic_increasing:
        return features, None
    order = np.asarray(ids.argsort(kind="stable"), dtype=np.int64)
    return features.iloc[order].reset_index(drop=True), order


def _clustering_values(features: pd.DataFrame, inputs=SEGMENT_INPUTS,
                       log_inputs=LOG_INPUTS) -> np.ndarray:
    """The clustering inputs, log1p-transformed where documented (one row per customer).

    Row by row: each value depends on its own customer only, so a fit and a score of the
    same customer compute the same bits whatever else is in the batch.
    """
    values = features[list(inputs)].to_numpy(dtype=np.float64, copy=True)
    if np.isnan(values).any():
        raise ValueError(f"{list(inputs)} must not be missing")
    for j, name in enumerate(inputs):
        if name in log_inputs:
            # A log with refunds can give a customer a net-negative total: for clustering,
            # that is "spent nothing" (log1p is undefined below -1).
            values[:, j] = np.log1p(np.clip(values[:, j], 0.0, None))
    return values


def _standardization(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard deviation) of each column; a constant column keeps scale 1."""
    center = values.mean(axis=0)
    scale = values.std(axis=0)
    scale[scale == 0] = 1.0
    return center, scale


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of each row's nearest centroid (squared Euclidean; ties: the lower index).

    The distances are summed column by column with elementwise operations, not a matrix
    product: a BLAS product may order its sums differently for different batch shapes, and a
    customer's cluster must not depend on the batch it is scored in.
    """
    x = np.asarray(x, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    if not len(centroids):
        raise ValueError("no centroids to assign customers to")
    distances = np.zeros((len(x), len(centroids)), dtype=np.float64)
    for j in range(x.shape[1]):
        difference = x[:, j, None] - centroids[None, :, j]
        distances += difference * difference
    return np.argmin(distances, axis=1).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# k selection

def _n_distinct(x: np.ndarray, limit: int) -> int:
    """Number of distinct rows of ``x``, counted up to ``limit`` (enough to bound k)."""
    return min(len(np.unique(x, axis=0)), limit)


def _fits(sample: np.ndarray, k: int, random_state: int, seeds: int):
    """``seeds`` single-start k-means fits; returns (labelings, lowest-inertia model)."""
    models = [KMeans(n_clusters=k, init="k-means++", n_init=1, random_state=random_state + s)
              .fit(sample) for s in range(seeds)]
    best = min(range(seeds), key=lambda s: (models[s].inertia_, s))
    return [m.labels_ for m in models], models[best]


def _stability(labelings: list[np.ndarray]) -> float:
    """Mean adjusted Rand index over every pair of labelings (1.0 for a single one)."""
    pairs = list(itertools.combinations(labelings, 2))
    return float(np.mean([adjusted_rand_score(a, b) for a, b in pairs])) if pairs else 1.0


def silhouettes(x: np.ndarray, labelings: list[np.ndarray], chunk_rows: int = 1000
                ) -> list[float]:
    """Mean silhouette coefficient (Euclidean) of each labeling of the same points ``x``.

    The textbook definition (Rousseeuw 1987, as ``sklearn.metrics.silhouette_score``):
    a(i) = mean distance from i to the other members of its cluster, b(i) = the lowest mean
    distance from i to the members of another cluster, s(i) = (b - a) / max(a, b), 0 for a
    member of a one-point cluster; the score is the mean of s(i). A labeling with fewer than
    2 or more than n - 1 clusters scores 0.

    The pairwise distances do not depend on the labeling, so each chunk of distance rows is
    computed once and reduced against every labeling in one matrix product (per-cluster
    distance sums): k = 2..8 costs about what one sklearn call does.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = len(x)
    dense = [np.unique(labels, return_inverse=True)[1].astype(np.int64) for labels in labelings]
    ks = [int(labels.max()) + 1 if n else 0 for labels in dense]
    offsets = np.r_[0, np.cumsum(ks)].astype(np.int64)
    # One indicator column per (labeling, cluster): distances @ indicators = distance sums.
    indicators = np.zeros((n, int(offsets[-1])), dtype=np.float64)
    rows = np.arange(n)
    for j, labels in enumerate(dense):
        indicators[rows, offsets[j] + labels] = 1.0
    sizes = indicators.sum(axis=0)
    squared = np.einsum("ij,ij->i", x, x)
    totals = np.zeros(len(dense), dtype=np.float64)
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        d = x[start:stop] @ x.T  # |u - v|^2 = |u|^2 + |v|^2 - 2 u.v, built in place
        d *= -2.0
        d += squared[start:stop, None]
        d += squared[None, :]
        np.maximum(d, 0.0, out=d)
        np.sqrt(d, out=d)
        d[np.arange(stop - start), np.arange(start, stop)] = 0.0  # exact self-distance
        sums = d @ indicators
        local = np.arange(stop - start)
        for j, labels in enumerate(dense):
            if not 2 <= ks[j] <= n - 1:
                continue
            block = sums[:, offsets[j]:offsets[j + 1]]
            counts = sizes[offsets[j]:offsets[j + 1]]
            own = labels[start:stop]
            own_size = counts[own]
            a = block[local, own] / np.maximum(own_size - 1.0, 1.0)
            means = block / counts
            means[local, own] = np.inf
            b = means.min(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                s = np.where(own_size > 1, (b - a) / np.maximum(a, b), 0.0)
            totals[j] += float(np.nan_to_num(s, nan=0.0).sum())
    return [float(t / n) if n and 2 <= k <= n - 1 else 0.0 for t, k in zip(totals, ks)]


def _choose_k(rows: list[dict]) -> int:
    candidates = [r for r in rows if r["k"] >= MIN_DEFAULT_K]
    stable = [r for r in candidates if r["stability"] >= MIN_STABILITY]
    if stable:
        return min(stable, key=lambda r: (-r["silhouette"], r["k"]))["k"]
    if candidates:
        return min(candidates, key=lambda r: (-r["stability"], -r["silhouette"], r["k"]))["k"]
    return min(rows, key=lambda r: r["k"])["k"]


# ---------------------------------------------------------------------------------------------
# The rule layer: thresholds, the champion cluster, one name per customer

def typical_interval_days(features: pd.DataFrame) -> float:
    """I of the naming rules: median avg_days_between_purchases over repeat buyers."""
    intervals = features["avg_days_between_purchases"].to_numpy(dtype=np.float64)
    intervals = intervals[~np.isnan(intervals)]
    return float(np.median(intervals)) if len(intervals) else DEFAULT_INTERVAL_DAYS


@dataclass(frozen=True)
class RuleThresholds:
    """The data-derived thresholds of the naming rules (see the module docstring).

    interval_days   I, the typical purchase interval
    high_spend      the mean monetary_total over all customers: "high spend" is >= it
    Day counts are whole days, so ``recency_days <= active_days`` is the same test as
    ``recency_days <= ACTIVE_INTERVALS * I``.
    """

    interval_days: float
    high_spend: float

    @property
    def active_days(self) -> int:
        """Last purchase within this many days: active (2 I, rounded down)."""
        return int(math.floor(ACTIVE_INTERVALS * self.interval_days))

    @property
    def lapsed_days(self) -> int:
        """No purchase in this many days: lapsed (4 I, rounded down)."""
        return int(math.floor(LAPSED_INTERVALS * self.interval_days))

    @classmethod
    def of(cls, features: pd.DataFrame) -> "RuleThresholds":
        monetary = features["monetary_total"].to_numpy(dtype=np.float64)
        return cls(interval_days=typical_interval_days(features),
                   high_spend=float(monetary.mean()) if len(monetary) else 0.0)

    def summary(self) -> dict:
        return {"typical_interval_days": _plain(self.interval_days),
                "active_within_days": self.active_days,
                "lapsed_after_days": self.lapsed_days,
                "high_spend_from": _plain(round(self.high_spend, 2))}


def _rule_inputs(customers: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """recency_days, purchase_days, tenure_days, monetary_total as float arrays, checked."""
    columns = ["recency_days", "purchase_days", "tenure_days", "monetary_total"]
    arrays = tuple(customers[c].to_numpy(dtype=np.float64) for c in columns)
    for name, values in zip(columns, arrays):
        if np.isnan(values).any():
            raise ValueError(f"{name} must not be missing")
    recency, purchase_days, tenure, _ = arrays
    if (recency > tenure).any() or (purchase_days < 1).any():
        raise ValueError("features are inconsistent: every customer needs purchase_days >= 1 "
                         "and recency_days <= tenure_days (the last purchase is not before the "
                         "first)")
    return arrays


def segment_rule_masks(customers: pd.DataFrame, in_champion_cluster: np.ndarray,
                       thresholds: RuleThresholds) -> dict[str, np.ndarray]:
    """One boolean mask per name of SEGMENT_NAMES: the customers that meet its rule.

    ``customers`` has recency_days, purchase_days, tenure_days and monetary_total (one row per
    customer); ``in_champion_cluster`` marks the members of the champion cluster. Each rule is a
    complete condition of its own (the RULES table of the module docstring), not "the first
    rule that matches", and together they are a partition: every customer meets exactly one.
    """
    recency, purchase_days, tenure, monetary = _rule_inputs(customers)
    champion = np.asarray(in_champion_cluster, dtype=bool)
    a, lapsed_after = thresholds.active_days, thresholds.lapsed_days
    active = recency <= a
    lapsing = (recency > a) & (recency <= lapsed_after)
    lapsed = recency > lapsed_after
    new = tenure <= a
    established = active & ~new
    high = monetary >= thresholds.high_spend
    one_time = purchase_days == 1
    return {
        CHAMPIONS: established & champion,
        NEED_ATTENTION: lapsing & high,
        LOYAL: established & ~champion,
        NEW: new,
        AT_RISK: lapsed & ~one_time & high,
        ABOUT_TO_SLEEP: lapsing & ~high,
        HIBERNATING: lapsed & ~one_time & ~high,
        LOST: lapsed & one_time,
    }


def name_customers(customers: pd.DataFrame, in_champion_cluster: np.ndarray,
                   thresholds: RuleThresholds) -> np.ndarray:
    """Each customer's segment as an index into SEGMENT_NAMES (the rule it meets)."""
    masks = segment_rule_masks(customers, in_champion_cluster, thresholds)
    met = np.zeros(len(customers), dtype=np.int64)
    for mask in masks.values():
        met += mask
    if (met != 1).any():  # the rules are a partition by construction; this guards edits
        raise AssertionError("segment rules are not a partition")
    return np.select([masks[name] for name in SEGMENT_NAMES],
                     np.arange(len(SEGMENT_NAMES), dtype=np.int64)).astype(np.int64)


def segment_rule(name: str, thresholds: RuleThresholds, champion: dict | None = None) -> dict:
    """The rule of segment ``name`` in plain words, with its recency range in days.

    ``champion``: the champion cluster's row of the cluster table (for the Champions rule).
    Returns {"rule", "recency_status", "recency_days_min", "recency_days_max"} (None: open).
    """
    a, l_days = thresholds.active_days, thresholds.lapsed_days
    spend = f"{thresholds.high_spend:,.2f}"
    if champion is not None:
        cluster = (f"in the champion cluster (k-means cluster {champion['cluster']}, the most "
                   "valuable with at least "
                   f"{CHAMPION_CLUSTER_MIN_ACTIVE_SHARE:.0%} such customers: mean spend "
                   f"{champion['mean_monetary_total']:,.2f}, "
                   f"{champion['mean_purchase_days']:.1f} purchase days on average)")
    else:
        cluster = "in the champion cluster (none in this run)"
    established = f"last purchase within the last {a} days, first purchase more than {a} days ago"
    lapsing = f"last purchase {a + 1} to {l_days} days ago"
    lapsed = f"no purchase in the last {l_days} days"
    rules = {
        CHAMPIONS: (f"{established}, {cluster}", 1, a),
        NEED_ATTENTION: (f"{lapsing}, total spend at least {spend} (the mean customer's)",
                         a + 1, l_days),
        LOYAL: (f"{established} (so 2 or more purchase days), not in the champion cluster",
                1, a),
        NEW: (f"first purchase within the last {a} days", 1, a),
        AT_RISK: (f"{lapsed}, 2 or more purchase days, total spend at least {spend} (the mean "
                  "customer's)", l_days + 1, None),
        ABOUT_TO_SLEEP: (f"{lapsing}, total spend below {spend}", a + 1, l_days),
        HIBERNATING: (f"{lapsed}, 2 or more purchase days, total spend below {spend}",
                      l_days + 1, None),
        LOST: (f"a single purchase day, more than {l_days} days ago", l_days + 1, None),
    }
    text, low, high = rules[name]
    return {"rule": text[0].upper() + text[1:], "recency_status": STATUS_OF_SEGMENT[name],
            "recency_days_min": low, "recency_days_max": high}


FIT_FORMAT = 1
SEGMENT_TABLE_COLUMNS = ["customer_id", "segment_name", "segment_rank"]
# What scoring reads of a customer_features row (the clustering inputs and the rule inputs).
SCORE_COLUMNS = ["customer_id", "recency_days", "purchase_days", "tenure_days", "monetary_total"]


@dataclass(frozen=True, eq=False)
class SegmentFit:
    """What ``fit_segments`` learns from the customers it sees: all ``score_segments`` needs.

    inputs, log_inputs  the clustering inputs, and those that are log1p-transformed
    center, scale       per input, the mean and standard deviation (0 -> 1) of the transformed
                        values over the fitted customers: the standardization
    centroids           k-means centroids in the standardized space, one row per k-means label
    cluster_of_label    per k-means label, its cluster number in value order (0 = highest mean
                        monetary_total of the fitted customers; see ``_value_order``)
    champion_cluster    the champion cluster's number, None when no cluster qualified
    thresholds          the rule layer's RuleThresholds (I and M* of the fitted customers)
    segment_names       the segments the fitted customers fall in, in rank order: a segment's
                        segment_rank is its position here (see ``segment_ranks``)
    k_selection         the k-selection table (as ``SegmentationResult.k_selection``)
    fitted_customers    how many customers the fit saw; random_state: the seed it used

    ``to_dict()`` is JSON-ready (floats as Python floats, arrays as lists) and
    ``SegmentFit.from_dict(json.loads(json.dumps(fit.to_dict())))`` scores identically: JSON
    writes a float's shortest exact repr.
    """

    inputs: tuple[str, ...]
    log_inputs: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    centroids: np.ndarray
    cluster_of_label: tuple[int, ...]
    champion_cluster: int | None
    thresholds: RuleThresholds
    segment_names: tuple[str, ...]
    k_selection: list[dict]
    fitted_customers: int
    random_state: int

    @property
    def n_clusters(self) -> int:
        return len(self.centroids)

    @property
    def label_of_cluster(self) -> list[int]:
        """Per cluster number (value order), its k-means label."""
        labels = [0] * self.n_clusters
        for label, cluster in enumerate(self.cluster_of_label):
            labels[cluster] = label
        return labels

    def segment_ranks(self) -> dict[str, int]:
        """segment_rank of every vocabulary name.

        A fitted segment's rank is its position in ``segment_names``. A segment the fitted
        customers did not fall in (a sample can miss a rare one) ranks after all of them, in
        vocabulary order, so every customer a score names has a rank and the ranks of the fitted
        segments never depend on what else is scored.
        """
        unseen = [name for name in SEGMENT_NAMES if name not in self.segment_names]
        return {name: rank for rank, name in enumerate([*self.segment_names, *unseen])}

    def to_dict(self) -> dict:
        return {
            "model": "segments",
            "format": FIT_FORMAT,
            "inputs": list(self.inputs),
            "log_inputs": list(self.log_inputs),
            "center": [float(v) for v in self.center],
            "scale": [float(v) for v in self.scale],
            "centroids": [[float(v) for v in row] for row in self.centroids],
            "cluster_of_label": [int(c) for c in self.cluster_of_label],
            "champion_cluster": (None if self.champion_cluster is None
                                 else int(self.champion_cluster)),
            "thresholds": {"interval_days": float(self.thresholds.interval_days),
                           "high_spend": float(self.thresholds.high_spend)},
            "segment_names": list(self.segment_names),
            "k_selection": [dict(row) for row in self.k_selection],
            "fitted_customers": int(self.fitted_customers),
            "random_state": int(self.random_state),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SegmentFit":
        """The fit ``to_dict`` wrote; ValueError when it is not one this code can score with."""
        if data.get("model") != "segments" or data.get("format") != FIT_FORMAT:
            raise ValueError(f"not a segment fit of format {FIT_FORMAT}: "
                             f"model={data.get('model')!r}, format={data.get('format')!r}")
        inputs = tuple(str(c) for c in data["inputs"])
        log_inputs = tuple(str(c) for c in data["log_inputs"])
        center = np.asarray(data["center"], dtype=np.float64)
        scale = np.asarray(data["scale"], dtype=np.float64)
        centroids = np.asarray(data["centroids"], dtype=np.float64).reshape(-1, len(inputs))
        k = len(centroids)
        cluster_of_label = tuple(int(c) for c in data["cluster_of_label"])
        champion = data["champion_cluster"]
        names = tuple(str(n) for n in data["segment_names"])
        if (not set(log_inputs) <= set(inputs) or center.shape != (len(inputs),)
                or scale.shape != (len(inputs),) or k == 0
                or sorted(cluster_of_label) != list(range(k))
                or (champion is not None and not 0 <= int(champion) < k)
                or len(set(names)) != len(names) or not set(names) <= set(SEGMENT_NAMES)
                or not set(inputs) <= set(FEATURE_COLUMNS)):
            raise ValueError("segment fit is inconsistent: inputs, center, scale, centroids, "
                             "cluster_of_label, champion_cluster or segment_names disagree")
        thresholds = data["thresholds"]
        return cls(
            inputs=inputs, log_inputs=log_inputs, center=center, scale=scale,
            centroids=centroids, cluster_of_label=cluster_of_label,
            champion_cluster=None if champion is None else int(champion),
            thresholds=RuleThresholds(interval_days=float(thresholds["interval_days"]),
                                      high_spend=float(thresholds["high_spend"])),
            segment_names=names,
            k_selection=[dict(row) for row in data["k_selection"]],
            fitted_customers=int(data["fitted_customers"]),
            random_state=int(data["random_state"]),
        )


def _cluster_stats(features: pd.DataFrame, groups: np.ndarray, k: int,
                   thresholds: RuleThresholds) -> pd.DataFrame:
    """Per group 0..k-1 (a k-means label or a cluster), in original units.

    customers, mean_monetary_total, mean_purchase_days, median_recency_days and
    established_active_share (the share whose last purchase is within 2 I days and first
    purchase before that); a group without customers has 0 customers and NaN statistics.
    """
    recency = features["recency_days"].to_numpy(dtype=np.float64)
    tenure = features["tenure_days"].to_numpy(dtype=np.float64)
    a = thresholds.active_days
    frame = pd.DataFrame({
        "group": np.asarray(groups, dtype=np.int64),
        "recency_days": recency,
        "purchase_days": features["purchase_days"].to_numpy(dtype=np.float64),
        "monetary_total": features["monetary_total"].to_numpy(dtype=np.float64),
        "established_active": ((recency <= a) & (tenure > a)).astype(np.float64),
    })
    stats = frame.groupby("group").agg(
        customers=("group", "size"),
        mean_monetary_total=("monetary_total", "mean"),
        mean_purchase_days=("purchase_days", "mean"),
        median_recency_days=("recency_days", "median"),
        established_active_share=("established_active", "mean"),
    ).reindex(range(k))
    stats["customers"] = stats["customers"].fillna(0).astype(np.int64)
    return stats


def _value_order(stats: pd.DataFrame) -> np.ndarray:
    """The k-means labels from most to least valuable (the fit's cluster numbering).

    Highest mean monetary_total first; ties: higher mean purchase_days, lower median
    recency_days, larger size, then k-means' label.
    """
    k = len(stats)
    return np.lexsort((np.arange(k), -stats["customers"].to_numpy(),
                       stats["median_recency_days"].to_numpy(),
                       -stats["mean_purchase_days"].to_numpy(),
                       -stats["mean_monetary_total"].to_numpy())).astype(np.int64)


def _champion_cluster(stats_in_value_order: pd.DataFrame) -> int | None:
    """The most valuable cluster with enough established actives (None when none has)."""
    eligible = (stats_in_value_order["established_active_share"].to_numpy()
                >= CHAMPION_CLUSTER_MIN_ACTIVE_SHARE)
    return int(np.flatnonzero(eligible)[0]) if eligible.any() else None


def cluster_table(features: pd.DataFrame, cluster_of_customer: np.ndarray, codes: np.ndarray,
                  fit: SegmentFit) -> pd.DataFrame:
    """Per cluster of the fit, over the given customers: how the rule layer split it.

    Rows in the fit's value order (``cluster`` 0 = most valuable, as fitted); ``label`` is
    k-means' own number, ``champion_cluster`` the fit's choice; the statistics (see
    ``_cluster_stats``) and one column per SEGMENT_NAMES name (customers of the cluster in it)
    are over ``features``, whose rows ``cluster_of_customer`` and ``codes`` (index into
    SEGMENT_NAMES) describe. On the customers the fit saw, the order is the order of these
    statistics.
    """
    k = fit.n_clusters
    clusters = np.asarray(cluster_of_customer, dtype=np.int64)
    stats = _cluster_stats(features, clusters, k, fit.thresholds).reset_index(drop=True)
    split = np.bincount(clusters * len(SEGMENT_NAMES) + np.asarray(codes, dtype=np.int64),
                        minlength=k * len(SEGMENT_NAMES)).reshape(k, len(SEGMENT_NAMES))
    return cluster_table_from_stats(stats, split, fit)


def cluster_table_from_stats(stats: pd.DataFrame, split: np.ndarray, fit: SegmentFit) -> pd.DataFrame:
    """``cluster_table`` from its aggregates: ``stats`` one row per cluster 0..k-1 (the columns
    of ``_cluster_stats``, NaN statistics for an empty cluster) and ``split`` the k x
    len(SEGMENT_NAMES) customers of each cluster in each segment (the Score job's group-by on
    the Spark path)."""
    k = fit.n_clusters
    stats = stats.reset_index(drop=True).copy()
    stats["customers"] = stats["customers"].fillna(0).astype(np.int64)
    stats.insert(0, "label", np.asarray(fit.label_of_cluster, dtype=np.int64))
    stats.insert(0, "cluster", np.arange(k, dtype=np.int64))
    stats["champion_cluster"] = stats["cluster"] == (
        -1 if fit.champion_cluster is None else fit.champion_cluster)
    split = np.asarray(split, dtype=np.int64).reshape(k, len(SEGMENT_NAMES))
    for j, name in enumerate(SEGMENT_NAMES):
        stats[name] = split[:, j]
    return stats


CLUSTER_STATISTICS = ["customers", "mean_monetary_total", "mean_purchase_days", "median_recency_days",
                      "established_active_share"]


# ---------------------------------------------------------------------------------------------
# Profiles and chart data

def segment_profiles(features: pd.DataFrame, segment_ranks: np.ndarray,
                     ordered_names: list[str]) -> pd.DataFrame:
    """One row per segment, rank order: sizes, revenue, mean/median of every feature.

    ``segment_ranks`` gives each customer's segment as an index into ``ordered_names``.
    Columns: segment_name, segment_rank, customers, customer_share, revenue_cents, revenue,
    revenue_share, then mean_<f>, median_<f> for f in PROFILE_FEATURES (NaN skipped).
    """
    n = len(features)
    k = len(ordered_names)
    ranks = np.asarray(segment_ranks, dtype=np.int64)
    # Revenue in integer cents so the segments add up to the total exactly.
    cents = np.round(features["monetary_total"].to_numpy(dtype=np.float64) * 100).astype(np.int64)
    customers = np.bincount(ranks, minlength=k).astype(np.int64)
    revenue_cents = np.bincount(ranks, weights=cents, minlength=k)
    # bincount sums in float64: exact for integer cents below 2**53 (90 trillion dollars).
    revenue_cents = np.round(revenue_cents).astype(np.int64)
    total_cents = int(cents.sum())

    frame = features[PROFILE_FEATURES].astype(np.float64)
    frame["_rank"] = ranks
    grouped = frame.groupby("_rank", sort=True)
    means = grouped[PROFILE_FEATURES].mean().reindex(range(k))
    medians = grouped[PROFILE_FEATURES].median().reindex(range(k))

    profiles = pd.DataFrame({
        "segment_name": pd.Series(ordered_names, dtype="str"),
        "segment_rank": np.arange(k, dtype=np.int64),
        "customers": customers,
        "customer_share": customers / n if n else np.full(k, np.nan),
        "revenue_cents": revenue_cents,
        "revenue": revenue_cents / 100.0,
        "revenue_share": revenue_cents / total_cents if total_cents else np.full(k, np.nan),
    })
    for f in PROFILE_FEATURES:
        profiles[f"mean_{f}"] = means[f].to_numpy()
        profiles[f"median_{f}"] = medians[f].to_numpy()
    return profiles


def bin_codes(values: np.ndarray, bins) -> np.ndarray:
    """Index of each value's bin in RECENCY_BINS or PURCHASE_DAYS_BINS (below the first: 0)."""
    lows = np.array([low for _, low, _ in bins], dtype=np.float64)
    return np.clip(np.searchsorted(lows, values, side="right") - 1, 0, len(bins) - 1)


def rfm_grid(features: pd.DataFrame) -> pd.DataFrame:
    """Customers, revenue and mean monetary_total per (recency bin, purchase-days bin) cell.

    Every cell of RECENCY_BINS x PURCHASE_DAYS_BINS is listed (recency-major order); values
    below the first bin fall in it.
    """
    cell = sample_stratum(features)
    size = len(RECENCY_BINS) * len(PURCHASE_DAYS_BINS)
    cents = np.round(features["monetary_total"].to_numpy(dtype=np.float64) * 100)
    customers = np.bincount(cell, minlength=size).astype(np.int64)
    revenue_cents = np.round(np.bincount(cell, weights=cents, minlength=size)).astype(np.int64)
    return rfm_grid_from_cells(customers, revenue_cents)


def rfm_grid_from_cells(customers, revenue_cents) -> pd.DataFrame:
    """``rfm_grid`` from each cell's customers and revenue in whole cents (36 each, in
    ``sample_stratum``'s cell order: the Score job's group-by on the Spark path)."""
    n_f = len(PURCHASE_DAYS_BINS)
    customers = np.asarray(customers, dtype=np.int64)
    revenue_cents = np.asarray(revenue_cents, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_monetary = np.where(customers > 0, revenue_cents / 100.0 / customers, np.nan)
    return pd.DataFrame({
        "recency_bin": pd.Series(np.repeat([b[0] for b in RECENCY_BINS], n_f), dtype="str"),
        "purchase_days_bin": pd.Series(np.tile([b[0] for b in PURCHASE_DAYS_BINS],
                                               len(RECENCY_BINS)), dtype="str"),
        "customers": customers,
        "revenue": revenue_cents / 100.0,
        "mean_monetary": mean_monetary,
    })


def _profile_index(features: pd.DataFrame, profiles: pd.DataFrame) -> pd.DataFrame:
    overall = {}
    for f in PROFILE_INDEX_FEATURES:
        values = features[f].to_numpy(dtype=np.float64)
        known = values[~np.isnan(values)]  # avg_days_between_purchases: repeat buyers only
        overall[f] = float(known.mean()) if len(known) else np.nan
    return profile_index_from_means(overall, profiles)


def profile_index_from_means(overall: dict, profiles: pd.DataFrame) -> pd.DataFrame:
    """Each segment's mean of every PROFILE_INDEX_FEATURES column over ``overall``, the mean of
    all customers (of those with a value; NaN when none has one)."""
    out = profiles[["segment_name", "segment_rank"]].copy()
    for f in PROFILE_INDEX_FEATURES:
        mean = overall.get(f)
        mean = np.nan if mean is None else float(mean)
        means = profiles[f"mean_{f}"].to_numpy(dtype=np.float64)
        out[f] = means / mean if mean else np.nan  # NaN when overall is 0 or unknown
    return out


# ---------------------------------------------------------------------------------------------
# Fitting samples

def sample_stratum(features: pd.DataFrame) -> np.ndarray:
    """Each customer's stratum for a fitting sample: its rfm_grid cell (0..35), row by row.

    Recency and purchase days are what the rule layer and the clusters split on, so a sample
    that keeps every cell's share keeps the segments' shares, and keeps the small cells
    (frequent recent buyers, the Champions' core) that a uniform sample thins out.
    """
    r = bin_codes(features["recency_days"].to_numpy(dtype=np.float64), RECENCY_BINS)
    f = bin_codes(features["purchase_days"].to_numpy(dtype=np.float64), PURCHASE_DAYS_BINS)
    return (r * len(PURCHASE_DAYS_BINS) + f).astype(np.int64)


def stratified_sample(features: pd.DataFrame, size: int, random_state: int = 0) -> pd.DataFrame:
    """A sample of about ``size`` customers to fit on, stratified by ``sample_stratum``.

    Each non-empty stratum gives round(size x its share) customers, at least one (so the
    sample holds size plus at most one per stratum: 36), drawn without replacement with
    ``random_state``; all customers when there are no more than ``size``. Rows in customer_id
    order, so the same customers give the same sample whatever the input row order.
    """
    ordered, _ = _sorted_features(features)
    n = len(ordered)
    if n <= size:
        return ordered
    strata = sample_stratum(ordered)
    rng = np.random.default_rng(random_state)
    chosen = []
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        take = min(len(members), max(1, int(round(size * len(members) / n))))
        chosen.append(rng.choice(members, size=take, replace=False))
    return ordered.iloc[np.sort(np.concatenate(chosen))].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Fit, score, aggregate: the entry points

def fit_segments(features: pd.DataFrame, n_clusters: int | None = None,
                 random_state: int = 0, *, sample_size: int = SAMPLE_SIZE,
                 k_range=K_RANGE, stability_seeds: int = STABILITY_SEEDS) -> SegmentFit:
    """Learn the segmentation from a customer_features table (all customers or a sample).

    Learns the standardization, k (table and choice), the k-means centroids, the clusters'
    value order and the champion cluster, the rule thresholds and the segment ranks (see the
    module docstring); ``score_segments`` applies them to any customer.
    n_clusters: None chooses k by the documented criterion; an int >= 2 forces it.
    random_state: seeds the k-selection sample and every k-means start.
    sample_size, k_range, stability_seeds: the k-selection settings (defaults documented).
    Raises ValueError for missing columns or values, duplicate customer ids, or fewer
    distinct customers than segments; InsufficientData when there is no customer.
    """
    if n_clusters is not None and n_clusters < 2:
        raise ValueError(f"n_clusters must be >= 2 (or None to choose), got {n_clusters}")
    ordered, _ = _sorted_features(features)
    n = len(ordered)
    if n == 0:
        raise InsufficientData("no customers to segment")
    values = _clustering_values(ordered)
    center, scale = _standardization(values)
    x = (values - center) / scale

    if n > sample_size:
        rng = np.random.default_rng(random_state)
        sample = x[np.sort(rng.choice(n, size=sample_size, replace=False))]
    else:
        sample = x
    max_k = _n_distinct(sample, limit=max([*k_range, n_clusters or 0], default=0) + 1)
    if n_clusters is not None and n_clusters > max_k:
        raise ValueError(f"{n} customers ({max_k} distinct in the sample) cannot be split into "
                         f"{n_clusters} segments")

    ks = sorted({k for k in k_range if 2 <= k <= max_k and k <= len(sample) - 1}
                | ({n_clusters} if n_clusters is not None else set()))
    rows, models, best_labels = [], {}, []
    # Single-threaded: on 10,000 points thread hand-offs cost more than they save, and on a
    # busy 2-core host OpenMP/OpenBLAS spin-waiting made these fits up to 40x slower.
    with threadpool_limits(limits=1):
        for k in ks:
            labelings, models[k] = _fits(sample, k, random_state, stability_seeds)
            rows.append({"k": int(k), "stability": round(_stability(labelings), 4)})
            best_labels.append(models[k].labels_)
        for row, score in zip(rows, silhouettes(sample, best_labels)):
            row["silhouette"] = round(score, 4)
    rows = [{"k": r["k"], "silhouette": r["silhouette"], "stability": r["stability"]}
            for r in rows]
    if n_clusters is None:
        if not rows:
            raise InsufficientData(f"{n} customers ({max_k} distinct) cannot be split into segments")
        k = _choose_k(rows)
    else:
        k = n_clusters
    for row in rows:
        row["eligible"] = bool(row["k"] >= MIN_DEFAULT_K and row["stability"] >= MIN_STABILITY)
        row["chosen"] = bool(row["k"] == k)

    # Refine the best sample fit on every fitted customer (a no-op when the sample is
    # everyone).
    final = KMeans(n_clusters=k, init=models[k].cluster_centers_, n_init=1,
                   random_state=random_state).fit(x)
    # Keep the centroids that have customers (k-means can leave one empty in degenerate data;
    # nobody is nearest to it, so dropping it moves no one).
    centroids = final.cluster_centers_[np.unique(final.labels_)]
    # The fitted customers' labels as scoring computes them (one implementation).
    labels = nearest_centroid(x, centroids)
    k = len(centroids)
    thresholds = RuleThresholds.of(ordered)
    stats = _cluster_stats(ordered, labels, k, thresholds)
    order = _value_order(stats)
    cluster_of_label = np.empty(k, dtype=np.int64)
    cluster_of_label[order] = np.arange(k)
    fit = SegmentFit(
        inputs=tuple(SEGMENT_INPUTS), log_inputs=tuple(LOG_INPUTS), center=center,
        scale=scale, centroids=np.array(centroids, dtype=np.float64),
        cluster_of_label=tuple(int(c) for c in cluster_of_label),
        champion_cluster=_champion_cluster(stats.iloc[order]), thresholds=thresholds,
        segment_names=(), k_selection=rows, fitted_customers=n,
        random_state=int(random_state))
    _, codes = _score_codes(ordered, fit)
    present = np.flatnonzero(np.bincount(codes, minlength=len(SEGMENT_NAMES)))
    return replace(fit, segment_names=tuple(SEGMENT_NAMES[c] for c in present))


def _score_codes(features: pd.DataFrame, fit: SegmentFit) -> tuple[np.ndarray, np.ndarray]:
    """(cluster number, index into SEGMENT_NAMES) of every row; row by row."""
    x = (_clustering_values(features, fit.inputs, fit.log_inputs) - fit.center) / fit.scale
    clusters = np.asarray(fit.cluster_of_label, dtype=np.int64)[
        nearest_centroid(x, fit.centroids)]
    champion = -1 if fit.champion_cluster is None else fit.champion_cluster
    return clusters, name_customers(features, clusters == champion, fit.thresholds)


def score_segments(features: pd.DataFrame, fit: SegmentFit, *,
                   with_cluster: bool = False) -> pd.DataFrame:
    """The customer_segments rows of a batch of customer_features rows, from a fit.

    Returns customer_id, segment_name, segment_rank, one row per input row, in the input's
    order (with ``with_cluster``, also ``cluster``: the fit's cluster number, what the cluster
    table groups by). Each row depends only on its own features and the fit, never on the rest
    of the batch: scoring the batches of any partition of the customers gives the rows of
    scoring them all. Needs SCORE_COLUMNS; raises ValueError for a missing column or value,
    inconsistent features (see ``name_customers``) or a customer_id twice in the batch.
    """
    missing = [c for c in dict.fromkeys([*SCORE_COLUMNS, *fit.inputs])
               if c not in features.columns]
    if missing:
        raise ValueError(f"features lack column(s) {missing}: scoring needs the "
                         "customer_features table")
    ids = features["customer_id"]
    if ids.isna().any():
        raise ValueError("features have a missing customer_id")
    if not ids.astype("str").is_unique:
        raise ValueError("features have duplicate customer_id values: one row per customer")
    clusters, codes = _score_codes(features, fit)
    ranks = fit.segment_ranks()
    names = np.asarray(SEGMENT_NAMES, dtype=object)[codes]
    rank_of_code = np.array([ranks[name] for name in SEGMENT_NAMES], dtype=np.int64)
    scored = pd.DataFrame({
        "customer_id": pd.Series(ids.to_numpy(), dtype="str"),
        "segment_name": pd.Series(names, dtype="str"),
        "segment_rank": rank_of_code[codes],
    })
    if with_cluster:
        scored["cluster"] = clusters.astype(np.int64)
    return scored


def segmentation_from_scores(features: pd.DataFrame, scored: pd.DataFrame,
                             fit: SegmentFit) -> SegmentationResult:
    """The run's segmentation (profiles, cluster table, chart data) from scored customers.

    ``scored``: ``score_segments(features, fit, with_cluster=True)`` of every customer of
    ``features``, in any row order (matched on customer_id). Assignments and
    cluster_of_customer keep ``scored``'s row order. Every aggregate is per segment, per
    cluster, per chart cell or over all customers, and only medians need more than sums and
    counts (see "Fit and score" in the module docstring).
    """
    ordered, _ = _sorted_features(features)
    missing = [c for c in [*SEGMENT_TABLE_COLUMNS, "cluster"] if c not in scored.columns]
    if missing:
        raise ValueError(f"scored rows lack column(s) {missing}: score with with_cluster=True")
    scored_ids = pd.Index(scored["customer_id"].astype("str"))
    position = scored_ids.get_indexer(ordered["customer_id"].astype("str"))
    if len(scored) != len(ordered) or not scored_ids.is_unique or (position < 0).any():
        raise ValueError("scored rows and features must hold the same customers, once each")
    aligned = scored.iloc[position]
    ranks = fit.segment_ranks()
    names_of_rank = {rank: name for name, rank in ranks.items()}
    segment_rank = aligned["segment_rank"].to_numpy(dtype=np.int64)
    segment_name = aligned["segment_name"].astype("str").to_numpy(dtype=object)
    if not (pd.Series(segment_name).map(ranks).to_numpy() == segment_rank).all():
        raise ValueError("scored rows' segment_rank disagrees with the fit's ranks")
    code_of_name = {name: code for code, name in enumerate(SEGMENT_NAMES)}
    codes = np.array([code_of_name[name] for name in segment_name], dtype=np.int64)

    # One row per segment with customers, in rank order; its rank is the fit's.
    present = np.unique(segment_rank)
    names = [names_of_rank[int(rank)] for rank in present]
    profiles = segment_profiles(ordered, np.searchsorted(present, segment_rank), names)
    profiles["segment_rank"] = present.astype(np.int64)
    profiles.insert(2, "recency_status",
                    pd.Series([STATUS_OF_SEGMENT[name] for name in names], dtype="str"))
    return SegmentationResult(
        assignments=scored[SEGMENT_TABLE_COLUMNS].reset_index(drop=True),
        profiles=profiles,
        k_selection=[dict(row) for row in fit.k_selection],
        n_clusters=fit.n_clusters,
        typical_interval_days=float(fit.thresholds.interval_days),
        rfm_grid=rfm_grid(ordered),
        profile_index=_profile_index(ordered, profiles),
        thresholds=fit.thresholds,
        clusters=cluster_table(ordered, aligned["cluster"].to_numpy(dtype=np.int64), codes,
                               fit),
        cluster_of_customer=scored["cluster"].to_numpy(dtype=np.int64),
    )


def segmentation_from_aggregates(fit: SegmentFit, profiles: pd.DataFrame, cell_customers,
                                 cell_revenue_cents, overall_means: dict, cluster_stats: pd.DataFrame,
                                 cluster_split) -> SegmentationResult:
    """The run's segmentation as ``segmentation_from_scores`` makes it, from aggregates over
    every scored customer instead of their rows (the Spark path: the Score job computes them).

    ``profiles``: the segment_profiles table (``segment_profiles`` with recency_status);
    ``cell_customers``, ``cell_revenue_cents``: per ``sample_stratum`` cell (see
    ``rfm_grid_from_cells``); ``overall_means``: every PROFILE_INDEX_FEATURES column's mean over
    all customers with a value; ``cluster_stats``, ``cluster_split``: see
    ``cluster_table_from_stats``. ``assignments`` is empty and ``cluster_of_customer`` None:
    the customers' rows stay in the table the job wrote."""
    profiles = profiles.sort_values("segment_rank").reset_index(drop=True)
    return SegmentationResult(
        assignments=pd.DataFrame({"customer_id": pd.Series(dtype="str"), "segment_name": pd.Series(dtype="str"),
                                  "segment_rank": pd.Series(dtype=np.int64)}),
        profiles=profiles,
        k_selection=[dict(row) for row in fit.k_selection],
        n_clusters=fit.n_clusters,
        typical_interval_days=float(fit.thresholds.interval_days),
        rfm_grid=rfm_grid_from_cells(cell_customers, cell_revenue_cents),
        profile_index=profile_index_from_means(overall_means, profiles),
        thresholds=fit.thresholds,
        clusters=cluster_table_from_stats(cluster_stats, cluster_split, fit),
    )


def segment_customers(features: pd.DataFrame, n_clusters: int | None = None,
                      random_state: int = 0, *, sample_size: int = SAMPLE_SIZE,
                      k_range=K_RANGE, stability_seeds: int = STABILITY_SEEDS
                      ) -> SegmentationResult:
    """Segment the customers of a customer_features table (see the module docstring).

    The Lambda path: fit on every customer, score every customer, aggregate. Arguments and
    errors as ``fit_segments``.
    """
    fit = fit_segments(features, n_clusters, random_state, sample_size=sample_size,
                       k_range=k_range, stability_seeds=stability_seeds)
    scored = score_segments(features, fit, with_cluster=True)
    return segmentation_from_scores(features, scored, fit)


NOT_IN_PREVIOUS = "(not in previous run)"
NOT_IN_CURRENT = "(not in this run)"


def segment_migration(previous: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Customers moving between segments from one run to the next.

    ``previous`` and ``current``: customer_id, segment_name (one row per customer). Returns
    from_segment, to_segment, customers: one row per non-empty pair, sorted by from_segment
    then to_segment. Customers only in ``current`` come from NOT_IN_PREVIOUS, customers only in
    ``previous`` go to NOT_IN_CURRENT; so the customers column sums to the size of the union,
    the rows from each previous segment sum to its size and the rows into each current segment
    sum to its size.
    """
    frames = []
    for label, frame in (("previous", previous), ("current", current)):
        missing = [c for c in ("customer_id", "segment_name") if c not in frame.columns]
        if missing:
            raise ValueError(f"{label} lacks column(s) {missing}")
        if frame[["customer_id", "segment_name"]].isna().any().any():
            raise ValueError(f"{label} has missing customer_id or segment_name values")
        ids = frame["customer_id"].astype("str")
        if not ids.is_unique:
            raise ValueError(f"{label} has duplicate customer_id values")
        frames.append(pd.DataFrame({"customer_id": ids,
                                    label: frame["segment_name"].astype("str").to_numpy()}))
    merged = frames[0].merge(frames[1], on="customer_id", how="outer")
    moves = pd.DataFrame({
        "from_segment": merged["previous"].fillna(NOT_IN_PREVIOUS).astype("str"),
        "to_segment": merged["current"].fillna(NOT_IN_CURRENT).astype("str"),
    })
    out = (moves.groupby(["from_segment", "to_segment"], sort=True).size()
           .rename("customers").reset_index())
    out["customers"] = out["customers"].astype(np.int64)
    out["from_segment"] = out["from_segment"].astype("str")
    out["to_segment"] = out["to_segment"].astype("str")
    return out.reset_index(drop=True)
