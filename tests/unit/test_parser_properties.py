"""Property-based tests of the Transform job's parser (hypothesis).

Pure parts (``sniff``, ``detect_format``) take thousands of examples; the Spark part takes a few
dozen generated files, each mixing valid rows with rows broken in one known way, and checks the
job against an oracle: every line is accepted with exactly its values or quarantined with
exactly the reason the generator broke it for, under its own line number.
"""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdnow_transform import (
    MONEY_ROLES,
    REQUIRED_ROLES,
    ROLE_ALIASES,
    GZIP,
    PARQUET_FILE,
    TEXT,
    detect_format,
    sniff,
    transform,
)

SOURCE = "s3://raw/incoming/generated.txt"


# --- sniff: bytes in, a decision or a ValueError naming the file ------------------------------

@given(st.binary(max_size=2000))
@settings(max_examples=2000)
def test_sniff_decides_or_refuses_any_bytes(head):
    try:
        kind = sniff(head, SOURCE)
    except ValueError as refused:
        assert str(refused).startswith(f"{SOURCE}: ")
    else:
        assert kind in (TEXT, PARQUET_FILE)


printable_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufeff\ufffe")
    | st.sampled_from("\t\r\n"),
    min_size=1, max_size=500)


@given(printable_text)
@settings(max_examples=1000)
def test_any_utf8_text_is_text_and_gzip_of_it_is_gzip(text):
    data = text.encode("utf-8")
    assert sniff(data, SOURCE) == TEXT
    assert sniff(b"\xef\xbb\xbf" + data, SOURCE) == TEXT
    assert sniff(gzip.compress(data), SOURCE + ".gz") == GZIP


@given(printable_text.filter(lambda t: any(ord(c) > 127 for c in t)))
def test_text_in_another_encoding_is_refused(text):
    for encoding in ("utf-16", "utf-32"):
        with pytest.raises(ValueError, match=r"UTF-(16|32)"):
            sniff(text.encode(encoding), SOURCE)


def test_a_character_cut_by_the_end_of_the_head_is_not_an_error():
    head = ("x" * 100 + "é").encode()[:-1]  # the head ends inside a two-byte character
    assert sniff(head, SOURCE) == TEXT
    with pytest.raises(ValueError, match=r"byte 0xe9 on line 2"):
        sniff(b"ok\nJos\xe9 and more text after it", SOURCE)


# --- detect_format: any order, case and spelling of the known column names --------------------

@given(st.data())
@settings(max_examples=300)
def test_header_columns_are_found_in_any_order_and_case(data):
    money = data.draw(st.sampled_from(MONEY_ROLES), label="money")
    chosen = {role: data.draw(st.sampled_from(ROLE_ALIASES[role]), label=role) for role in REQUIRED_ROLES + (money,)}
    extra = data.draw(st.lists(st.sampled_from(["note", "store", "channel"]), max_size=2, unique=True))
    columns = data.draw(st.permutations(list(chosen.values()) + extra))
    spelled = [data.draw(st.sampled_from([c, c.upper(), c.title(), f' "{c}" '])) for c in columns]
    separator = data.draw(st.sampled_from([",", "\t", ";", "|"]))
    fmt = detect_format(separator.join(spelled), SOURCE)
    assert fmt.separator == separator and fmt.field_count == len(columns)
    found = (fmt.customer_field, fmt.date_field, fmt.quantity_field, fmt.money_field)
    assert [columns[i] for i in found] == list(chosen.values())
    assert fmt.unit_price == (money == "unit_price") and fmt.order_field is None


# --- the whole parser against an oracle --------------------------------------------------------

customer_ids = st.text(alphabet="0123456789ABCDEFabcdef", min_size=1, max_size=8)
days = st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2030, 12, 31))
# A negative quantity is a return: accepted, its amount negative.
quantities = st.integers(min_value=-10_000, max_value=10_000)
cents = st.integers(min_value=0, max_value=10_000_000)


@st.composite
def valid_rows(draw):
    return (draw(customer_ids), draw(days), draw(quantities), draw(cents))


def fixed_width_line(customer, day, quantity, amount_cents, pad: str) -> str:
    return f"{pad}{customer}{pad} {day:%Y%m%d} {pad}{quantity} {amount_cents // 100}.{amount_cents % 100:02d}{pad}"


# How a generated line is broken, and the reason the job must give for it.
BREAKS = {
    "blank_line": lambda row: "   ",
    "unparseable_line": lambda row: fixed_width_line(*row, "").replace(" ", " \x07", 1),
    "wrong_field_count": lambda row: fixed_width_line(*row, "") + " 9",
    "invalid_date": lambda row: fixed_width_line(*row, "").replace(f"{row[1]:%Y%m%d}", f"{row[1]:%Y}1332"),
    "date_out_of_range": lambda row: fixed_width_line(*row, "").replace(f"{row[1]:%Y%m%d}", "18991231"),
    "invalid_quantity": lambda row: fixed_width_line(row[0], row[1], f"{row[2]}.5", row[3], ""),
    "invalid_amount": lambda row: fixed_width_line(*row[:3], 0, "").rsplit(" ", 1)[0] + " 1.2.3",
}


@st.composite
def generated_files(draw):
    lines = draw(st.lists(
        st.one_of(valid_rows().map(lambda row: ("ok", row)),
                  st.tuples(st.sampled_from(sorted(BREAKS)), valid_rows())),
        min_size=1, max_size=60))
    # The format is recognized from the first non-blank line: make it a valid row.
    first = draw(valid_rows())
    pads = draw(st.lists(st.sampled_from(["", " ", "  "]), min_size=len(lines) + 1, max_size=len(lines) + 1))
    crlf = draw(st.booleans())
    return [("ok", first)] + lines, pads, crlf


@given(generated_files())
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_every_line_is_accepted_with_its_values_or_quarantined_with_its_reason(spark, tmp_path_factory, case):
    lines, pads, crlf = case
    text_lines = [fixed_width_line(*row, pad) if kind == "ok" else BREAKS[kind](row)
                  for (kind, row), pad in zip(lines, pads)]
    folder = tmp_path_factory.mktemp("generated")
    source = folder / "generated.txt"
    source.write_bytes(("\r\n" if crlf else "\n").join(text_lines).encode() + b"\n")

    summary = transform(spark, str(source), str(folder / "t"), str(folder / "q"), run_id="p",
                        source_uri=SOURCE, max_bad_share=1.0)

    expected_ok = {n: row for n, (kind, row) in enumerate(lines, 1) if kind == "ok"}
    expected_bad = {n: kind for n, (kind, _) in enumerate(lines, 1) if kind != "ok"}
    assert summary["read"] == len(lines) == summary["accepted"] + summary["quarantined"]
    accepted = {r["line_number"]: r for r in pq.read_table(folder / "t").to_pylist()}
    quarantined = {r["line_number"]: r for r in pq.read_table(folder / "q").to_pylist()}
    assert {n: r["reason"] for n, r in quarantined.items()} == expected_bad
    assert set(accepted) == set(expected_ok)
    for n, (customer, day, quantity, amount_cents) in expected_ok.items():
        row = accepted[n]
        assert (row["customer_id"], row["order_date"], row["quantity"]) == (customer, day, quantity)
        sign = -1 if quantity < 0 else 1
        assert row["amount"] == pytest.approx(sign * amount_cents / 100, abs=1e-9)
        assert row["is_return"] == (quantity < 0)
    for n, row in quarantined.items():
        assert row["raw_line"] == text_lines[n - 1].rstrip("\r")
