"""The report's charts, drawn with matplotlib and written as SVG documents to inline in HTML.

Each function takes plain numbers (lists, numpy arrays) and returns one ``<svg>`` document as a
string: matplotlib draws it (Agg, no pyplot state; the look is ``style.matplotlib_rc``) and
``_inline_ready`` makes its SVG output fit to paste into a page beside the others:

    * text stays text (``svg.fonttype: none``), shown in the page's fonts: small and searchable;
    * the root element names the chart: ``role="img"``, an ``aria-label`` and a ``<title>``;
    * no XML prolog or DOCTYPE, no ``<style>`` element (inline, it would style the whole page),
      no metadata with links; only the ids that something refers to, prefixed with a hash of the
      chart so that several charts in one page never share one;
    * deterministic: ``svg.hashsalt`` fixed, no date; the same input gives the same bytes.

A plot is clipped to its axes only when a fixed range leaves data outside it: otherwise nothing
refers to a clip path, and the page holds no ``url()`` at all.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import style

# matplotlib writes its font cache under MPLCONFIGDIR on first import: on Lambda only /tmp is
# writable (a home directory that is not makes it warn and use a new temporary folder each time).
if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), "matplotlib"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib import style as mpl_style  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.textpath import TextToPath  # noqa: E402

__all__ = ["bar_chart", "heatmap", "histogram", "line_chart", "profile_chart"]

ValueFormat = str | Callable[[float], str]

SVG_NS = "http://www.w3.org/2000/svg"
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
ET.register_namespace("", SVG_NS)

# matplotlib is not thread-safe, and the offline stack runs the Parallel branches' steps in
# threads of one process: one chart at a time.
_LOCK = threading.Lock()
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_MIN_WIDTH, _MIN_HEIGHT = 240, 160


# --------------------------------------------------------------------------- values and formats


def _formatter(value_format: ValueFormat | None) -> Callable[[float], str]:
    """A callable from a ``str.format`` template (``"{:,.0f}"``, ``"{:.0%}"``), ``"percent"``
    (fractions as whole percentages) or a callable."""
    spec = "{:,.0f}" if value_format is None else value_format
    if spec == "percent":
        spec = "{:.0%}"
    if callable(spec):
        func = spec

        def fmt(v: float) -> str:
            return str(func(v))
    elif isinstance(spec, str):
        fmt = spec.format
    else:
        raise ValueError(f"value_format must be a format string, 'percent' or a callable, got {spec!r}")
    try:
        fmt(0.5)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise ValueError(f"value_format {spec!r} cannot format a number: {exc}") from None
    return lambda v: fmt(v).replace("-", "\u2212")


def _is_percent(fmt: Callable[[float], str]) -> bool:
    return fmt(0.5).rstrip().endswith("%")


def _value_ticks(fmt: Callable[[float], str]) -> ticker.Formatter:
    """Value-axis tick labels in the chart's unit: percentages, or thousands separators."""
    if _is_percent(fmt):
        return ticker.PercentFormatter(xmax=1.0, decimals=None)
    return ticker.StrMethodFormatter("{x:,.10g}")


def _numbers(values: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numbers") from None
    if array.size == 0:
        raise ValueError(f"{what} is empty")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return array


def _check(title: Any, width: float, height: float) -> str:
    if not isinstance(title, str) or not title.strip():
        raise ValueError("title must be a non-empty string (it is the chart's accessible name)")
    if width < _MIN_WIDTH or height < _MIN_HEIGHT:
        raise ValueError(f"width x height must be at least {_MIN_WIDTH} x {_MIN_HEIGHT}, got {width:g} x {height:g}")
    return title.strip()


# --------------------------------------------------------------------------- text that fits


def _text_width(text: str, size: float, weight: str = "normal") -> float:
    """The width of ``text`` in px (= pt: the charts are drawn at 72 dpi), from the layout font's
    metrics."""
    prop = FontProperties(family=style.LAYOUT_FONT, size=size, weight=weight)
    width, _, _ = TextToPath().get_text_width_height_descent(text, prop, ismath=False)
    return width


def _wrap(text: str, max_width: float, size: float, *, max_lines: int = 2, weight: str = "normal") -> str:
    """``text`` broken on spaces into lines of at most ``max_width`` px; past ``max_lines`` the
    rest is cut with an ellipsis."""
    lines: list[str] = []
    for word in str(text).split():
        if lines and _text_width(f"{lines[-1]} {word}", size, weight) <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        last = " ".join(lines[max_lines - 1:])
        while last and _text_width(last + "\u2026", size, weight) > max_width:
            last = last[:-1]
        lines = [*lines[:max_lines - 1], last.rstrip() + "\u2026"]
    return "\n".join(lines) or str(text)


# --------------------------------------------------------------------------- figure and SVG


def _figure(title: str, width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` px (1 pt = 1 px in the SVG's user units) with the chart
    title top left, wrapped onto a second line when it is long."""
    fig = Figure(figsize=(width / 72, height / 72), dpi=72, layout="constrained")
    fig.get_layout_engine().set(w_pad=10 / 72, h_pad=8 / 72)
    fig.suptitle(_wrap(title, width - 24, style.TITLE_SIZE, weight="bold"), x=12 / width, ha="left",
                 color=style.CHART_TEXT)
    return fig


def _render(draw: Callable[[], Figure], title: str) -> str:
    with _LOCK, mpl_style.context(["default", style.matplotlib_rc()]):
        fig = draw()
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return _inline_ready(buffer.getvalue(), title)


_NUMBER = re.compile(r"-?\d+\.\d+")


def _round(text: str) -> str:
    """Coordinates to 0.01 px: matplotlib writes six decimals, a screen shows none."""
    return _NUMBER.sub(lambda m: f"{float(m.group()):.2f}".rstrip("0").rstrip("."), text)


def _inline_ready(svg: str, title: str) -> str:
    """matplotlib's SVG as a document that can be written to a file and inlined in a page."""
    root = ET.fromstring(svg.encode())  # the prolog and the DOCTYPE go with the parse
    prefix = "c" + hashlib.sha256(svg.encode()).hexdigest()[:8] + "-"
    refs = set(re.findall(r'(?:href="#|url\(#)([^")]+)', svg))
    parents = {child: parent for parent in root.iter() for child in parent}
    for element in list(root.iter()):
        tag = element.tag.rsplit("}", 1)[-1]
        if tag in ("metadata", "style"):
            parents[element].remove(element)
            continue
        if "id" in element.attrib:
            if element.attrib["id"] in refs:
                element.set("id", prefix + element.attrib["id"])
            else:
                del element.attrib["id"]
        href = element.attrib.pop(_XLINK_HREF, None)
        if href is not None:
            element.set("href", "#" + prefix + href.lstrip("#"))
        if "clip-path" in element.attrib:
            element.set("clip-path", element.attrib["clip-path"].replace("url(#", "url(#" + prefix))
        if "style" in element.attrib:
            # the font is set once on the root: each text keeps its size, weight and anchor
            declarations = [d.strip() for d in element.attrib["style"].split(";") if d.strip()]
            element.set("style", "; ".join(d for d in declarations if not d.startswith("font-family")))
        for name in ("d", "x", "y", "transform", "points"):
            if name in element.attrib:
                element.set(name, _round(" ".join(element.attrib[name].split())))
    _unwrap_bare_groups(root)
    root.attrib.pop("version", None)
    for name in ("width", "height"):  # matplotlib's points are the page's px: 1 user unit each
        root.set(name, root.attrib[name].removesuffix("pt"))
    root.set("role", "img")
    root.set("aria-label", title)
    root.set("font-family", style.chart_font_family())
    # what matplotlib's <style> element said, as attributes every shape inherits
    root.set("stroke-linejoin", "round")
    root.set("stroke-linecap", "butt")
    heading = ET.Element(f"{{{SVG_NS}}}title")
    heading.text = title
    root.insert(0, heading)
    for defs in [d for d in root.iter(f"{{{SVG_NS}}}defs") if len(d) == 0]:
        _remove(root, defs)
    ET.indent(root, space="")
    return ET.tostring(root, encoding="unicode") + "\n"


def _unwrap_bare_groups(element: ET.Element) -> None:
    """A ``<g>`` without attributes does nothing: its children take its place."""
    children = []
    for child in element:
        _unwrap_bare_groups(child)
        if child.tag == f"{{{SVG_NS}}}g" and not child.attrib:
            children.extend(child)
        else:
            children.append(child)
    element[:] = children


def _remove(root: ET.Element, target: ET.Element) -> None:
    for parent in root.iter():
        if target in list(parent):
            parent.remove(target)
            return


# --------------------------------------------------------------------------- axes helpers


def _style_axes(ax, *, value_axis: str = "y") -> None:
    ax.grid(True, axis=value_axis)
    ax.tick_params(length=4, width=1)
    for line in ax.get_xgridlines() + ax.get_ygridlines():
        line.set_clip_on(False)


def _legend(fig: Figure, ax, handles=None, labels=None) -> None:
    """The legend above the plot, left aligned, in as many columns as fit."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if len(handles) < 2:
        return
    ax.legend(handles, labels, loc="lower left", bbox_to_anchor=(0, 1.01), ncols=_legend_columns(fig, labels),
              borderaxespad=0, handlelength=1.6, columnspacing=1.4, fontsize=style.LABEL_SIZE)


def _legend_columns(fig: Figure, labels: Sequence[str]) -> int:
    width = fig.get_figwidth() * 72 - 80
    widest = max(_text_width(label, style.LABEL_SIZE) for label in labels) + 48
    return max(1, min(len(labels), int(width // widest)))


def _unclipped(ax, clip: bool = False) -> None:
    """Nothing inside the plot is clipped unless the data leave a fixed range (``clip``)."""
    for artist in ax.get_children():
        if artist is not ax.patch and not clip:
            artist.set_clip_on(False)


# --------------------------------------------------------------------------- bar chart


def bar_chart(
    categories: Sequence[Any],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    y_label: str = "",
    value_format: ValueFormat = "{:,.0f}",
    horizontal: bool = False,
    show_values: bool | None = None,
    category_label: str = "",
    width: float = 640,
    height: float = 400,
) -> str:
    """Grouped bars: one group per category, one bar per series (a legend when several), each
    bar's value written on it when the labels fit (``show_values=None``)."""
    title = _check(title, width, height)
    cats = [str(c) for c in categories]
    if not cats:
        raise ValueError("categories is empty")
    if not isinstance(series, Mapping) or not series:
        raise ValueError("series must be a non-empty mapping of series name -> values")
    if len(series) > len(style.OKABE_ITO):
        raise ValueError(f"{len(series)} series: at most {len(style.OKABE_ITO)} can be told apart")
    data = {str(name): _numbers(values, f"series {name!r}") for name, values in series.items()}
    for name, values in data.items():
        if len(values) != len(cats):
            raise ValueError(f"series {name!r} has {len(values)} values but there are {len(cats)} categories")
    fmt = _formatter(value_format)

    def draw() -> Figure:
        fig = _figure(title, width, height)
        ax = fig.add_subplot()
        n = len(data)
        group = 0.8 if n > 1 else 0.7
        bar = group / n
        positions = np.arange(len(cats), dtype=np.float64)
        slot = (width - 100) / len(cats)
        labels_fit = show_values
        if labels_fit is None:
            labels_fit = len(cats) * n <= 48 and all(
                _text_width(fmt(v), style.VALUE_SIZE) <= (slot * bar if not horizontal else 1e9) + 2
                for values in data.values() for v in values)
        for i, (name, values) in enumerate(data.items()):
            offsets = positions - group / 2 + (i + 0.5) * bar
            kwargs = {"color": style.OKABE_ITO[i], "label": name}
            if horizontal:
                bars = ax.barh(offsets, values, height=bar * (0.9 if n > 1 else 1.0), **kwargs)
            else:
                bars = ax.bar(offsets, values, width=bar * (0.9 if n > 1 else 1.0), **kwargs)
            if labels_fit:
                ax.bar_label(bars, labels=[fmt(v) for v in values], padding=3, fontsize=style.VALUE_SIZE,
                             color=style.CHART_TEXT)
        if horizontal:
            ax.set_yticks(positions, [_wrap(c, width * 0.3, style.TICK_SIZE) for c in cats])
            ax.invert_yaxis()  # the first category on top
            ax.xaxis.set_major_formatter(_value_ticks(fmt))
            ax.axvline(0, color=style.AXIS, linewidth=1)
            ax.set_xlabel(y_label)
            ax.set_ylabel(category_label)
            ax.margins(x=0.12 if labels_fit else 0.02)
            _style_axes(ax, value_axis="x")
        else:
            ax.set_xticks(positions, [_wrap(c, slot - 6, style.TICK_SIZE) for c in cats])
            ax.yaxis.set_major_formatter(_value_ticks(fmt))
            ax.axhline(0, color=style.AXIS, linewidth=1)
            ax.set_ylabel(y_label)
            ax.set_xlabel(category_label)
            ax.margins(y=0.1 if labels_fit else 0.02)
            ax.tick_params(axis="x", length=0)
            _style_axes(ax, value_axis="y")
        _legend(fig, ax)
        _unclipped(ax)
        return fig

    return _render(draw, title)


# --------------------------------------------------------------------------- line chart


def line_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    diagonal: bool | str = False,
    percent_axes: bool | str = False,
    markers: bool | None = None,
    width: float = 640,
    height: float = 400,
) -> str:
    """Lines through (x, y) points, one per series, in the given order. ``x_range``/``y_range``
    fix an axis; ``diagonal`` draws the dashed y = x reference (a string names it in the legend);
    ``percent_axes``: ``True``, ``"x"`` or ``"y"`` shows fractions as percentages; ``markers``: a
    distinct marker per series (``None``: when no series has more than 25 points)."""
    title = _check(title, width, height)
    if not isinstance(series, Mapping) or not series:
        raise ValueError("series must be a non-empty mapping of series name -> (x values, y values)")
    if len(series) > len(style.OKABE_ITO):
        raise ValueError(f"{len(series)} series: at most {len(style.OKABE_ITO)} can be told apart")
    if percent_axes not in (True, False, "x", "y"):
        raise ValueError(f"percent_axes must be True, False, 'x' or 'y', got {percent_axes!r}")
    data = {}
    for name, pair in series.items():
        try:
            xs, ys = pair
        except (TypeError, ValueError):
            raise ValueError(f"series {name!r} must be an (x values, y values) pair") from None
        xs, ys = _numbers(xs, f"series {name!r} x"), _numbers(ys, f"series {name!r} y")
        if xs.shape != ys.shape:
            raise ValueError(f"series {name!r} has {len(xs)} x values but {len(ys)} y values")
        data[str(name)] = (xs, ys)
    if markers is None:
        markers = max(len(xs) for xs, _ in data.values()) <= 25
    all_x = np.concatenate([xs for xs, _ in data.values()])
    all_y = np.concatenate([ys for _, ys in data.values()])
    outside = any(rng is not None and (values.min() < rng[0] or values.max() > rng[1])
                  for rng, values in ((x_range, all_x), (y_range, all_y)))

    def draw() -> Figure:
        fig = _figure(title, width, height)
        ax = fig.add_subplot()
        for i, (name, (xs, ys)) in enumerate(data.items()):
            ax.plot(xs, ys, color=style.OKABE_ITO[i], label=name, solid_capstyle="round",
                    marker=_MARKERS[i % len(_MARKERS)] if markers or len(xs) == 1 else None,
                    markeredgecolor="#FFFFFF", markeredgewidth=1, zorder=2 + i)
        if x_range is not None:
            ax.set_xlim(*x_range)
        if y_range is not None:
            ax.set_ylim(*y_range)
        if diagonal:  # y = x across the plot, drawn under the series
            (x_lo, x_hi), (y_lo, y_hi) = ax.get_xlim(), ax.get_ylim()
            ends = [max(x_lo, y_lo), min(x_hi, y_hi)]
            ax.plot(ends, ends, color=style.REFERENCE, linewidth=1.25, linestyle=(0, (5, 4)), scalex=False,
                    scaley=False, label=diagonal if isinstance(diagonal, str) else "y = x", zorder=1)
        if percent_axes in (True, "x"):
            ax.xaxis.set_major_formatter(ticker.PercentFormatter(xmax=1.0, decimals=0))
        if percent_axes in (True, "y"):
            ax.yaxis.set_major_formatter(ticker.PercentFormatter(xmax=1.0, decimals=0))
        for axis in (ax.xaxis, ax.yaxis):
            if not isinstance(axis.get_major_formatter(), ticker.PercentFormatter):
                axis.set_major_formatter(ticker.StrMethodFormatter("{x:,.10g}"))
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        _style_axes(ax, value_axis="both")
        _legend(fig, ax)
        _unclipped(ax, clip=outside)
        return fig

    return _render(draw, title)


# --------------------------------------------------------------------------- heat map


def heatmap(
    row_labels: Sequence[Any],
    column_labels: Sequence[Any],
    values: Sequence[Sequence[float | None]],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
    value_format: ValueFormat = "{:,.0f}",
    annotate: bool = True,
    value_range: tuple[float, float] | None = None,
    width: float = 640,
    height: float = 400,
) -> str:
    """Cells coloured light to dark blue with a colour bar; ``values[i][j]`` is row ``i`` (top to
    bottom), column ``j``; ``None`` is a cell without data (grey, "No data" beside the bar). The
    scale runs from 0 (or the minimum, when negative) to the maximum (to 100% for fractions shown
    as percentages) unless ``value_range`` is given; ``annotate`` writes each value in its cell."""
    title = _check(title, width, height)
    rows, cols = [str(r) for r in row_labels], [str(c) for c in column_labels]
    if not rows or not cols:
        raise ValueError("row_labels and column_labels must not be empty")
    grid = np.array([[np.nan if v is None else float(v) for v in row] for row in values], dtype=np.float64)
    if grid.shape != (len(rows), len(cols)):
        raise ValueError(f"values is {grid.shape[0]} x {grid.shape[1] if grid.ndim == 2 else 0} but there are "
                         f"{len(rows)} row and {len(cols)} column labels")
    present = grid[~np.isnan(grid)]
    if present.size == 0:
        raise ValueError("values has no numbers: every cell is None")
    if not np.isfinite(present).all():
        raise ValueError("values holds infinite numbers")
    fmt = _formatter(value_format)
    if value_range is not None:
        lo, hi = (float(v) for v in value_range)
    else:
        lo, hi = min(0.0, float(present.min())), float(present.max())
        if _is_percent(fmt) and lo == 0.0 and hi <= 1.0:
            hi = 1.0
        hi = hi if hi > lo else lo + 1.0
    # 48 steps: as smooth as a continuous ramp to the eye, and few enough for the colour bar to
    # stay shapes (matplotlib rasterizes a bar of 50 or more into an embedded image)
    colours = LinearSegmentedColormap.from_list("report_blues", style.SEQUENTIAL_BLUES, N=48).with_extremes(
        bad=style.MISSING)

    def draw() -> Figure:
        fig = _figure(title, width, height)
        ax = fig.add_subplot()
        mesh = ax.pcolormesh(np.ma.masked_invalid(grid), cmap=colours, vmin=lo, vmax=hi, edgecolors="#FFFFFF",
                             linewidth=1)
        ax.set_xlim(0, len(cols))
        ax.set_ylim(len(rows), 0)
        ax.set_xticks(np.arange(len(cols)) + 0.5, cols)
        ax.set_yticks(np.arange(len(rows)) + 0.5, rows)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        if annotate:
            cell_w = (width - 160) / len(cols)
            texts = [[None if math.isnan(v) else fmt(v) for v in row] for row in grid]
            size = next((s for s in (11, 10, 9, 8)
                         if all(_text_width(t, s) <= cell_w - 4 for row in texts for t in row if t)), 0)
            for i, row in enumerate(texts):
                for j, text in enumerate(row):
                    if text and size:
                        share = (grid[i, j] - lo) / (hi - lo)
                        ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=size,
                                color="#FFFFFF" if share > 0.55 else style.CHART_TEXT)
        bar = fig.colorbar(mesh, ax=ax, fraction=0.05, pad=0.03, aspect=25)
        bar.solids.set_rasterized(False)
        bar.outline.set_edgecolor("#BDBDBD")
        bar.ax.yaxis.set_major_formatter(_value_ticks(fmt))
        bar.ax.tick_params(length=3, color=style.AXIS, labelcolor=style.CHART_MUTED)
        if np.isnan(grid).any():
            bar.ax.text(0.5, -0.04, "No data", transform=bar.ax.transAxes, ha="center", va="top",
                        fontsize=style.TICK_SIZE, color=style.CHART_MUTED,
                        bbox={"boxstyle": "square,pad=0.25", "facecolor": style.MISSING, "edgecolor": "none"})
        _unclipped(ax)
        _unclipped(bar.ax)
        return fig

    return _render(draw, title)


# --------------------------------------------------------------------------- histogram


def histogram(
    bin_edges: Sequence[float],
    counts: Sequence[float],
    *,
    title: str,
    x_label: str,
    y_label: str = "Count",
    x_tick_format: ValueFormat | None = None,
    x_ticks: Sequence[float] | None = None,
    width: float = 640,
    height: float = 400,
) -> str:
    """Adjacent bars, bin ``i`` from ``bin_edges[i]`` to ``bin_edges[i + 1]``, as tall as its count.
    For a log axis, pass log10 edges and label ticks in original units (``x_ticks``,
    ``x_tick_format``)."""
    title = _check(title, width, height)
    edges, heights = _numbers(bin_edges, "bin_edges"), _numbers(counts, "counts")
    if len(edges) != len(heights) + 1:
        raise ValueError(f"bin_edges must have one more value than counts: {len(edges)} edges, "
                         f"{len(heights)} counts")
    if not (np.diff(edges) > 0).all():
        raise ValueError("bin_edges must be strictly increasing")
    if (heights < 0).any():
        raise ValueError("counts must not be negative")
    tick_fmt = None if x_tick_format is None else _formatter(x_tick_format)

    def draw() -> Figure:
        fig = _figure(title, width, height)
        ax = fig.add_subplot()
        ax.stairs(heights, edges, fill=True, color=style.OKABE_ITO[0])
        ax.set_xlim(edges[0], edges[-1])
        ax.set_ylim(0, None)
        ax.margins(y=0.05)
        if x_ticks is not None:
            ax.set_xticks([float(t) for t in x_ticks if edges[0] - 1e-9 <= t <= edges[-1] + 1e-9])
        if tick_fmt is not None:
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: tick_fmt(v)))
        ax.yaxis.set_major_formatter(ticker.StrMethodFormatter("{x:,.10g}"))
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        _style_axes(ax, value_axis="y")
        _unclipped(ax)
        return fig

    return _render(draw, title)


# --------------------------------------------------------------------------- profile chart


def profile_chart(
    segments: Sequence[Any],
    features: Sequence[Any],
    index_values: Sequence[Sequence[float]],
    *,
    title: str,
    x_label: str = "Index (100 = overall mean)",
    width: float = 640,
    height: float = 400,
) -> str:
    """Small multiples: one panel per segment, one horizontal bar per feature from the dashed
    reference at 100 (the overall mean), blue above it, vermillion below; one shared axis."""
    title = _check(title, width, height)
    segs, feats = [str(s) for s in segments], [str(f) for f in features]
    if not segs or not feats:
        raise ValueError("segments and features must not be empty")
    grid = _numbers(index_values, "index_values")
    if grid.shape != (len(segs), len(feats)):
        raise ValueError(f"index_values must be {len(segs)} segments x {len(feats)} features, got {grid.shape}")
    lo = min(0.0, float(grid.min()))
    hi = max(100.0, float(grid.max()))

    def draw() -> Figure:
        fig = _figure(title, width, height)
        n = len(segs)
        label_w = min(max(_text_width(f, style.TICK_SIZE) for f in feats), width * 0.3)
        max_cols = max(1, min(n, int((width - label_w - 40) // 126)))
        n_rows = math.ceil(n / max_cols)
        n_cols = math.ceil(n / n_rows)  # balanced rows: 5 panels as 3 + 2, not 4 + 1
        axes = fig.subplots(n_rows, n_cols, sharex=True, sharey=True, squeeze=False)
        positions = np.arange(len(feats))
        for k, ax in enumerate(axes.flat):
            if k >= n:
                ax.set_visible(False)
                continue
            values = grid[k]
            ax.barh(positions, values - 100.0, left=100.0, height=0.7,
                    color=[style.ABOVE if v >= 100 else style.BELOW for v in values])
            ax.axvline(100.0, color="#333333", linewidth=1.25, linestyle=(0, (4, 3)))
            ax.set_title(_wrap(segs[k], (width - label_w) / n_cols - 8, style.LABEL_SIZE, max_lines=1,
                               weight="bold"), fontsize=style.LABEL_SIZE, color=style.CHART_TEXT)
            ax.set_yticks(positions, [_wrap(f, label_w, style.TICK_SIZE) for f in feats])
            ax.invert_yaxis() if k == 0 else None
            ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=3, steps=[1, 2, 5, 10]))
            ax.xaxis.set_major_formatter(ticker.StrMethodFormatter("{x:,.0f}"))
            _style_axes(ax, value_axis="x")
            ax.tick_params(axis="y", length=0)
            ax.tick_params(axis="x", labelbottom=True)  # every panel reads on its own
            _unclipped(ax)
        axes.flat[0].set_xlim(lo, hi + (hi - lo) * 0.04)
        legend = [Patch(color=style.ABOVE, label="Above average"),
                  Patch(color=style.BELOW, label="Below average")]
        if n < len(axes.flat):  # in the first free slot of the grid
            slot = axes.flat[n]
            slot.set_visible(True)
            slot.axis("off")
            slot.legend(handles=legend, loc="center left", fontsize=style.LABEL_SIZE)
            if x_label:
                fig.supxlabel(x_label, fontsize=style.LABEL_SIZE, color=style.CHART_MUTED)
        else:  # below the panels, the axis title above its keys
            fig.legend(handles=legend, loc="outside lower center", ncols=2, fontsize=style.LABEL_SIZE,
                       title=x_label or None, title_fontsize=style.LABEL_SIZE)
        return fig

    return _render(draw, title)
