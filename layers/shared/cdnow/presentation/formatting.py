"""Numbers as people read them, for the report and the run-complete message (standard library
only): thousands separators, percentages, dollars, a typographic minus, a dash for missing."""

from __future__ import annotations

import math
from typing import Any

DASH = "\u2013"


def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def _minus(text: str) -> str:
    # A typographic minus: as wide as the digits in tabular numbers.
    return "\u2212" + text[1:] if text.startswith("-") else text


def count(value: Any) -> str:
    """23570 -> '23,570'."""
    return DASH if missing(value) else _minus(f"{round(float(value)):,}")


def number(value: Any, decimals: int = 2) -> str:
    return DASH if missing(value) else _minus(f"{float(value):,.{decimals}f}")


def percent(value: Any, decimals: int = 1) -> str:
    """A fraction as a percentage: 0.1445 -> '14.5%'."""
    return DASH if missing(value) else _minus(f"{float(value) * 100:,.{decimals}f}%")


def dollars(value: Any, decimals: int = 0) -> str:
    if missing(value):
        return DASH
    text = f"${abs(float(value)):,.{decimals}f}"
    return f"\u2212{text}" if float(value) < 0 else text


def share(part: Any, whole: Any) -> float | None:
    """part / whole, or None when either is missing or whole is zero."""
    if missing(part) or missing(whole) or not float(whole):
        return None
    return float(part) / float(whole)
