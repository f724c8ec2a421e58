import numpy as np
import pandas as pd
import pytest

from cdnow.features import customer_features
from cdnow.segments import (
    PROFILE_FEATURES,
    CustomerSegmenter,
    _name_clusters,
    segment_customers,
)

ANALYSIS_DATE = pd.Timestamp("1998-01-01")
BOX_NAMES = {"Champions", "New or promising", "At risk", "Lost"}


def separated_transactions() -> pd.DataFrame:
    """Four obviously different groups of 40 customers (ids say which group)."""
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


def test_best_group_is_champions_and_each_group_gets_its_box(features):
    assignments, _ = segment_customers(features, n_clusters=4, random_state=0)
    group = assignments["customer_id"].str.split("-").str[0]
    by_group = assignments.groupby(group)["segment_name"].unique()
    # Overall median recency sits between the recent (< 10 days) and the old (> 300 days)
    # halves; overall mean purchase days = (12 + 1 + 12 + 1) / 4 = 6.5.
    assert list(by_group["champion"]) == ["Champions"]
    assert list(by_group["newbie"]) == ["New or promising"]
    assert list(by_group["slipping"]) == ["At risk"]
    assert list(by_group["gone"]) == ["Lost"]


def test_two_fits_give_identical_labels(features):
    first = CustomerSegmenter(n_clusters=4, random_state=0).fit(features).predict(features)
    second = CustomerSegmenter(n_clusters=4, random_state=0).fit(features).predict(features)
    np.testing.assert_array_equal(first, second)


def test_names_do_not_depend_on_kmeans_numbering(features):
    # Different seeds number the same clusters differently; names follow the profiles.
    labels = [CustomerSegmenter(n_clusters=4, random_state=seed).fit(features).predict(features)
              for seed in (0, 1, 2)]
    for other in labels[1:]:
        np.testing.assert_array_equal(labels[0], other)


@pytest.mark.parametrize("n_clusters", [2, 4, 6])
def test_names_unique_and_not_indices(features, n_clusters):
    segmenter = CustomerSegmenter(n_clusters=n_clusters, random_state=0).fit(features)
    names = segmenter.segment_names_
    assert len(names) == n_clusters == len(set(names))
    for name in names:
        assert not name.strip().isdigit()
        assert any(name.startswith(box) for box in BOX_NAMES | {"Loyal"})
    assert set(segmenter.predict(features)) <= set(names)


def test_same_box_clusters_are_qualified_by_value_rank():
    boxes = ["Champions", "Champions", "Lost", "Lost", "Lost", "At risk"]
    assert _name_clusters(boxes) == [
        "Champions", "Loyal", "Lost", "Lost (low value)", "Lost (value tier 3)", "At risk"]


def test_profiles_add_up(features):
    assignments, profiles = segment_customers(features, n_clusters=3, random_state=0)
    assert list(assignments.columns) == ["customer_id", "segment_name"]
    assert list(assignments["customer_id"]) == list(features["customer_id"])

    expected_columns = ["segment_name", "customers", "customer_share", "revenue",
                        "revenue_share"]
    for f in PROFILE_FEATURES:
        expected_columns += [f"mean_{f}", f"median_{f}"]
    assert list(profiles.columns) == expected_columns
    assert profiles["segment_name"].is_unique

    assert profiles["customers"].sum() == len(features)
    # To the cent: compare integer cents.
    assert round(profiles["revenue"].sum() * 100) == round(features["monetary_total"].sum() * 100)
    assert profiles["customer_share"].sum() == pytest.approx(1.0)
    assert profiles["revenue_share"].sum() == pytest.approx(1.0)
    counts = assignments["segment_name"].value_counts()
    for row in profiles.itertuples():
        assert row.customers == counts.get(row.segment_name, 0)
        members = features[assignments["segment_name"].to_numpy() == row.segment_name]
        assert row.revenue == pytest.approx(members["monetary_total"].sum(), abs=0.005)
        assert row.median_recency_days == members["recency_days"].median()


def test_profiles_sorted_by_value_rank(features):
    _, profiles = segment_customers(features, n_clusters=4, random_state=0)
    # Best first: Champions lead, Lost close.
    assert profiles["segment_name"].iloc[0] == "Champions"
    assert profiles["segment_name"].iloc[-1] == "Lost"


def test_too_few_customers_is_an_error(features):
    with pytest.raises(ValueError, match="cannot be split"):
        segment_customers(features.head(3), n_clusters=4)
