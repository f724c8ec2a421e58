"""Numbers as people read them, for the report and the run-complete message (standard library
only): thousands separators, percentages, money in the run's currency, a typographic minus, a
dash for missing."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# A run whose summary names no currency is in US dollars (CDNOW, and every run before summaries
# carried their currency): the run options' default, one place.
from ..domain.runs import DEFAULT_CURRENCY

DASH = "\u2013"

# The sign a reader expects before an amount, for the codes where it is unambiguous; any other
# ISO 4217 code is written out ("CHF 1,234.50"), which is never misread. ("$" is the US
# dollar's alone: a Canadian or Australian dollar amount shows its code.)
CURRENCY_SYMBOLS = {"USD": "$", "GBP": "\u00a3", "EUR": "\u20ac", "JPY": "\u00a5", "INR": "\u20b9"}


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


def mean_sd(metrics: Mapping[str, Any], key: str, decimals: int) -> str:
    """'0.808 \u00b1 0.008' from ``key``_mean and ``key``_sd (cross-validated figures); the
    pooled figure (``key`` without its "cv_") alone for an older run's summary, which has no
    means."""
    mean = metrics.get(f"{key}_mean")
    if mean is None:
        return number(metrics.get(key.replace("cv_", "", 1)), decimals)
    return f"{number(mean, decimals)} \u00b1 {number(metrics.get(f'{key}_sd'), decimals)}"


def percent(value: Any, decimals: int = 1) -> str:
    """A fraction as a percentage: 0.1445 -> '14.5%'."""
    return DASH if missing(value) else _minus(f"{float(value) * 100:,.{decimals}f}%")


def currency_of(summary: Mapping[str, Any]) -> str:
    """The ISO 4217 code a run summary's amounts are in (``DEFAULT_CURRENCY`` when it names none).

    The code goes into the report's HTML and the e-mail as it is, so anything but three letters
    is an error rather than text to escape in every place an amount is shown.
    """
    code = str(summary.get("currency") or DEFAULT_CURRENCY).upper()
    if not (len(code) == 3 and code.isascii() and code.isalpha()):
        raise ValueError(f"currency {summary.get('currency')!r} is not an ISO 4217 code")
    return code


def currency_sign(currency: str) -> str:
    """What goes before an amount: the symbol of a common currency, else the code and a space."""
    return CURRENCY_SYMBOLS.get(currency, f"{currency} ")


def money(value: Any, currency: str = DEFAULT_CURRENCY, decimals: int = 0) -> str:
    """An amount in ``currency`` (an ISO 4217 code): 1234 -> '$1,234'; in GBP with 2 decimals
    '\u00a31,234.00', in CHF 'CHF 1,234.00'; a negative amount has the minus before the sign."""
    if missing(value):
        return DASH
    text = f"{currency_sign(currency)}{abs(float(value)):,.{decimals}f}"
    return f"\u2212{text}" if float(value) < 0 else text


def share(part: Any, whole: Any) -> float | None:
    """part / whole, or None when either is missing or whole is zero."""
    if missing(part) or missing(whole) or not float(whole):
        return None
    return float(part) / float(whole)
