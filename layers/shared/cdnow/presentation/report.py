"""The run report: one self-contained HTML page from a run summary and its SVG charts.

Pure logic, standard library only: ``render_report`` takes the run summary (the dict Publish
writes to ``run_summary.json``), the chart SVGs the model steps drew (``{name: svg text}``)
and, when available, the rows of the run's ``segment_profiles`` table and a few quarantined
lines, and returns the page as a string. Reading those inputs from S3 and writing the page is
``pipeline.report``'s job.

The page
    * loads nothing: no scripts, no external fonts, style sheets or images; the charts are
      inlined as ``<svg>`` elements (``charts`` makes them safe to inline: no ``<style>``, no
      links, ids unique to each chart), and a Content-Security-Policy meta tag makes the browser
      refuse anything else, so an accidental reference shows up as a console error in the
      report test;
    * is deterministic: the same inputs give the same bytes (no render time, dict order as
      given, sets sorted);
    * reads top-down as a person does: the run at a glance, then data quality, segments, churn
      and value, each with a one-line "how to read this", its charts and the tables behind
      them; every chart the summary lists appears, those of no known section under "More
      charts".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from . import formatting as fmt
from . import style
from .labels import feature_label

__all__ = ["CHART_SECTIONS", "QUARANTINE_REASONS", "chart_name", "render_report"]

# Which chart goes in which section, in reading order; a caption says how to read each one.
CHART_SECTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "segments": (
        ("segment_sizes", "Each segment's share of customers next to its share of revenue: a small "
                          "segment with a tall revenue bar is where the money is."),
        ("segment_profiles", "Each segment's mean of every feature as an index of the overall mean "
                             "(100 = average): bars to the right are above average."),
        ("rfm_heatmap", "All customers by days since their last purchase and number of purchase days; "
                        "darker cells hold more customers."),
        ("segment_k_selection", "How the number of segments was chosen: well separated (silhouette) "
                                "and reproducible across random starts (stability)."),
    ),
    "churn": (
        ("churn_roc", "Higher and further left is better; the diagonal is guessing. The legend gives "
                      "each score's area under the curve."),
        ("churn_precision_recall", "How many of the customers flagged really churned (precision) "
                                   "against how many churners were found (recall)."),
        ("churn_calibration", "Points on the diagonal mean a predicted 70% churns 70% of the time, "
                              "so the probabilities can be used as they are."),
        ("churn_lift", "How many times the base churn rate the highest-risk customers show, by the "
                       "share of customers targeted."),
    ),
    "value": (
        ("clv_distribution", "Expected value of each customer's next 12 months on a log scale: most "
                             "customers are worth little, a few are worth a lot."),
        ("p_alive_matrix", "The model's probability that a customer is still active, by days since "
                           "last purchase and purchase days."),
        ("value_holdout", "The model fitted on an earlier period predicts the purchases of the "
                          "months after it: the closer the lines, the better."),
    ),
}

# What each quarantine reason code of the Transform step means (glue/cdnow_transform.py).
QUARANTINE_REASONS = {
    "blank_line": "the line is empty",
    "unparseable_line": "the line is not UTF-8 text or holds control characters",
    "unclosed_quote": "a quoted field does not close within 100 lines",
    "wrong_field_count": "the line does not have the number of fields of its format",
    "invalid_date": "the date is not a real calendar date in a form the Transform reads",
    "date_out_of_range": "the date is outside the accepted range",
    "date_in_future": "the date is more than a day after the file was delivered",
    "invalid_quantity": "the quantity is not a whole number",
    "quantity_out_of_range": "the quantity is more than 1,000,000 units (an export error, never a sale)",
    "invalid_amount": "the amount is not a number, or negative on a line that is not a return",
    "amount_out_of_range": "the line's amount is more than 1,000,000,000 or too large to hold",
}
# What each exclusion of the Transform step means: valid input the analysis leaves out.
EXCLUSIONS = {
    "no_customer_id": "no customer id (a guest checkout): the line cannot belong to a customer's history",
}

_BASELINES = {
    "recency": "Recency rule (days since last purchase)",
    "bgnbd_no_purchase": "BG/NBD P(no purchase in the horizon)",
    "bgnbd_p_alive": "BG/NBD 1 \u2212 P(alive)",
}
_MODELS = {"logistic_regression": "Logistic regression", "hist_gradient_boosting": "Gradient boosting"}

# Nothing outside the page: inline styles and data: URIs only (the favicon is data:).
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

# The page's colours and fonts are the charts' (style.py); the rest of the look lives here.
_CSS = f"""
:root {{ color-scheme: light; --ink: {style.INK}; --muted: {style.MUTED}; --line: {style.LINE}; --soft: {style.SOFT};
  --accent: {style.ACCENT}; --warn: {style.WARN}; --ok: {style.OK}; }}
* {{ box-sizing: border-box; }}
body {{ margin: 0; font-family: {style.css_font_family()};
  color: var(--ink); background: #fff; line-height: 1.45; font-size: 15px; }}
header.top {{ background: {style.HEADER}; color: #fff; padding: 28px 32px 22px; }}
header.top h1 {{ margin: 0 0 6px; font-size: 26px; font-weight: 650; letter-spacing: -0.01em; }}
header.top .meta {{ margin: 0; color: {style.HEADER_MUTED}; font-size: 14px; }}
header.top .meta code {{ color: #fff; }}
.status {{ display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px; font-weight: 700;
  letter-spacing: 0.04em; vertical-align: middle; margin-left: 8px; background: var(--ok); color: #fff; }}
.status.failed {{ background: var(--warn); }}
nav.toc {{ position: sticky; top: 0; z-index: 1; background: #fff; border-bottom: 1px solid var(--line);
  padding: 8px 32px; font-size: 14px; }}
nav.toc a {{ color: var(--accent); text-decoration: none; margin-right: 18px; }}
main {{ max-width: 1360px; margin: 0 auto; padding: 8px 32px 40px; }}
section {{ margin-top: 30px; }}
h2 {{ font-size: 21px; margin: 0 0 4px; padding-bottom: 6px; border-bottom: 2px solid var(--ink); }}
h3 {{ font-size: 16px; margin: 22px 0 8px; }}
p.how {{ margin: 8px 0 14px; color: var(--muted); font-size: 14px; }}
p.how strong {{ font-weight: 650; color: var(--ink); }}
p.note {{ color: var(--muted); font-size: 14px; margin: 6px 0; }}
.cards {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 12px; margin-top: 16px; }}
.card {{ border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; background: var(--soft); }}
.card .label {{ font-size: 12px; text-transform: uppercase; letter-spacing: 0.05em; color: var(--muted); }}
.card .value {{ font-size: 24px; font-weight: 700; margin: 2px 0; font-variant-numeric: tabular-nums; }}
.card .detail {{ font-size: 13px; color: var(--muted); }}
.charts {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 18px; margin: 10px 0 6px;
  align-items: start; }}
figure.chart {{ margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 8px; background: #fff; }}
figure.chart svg {{ display: block; width: 100%; height: auto; }}
figure.chart figcaption {{ font-size: 13px; color: var(--muted); padding: 4px 6px 2px; }}
.tables {{ display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }}
.tables > div {{ flex: 1 1 420px; min-width: 0; }}
.scroll {{ overflow-x: auto; }}
table {{ border-collapse: collapse; font-size: 14px; margin: 4px 0 8px; }}
caption {{ text-align: left; font-weight: 650; padding: 4px 0 6px; }}
th, td {{ padding: 5px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }}
th {{ text-align: left; font-weight: 650; background: var(--soft); }}
td.num, th.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.num {{ white-space: nowrap; }}
th {{ max-width: 150px; }}
tr.chosen td {{ font-weight: 650; }}
table.profiles td:first-child {{ white-space: nowrap; }}
td code, p code, li code {{ font-size: 13px; }}
.raw {{ font-family: {style.css_font_family(style.MONO_STACK)}; font-size: 12.5px;
  white-space: pre; max-width: 460px; overflow: hidden; text-overflow: ellipsis; }}
.up {{ color: var(--warn); }} .down {{ color: var(--accent); }}
footer {{ border-top: 1px solid var(--line); color: var(--muted); font-size: 13px; padding: 14px 32px 28px;
  max-width: 1360px; margin: 0 auto; }}
@media print {{ nav.toc {{ position: static; }} .charts {{ grid-template-columns: 1fr 1fr; }} }}
"""


# --------------------------------------------------------------------------- formatting


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def chart_name(location: str) -> str:
    """``s3://…/charts/segment_sizes.svg`` (or a file path) -> ``segment_sizes``."""
    return location.rstrip("/").rsplit("/", 1)[-1].removesuffix(".svg")


# --------------------------------------------------------------------------- building blocks


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Iterable[int] = (),
           caption: str | None = None, row_classes: Sequence[str | None] | None = None,
           cls: str | None = None) -> str:
    """An HTML table; cells are pre-escaped HTML strings, ``numeric`` columns right-aligned."""
    numeric = set(numeric)

    def cell(tag: str, i: int, inner: str) -> str:
        return f'<{tag} class="num">{inner}</{tag}>' if i in numeric else f"<{tag}>{inner}</{tag}>"

    head = "".join(cell("th", i, _e(h)).replace("<th", '<th scope="col"', 1) for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        row_cls = row_classes[r] if row_classes else None
        opening = f'<tr class="{row_cls}">' if row_cls else "<tr>"
        body.append(opening + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>")
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    table = f'<table class="{cls}">' if cls else "<table>"
    return (f'<div class="scroll">{table}{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _card(label: str, value: str, detail: str = "") -> str:
    return (f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div>'
            f'<div class="detail">{_e(detail)}</div></div>')


def _how(text: str) -> str:
    return f'<p class="how"><strong>How to read this:</strong> {_e(text)}</p>'


_XML_PROLOG = re.compile(r"^\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", re.IGNORECASE)


def _inline_svg(name: str, svg: str) -> str:
    body = _XML_PROLOG.sub("", svg, count=1).strip()
    if not body.startswith("<svg") or not body.endswith("</svg>"):
        raise ValueError(f"chart {name!r} is not an SVG document")
    # A chart may refer to its own parts (href="#id", url(#id)), to nothing outside itself, and may
    # not style the page (<style>).
    if re.search(r"<script|<foreignObject|<style|\bon[a-z]+\s*=|href\s*=\s*[\"'](?!#)|url\(\s*[\"']?(?!#)",
                 body, re.IGNORECASE):
        raise ValueError(f"chart {name!r} holds scripts, event handlers, style sheets or links: not inlined")
    return body


def _figures(charts: Mapping[str, str], names: Iterable[tuple[str, str]], wrap: bool = True) -> str:
    """The charts of ``names`` that the run has, as figures in a grid (``wrap``) or bare."""
    figures = "".join(
        f'<figure class="chart" data-chart="{_e(name)}">{_inline_svg(name, charts[name])}'
        + (f"<figcaption>{_e(caption)}</figcaption>" if caption else "") + "</figure>"
        for name, caption in names if name in charts
    )
    return f'<div class="charts">{figures}</div>' if figures and wrap else figures


def _section(anchor: str, title: str, how: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{_how(how)}{"".join(p for p in parts if p)}</section>'


# --------------------------------------------------------------------------- sections


def _glance(summary: dict) -> str:
    rows = summary.get("rows") or {}
    customers = summary.get("customers")
    segments = summary.get("segments") or {}
    churn = summary.get("churn") or {}
    value = summary.get("value") or {}
    currency = fmt.currency_of(summary)
    cards = [
        _card("Customers", fmt.count(customers), f"as of {summary.get('analysis_date', fmt.DASH)}"),
        _card("Rows read", fmt.count(rows.get("read")),
              f"{fmt.count(rows.get('quarantined'))} quarantined "
              f"({fmt.percent(fmt.share(rows.get('quarantined'), rows.get('read')), 2)})"),
    ]
    if segments:
        top_name, top = max(segments.items(), key=lambda item: item[1].get("revenue_share") or 0)
        cards.append(_card("Segments", fmt.count(len(segments)),
                           f"{top_name}: {fmt.percent(top.get('revenue_share'))} of revenue from "
                           f"{fmt.percent(fmt.share(top.get('customers'), customers))} of customers"))
    if churn:
        cards.append(_card(f"High churn risk ({fmt.count(churn.get('horizon_days'))} days)",
                           fmt.percent(churn.get("share_high_risk")),
                           f"model ROC AUC {fmt.number(churn.get('roc_auc'), 3)}; "
                           f"recency rule {fmt.number(churn.get('recency_baseline_roc_auc'), 3)}"))
    if value:
        cards.append(_card("Expected value, next 12 months", fmt.money(value.get("total_clv_12m"), currency),
                           f"{fmt.money(value.get('mean_clv_12m'), currency, 2)} per customer; "
                           f"mean P(alive) {fmt.percent(value.get('mean_p_alive'))}"))
    return (f'<section id="glance"><h2>At a glance</h2><div class="cards">{"".join(cards)}</div>'
            f'<p class="note">{_e(_amounts_note(summary))}</p></section>')


def _amounts_note(summary: dict) -> str:
    """Which currency every amount of the page is in, said once, and what the expected value is."""
    currency = fmt.currency_of(summary)
    sign = fmt.CURRENCY_SYMBOLS.get(currency)
    note = f"Amounts in {currency} ({sign})." if sign else f"Amounts in {currency}."
    margin = (summary.get("value") or {}).get("margin")
    # The value model prices purchases at spend times the margin: at 100% its value is revenue.
    if margin is None or margin == 1:
        return note + " Expected value (CLV) is revenue, not profit."
    return note + f" Expected value (CLV) is revenue times a margin of {fmt.percent(margin, 0)}."


def _warnings(summary: dict) -> str:
    """The models the data could not support: the run succeeded without them."""
    warnings = summary.get("warnings") or []
    if not warnings:
        return ""
    items = "".join(f"<li><strong>{_e(w.get('message') or w.get('model'))}</strong></li>" for w in warnings)
    return (f'<section id="warnings" class="warnings"><h2>Warnings</h2><p>The run succeeded, but the data '
            f"could not support every model; their tables have no partition for this run:</p><ul>{items}</ul>"
            "</section>")


def _skipped(anchor: str, title: str, reason: str) -> str:
    return (f'<section id="{anchor}"><h2>{_e(title)}</h2><p class="note skipped"><strong>Skipped:</strong> '
            f"{_e(reason)}.</p></section>")


def _data_quality(summary: dict, examples: Sequence[Mapping[str, Any]]) -> str:
    rows = summary.get("rows") or {}
    read = rows.get("read")
    currency = fmt.currency_of(summary)
    counts = _table(
        ["Rows", "Count", "Share of rows read"],
        [[label, fmt.count(rows.get(key)), fmt.percent(fmt.share(rows.get(key), read), 2)]
         for label, key in (("Read", "read"), ("Accepted", "accepted"), ("Quarantined", "quarantined"))]
        + [[f"Excluded: <code>{_e(reason)}</code>", fmt.count(n), fmt.percent(fmt.share(n, read), 2)]
           for reason, n in sorted((rows.get("excluded") or {}).items())]
        + ([["Returns and cancellations (accepted)", fmt.count(rows.get("return_lines")),
             fmt.percent(fmt.share(rows.get("return_lines"), read), 2)]] if rows.get("return_lines") else []),
        numeric=(1, 2), caption="Rows of the input file", cls="rows")
    notes = []
    for reason, n in sorted((rows.get("excluded") or {}).items()):
        amount = (rows.get("excluded_amount") or {}).get(reason)
        notes.append(f"{fmt.count(n)} lines excluded for {_e(EXCLUSIONS.get(reason, reason))}; they hold "
                     f"{fmt.money(amount, currency, 2)} and count toward no bad-row share.")
    if rows.get("return_lines"):
        notes.append(f"{fmt.count(rows.get('return_lines'))} return or cancellation lines, "
                     f"{fmt.money(rows.get('returned_amount'), currency, 2)} in all, net against their customers' "
                     "spend and quantity; a return is never a purchase day.")
    reading = summary.get("input_reading") or {}
    if reading.get("money_reading"):
        notes.append(f"Money: {_e(reading['money_reading'])}.")
    if rows.get("rounded_amounts"):
        notes.append(f"{fmt.count(rows['rounded_amounts'])} line amounts had more than "
                     f"{reading.get('amount_decimals')} decimals (the currency's minor unit): each was rounded "
                     "half up to it, once per line.")
    if reading.get("date_order"):
        notes.append(f"Slashed dates read {_e(reading['date_order'].replace('_', ' '))} "
                     f"(decided by the {_e(reading.get('date_order_decided_by') or 'data')}).")
    if summary.get("customers_without_purchase"):
        notes.append(f"{fmt.count(summary['customers_without_purchase'])} customers with returns but no "
                     "purchase in the window are left out of the analysis.")
    reading_notes = "".join(f'<p class="note">{note}</p>' for note in notes)
    by_reason = rows.get("by_reason") or {}
    if by_reason:
        reasons = _table(
            ["Reason", "Rows", "Share of rows read", "Meaning"],
            [[f"<code>{_e(reason)}</code>", fmt.count(n), fmt.percent(fmt.share(n, read), 2),
              _e(QUARANTINE_REASONS.get(reason, ""))]
             for reason, n in sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))],
            numeric=(1, 2), caption="Quarantine reasons (a row is counted under the first check it fails)",
            cls="reasons")
    else:
        reasons = '<p class="note">No row was quarantined: every line of the file was accepted.</p>'
    sample = ""
    if examples:
        sample = _table(
            ["Reason", "Line", "The line as it was read"],
            [[f"<code>{_e(row.get('reason'))}</code>", fmt.count(row.get("line_number")),
              f'<span class="raw">{_e(row.get("raw_line"))}</span>'] for row in examples],
            numeric=(1,), caption="Examples of quarantined lines", cls="quarantine-examples")
    where = ""
    run_id = summary.get("run_id")
    if run_id and by_reason:
        where = (f'<p class="note">Every quarantined line is kept with its line number and reason under '
                 f"<code>runs/run_id={_e(run_id)}/quarantine/</code> in the curated bucket.</p>")
    return _section(
        "data-quality", "Data quality",
        "every line of the input is accepted, excluded (valid, but left out of the analysis) or "
        "quarantined with the first check it fails, so read = accepted + excluded + quarantined; a run "
        "with more than the allowed share of quarantined rows fails instead.",
        f'<div class="tables"><div>{counts}</div><div>{reasons}</div></div>', reading_notes, sample, where)


def _profile_rows(profiles: Sequence[Mapping[str, Any]], customers: Any, currency: str) -> str:
    rows = sorted(profiles, key=lambda row: row.get("segment_rank", 0))
    return _table(
        ["Segment", "Recency status", "Customers", "Share", "Revenue", "Revenue share",
         "Median days since last purchase", "Mean purchase days", "Mean total spend",
         "Mean spend per purchase day", "Median days between purchases"],
        [[f"<strong>{_e(row.get('segment_name'))}</strong>", _e(row.get("recency_status") or fmt.DASH),
          fmt.count(row.get("customers")),
          fmt.percent(row.get("customer_share") if row.get("customer_share") is not None
               else fmt.share(row.get("customers"), customers)),
          fmt.money(row.get("revenue"), currency), fmt.percent(row.get("revenue_share")),
          fmt.count(row.get("median_recency_days")), fmt.number(row.get("mean_purchase_days"), 1),
          fmt.money(row.get("mean_monetary_total"), currency, 2),
          fmt.money(row.get("mean_monetary_avg_per_purchase"), currency, 2),
          fmt.count(row.get("median_avg_days_between_purchases"))] for row in rows],
        numeric=range(2, 11), caption="Segment profiles (from the segment_profiles table)", cls="profiles")


def _segments(summary: dict, charts: Mapping[str, str], profiles: Sequence[Mapping[str, Any]]) -> str:
    segments = summary.get("segments") or {}
    seg = summary.get("segmentation") or {}
    customers = summary.get("customers")
    if profiles:
        table = _profile_rows(profiles, customers, fmt.currency_of(summary))
    else:
        table = _table(
            ["Segment", "Customers", "Share", "Revenue share"],
            [[f"<strong>{_e(name)}</strong>", fmt.count(s.get("customers")),
              fmt.percent(fmt.share(s.get("customers"), customers)), fmt.percent(s.get("revenue_share"))]
             for name, s in sorted(segments.items(), key=lambda item: item[1].get("segment_rank", 0))],
            numeric=(1, 2, 3), caption="Segments", cls="profiles")
    chosen = next((row for row in seg.get("k_selection") or [] if row.get("chosen")), None)
    notes = []
    if chosen:
        ks = [row["k"] for row in seg.get("k_selection") or []]
        named = seg.get("n_segments", len(segments))
        notes.append(f"{fmt.count(named)} segments, each customer named by the rules below; the most valuable "
                     f"of {fmt.count(chosen['k'])} k-means clusters (k chosen among {min(ks)}\u2013{max(ks)}: "
                     f"silhouette {fmt.number(chosen.get('silhouette'), 3)}, "
                     f"stability {fmt.number(chosen.get('stability'), 3)}) tells Champions from Loyal.")
    thresholds = seg.get("rule_thresholds") or {}
    if thresholds:
        notes.append(f"Active means a purchase in the last {fmt.count(thresholds.get('active_within_days'))} days and "
                     f"lapsed none in the last {fmt.count(thresholds.get('lapsed_after_days'))} (twice and four times "
                     f"the typical {fmt.number(thresholds.get('typical_interval_days'), 1)} days between two "
                     f"purchases); high spend is at least "
                     f"{fmt.money(thresholds.get('high_spend_from'), fmt.currency_of(summary), 2)} in total.")
    for large in seg.get("large_segments") or []:
        notes.append(f"<strong>{_e(large.get('segment_name'))}</strong> holds "
                     f"{fmt.percent(large.get('customer_share'))} of the customers, more than the "
                     f"{fmt.percent(seg.get('max_segment_share'), 0)} a segment holds otherwise: every one of them "
                     f"meets one rule, {_e(large.get('rule'))}.")
    rules = [rule for rule in seg.get("segment_rules") or [] if rule.get("customers")]
    if rules:
        table += _table(
            ["Segment", "Rule", "Customers"],
            [[f"<strong>{_e(rule.get('segment_name'))}</strong>", _e(rule.get("rule")), fmt.count(rule.get("customers"))]
             for rule in rules],
            numeric=(2,), caption="How each customer's segment is decided", cls="segment-rules")
    migration = seg.get("migration")
    if migration:
        moved = migration.get("customers_moved")
        notes.append(f"Since the previous published run <code>{_e(migration.get('previous_run_id'))}</code>, "
                     f"{fmt.count(moved)} customers ({fmt.percent(fmt.share(moved, customers))}) changed segment "
                     "(the segment_migration table has every from/to pair).")
    else:
        notes.append("No earlier run was published, so there is no segment migration to show yet.")
    note_html = "".join(f'<p class="note">{n}</p>' for n in notes)
    return _section(
        "segments", "Segments",
        "customers are grouped by how recently, how often and how much they buy; each customer's segment "
        "follows a stated rule. Compare a segment's share of customers with its share of revenue.",
        _figures(charts, CHART_SECTIONS["segments"]), table, note_html)


def _churn_models(metrics: Mapping[str, Any]) -> tuple[list[tuple[str, str, bool]], list[str]]:
    """(metric prefix, label, chosen) of the chosen model and each baseline present."""
    chosen = metrics.get("chosen_model")
    compared = [("", f"{_MODELS.get(chosen, chosen or 'Model')} (chosen)", True)]
    found = [m.group(1) for key in metrics if (m := re.fullmatch(r"(.+)_baseline_roc_auc", key))]
    ordered = [b for b in _BASELINES if b in found] + sorted(b for b in found if b not in _BASELINES)
    compared += [(f"{b}_baseline_", _BASELINES.get(b, b.replace("_", " ")), False) for b in ordered]
    return compared, ordered


def _input_label(feature: str) -> str:
    return feature_label(feature) + (" (log)" if feature.startswith("log1p_") else "")


def _churn(summary: dict, charts: Mapping[str, str]) -> str:
    m = summary.get("churn") or {}
    compared, _ = _churn_models(m)
    folds = m.get("cv_folds")
    metrics_table = _table(
        ["Score", "ROC AUC", "PR AUC", "Brier score", "Lift, top 10%"],
        [[_e(label)] + [fmt.mean_sd(m, f"{p}cv_{key}", decimals) for key, decimals in
                        (("roc_auc", 3), ("pr_auc", 3), ("brier", 3), ("lift_top_decile", 2))]
         for p, label, _ in compared],
        numeric=(1, 2, 3, 4), row_classes=["chosen" if c else None for *_, c in compared],
        caption=f"{fmt.count(folds)}-fold cross-validation, mean \u00b1 standard deviation over the folds: the model "
                "against simple baselines on the same customers (higher AUC and lift, lower Brier: better)",
        cls="churn-metrics")
    if m.get("backtest_skipped"):
        backtest = [["Back-test", _e(m["backtest_skipped"])]]
    elif m.get("backtest_roc_auc") is not None:
        backtest = [
            ["Back-test: trained as of / scored as of",
             f"{_e(m.get('backtest_train_cutoff', fmt.DASH))} / {_e(m.get('backtest_score_date', fmt.DASH))}"],
            ["Back-test ROC AUC (recency rule)",
             f"{fmt.number(m.get('backtest_roc_auc'), 3)} ({fmt.number(m.get('backtest_recency_baseline_roc_auc'), 3)})"],
            ["Back-test churn rate predicted / actual",
             f"{fmt.percent(m.get('backtest_predicted_churn_rate'))} / {fmt.percent(m.get('backtest_actual_churn_rate'))}"]]
    else:
        backtest = []
    facts = _table(
        ["Fact", "Value"],
        [["Churn means", f"no purchase in the {fmt.count(m.get('horizon_days'))} days after the cutoff"],
         ["Cutoff (features up to) / label window ends",
          f"{_e(m.get('cutoff', fmt.DASH))} / {_e(m.get('analysis_date', fmt.DASH))}"],
         ["Customers in the training window", fmt.count(m.get("n_train"))],
         ["Churn rate of the training window", fmt.percent(m.get("base_rate"))],
         ["Model chosen by", "the lowest cross-validated log loss"
          if m.get("selection_metric") == "cv_log_loss_mean" else _e(m.get("selection_metric") or fmt.DASH)],
         ["Calibration",
          f"{_e(m.get('calibration_method', fmt.DASH))}; mean error {fmt.percent(m.get('calibration_error'))}"],
         *backtest,
         ["Customers scored now", fmt.count(m.get("n_scored"))],
         ["Risk bands now (low < 40% \u2264 medium < 70% \u2264 high)",
          f"high {fmt.percent(m.get('share_high_risk'))}, medium {fmt.percent(m.get('share_medium_risk'))}, "
          f"low {fmt.percent(m.get('share_low_risk'))}"]],
        numeric=(), caption="How the model was trained, how it did one horizon back, and what it says now",
        cls="churn-facts")
    drivers = summary.get("churn_drivers") or []
    driver_table = ""
    if drivers:
        driver_table = _table(
            ["Input", "Effect on churn risk", "Odds ratio per SD", "Coefficient"],
            [[_e(_input_label(str(d.get("feature", "")))),
              '<span class="up">raises</span>' if (d.get("coefficient") or 0) > 0 else '<span class="down">lowers</span>',
              f"\u00d7{fmt.number(d.get('odds_ratio'), 2)}", fmt.number(d.get("coefficient"), 3)] for d in drivers],
            numeric=(2, 3),
            caption="Top drivers: the logistic regression's inputs, strongest first (per standard deviation)",
            cls="drivers")
    return _section(
        "churn", "Churn risk",
        "the model learned from the customers' history before a cutoff who then did not buy in the horizon, "
        "and is measured on customers it never saw. A score is worth using when it beats the baselines.",
        _figures(charts, CHART_SECTIONS["churn"]),
        f'<div class="tables"><div>{metrics_table}{facts}</div><div>{driver_table}</div></div>')


def _purchase_models_table(comparison: Mapping) -> str:
    """Every purchase model's holdout check side by side, the chosen one marked."""
    checks = comparison.get("checks") or []
    if not checks:
        return ""
    rows = []
    for check in checks:
        params = check.get("params") or {}
        errors = check.get("standard_errors") or {}
        fitted = ", ".join(
            f"{_e(name)} {fmt.number(value, 3)}"
            + (f" \u00b1 {fmt.number(errors[name], 3)}" if errors.get(name) is not None else "")
            for name, value in params.items())
        chosen = check.get("model") == comparison.get("chosen")
        rows.append([_e(check.get("model_title", check.get("model"))) + (" (used)" if chosen else ""),
                     fmt.number(check.get("mean_absolute_error"), 3), fmt.percent(check.get("relative_error")),
                     fitted])
    return _table(
        ["Purchase model", "Mean absolute error per customer", "Error of the total", "Parameters (\u00b1 standard error)"],
        rows, numeric=(1, 2),
        caption="Each model fitted before the holdout period and checked on it; the smallest per-customer error "
                "values the customers", cls="purchase-models")


def _value(summary: dict, charts: Mapping[str, str]) -> str:
    v = summary.get("value") or {}
    h = summary.get("value_holdout") or {}
    currency = fmt.currency_of(summary)
    model = _e(v.get("purchase_model_title") or "BG/NBD")
    margin_note = ("revenue: no margin applied" if v.get("margin") in (None, 1, 1.0)
                   else f"{fmt.percent(v.get('margin'), 0)} margin of revenue")
    metrics = _table(
        ["Figure", "Value"],
        [["Total expected value, next 12 months", fmt.money(v.get("total_clv_12m"), currency)],
         ["Mean per customer", fmt.money(v.get("mean_clv_12m"), currency, 2)],
         ["Expected purchase days, next 365 days", fmt.count(v.get("total_expected_purchases_365d"))],
         ["Mean P(alive)", fmt.percent(v.get("mean_p_alive"))],
         ["Customers valued / repeat buyers",
          f"{fmt.count(v.get('n_customers'))} / {fmt.count(v.get('n_repeat_buyers'))}"],
         ["Annual discount rate / margin",
          f"{fmt.percent(v.get('annual_discount_rate'), 0)} / {fmt.percent(v.get('margin'), 0)}"]],
        numeric=(1,), caption=f"Lifetime value ({model} and Gamma-Gamma; {margin_note})", cls="value-metrics")
    holdout = ""
    if h:
        holdout = _table(
            ["Holdout check", "Value"],
            [["Fitted on purchases before", _e(h.get("calibration_end", fmt.DASH))],
             ["Predicted period", f"{_e(h.get('calibration_end', fmt.DASH))} to "
                                  f"{_e(h.get('observation_end', fmt.DASH))} ({fmt.count(h.get('holdout_days'))} days)"],
             ["Predicted purchase days", fmt.count(h.get("predicted_holdout_purchases"))],
             ["Actual purchase days", fmt.count(h.get("actual_holdout_purchases"))],
             ["Relative error", fmt.percent(h.get("relative_error"))]],
            numeric=(1,), caption=f"{model}: predicted against actual purchases after the fitting period",
            cls="holdout")
        by_frequency = h.get("by_calibration_frequency") or []
        if by_frequency:
            holdout += _table(
                ["Repeat purchase days before", "Customers", "Mean actual", "Mean predicted"],
                [[_e(row.get("frequency")), fmt.count(row.get("customers")), fmt.number(row.get("mean_actual")),
                  fmt.number(row.get("mean_predicted"))] for row in by_frequency],
                numeric=(1, 2, 3), caption="Holdout purchases by repeat purchases in the fitting period",
                cls="holdout-by-frequency")
    holdout += _purchase_models_table(summary.get("value_models") or {})
    intervals = v.get("segment_value") or []
    if intervals:
        ranks = {name: seg.get("segment_rank", 0) for name, seg in (summary.get("segments") or {}).items()}
        rows = sorted(intervals, key=lambda row: (ranks.get(row.get("segment_name"), len(ranks)),
                                                  row.get("segment_name") or ""))
        share = fmt.percent(rows[0].get("interval"), 0)
        uncertainty = ("with the parameters' uncertainty" if rows[0].get("parameter_uncertainty", True) else
                       "with the fitted parameters alone (the data cannot pin them down: no parameter "
                       "uncertainty in the interval)")
        metrics += _table(
            ["Segment", "Customers", "Expected value, next 12 months", f"{share} interval of what it will bring"],
            [[f"<strong>{_e(row.get('segment_name'))}</strong>", fmt.count(row.get("customers")),
              fmt.money(row.get("expected_clv_12m"), currency),
              f"{fmt.money(row.get('lower'), currency)} to {fmt.money(row.get('upper'), currency)}"]
             for row in rows],
            numeric=(1, 2, 3),
            caption=f"Each segment's value with a {share} predictive interval: {fmt.count(rows[0].get('draws'))} "
                    f"simulations of the next 12 months {uncertainty} and each customer's "
                    "purchases and spend drawn from the models (fixed seed)", cls="segment-value")
    return _section(
        "value", "Customer value",
        "each customer's expected purchases and spend over the next 12 months, discounted; P(alive) is the "
        "chance the customer has not silently left. The holdout check shows how far to trust the forecast.",
        # The holdout chart beside the tables it sums up.
        _figures(charts, CHART_SECTIONS["value"][:-1]),
        f'<div class="charts">{_figures(charts, CHART_SECTIONS["value"][-1:], wrap=False)}'
        f"<div>{metrics}{holdout}</div></div>")


def _more_charts(charts: Mapping[str, str]) -> str:
    known = {name for entries in CHART_SECTIONS.values() for name, _ in entries}
    rest = [(name, "") for name in sorted(charts) if name not in known]
    if not rest:
        return ""
    return _section("more-charts", "More charts", "charts of this run that no section above explains.",
                    _figures(charts, rest))


HISTORY_RULES = (
    "a new file appends its rows; a file under a key already delivered is a correction and replaces "
    "that key's rows; where rows carry an order id, an order id already in the history is replaced whole "
    "by the newer delivery's lines; a delivery marked as a snapshot replaces the whole history; rows "
    "without order ids are never deduplicated across files; content the dataset already holds (the same "
    "SHA-256) is not run again; a delivery joins the history only when its run publishes, so a failed run "
    "leaves it as it was; deliveries to one dataset run one at a time")


def _history(summary: dict) -> str:
    """For a dataset's run: what this run did to the dataset's history, and how a history works."""
    history = summary.get("history")
    dataset = summary.get("dataset")
    if not (dataset and isinstance(history, dict)):
        return ""
    if history.get("replayed"):
        rows = [["History rows analysed", fmt.count(history.get("history_rows"))],
                ["Rows erased by this run", fmt.count(history.get("erased_rows"))],
                ["Customers named for erasure", fmt.count(history.get("erased_customers"))]]
        what = ("A replay: no file was delivered; this run analysed the dataset's history as it stood"
                + (", without the customers erased from it." if history.get("erased_customers") else "."))
    else:
        rows = [[label, fmt.count(history.get(key))] for label, key in (
            ("Rows kept from earlier deliveries", "history_rows_kept"),
            ("Replaced: the same key delivered again", "replaced_by_key"),
            ("Replaced: an order id delivered again", "replaced_by_order_id"),
            ("Replaced: this delivery is a snapshot", "replaced_by_snapshot"),
            ("Added by this delivery", "delivery_rows"),
            ("History rows analysed", "history_rows"))]
        what = ("This delivery's rows joined the history when the run published; the Data quality section "
                "counts this delivery's file alone.")
    return _section(
        "history", f"History of the dataset {_e(dataset)}",
        f"every run of a dataset analyses all its deliveries so far: {HISTORY_RULES}.",
        _table(["History", "Rows"], rows, numeric=(1,), cls="history"), f'<p class="note">{_e(what)}</p>',
        f'<p class="note">The history is an Apache Iceberg table in the Glue catalog (<code>history_*</code>, '
        f"Athena reads it), its files under <code>datasets/{_e(dataset)}/history/</code> of the curated bucket; "
        f"each delivery's record is under <code>datasets/{_e(dataset)}/deliveries/</code>.</p>")


def _tables(summary: dict) -> str:
    tables = summary.get("tables") or {}
    if not tables:
        return ""
    run_id = summary.get("run_id", "")
    database = next((t.get("database") for t in tables.values() if t.get("database")), "cdnow_analytics")
    rows = [[f"<code>{_e(t.get('database', database))}.{_e(name)}</code>", fmt.count(t.get("rows")),
             f"<code>{_e(t.get('location', ''))}</code>"] for name, t in tables.items()]
    return _section(
        "tables", "Published tables",
        f"every table has this run as its partition run_id = '{run_id}'; query them in Athena "
        "(docs/queries.sql has queries a marketer runs).",
        _table(["Table", "Rows", "Location"], rows, numeric=(1,), cls="published"))


# --------------------------------------------------------------------------- the page


def render_report(summary: Mapping[str, Any], charts: Mapping[str, str], *,
                  profiles: Sequence[Mapping[str, Any]] | None = None,
                  quarantine_examples: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The run's report as one HTML document.

    ``charts`` maps chart names (``chart_name`` of the summary's ``charts`` locations) to SVG
    text; a chart the summary lists but ``charts`` lacks is an error, so a report never goes out
    with a hole in it. ``profiles`` are ``segment_profiles`` rows (dicts; NaN or None for
    missing values); without them the segment table shows sizes and revenue shares only.
    ``quarantine_examples`` are dicts with reason, line_number and raw_line.
    """
    summary = dict(summary)
    listed = [chart_name(location) for location in summary.get("charts") or []]
    missing = [name for name in listed if name not in charts]
    if missing:
        raise ValueError(f"run {summary.get('run_id')}: no SVG for the charts {missing}")
    charts = {name: charts[name] for name in listed} if listed else dict(charts)
    run_id = str(summary.get("run_id") or "unknown run")
    status = str(summary.get("status") or "")
    churn = summary.get("churn") or {}
    title = f"Customer analytics report: run {run_id}"
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="cdnow.report">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
    )
    status_cls = "status" if status == "SUCCEEDED" else "status failed"
    header = (
        f'<header class="top"><h1>Customer analytics report <span class="{status_cls}">{_e(status)}</span></h1>'
        f'<p class="meta">Run <code>{_e(run_id)}</code>'
        f' \u00b7 input <code>{_e(summary.get("input_uri", fmt.DASH))}</code>'
        f' \u00b7 analysis date {_e(summary.get("analysis_date", fmt.DASH))}'
        f' \u00b7 churn horizon {fmt.count(churn.get("horizon_days") or summary.get("churn_horizon_days"))} days'
        '</p></header>\n'
    )
    nav = ('<nav class="toc"><a href="#glance">At a glance</a><a href="#data-quality">Data quality</a>'
           '<a href="#segments">Segments</a><a href="#churn">Churn risk</a><a href="#value">Customer value</a>'
           '<a href="#tables">Tables</a></nav>\n')
    skipped = {w.get("model"): w.get("reason") for w in summary.get("warnings") or []}
    body = "\n".join(part for part in (
        _glance(summary),
        _warnings(summary),
        _data_quality(summary, list(quarantine_examples or [])),
        _history(summary),
        _skipped("segments", "Segments", skipped["segment"]) if "segment" in skipped
        else _segments(summary, charts, list(profiles or [])),
        _skipped("churn", "Churn risk", skipped["churn"]) if "churn" in skipped else _churn(summary, charts),
        _skipped("value", "Customer value", skipped["value"]) if "value" in skipped else _value(summary, charts),
        _more_charts(charts),
        _tables(summary),
    ) if part)
    footer = (f"<footer>Made by the Report step from <code>run_summary.json</code> of run <code>{_e(run_id)}</code> "
              "and the charts of its model steps. The page loads nothing from the network.</footer>\n")
    return f"{head}<body>\n{header}{nav}<main>\n{body}\n</main>\n{footer}</body>\n</html>\n"
