"""K-Means customer segments with names a marketing team can act on.

Pure logic on the customer_features table (see ``cdnow.domain.features``); no I/O. The entry
point is ``segment_customers(features, n_clusters=None)``, which returns a
``SegmentationResult``; ``segment_migration(previous, current)`` compares the assignments of
two runs.

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
    log1p. Each column is then standardized (mean 0, standard deviation 1 over all customers).
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
    refined by k-means on all customers. ``n_clusters=<k>`` overrides the choice (the table is
    still computed and its chosen row is the override).

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
    where single starts no longer agree (stability < 0.9): three segments is what the data
    supports. n_clusters=4 (also stable) splits the lapsed into repeat and one-time buyers.
    (On the master file repeated x100 with new ids, 2,357,000 customers, a different sample:
    silhouettes within 0.01 of these, stabilities 0.80-1.00 for k >= 5, k=3 chosen again.)

    Cost: the fits on the sample run single-threaded, and the silhouettes of all k share one
    pass over the sample's pairwise distances (``silhouettes``), so choosing k takes about
    1.5 s whatever the number of customers.

Value rank and naming rules (from each segment's profile in original units, never from a
cluster index)
    I = the customers' typical purchase interval: the median avg_days_between_purchases over
    repeat buyers (82.5 days on CDNOW master; 90 days if there is no repeat buyer).
    A segment's status comes from its median recency_days R:
        active   R <= 2 I            (master: <= 165 days)
        lapsing  2 I < R <= 4 I      (master: 166..330 days)
        lapsed   R > 4 I             (master: > 330 days)
    "repeat" = the segment's median purchase_days >= 2 (most of its customers came back);
    "high spend" = its mean monetary_total >= the mean over all customers.

    The most valuable segment (segment_rank 0) is the one with the highest mean
    monetary_total (ties: higher mean purchase_days, lower median recency_days, larger size).
    It is "Champions" whatever the rules below say; if its status is not active, the name
    says so: "Champions (lapsing)" / "Champions (lapsed)". Every other segment gets:

        active   repeat                 Loyal
        active   one-time               New when its median tenure_days <= 2 I, else Promising
        lapsing  repeat or high spend   Need attention
        lapsing  otherwise              About to sleep
        lapsed   high spend             At risk       (were valuable: win-back priority)
        lapsed   repeat                 Hibernating
        lapsed   otherwise              Lost

    and is ranked after Champions in this vocabulary order (SEGMENT_NAMES): Loyal, Promising,
    New, Need attention, About to sleep, At risk, Hibernating, Lost; segments with the same
    name in decreasing order of the value key above. Repeated names are qualified in that
    order: the first keeps the name, the next ones become "<name> (tier 2)", "<name> (tier 3)"
    (lower spend), so names are unique within a fit. Profiles, chart data and segment_rank
    follow this order, never k-means' numbering.

    On CDNOW master every customer joined in Q1 1997 (tenure >= 463 days), so "New" cannot
    occur there. The chosen three segments (random_state=0):

        segment         customers  revenue share  median recency  mean purchase days  mean $
        Champions           3,406         56.2%          57 d            9.57          412.24
        Need attention      6,110         25.5%         224 d            3.08          104.48
        Lost               14,054         18.3%         499 d            1.15           32.58

    n_clusters=4 gives Champions 2,831 / Loyal 5,140 (median recency 154 d) / Hibernating 6,367
    (lapsed, median 2 purchase days, mean $72) / Lost 9,232 (one-time, mean $18).

Profiles
    One row per segment: size and share, revenue in integer cents (segments add up to the
    total to the cent), revenue share, and mean and median of every FEATURE_COLUMNS column,
    including the restatements (repeat_purchases, frequency, recency, T) so the profile table
    maps one-to-one onto the feature table. Means and medians skip NaN:
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
from dataclasses import dataclass

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

# Naming.
ACTIVE_INTERVALS = 2
LAPSED_INTERVALS = 4
DEFAULT_INTERVAL_DAYS = 90.0
CHAMPIONS = "Champions"
LOYAL = "Loyal"
NEW = "New"
PROMISING = "Promising"
NEED_ATTENTION = "Need attention"
ABOUT_TO_SLEEP = "About to sleep"
AT_RISK = "At risk"
HIBERNATING = "Hibernating"
LOST = "Lost"
# The vocabulary from most to least valuable.
SEGMENT_NAMES = [CHAMPIONS, LOYAL, PROMISING, NEW, NEED_ATTENTION, ABOUT_TO_SLEEP, AT_RISK,
                 HIBERNATING, LOST]
ACTIVE, LAPSING, LAPSED = "active", "lapsing", "lapsed"

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
    n_clusters     the number of segments fitted
    typical_interval_days  I of the naming rules
    rfm_grid       recency bin x purchase-days bin cells: recency_bin, purchase_days_bin,
                   customers, revenue, mean_monetary (NaN for empty cells)
    profile_index  segment_name, segment_rank, then segment mean / overall mean of each
                   PROFILE_INDEX_FEATURES column

    For callers of the former API, it unpacks as ``assignments, profiles = result``.
    """

    assignments: pd.DataFrame
    profiles: pd.DataFrame
    k_selection: list[dict]
    n_clusters: int
    typical_interval_days: float
    rfm_grid: pd.DataFrame
    profile_index: pd.DataFrame

    def __iter__(self):
        return iter((self.assignments, self.profiles))

    def summary(self) -> dict:
        """A JSON-ready digest for the run summary (plain Python values; None for missing)."""
        return {
            "n_clusters": int(self.n_clusters),
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


def _segment_matrix(features: pd.DataFrame) -> np.ndarray:
    """The transformed, standardized clustering inputs (one row per customer)."""
    values = features[SEGMENT_INPUTS].to_numpy(dtype=np.float64, copy=True)
    if np.isnan(values).any():
        raise ValueError(f"{SEGMENT_INPUTS} must not be missing")
    for j, name in enumerate(SEGMENT_INPUTS):
        if name in LOG_INPUTS:
            # A log with refunds can give a customer a net-negative total: for clustering,
            # that is "spent nothing" (log1p is undefined below -1).
            values[:, j] = np.log1p(np.clip(values[:, j], 0.0, None))
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    std[std == 0] = 1.0
    return (values - mean) / std


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
# Profiles and names

def typical_interval_days(features: pd.DataFrame) -> float:
    """I of the naming rules: median avg_days_between_purchases over repeat buyers."""
    intervals = features["avg_days_between_purchases"].to_numpy(dtype=np.float64)
    intervals = intervals[~np.isnan(intervals)]
    return float(np.median(intervals)) if len(intervals) else DEFAULT_INTERVAL_DAYS


def recency_status(median_recency_days: float, interval_days: float) -> str:
    """active / lapsing / lapsed, by median recency in typical purchase intervals."""
    if median_recency_days <= ACTIVE_INTERVALS * interval_days:
        return ACTIVE
    if median_recency_days <= LAPSED_INTERVALS * interval_days:
        return LAPSING
    return LAPSED


def name_segment(status: str, repeat: bool, high_spend: bool, new: bool) -> str:
    """The rule name of a segment other than the most valuable one (see the docstring)."""
    if status == ACTIVE:
        return LOYAL if repeat else (NEW if new else PROMISING)
    if status == LAPSING:
        return NEED_ATTENTION if repeat or high_spend else ABOUT_TO_SLEEP
    if high_spend:
        return AT_RISK
    return HIBERNATING if repeat else LOST


def unique_names(names: list[str]) -> list[str]:
    """Qualify repeated names, in the given (rank) order: X, X (tier 2), X (tier 3), ..."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} (tier {seen[name]})")
    return out


def _cluster_stats(features: pd.DataFrame, labels: np.ndarray, k: int) -> pd.DataFrame:
    """Per cluster id 0..k-1, in original units: what value order and names are made of."""
    frame = pd.DataFrame({
        "label": labels,
        "recency_days": features["recency_days"].to_numpy(dtype=np.float64),
        "purchase_days": features["purchase_days"].to_numpy(dtype=np.float64),
        "monetary_total": features["monetary_total"].to_numpy(dtype=np.float64),
        "tenure_days": features["tenure_days"].to_numpy(dtype=np.float64),
    })
    return frame.groupby("label").agg(
        size=("label", "size"),
        mean_monetary=("monetary_total", "mean"),
        mean_purchase_days=("purchase_days", "mean"),
        median_purchase_days=("purchase_days", "median"),
        median_recency=("recency_days", "median"),
        median_tenure=("tenure_days", "median"),
    ).reindex(range(k))


def _rank_and_name(stats: pd.DataFrame, overall_monetary: float,
                   interval: float) -> tuple[np.ndarray, list[str], list[str]]:
    """(cluster ids in rank order, names in rank order, statuses in rank order).

    Rank 0 is the highest mean monetary_total (ties: mean purchase_days, then lower median
    recency, then size); the others follow the vocabulary order of their rule names, and the
    same value key inside one name.
    """
    value_key = np.lexsort((-stats["size"].to_numpy(), stats["median_recency"].to_numpy(),
                            -stats["mean_purchase_days"].to_numpy(),
                            -stats["mean_monetary"].to_numpy()))
    value_pos = np.empty(len(stats), dtype=np.int64)
    value_pos[value_key] = np.arange(len(stats))
    top = int(value_key[0])

    statuses, names = {}, {}
    for label, row in zip(stats.index, stats.itertuples()):
        status = recency_status(row.median_recency, interval)
        statuses[label] = status
        if label == top:
            names[label] = CHAMPIONS if status == ACTIVE else f"{CHAMPIONS} ({status})"
        else:
            names[label] = name_segment(
                status,
                repeat=bool(row.median_purchase_days >= 2),
                high_spend=bool(row.mean_monetary >= overall_monetary),
                new=bool(row.median_tenure <= ACTIVE_INTERVALS * interval),
            )
    rest = sorted((label for label in stats.index if label != top),
                  key=lambda label: (SEGMENT_NAMES.index(names[label]), value_pos[label]))
    order = np.array([top, *rest], dtype=np.int64)
    return (order, unique_names([names[label] for label in order]),
            [statuses[label] for label in order])


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
    r = bin_codes(features["recency_days"].to_numpy(dtype=np.float64), RECENCY_BINS)
    f = bin_codes(features["purchase_days"].to_numpy(dtype=np.float64), PURCHASE_DAYS_BINS)
    n_f = len(PURCHASE_DAYS_BINS)
    cell = r * n_f + f
    size = len(RECENCY_BINS) * n_f
    cents = np.round(features["monetary_total"].to_numpy(dtype=np.float64) * 100)
    customers = np.bincount(cell, minlength=size).astype(np.int64)
    revenue_cents = np.round(np.bincount(cell, weights=cents, minlength=size)).astype(np.int64)
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
    out = profiles[["segment_name", "segment_rank"]].copy()
    for f in PROFILE_INDEX_FEATURES:
        values = features[f].to_numpy(dtype=np.float64)
        known = values[~np.isnan(values)]  # avg_days_between_purchases: repeat buyers only
        overall = float(known.mean()) if len(known) else np.nan
        means = profiles[f"mean_{f}"].to_numpy(dtype=np.float64)
        out[f] = means / overall if overall else np.nan  # NaN when overall is 0 or unknown
    return out


# ---------------------------------------------------------------------------------------------
# Entry points

def segment_customers(features: pd.DataFrame, n_clusters: int | None = None,
                      random_state: int = 0, *, sample_size: int = SAMPLE_SIZE,
                      k_range=K_RANGE, stability_seeds: int = STABILITY_SEEDS
                      ) -> SegmentationResult:
    """Segment the customers of a customer_features table (see the module docstring).

    n_clusters: None chooses k by the documented criterion; an int >= 2 forces it.
    random_state: seeds the sample and every k-means start.
    sample_size, k_range, stability_seeds: the k-selection settings (defaults documented).
    Raises ValueError for missing columns or values, duplicate customer ids, or fewer
    distinct customers than segments.
    """
    if n_clusters is not None and n_clusters < 2:
        raise ValueError(f"n_clusters must be >= 2 (or None to choose), got {n_clusters}")
    ordered, order = _sorted_features(features)
    n = len(ordered)
    if n == 0:
        raise InsufficientData("no customers to segment")
    x = _segment_matrix(ordered)

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

    # Refine the best sample fit on every customer (a no-op when the sample is everyone).
    final = KMeans(n_clusters=k, init=models[k].cluster_centers_, n_init=1,
                   random_state=random_state).fit(x)
    labels = final.labels_.astype(np.int64)
    # Drop clusters left empty (k-means can, in degenerate data), then rank and name.
    present, labels = np.unique(labels, return_inverse=True)
    k = len(present)
    interval = typical_interval_days(ordered)
    overall_monetary = float(ordered["monetary_total"].to_numpy(dtype=np.float64).mean())
    rank_order, names, statuses = _rank_and_name(_cluster_stats(ordered, labels, k),
                                                 overall_monetary, interval)
    rank_of_label = np.empty(k, dtype=np.int64)
    rank_of_label[rank_order] = np.arange(k)
    ranks = rank_of_label[labels]

    profiles = segment_profiles(ordered, ranks, names)
    profiles.insert(2, "recency_status", pd.Series(statuses, dtype="str"))

    if order is not None:
        # Back to the input's row order.
        back = np.empty(n, dtype=np.int64)
        back[order] = np.arange(n)
        ranks_out, ids_out = ranks[back], ordered["customer_id"].to_numpy()[back]
    else:
        ranks_out, ids_out = ranks, ordered["customer_id"].to_numpy()
    assignments = pd.DataFrame({
        "customer_id": pd.Series(ids_out, dtype="str"),
        "segment_name": pd.Series(np.asarray(names, dtype=object)[ranks_out], dtype="str"),
        "segment_rank": ranks_out.astype(np.int64),
    })
    return SegmentationResult(
        assignments=assignments,
        profiles=profiles,
        k_selection=rows,
        n_clusters=int(k),
        typical_interval_days=float(interval),
        rfm_grid=rfm_grid(ordered),
        profile_index=_profile_index(ordered, profiles),
    )


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
