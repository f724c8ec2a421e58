"""Segments as fit + score + aggregates (issue 18): what the Spark path relies on.

The Lambda path (``segment_customers``) is fit on every customer, score every customer,
aggregate; test_segments.py pins its outputs. These tests check the pieces: a fit that survives
JSON, scores that do not depend on the batch, aggregates from the scored rows, and a fit on a
stratified sample that names all customers sensibly.
"""

import json

import numpy as np
import pandas as pd
import pytest

from cdnow.domain.features import FEATURE_COLUMNS, customer_features, default_analysis_date
from cdnow.domain.segments import (
    SCORE_COLUMNS,
    SEGMENT_NAMES,
    SEGMENT_TABLE_COLUMNS,
    SegmentFit,
    fit_segments,
    rfm_grid,
    sample_stratum,
    score_segments,
    segment_customers,
    segmentation_from_scores,
    stratified_sample,
)

from cdnow_offline.datasets import MASTER, SAMPLE, read_cdnow

RESULT_FRAMES = ["assignments", "profiles", "rfm_grid", "profile_index", "clusters"]


def cdnow_features(path) -> pd.DataFrame:
    if not path.exists():
        pytest.skip(f"{path} not present")
    transactions = read_cdnow(path)
    return customer_features(transactions, default_analysis_date(transactions))


@pytest.fixture(scope="module", params=["master", "sample"])
def cdnow(request):
    """(customer_features, segment_customers' result, the fit on every customer) per file."""
    features = cdnow_features(MASTER if request.param == "master" else SAMPLE)
    return features, segment_customers(features), fit_segments(features)


@pytest.fixture(scope="module")
def master():
    features = cdnow_features(MASTER)
    return features, segment_customers(features)


def through_json(fit: SegmentFit) -> SegmentFit:
    return SegmentFit.from_dict(json.loads(json.dumps(fit.to_dict(), allow_nan=False)))


def by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("customer_id").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# The Lambda path is fit + score + aggregates

def test_fit_then_score_gives_segment_customers_assignments(cdnow):
    features, result, fit = cdnow
    scored = score_segments(features, fit)
    assert list(scored.columns) == SEGMENT_TABLE_COLUMNS
    pd.testing.assert_frame_equal(scored, result.assignments, check_exact=True)
    with_cluster = score_segments(features, fit, with_cluster=True)
    pd.testing.assert_frame_equal(with_cluster[SEGMENT_TABLE_COLUMNS], scored)
    np.testing.assert_array_equal(with_cluster["cluster"].to_numpy(), result.cluster_of_customer)
    # What the fit holds is what the result reports.
    assert fit.k_selection == result.k_selection
    assert fit.n_clusters == result.n_clusters
    assert fit.thresholds == result.thresholds
    assert list(fit.segment_names) == list(result.profiles["segment_name"])
    assert fit.fitted_customers == len(features)
    assert list(result.clusters["champion_cluster"]) == [
        c == fit.champion_cluster for c in range(fit.n_clusters)]


def test_aggregates_from_scored_rows_in_any_order(cdnow):
    features, result, fit = cdnow
    scored = score_segments(features, fit, with_cluster=True).sample(frac=1.0, random_state=4)
    again = segmentation_from_scores(features.sample(frac=1.0, random_state=5), scored, fit)
    for name in ["profiles", "rfm_grid", "profile_index", "clusters"]:
        pd.testing.assert_frame_equal(getattr(again, name), getattr(result, name),
                                      check_exact=True)
    # Assignments keep the scored rows' order.
    pd.testing.assert_frame_equal(again.assignments,
                                  scored[SEGMENT_TABLE_COLUMNS].reset_index(drop=True))
    assert json.dumps(again.summary()) == json.dumps(result.summary())


def test_the_decomposable_aggregates_add_up_over_partitions(master):
    """What a Spark group-by computes per partition and adds: counts and sums per segment and
    per chart cell give the profiles' sizes, revenue and means and the rfm_grid."""
    features, result = master
    fit = fit_segments(features)
    columns = ["customers", "revenue_cents", *[f"sum_{f}" for f in FEATURE_COLUMNS],
               *[f"known_{f}" for f in FEATURE_COLUMNS]]
    totals = pd.DataFrame(0.0, index=pd.Index(SEGMENT_NAMES, name="segment_name"),
                          columns=columns)
    grid = np.zeros(36, dtype=np.int64)
    shuffled = features.sample(frac=1.0, random_state=2)
    for rows in np.array_split(np.arange(len(shuffled)), 7):
        batch = shuffled.iloc[rows]
        scored = score_segments(batch, fit)
        values = batch[FEATURE_COLUMNS].astype(np.float64).reset_index(drop=True)
        frame = pd.concat([scored["segment_name"], values], axis=1)
        frame["cents"] = np.round(values["monetary_total"] * 100)
        grouped = frame.groupby("segment_name")
        part = pd.DataFrame({"customers": grouped.size(), "revenue_cents": grouped["cents"].sum()})
        for f in FEATURE_COLUMNS:
            part[f"sum_{f}"] = grouped[f].sum()
            part[f"known_{f}"] = grouped[f].count()
        totals = totals.add(part.reindex(totals.index, fill_value=0.0), fill_value=0.0)
        grid += np.bincount(sample_stratum(batch), minlength=36)
    profiles = result.profiles.set_index("segment_name")
    totals = totals.loc[profiles.index]
    np.testing.assert_array_equal(totals["customers"].to_numpy(), profiles["customers"])
    np.testing.assert_array_equal(totals["revenue_cents"].to_numpy(), profiles["revenue_cents"])
    for f in FEATURE_COLUMNS:
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (totals[f"sum_{f}"] / totals[f"known_{f}"]).to_numpy()
        np.testing.assert_allclose(means, profiles[f"mean_{f}"].to_numpy(), rtol=1e-12)
    np.testing.assert_array_equal(grid, result.rfm_grid["customers"].to_numpy())
    np.testing.assert_array_equal(grid, rfm_grid(features)["customers"].to_numpy())


# ---------------------------------------------------------------------------------------------
# The fit as JSON

def test_fit_round_trips_through_json_and_scores_identically(cdnow):
    features, result, fit = cdnow
    text = json.dumps(fit.to_dict(), allow_nan=False)
    back = SegmentFit.from_dict(json.loads(text))
    assert back.to_dict() == fit.to_dict()
    assert json.dumps(back.to_dict(), allow_nan=False) == text
    # Every float to the bit.
    for name in ["center", "scale", "centroids"]:
        np.testing.assert_array_equal(getattr(back, name), getattr(fit, name))
        assert getattr(back, name).tobytes() == getattr(fit, name).tobytes()
    assert back.thresholds == fit.thresholds
    pd.testing.assert_frame_equal(score_segments(features, back, with_cluster=True),
                                  score_segments(features, fit, with_cluster=True),
                                  check_exact=True)
    again = segmentation_from_scores(features, score_segments(features, back, with_cluster=True),
                                     back)
    assert json.dumps(again.summary()) == json.dumps(result.summary())


def test_from_dict_refuses_what_it_cannot_score_with(cdnow):
    _, _, fit = cdnow
    data = fit.to_dict()
    with pytest.raises(ValueError, match="not a segment fit"):
        SegmentFit.from_dict({**data, "model": "churn"})
    with pytest.raises(ValueError, match="not a segment fit"):
        SegmentFit.from_dict({**data, "format": 99})
    with pytest.raises(ValueError, match="inconsistent"):
        SegmentFit.from_dict({**data, "cluster_of_label": [0] * len(data["cluster_of_label"])})
    with pytest.raises(ValueError, match="inconsistent"):
        SegmentFit.from_dict({**data, "segment_names": ["Champions", "Whales"]})
    with pytest.raises(ValueError, match="inconsistent"):
        SegmentFit.from_dict({**data, "center": data["center"][:2]})


# ---------------------------------------------------------------------------------------------
# Scoring is per row

def test_scoring_does_not_depend_on_the_batch(cdnow):
    features, result, fit = cdnow
    everyone = by_customer(score_segments(features, fit, with_cluster=True))
    shuffled = features.sample(frac=1.0, random_state=8)
    # Uneven batches, an empty one and single rows, as Spark partitions can be.
    cuts = sorted([0, 0, 1, 2, 17, 1000, len(features) // 3, len(features) - 1, len(features)])
    batches = [shuffled.iloc[a:b] for a, b in zip(cuts, cuts[1:])]
    parts = [score_segments(batch, fit, with_cluster=True) for batch in batches]
    for batch, part in zip(batches, parts):
        assert list(part["customer_id"]) == list(batch["customer_id"].astype("str"))
    pd.testing.assert_frame_equal(by_customer(pd.concat(parts, ignore_index=True)), everyone,
                                  check_exact=True)
    # Only the scoring columns are read.
    pd.testing.assert_frame_equal(score_segments(features[SCORE_COLUMNS], fit),
                                  result.assignments, check_exact=True)


def test_an_empty_batch_scores_to_an_empty_table(cdnow):
    features, result, fit = cdnow
    empty = score_segments(features.head(0), fit, with_cluster=True)
    assert list(empty.columns) == [*SEGMENT_TABLE_COLUMNS, "cluster"]
    assert len(empty) == 0
    expected = result.assignments.dtypes.to_dict()
    assert {c: empty[c].dtype for c in SEGMENT_TABLE_COLUMNS} == expected
    assert empty["cluster"].dtype == np.int64


def test_score_errors(cdnow):
    features, _, fit = cdnow
    with pytest.raises(ValueError, match="tenure_days"):
        score_segments(features.drop(columns="tenure_days"), fit)
    with pytest.raises(ValueError, match="duplicate"):
        score_segments(pd.concat([features.head(3), features.head(1)]), fit)
    missing = features.head(5).copy()
    missing.loc[missing.index[0], "monetary_total"] = np.nan
    with pytest.raises(ValueError, match="must not be missing"):
        score_segments(missing, fit)
    scored = score_segments(features, fit)
    with pytest.raises(ValueError, match="with_cluster"):
        segmentation_from_scores(features, scored, fit)
    scored = score_segments(features.iloc[1:], fit, with_cluster=True)
    with pytest.raises(ValueError, match="same customers"):
        segmentation_from_scores(features, scored, fit)


def test_a_segment_the_fit_did_not_see_ranks_after_the_fitted_ones():
    """A fit without new customers (a sample can miss a rare segment) still scores one: New
    ranks after every fitted segment and the fitted ranks stay as they were."""
    day = pd.Timestamp("1998-01-01")
    rows = []
    for i in range(60):
        repeat = i % 2 == 0
        last = day - pd.Timedelta(days=1 + (i % 3) * 200)
        for k in range(6 if repeat else 1):
            rows.append((f"c{i:03d}", last - pd.Timedelta(days=30 * k + 400 * (not repeat)), 1,
                         20.0 + i))
    for i in range(5):  # first and only purchase last week
        rows.append((f"new{i}", day - pd.Timedelta(days=3 + i), 1, 12.0))
    transactions = pd.DataFrame(rows, columns=["customer_id", "order_date", "quantity", "amount"])
    features = customer_features(transactions, day)
    new = features["customer_id"].str.startswith("new").to_numpy()
    fit = fit_segments(features[~new], n_clusters=2)
    assert "New" not in fit.segment_names
    ranks = fit.segment_ranks()
    assert [ranks[name] for name in fit.segment_names] == list(range(len(fit.segment_names)))
    assert ranks["New"] >= len(fit.segment_names)
    scored = score_segments(features, fit, with_cluster=True)
    assert (scored["segment_name"][new] == "New").all()
    assert (scored["segment_rank"][new] == ranks["New"]).all()
    pd.testing.assert_frame_equal(scored[~new].reset_index(drop=True),
                                  score_segments(features[~new], fit, with_cluster=True))
    result = segmentation_from_scores(features, scored, fit)
    assert list(result.profiles["segment_name"])[-1] == "New"
    assert list(result.profiles["segment_rank"]) == sorted(result.profiles["segment_rank"])
    assert int(result.profiles["customers"].sum()) == len(features)


# ---------------------------------------------------------------------------------------------
# Fitting on a sample

def test_stratified_sample_keeps_every_cell(master):
    features, _ = master
    size = len(features) // 10
    sample = stratified_sample(features, size, random_state=0)
    assert sample["customer_id"].is_unique
    assert sample["customer_id"].isin(features["customer_id"]).all()
    assert size - 36 <= len(sample) <= size + 36
    cells = np.bincount(sample_stratum(features), minlength=36)
    drawn = np.bincount(sample_stratum(sample), minlength=36)
    assert ((drawn > 0) == (cells > 0)).all()
    assert np.abs(drawn - cells * len(sample) / len(features)).max() <= 1.0
    # The same customers give the same sample whatever their row order.
    again = stratified_sample(features.sample(frac=1.0, random_state=3), size, random_state=0)
    pd.testing.assert_frame_equal(again, sample)
    assert len(stratified_sample(features.head(50), size)) == 50


@pytest.mark.parametrize("random_state", [0, 1, 2])
def test_a_fit_on_a_tenth_of_master_names_every_customer_sensibly(master, random_state):
    features, full = master
    sample = stratified_sample(features, len(features) // 10, random_state=random_state)
    fit = through_json(fit_segments(sample, random_state=random_state))
    assert fit.fitted_customers == len(sample)
    scored = score_segments(features, fit, with_cluster=True)
    result = segmentation_from_scores(features, scored, fit)

    # The same k, the same segments in the same order, every one of them populated.
    assert fit.n_clusters == full.n_clusters == 3
    assert list(fit.segment_names) == list(full.profiles["segment_name"])
    assert list(result.profiles["segment_name"]) == list(full.profiles["segment_name"])
    assert (result.profiles["customers"] > 0).all()
    assert int(result.profiles["customers"].sum()) == len(features)
    # Thresholds near the full fit's (I = 82.5 days, M* = 106.08), shares within 2 points.
    assert fit.thresholds.interval_days == pytest.approx(82.5, abs=5.0)
    assert fit.thresholds.high_spend == pytest.approx(106.08, rel=0.1)
    shares = result.profiles.set_index("segment_name")["customer_share"]
    full_shares = full.profiles.set_index("segment_name")["customer_share"]
    assert (shares - full_shares).abs().max() < 0.02
    revenue = result.profiles.set_index("segment_name")["revenue_share"]
    full_revenue = full.profiles.set_index("segment_name")["revenue_share"]
    assert (revenue - full_revenue).abs().max() < 0.03
    # Most customers keep their name; the champion cluster is still the big spenders.
    assert (scored["segment_name"] == full.assignments["segment_name"]).mean() > 0.97
    champion = result.clusters[result.clusters["champion_cluster"]].iloc[0]
    assert champion["cluster"] == 0
    assert champion["mean_monetary_total"] == pytest.approx(
        full.clusters.loc[full.clusters["champion_cluster"], "mean_monetary_total"].iloc[0],
        rel=0.1)
    # Each named segment still holds only customers inside its stated recency range.
    rules = {r["segment_name"]: r for r in result.segment_rules()}
    recency = features["recency_days"].to_numpy()
    for name in result.profiles["segment_name"]:
        members = recency[(scored["segment_name"] == name).to_numpy()]
        assert members.min() >= rules[name]["recency_days_min"]
        high = rules[name]["recency_days_max"]
        assert high is None or members.max() <= high
    json.dumps(result.summary(), allow_nan=False)
