"""Standalone SVG charts for the self-contained HTML report.

Standard library only: the renderers take plain lists of numbers (numpy scalars and arrays
are fine, every value goes through ``float()``) and return one SVG document as a string.

Every chart
    * is a complete ``<svg>`` element (xmlns, width, height, viewBox, ``role="img"``, an
      ``aria-label`` and a ``<title>`` holding the chart title) that can be written to a
      ``.svg`` file or pasted inline into HTML;
    * uses presentation attributes only: no ``<style>`` (inline in HTML it would restyle the
      whole page), no scripts, no external fonts, no links, and no ``id`` attributes (several
      charts inlined in one page cannot clash);
    * is deterministic: the same input gives the same string, byte for byte;
    * escapes every piece of text (``xml.sax.saxutils.escape``).

Visual conventions
    Colour-blind-safe Okabe-Ito palette for series, a single-hue light-to-dark blue ramp for
    heatmaps, light grey gridlines at "nice" (1, 2, 5 x 10^k) ticks, thousands separators,
    percent ticks when the value format is a percentage, a legend above the plot as soon as
    there is more than one thing to tell apart. Long category labels wrap onto two lines, or
    are rotated by 45 degrees when the slots are narrow, and are cut with an ellipsis (the full
    text stays in a ``<title>`` tooltip) when they still do not fit. Bars, cells, bins and
    lines carry a ``<title>`` tooltip with their exact value.

Hooks for tests and styling: marks carry a ``class`` (``bar``, ``value-label``, ``series``,
``marker``, ``diagonal``, ``cell``, ``cell-missing``, ``cell-label``, ``legend-step``,
``bin``, ``reference``, ``legend-item``, ``panel``).

Invalid input (empty data, mismatched lengths, NaN or infinite values, an unusable format)
raises ``ValueError`` naming the problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

__all__ = [
    "OKABE_ITO",
    "bar_chart",
    "heatmap",
    "histogram",
    "line_chart",
    "profile_chart",
]

# Okabe & Ito (2008), ordered so that the first colours contrast best on white; the yellow
# is kept for late series.
OKABE_ITO = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
MAX_SERIES = len(OKABE_ITO)

# Sequential light-to-dark blue ramp for heatmaps (one hue: readable by colour-blind
# readers and in greyscale print).
_RAMP = ("#F7FBFF", "#C6DBEF", "#6BAED6", "#2171B5", "#08306B")

FONT_FAMILY = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"
_TEXT = "#222222"
_MUTED = "#555555"
_AXIS = "#666666"
_GRID = "#E5E5E5"
_MISSING = "#E0E0E0"
_ABOVE = OKABE_ITO[0]
_BELOW = OKABE_ITO[3]

_TITLE_SIZE = 15
_LABEL_SIZE = 12
_TICK_SIZE = 11
_VALUE_SIZE = 10
_EDGE = 16  # outer margin, px
_MIN_WIDTH, _MIN_HEIGHT = 240, 160

ValueFormat = str | Callable[[float], str]


# --------------------------------------------------------------------------- validation


def _finite(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{what}: {value!r} is not a finite number (NaN and inf are not allowed)")
    return number


def _numbers(values: Any, what: str) -> list[float]:
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of numbers, not a string")
    try:
        items = list(values)
    except TypeError:
        raise ValueError(f"{what} must be a sequence of numbers") from None
    return [_finite(v, f"{what}[{i}]") for i, v in enumerate(items)]


def _labels(values: Any, what: str) -> list[str]:
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of labels, not a single string")
    try:
        labels = [str(v) for v in values]
    except TypeError:
        raise ValueError(f"{what} must be a sequence of labels") from None
    if not labels:
        raise ValueError(f"{what} is empty")
    return labels


def _check_common(title: Any, width: Any, height: Any) -> tuple[str, float, float]:
    if not isinstance(title, str) or not title.strip():
        raise ValueError("title must be a non-empty string (it is the chart's accessible name)")
    w = _finite(width, "width")
    h = _finite(height, "height")
    if w < _MIN_WIDTH or h < _MIN_HEIGHT:
        raise ValueError(f"width x height must be at least {_MIN_WIDTH} x {_MIN_HEIGHT}, got {w:g} x {h:g}")
    return title.strip(), w, h


def _check_series_count(n: int) -> None:
    if n == 0:
        raise ValueError("series is empty")
    if n > MAX_SERIES:
        raise ValueError(f"{n} series: at most {MAX_SERIES} can be told apart, split the chart")


def _range(value: Any, what: str) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a (low, high) pair") from None
    lo, hi = _finite(lo, f"{what} low"), _finite(hi, f"{what} high")
    if not lo < hi:
        raise ValueError(f"{what} must have low < high, got ({lo:g}, {hi:g})")
    return lo, hi


# --------------------------------------------------------------------------- formatting


def _value_formatter(value_format: ValueFormat | None) -> Callable[[float], str]:
    """A callable from the ``value_format`` argument.

    A ``str.format`` template (``"{:,.0f}"``, ``"${:,.2f}"``, ``"{:.1%}"``), the shortcut
    ``"percent"`` (fractions shown as whole percentages, ``"{:.0%}"``), or a callable.
    """
    spec: ValueFormat = "{:,.0f}" if value_format is None else value_format
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
    return fmt


def _is_percent(fmt: Callable[[float], str]) -> bool:
    return fmt(0.5).rstrip().endswith("%")


def _prefix(fmt: Callable[[float], str]) -> str:
    """A short currency-like prefix of the value format ("$" in "${:,.0f}"), for the ticks."""
    text = fmt(1.0)
    for i, ch in enumerate(text):
        if ch.isdigit() or ch in "-+.\u2212":
            prefix = text[:i]
            return prefix if len(prefix) <= 4 else ""
    return ""


def _number(text_value: float, decimals: int) -> str:
    if round(text_value, decimals) == 0:
        text_value = 0.0
    text = f"{text_value:,.{decimals}f}"
    return "\u2212" + text[1:] if text.startswith("-") else text


def _tick_formatter(step: float, *, percent: bool = False, prefix: str = "") -> Callable[[float], str]:
    """Tick labels with just enough decimals for ``step`` and thousands separators."""
    scale = 100.0 if percent else 1.0
    scaled = step * scale
    decimals = max(0, -math.floor(math.log10(scaled) + 1e-9)) if scaled > 0 else 0
    suffix = "%" if percent else ""

    def fmt(v: float) -> str:
        text = _number(v * scale, decimals)
        if text.startswith("\u2212"):
            return "\u2212" + prefix + text[1:] + suffix
        return prefix + text + suffix

    return fmt


def _f(v: float) -> str:
    """A coordinate, rounded to 0.01 px, without trailing zeros."""
    text = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _esc(text: Any) -> str:
    return escape(str(text))


def _attr(text: Any) -> str:
    return escape(str(text), {'"': "&quot;"})


def _tag(name: str, attrs: Mapping[str, Any], inner: str | None = None) -> str:
    parts = [name]
    for key, value in attrs.items():
        if value is None:
            continue
        shown = _f(value) if isinstance(value, float) else _attr(value)
        parts.append(f'{key}="{shown}"')
    head = " ".join(parts)
    if inner is None:
        return f"<{head}/>"
    return f"<{head}>{inner}</{name}>"


def _tooltip(text: str | None) -> str:
    return f"<title>{_esc(text)}</title>" if text else ""


# --------------------------------------------------------------------------- text layout

_NARROW = set("il.,:;|!'`ftjrI1()[]{} ")
_WIDE = set("mwMW@%")


def _text_width(text: str, size: float) -> float:
    """Estimated rendered width of ``text``.

    No font metrics in a Lambda: a generous per-character guess (sized on DejaVu Sans, wider
    than most system-ui fonts), so labels rather end up a little short than overlapping.
    """
    em = 0.0
    for ch in text:
        if ch in _NARROW:
            em += 0.32
        elif ch in _WIDE:
            em += 0.9
        elif ch.isupper():
            em += 0.7
        elif ch.isdigit():
            em += 0.62
        else:
            em += 0.58
    return em * size


def _ellipsize(text: str, max_width: float, size: float) -> str:
    if _text_width(text, size) <= max_width:
        return text
    cut = text
    while cut and _text_width(cut.rstrip() + "\u2026", size) > max_width:
        cut = cut[:-1]
    return cut.rstrip() + "\u2026"


def _fit_lines(text: str, max_width: float, size: float, max_lines: int = 1) -> tuple[list[str], bool]:
    """Wrap ``text`` on spaces into at most ``max_lines`` lines of ``max_width`` px.

    Returns the lines and whether anything had to be cut (then the caller adds a tooltip).
    """
    words = text.split()
    if not words:
        return [""], False
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if not current or _text_width(candidate, size) <= max_width:
            current = candidate
        else:
            lines.append(current)
            current = word
    lines.append(current)
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [" ".join(lines[max_lines - 1:])]
    fitted = [_ellipsize(line, max_width, size) for line in lines]
    return fitted, fitted != lines


def _text(
    x: float,
    y: float,
    lines: Sequence[str] | str,
    *,
    size: float = _TICK_SIZE,
    anchor: str = "middle",
    valign: str = "baseline",
    fill: str = _TEXT,
    weight: str | None = None,
    cls: str | None = None,
    tooltip: str | None = None,
    rotate: float | None = None,
) -> str:
    """A (multi-line) text element.

    ``valign``: ``baseline`` (y is the first line's baseline), ``top`` (y is the top of the
    block) or ``middle`` (the block is centred on y).
    """
    if isinstance(lines, str):
        lines = [lines]
    step = size * 1.2
    if valign == "top":
        first = y + size * 0.8
    elif valign == "middle":
        first = y - (len(lines) - 1) * step / 2 + size * 0.35
    else:
        first = y
    attrs = {
        "class": cls,
        "x": float(x),
        "y": float(first),
        "font-size": f"{size:g}",
        "font-weight": weight,
        "text-anchor": anchor,
        "fill": fill,
        "transform": f"rotate({rotate:g} {_f(x)} {_f(first)})" if rotate is not None else None,
    }
    if len(lines) == 1:
        body = _esc(lines[0])
    else:
        body = "".join(
            _tag("tspan", {"x": float(x), "dy": "0" if i == 0 else f"{step:g}"}, _esc(line))
            for i, line in enumerate(lines)
        )
    element = _tag("text", attrs, body)
    # The tooltip goes on a wrapping group: some renderers draw a <title> inside <text>.
    return _tag("g", {}, _tooltip(tooltip) + element) if tooltip else element


def _label(x: float, y: float, text: str, max_width: float, *, max_lines: int = 1, **kw: Any) -> str:
    bold = kw.get("weight") is not None  # bold glyphs run ~15% wider
    lines, cut = _fit_lines(text, max_width / (1.15 if bold else 1.0), kw.get("size", _TICK_SIZE), max_lines)
    return _text(x, y, lines, tooltip=text if cut else None, **kw)


# --------------------------------------------------------------------------- scales


def _clean(v: float) -> float:
    return float(f"{v:.12g}")


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0):
        if raw <= m * magnitude * (1 + 1e-9):
            return m * magnitude
    return 10.0 * magnitude


def _ticks_within(lo: float, hi: float, target: int) -> tuple[list[float], float]:
    """Nice ticks inside a fixed [lo, hi]."""
    step = _nice_step(hi - lo, target)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [_clean(k * step) for k in range(first, last + 1)], step


def _nice_domain(lo: float, hi: float, target: int) -> tuple[float, float, list[float], float]:
    """Widen [lo, hi] to nice round limits; returns (lo, hi, ticks, step)."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = _nice_step(hi - lo, target)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    ticks = [_clean(k * step) for k in range(first, last + 1)]
    return ticks[0], ticks[-1], ticks, step


def _scale(d0: float, d1: float, r0: float, r1: float) -> Callable[[float], float]:
    span = d1 - d0

    def to_px(v: float) -> float:
        return r0 + (v - d0) / span * (r1 - r0)

    return to_px


def _with_room(lo: float, hi: float, length: float, pad_hi: float, pad_lo: float = 0.0) -> tuple[float, float]:
    """Extend [lo, hi] so that ``pad_hi``/``pad_lo`` px stay free beyond the data."""
    span = (hi - lo) or 1.0
    usable = max(length - pad_hi - pad_lo, length * 0.5)
    per_px = span / usable
    return lo - pad_lo * per_px, hi + pad_hi * per_px


def _tick_target(length: float, spacing: float) -> int:
    return max(2, min(10, int(length / spacing)))


# --------------------------------------------------------------------------- colours


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def _ramp(t: float) -> str:
    t = min(1.0, max(0.0, t))
    pos = t * (len(_RAMP) - 1)
    i = min(int(pos), len(_RAMP) - 2)
    frac = pos - i
    a, b = _rgb(_RAMP[i]), _rgb(_RAMP[i + 1])
    r, g, bl = (round(a[k] + (b[k] - a[k]) * frac) for k in range(3))
    return f"#{r:02X}{g:02X}{bl:02X}"


def _luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(hex_colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _text_on(background: str) -> str:
    """Dark or white text, whichever contrasts more with ``background`` (WCAG ratio)."""
    lum = _luminance(background)
    dark_lum = _luminance(_TEXT)
    on_white = 1.05 / (lum + 0.05)
    on_dark = (lum + 0.05) / (dark_lum + 0.05)
    return "#FFFFFF" if on_white > on_dark else _TEXT


# --------------------------------------------------------------------------- pieces


def _marker_path(shape: int, x: float, y: float, r: float = 3.6) -> str:
    shape %= 5
    if shape == 0:  # circle
        return f"M{_f(x - r)},{_f(y)}a{_f(r)},{_f(r)} 0 1,0 {_f(2 * r)},0a{_f(r)},{_f(r)} 0 1,0 {_f(-2 * r)},0Z"
    if shape == 1:  # square
        s = r * 0.9
        return f"M{_f(x - s)},{_f(y - s)}h{_f(2 * s)}v{_f(2 * s)}h{_f(-2 * s)}Z"
    if shape == 2:  # triangle up
        return f"M{_f(x)},{_f(y - r * 1.2)}L{_f(x + r * 1.15)},{_f(y + r * 0.8)}L{_f(x - r * 1.15)},{_f(y + r * 0.8)}Z"
    if shape == 3:  # diamond
        d = r * 1.3
        return f"M{_f(x)},{_f(y - d)}L{_f(x + d)},{_f(y)}L{_f(x)},{_f(y + d)}L{_f(x - d)},{_f(y)}Z"
    return f"M{_f(x)},{_f(y + r * 1.2)}L{_f(x + r * 1.15)},{_f(y - r * 0.8)}L{_f(x - r * 1.15)},{_f(y - r * 0.8)}Z"


def _header(title: str, width: float, legend: Sequence[dict[str, Any]]) -> tuple[list[str], float]:
    """Chart title and (when given) the legend rows; returns the parts and the y below them."""
    parts = [_label(_EDGE, 8, title, width - 2 * _EDGE, size=_TITLE_SIZE, anchor="start",
                    valign="top", weight="600", cls="chart-title")]
    bottom = 8 + _TITLE_SIZE * 1.2
    if not legend:
        return parts, bottom
    row_h = 18
    x, y = float(_EDGE), bottom + 6 + row_h / 2
    for item in legend:
        text, cut = _fit_lines(item["label"], width * 0.6, _LABEL_SIZE)
        item_w = 20 + 6 + _text_width(text[0], _LABEL_SIZE) + 18
        if x > _EDGE and x + item_w > width - _EDGE:
            x, y = float(_EDGE), y + row_h
        colour, kind = item["colour"], item["kind"]
        if kind == "box":
            swatch = _tag("rect", {"x": x + 4, "y": y - 6, "width": 12.0, "height": 12.0, "fill": colour})
        else:
            swatch = _tag("line", {"x1": x, "y1": y, "x2": x + 20, "y2": y, "stroke": colour,
                                   "stroke-width": "2" if kind == "line" else "1.5",
                                   "stroke-dasharray": "5 4" if kind == "dash" else None})
            if item.get("marker") is not None:
                swatch += _tag("path", {"d": _marker_path(item["marker"], x + 10, y), "fill": colour,
                                        "stroke": "#FFFFFF", "stroke-width": "1"})
        label = _text(x + 26, y, text, size=_LABEL_SIZE, anchor="start", valign="middle",
                      tooltip=item["label"] if cut else None)
        parts.append(_tag("g", {"class": "legend-item"}, swatch + label))
        x += item_w
    return parts, y + row_h / 2


def _svg(width: float, height: float, title: str, body: Sequence[str]) -> str:
    head = _tag("svg", {
        "xmlns": "http://www.w3.org/2000/svg",
        "width": _f(width),
        "height": _f(height),
        "viewBox": f"0 0 {_f(width)} {_f(height)}",
        "role": "img",
        "aria-label": title,
        "font-family": FONT_FAMILY,
    })[:-2] + ">"
    background = _tag("rect", {"class": "background", "x": "0", "y": "0", "width": _f(width),
                               "height": _f(height), "fill": "#FFFFFF"})
    return "\n".join([head, f"<title>{_esc(title)}</title>", background, *body, "</svg>"]) + "\n"


def _axis_title_left(x: float, y_mid: float, text: str, max_len: float) -> str:
    # rotated -90 degrees about its baseline point: the glyphs lie just left of x + 10
    return _label(x + 10, y_mid, text, max_len, size=_LABEL_SIZE, anchor="middle",
                  fill=_MUTED, rotate=-90, cls="axis-title")


def _axis_title_bottom(x_mid: float, y: float, text: str, max_len: float) -> str:
    return _label(x_mid, y, text, max_len, size=_LABEL_SIZE, anchor="middle", valign="top",
                  fill=_MUTED, cls="axis-title")


def _value_gridlines(ticks: Sequence[float], to_px: Callable[[float], float], fmt: Callable[[float], str],
                     *, vertical: bool, start: float, end: float, label_at: float) -> list[str]:
    """Gridlines and tick labels of a numeric axis.

    ``vertical=False``: the values run up the y axis, gridlines are horizontal from x=start
    to x=end, labels right-aligned at x=label_at. ``vertical=True``: values run along x,
    gridlines go from y=start to y=end, labels hang below y=label_at.
    """
    parts = []
    for t in ticks:
        p = to_px(t)
        if vertical:
            parts.append(_tag("line", {"class": "grid", "x1": p, "y1": start, "x2": p, "y2": end,
                                       "stroke": _GRID, "stroke-width": "1"}))
            parts.append(_text(p, label_at, fmt(t), anchor="middle", valign="top", fill=_MUTED, cls="tick"))
        else:
            parts.append(_tag("line", {"class": "grid", "x1": start, "y1": p, "x2": end, "y2": p,
                                       "stroke": _GRID, "stroke-width": "1"}))
            parts.append(_text(label_at, p, fmt(t), anchor="end", valign="middle", fill=_MUTED, cls="tick"))
    return parts


def _plan_category_labels(labels: Sequence[str], band: float, left_room: float,
                          size: float = _TICK_SIZE) -> dict[str, Any]:
    """How to write category labels under slots ``band`` px wide without overlaps.

    Wrapped onto two lines when that fits; otherwise rotated by 45 degrees when that keeps
    more of the text (or the slots are too narrow for a few characters); on very narrow slots
    only every k-th rotated label is written. Cut labels keep their full text as a tooltip.
    ``left_room``: px between the chart's left margin and the first slot's centre (the first
    rotated labels are shortened so as not to run off the chart).
    """
    max_w = max(band - 6, 1.0)
    wrapped = [_fit_lines(label, max_w, size, max_lines=2) for label in labels]
    wrapped_cuts = sum(cut for _, cut in wrapped)
    if wrapped_cuts == 0:
        lines = max(len(ls) for ls, _ in wrapped)
        return {"mode": "wrap", "fitted": wrapped, "height": lines * size * 1.2 + 8}
    # rotated labels run down-left from their slot: the first must not leave the chart
    rotated = [_fit_lines(label, max(min(120.0, (left_room + i * band) / 0.71), size), size, max_lines=1)
               for i, label in enumerate(labels)]
    too_narrow = max_w < 3 * size * 0.6

    def kept(fitted: list[tuple[list[str], bool]]) -> int:
        return sum(len("".join(ls).replace("\u2026", "")) for ls, _ in fitted)

    if too_narrow or kept(rotated) > kept(wrapped):
        longest = max(_text_width(ls[0], size) for ls, _ in rotated)
        every = max(1, math.ceil(size * 1.3 / max(band, 0.1)))
        return {"mode": "rotate", "fitted": rotated, "height": longest * 0.71 + size + 10, "every": every}
    lines = max(len(ls) for ls, _ in wrapped)
    return {"mode": "wrap", "fitted": wrapped, "height": lines * size * 1.2 + 8}


def _category_labels(labels: Sequence[str], centers: Sequence[float], y: float, plan: dict[str, Any],
                     size: float = _TICK_SIZE) -> list[str]:
    parts = []
    every = plan.get("every", 1)
    for i, (label, cx, (lines, cut)) in enumerate(zip(labels, centers, plan["fitted"])):
        if i % every:
            continue
        tooltip = label if cut else None
        if plan["mode"] == "rotate":
            parts.append(_text(cx + size * 0.3, y + 6 + size * 0.6, lines, size=size, anchor="end",
                               valign="baseline", rotate=-45, tooltip=tooltip, cls="category"))
        else:
            parts.append(_text(cx, y + 6, lines, size=size, anchor="middle", valign="top",
                               tooltip=tooltip, cls="category"))
    return parts


def _side_label_width(labels: Sequence[str], width: float, size: float = _TICK_SIZE) -> float:
    longest = max(_text_width(label, size) for label in labels)
    return min(longest, width * 0.3)


def _side_labels(labels: Sequence[str], centers: Sequence[float], x: float, max_w: float, band: float,
                 size: float = _TICK_SIZE) -> list[str]:
    """Right-aligned labels left of x, one per row of height ``band`` (wrapped when room)."""
    max_lines = 2 if band >= 2.4 * size + 2 else 1
    every = max(1, math.ceil(size * 1.15 / max(band, 0.1)))
    parts = []
    for i, (label, cy) in enumerate(zip(labels, centers)):
        if i % every:
            continue
        parts.append(_label(x, cy, label, max_w, max_lines=max_lines, size=size, anchor="end",
                            valign="middle", cls="category"))
    return parts


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
    """Grouped bars: one group per category, one bar per series (legend when several).

    ``y_label`` titles the value axis (horizontal when ``horizontal=True``); ``category_label``
    optionally titles the category axis. ``value_format`` formats value labels, tooltips and
    (for percentages and currency prefixes) the value-axis ticks: a ``str.format`` template,
    ``"percent"`` (fractions as whole percentages) or a callable. ``show_values``: value labels
    on the bars; ``None`` shows them when they fit.
    """
    title, width, height = _check_common(title, width, height)
    cats = _labels(categories, "categories")
    if not isinstance(series, Mapping):
        raise ValueError("series must be a mapping of series name -> values")
    _check_series_count(len(series))
    data: dict[str, list[float]] = {}
    for name, values in series.items():
        vals = _numbers(values, f"series {name!r}")
        if len(vals) != len(cats):
            raise ValueError(f"series {name!r} has {len(vals)} values but there are {len(cats)} categories")
        data[str(name)] = vals
    fmt = _value_formatter(value_format)
    tick_fmt_args = {"percent": _is_percent(fmt), "prefix": _prefix(fmt)}
    names = list(data)
    n_cat, n_ser = len(cats), len(names)
    all_values = [v for vals in data.values() for v in vals]
    vmin, vmax = min(0.0, *all_values), max(0.0, *all_values)
    if vmin == vmax:
        vmax = 1.0
    labels = {name: [fmt(v) for v in data[name]] for name in names}

    legend = [{"label": n, "colour": OKABE_ITO[i], "kind": "box"} for i, n in enumerate(names)] if n_ser > 1 else []
    parts, top = _header(title, width, legend)
    top += 14
    colours = {name: OKABE_ITO[i] for i, name in enumerate(names)}

    if not horizontal:
        left_guess = _EDGE + (20 if y_label else 0) + 8
        plot_h_guess = height - top - 60
        lo, hi, ticks, step = _nice_domain(vmin, vmax, _tick_target(plot_h_guess, 50))
        tick_fmt = _tick_formatter(step, **tick_fmt_args)
        left = left_guess + max(_text_width(tick_fmt(t), _TICK_SIZE) for t in ticks) + 8
        right = width - _EDGE
        band = (right - left) / n_cat
        plan = _plan_category_labels(cats, band, left + band / 2 - _EDGE)
        bottom = height - _EDGE - (22 if category_label else 0) - plan["height"]
        plot_h = bottom - top
        group_w = band * (0.8 if n_ser > 1 else 0.7)
        bar_w = group_w / n_ser
        if show_values is None:
            show_values = n_cat * n_ser <= 48 and all(
                _text_width(t, _VALUE_SIZE) <= bar_w + 2 for ls in labels.values() for t in ls)
        if show_values:
            lo_r, hi_r = _with_room(vmin, vmax, plot_h, 16 if vmax > 0 else 0, 16 if vmin < 0 else 0)
            lo, hi, ticks, step = _nice_domain(lo_r, hi_r, _tick_target(plot_h, 50))
        else:
            lo, hi, ticks, step = _nice_domain(vmin, vmax, _tick_target(plot_h, 50))
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        tick_fmt = _tick_formatter(step, **tick_fmt_args)
        y_of = _scale(lo, hi, bottom, top)
        parts += _value_gridlines(ticks, y_of, tick_fmt, vertical=False, start=left, end=right, label_at=left - 8)
        if y_label:
            parts.append(_axis_title_left(_EDGE, (top + bottom) / 2, y_label, plot_h))
        zero = y_of(0.0)
        centers = []
        for c, cat in enumerate(cats):
            x0 = left + c * band + (band - group_w) / 2
            centers.append(left + (c + 0.5) * band)
            for s, name in enumerate(names):
                v = data[name][c]
                y = y_of(v)
                bx = x0 + s * bar_w
                drawn_w = bar_w * (0.9 if n_ser > 1 else 1.0)
                tip = f"{cat} \u00b7 {name}: {labels[name][c]}" if n_ser > 1 else f"{cat}: {labels[name][c]}"
                parts.append(_tag("rect", {"class": "bar", "x": bx, "y": min(y, zero), "width": drawn_w,
                                           "height": abs(zero - y), "fill": colours[name]}, _tooltip(tip)))
                if show_values:
                    ty = y - 4 if v >= 0 else y + 4 + _VALUE_SIZE * 0.8
                    parts.append(_text(bx + drawn_w / 2, ty, labels[name][c], size=_VALUE_SIZE,
                                       anchor="middle", fill=_TEXT, cls="value-label"))
        parts.append(_tag("line", {"class": "baseline", "x1": left, "y1": zero, "x2": right, "y2": zero,
                                   "stroke": _AXIS, "stroke-width": "1"}))
        parts += _category_labels(cats, centers, bottom, plan)
        if category_label:
            parts.append(_axis_title_bottom((left + right) / 2, height - _EDGE - 16, category_label, right - left))
        return _svg(width, height, title, parts)

    # horizontal: categories top to bottom, series top to bottom inside a group
    label_w = _side_label_width(cats, width)
    left = _EDGE + (20 if category_label else 0) + label_w + 10
    right = width - _EDGE - 8
    bottom = height - _EDGE - (22 if y_label else 0) - (_TICK_SIZE + 10)
    plot_w, plot_h = right - left, bottom - top
    band = plot_h / n_cat
    group_h = band * (0.8 if n_ser > 1 else 0.7)
    bar_h = group_h / n_ser
    if show_values is None:
        show_values = n_cat * n_ser <= 60 and bar_h >= _VALUE_SIZE * 0.9
    target = _tick_target(plot_w, 80)
    if show_values:
        def longest(sign: int) -> float:
            widths = [_text_width(labels[n][c], _VALUE_SIZE) for n in names for c in range(n_cat)
                      if (data[n][c] < 0) == (sign < 0)]
            return max(widths, default=0.0) + 8

        lo_r, hi_r = _with_room(vmin, vmax, plot_w, longest(1) if vmax > 0 else 0, longest(-1) if vmin < 0 else 0)
        lo, hi, ticks, step = _nice_domain(lo_r, hi_r, target)
    else:
        lo, hi, ticks, step = _nice_domain(vmin, vmax, target)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    tick_fmt = _tick_formatter(step, **tick_fmt_args)
    x_of = _scale(lo, hi, left, right)
    parts += _value_gridlines(ticks, x_of, tick_fmt, vertical=True, start=top, end=bottom, label_at=bottom + 6)
    if y_label:
        parts.append(_axis_title_bottom((left + right) / 2, height - _EDGE - 14, y_label, plot_w))
    if category_label:
        parts.append(_axis_title_left(_EDGE, (top + bottom) / 2, category_label, plot_h))
    zero = x_of(0.0)
    centers = []
    for c, cat in enumerate(cats):
        y0 = top + c * band + (band - group_h) / 2
        centers.append(top + (c + 0.5) * band)
        for s, name in enumerate(names):
            v = data[name][c]
            x = x_of(v)
            by = y0 + s * bar_h
            drawn_h = bar_h * (0.9 if n_ser > 1 else 1.0)
            tip = f"{cat} \u00b7 {name}: {labels[name][c]}" if n_ser > 1 else f"{cat}: {labels[name][c]}"
            parts.append(_tag("rect", {"class": "bar", "x": min(x, zero), "y": by, "width": abs(x - zero),
                                       "height": drawn_h, "fill": colours[name]}, _tooltip(tip)))
            if show_values:
                tx, anchor = (x + 4, "start") if v >= 0 else (x - 4, "end")
                parts.append(_text(tx, by + drawn_h / 2, labels[name][c], size=_VALUE_SIZE, anchor=anchor,
                                   valign="middle", fill=_TEXT, cls="value-label"))
    parts.append(_tag("line", {"class": "baseline", "x1": zero, "y1": top, "x2": zero, "y2": bottom,
                               "stroke": _AXIS, "stroke-width": "1"}))
    parts += _side_labels(cats, centers, left - 8, label_w, band)
    return _svg(width, height, title, parts)


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
    """Lines through (x, y) points, one per series, in the given point order.

    ``x_range``/``y_range`` fix an axis (data outside is clipped at the plot edge); otherwise
    the axis is widened to nice round limits around the data. ``diagonal`` draws the dashed
    y = x reference (ROC chance line, perfect calibration); a string names it in the legend.
    ``percent_axes``: ``True`` formats both axes' ticks as percentages of fractions, ``"x"``
    or ``"y"`` only one. ``markers``: point markers (a distinct shape per series); ``None``
    draws them when every series has at most 25 points.
    """
    title, width, height = _check_common(title, width, height)
    if not isinstance(series, Mapping):
        raise ValueError("series must be a mapping of series name -> (x values, y values)")
    _check_series_count(len(series))
    data: dict[str, tuple[list[float], list[float]]] = {}
    for name, pair in series.items():
        if isinstance(pair, (str, bytes)):
            raise ValueError(f"series {name!r} must be an (x values, y values) pair")
        try:
            xs_raw, ys_raw = pair
        except (TypeError, ValueError):
            raise ValueError(f"series {name!r} must be an (x values, y values) pair") from None
        xs = _numbers(xs_raw, f"series {name!r} x")
        ys = _numbers(ys_raw, f"series {name!r} y")
        if len(xs) != len(ys):
            raise ValueError(f"series {name!r} has {len(xs)} x values but {len(ys)} y values")
        if not xs:
            raise ValueError(f"series {name!r} has no points")
        data[str(name)] = (xs, ys)
    xr = _range(x_range, "x_range")
    yr = _range(y_range, "y_range")
    if percent_axes not in (True, False, "x", "y"):
        raise ValueError(f"percent_axes must be True, False, 'x' or 'y', got {percent_axes!r}")
    x_pct = percent_axes is True or percent_axes == "x"
    y_pct = percent_axes is True or percent_axes == "y"
    if markers is None:
        markers = max(len(xs) for xs, _ in data.values()) <= 25
    names = list(data)

    legend = [{"label": n, "colour": OKABE_ITO[i], "kind": "line", "marker": i if markers else None}
              for i, n in enumerate(names)]
    if diagonal:
        legend.append({"label": diagonal if isinstance(diagonal, str) else "y = x", "colour": "#7F7F7F",
                       "kind": "dash"})
    parts, top = _header(title, width, legend if len(legend) > 1 else [])
    top += 14

    all_x = [x for xs, _ in data.values() for x in xs]
    all_y = [y for _, ys in data.values() for y in ys]
    plot_h_guess = height - top - 60
    if yr:
        y_lo, y_hi = yr
        y_ticks, y_step = _ticks_within(y_lo, y_hi, _tick_target(plot_h_guess, 50))
    else:
        y_lo, y_hi, y_ticks, y_step = _nice_domain(min(all_y), max(all_y), _tick_target(plot_h_guess, 50))
    y_fmt = _tick_formatter(y_step, percent=y_pct)
    left = _EDGE + 20 + max(_text_width(y_fmt(t), _TICK_SIZE) for t in y_ticks) + 8
    right = width - _EDGE - 8
    bottom = height - _EDGE - 22 - (_TICK_SIZE + 10)
    if xr:
        x_lo, x_hi = xr
        x_ticks, x_step = _ticks_within(x_lo, x_hi, _tick_target(right - left, 70))
    else:
        x_lo, x_hi, x_ticks, x_step = _nice_domain(min(all_x), max(all_x), _tick_target(right - left, 70))
    x_fmt = _tick_formatter(x_step, percent=x_pct)
    x_of = _scale(x_lo, x_hi, left, right)
    y_of = _scale(y_lo, y_hi, bottom, top)

    parts += _value_gridlines(y_ticks, y_of, y_fmt, vertical=False, start=left, end=right, label_at=left - 8)
    parts += _value_gridlines(x_ticks, x_of, x_fmt, vertical=True, start=top, end=bottom, label_at=bottom + 6)
    parts.append(_tag("path", {"class": "axis", "d": f"M{_f(left)},{_f(top)}V{_f(bottom)}H{_f(right)}",
                               "fill": "none", "stroke": _AXIS, "stroke-width": "1"}))
    parts.append(_axis_title_left(_EDGE, (top + bottom) / 2, y_label, bottom - top))
    parts.append(_axis_title_bottom((left + right) / 2, height - _EDGE - 14, x_label, right - left))

    # Marks are clipped to the plot area (plus a few px for markers on the edges) by a nested
    # <svg> viewport: no clipPath, hence no id that could clash between inlined charts.
    pad = 6.0
    inner = []
    if diagonal:
        d_lo, d_hi = max(x_lo, y_lo), min(x_hi, y_hi)
        if d_lo < d_hi:
            inner.append(_tag("line", {"class": "diagonal", "x1": x_of(d_lo), "y1": y_of(d_lo), "x2": x_of(d_hi),
                                       "y2": y_of(d_hi), "stroke": "#7F7F7F", "stroke-width": "1.25",
                                       "stroke-dasharray": "5 4"}))
    for i, name in enumerate(names):
        xs, ys = data[name]
        d = "M" + "L".join(f"{_f(x_of(x))},{_f(y_of(y))}" for x, y in zip(xs, ys))
        inner.append(_tag("path", {"class": "series", "d": d, "fill": "none", "stroke": OKABE_ITO[i],
                                   "stroke-width": "2", "stroke-linejoin": "round", "stroke-linecap": "round"},
                          _tooltip(name)))
    if markers or any(len(xs) == 1 for xs, _ in data.values()):
        for i, name in enumerate(names):
            xs, ys = data[name]
            if not markers and len(xs) > 1:
                continue
            for x, y in zip(xs, ys):
                tip = f"{name}: ({x_fmt(x) if x_pct else _g(x)}, {y_fmt(y) if y_pct else _g(y)})"
                inner.append(_tag("path", {"class": "marker", "d": _marker_path(i, x_of(x), y_of(y)),
                                           "fill": OKABE_ITO[i], "stroke": "#FFFFFF", "stroke-width": "1"},
                                  _tooltip(tip)))
    vx, vy, vw, vh = left - pad, top - pad, right - left + 2 * pad, bottom - top + 2 * pad
    parts.append(_tag("svg", {"class": "plot-area", "x": vx, "y": vy, "width": vw, "height": vh,
                              "viewBox": f"{_f(vx)} {_f(vy)} {_f(vw)} {_f(vh)}", "overflow": "hidden"},
                      "".join(inner)))
    return _svg(width, height, title, parts)


def _g(v: float) -> str:
    """A data value for a tooltip: up to 4 significant digits, thousands separators."""
    if abs(v) >= 1000:
        return _number(v, 0)
    return f"{v:.4g}".replace("-", "\u2212")


# --------------------------------------------------------------------------- heatmap


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
    """A grid of cells coloured on a light-to-dark blue scale, with a colour bar.

    ``values[i][j]`` is the cell of row ``i`` (top to bottom) and column ``j`` (left to
    right); ``None`` is a missing cell (light grey, "No data" in the legend). The colour scale
    runs from 0 (or the minimum, when negative) to the maximum (to 100% for a percent format
    and values within [0, 1]) unless ``value_range`` is given.
    ``annotate`` writes each value in its cell (white on dark cells) when it fits.
    """
    title, width, height = _check_common(title, width, height)
    rows = _labels(row_labels, "row_labels")
    cols = _labels(column_labels, "column_labels")
    if isinstance(values, (str, bytes)):
        raise ValueError("values must be a list of rows")
    try:
        grid_in = list(values)
    except TypeError:
        raise ValueError("values must be a list of rows") from None
    if len(grid_in) != len(rows):
        raise ValueError(f"values has {len(grid_in)} rows but there are {len(rows)} row labels")
    grid: list[list[float | None]] = []
    for i, row in enumerate(grid_in):
        if isinstance(row, (str, bytes)):
            raise ValueError(f"values row {i} must be a sequence of numbers")
        try:
            cells = list(row)
        except TypeError:
            raise ValueError(f"values row {i} must be a sequence of numbers") from None
        if len(cells) != len(cols):
            raise ValueError(f"values row {i} ({rows[i]!r}) has {len(cells)} cells but there are "
                             f"{len(cols)} column labels")
        grid.append([None if v is None else _finite(v, f"values[{i}][{j}]") for j, v in enumerate(cells)])
    present = [v for row in grid for v in row if v is not None]
    if not present:
        raise ValueError("values has no numbers: every cell is None")
    fmt = _value_formatter(value_format)
    if value_range is not None:
        lo, hi = _range(value_range, "value_range")  # type: ignore[misc]
    else:
        lo = min(present) if min(present) < 0 else 0.0
        hi = max(present)
        if _is_percent(fmt) and lo == 0.0 and hi <= 1.0:
            hi = 1.0  # shares and probabilities: the full 0-100% scale
        if hi <= lo:
            hi = lo + 1.0
    has_missing = len(present) < len(rows) * len(cols)

    parts, top = _header(title, width, [])
    top += 12
    # colour bar on the right
    bar_target = _tick_target(height - top - 80, 45)
    bar_ticks, bar_step = _ticks_within(lo, hi, bar_target)
    bar_fmt = _tick_formatter(bar_step, percent=_is_percent(fmt), prefix=_prefix(fmt))
    bar_label_w = max(_text_width(bar_fmt(t), _TICK_SIZE) for t in bar_ticks)
    if has_missing:
        bar_label_w = max(bar_label_w, _text_width("No data", _TICK_SIZE))
    bar_w = 12.0
    right = width - _EDGE - bar_label_w - 6 - bar_w - 18
    label_w = _side_label_width(rows, width)
    left = _EDGE + (20 if y_label else 0) + label_w + 10
    n_rows, n_cols = len(rows), len(cols)
    cell_w = (right - left) / n_cols
    plan = _plan_category_labels(cols, cell_w, left + cell_w / 2 - _EDGE)
    bottom = height - _EDGE - (22 if x_label else 0) - plan["height"]
    cell_h = (bottom - top) / n_rows

    # annotation size: the largest (<= 11 px) at which every value fits its cell
    texts = [[None if v is None else fmt(v) for v in row] for row in grid]
    ann_size = 0.0
    if annotate:
        longest = max((t for row in texts for t in row if t is not None), key=lambda t: _text_width(t, 1))
        for size in (11.0, 10.0, 9.0, 8.0):
            if _text_width(longest, size) <= cell_w - 4 and size * 1.1 <= cell_h - 2:
                ann_size = size
                break

    for i, row_name in enumerate(rows):
        for j, col_name in enumerate(cols):
            v = grid[i][j]
            x, y = left + j * cell_w, top + i * cell_h
            geometry = {"x": x, "y": y, "width": cell_w, "height": cell_h}
            if v is None:
                parts.append(_tag("rect", {"class": "cell-missing", **geometry, "fill": _MISSING,
                                           "stroke": "#FFFFFF", "stroke-width": "1"},
                                  _tooltip(f"{row_name} \u00b7 {col_name}: no data")))
                continue
            colour = _ramp((v - lo) / (hi - lo))
            parts.append(_tag("rect", {"class": "cell", **geometry, "fill": colour, "stroke": "#FFFFFF",
                                       "stroke-width": "1"}, _tooltip(f"{row_name} \u00b7 {col_name}: {texts[i][j]}")))
            if ann_size:
                parts.append(_text(x + cell_w / 2, y + cell_h / 2, texts[i][j] or "", size=ann_size,
                                   anchor="middle", valign="middle", fill=_text_on(colour), cls="cell-label"))
    parts += _side_labels(rows, [top + (i + 0.5) * cell_h for i in range(n_rows)], left - 8, label_w, cell_h)
    parts += _category_labels(cols, [left + (j + 0.5) * cell_w for j in range(n_cols)], bottom, plan)
    if y_label:
        parts.append(_axis_title_left(_EDGE, (top + bottom) / 2, y_label, bottom - top))
    if x_label:
        parts.append(_axis_title_bottom((left + right) / 2, height - _EDGE - 14, x_label, right - left))

    # colour bar: stacked steps (no gradient: a gradient needs an id)
    bx = right + 18
    b_top, b_bottom = top, bottom - (30 if has_missing else 0)
    steps = 48
    step_h = (b_bottom - b_top) / steps
    for k in range(steps):
        t = (k + 0.5) / steps
        parts.append(_tag("rect", {"class": "legend-step", "x": bx, "y": b_bottom - (k + 1) * step_h,
                                   "width": bar_w, "height": step_h + 0.5, "fill": _ramp(t),
                                   "shape-rendering": "crispEdges"}))
    parts.append(_tag("rect", {"x": bx, "y": b_top, "width": bar_w, "height": b_bottom - b_top, "fill": "none",
                               "stroke": "#BDBDBD", "stroke-width": "1"}))
    to_bar = _scale(lo, hi, b_bottom, b_top)
    for t in bar_ticks:
        p = to_bar(t)
        parts.append(_tag("line", {"x1": bx + bar_w, "y1": p, "x2": bx + bar_w + 4, "y2": p, "stroke": _AXIS,
                                   "stroke-width": "1"}))
        parts.append(_text(bx + bar_w + 6, p, bar_fmt(t), anchor="start", valign="middle", fill=_MUTED,
                           cls="tick"))
    if has_missing:
        parts.append(_tag("rect", {"x": bx, "y": bottom - 12, "width": bar_w, "height": 12.0, "fill": _MISSING}))
        parts.append(_text(bx + bar_w + 6, bottom - 6, "No data", anchor="start", valign="middle", fill=_MUTED))
    return _svg(width, height, title, parts)


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
    """Adjacent bars, bin ``i`` spanning ``bin_edges[i]`` to ``bin_edges[i + 1]``.

    Bar heights are the counts as given (pass densities for unequal bins). The x axis spans
    the edges exactly, with nice ticks unless ``x_ticks`` gives the positions (those outside
    the edges are dropped). For a log-scaled axis, pass log10 edges, say so in ``x_label``
    and label ticks in original units, e.g. ``x_ticks=[0, 1, 2, 3]`` with
    ``x_tick_format=lambda v: f"{10 ** v:,.0f}"``.
    """
    title, width, height = _check_common(title, width, height)
    edges = _numbers(bin_edges, "bin_edges")
    heights = _numbers(counts, "counts")
    if not heights:
        raise ValueError("counts is empty")
    if len(edges) != len(heights) + 1:
        raise ValueError(f"bin_edges must have one more value than counts: {len(edges)} edges, "
                         f"{len(heights)} counts")
    for i in range(len(heights)):
        if not edges[i] < edges[i + 1]:
            raise ValueError(f"bin_edges must be strictly increasing: edge {i} ({edges[i]:g}) >= "
                             f"edge {i + 1} ({edges[i + 1]:g})")
    for i, c in enumerate(heights):
        if c < 0:
            raise ValueError(f"counts[{i}] is negative ({c:g})")

    parts, top = _header(title, width, [])
    top += 14
    plot_h_guess = height - top - 60
    _, y_hi, y_ticks, y_step = _nice_domain(0.0, max(heights) or 1.0, _tick_target(plot_h_guess, 50))
    y_fmt = _tick_formatter(y_step)
    left = _EDGE + 20 + max(_text_width(y_fmt(t), _TICK_SIZE) for t in y_ticks) + 8
    right = width - _EDGE - 8
    bottom = height - _EDGE - 22 - (_TICK_SIZE + 10)
    if x_ticks is None:
        ticks_x, x_step = _ticks_within(edges[0], edges[-1], _tick_target(right - left, 70))
    else:
        given = _numbers(x_ticks, "x_ticks")
        ticks_x = [t for t in given if edges[0] - 1e-9 <= t <= edges[-1] + 1e-9]
        gaps = [b - a for a, b in zip(ticks_x, ticks_x[1:]) if b > a]
        x_step = min(gaps) if gaps else _nice_step(edges[-1] - edges[0], 5)
    x_fmt = _tick_formatter(x_step) if x_tick_format is None else _value_formatter(x_tick_format)
    if ticks_x:
        # Tick labels are centred on their ticks: the last one, an amount with its currency code
        # ("CHF 10,000"), may need more room right of the plot than the margin leaves.
        right = min(right, width - _EDGE - _text_width(x_fmt(ticks_x[-1]), _TICK_SIZE) / 2)
    x_of = _scale(edges[0], edges[-1], left, right)
    y_of = _scale(0.0, y_hi, bottom, top)
    parts += _value_gridlines(y_ticks, y_of, y_fmt, vertical=False, start=left, end=right, label_at=left - 8)
    for t in ticks_x:
        p = x_of(t)
        parts.append(_tag("line", {"x1": p, "y1": bottom, "x2": p, "y2": bottom + 4, "stroke": _AXIS,
                                   "stroke-width": "1"}))
        parts.append(_text(p, bottom + 6, x_fmt(t), anchor="middle", valign="top", fill=_MUTED, cls="tick"))
    edge_fmt = x_fmt if x_tick_format is not None else _g
    for i, c in enumerate(heights):
        x0, x1 = x_of(edges[i]), x_of(edges[i + 1])
        gap = min(1.0, (x1 - x0) * 0.2)
        y = y_of(c)
        closing = "]" if i == len(heights) - 1 else ")"
        tip = f"[{edge_fmt(edges[i])}, {edge_fmt(edges[i + 1])}{closing}: {_number(c, 0 if c == int(c) else 2)}"
        parts.append(_tag("rect", {"class": "bin", "x": x0 + gap / 2, "y": y, "width": x1 - x0 - gap,
                                   "height": bottom - y, "fill": OKABE_ITO[0]}, _tooltip(tip)))
    parts.append(_tag("line", {"class": "baseline", "x1": left, "y1": bottom, "x2": right, "y2": bottom,
                               "stroke": _AXIS, "stroke-width": "1"}))
    parts.append(_axis_title_left(_EDGE, (top + bottom) / 2, y_label, bottom - top))
    parts.append(_axis_title_bottom((left + right) / 2, height - _EDGE - 14, x_label, right - left))
    return _svg(width, height, title, parts)


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
    """Small multiples: one panel per segment, one horizontal bar per feature.

    ``index_values[i][j]`` is segment ``i``'s mean of feature ``j`` as an index of the overall
    mean (100 = average, 200 = twice the average). Bars start at the dashed reference line at
    100 and point right (blue, above average) or left (vermillion, below average). All panels
    share one axis so they compare at a glance.
    """
    title, width, height = _check_common(title, width, height)
    segs = _labels(segments, "segments")
    feats = _labels(features, "features")
    if isinstance(index_values, (str, bytes)):
        raise ValueError("index_values must be a list of rows (one per segment)")
    try:
        rows_in = list(index_values)
    except TypeError:
        raise ValueError("index_values must be a list of rows (one per segment)") from None
    if len(rows_in) != len(segs):
        raise ValueError(f"index_values has {len(rows_in)} rows but there are {len(segs)} segments")
    grid = []
    for i, row in enumerate(rows_in):
        vals = _numbers(row, f"index_values[{i}] ({segs[i]!r})")
        if len(vals) != len(feats):
            raise ValueError(f"index_values row {i} ({segs[i]!r}) has {len(vals)} values but there are "
                             f"{len(feats)} features")
        grid.append(vals)
    all_values = [v for row in grid for v in row]
    vmin, vmax = min(100.0, *all_values), max(100.0, *all_values)
    vmin = min(vmin, 0.0)

    legend = [{"label": "Above average", "colour": _ABOVE, "kind": "box"},
              {"label": "Below average", "colour": _BELOW, "kind": "box"}]
    parts, top = _header(title, width, legend)
    top += 10
    label_w = _side_label_width(feats, width, _TICK_SIZE)
    left = _EDGE + label_w + 10
    right = width - _EDGE
    gap = 16.0
    n = len(segs)
    max_cols = max(1, min(n, int((right - left + gap) // (110 + gap))))
    nrows = math.ceil(n / max_cols)
    ncols = math.ceil(n / nrows)  # balanced rows: 5 panels as 3 + 2, not 4 + 1
    panel_w = (right - left - (ncols - 1) * gap) / ncols
    bottom_all = height - _EDGE - 22
    row_gap = 14.0
    panel_h = (bottom_all - top - (nrows - 1) * row_gap) / nrows
    head_h, foot_h = _LABEL_SIZE * 1.2 + 6, _TICK_SIZE + 10
    bars_h = panel_h - head_h - foot_h
    if bars_h < len(feats) * 4:
        raise ValueError(f"{n} segments x {len(feats)} features do not fit in {width:g} x {height:g} px; "
                         "make the chart larger")
    lo, hi, _, _ = _nice_domain(vmin, vmax, 6)
    ticks, step = _ticks_within(lo, hi, _tick_target(panel_w, 45))
    tick_fmt = _tick_formatter(step)
    band = bars_h / len(feats)
    bar_h = band * 0.7

    for k, (seg, vals) in enumerate(zip(segs, grid)):
        r, c = divmod(k, ncols)
        px = left + c * (panel_w + gap)
        py = top + r * (panel_h + row_gap)
        b_top, b_bottom = py + head_h, py + head_h + bars_h
        x_of = _scale(lo, hi, px, px + panel_w)
        panel = [_label(px, py, seg, panel_w, size=_LABEL_SIZE, anchor="start", valign="top", weight="600",
                        cls="panel-title")]
        for t in ticks:
            p = x_of(t)
            panel.append(_tag("line", {"class": "grid", "x1": p, "y1": b_top, "x2": p, "y2": b_bottom,
                                       "stroke": _GRID, "stroke-width": "1"}))
            half = _text_width(tick_fmt(t), _TICK_SIZE) / 2
            if px - gap / 2 <= p - half and p + half <= px + panel_w + gap / 2:  # no clash with neighbours
                panel.append(_text(p, b_bottom + 4, tick_fmt(t), anchor="middle", valign="top", fill=_MUTED,
                                   cls="tick"))
        ref = x_of(100.0)
        for j, (feat, v) in enumerate(zip(feats, vals)):
            x = x_of(v)
            y = b_top + j * band + (band - bar_h) / 2
            colour = _ABOVE if v >= 100 else _BELOW
            panel.append(_tag("rect", {"class": "bar", "x": min(x, ref), "y": y, "width": abs(x - ref),
                                       "height": bar_h, "fill": colour},
                              _tooltip(f"{seg} \u00b7 {feat}: {_number(v, 0)}")))
        panel.append(_tag("line", {"class": "reference", "x1": ref, "y1": b_top - 2, "x2": ref, "y2": b_bottom + 2,
                                   "stroke": "#333333", "stroke-width": "1.25", "stroke-dasharray": "4 3"}))
        parts.append(_tag("g", {"class": "panel"}, "".join(panel)))
        if c == 0:
            centers = [b_top + (j + 0.5) * band for j in range(len(feats))]
            parts += _side_labels(feats, centers, left - 8, label_w, band)
    if x_label:
        parts.append(_axis_title_bottom((left + right) / 2, height - _EDGE - 14, x_label, right - left))
    return _svg(width, height, title, parts)
