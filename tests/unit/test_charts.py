import math
import xml.etree.ElementTree as ET

import pytest

from cdnow.presentation import charts

SVG = "{http://www.w3.org/2000/svg}"
SEGMENTS = ["Champions", "Loyal", "New or promising", "At risk", "Lost"]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def by_class(root: ET.Element, cls: str) -> list[ET.Element]:
    return [el for el in root.iter() if el.get("class") == cls]


def texts(root: ET.Element) -> list[str]:
    """The visible text of every <text> element (tooltips excluded)."""
    return ["".join(el.itertext()) for el in root.iter(f"{SVG}text")]


def tooltip(el: ET.Element) -> str | None:
    title = el.find(f"{SVG}title")
    return None if title is None else title.text


def num(el: ET.Element, attr: str) -> float:
    return float(el.get(attr))


def path_points(d: str) -> list[tuple[float, float]]:
    assert d.startswith("M")
    return [tuple(float(v) for v in pair.split(",")) for pair in d[1:].split("L")]


# ----------------------------------------------------------------- example charts


def example_charts() -> dict[str, str]:
    fpr = [0.0, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0]
    tpr = [0.0, 0.4, 0.6, 0.75, 0.88, 0.96, 1.0]
    return {
        "bar": charts.bar_chart(
            SEGMENTS,
            {"Share of customers": [0.08, 0.12, 0.25, 0.15, 0.40],
             "Share of revenue": [0.45, 0.25, 0.12, 0.10, 0.08]},
            title="Segment size vs revenue share", y_label="Share", value_format="percent"),
        "bar_horizontal": charts.bar_chart(
            SEGMENTS, {"Customers": [1890, 2834, 5906, 3544, 9451]},
            title="Customers per segment", y_label="Customers", horizontal=True),
        "roc": charts.line_chart(
            {"Churn model": (fpr, tpr)}, title="ROC curve", x_label="False positive rate",
            y_label="True positive rate", x_range=(0, 1), y_range=(0, 1), diagonal="Chance",
            percent_axes=True),
        "calibration": charts.line_chart(
            {"Model": ([0.05, 0.15, 0.3, 0.5, 0.7, 0.9], [0.04, 0.18, 0.27, 0.55, 0.66, 0.93])},
            title="Calibration", x_label="Mean predicted probability", y_label="Observed churn rate",
            x_range=(0, 1), y_range=(0, 1), diagonal="Perfect calibration", percent_axes=True),
        "holdout": charts.line_chart(
            {"Predicted": ([0, 1, 2, 3, 4, 5], [0.2, 0.9, 1.7, 2.4, 3.1, 3.7]),
             "Actual": ([0, 1, 2, 3, 4, 5], [0.25, 0.8, 1.8, 2.2, 3.4, 3.5])},
            title="Holdout check", x_label="Calibration-period purchases",
            y_label="Holdout purchases (mean)"),
        "rfm": charts.heatmap(
            ["0-30 d", "31-90 d", "91-365 d", "> 365 d"], ["1", "2", "3-4", "5+"],
            [[1200, 800, 500, 300], [900, 400, 250, None], [1500, 300, 80, None],
             [9000, 700, 40, None]],
            title="RFM grid", x_label="Purchase days", y_label="Recency"),
        "palive": charts.heatmap(
            [str(f) for f in range(6)], [str(r) for r in range(0, 300, 50)],
            [[round(1 / (1 + math.exp(-(f - r / 60))), 3) for r in range(0, 300, 50)] for f in range(6)],
            title="P(alive)", x_label="Recency (days)", y_label="Frequency", value_format="percent"),
        "histogram": charts.histogram(
            [0, 50, 100, 200, 400, 800], [5000, 3000, 1500, 400, 60],
            title="12-month CLV", x_label="CLV ($)", y_label="Customers"),
        "profile": charts.profile_chart(
            SEGMENTS, ["recency_days", "purchase_days", "monetary_total"],
            [[20, 420, 510], [45, 210, 190], [60, 60, 55], [190, 150, 140], [160, 40, 35]],
            title="Segment profiles"),
    }


def test_examples_are_standalone_accessible_svg(tmp_path):
    examples = example_charts()
    for name, svg in examples.items():
        (tmp_path / f"{name}.svg").write_text(svg, encoding="utf-8")  # for a human to look at
        root = parse(svg)
        assert root.tag == f"{SVG}svg", name
        assert root.get("viewBox") == "0 0 640 400", name
        assert root.get("width") == "640" and root.get("height") == "400", name
        assert root.get("role") == "img", name
        assert root[0].tag == f"{SVG}title", name
        assert root.get("aria-label") == root[0].text, name
        assert "sans-serif" in root.get("font-family"), name
        # nothing that needs the network, nothing that leaks into a host page
        tags = {el.tag.removeprefix(SVG) for el in root.iter()}
        assert not tags & {"style", "script", "image", "foreignObject", "a", "use"}, name
        assert not any(el.get("id") or el.get("href") for el in root.iter()), name
        assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', ""), name
        # every coordinate stays inside the chart
        for el in root.iter(f"{SVG}rect"):
            if el.get("x") is not None:
                assert -0.01 <= num(el, "x") and num(el, "x") + num(el, "width") <= 640.01, name
                assert -0.01 <= num(el, "y") and num(el, "y") + num(el, "height") <= 400.01, name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.svg" for n in examples)


def test_title_text_is_in_the_chart():
    examples = example_charts()
    assert parse(examples["roc"])[0].text == "ROC curve"
    assert "ROC curve" in texts(parse(examples["roc"]))
    assert "Segment profiles" in texts(parse(examples["profile"]))


def test_same_input_gives_identical_output():
    assert example_charts() == example_charts()


# ----------------------------------------------------------------- bar chart


def test_bar_heights_are_proportional_to_values():
    svg = charts.bar_chart(["a", "b", "c"], {"n": [10, 20, 40]}, title="T", y_label="Count")
    bars = by_class(parse(svg), "bar")
    assert len(bars) == 3
    heights = [num(b, "height") for b in bars]
    assert heights[1] / heights[0] == pytest.approx(2, rel=1e-3)
    assert heights[2] / heights[0] == pytest.approx(4, rel=1e-3)
    # all bars stand on the same baseline, which is the zero line
    bottoms = {round(num(b, "y") + num(b, "height"), 2) for b in bars}
    assert len(bottoms) == 1
    baseline = by_class(parse(svg), "baseline")[0]
    assert num(baseline, "y1") == pytest.approx(bottoms.pop(), abs=0.01)


def test_grouped_bars_count_legend_and_tooltips():
    svg = charts.bar_chart(SEGMENTS, {"Customers": [1, 2, 3, 4, 5], "Revenue": [5, 4, 3, 2, 1]},
                           title="Grouped", y_label="v")
    root = parse(svg)
    bars = by_class(root, "bar")
    assert len(bars) == 10
    assert len(by_class(root, "legend-item")) == 2
    fills = [b.get("fill") for b in bars]
    assert fills[0::2] == [charts.OKABE_ITO[0]] * 5 and fills[1::2] == [charts.OKABE_ITO[1]] * 5
    assert tooltip(bars[1]) == "Champions \u00b7 Revenue: 5"
    # single series: no legend
    single = parse(charts.bar_chart(["a"], {"n": [1]}, title="T"))
    assert by_class(single, "legend-item") == []


def test_horizontal_bar_widths_are_proportional_and_negative_bars_go_left():
    svg = charts.bar_chart(["up", "down", "double"], {"change": [100, -50, 200]}, title="T",
                           y_label="Change", horizontal=True)
    root = parse(svg)
    up, down, double = by_class(root, "bar")
    assert num(double, "width") / num(up, "width") == pytest.approx(2, rel=1e-3)
    assert num(down, "width") / num(up, "width") == pytest.approx(0.5, rel=1e-3)
    zero = num(by_class(root, "baseline")[0], "x1")
    assert num(up, "x") == pytest.approx(zero, abs=0.01)
    assert num(down, "x") + num(down, "width") == pytest.approx(zero, abs=0.01)
    assert num(up, "y") < num(down, "y") < num(double, "y")  # first category on top


def test_percent_value_labels_and_ticks():
    svg = charts.bar_chart(["a", "b"], {"share": [0.25, 0.5]}, title="Shares", y_label="Share",
                           value_format="percent")
    root = parse(svg)
    assert [t.text for t in by_class(root, "value-label")] == ["25%", "50%"]
    ticks = [t.text for t in by_class(root, "tick")]
    assert ticks[0] == "0%" and all(t.endswith("%") for t in ticks)
    assert "60%" in ticks or "50%" in ticks
    one_decimal = parse(charts.bar_chart(["a"], {"s": [0.1234]}, title="T", value_format="{:.1%}"))
    assert by_class(one_decimal, "value-label")[0].text == "12.3%"


def test_thousands_separators_and_currency_prefix():
    root = parse(charts.bar_chart(["a", "b"], {"rev": [1234567, 2500000]}, title="Revenue",
                                  value_format="${:,.0f}"))
    assert [t.text for t in by_class(root, "value-label")] == ["$1,234,567", "$2,500,000"]
    ticks = [t.text for t in by_class(root, "tick")]
    assert "$1,000,000" in ticks and ticks[0] == "$0"


def test_text_is_escaped_and_round_trips():
    name = "A & <B>"
    svg = charts.bar_chart([name, "C"], {name: [1, 2], "other": [2, 1]}, title=f"Title {name}",
                           y_label=name)
    assert "A &amp; &lt;B&gt;" in svg and "<B>" not in svg
    root = parse(svg)
    assert root[0].text == f"Title {name}"
    assert root.get("aria-label") == f"Title {name}"
    shown = texts(root)
    assert shown.count(name) >= 3  # category label, legend entry, axis title
    assert tooltip(by_class(root, "bar")[0]) == f"{name} \u00b7 {name}: 1"
    for svg in (charts.heatmap([name], [name], [[1]], title=name),
                charts.line_chart({name: ([0, 1], [0, 1]), "x": ([0, 1], [1, 0])}, title=name,
                                  x_label=name, y_label=name),
                charts.histogram([0, 1], [1], title=name, x_label=name, y_label=name),
                charts.profile_chart([name], [name], [[120]], title=name)):
        root = parse(svg)
        assert root[0].text == name and name in texts(root)


def test_long_category_labels_are_cut_with_a_tooltip_and_do_not_overlap():
    long = [f"Customer segment number {i} with a very long descriptive name" for i in range(12)]
    svg = charts.bar_chart(long, {"n": list(range(1, 13))}, title="Long labels")
    root = parse(svg)
    labels = [el for el in root.iter() if el.get("class") == "category"]
    assert len(labels) == 12
    groups = [g for g in root.iter(f"{SVG}g") if g.find(f"{SVG}text[@class='category']") is not None]
    assert [tooltip(g) for g in groups] == long  # full text kept as a tooltip
    assert all("".join(el.itertext()).endswith("\u2026") for el in labels)
    # rotated labels, one per slot, anchored at increasing x
    assert all("rotate(-45" in el.get("transform") for el in labels)
    xs = [num(el, "x") for el in labels]
    assert xs == sorted(xs) and min(b - a for a, b in zip(xs, xs[1:])) > 11 * 1.2
    # short labels stay whole and upright
    short = parse(charts.bar_chart(["a", "b"], {"n": [1, 2]}, title="T"))
    assert [el.text for el in by_class(short, "category")] == ["a", "b"]
    assert all(el.get("transform") is None for el in by_class(short, "category"))


def test_wrapped_labels_use_two_lines():
    root = parse(charts.bar_chart(["New or promising customers", "Lost"], {"n": [1, 2]}, title="T",
                                  width=300))
    first = by_class(root, "category")[0]
    lines = [t.text for t in first.iter(f"{SVG}tspan")]
    assert len(lines) == 2 and " ".join(lines) == "New or promising customers"


def test_value_labels_can_be_switched_off():
    root = parse(charts.bar_chart(["a", "b"], {"n": [1, 2]}, title="T", show_values=False))
    assert by_class(root, "value-label") == []


# ----------------------------------------------------------------- line chart


def test_line_chart_maps_points_and_draws_diagonal():
    svg = charts.line_chart({"ROC": ([0, 0.5, 1], [0, 0.8, 1])}, title="ROC", x_label="FPR",
                            y_label="TPR", x_range=(0, 1), y_range=(0, 1), diagonal="Chance",
                            percent_axes=True)
    root = parse(svg)
    (series,) = by_class(root, "series")
    (p0, p1, p2) = path_points(series.get("d"))
    (diag,) = by_class(root, "diagonal")
    # the diagonal runs from (0, 0) to (1, 1): the curve's first and last points
    assert (num(diag, "x1"), num(diag, "y1")) == pytest.approx(p0)
    assert (num(diag, "x2"), num(diag, "y2")) == pytest.approx(p2)
    # x = 0.5 lies halfway, y = 0.8 lies 80% of the way up
    assert p1[0] == pytest.approx((p0[0] + p2[0]) / 2, abs=0.01)
    assert (p0[1] - p1[1]) / (p0[1] - p2[1]) == pytest.approx(0.8, abs=1e-3)
    ticks = [t.text for t in by_class(root, "tick")]
    assert ticks.count("0%") == 2 and ticks.count("100%") == 2  # both axes, as percentages
    assert all(t.endswith("%") for t in ticks)
    legend = [" ".join(el.itertext()) for el in by_class(root, "legend-item")]
    assert legend == ["ROC", "Chance"]


def test_line_chart_series_markers_and_legend():
    data = {f"s{i}": ([1, 2, 3], [i, i + 1, i + 3]) for i in range(3)}
    root = parse(charts.line_chart(data, title="T", x_label="x", y_label="y"))
    assert len(by_class(root, "series")) == 3
    assert len(by_class(root, "marker")) == 9
    assert len(by_class(root, "legend-item")) == 3
    assert [s.get("stroke") for s in by_class(root, "series")] == list(charts.OKABE_ITO[:3])
    no_markers = parse(charts.line_chart(data, title="T", x_label="x", y_label="y", markers=False))
    assert by_class(no_markers, "marker") == []
    # lines are clipped to the plot area by a nested viewport (no clipPath ids)
    (area,) = by_class(root, "plot-area")
    assert area.tag == f"{SVG}svg" and area.get("overflow") == "hidden"


def test_line_chart_nice_ticks_without_ranges():
    root = parse(charts.line_chart({"a": ([0, 9.3], [13, 1234])}, title="T", x_label="x", y_label="y"))
    ticks = [t.text for t in by_class(root, "tick")]
    assert "1,000" in ticks and "0" in ticks and "10" in ticks


# ----------------------------------------------------------------- heatmap


def test_heatmap_cells_colours_and_contrast():
    values = [[0, 50], [None, 100]]
    root = parse(charts.heatmap(["r1", "r2"], ["c1", "c2"], values, title="Grid", x_label="x",
                                y_label="y"))
    cells = by_class(root, "cell")
    missing = by_class(root, "cell-missing")
    assert len(cells) == 3 and len(missing) == 1
    assert tooltip(missing[0]) == "r2 \u00b7 c1: no data"
    labels = by_class(root, "cell-label")
    assert [t.text for t in labels] == ["0", "50", "100"]
    lightest, darkest = cells[0].get("fill"), cells[2].get("fill")
    assert lightest != darkest
    assert labels[0].get("fill") != "#FFFFFF"  # dark text on the light cell
    assert labels[2].get("fill") == "#FFFFFF"  # white text on the dark cell
    # cells tile the grid row by row
    assert num(cells[1], "x") > num(cells[0], "x") and num(cells[2], "y") > num(cells[0], "y")
    assert len(by_class(root, "legend-step")) == 48
    assert "No data" in texts(root)


def test_heatmap_counts_and_percent_format():
    rows, cols = ["a", "b", "c"], ["1", "2", "3", "4"]
    values = [[(i * 4 + j) / 12 for j in range(4)] for i in range(3)]
    root = parse(charts.heatmap(rows, cols, values, title="P(alive)", value_format="percent"))
    assert len(by_class(root, "cell")) == 12
    assert [t.text for t in by_class(root, "cell-label")][:3] == ["0%", "8%", "17%"]
    assert "100%" in [t.text for t in by_class(root, "tick")]  # percent scale runs to 100%
    quiet = parse(charts.heatmap(rows, cols, values, title="T", annotate=False))
    assert by_class(quiet, "cell-label") == []


# ----------------------------------------------------------------- histogram


def test_histogram_bins_follow_edges_and_counts():
    root = parse(charts.histogram([0, 10, 20, 40], [100, 50, 25], title="CLV", x_label="CLV",
                                  y_label="Customers"))
    bins = by_class(root, "bin")
    assert len(bins) == 3
    heights = [num(b, "height") for b in bins]
    assert heights[0] / heights[1] == pytest.approx(2, rel=1e-3)
    assert heights[0] / heights[2] == pytest.approx(4, rel=1e-3)
    # bin 3 is twice as wide as bin 1 (each drawn with the same 1 px gap)
    widths = [num(b, "width") + 1 for b in bins]
    assert widths[2] / widths[0] == pytest.approx(2, rel=1e-3)
    assert tooltip(bins[0]) == "[0, 10): 100" and tooltip(bins[2]) == "[20, 40]: 25"


def test_histogram_custom_ticks_for_log_axis():
    edges = [math.log10(v) for v in (1, 10, 100, 1000)]
    root = parse(charts.histogram(edges, [3, 2, 1], title="CLV", x_label="CLV ($, log scale)",
                                  x_ticks=[0, 1, 2, 3], x_tick_format=lambda v: f"${10 ** v:,.0f}"))
    ticks = [t.text for t in by_class(root, "tick")]
    assert ["$1", "$10", "$100", "$1,000"] == [t for t in ticks if t.startswith("$")]


def test_the_clv_distribution_is_in_the_run_s_currency():
    import pandas as pd

    from cdnow.presentation.figures import value_figures

    ids = ["a", "b", "c", "d"]
    customer_value = pd.DataFrame({"customer_id": ids, "clv_12m": [0.05, 8.0, 120.0, 2500.0],
                                   "p_alive": [0.1, 0.5, 0.8, 0.9]})
    features = pd.DataFrame({"customer_id": ids, "recency_days": [400, 200, 30, 5], "purchase_days": [1, 2, 5, 12]})
    holdout = {"calibration_end": "2010-06-01", "observation_end": "2011-12-10",
               "by_calibration_frequency": [{"mean_actual": 0.4, "mean_predicted": 0.5},
                                            {"mean_actual": 1.2, "mean_predicted": 1.1}]}

    def clv_chart(**currency):
        root = parse(value_figures(customer_value, features, holdout, **currency)["clv_distribution"])
        last = by_class(root, "tick")[-1]  # centred on the right end of the axis
        assert num(last, "x") + charts._text_width(last.text, 11) / 2 <= 640
        return [t.text for t in by_class(root, "tick")], texts(root)

    ticks, shown = clv_chart(currency="GBP")
    assert ["\u00a30.1", "\u00a31", "\u00a310", "\u00a3100", "\u00a31,000", "\u00a310,000"] == [
        t for t in ticks if t.startswith("\u00a3")]
    assert "12-month CLV in GBP (log scale)" in shown and not any("$" in t for t in shown)
    ticks, shown = clv_chart()  # a run that names no currency: dollars
    assert "$1,000" in ticks and "12-month CLV in USD (log scale)" in shown
    ticks, _ = clv_chart(currency="CHF")
    assert "CHF 1,000" in ticks


# ----------------------------------------------------------------- profile chart


def test_profile_chart_bars_start_at_the_100_reference():
    feats = ["recency", "frequency", "monetary"]
    root = parse(charts.profile_chart(["Champions", "Lost"], feats, [[50, 200, 300], [150, 40, 100]],
                                      title="Profiles"))
    bars = by_class(root, "bar")
    refs = by_class(root, "reference")
    assert len(bars) == 6 and len(refs) == 2 and len(by_class(root, "panel")) == 2
    ref_x = num(refs[0], "x1")
    below, above, above3 = bars[:3]
    assert num(above, "x") == pytest.approx(ref_x, abs=0.01)  # 200 extends right of 100
    assert num(below, "x") + num(below, "width") == pytest.approx(ref_x, abs=0.01)  # 50 extends left
    assert num(above3, "width") / num(above, "width") == pytest.approx(2, rel=1e-3)  # 200 vs 100 over
    assert num(above, "width") / num(below, "width") == pytest.approx(2, rel=1e-3)
    assert above.get("fill") != below.get("fill")
    assert num(bars[5], "width") == 0  # exactly average
    assert texts(root).count("recency") == 1  # feature labels once per row of panels


def test_profile_chart_panels_wrap_into_rows():
    segs = [f"Segment {i}" for i in range(7)]
    root = parse(charts.profile_chart(segs, ["a", "b"], [[100 + i, 100 - i] for i in range(7)],
                                      title="Many"))
    panels = by_class(root, "panel")
    assert len(panels) == 7 and len(by_class(root, "bar")) == 14
    tops = sorted({round(num(p.find(f"{SVG}text"), "y")) for p in panels})
    assert len(tops) >= 2  # more than one row of panels


# ----------------------------------------------------------------- inputs


def test_numpy_scalars_and_arrays_are_accepted():
    np = pytest.importorskip("numpy")
    svg = charts.bar_chart(np.array(["a", "b"]), {"n": np.array([1.5, 3.0])}, title="np")
    heights = [num(b, "height") for b in by_class(parse(svg), "bar")]
    assert heights[1] / heights[0] == pytest.approx(2)
    charts.line_chart({"s": (np.linspace(0, 1, 5), np.linspace(0, 1, 5) ** 2)}, title="T",
                      x_label="x", y_label="y")
    charts.heatmap(["a"], ["b", "c"], [[np.float64(1.0), np.int64(2)]], title="T")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: charts.bar_chart(["a", "b"], {"n": [1]}, title="T"), "has 1 values but there are 2 categories"),
        (lambda: charts.bar_chart([], {"n": []}, title="T"), "categories is empty"),
        (lambda: charts.bar_chart(["a"], {}, title="T"), "series is empty"),
        (lambda: charts.bar_chart(["a"], {"n": [float("nan")]}, title="T"), "not a finite number"),
        (lambda: charts.bar_chart(["a"], {"n": [math.inf]}, title="T"), "not a finite number"),
        (lambda: charts.bar_chart(["a"], {"n": [None]}, title="T"), "is not a number"),
        (lambda: charts.bar_chart(["a"], {"n": [1]}, title=""), "title"),
        (lambda: charts.bar_chart(["a"], {"n": [1]}, title="T", value_format="{:d}"), "value_format"),
        (lambda: charts.bar_chart(["a"], {str(i): [1] for i in range(9)}, title="T"), "at most 8"),
        (lambda: charts.bar_chart(["a"], {"n": [1]}, title="T", width=10), "width x height"),
        (lambda: charts.line_chart({"s": ([0, 1], [0])}, title="T", x_label="x", y_label="y"),
         "2 x values but 1 y values"),
        (lambda: charts.line_chart({"s": ([], [])}, title="T", x_label="x", y_label="y"), "no points"),
        (lambda: charts.line_chart({"s": [0, 1, 2]}, title="T", x_label="x", y_label="y"),
         "(x values, y values) pair"),
        (lambda: charts.line_chart({"s": ([0], [1])}, title="T", x_label="x", y_label="y",
                                   x_range=(1, 0)), "low < high"),
        (lambda: charts.line_chart({"s": ([0], [math.nan])}, title="T", x_label="x", y_label="y"),
         "not a finite number"),
        (lambda: charts.line_chart({"s": ([0], [1])}, title="T", x_label="x", y_label="y",
                                   percent_axes="z"), "percent_axes"),
        (lambda: charts.heatmap(["a", "b"], ["c"], [[1]], title="T"), "1 rows but there are 2 row labels"),
        (lambda: charts.heatmap(["a"], ["c", "d"], [[1]], title="T"), "has 1 cells but there are 2 column labels"),
        (lambda: charts.heatmap(["a"], ["c"], [[None]], title="T"), "every cell is None"),
        (lambda: charts.heatmap(["a"], ["c"], [[math.inf]], title="T"), "not a finite number"),
        (lambda: charts.heatmap([], [], [], title="T"), "row_labels is empty"),
        (lambda: charts.histogram([0, 1], [1, 2], title="T", x_label="x"), "one more value than counts"),
        (lambda: charts.histogram([0, 2, 1], [1, 2], title="T", x_label="x"), "strictly increasing"),
        (lambda: charts.histogram([0], [], title="T", x_label="x"), "counts is empty"),
        (lambda: charts.histogram([0, 1], [-1], title="T", x_label="x"), "negative"),
        (lambda: charts.histogram([0, math.nan], [1], title="T", x_label="x"), "not a finite number"),
        (lambda: charts.profile_chart(["a"], ["f", "g"], [[100]], title="T"), "has 1 values but there are 2 features"),
        (lambda: charts.profile_chart(["a", "b"], ["f"], [[100]], title="T"), "1 rows but there are 2 segments"),
        (lambda: charts.profile_chart(["a"], [], [[]], title="T"), "features is empty"),
        (lambda: charts.profile_chart(["a"], ["f"], [[math.nan]], title="T"), "not a finite number"),
    ],
)
def test_invalid_input_raises_value_error_naming_the_problem(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


# ----------------------------------------------------------------- helpers


def test_nice_ticks_and_tick_labels():
    lo, hi, ticks, step = charts._nice_domain(0, 9451, 5)
    assert (lo, hi, step) == (0, 10000, 2000) and ticks == [0, 2000, 4000, 6000, 8000, 10000]
    ticks, step = charts._ticks_within(0, 1, 5)
    assert ticks == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    fmt = charts._tick_formatter(step, percent=True)
    assert [fmt(t) for t in ticks] == ["0%", "20%", "40%", "60%", "80%", "100%"]
    assert charts._tick_formatter(0.05, percent=True)(0.15) == "15%"
    assert charts._tick_formatter(0.005, percent=True)(0.015) == "1.5%"
    assert charts._tick_formatter(0.5)(2.5) == "2.5"
    assert charts._tick_formatter(1000)(-5000) == "\u22125,000"
    assert charts._tick_formatter(0.1)(-0.0) == "0.0"
