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
    SegmentationResult,
    name_segment,
    recency_status,
    rfm_grid,
    segment_customers,
    segment_migration,
    silhouettes,
    unique_names,
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
    assert result.n_clusters == 6 == len(result.profiles)
    assert [r["k"] for r in result.k_selection if r["chosen"]] == [6]
    assert [r["k"] for r in result.k_selection] == list(range(2, 9))


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
def test_names_unique_and_never_indices(features, n_clusters):
    result = segment_customers(features, n_clusters=n_clusters)
    names = list(result.profiles["segment_name"])
    assert len(names) == n_clusters == len(set(names))
    for name in names:
        base = name.split(" (")[0]
        assert base in segments.SEGMENT_NAMES, name
    assert names[0].startswith("Champions")
    assert set(result.assignments["segment_name"]) == set(names)
    ranks = dict(zip(result.profiles["segment_name"], result.profiles["segment_rank"]))
    assert (result.assignments["segment_rank"]
            == result.assignments["segment_name"].map(ranks)).all()


def test_lapsed_top_segment_is_champions_with_its_status():
    # Big repeat spenders who stopped buying a year ago, and recent one-time small buyers.
    rows = []
    for i in range(30):
        for week in range(10):
            rows.append((f"big-{i:02d}", ANALYSIS_DATE - pd.Timedelta(days=365 + 7 * week + i % 3),
                         1, 100.0 + i))
        rows.append((f"small-{i:02d}", ANALYSIS_DATE - pd.Timedelta(days=1 + i % 5), 1, 5.0 + i % 4))
    transactions = pd.DataFrame(rows, columns=["customer_id", "order_date", "quantity", "amount"])
    result = segment_customers(customer_features(transactions, ANALYSIS_DATE), n_clusters=2)
    by_group = result.assignments.groupby(group_of(result.assignments))["segment_name"].unique()
    assert list(by_group["big"]) == ["Champions (lapsed)"]
    assert list(by_group["small"]) == ["New"]


# ---------------------------------------------------------------------------------------------
# Naming rules

def test_recency_status_thresholds():
    # I = 82.5 days (CDNOW master): active <= 165, lapsing <= 330, lapsed beyond.
    assert recency_status(165.0, 82.5) == "active"
    assert recency_status(165.5, 82.5) == "lapsing"
    assert recency_status(330.0, 82.5) == "lapsing"
    assert recency_status(330.5, 82.5) == "lapsed"


@pytest.mark.parametrize("status, repeat, high_spend, new, expected", [
    ("active", True, False, False, "Loyal"),
    ("active", True, True, True, "Loyal"),
    ("active", False, False, True, "New"),
    ("active", False, True, False, "Promising"),
    ("lapsing", True, False, False, "Need attention"),
    ("lapsing", False, True, False, "Need attention"),
    ("lapsing", False, False, True, "About to sleep"),
    ("lapsed", True, True, False, "At risk"),
    ("lapsed", False, True, False, "At risk"),
    ("lapsed", True, False, False, "Hibernating"),
    ("lapsed", False, False, False, "Lost"),
])
def test_name_table(status, repeat, high_spend, new, expected):
    assert name_segment(status, repeat=repeat, high_spend=high_spend, new=new) == expected


def test_repeated_names_are_qualified_in_order():
    names = ["Champions", "Loyal", "Loyal", "Lost", "Lost", "Lost"]
    assert unique_names(names) == [
        "Champions", "Loyal", "Loyal (tier 2)", "Lost", "Lost (tier 2)", "Lost (tier 3)"]


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
    assert list(profiles["segment_name"]) == ["Champions", "Need attention", "Lost"]
    assert list(profiles["recency_status"]) == ["active", "lapsing", "lapsed"]


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


def test_master_four_segments_read_right(master_features):
    result = segment_customers(master_features, n_clusters=4)
    profiles = result.profiles.set_index("segment_name")
    assert list(profiles.index) == ["Champions", "Loyal", "Hibernating", "Lost"]
    # Loyal: repeat buyers still inside their rhythm; Hibernating: lapsed repeat buyers below
    # the average spend; Lost: lapsed one-time buyers.
    assert profiles.loc["Loyal", "median_recency_days"] <= 165
    assert profiles.loc["Hibernating", "median_purchase_days"] >= 2
    assert profiles.loc["Lost", "median_purchase_days"] == 1
    assert int(profiles["customers"].sum()) == MASTER_CUSTOMERS
