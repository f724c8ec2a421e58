"""The report's charts: matplotlib's SVG, made fit to inline in the report page.

What is checked is what the page needs of a chart, not how matplotlib draws it: a standalone,
named, accessible SVG; its text as text (searchable, in the page's font); nothing that loads or
styles anything outside it; ids no other chart shares; the same bytes for the same input; a
bounded size; the numbers a reader reads (percentages, thousands separators, the run's
currency) written as such.
"""

import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from cdnow.presentation import charts, style

SVG = "{http://www.w3.org/2000/svg}"
SEGMENTS = ["Champions", "Need attention", "Loyal", "At risk", "About to sleep", "Hibernating", "Lost"]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def texts(root: ET.Element) -> list[str]:
    """The visible text of every <text> element, a wrapped label's lines joined by a space."""
    return [" ".join("".join(el.itertext()).split()) for el in root.iter(f"{SVG}text")]


def example_charts() -> dict[str, str]:
    fpr = np.linspace(0, 1, 400)
    return {
        "bar": charts.bar_chart(
            SEGMENTS,
            {"Share of customers": [0.12, 0.05, 0.09, 0.04, 0.06, 0.12, 0.52],
             "Share of revenue": [0.55, 0.05, 0.15, 0.06, 0.04, 0.05, 0.10]},
            title="Segments: share of customers and of revenue", y_label="Share", value_format="{:.0%}"),
        "bar_horizontal": charts.bar_chart(
            SEGMENTS, {"Customers": [2912, 1196, 2201, 967, 1454, 2786, 12054]},
            title="Customers per segment", y_label="Customers", horizontal=True),
        "roc": charts.line_chart(
            {"Logistic regression (ROC-AUC 0.808)": (fpr, np.sqrt(fpr)),
             "Recency rule (ROC-AUC 0.790)": (fpr, fpr ** 0.6)},
            title="Churn within 180 days: ROC on held-out customers", x_label="False positive rate",
            y_label="True positive rate", x_range=(0, 1), y_range=(0, 1), diagonal="Chance", percent_axes=True),
        "holdout": charts.line_chart(
            {"Actual": ([0, 1, 2, 3, 4, 5], [0.25, 0.8, 1.8, 2.2, 3.4, 3.5]),
             "Predicted (BG/NBD)": ([0, 1, 2, 3, 4, 5], [0.2, 0.9, 1.7, 2.4, 3.1, 3.7])},
            title="Holdout check: purchases 1997-10-01 .. 1998-07-01 by repeat purchases before",
            x_label="Repeat purchase days in the calibration period", y_label="Mean purchase days in the holdout",
            markers=True),
        "rfm": charts.heatmap(
            ["1-30", "31-90", "91-180", "181-365"], ["1", "2", "3", "4-5"],
            [[1200, 800, 500, 300], [900, 400, 250, None], [1500, 300, 80, None], [9000, 700, 40, None]],
            title="Customers by recency and purchase days", x_label="Purchase days",
            y_label="Days since last purchase"),
        "palive": charts.heatmap(
            [str(f) for f in range(6)], [str(r) for r in range(0, 300, 50)],
            [[round(1 / (1 + math.exp(-(f - r / 60))), 3) for r in range(0, 300, 50)] for f in range(6)],
            title="Mean P(alive)", x_label="Recency (days)", y_label="Frequency", value_format="{:.0%}",
            value_range=(0, 1)),
        "histogram": charts.histogram(
            np.linspace(-1, 4, 51), np.arange(50) * 37 % 900, title="Expected value of the next 12 months",
            x_label="12-month CLV in USD (log scale)", y_label="Customers", x_ticks=range(-1, 5),
            x_tick_format=lambda v: f"${10 ** v:,.{max(0, -int(v))}f}"),
        "profile": charts.profile_chart(
            SEGMENTS, ["Days since last purchase", "Purchase days", "Total spend"],
            [[20, 420, 510], [45, 210, 190], [60, 60, 55], [190, 150, 140], [160, 40, 35], [300, 30, 25],
             [320, 20, 15]],
            title="Segment profiles: mean of each feature against all customers", height=660),
    }


@pytest.fixture(scope="module")
def examples():
    return example_charts()


def test_every_chart_is_a_standalone_named_accessible_svg(examples, tmp_path):
    for name, svg in examples.items():
        (tmp_path / f"{name}.svg").write_text(svg, encoding="utf-8")  # for a human to look at
        assert svg.startswith("<svg"), name  # no XML prolog or DOCTYPE: it inlines as it is
        root = parse(svg)
        assert root.tag == f"{SVG}svg", name
        assert root.get("role") == "img", name
        assert root[0].tag == f"{SVG}title" and root.get("aria-label") == root[0].text, name
        width, height = float(root.get("width")), float(root.get("height"))
        assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}", name
        assert width == 640 and height == (660 if name == "profile" else 400), name


def test_text_is_text_in_the_page_s_fonts(examples):
    for name, svg in examples.items():
        root = parse(svg)
        shown = " ".join(texts(root))
        # the title and the axis titles are there to find with the browser's search
        assert root[0].text in shown, name
        assert root.get("font-family").startswith("system-ui") and "sans-serif" in root.get("font-family"), name
        assert style.LAYOUT_FONT in root.get("font-family"), name  # the metrics the layout used, as a fallback
        # no glyph outlines: matplotlib's svg.fonttype "none"
        assert not any(el.get("id", "").startswith("DejaVu") for el in root.iter()), name
    assert "False positive rate" in texts(parse(examples["roc"]))
    assert "Segment profiles: mean of each feature against all customers" in " ".join(texts(parse(examples["profile"])))


def test_a_long_title_wraps_and_keeps_every_word(examples):
    root = parse(examples["holdout"])
    shown = texts(root)
    first = next(i for i, text in enumerate(shown) if text.startswith("Holdout check"))
    assert " ".join(shown[first:first + 2]) == \
        "Holdout check: purchases 1997-10-01 .. 1998-07-01 by repeat purchases before"  # two lines, no word cut


def test_nothing_loads_or_styles_anything_outside_the_chart(examples):
    for name, svg in examples.items():
        root = parse(svg)
        tags = {el.tag.removeprefix(SVG) for el in root.iter()}
        assert not tags & {"style", "script", "image", "foreignObject", "a", "metadata"}, name
        assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', ""), name
        assert "xlink" not in svg, name
        ids = {el.get("id") for el in root.iter() if el.get("id")}
        references = set(re.findall(r'href="#([^"]+)"', svg)) | set(re.findall(r"url\(#([^)]+)\)", svg))
        assert references <= ids, name  # every reference resolves inside the chart...
        assert ids <= references, name  # ...and only what is referred to has an id
        assert all(not el.get("style", "").count("font-family") for el in root.iter()), name


def test_no_two_charts_share_an_id(examples):
    seen = {}
    for name, svg in examples.items():
        for element in parse(svg).iter():
            if element.get("id"):
                assert element.get("id") not in seen, (name, seen.get(element.get("id")))
                seen[element.get("id")] = name
    assert seen  # markers and ticks do refer to shared shapes


def test_a_plot_is_clipped_only_when_data_leave_its_fixed_range(examples):
    assert all("clip-path" not in svg for svg in examples.values())
    outside = charts.line_chart({"s": ([0, 1, 2], [0.5, 1.4, 0.2])}, title="T", x_label="x", y_label="y",
                                y_range=(0, 1))
    assert "clip-path" in outside and "<clipPath" in outside


def test_same_input_gives_the_same_bytes(examples):
    assert example_charts() == examples


def test_charts_stay_small(examples):
    # a chart is a few kB of text whatever the number of points (matplotlib simplifies a path)
    for name, svg in examples.items():
        assert len(svg.encode()) < 30_000, (name, len(svg.encode()))
    many = np.linspace(0, 1, 20_000)
    roc = charts.line_chart({"m": (many, np.sqrt(many))}, title="ROC", x_label="x", y_label="y",
                            x_range=(0, 1), y_range=(0, 1), markers=False)
    assert len(roc.encode()) < 30_000


def test_numbers_are_written_as_people_read_them(examples):
    bar = texts(parse(examples["bar"]))
    assert {"55%", "52%", "Share of customers", "Share of revenue"} <= set(bar)  # values on the bars, legend
    assert "100%" not in bar or "60%" in bar  # percent ticks
    assert "About to sleep" in " ".join(bar)  # a long category label wraps onto two lines, whole
    horizontal = texts(parse(examples["bar_horizontal"]))
    assert "12,054" in horizontal and "2,912" in horizontal
    rfm = texts(parse(examples["rfm"]))
    assert "9,000" in rfm and "No data" in rfm
    palive = texts(parse(examples["palive"]))
    assert "0%" in palive and "100%" in palive
    roc = texts(parse(examples["roc"]))
    assert {"0%", "40%", "100%", "Chance"} <= set(roc)
    assert "\u22121" in texts(parse(charts.bar_chart(["a", "b"], {"n": [-1, 2]}, title="T")))  # a real minus sign


def test_heatmap_text_contrasts_with_its_cell():
    root = parse(charts.heatmap(["a"], ["low", "high"], [[3, 97]], title="T", value_range=(0, 100)))
    fills = {"".join(el.itertext()): el.get("style", "") for el in root.iter(f"{SVG}text")}
    assert "fill: #ffffff" in fills["97"].lower() and "fill: #ffffff" not in fills["3"].lower()


def test_text_is_escaped_and_round_trips():
    label = 'Tom & Jerry <"best">'
    root = parse(charts.bar_chart([label, "b"], {"n": [1, 2]}, title=f"A {label} chart"))
    assert root.get("aria-label") == f"A {label} chart" and root[0].text == f"A {label} chart"
    assert label in texts(root)


def test_the_clv_distribution_is_in_the_run_s_currency():
    import pandas as pd

    from cdnow.presentation.figures import value_chart_data, value_figures

    ids = ["a", "b", "c", "d"]
    customer_value = pd.DataFrame({"customer_id": ids, "clv_12m": [0.05, 8.0, 120.0, 2500.0],
                                   "p_alive": [0.1, 0.5, 0.8, 0.9]})
    features = pd.DataFrame({"customer_id": ids, "recency_days": [400, 200, 30, 5], "purchase_days": [1, 2, 5, 12]})
    holdout = {"calibration_end": "2010-06-01", "observation_end": "2011-12-10",
               "by_calibration_frequency": [{"mean_actual": 0.4, "mean_predicted": 0.5},
                                            {"mean_actual": 1.2, "mean_predicted": 1.1}]}

    def shown(**currency):
        return texts(parse(value_figures(value_chart_data(customer_value, features), holdout, **currency)["clv_distribution"]))

    pounds = shown(currency="GBP")
    assert [t for t in pounds if t.startswith("\u00a3")] == ["\u00a30.1", "\u00a31", "\u00a310", "\u00a3100",
                                                             "\u00a31,000", "\u00a310,000"]
    assert "12-month CLV in GBP (log scale)" in pounds and not any("$" in t for t in pounds)
    dollars = shown()  # a run that names no currency: dollars
    assert "$1,000" in dollars and "12-month CLV in USD (log scale)" in dollars
    assert "CHF 1,000" in shown(currency="CHF")


def test_every_segment_has_a_profile_panel_with_the_legend(examples):
    shown = texts(parse(examples["profile"]))
    assert all(segment in shown for segment in SEGMENTS)
    assert {"Above average", "Below average", "Index (100 = overall mean)"} <= set(shown)


def test_numpy_scalars_and_arrays_are_accepted():
    values = np.array([0.25, 0.75])
    svg = charts.bar_chart(np.array(["a", "b"]), {"n": values}, title="T", value_format="{:.0%}")
    assert "75%" in texts(parse(svg))
    charts.heatmap(["a"], ["c"], np.array([[np.float32(1.5)]]), title="T")
    charts.line_chart({"s": (np.arange(3), np.arange(3) * 2.0)}, title="T", x_label="x", y_label="y")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: charts.bar_chart(["a"], {"n": [1]}, title=""), "title must be a non-empty string"),
        (lambda: charts.bar_chart(["a"], {"n": [1]}, title="T", width=100), "at least 240 x 160"),
        (lambda: charts.bar_chart(["a", "b"], {"n": [1]}, title="T"), "has 1 values but there are 2 categories"),
        (lambda: charts.bar_chart(["a"], {}, title="T"), "series must be a non-empty mapping"),
        (lambda: charts.bar_chart(["a"], {"n": [math.nan]}, title="T"), "NaN or infinite"),
        (lambda: charts.bar_chart(["a"], {"n": [1]}, title="T", value_format="{:q}"), "cannot format a number"),
        (lambda: charts.bar_chart(["a"], {str(i): [1] for i in range(9)}, title="T"), "at most 8"),
        (lambda: charts.line_chart({"s": ([0, 1], [0])}, title="T", x_label="x", y_label="y"), "2 x values but 1 y"),
        (lambda: charts.line_chart({"s": ([0], [0])}, title="T", x_label="x", y_label="y", percent_axes="z"),
         "percent_axes"),
        (lambda: charts.heatmap(["a"], ["c", "d"], [[1]], title="T"), "values is 1 x 1"),
        (lambda: charts.heatmap(["a"], ["c"], [[None]], title="T"), "every cell is None"),
        (lambda: charts.histogram([0, 1], [1, 2], title="T", x_label="x"), "one more value than counts"),
        (lambda: charts.histogram([0, 2, 1], [1, 2], title="T", x_label="x"), "strictly increasing"),
        (lambda: charts.histogram([0, 1], [-1], title="T", x_label="x"), "negative"),
        (lambda: charts.profile_chart(["a"], ["f", "g"], [[100]], title="T"), "1 segments x 2 features"),
    ],
)
def test_invalid_input_raises_value_error_naming_the_problem(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)
