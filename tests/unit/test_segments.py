import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import silhouette_score

from cdnow.domain import segments
from cdnow.domain.features import FEATURE_COLUMNS, customer_features, default_analysis_date
from cdnow.domain.segments import (
    NOT_IN_CURRENT,
    NOT_IN_PREVIOUS,
    SEGMENT_NAMES,
    RuleThresholds,
    SegmentationResult,
    name_customers,
    rfm_grid,
    segment_customers,
    segment_migration,
    segment_rule_masks,
    silhouettes,
)

from cdnow_offline.datasets import MASTER, read_cdnow

ANALYSIS_DATE = pd.Timestamp("1998-01-01")


def separated_transactions() -> pd.DataFrame:
    """Four obviously different groups of 40 customers (ids say which group).

    Repeat buyers buy every 7 days, so the typical purchase interval I is 7 days: recent
    groups (last purchase 1..9 days ago) are active (<= 2 I = 14 days), old ones (300..329
    days ago) lapsed (> 4 I = 28 days).
    """
    rng = np.random.default_rng(7)
    end = ANALYSIS_DATE
    groups = {
        # name: (purchase days per customer, days before the analysis date of the last one,
        #        amount per purchase)
        "champion": (12, (1, 10), (80.0, 120.0)),
        "newbie": (1, (1, 10), (8.0, 15.0)),
        "slipping": (12, (300, 330), (80.0, 120.0)),
        "gone": (1, (300, 330), (8.0, 15.0)),
    }
    rows = []
    for group, (n_days, (lo, hi), (a_lo, a_hi)) in groups.items():
        for i in range(40):
            last = end - pd.Timedelta(days=int(rng.integers(lo, hi)))
            for k in range(n_days):
                rows.append((f"{group}-{i:03d}", last - pd.Timedelta(days=7 * k), 1,
                             round(float(rng.uniform(a_lo, a_hi)), 2)))
    frame = pd.DataFrame(rows, columns=["customer_id", "order_date", "quantity", "amount"])
    frame["quantity"] = frame["quantity"].astype("int64")
    return frame


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return customer_features(separated_transactions(), ANALYSIS_DATE)


def group_of(assignments: pd.DataFrame) -> pd.Series:
    return assignments["customer_id"].str.split("-").str[0]


# ---------------------------------------------------------------------------------------------
# Synthetic groups

def test_each_group_gets_its_rule_name(features):
    result = segment_customers(features, n_clusters=4)
    assert result.typical_interval_days == 7.0
    by_group = result.assignments.groupby(group_of(result.assignments))["segment_name"].unique()
    # champion: highest spend and purchase days -> rank 0. newbie: active one-time buyers whose
    # first purchase is within 2 I -> New. slipping: lapsed, spent above the mean -> At risk.
    # gone: lapsed one-time small spenders -> Lost.
    assert {g: list(v) for g, v in by_group.items()} == {
        "champion": ["Champions"], "newbie": ["New"], "slipping": ["At risk"], "gone": ["Lost"]}
    # Rank order: Champions first, then the vocabulary order.
    assert list(result.profiles["segment_name"]) == ["Champions", "New", "At risk", "Lost"]
    assert list(result.profiles["recency_status"]) == ["active", "active", "lapsed", "lapsed"]
    assert list(result.profiles["segment_rank"]) == [0, 1, 2, 3]


def test_default_k_is_chosen_by_the_documented_criterion(features):
    result = segment_customers(features)
    table = result.k_selection
    assert [row["k"] for row in table] == list(range(2, 9))
    eligible = [r for r in table if r["k"] >= 3 and r["stability"] >= 0.9]
    assert [r["eligible"] for r in table] == [r in eligible for r in table]
    best = max(eligible, key=lambda r: r["silhouette"])
    assert best["k"] == result.n_clusters == 4  # four planted groups
    assert [r["k"] for r in table if r["chosen"]] == [4]


def test_override_is_marked_chosen(features):
    result = segment_customers(features, n_clusters=6)
    assert result.n_clusters == 6 == len(result.clusters)
    assert [r["k"] for r in result.k_selection if r["chosen"]] == [6]
    assert [r["k"] for r in result.k_selection] == list(range(2, 9))
    # Six clusters, but the names come from the rules: the four planted groups.
    assert list(result.profiles["segment_name"]) == ["Champions", "New", "At risk", "Lost"]


def test_choose_k_rules():
    def row(k, silhouette, stability):
        return {"k": k, "silhouette": silhouette, "stability": stability}

    # k=2 has the best silhouette but is never chosen by default; k=4 is unstable.
    rows = [row(2, 0.9, 1.0), row(3, 0.5, 0.95), row(4, 0.6, 0.8), row(5, 0.45, 0.99)]
    assert segments._choose_k(rows) == 3
    # Ties on silhouette: the smaller k.
    assert segments._choose_k([row(3, 0.5, 0.95), row(4, 0.5, 0.97)]) == 3
    # Nothing stable enough in 3..8: the most stable.
    assert segments._choose_k([row(2, 0.9, 1.0), row(3, 0.5, 0.6), row(4, 0.4, 0.7)]) == 4
    # Only k=2 possible.
    assert segments._choose_k([row(2, 0.9, 1.0)]) == 2


def test_identical_labels_and_input_row_order_does_not_matter(features):
    first = segment_customers(features)
    second = segment_customers(features)
    pd.testing.assert_frame_equal(first.assignments, second.assignments)
    assert first.k_selection == second.k_selection

    shuffled = features.sample(frac=1.0, random_state=11)
    third = segment_customers(shuffled)
    # Rows follow the input; labels per customer are the same.
    assert list(third.assignments["customer_id"]) == list(shuffled["customer_id"])
    pd.testing.assert_frame_equal(
        third.assignments.sort_values("customer_id").reset_index(drop=True),
        first.assignments.sort_values("customer_id").reset_index(drop=True))
    pd.testing.assert_frame_equal(third.profiles, first.profiles)


@pytest.mark.parametrize("n_clusters", range(2, 9))
def test_names_come_from_the_rules_whatever_k(features, n_clusters):
    result = segment_customers(features, n_clusters=n_clusters)
    names = list(result.profiles["segment_name"])
    assert len(names) == len(set(names))
    # Vocabulary names only, in vocabulary (value) order, ranks 0..n-1.
    assert names == [n for n in SEGMENT_NAMES if n in names]
    assert list(result.profiles["segment_rank"]) == list(range(len(names)))
    assert set(result.assignments["segment_name"]) == set(names)
    ranks = dict(zip(result.profiles["segment_name"], result.profiles["segment_rank"]))
    assert (result.assignments["segment_rank"]
            == result.assignments["segment_name"].map(ranks)).all()
    # Only Champions depend on the clusters: the other groups are named the same for every k.
    by_group = result.assignments.groupby(group_of(result.assignments))["segment_name"].unique()
    assert list(by_group["newbie"]) == ["New"]
    assert list(by_group["slipping"]) == ["At risk"]
    assert list(by_group["gone"]) == ["Lost"]
    assert set(by_group["champion"]) <= {"Champions", "Loyal"}
    assert "Champions" in set(by_group["champion"])


def test_a_cluster_mixing_recent_and_long_gone_customers_is_split_by_the_rules():
    # Big repeat spenders, half still buying, half gone for a year; recent one-time small
    # buyers (new) and old one-time small buyers (lost). Two clusters: k-means puts the big
    # spenders together whatever their recency.
    rows = []
    for i in range(30):
        gone = 365 if i % 2 else 0
        for week in range(10):
            rows.append((f"big-{i:02d}", ANALYSIS_DATE - pd.Timedelta(days=1 + gone + 7 * week + i % 3),
                         1, 100.0 + i))
        rows.append((f"small-{i:02d}", ANALYSIS_DATE - pd.Timedelta(days=1 + i % 5 + 400 * (i % 2)),
                     1, 5.0 + i % 4))
    transactions = pd.DataFrame(rows, columns=["customer_id", "order_date", "quantity", "amount"])
    features = customer_features(transactions, ANALYSIS_DATE)
    result = segment_customers(features, n_clusters=2)
    assert result.typical_interval_days == 7.0  # A = 14 days, L = 28 days
    big = group_of(result.assignments) == "big"
    clusters = result.cluster_of_customer
    assert len(set(clusters[big])) == 1  # one cluster ...
    recent = (features["recency_days"] <= 14).to_numpy()
    names = result.assignments["segment_name"].to_numpy()
    # ... two names: the rule layer splits it by each customer's own recency.
    assert set(names[big & recent]) == {"Champions"}
    assert set(names[big & ~recent]) == {"At risk"}
    small = ~big
    assert set(names[small & recent]) == {"New"}
    assert set(names[small & ~recent]) == {"Lost"}
    assert list(result.profiles["segment_name"]) == ["Champions", "New", "At risk", "Lost"]
    assert list(result.profiles["recency_status"]) == ["active", "active", "lapsed", "lapsed"]
    summary = result.summary()
    champion = [c for c in summary["clusters"] if c["champion_cluster"]]
    assert len(champion) == 1 and champion[0]["segments"] == {"Champions": 15, "At risk": 15}


def test_lapsed_big_spenders_are_at_risk_not_champions():
    # Big repeat spenders who stopped buying a year ago, and recent one-time small buyers:
    # nobody is a current best customer, so there are no Champions.
    rows = []
    for i in range(30):
        for week in range(10):
            rows.append((f"big-{i:02d}", ANALYSIS_DATE - pd.Timedelta(days=365 + 7 * week + i % 3),
                         1, 100.0 + i))
        rows.append((f"small-{i:02d}", ANALYSIS_DATE - pd.Timedelta(days=1 + i % 5), 1, 5.0 + i % 4))
    transactions = pd.DataFrame(rows, columns=["customer_id", "order_date", "quantity", "amount"])
    result = segment_customers(customer_features(transactions, ANALYSIS_DATE), n_clusters=2)
    by_group = result.assignments.groupby(group_of(result.assignments))["segment_name"].unique()
    assert list(by_group["big"]) == ["At risk"]
    assert list(by_group["small"]) == ["New"]
    assert list(result.profiles["segment_name"]) == ["New", "At risk"]
    assert not result.clusters["champion_cluster"].any()


# ---------------------------------------------------------------------------------------------
# Naming rules

# I = 82.5 days and mean spend 106.08, as on CDNOW master: A = 165, L = 330 days.
MASTER_THRESHOLDS = RuleThresholds(interval_days=82.5, high_spend=106.08)

# recency_days, purchase_days, tenure_days, monetary_total, in the champion cluster, name
HAND_MADE_CUSTOMERS = [
    (1, 1, 1, 10.0, False, "New"),              # bought once, yesterday
    (165, 1, 165, 900.0, True, "New"),          # first purchase 165 days ago: still new
    (3, 4, 120, 300.0, True, "New"),            # new even in the champion cluster
    (165, 2, 166, 10.0, True, "Champions"),     # active, first purchase before the window
    (1, 20, 500, 2000.0, True, "Champions"),
    (165, 2, 400, 5000.0, False, "Loyal"),      # big spender outside the champion cluster
    (12, 3, 480, 20.0, False, "Loyal"),
    (166, 5, 480, 106.08, True, "Need attention"),  # exactly the mean spend counts as high
    (330, 1, 330, 500.0, False, "Need attention"),  # a one-time buyer can be lapsing
    (166, 5, 480, 106.07, True, "About to sleep"),
    (330, 1, 330, 5.0, False, "About to sleep"),
    (331, 2, 600, 106.08, False, "At risk"),
    (544, 12, 546, 3000.0, True, "At risk"),
    (331, 2, 600, 50.0, True, "Hibernating"),
    (331, 1, 331, 5000.0, True, "Lost"),        # a single purchase, lapsed: Lost, whatever spent
    (546, 1, 546, 0.0, False, "Lost"),
    (400, 1, 400, -5.0, False, "Lost"),         # net refunds
]


def hand_made() -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    frame = pd.DataFrame(HAND_MADE_CUSTOMERS, columns=[
        "recency_days", "purchase_days", "tenure_days", "monetary_total", "champion", "name"])
    return frame, frame["champion"].to_numpy(), list(frame["name"])


def test_rule_layer_on_hand_made_customers():
    customers, champion, expected = hand_made()
    codes = name_customers(customers, champion, MASTER_THRESHOLDS)
    assert [SEGMENT_NAMES[c] for c in codes] == expected
    # Every vocabulary name but none is reached, and the rules are a partition.
    masks = segment_rule_masks(customers, champion, MASTER_THRESHOLDS)
    assert list(masks) == SEGMENT_NAMES
    assert (sum(m.astype(int) for m in masks.values()) == 1).all()
    assert set(expected) == set(SEGMENT_NAMES)


def test_rule_thresholds_and_statements():
    t = MASTER_THRESHOLDS
    assert (t.active_days, t.lapsed_days) == (165, 330)
    assert RuleThresholds(interval_days=7.4, high_spend=1.0).active_days == 14  # whole days
    rules = {name: segments.segment_rule(name, t) for name in SEGMENT_NAMES}
    assert rules["Lost"]["rule"] == "A single purchase day, more than 330 days ago"
    assert rules["New"]["rule"] == "First purchase within the last 165 days"
    assert rules["Need attention"]["rule"] == (
        "Last purchase 166 to 330 days ago, total spend at least 106.08 (the mean customer's)")
    ranges = {name: (r["recency_status"], r["recency_days_min"], r["recency_days_max"])
              for name, r in rules.items()}
    assert ranges == {
        "Champions": ("active", 1, 165), "Loyal": ("active", 1, 165), "New": ("active", 1, 165),
        "Need attention": ("lapsing", 166, 330), "About to sleep": ("lapsing", 166, 330),
        "At risk": ("lapsed", 331, None), "Hibernating": ("lapsed", 331, None),
        "Lost": ("lapsed", 331, None)}


def test_rule_layer_rejects_inconsistent_customers():
    customers, champion, _ = hand_made()
    bad = customers.copy()
    bad.loc[0, "recency_days"] = 5  # last purchase before the first
    with pytest.raises(ValueError, match="inconsistent"):
        name_customers(bad, champion, MASTER_THRESHOLDS)
    bad = customers.copy()
    bad.loc[0, "tenure_days"] = np.nan
    with pytest.raises(ValueError, match="tenure_days must not be missing"):
        name_customers(bad, champion, MASTER_THRESHOLDS)


def test_new_appears_when_first_purchases_are_recent(features):
    # The synthetic newbies bought once 1-9 days ago: New, and exactly them.
    result = segment_customers(features)
    new = (result.assignments["segment_name"] == "New").to_numpy()
    assert set(group_of(result.assignments)[new]) == {"newbie"}
    assert (features["tenure_days"].to_numpy()[new] <= 2 * result.typical_interval_days).all()
    # Without them there is no New segment.
    older = segment_customers(features[group_of(features) != "newbie"])
    assert "New" not in set(older.profiles["segment_name"])


# ---------------------------------------------------------------------------------------------
# Profiles and chart data

def test_profiles_add_up_and_describe_every_feature(features):
    result = segment_customers(features, n_clusters=3)
    assignments, profiles = result  # the former (assignments, profiles) API still unpacks
    assert list(assignments.columns) == ["customer_id", "segment_name", "segment_rank"]
    assert list(assignments["customer_id"]) == list(features["customer_id"])

    expected_columns = ["segment_name", "segment_rank", "recency_status", "customers",
                        "customer_share", "revenue_cents", "revenue", "revenue_share"]
    for f in FEATURE_COLUMNS:
        expected_columns += [f"mean_{f}", f"median_{f}"]
    assert list(profiles.columns) == expected_columns
    assert profiles["segment_name"].is_unique

    assert profiles["customers"].sum() == len(features)
    total_cents = int(np.round(features["monetary_total"].to_numpy() * 100).sum())
    assert profiles["revenue_cents"].dtype == np.int64
    assert int(profiles["revenue_cents"].sum()) == total_cents
    assert profiles["customer_share"].sum() == pytest.approx(1.0)
    assert profiles["revenue_share"].sum() == pytest.approx(1.0)
    for row in profiles.itertuples():
        members = features[(assignments["segment_name"] == row.segment_name).to_numpy()]
        assert row.customers == len(members)
        assert row.revenue_cents == int(np.round(members["monetary_total"] * 100).sum())
        for f in FEATURE_COLUMNS:
            assert getattr(row, f"mean_{f}") == pytest.approx(members[f].mean(), nan_ok=True)
            assert getattr(row, f"median_{f}") == pytest.approx(members[f].median(), nan_ok=True)


def test_rfm_grid_bins_by_hand():
    features = pd.DataFrame({
        "recency_days":  [1, 30, 31, 90, 180, 181, 365, 366, 730, 731, 5],
        "purchase_days": [1, 2, 3, 4, 5, 6, 10, 11, 40, 1, 1],
        "monetary_total": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 0.01],
    })
    grid = rfm_grid(features)
    assert len(grid) == 36
    assert list(grid.columns) == ["recency_bin", "purchase_days_bin", "customers", "revenue",
                                  "mean_monetary"]
    cells = {(r, f): (c, rev) for r, f, c, rev in
             grid[["recency_bin", "purchase_days_bin", "customers", "revenue"]].itertuples(
                 index=False)}
    nonempty = {k: v for k, v in cells.items() if v[0]}
    assert nonempty == {
        ("1-30", "1"): (2, 10.01), ("1-30", "2"): (1, 20.0),
        ("31-90", "3"): (1, 30.0), ("31-90", "4-5"): (1, 40.0),
        ("91-180", "4-5"): (1, 50.0),
        ("181-365", "6-10"): (2, 130.0),
        ("366-730", "11+"): (2, 170.0),
        ("731+", "1"): (1, 100.0),
    }
    mean = grid.set_index(["recency_bin", "purchase_days_bin"])["mean_monetary"]
    assert mean[("1-30", "1")] == pytest.approx(5.005)
    assert np.isnan(mean[("731+", "11+")])
    assert grid["customers"].sum() == len(features)


def test_profile_index_is_segment_mean_over_overall_mean(features):
    result = segment_customers(features, n_clusters=4)
    index = result.profile_index.set_index("segment_name")
    assert list(index.columns) == ["segment_rank", *segments.PROFILE_INDEX_FEATURES]
    labels = result.assignments["segment_name"].to_numpy()
    for name in index.index:
        members = features[labels == name]
        for f in ["recency_days", "purchase_days", "monetary_total"]:
            assert index.loc[name, f] == pytest.approx(members[f].mean() / features[f].mean())
    # New and Lost hold one-time buyers only: no purchase interval.
    assert np.isnan(index.loc["New", "avg_days_between_purchases"])


def test_summary_is_json_ready(features):
    result = segment_customers(features)
    for row in result.k_selection:
        assert set(row) == {"k", "silhouette", "stability", "eligible", "chosen"}
        assert type(row["k"]) is int and type(row["chosen"]) is bool
        assert type(row["silhouette"]) is float and type(row["stability"]) is float
    summary = result.summary()
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text)["n_clusters"] == result.n_clusters
    assert sum(s["customers"] for s in summary["segments"].values()) == len(features)
    assert len(summary["rfm_grid"]) == 36
    # What the report needs to state the rules.
    assert summary["n_segments"] == len(result.profiles) == 4
    assert summary["rule_thresholds"] == {"typical_interval_days": 7.0, "active_within_days": 14,
                                          "lapsed_after_days": 28,
                                          "high_spend_from": round(features["monetary_total"].mean(), 2)}
    rules = summary["segment_rules"]
    assert [r["segment_name"] for r in rules] == SEGMENT_NAMES
    for rule in rules:
        assert set(rule) == {"segment_name", "segment_rank", "recency_status", "rule",
                             "recency_days_min", "recency_days_max", "customers",
                             "customer_share"}
        segment = summary["segments"].get(rule["segment_name"])
        assert rule["customers"] == (segment["customers"] if segment else 0)
        assert rule["segment_rank"] == (segment["segment_rank"] if segment else None)
    assert summary["max_segment_share"] == 0.4
    assert summary["large_segments"] == []  # four groups of 40: 25% each
    assert [c["cluster"] for c in summary["clusters"]] == list(range(result.n_clusters))
    assert sum(c["customers"] for c in summary["clusters"]) == len(features)
    assert sum(c["champion_cluster"] for c in summary["clusters"]) == 1


def test_silhouettes_match_sklearn():
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(c, 1.0, size=(70, 3)) for c in (0.0, 4.0, 9.0)])
    x = np.vstack([x, x[:5]])  # duplicate points
    labelings = [np.repeat([0, 1, 2], 70).tolist() + [0] * 5,
                 rng.integers(0, 4, size=len(x)),
                 np.r_[np.zeros(len(x) - 1, dtype=int), 1]]  # a one-point cluster
    got = silhouettes(x, [np.asarray(labels) for labels in labelings], chunk_rows=37)
    expected = [silhouette_score(x, labels) for labels in labelings]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Errors

def test_too_few_customers_is_an_error(features):
    with pytest.raises(ValueError, match="cannot be split"):
        segment_customers(features.head(3), n_clusters=4)


def test_identical_customers_cannot_be_split(features):
    same = features.head(6).copy()
    for column in ["recency_days", "purchase_days", "monetary_total"]:
        same[column] = same[column].iloc[0]
    with pytest.raises(ValueError, match="cannot be split"):
        segment_customers(same)
    with pytest.raises(ValueError, match="n_clusters must be >= 2"):
        segment_customers(features, n_clusters=1)


def test_duplicate_customers_are_an_error(features):
    with pytest.raises(ValueError, match="duplicate"):
        segment_customers(pd.concat([features, features.head(1)]))


def test_missing_column_is_an_error(features):
    with pytest.raises(ValueError, match="monetary_total"):
        segment_customers(features.drop(columns="monetary_total"))


# ---------------------------------------------------------------------------------------------
# Migration

def seg(pairs) -> pd.DataFrame:
    return pd.DataFrame(pairs, columns=["customer_id", "segment_name"])


def test_migration_by_hand():
    previous = seg([("a", "Champions"), ("b", "Champions"), ("c", "Loyal"), ("d", "Lost"),
                    ("e", "Loyal")])
    current = seg([("b", "Champions"), ("a", "Loyal"), ("c", "Loyal"), ("e", "Lost"),
                   ("f", "Champions"), ("g", "Champions")])
    got = segment_migration(previous, current)
    assert list(got.columns) == ["from_segment", "to_segment", "customers"]
    assert got["customers"].dtype == np.int64
    assert list(got.itertuples(index=False, name=None)) == [
        (NOT_IN_PREVIOUS, "Champions", 2),   # f, g
        ("Champions", "Champions", 1),      # b
        ("Champions", "Loyal", 1),          # a
        ("Lost", NOT_IN_CURRENT, 1),        # d
        ("Loyal", "Lost", 1),               # e
        ("Loyal", "Loyal", 1),              # c
    ]
    assert NOT_IN_PREVIOUS == "(not in previous run)"
    assert NOT_IN_CURRENT == "(not in this run)"


def test_migration_counts_add_up():
    rng = np.random.default_rng(5)
    names = np.array(["Champions", "Loyal", "Need attention", "Lost"])
    previous = seg(zip([f"c{i}" for i in range(0, 300)], names[rng.integers(0, 4, 300)]))
    current = seg(zip([f"c{i}" for i in range(100, 450)], names[rng.integers(0, 4, 350)]))
    got = segment_migration(previous, current.sample(frac=1.0, random_state=1))
    assert (got["customers"] > 0).all()
    assert not got.duplicated(["from_segment", "to_segment"]).any()
    assert got["customers"].sum() == 450          # the union of both runs
    out_of = got.groupby("from_segment")["customers"].sum()
    into = got.groupby("to_segment")["customers"].sum()
    for name, size in previous["segment_name"].value_counts().items():
        assert out_of[name] == size
    for name, size in current["segment_name"].value_counts().items():
        assert into[name] == size
    assert out_of[NOT_IN_PREVIOUS] == 150          # c300..c449
    assert into[NOT_IN_CURRENT] == 100             # c0..c99


def test_migration_of_identical_runs_is_the_diagonal():
    run = seg([("a", "Champions"), ("b", "Lost"), ("c", "Lost")])
    got = segment_migration(run, run)
    assert list(got.itertuples(index=False, name=None)) == [
        ("Champions", "Champions", 1), ("Lost", "Lost", 2)]


def test_migration_rejects_duplicates():
    with pytest.raises(ValueError, match="duplicate"):
        segment_migration(seg([("a", "Lost"), ("a", "Loyal")]), seg([("a", "Lost")]))


# ---------------------------------------------------------------------------------------------
# CDNOW master

MASTER_CUSTOMERS = 23_570
MASTER_REVENUE_CENTS = 250_031_563  # $2,500,315.63


@pytest.fixture(scope="module")
def master_features() -> pd.DataFrame:
    if not MASTER.exists():
        pytest.skip(f"{MASTER} not present")
    transactions = read_cdnow()
    analysis_date = default_analysis_date(transactions)
    assert analysis_date == pd.Timestamp("1998-07-01")
    return customer_features(transactions, analysis_date)


@pytest.fixture(scope="module")
def master_result(master_features) -> SegmentationResult:
    return segment_customers(master_features)


def test_master_every_customer_in_one_segment_and_profiles_add_up(master_features,
                                                                   master_result):
    assignments, profiles = master_result.assignments, master_result.profiles
    assert len(assignments) == MASTER_CUSTOMERS and assignments["customer_id"].is_unique
    assert list(assignments["customer_id"]) == list(master_features["customer_id"])
    assert assignments["segment_name"].isin(profiles["segment_name"]).all()
    assert int(profiles["customers"].sum()) == MASTER_CUSTOMERS
    assert int(profiles["revenue_cents"].sum()) == MASTER_REVENUE_CENTS
    assert f"{profiles['revenue'].sum():,.2f}" == "2,500,315.63"


def test_master_most_valuable_segment_is_champions(master_result):
    profiles = master_result.profiles
    top_monetary = profiles.loc[profiles["mean_monetary_total"].idxmax(), "segment_name"]
    top_days = profiles.loc[profiles["mean_purchase_days"].idxmax(), "segment_name"]
    assert top_monetary == top_days == "Champions"
    assert profiles["segment_name"].iloc[0] == "Champions"
    assert profiles["segment_rank"].iloc[0] == 0


def test_master_k_selection_and_names(master_result):
    table = master_result.k_selection
    assert [row["k"] for row in table] == list(range(2, 9))
    json.dumps(table, allow_nan=False)
    # The table documented in the module docstring.
    documented = {2: (0.5899, 0.9996), 3: (0.5112, 0.9890), 4: (0.4253, 0.9668),
                  5: (0.4135, 0.7009), 6: (0.4057, 0.8909), 7: (0.4207, 0.8426),
                  8: (0.4094, 0.7638)}
    for row in table:
        assert (row["silhouette"], row["stability"]) == pytest.approx(documented[row["k"]],
                                                                      abs=2e-4)
    assert master_result.n_clusters == 3
    assert [r["k"] for r in table if r["chosen"]] == [3]
    assert master_result.typical_interval_days == 82.5
    profiles = master_result.profiles
    assert list(profiles["segment_name"]) == ["Champions", "Need attention", "Loyal", "At risk",
                                              "About to sleep", "Hibernating", "Lost"]
    assert list(profiles["recency_status"]) == ["active", "lapsing", "active", "lapsed",
                                                "lapsing", "lapsed", "lapsed"]


# The master segments documented in the module docstring: customers, revenue share, median
# recency_days, mean purchase_days, mean monetary_total.
MASTER_SEGMENTS = {
    "Champions": (2_912, 0.4837, 45, 9.83, 415.31),
    "Need attention": (1_196, 0.1146, 231, 5.19, 239.51),
    "Loyal": (2_201, 0.0784, 91, 3.13, 89.09),
    "At risk": (967, 0.0819, 422, 3.48, 211.66),
    "About to sleep": (1_454, 0.0347, 239, 2.77, 59.73),
    "Hibernating": (2_786, 0.0597, 450, 2.31, 53.58),
    "Lost": (12_054, 0.1470, 503, 1.00, 30.50),
}


def test_master_documented_segments(master_result):
    profiles = master_result.profiles.set_index("segment_name")
    assert list(profiles.index) == list(MASTER_SEGMENTS)
    for name, (customers, revenue_share, recency, days, spend) in MASTER_SEGMENTS.items():
        row = profiles.loc[name]
        assert row["customers"] == customers
        assert row["revenue_share"] == pytest.approx(revenue_share, abs=5e-5)
        assert row["median_recency_days"] == recency
        assert row["mean_purchase_days"] == pytest.approx(days, abs=0.005)
        assert row["mean_monetary_total"] == pytest.approx(spend, abs=0.005)


def test_master_segments_a_marketer_can_act_on(master_features, master_result):
    """Issue 19: at least four segments, none above 40% but a one-rule segment, each
    homogeneous in what its name promises."""
    summary = master_result.summary()
    json.dumps(summary, allow_nan=False)
    names = master_result.assignments["segment_name"].to_numpy()
    f = {c: master_features[c].to_numpy() for c in
         ["recency_days", "purchase_days", "tenure_days", "monetary_total"]}
    profiles = master_result.profiles.set_index("segment_name")
    assert len(profiles) >= 4

    # Only Lost is above 40%, and the summary states its one rule, which every member meets
    # and no other customer does.
    large = [name for name, row in profiles.iterrows() if row["customer_share"] > 0.4]
    assert large == ["Lost"]
    assert summary["large_segments"] == [{
        "segment_name": "Lost", "customers": 12_054, "customer_share": 0.5114,
        "rule": "A single purchase day, more than 330 days ago"}]
    meets = (f["purchase_days"] == 1) & (f["recency_days"] > 330)
    assert ((names == "Lost") == meets).all()
    # (and, on master, none of them bought in the last 12 months)
    assert f["recency_days"][names == "Lost"].min() > 365

    # Each segment's members are inside the recency range its rule states.
    rules = {r["segment_name"]: r for r in summary["segment_rules"]}
    for name in profiles.index:
        recency = f["recency_days"][names == name]
        low, high = rules[name]["recency_days_min"], rules[name]["recency_days_max"]
        assert recency.min() >= low, name
        assert high is None or recency.max() <= high, name
    assert summary["rule_thresholds"] == {"typical_interval_days": 82.5,
                                          "active_within_days": 165,
                                          "lapsed_after_days": 330, "high_spend_from": 106.08}

    # Names consistent with the profiles.
    mean_spend = profiles["mean_monetary_total"]
    assert mean_spend.idxmax() == "Champions"
    assert mean_spend["Need attention"] > mean_spend["About to sleep"]
    assert mean_spend["At risk"] > mean_spend["Hibernating"]
    high = f["monetary_total"] >= f["monetary_total"].mean()
    assert high[np.isin(names, ["Need attention", "At risk"])].all()
    assert not high[np.isin(names, ["About to sleep", "Hibernating"])].any()
    assert (f["purchase_days"][np.isin(names, ["Loyal", "At risk", "Hibernating",
                                                "Champions"])] >= 2).all()
    # No New on master: every first purchase was in Q1 1997.
    assert "New" not in profiles.index and f["tenure_days"].min() > 165
    assert rules["New"]["customers"] == 0 and rules["New"]["segment_rank"] is None

    # How the rules split the clusters: the champion cluster's lapsed members are not
    # Champions, and the old "Need attention" cluster (recency 1..544 days) is split.
    clusters = summary["clusters"]
    assert [c["customers"] for c in clusters] == [3_406, 6_110, 14_054]
    assert clusters[0]["champion_cluster"]
    assert clusters[0]["segments"] == {"Champions": 2_912, "Need attention": 426, "At risk": 65,
                                       "About to sleep": 3}
    assert clusters[1]["segments"] == {"Need attention": 770, "Loyal": 2_201, "At risk": 837,
                                       "About to sleep": 1_427, "Hibernating": 860, "Lost": 15}


def test_master_new_customers_make_a_new_segment(master_features, master_result):
    # Customers whose first purchase is in the last 165 days (here: June 1998) are New, and
    # nobody else moves.
    extra = master_features.head(40).copy()
    extra["customer_id"] = [f"new-{i:02d}" for i in range(40)]
    extra["tenure_days"] = extra["recency_days"] = np.arange(40) + 1
    bought = pd.Timestamp("1998-07-01") - pd.to_timedelta(extra["recency_days"], unit="D")
    extra["first_purchase_date"] = extra["last_purchase_date"] = bought.astype(
        master_features["first_purchase_date"].dtype)
    extra["purchase_days"] = extra["orders"] = 1
    extra["repeat_purchases"] = extra["frequency"] = extra["recency"] = 0
    extra["avg_days_between_purchases"] = np.nan
    extra["T"] = extra["tenure_days"] - 1
    extra["monetary_total"] = extra["monetary_avg_per_purchase"] = 15.0 + np.arange(40)
    result = segment_customers(pd.concat([master_features, extra], ignore_index=True))
    names = result.assignments.set_index("customer_id")["segment_name"]
    assert (names[extra["customer_id"]] == "New").all()
    assert int((names == "New").sum()) == 40
    profiles = result.profiles.set_index("segment_name")
    assert profiles.loc["New", "recency_status"] == "active"
    assert profiles.loc["New", "median_tenure_days"] <= 165
    before = master_result.assignments.set_index("customer_id")["segment_name"]
    assert (names[before.index] == before).mean() > 0.99  # the clusters refit, the rules hold


def test_master_two_runs_identical_whatever_the_row_order(master_features, master_result):
    shuffled = master_features.sample(frac=1.0, random_state=1)
    again = segment_customers(shuffled)
    by_id = again.assignments.set_index("customer_id").loc[
        master_result.assignments["customer_id"]].reset_index()
    pd.testing.assert_frame_equal(by_id, master_result.assignments)
    assert again.k_selection == master_result.k_selection


def test_master_documented_skewness(master_features):
    from scipy.stats import skew

    documented = {"recency_days": (-0.85, -1.99), "purchase_days": (10.54, 1.46),
                  "monetary_total": (17.65, 0.47)}
    for column, (raw, logged) in documented.items():
        values = master_features[column].to_numpy(dtype=np.float64)
        assert skew(values) == pytest.approx(raw, abs=0.005)
        assert skew(np.log1p(values)) == pytest.approx(logged, abs=0.005)


def test_master_k_moves_customers_between_champions_and_loyal_only(master_features,
                                                                   master_result):
    result = segment_customers(master_features, n_clusters=4)
    profiles = result.profiles.set_index("segment_name")
    three = master_result.profiles.set_index("segment_name")
    assert list(profiles.index) == list(three.index)
    assert profiles.loc["Champions", "customers"] == 2_381  # a smaller, richer champion cluster
    assert profiles.loc["Champions", "mean_monetary_total"] > three.loc["Champions",
                                                                        "mean_monetary_total"]
    assert (profiles.loc["Champions", "customers"] + profiles.loc["Loyal", "customers"]
            == three.loc["Champions", "customers"] + three.loc["Loyal", "customers"])
    others = [n for n in profiles.index if n not in ("Champions", "Loyal")]
    pd.testing.assert_series_equal(profiles.loc[others, "customers"],
                                   three.loc[others, "customers"])
    assert int(profiles["customers"].sum()) == MASTER_CUSTOMERS


def test_master_rank_order_follows_later_revenue():
    """The documented value order: segments as of 1998-01-01, revenue per customer in the
    file's remaining six months."""
    if not MASTER.exists():
        pytest.skip(f"{MASTER} not present")
    transactions = read_cdnow()
    cut = pd.Timestamp("1998-01-01")
    result = segment_customers(customer_features(transactions[transactions["order_date"] < cut],
                                                 cut))
    later = transactions[transactions["order_date"] >= cut].groupby("customer_id")["amount"].sum()
    revenue = result.assignments["customer_id"].map(later).fillna(0.0)
    per_customer = revenue.groupby(result.assignments["segment_name"]).mean()
    documented = {"Champions": 103.33, "Need attention": 35.51, "Loyal": 23.80, "At risk": 13.63,
                  "About to sleep": 14.40, "Hibernating": 6.95, "Lost": 3.91}
    assert list(result.profiles["segment_name"]) == list(documented)
    for name, value in documented.items():
        assert per_customer[name] == pytest.approx(value, abs=0.005)
