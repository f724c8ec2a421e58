"""Amounts in a run's currency: the sign before the number, the code where no sign is
unambiguous, the typographic minus and the dash as for every other number."""

import math

import pytest

from cdnow.presentation import formatting as fmt


def test_the_common_currencies_show_their_sign():
    assert fmt.money(1234567.4) == fmt.money(1234567.4, "USD") == "$1,234,567"
    assert fmt.money(1234.5, "GBP", 2) == "\u00a31,234.50"
    assert fmt.money(1234.5, "EUR", 2) == "\u20ac1,234.50"
    assert fmt.money(1234, "JPY") == "\u00a51,234"


def test_another_currency_shows_its_code():
    assert fmt.money(1234.5, "CHF", 2) == "CHF 1,234.50"
    assert fmt.money(-1234.5, "CAD", 2) == "\u2212CAD 1,234.50"  # "$" is the US dollar's alone


def test_negative_and_missing_amounts():
    assert fmt.money(-3.5, "USD", 2) == "\u2212$3.50" and fmt.money(-3.5, "GBP", 2) == "\u2212\u00a33.50"
    assert fmt.money(None, "GBP") == fmt.money(math.nan, "EUR") == fmt.money(math.inf) == fmt.DASH


def test_a_summary_s_currency_defaults_to_dollars():
    assert fmt.currency_of({"currency": "GBP"}) == "GBP"
    assert fmt.currency_of({}) == fmt.currency_of({"currency": None}) == fmt.DEFAULT_CURRENCY == "USD"
    assert fmt.currency_of({"currency": "eur"}) == "EUR"


@pytest.mark.parametrize("code", ["POUND", "G8P", "<b>", 826])
def test_a_currency_that_is_no_iso_code_is_an_error(code):
    # The code goes into HTML and e-mail as it is.
    with pytest.raises(ValueError, match="ISO 4217"):
        fmt.currency_of({"currency": code})
