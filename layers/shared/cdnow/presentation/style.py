"""The report's look in one place: the colours and fonts of the page and of its charts.

Standard library only: the report (``report.py``, its CSS) reads the same names as the charts
(``charts.py``, through ``matplotlib_rc``), so a colour or a font changes once for both.
"""

from __future__ import annotations

# Okabe & Ito (2008): colour-blind-safe series colours, ordered so that the first ones contrast
# best on white; the yellow is kept for late series.
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
# One hue, light to dark, for heat maps: readable by colour-blind readers and in greyscale print.
SEQUENTIAL_BLUES = ("#F7FBFF", "#C6DBEF", "#6BAED6", "#2171B5", "#08306B")

# The page.
INK = "#1F2933"
MUTED = "#52606D"
LINE = "#D9E2EC"
SOFT = "#F5F7FA"
ACCENT = OKABE_ITO[0]
WARN = OKABE_ITO[3]
OK = OKABE_ITO[2]
HEADER = "#102A43"
HEADER_MUTED = "#BCCCDC"

# The charts.
CHART_TEXT = "#222222"
CHART_MUTED = "#555555"
AXIS = "#666666"
GRID = "#E5E5E5"
MISSING = "#E0E0E0"
REFERENCE = "#7F7F7F"
ABOVE = OKABE_ITO[0]  # above the average in a profile
BELOW = OKABE_ITO[3]

# The page's font stack. The charts are laid out with DejaVu Sans's metrics (it comes with
# matplotlib, so the layout is the same on every machine and on Lambda) and shown in the page's
# fonts, which run narrower: a label laid out to fit still fits.
FONT_STACK = ("system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif")
LAYOUT_FONT = "DejaVu Sans"
MONO_STACK = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")

TITLE_SIZE = 15
LABEL_SIZE = 12
TICK_SIZE = 11
VALUE_SIZE = 10


def css_font_family(stack: tuple[str, ...] = FONT_STACK) -> str:
    """A CSS font-family value: names with spaces quoted, generic names bare."""
    return ", ".join(f'"{name}"' if " " in name else name for name in stack)


def chart_font_family() -> str:
    """The font-family the charts' text is shown in: the page's stack, the layout font before the
    generic last resort (quoted with single quotes: it sits in an XML attribute)."""
    names = [*FONT_STACK[:-1], LAYOUT_FONT, FONT_STACK[-1]]
    return ", ".join(f"'{name}'" if " " in name else name for name in names)


def matplotlib_rc() -> dict[str, object]:
    """matplotlib settings that give the charts the report's look; applied over matplotlib's own
    defaults (never a local matplotlibrc) for every chart."""
    return {
        "svg.fonttype": "none",  # text stays text: small, searchable, in the page's font
        "svg.hashsalt": "cdnow-report",  # ids from content, not random: the same chart, the same bytes
        "path.simplify": True,
        "font.family": "sans-serif",
        "font.sans-serif": [LAYOUT_FONT],
        "font.size": TICK_SIZE,
        "text.color": CHART_TEXT,
        "axes.titlesize": LABEL_SIZE,
        "axes.titleweight": "bold",
        "axes.titlelocation": "left",
        "axes.labelsize": LABEL_SIZE,
        "axes.labelcolor": CHART_MUTED,
        "axes.edgecolor": AXIS,
        "axes.linewidth": 1.0,
        "axes.prop_cycle": f"cycler(color={list(OKABE_ITO)!r})",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": False,
        "axes.axisbelow": True,
        "grid.color": GRID,
        "grid.linewidth": 1.0,
        "xtick.color": AXIS,
        "ytick.color": AXIS,
        "xtick.labelcolor": CHART_MUTED,
        "ytick.labelcolor": CHART_MUTED,
        "xtick.labelsize": TICK_SIZE,
        "ytick.labelsize": TICK_SIZE,
        "legend.fontsize": LABEL_SIZE,
        "legend.frameon": False,
        "figure.titlesize": TITLE_SIZE,
        "figure.titleweight": "bold",
        "figure.facecolor": "#FFFFFF",
        "axes.unicode_minus": True,
        "lines.linewidth": 2.0,
        "lines.markersize": 6.5,
    }
