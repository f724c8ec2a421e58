"""K-Means customer segments with names a marketing team can act on.

Pure logic on the customer_features table (see ``cdnow.features``); no I/O.

Clustering inputs
    log1p(recency_days), log1p(purchase_days), log1p(monetary_total), then StandardScaler.

Canonical cluster order
    k-means numbers its clusters arbitrarily. Each cluster's centroid, in the standardized
    space, gets a value score ``z(purchase_days) + z(monetary_total) - z(recency_days)``
    (frequent, big-spending and recent is valuable). Clusters are ranked by that score,
    highest first (ties broken by the centroid coordinates), and every output (names,
    profiles) follows that rank, never k-means' ids.

Naming rules (from the cluster profiles, never from a cluster index)
    Against the whole fitted population:
      recent   = cluster median recency_days  <  overall median recency_days
      frequent = cluster mean purchase_days   >= overall mean purchase_days
    recent and frequent          -> "Champions"
    recent and not frequent      -> "New or promising"
    not recent and frequent      -> "At risk"
    not recent and not frequent  -> "Lost"
    When several clusters fall in the same box, they are ranked by value score inside it:
    the highest keeps the box name, the second takes the box's second name ("Loyal" for
    Champions, "<box> (low value)" for the others), the k-th (k >= 3) is
    "<box> (value tier k)". Names are therefore unique within a fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from .features import FEATURE_COLUMNS

# Raw-feature clustering (the reference notebook) let the few extreme spenders dominate the
# Euclidean distances: it produced a 9-customer cluster of outliers and lumped everyone else
# together. Counts and amounts are heavy-tailed, so they are log1p-transformed before scaling.
SEGMENT_INPUTS = ["recency_days", "purchase_days", "monetary_total"]

# Profiles describe each customer feature once: repeat_purchases and the lifetime-value triple
# (frequency, recency, T) restate purchase_days, last purchase and tenure_days.
_RESTATED_FEATURES = {"repeat_purchases", "frequency", "recency", "T"}
PROFILE_FEATURES = [f for f in FEATURE_COLUMNS if f not in _RESTATED_FEATURES]

CHAMPIONS = "Champions"
NEW_OR_PROMISING = "New or promising"
AT_RISK = "At risk"
LOST = "Lost"

_SECOND_NAME = {
    CHAMPIONS: "Loyal",
    NEW_OR_PROMISING: f"{NEW_OR_PROMISING} (low value)",
    AT_RISK: f"{AT_RISK} (low value)",
    LOST: f"{LOST} (low value)",
}

# Weights of the standardized centroid coordinates (recency, purchase days, monetary) in the
# value score: recent (low recency_days) is good, so recency counts negatively.
_VALUE_WEIGHTS = np.array([-1.0, 1.0, 1.0])


def _segment_matrix(features: pd.DataFrame) -> np.ndarray:
    missing = [c for c in SEGMENT_INPUTS if c not in features.columns]
    if missing:
        raise ValueError(f"features lack column(s) {missing} needed for segmentation")
    values = features[SEGMENT_INPUTS].to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError(f"{SEGMENT_INPUTS} must not be missing")
    # A log with refunds can give a customer a net-negative total: for clustering, that is
    # "spent nothing" (log1p is undefined below -1).
    return np.log1p(np.clip(values, 0.0, None))


def _box_name(recent: bool, frequent: bool) -> str:
    if recent:
        return CHAMPIONS if frequent else NEW_OR_PROMISING
    return AT_RISK if frequent else LOST


def _name_clusters(boxes: list[str]) -> list[str]:
    """Names for clusters already listed in value order (best first)."""
    seen: dict[str, int] = {}
    names = []
    for box in boxes:
        k = seen.get(box, 0) + 1
        seen[box] = k
        if k == 1:
            names.append(box)
        elif k == 2:
            names.append(_SECOND_NAME[box])
        else:
            names.append(f"{box} (value tier {k})")
    return names


class CustomerSegmenter:
    """K-Means on log1p(recency_days, purchase_days, monetary_total), standardized.

    Fitted attributes:
      scaler_, kmeans_       the fitted StandardScaler and KMeans
      segment_names_         one name per cluster, in value rank order (best first)
      value_scores_          the value score of each cluster, same order
      cluster_profiles_      per cluster (value order): overall-vs-cluster statistics used
                             for naming (median recency_days, mean purchase_days, box)
    """

    def __init__(self, n_clusters: int = 4, random_state: int = 0, n_init: int = 10):
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.n_init = n_init

    def fit(self, features: pd.DataFrame, y=None) -> "CustomerSegmenter":
        x = _segment_matrix(features)
        if len(x) < self.n_clusters:
            raise ValueError(
                f"{len(x)} customers cannot be split into {self.n_clusters} segments")
        self.scaler_ = StandardScaler().fit(x)
        z = self.scaler_.transform(x)
        self.kmeans_ = KMeans(n_clusters=self.n_clusters, random_state=self.random_state,
                              n_init=self.n_init).fit(z)

        centers = self.kmeans_.cluster_centers_
        scores = centers @ _VALUE_WEIGHTS
        # Best first; ties (practically never) broken by the centroid coordinates so the order
        # depends only on the clusters, not on k-means' numbering.
        rank_order = np.lexsort((centers[:, 2], centers[:, 1], -centers[:, 0], -scores))
        rank_of_cluster = np.empty(self.n_clusters, dtype=np.int64)
        rank_of_cluster[rank_order] = np.arange(self.n_clusters)
        self._rank_of_cluster = rank_of_cluster

        ranks = rank_of_cluster[self.kmeans_.predict(z)]
        recency_days = features["recency_days"].to_numpy(dtype=np.float64)
        purchase_days = features["purchase_days"].to_numpy(dtype=np.float64)
        overall_recency = float(np.median(recency_days))
        overall_purchase_days = float(purchase_days.mean())
        stats = pd.DataFrame({"rank": ranks, "recency_days": recency_days,
                              "purchase_days": purchase_days})
        profile = (stats.groupby("rank")
                   .agg(customers=("rank", "size"),
                        median_recency_days=("recency_days", "median"),
                        mean_purchase_days=("purchase_days", "mean"))
                   .reindex(range(self.n_clusters)))
        # A cluster can end up empty under predict (k-means stopped before full convergence):
        # name it from its centroid, mapped back to the original units.
        empty = profile["customers"].isna().to_numpy()
        if empty.any():
            back = np.expm1(self.scaler_.inverse_transform(centers[rank_order]))
            profile.loc[empty, "median_recency_days"] = back[empty, 0]
            profile.loc[empty, "mean_purchase_days"] = back[empty, 1]
        profile["customers"] = profile["customers"].fillna(0).astype(np.int64)
        recent = profile["median_recency_days"].to_numpy() < overall_recency
        frequent = profile["mean_purchase_days"].to_numpy() >= overall_purchase_days
        boxes = [_box_name(bool(r), bool(f)) for r, f in zip(recent, frequent)]

        self.value_scores_ = scores[rank_order]
        self.segment_names_ = _name_clusters(boxes)
        profile.insert(0, "segment_name", self.segment_names_)
        profile["box"] = boxes
        profile["value_score"] = self.value_scores_
        profile["overall_median_recency_days"] = overall_recency
        profile["overall_mean_purchase_days"] = overall_purchase_days
        self.cluster_profiles_ = profile.reset_index(drop=True)
        return self

    def predict_rank(self, features: pd.DataFrame) -> np.ndarray:
        """Value rank of each customer's segment (0 = best)."""
        z = self.scaler_.transform(_segment_matrix(features))
        return self._rank_of_cluster[self.kmeans_.predict(z)]

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Segment name of each customer, an object array aligned with ``features``' rows."""
        return np.asarray(self.segment_names_, dtype=object)[self.predict_rank(features)]

    def fit_predict(self, features: pd.DataFrame, y=None) -> np.ndarray:
        return self.fit(features).predict(features)


def segment_profiles(features: pd.DataFrame, segment_names: np.ndarray,
                     ordered_names: list[str]) -> pd.DataFrame:
    """One row per segment in ``ordered_names`` order: sizes, revenue, mean/median features.

    Means and medians skip NaN: avg_days_between_purchases is over repeat buyers only.
    """
    n = len(features)
    # Revenue in integer cents so the segments add up to the total exactly.
    cents = np.round(features["monetary_total"].to_numpy(dtype=np.float64) * 100).astype(np.int64)
    frame = features[PROFILE_FEATURES].astype(np.float64)
    frame["segment_name"] = np.asarray(segment_names, dtype=object)
    frame["revenue_cents"] = cents
    aggs = {"customers": ("revenue_cents", "size"), "revenue_cents": ("revenue_cents", "sum")}
    for f in PROFILE_FEATURES:
        aggs[f"mean_{f}"] = (f, "mean")
        aggs[f"median_{f}"] = (f, "median")
    grouped = frame.groupby("segment_name", sort=False).agg(**aggs).reindex(ordered_names)
    grouped["customers"] = grouped["customers"].fillna(0).astype(np.int64)
    grouped["revenue_cents"] = grouped["revenue_cents"].fillna(0).astype(np.int64)

    total_cents = int(cents.sum())
    profiles = pd.DataFrame({
        "segment_name": pd.Series(ordered_names, dtype="str"),
        "customers": grouped["customers"].to_numpy(),
        "customer_share": grouped["customers"].to_numpy() / n if n else np.nan,
        "revenue": grouped["revenue_cents"].to_numpy() / 100.0,
        "revenue_share": (grouped["revenue_cents"].to_numpy() / total_cents
                          if total_cents else np.nan),
    })
    for f in PROFILE_FEATURES:
        profiles[f"mean_{f}"] = grouped[f"mean_{f}"].to_numpy()
        profiles[f"median_{f}"] = grouped[f"median_{f}"].to_numpy()
    return profiles


def segment_customers(features: pd.DataFrame, n_clusters: int = 4,
                      random_state: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit a CustomerSegmenter on ``features`` and return (assignments, profiles).

    assignments: customer_id, segment_name, one row per customer in ``features``' order.
    profiles: one row per segment, best value rank first (see ``segment_profiles``).
    """
    segmenter = CustomerSegmenter(n_clusters=n_clusters, random_state=random_state).fit(features)
    names = segmenter.predict(features)
    assignments = pd.DataFrame({
        "customer_id": features["customer_id"].to_numpy(),
        "segment_name": pd.Series(names, dtype="str").to_numpy(),
    })
    assignments["customer_id"] = assignments["customer_id"].astype("str")
    assignments["segment_name"] = assignments["segment_name"].astype("str")
    profiles = segment_profiles(features, names, segmenter.segment_names_)
    return assignments, profiles
