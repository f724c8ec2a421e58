"""The value model split into fit and score (issue 18's Spark path): the Value Lambda fits on a
sample of customers and saves a ValueFit; scoring every customer runs per partition with the
same numpy code. The Lambda path is fit + score of every customer and must not change."""

import json

import numpy as np
import pandas as pd
import pytest

from cdnow.domain import clv
from cdnow.domain.clv import (
    CUSTOMER_VALUE_COLUMNS,
    VALUE_INPUT_COLUMNS,
    ValueFit,
    _expected_alive_by_quadrature,
    _power_product_integral,
    _series_length,
    customer_value,
    fit_value,
    score_value,
    segment_sample_size,
    segment_value_from_sample,
    segment_value_intervals,
    value_from_inputs,
    value_inputs,
    value_inputs_from,
    value_totals,
)
from cdnow.domain.features import FEATURE_COLUMNS, customer_features
from cdnow_offline.datasets import MASTER, SAMPLE, read_cdnow

ANALYSIS_DATE = pd.Timestamp("1998-07-01")
MODELS = ("bgnbd", "mbgnbd", "pnbd")
ORDER_LINES = MASTER.parents[1] / "tests" / "data" / "inputs" / "online_retail_ii.csv"


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return read_cdnow(SAMPLE)


@pytest.fixture(scope="module")
def master() -> pd.DataFrame:
    if not MASTER.exists():
        pytest.skip(f"{MASTER} not present")
    return read_cdnow(MASTER)


@pytest.fixture(scope="module")
def master_inputs(master) -> pd.DataFrame:
    return value_inputs(master, ANALYSIS_DATE)


@pytest.fixture(scope="module")
def master_fits(master_inputs) -> dict:
    return {model: fit_value(master_inputs, model=model) for model in MODELS}


def assert_same_rows(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """Equal to the bit: values, dtypes, order."""
    pd.testing.assert_frame_equal(left.reset_index(drop=True), right.reset_index(drop=True),
                                  check_exact=True)


# ----------------------------------------------------------------------------------------------
# the Lambda path is fit + score
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_fit_then_score_is_customer_value_on_the_sample(sample, model):
    table, metrics = customer_value(sample, ANALYSIS_DATE, model=model)
    inputs = value_inputs(sample, ANALYSIS_DATE)
    fit = fit_value(inputs, model=model)
    scored = score_value(inputs, fit)
    assert list(scored.columns) == CUSTOMER_VALUE_COLUMNS
    assert_same_rows(scored, table)
    # The metrics are the fit's entries and the scored customers' totals, in the same order.
    totals = value_totals(scored, inputs)
    rebuilt = {"analysis_date": "1998-07-01", "n_customers": totals.pop("n_customers"),
               "n_repeat_buyers": totals.pop("n_repeat_buyers"), **fit.metrics(), **totals}
    assert list(rebuilt.items()) == list(metrics.items())
    # Fitted on the transaction log directly: the same fit, with its analysis date.
    from_log = fit_value(sample, ANALYSIS_DATE, model=model)
    assert from_log.analysis_date == "1998-07-01"
    assert from_log == ValueFit.from_dict({**fit.to_dict(), "analysis_date": "1998-07-01"})


def test_fit_then_score_is_customer_value_on_master(master, master_inputs, master_fits):
    # The model the Value step chooses on master (test_clv), with a margin and a start point.
    start = {"r": 0.55, "alpha": 12.0, "s": 0.4, "beta": 10.0}
    table, metrics = customer_value(master, ANALYSIS_DATE, model="pnbd", margin=0.3, start=start)
    fit = fit_value(master_inputs, model="pnbd", margin=0.3, start=start)
    assert_same_rows(score_value(master_inputs, fit), table)
    assert metrics["margin"] == 0.3 and metrics["pnbd_r"] == fit.purchase_params["r"]
    assert fit.fitted_customers == fit.represented_customers == 23570
    # Without a margin the value is revenue, and clv_12m scales with the margin.
    revenue = score_value(master_inputs, master_fits["pnbd"])
    np.testing.assert_allclose(table["clv_12m"], 0.3 * revenue["clv_12m"], rtol=1e-6)


def test_value_from_inputs_with_segments_is_unchanged(sample):
    features = customer_features(sample, ANALYSIS_DATE)
    segments = pd.DataFrame({"customer_id": features["customer_id"],
                             "segment_name": np.where(features["recency_days"] <= 180, "recent", "older")})
    inputs = value_inputs(sample, ANALYSIS_DATE)
    table, metrics = value_from_inputs(inputs, model="pnbd", segments=segments)
    fit = fit_value(inputs, model="pnbd")
    assert metrics["segment_value"] == segment_value_intervals(table, segments, fit, inputs)


# ----------------------------------------------------------------------------------------------
# the fit as JSON
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_the_fit_round_trips_through_json_and_scores_the_same(master_inputs, master_fits, model):
    fit = master_fits[model]
    text = json.dumps(fit.to_dict(), allow_nan=False)
    again = ValueFit.from_dict(json.loads(text))
    assert again == fit and again.to_dict() == fit.to_dict()
    assert_same_rows(score_value(master_inputs, again), score_value(master_inputs, fit))
    saved = json.loads(text)
    assert saved["purchase_model"] == model and len(saved["purchase_log_covariance"]) == 4
    assert set(saved["gamma_gamma_params"]) == {"p", "q", "v"}
    assert saved["time_unit_days"] == 7.0 and saved["margin"] == 1.0


def test_a_saved_fit_is_checked_when_read(master_fits):
    saved = master_fits["bgnbd"].to_dict()
    with pytest.raises(ValueError, match="unknown key"):
        ValueFit.from_dict({**saved, "extra": 1})
    with pytest.raises(ValueError, match="missing"):
        ValueFit.from_dict({k: v for k, v in saved.items() if k != "margin"})
    with pytest.raises(ValueError, match="parameters must be"):
        ValueFit.from_dict({**saved, "purchase_model": "pnbd"})  # BG/NBD's a, b are not s, beta
    with pytest.raises(ValueError, match="unknown purchase model"):
        ValueFit.from_dict({**saved, "purchase_model": "nbd"})


# ----------------------------------------------------------------------------------------------
# scoring is partition independent
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_scoring_in_shuffled_batches_equals_scoring_all(master_inputs, master_fits, model):
    fit = master_fits[model]
    whole = score_value(master_inputs, fit)
    rng = np.random.default_rng(18)
    shuffled = master_inputs.iloc[rng.permutation(len(master_inputs))]
    # Uneven batches, an empty one and single rows among them, as Spark partitions come.
    cuts = np.unique(np.r_[0, 0, 1, 2, np.sort(rng.choice(len(shuffled), 40, replace=False)),
                           len(shuffled)])
    parts = [score_value(shuffled.iloc[a:b], fit) for a, b in zip(cuts[:-1], cuts[1:])]
    empty = score_value(shuffled.iloc[:0], fit)
    assert list(empty.columns) == CUSTOMER_VALUE_COLUMNS and len(empty) == 0
    together = pd.concat(parts + [empty]).set_index("customer_id").loc[whole["customer_id"]]
    assert_same_rows(together.reset_index(), whole)
    # One customer at a time: the customers with the most purchases, the longest and shortest
    # histories, and a random few.
    picks = np.unique(np.r_[master_inputs["frequency"].nlargest(5).index,
                            master_inputs["T"].nlargest(3).index, master_inputs["T"].nsmallest(3).index,
                            rng.choice(len(master_inputs), 30, replace=False)])
    alone = pd.concat([score_value(master_inputs.iloc[[i]], fit) for i in picks])
    assert_same_rows(alone, whole.iloc[picks])


@pytest.mark.parametrize("model", MODELS)
def test_alive_and_expected_purchases_at_once_are_the_one_horizon_calls(master_inputs, master_fits, model):
    """score_value asks P(alive) once for its 13 horizons: the same P(alive), to the bit, as
    p_alive, and per horizon what expected_purchases (the one-horizon case) gives."""
    fit = master_fits[model]
    purchases = fit.purchases()
    unit = fit.time_unit_days
    x = master_inputs["frequency"].to_numpy(dtype=float)
    tx = master_inputs["recency"].to_numpy(dtype=float) / unit
    t_end = master_inputs["T"].to_numpy(dtype=float) / unit
    horizons = [0.0, 90 / unit, 52.0, 1000.0]
    alive, expected = purchases.alive_and_expected_purchases(horizons, x, tx, t_end)
    assert expected.shape == (len(x), len(horizons))
    np.testing.assert_array_equal(alive, purchases.p_alive(x, tx, t_end))
    for column, t in enumerate(horizons):
        np.testing.assert_array_equal(expected[:, column], purchases.expected_purchases(t, x, tx, t_end))
    assert (expected[:, 0] == 0).all() and (np.diff(expected, axis=1) >= 0).all()
    none_alive, none_expected = purchases.alive_and_expected_purchases(horizons, x[:0], tx[:0], t_end[:0])
    assert none_alive.shape == (0,) and none_expected.shape == (0, len(horizons))
    with pytest.raises(ValueError, match="non-negative"):
        purchases.alive_and_expected_purchases([-1.0], x, tx, t_end)


def test_the_pareto_nbd_series_of_a_row_does_not_depend_on_the_other_rows():
    # Rows with series of every length up to the quadrature's threshold (above 128 terms numpy's
    # pairwise sum splits by length): alone or together, the same bits. The fits' mode pads
    # each row with its block's longest series and is not (measured: 433 of 4000 rows differ).
    rng = np.random.default_rng(7)
    n = 1000
    e2 = np.exp(rng.uniform(np.log(0.3), np.log(40), n))
    e1 = np.exp(rng.uniform(np.log(0.1), np.log(5), n))
    Q = np.exp(rng.uniform(np.log(0.1), np.log(20), n))
    P = Q * np.exp(rng.uniform(0, np.log(50), n))
    tx = rng.uniform(0, 40, n)
    T = tx + rng.uniform(0, 40, n)
    lengths = _series_length(e2, (P - Q) / (P + tx))
    assert ((lengths > 128) & (lengths <= 150)).sum() > 20 and (lengths < 64).sum() > 100
    together = _power_product_integral(e1, e2, P, Q, tx, T, own_terms=True)
    alone = np.stack([_power_product_integral(e1[[i]], e2[[i]], P[[i]], Q[[i]], tx[[i]], T[[i]],
                                              own_terms=True)[:, 0] for i in range(n)], axis=1)
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_allclose(together, _power_product_integral(e1, e2, P, Q, tx, T), rtol=1e-12)


def test_the_quadrature_fallback_of_a_row_does_not_depend_on_the_other_rows():
    # Its number of nodes comes from the row's own c * s, not from the other rows sharing b + x.
    rng = np.random.default_rng(11)
    x = rng.integers(0, 5, 300).astype(float)
    c = np.exp(rng.uniform(np.log(1e-3), np.log(500), 300))
    together = _expected_alive_by_quadrature(c, 0.5 + x, 0.8, 2.0 + x)
    alone = np.array([_expected_alive_by_quadrature(c[[i]], 0.5 + x[[i]], 0.8, 2.0 + x[[i]])[0]
                      for i in range(300)])
    np.testing.assert_array_equal(together, alone)


# ----------------------------------------------------------------------------------------------
# fitting on a sample
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["bgnbd", "pnbd"])
def test_a_fit_on_a_tenth_of_the_customers_values_all_of_them(master_inputs, master_fits, model):
    full_total = score_value(master_inputs, master_fits[model])["clv_12m"].sum()
    rng = np.random.default_rng(2024)
    uniform = master_inputs.iloc[np.sort(rng.choice(len(master_inputs), len(master_inputs) // 10,
                                                    replace=False))]
    # Stratified by frequency (0, 1, 2-3, 4+ repeat purchases), the repeat buyers over-sampled,
    # each row weighted by stratum size / sample size.
    stratum = np.digitize(master_inputs["frequency"].to_numpy(), [1, 2, 4])
    share = np.array([0.05, 0.12, 0.2, 0.3])
    rows, weights = [], []
    for k in range(4):
        members = np.flatnonzero(stratum == k)
        take = np.sort(rng.choice(members, int(round(share[k] * len(members))), replace=False))
        rows.append(take)
        weights.append(np.full(len(take), len(members) / len(take)))
    stratified = master_inputs.iloc[np.concatenate(rows)]
    for name, fit in [("uniform 10%", fit_value(uniform, model=model)),
                      ("stratified", fit_value(stratified, model=model, weights=np.concatenate(weights)))]:
        total = score_value(master_inputs, fit)["clv_12m"].sum()
        print(f"{model} {name} sample of {fit.fitted_customers} customers: total 12-month CLV of "
              f"all 23,570 ${total:,.0f} vs ${full_total:,.0f} fitted on all ({total / full_total - 1:+.2%})")
        # Measured over 8 uniform 10% samples: BG/NBD -5.7% .. +2.8%, Pareto/NBD -3.5% .. +0.6%
        # (2,357 customers fitted; the error shrinks with the square root of the sample).
        assert total == pytest.approx(full_total, rel=0.05), name
        assert fit.purchase_converged and fit.gamma_gamma_converged
        # The standard errors are the sample's: several times the full fit's.
        ratio = fit.purchase_standard_errors["r"] / master_fits[model].purchase_standard_errors["r"]
        assert 2.0 < ratio < 5.0, (name, ratio)
    assert fit.represented_customers == pytest.approx(len(master_inputs), rel=1e-3)


def test_weights_that_are_all_equal_change_no_estimate(master_inputs):
    tenth = master_inputs.iloc[::10]
    plain = fit_value(tenth)
    weighted = fit_value(tenth, weights=np.full(len(tenth), 10.0))
    for name, value in plain.purchase_params.items():
        assert weighted.purchase_params[name] == pytest.approx(value, rel=1e-6)
    for name, value in plain.gamma_gamma_params.items():
        assert weighted.gamma_gamma_params[name] == pytest.approx(value, rel=1e-6)
    assert weighted.frequency_monetary_corr == pytest.approx(plain.frequency_monetary_corr, rel=1e-9)
    assert weighted.represented_customers == 10.0 * len(tenth)
    with pytest.raises(ValueError, match="weights"):
        fit_value(tenth, weights=np.ones(3))


# ----------------------------------------------------------------------------------------------
# what scoring needs per customer
# ----------------------------------------------------------------------------------------------

def test_customer_features_do_not_determine_the_spend_per_repeat_purchase():
    # $10 then $30 against $30 then $10: the same feature row, monetary values 30 and 10.
    log = pd.DataFrame({"customer_id": ["A", "A", "B", "B"],
                        "order_date": pd.to_datetime(["1997-01-01", "1997-02-01"] * 2),
                        "quantity": [1, 1, 1, 1], "amount": [10.0, 30.0, 30.0, 10.0]})
    features = customer_features(log, "1997-03-01").set_index("customer_id")
    assert features.loc["A", FEATURE_COLUMNS].equals(features.loc["B", FEATURE_COLUMNS])
    inputs = value_inputs(log, "1997-03-01").set_index("customer_id")
    assert inputs["monetary_value"].to_dict() == {"A": 30.0, "B": 10.0}


def spend_sums(transactions: pd.DataFrame, analysis_date) -> tuple[pd.DataFrame, bool]:
    """value_inputs_from's per-customer columns computed from its docstring alone, by group-bys
    as the Spark job computes them: an independent implementation of the definition."""
    features = customer_features(transactions, analysis_date)
    before = transactions[transactions["order_date"] < pd.Timestamp(analysis_date)]
    returns = before["is_return"].to_numpy(dtype=bool) if "is_return" in before else np.zeros(len(before), bool)
    purchases = before[~returns]
    first_day = purchases["customer_id"].map(features.set_index("customer_id")["first_purchase_date"])
    repeat = purchases[purchases["order_date"].dt.normalize() > first_day]
    spend = features.assign(
        repeat_spend=features["customer_id"].map(repeat.groupby("customer_id")["amount"].sum()).fillna(0.0),
        gross_spend=features["customer_id"].map(purchases.groupby("customer_id")["amount"].sum()))
    net_of_returns = "is_return" in transactions and bool(transactions["is_return"].any())
    return spend, net_of_returns


def order_lines() -> pd.DataFrame:
    """online_retail_ii.csv (order lines with cancellations) as the Transform accepts it:
    guest lines excluded, amount = quantity x price to the cent, invoices "C..." returns."""
    lines = pd.read_csv(ORDER_LINES, dtype={"Invoice": str, "Customer ID": str})
    lines = lines[lines["Customer ID"].notna()]
    return pd.DataFrame({
        "customer_id": lines["Customer ID"].str.removesuffix(".0"),
        "order_date": pd.to_datetime(lines["InvoiceDate"]),
        "quantity": lines["Quantity"].astype("int64"),
        "amount": (lines["Quantity"] * lines["Price"]).round(2),
        "is_return": lines["Invoice"].str.startswith("C"),
        "order_id": lines["Invoice"],
    }).reset_index(drop=True)


def with_returns(transactions: pd.DataFrame) -> pd.DataFrame:
    """CDNOW with a return after every 7th purchase row: part of its amount, a week later."""
    bought = transactions.iloc[::7]
    returned = pd.DataFrame({
        "customer_id": bought["customer_id"].to_numpy(),
        "order_date": bought["order_date"].to_numpy() + np.timedelta64(7, "D"),
        "quantity": -np.maximum(bought["quantity"].to_numpy() // 2, 1),
        "amount": -np.round(bought["amount"].to_numpy() * 0.6, 2),
        "is_return": True,
    })
    return pd.concat([transactions.assign(is_return=False), returned], ignore_index=True)


@pytest.mark.parametrize("log", ["master", "master with returns", "order lines with returns"])
def test_the_per_customer_definition_gives_the_value_inputs(master, log):
    transactions = {"master": lambda: master, "master with returns": lambda: with_returns(master),
                    "order lines with returns": order_lines}[log]()
    analysis_date = transactions["order_date"].max().normalize() + pd.Timedelta(days=1)
    spend, net_of_returns = spend_sums(transactions, analysis_date)
    assert net_of_returns == (log != "master")
    expected = value_inputs(transactions, analysis_date)
    got = value_inputs_from(spend, net_of_returns)
    assert list(got.columns) == VALUE_INPUT_COLUMNS
    assert_same_rows(got[["customer_id", "frequency", "recency", "T"]],
                     expected[["customer_id", "frequency", "recency", "T"]])
    # Sums in another order: equal to rounding, and NaN for the same one-time buyers.
    np.testing.assert_allclose(got["monetary_value"], expected["monetary_value"], rtol=1e-12, atol=0)
    if net_of_returns:  # the returns reach the spend per purchase
        gross = value_inputs_from(spend, False)["monetary_value"]
        assert (expected["monetary_value"] < gross * (1 - 1e-6)).sum() > 3
    # Scoring from them gives the customer_value rows.
    if log != "order lines with returns":  # too few customers there for a fit
        fit = fit_value(expected)
        np.testing.assert_allclose(score_value(got, fit)[CUSTOMER_VALUE_COLUMNS[1:]],
                                   score_value(expected, fit)[CUSTOMER_VALUE_COLUMNS[1:]], rtol=1e-9)


# ----------------------------------------------------------------------------------------------
# segment intervals from a sample
# ----------------------------------------------------------------------------------------------

def by_recency(features: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": features["customer_id"],
                         "segment_name": np.where(features["recency_days"] <= 180, "recent", "older")})


def test_segment_intervals_from_a_sample_and_sums_are_the_lambda_s_on_all(sample):
    # Below MAX_SIMULATED_CUSTOMERS the Lambda simulates everyone: the same "sample" and totals
    # give the same intervals to the bit (the totals summed by a group-by: to rounding).
    inputs = value_inputs(sample, ANALYSIS_DATE)
    segments = by_recency(customer_features(sample, ANALYSIS_DATE))
    fit = fit_value(inputs, model="bgnbd")
    table = score_value(inputs, fit)
    lambda_path = segment_value_intervals(table, segments, fit, inputs)
    labelled = inputs.merge(segments, on="customer_id", how="left")
    totals = (labelled[["segment_name"]].assign(clv_12m=table["clv_12m"].to_numpy())
              .groupby("segment_name").agg(customers=("clv_12m", "size"), expected_clv_12m=("clv_12m", "sum"))
              .reset_index())
    spark_path = segment_value_from_sample(labelled, totals, fit)
    for ours, theirs in zip(spark_path, lambda_path):
        assert ours["expected_clv_12m"] == pytest.approx(theirs["expected_clv_12m"], rel=1e-12)
        assert {k: v for k, v in ours.items() if k != "expected_clv_12m"} == \
               {k: v for k, v in theirs.items() if k != "expected_clv_12m"}


def test_segment_intervals_from_a_stratified_sample_of_master(master, master_inputs, master_fits, monkeypatch):
    monkeypatch.setattr(clv, "MAX_SIMULATED_CUSTOMERS", 6000)
    fit = master_fits["pnbd"]
    table = score_value(master_inputs, fit)
    labelled = master_inputs.merge(by_recency(customer_features(master, ANALYSIS_DATE)), on="customer_id")
    totals = (labelled[["segment_name"]].assign(clv_12m=table["clv_12m"].to_numpy())
              .groupby("segment_name").agg(customers=("clv_12m", "size"), expected_clv_12m=("clv_12m", "sum"))
              .reset_index())
    rng = np.random.default_rng(5)
    drawn = [group.iloc[np.sort(rng.choice(len(group), segment_sample_size(len(group), len(labelled)),
                                           replace=False))]
             for _, group in labelled.groupby("segment_name")]
    sample = pd.concat(drawn)
    assert len(sample) < len(labelled) / 3
    rows = segment_value_from_sample(sample, totals, fit)
    assert [row["segment_name"] for row in rows] == ["older", "recent"]
    for row, total in zip(rows, totals.itertuples()):
        assert row["customers"] == total.customers and row["expected_clv_12m"] == total.expected_clv_12m
        assert row["simulated_customers"] == segment_sample_size(total.customers, len(labelled))
        # The sample's own expected value, scaled up, is what the simulation centres on; its
        # sampling error (a few percent here) is not part of the interval.
        members = sample["segment_name"] == row["segment_name"]
        centre = table.set_index("customer_id").loc[sample.loc[members, "customer_id"], "clv_12m"].sum() \
            * total.customers / members.sum()
        print(f"{row['segment_name']}: expected {row['expected_clv_12m']:,.0f}, sample's {centre:,.0f}, "
              f"simulated mean {row['simulated_mean']:,.0f} in [{row['lower']:,.0f}, {row['upper']:,.0f}]")
        assert row["simulated_mean"] == pytest.approx(centre, rel=0.02)
        assert row["simulated_mean"] == pytest.approx(row["expected_clv_12m"], rel=0.1)
        assert row["lower"] < row["simulated_mean"] < row["upper"]
    with pytest.raises(ValueError, match="lacks"):
        segment_value_from_sample(sample, totals.iloc[:1], fit)
