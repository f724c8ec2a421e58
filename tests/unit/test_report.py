"""The run report (pure HTML rendering) and the run-complete message, on the summary of a real
offline run (events/publish.json, recorded from data/CDNOW_sample.txt)."""

import json
import math
import re
from html import escape as html_escape
from html.parser import HTMLParser

import pytest

from cdnow.pipeline import run_summary
from cdnow.presentation import charts, messages
from cdnow.presentation.report import CHART_SECTIONS, chart_name, render_report

VOID = {"meta", "link", "br", "img", "input", "hr", "col", "area", "base", "source", "wbr"}


@pytest.fixture(scope="module")
def summary(root):
    event = json.loads((root / "events" / "publish.json").read_text())
    tables = [{"table": t, "database": "cdnow_analytics", "rows": 2357,
               "location": f"s3://CURATED_BUCKET/tables/{t}/run_id=x/"} for t in ("customer_features", "runs")]
    return run_summary(event["run"], event["features"], event["models"], tables)


@pytest.fixture(scope="module")
def svgs(summary):
    """A small chart per name the summary lists, titled after it."""
    return {chart_name(uri): charts.bar_chart(["a", "b"], {"n": [1, 2]}, title=f"Chart {chart_name(uri)}")
            for uri in summary["charts"]}


PROFILES = [
    {"segment_name": "Lost", "segment_rank": 2, "recency_status": "lapsed", "customers": 1428,
     "customer_share": 0.6058, "revenue": 20510.5, "revenue_share": 0.1911, "median_recency_days": 499.0,
     "mean_purchase_days": 1.15, "mean_monetary_total": 32.5, "mean_monetary_avg_per_purchase": 29.1,
     "median_avg_days_between_purchases": float("nan")},
    {"segment_name": "Champions", "segment_rank": 0, "recency_status": "active", "customers": 328,
     "customer_share": 0.1392, "revenue": 1404101.87, "revenue_share": 0.554, "median_recency_days": 57.0,
     "mean_purchase_days": 9.6, "mean_monetary_total": 412.24, "mean_monetary_avg_per_purchase": 43.87,
     "median_avg_days_between_purchases": 60.75},
]
EXAMPLES = [{"reason": "invalid_date", "line_number": 12, "raw_line": " 00012 19971340 <b>1</b> 11.77"}]


class Balance(HTMLParser):
    """Every element closed in order; collects the figures' chart names."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.figures = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "figure":
            self.figures.append(dict(attrs).get("data-chart"))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def render(summary, svgs, **kw):
    return render_report(summary, svgs, profiles=PROFILES, quarantine_examples=EXAMPLES, **kw)


def test_every_listed_chart_is_inlined_once_with_its_title(summary, svgs):
    html = render(summary, svgs)
    parser = Balance()
    parser.feed(html)
    assert parser.errors == [] and parser.stack == []
    assert sorted(parser.figures) == sorted(svgs)
    for name in svgs:
        assert html.count(f'data-chart="{name}"') == 1
        assert f"<title>Chart {name}</title>" in html
    # the known charts sit in their sections, in reading order
    known = [name for entries in CHART_SECTIONS.values() for name, _ in entries]
    assert [n for n in parser.figures if n in known] == [n for n in known if n in svgs]


def test_the_page_loads_nothing(summary, svgs):
    html = render(summary, svgs)
    assert "<script" not in html and "@import" not in html and "url(" not in html
    assert re.findall(r"<link[^>]*>", html) == ['<link rel="icon" href="data:,">']
    assert not re.search(r"\ssrc\s*=", html)
    assert not re.search(r"https?://", html.replace('xmlns="http://www.w3.org/2000/svg"', ""))
    assert "Content-Security-Policy" in html and "default-src 'none'" in html


def test_same_inputs_give_the_same_bytes(summary, svgs):
    assert render(summary, svgs) == render(dict(summary), dict(svgs))


def test_numbers_read_as_people_read_them(summary, svgs):
    html = render(summary, svgs)
    assert "2,357" in html and "6,919" in html  # customers, rows read
    assert "$1,404,102" in html  # revenue of a profile
    assert f"{summary['churn']['roc_auc']:.3f}" in html
    total = summary["value"]["total_clv_12m"]
    assert f"${total:,.0f}" in html
    assert "13.9%" in html  # customer share


def test_amounts_in_the_run_s_currency(summary, svgs):
    # An Online Retail II run is in pounds: no amount of it may read as dollars.
    pounds = {**summary, "currency": "GBP"}
    html = render(pounds, svgs)
    total = summary["value"]["total_clv_12m"]
    assert "\u00a31,404,102" in html and f"\u00a3{total:,.0f}" in html and "\u00a343.87" in html
    assert "$" not in html
    assert "Amounts in GBP (\u00a3)." in html and "CLV) is revenue" in html
    # a summary of an older run names no currency: its amounts are dollars
    for older in (summary, {**summary, "currency": None}):
        html = render(older, svgs)
        assert "$1,404,102" in html and "Amounts in USD ($)." in html and "\u00a3" not in html
    francs = render({**summary, "currency": "CHF"}, svgs)
    assert "CHF 1,404,102" in francs and "Amounts in CHF." in francs and "$" not in francs


def test_excluded_and_returned_amounts_in_the_run_s_currency(summary, svgs):
    rows = {**summary["rows"], "excluded": {"no_customer_id": 12}, "excluded_amount": {"no_customer_id": 310.5},
            "return_lines": 4, "returned_amount": -42.25}
    pounds = {**summary, "rows": rows, "currency": "GBP"}
    html = render(pounds, svgs)
    assert "\u00a3310.50 and count toward" in html and "\u2212\u00a342.25 in all" in html
    text = messages.email_text(pounds)
    assert "12 lines, \u00a3310.50" in text and "-\u00a342.25 netted" in text and "$" not in text


def test_rounded_line_amounts_are_said_with_the_decimals_kept(summary, svgs):
    html = render({**summary, "rows": {**summary["rows"], "rounded_amounts": 1234},
                   "input_reading": {**(summary.get("input_reading") or {}), "amount_decimals": 2}}, svgs)
    assert "1,234 line amounts had more than 2 decimals (the currency's minor unit)" in html
    assert "line amounts had more" not in render(summary, svgs)


def test_a_currency_that_is_no_iso_code_is_refused(summary, svgs):
    with pytest.raises(ValueError, match="ISO 4217"):
        render({**summary, "currency": "<b>GBP</b>"}, svgs)


def test_profiles_in_rank_order_and_missing_values_as_a_dash(summary, svgs):
    html = render(summary, svgs)
    table = html[html.index('class="profiles"'):]
    table = table[:table.index("</table>")]
    assert table.index("Champions") < table.index("Lost")
    assert "\u2013" in table and "nan" not in table.lower()


def test_quarantine_reasons_with_meaning_and_escaped_examples(summary, svgs):
    dirty = {**summary, "rows": {"read": 1000, "accepted": 990, "quarantined": 10,
                                 "by_reason": {"wrong_field_count": 3, "invalid_date": 7}}}
    html = render(dirty, svgs)
    reasons = html[html.index('class="reasons"'):]
    assert reasons.index("invalid_date") < reasons.index("wrong_field_count")  # most rows first
    assert "0.70%" in reasons and "not a real calendar date" in reasons
    assert "&lt;b&gt;1&lt;/b&gt;" in html and "<b>1</b>" not in html
    clean = render(summary, svgs)
    assert "No row was quarantined" in clean


def test_migration_against_the_previous_run(summary, svgs):
    later = json.loads(json.dumps(summary))
    later["segmentation"]["migration"] = {"previous_run_id": "cdnow-sample-0123", "customers_moved": 120}
    html = render(later, svgs)
    assert "cdnow-sample-0123" in html and "120 customers (5.1%) changed segment" in html
    assert "no segment migration" in render(summary, svgs)


def test_a_listed_chart_without_svg_is_an_error(summary, svgs):
    incomplete = {k: v for k, v in svgs.items() if k != "churn_roc"}
    with pytest.raises(ValueError, match="churn_roc"):
        render(summary, incomplete)


def test_an_unknown_chart_goes_under_more_charts(summary, svgs):
    extra = {**summary, "charts": summary["charts"] + ["s3://b/runs/run_id=x/charts/new_chart.svg"]}
    html = render(extra, {**svgs, "new_chart": charts.bar_chart(["a"], {"n": [1]}, title="New")})
    assert html.index('id="more-charts"') < html.index('data-chart="new_chart"')


def test_a_chart_with_a_script_is_refused(summary, svgs):
    bad = {**svgs, "churn_roc": svgs["churn_roc"].replace("</svg>", "<script>alert(1)</script></svg>")}
    with pytest.raises(ValueError, match="scripts"):
        render(summary, bad)


# ----------------------------------------------------------------- the run-complete message


def test_subject_is_readable_and_within_the_sns_limit(summary):
    subject = messages.subject(summary)
    assert subject == f"CDNOW run {summary['run_id']} SUCCEEDED: 2,357 customers, 7 segments"  # the sample: 7 named segments
    long_id = {**summary, "run_id": "a-very-long-file-name-for-the-customer-export-of-today-35f83c2e516f"}
    shortened = messages.subject(long_id)
    assert len(shortened) <= messages.SUBJECT_MAX < 100
    assert shortened.startswith("CDNOW run a-very") and "35f83c2e516f SUCCEEDED: 2,357 customers" in shortened
    assert shortened.isascii() and "\n" not in shortened


def test_email_text_has_counts_segments_churn_value_and_the_link(summary):
    report = {"uri": "s3://b/reports/x.html", "url": "https://b.s3.amazonaws.com/reports/x.html?X-Amz-Signature=1",
              "expires_at": "2026-12-02 20:16 UTC"}
    text = messages.email_text(summary, report)
    for expected in ("6,919 read", "Customers: 2,357", "Champions", "Lost", "ROC AUC", "High risk now",
                     f"${summary['value']['total_clv_12m']:,.0f}", report["url"], "2026-12-02 20:16 UTC"):
        assert expected in text, expected
    assert "{" not in text.split("Tables:")[0]  # no JSON before the table list


def test_email_amounts_in_the_run_s_currency(summary):
    total = summary["value"]["total_clv_12m"]
    pounds = messages.email_text({**summary, "currency": "GBP"})
    assert f"\u00a3{total:,.0f}" in pounds and f"\u00a3{summary['value']['mean_clv_12m']:,.2f}" in pounds
    assert "$" not in pounds
    assert f"${total:,.0f}" in messages.email_text(summary)  # an older run's summary: dollars
    assert "$" not in messages.run_complete_message({**summary, "currency": "GBP"})["email"]


def test_message_is_json_for_machines_and_text_for_email(summary):
    report = {"uri": "s3://b/reports/x.html", "url": "https://example/x"}
    message = messages.run_complete_message(summary, report)
    assert set(message) == {"default", "sqs", "email"}
    for key in ("default", "sqs"):
        document = json.loads(message[key])
        assert document["run_id"] == summary["run_id"] and document["report"] == report
        assert document["rows"] == summary["rows"]
    assert message["email"] == messages.email_text(summary, report)
    assert len(json.dumps(message).encode()) < 256 * 1024  # SNS message size limit


def test_formatting_of_missing_and_negative_numbers():
    from cdnow.presentation import formatting as fmt

    assert fmt.count(None) == fmt.percent(float("nan")) == fmt.money(math.inf) == "\u2013"
    assert fmt.percent(-0.156) == "\u221215.6%" and fmt.money(-3.5, "USD", 2) == "\u2212$3.50"
    assert fmt.count(23570) == "23,570" and fmt.share(1, 0) is None


def test_a_skipped_model_is_a_warning_in_the_summary_report_and_message(root, svgs):
    """A model the data cannot support: the run publishes the rest, and every reader is told."""
    from cdnow.pipeline import required_tables

    event = json.loads((root / "events" / "publish.json").read_text())
    reason = "the history (2010-12-01 .. 2011-01-29, 60 days) is not longer than the churn horizon of 180 days"
    models = {**event["models"], "churn": {"skipped": reason, "charts": []}}
    assert "churn_scores" not in required_tables(models) and "customer_value" in required_tables(models)
    tables = [{"table": t, "database": "cdnow_analytics", "rows": 2357,
               "location": f"s3://CURATED_BUCKET/tables/{t}/run_id=x/"} for t in ("customer_features", "runs")]
    skipped = run_summary(event["run"], event["features"], models, tables)
    assert skipped["warnings"] == [{"model": "churn", "reason": reason, "message": f"Churn model skipped: {reason}"}]
    assert skipped["churn"] is None and skipped["value"]
    charts = {name: svg for name, svg in svgs.items() if not name.startswith("churn_")}
    html = render_report(skipped, charts)
    assert "Churn model skipped: the history" in html and f"<strong>Skipped:</strong> {reason}." in html
    assert 'id="value"' in html and "churn_roc" not in html
    text = messages.email_text(skipped)
    assert f"  Churn model skipped: {reason}" in text and "Churn within" not in text
    assert messages.subject(skipped).endswith(", 1 warning")


def test_a_dataset_s_run_says_how_its_delivery_changed_the_history(summary, svgs):
    assert 'id="history"' not in render(summary, svgs)  # a file directly under incoming/: no history
    delivered = {**summary, "dataset": "shop", "history": {
        "history_rows_kept": 60_000, "replaced_by_key": 4_000, "replaced_by_order_id": 12, "replaced_by_snapshot": 0,
        "delivery_rows": 4_100, "history_rows": 64_100}}
    html = render(delivered, svgs)
    assert "History of the dataset shop" in html and "64,100" in html and "a correction and replaces" in html
    assert Balance().feed(html) is None
    replayed = {**summary, "dataset": "shop", "history": {"history_rows": 64_000, "replayed": True,
                                                           "erased_rows": 100, "erased_customers": 1}}
    html = render(replayed, svgs)
    assert "A replay: no file was delivered" in html and "without the customers erased from it" in html


def test_every_purchase_model_s_check_and_the_choice_are_shown(summary, svgs):
    comparison = summary["value_models"]
    assert [check["model"] for check in comparison["checks"]] == ["bgnbd", "mbgnbd", "pnbd"]
    chosen = next(check for check in comparison["checks"] if check["model"] == comparison["chosen"])
    assert chosen["mean_absolute_error"] == min(check["mean_absolute_error"] for check in comparison["checks"])
    assert summary["value"]["purchase_model"] == comparison["chosen"]
    assert summary["value_holdout"] == chosen
    html = render(summary, svgs)
    table = html[html.index('class="purchase-models"'):]
    table = table[:table.index("</table>")]
    for check in comparison["checks"]:
        assert check["model_title"] in table and f"{check['mean_absolute_error']:.3f}" in table
    assert table.count("(used)") == 1 and f"{chosen['model_title']} (used)" in table
    assert "\u00b1" in table  # the standard errors
    # CLV is revenue unless a margin is given, and the report and the e-mail say so.
    assert "revenue: no margin applied" in html
    text = messages.email_text(summary)
    assert f"Value ({chosen['model_title']} and Gamma-Gamma; revenue, no margin applied)" in text
    assert "Chosen by the smallest mean error per customer among: BG/NBD" in text


def test_segments_state_their_rules_and_the_one_rule_of_a_large_segment(summary, svgs):
    seg = summary["segmentation"]
    html = render(summary, svgs)
    rules = html[html.index('class="segment-rules"'):]
    rules = rules[:rules.index("</table>")]
    for rule in seg["segment_rules"]:
        if rule["customers"]:
            assert rule["segment_name"] in rules and html_escape(rule["rule"]) in rules
    assert f"{seg['n_segments']} segments, each customer named by the rules below" in html
    for large in seg["large_segments"]:
        assert f"meets one rule, {html_escape(large['rule'])}" in html
    assert sum(rule["customers"] for rule in seg["segment_rules"]) == summary["customers"]


def test_each_segment_s_value_has_a_predictive_interval(summary, svgs):
    intervals = summary["value"]["segment_value"]
    assert {row["segment_name"] for row in intervals} == set(summary["segments"])
    assert sum(row["customers"] for row in intervals) == summary["customers"]
    for row in intervals:
        assert row["lower"] <= row["expected_clv_12m"] <= row["upper"], row
        assert row["interval"] == 0.9 and row["draws"] == 200 and row["parameter_uncertainty"]
    html = render(summary, svgs)
    table = html[html.index('class="segment-value"'):]
    table = table[:table.index("</table>")]
    for row in intervals:
        assert row["segment_name"] in table and f"${row['lower']:,.0f} to ${row['upper']:,.0f}" in table


def test_churn_figures_are_cross_validated_means_with_their_spread_and_a_back_test(summary, svgs):
    churn = summary["churn"]
    html = render(summary, svgs)
    table = html[html.index('class="churn-metrics"'):]
    table = table[:table.index("</table>")]
    assert f"{churn['cv_roc_auc_mean']:.3f} \u00b1 {churn['cv_roc_auc_sd']:.3f}" in table
    assert (f"{churn['recency_baseline_cv_roc_auc_mean']:.3f} \u00b1 "
            f"{churn['recency_baseline_cv_roc_auc_sd']:.3f}") in table
    assert f"{churn['cv_folds']}-fold cross-validation" in table
    facts = html[html.index('class="churn-facts"'):]
    assert f"{churn['backtest_train_cutoff']} / {churn['backtest_score_date']}" in facts
    assert f"{churn['backtest_roc_auc']:.3f}" in facts
    text = messages.email_text(summary)
    assert f"ROC AUC {churn['cv_roc_auc_mean']:.3f} \u00b1 {churn['cv_roc_auc_sd']:.3f}" in text
    assert "Back-test (trained as of" in text
    # A run whose history is too short for the back-test says why.
    short = {**summary, "churn": {**churn, "backtest_skipped": "the history is shorter than two horizons"}}
    assert "Back-test skipped: the history is shorter than two horizons" in messages.email_text(short)
    assert "the history is shorter than two horizons" in render(short, svgs)
