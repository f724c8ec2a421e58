"""Writes the input corpus of tests/data/inputs (run from anywhere; the files are committed).

Each file is one case of tests/unit/test_input_corpus.py and docs/RELIABILITY.md: formats the
Transform job accepts, rows it quarantines, and files it refuses. Rows are CDNOW-shaped and
hand-readable; only the bytes that make a case (a BOM, CRLF, Latin-1, NUL, UTF-16) are special.
"""

from __future__ import annotations

import datetime
import gzip
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent


def master_rows(n: int, seed: int = 0) -> list[tuple[str, str, int, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        day = 1 + rng.randrange(28)
        month = 1 + rng.randrange(12)
        rows.append((f"{1 + i // 3:05d}", f"1997{month:02d}{day:02d}", 1 + rng.randrange(4),
                     f"{rng.randrange(1, 9000) / 100:.2f}"))
    return rows


def fixed_width(rows) -> str:
    return "".join(f" {c} {d} {q:2d} {a:>8}\n" for c, d, q, a in rows)


def order_lines() -> list[tuple[str, str, str, int, str, str, str, str]]:
    """Order lines as the Online Retail II data set writes them: invoice, stock code, a
    description (some hold commas), quantity, a date-time, unit price, a customer id written as a
    float or left empty (a guest checkout), country; invoices "C..." cancel with a negative
    quantity."""
    rng = random.Random(8)
    descriptions = ["WHITE HANGING HEART T-LIGHT HOLDER", "SET 7 BABUSHKA NESTING BOXES",
                    "GLASS STAR FROSTED T-LIGHT HOLDER", "HAND WARMER RED POLKA DOT",
                    "RED, WHITE AND BLUE BUNTING", 'THE "BEST" MUG, LARGE']
    lines = []
    for order in range(60):
        invoice = str(489434 + order)
        customer = "" if order % 5 == 4 else f"{13000 + order % 9}.0"
        stamp = f"2010-{1 + order % 12:02d}-{1 + order % 27:02d} {8 + order % 10:02d}:{order % 60:02d}:00"
        for line in range(1 + order % 3):
            quantity = 1 + rng.randrange(24)
            price = f"{rng.randrange(10, 1000) / 100:.2f}"
            lines.append((invoice, f"{85000 + line}", rng.choice(descriptions), quantity, stamp, price, customer,
                          "United Kingdom"))
        if order % 7 == 3 and customer:  # a cancellation of the order's first line
            first = lines[-1 - order % 3]
            lines.append((f"C{invoice}", first[1], first[2], -first[3], stamp.replace(":00:00", ":30:00"),
                          first[5], customer, first[7]))
    return lines


def csv_field(text: str) -> str:
    """RFC 4180: quoted when it holds a comma, a semicolon or a quote, quotes doubled."""
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',;"') else text


def write(name: str, data: bytes | str) -> None:
    (HERE / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def main() -> None:
    rows = master_rows(60)
    # --- accepted formats
    write("master_bom_crlf.txt", b"\xef\xbb\xbf" + fixed_width(rows).replace("\n", "\r\n").encode())
    write("transactions.csv", "customer_id,date,quantity,price\n"
          + "".join(f"{c},{d[:4]}-{d[4:6]}-{d[6:]},{q},{a}\n" for c, d, q, a in rows))
    write("transactions.tsv", "Customer ID\tOrder Date\tQty\tAmount\n"
          + "".join(f"{c}\t{d}\t{q}\t{a}\n" for c, d, q, a in rows))
    write("kunden.csv", "Kunde;Datum;Menge;Betrag\n" + "".join(f"{c};{d};{q};{a}\n" for c, d, q, a in rows))
    write("master.txt.gz", gzip.compress(fixed_width(rows).encode(), mtime=0))
    # Issue 20, case 6: the extension in capitals was refused ("does not end in .gz").
    write("MASTER.TXT.GZ", gzip.compress(fixed_width(rows).encode(), mtime=0))
    table = pa.table({
        "customer": pa.array([int(c) for c, *_ in rows], pa.int64()),
        "order_date": pa.array([datetime.date(int(d[:4]), int(d[4:6]), int(d[6:]))
                                for _, d, _, _ in rows], pa.date32()),
        "quantity": pa.array([q for *_, q, _ in rows], pa.int32()),
        "amount": pa.array([float(a) for *_, a in rows], pa.float64()),
    })
    pq.write_table(table, HERE / "transactions.parquet")

    # --- rows quarantined with their reason (200 good rows keep the bad share under 5%)
    good = fixed_width(master_rows(200, seed=1))
    bad = "".join([
        "   \n",                                   # blank_line
        " 00900 19970105  1   1\x01.00\n",          # unparseable_line (a control character)
        " 00901 19970105  1\n",                     # wrong_field_count
        " 00902 19970105  1   10.00  7\n",          # wrong_field_count
        " 00903 19970230  1   10.00\n",             # invalid_date (30 February)
        " 00904 21500101  1   10.00\n",             # date_out_of_range
        " 00905 19970105 -1   10.00\n",             # accepted: a negative quantity is a return
        " 00906 19970105  x   10.00\n",             # invalid_quantity (not a number)
        " 00907 19970105  1   -3.50\n",             # invalid_amount (negative)
        " 00908 19970105  1   ten\n",               # invalid_amount (not a number)
        " 00909 19970105  1    0.00\n",             # accepted: a zero amount is a row
        " 00909 19970105  1    0.00\n",             # accepted: an identical row is another order
    ])
    write("dirty.txt", good[: len(good) // 2] + bad + good[len(good) // 2:])
    csv_bad = "customer_id,date,quantity,price\n" + "".join(
        f"{c},{d},{q},{a}\n" for c, d, q, a in master_rows(100, seed=2)) + ",19970105,1,10.00\n"
    write("missing_customer.csv", csv_bad)                 # excluded: no_customer_id
    # Dated after the object was delivered (the tests give its last-modified day, 1998-07-01).
    write("future_dated.txt", fixed_width(master_rows(100, seed=7)) + " 00950 20990101  1   10.00\n"
          + " 00951 19980703  1   10.00\n" + " 00952 19980702  1   10.00\n")

    # --- order-line exports: the Online Retail II layout, and the same lines under German names
    retail = order_lines()
    write("online_retail_ii.csv", "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
          + "".join(f"{i},{s},{csv_field(d)},{q},{t},{p},{c},{n}\n" for i, s, d, q, t, p, c, n in retail))
    write("bestellungen.csv", "Rechnung;Artikel;Beschreibung;Menge;Rechnungsdatum;Stückpreis;Kundennummer;Land\n"
          + "".join(f"{i};{s};{csv_field(d)};{q};{t};{p};{c};{n}\n"
                    for i, s, d, q, t, p, c, n in retail))
    # Slashed dates: a day above 12 decides the order; a file where none is needs the option.
    write("slashed_day_first.csv", "customer_id,date,quantity,amount\n1,1/2/2010,1,1.00\n"
          "2,25/12/2010 08:26,1,2.00\n3,3/4/2011 8:26 PM,1,3.00\n")
    write("slashed_month_first.csv", "customer_id,date,quantity,amount\n1,1/2/2010,1,1.00\n"
          "2,12/25/2010 8:26,1,2.00\n3,3/4/2011,1,3.00\n")
    write("slashed_undecidable.csv", "customer_id,date,quantity,amount\n1,1/2/2010,1,1.00\n"
          "2,12/11/2010,1,2.00\n")
    # A Latin-1 byte past the first 64 KiB: the file is text, that one line is not UTF-8.
    long_good = fixed_width(master_rows(3000, seed=3))
    write("latin1_late_line.txt", long_good.encode() + " 0099\xe9 19970105  1   10.00\n".encode("latin-1")
          + fixed_width(master_rows(10, seed=4)).encode())

    # --- files refused, nothing published
    # Issue 20: one NUL byte on line 501 quarantines that line, not the file; quantities and
    # amounts beyond a line's bounds (one of 400 nines, which parses to infinity) are quarantined.
    nul = fixed_width(master_rows(600, seed=11)).splitlines(keepends=True)
    nul[500] = nul[500][:8] + "\x00" + nul[500][9:]
    write("nul_on_line_501.txt", "".join(nul))
    write("out_of_range.txt", fixed_width(master_rows(300, seed=13))
          + "".join(f" 00960 19970105 999999999999999999   10.00\n" for _ in range(10))
          + " 00961 19970105  1 " + "9" * 400 + ".00\n"
          + " 00962 19970105  1   1000000000.01\n"
          + " 00963 19970105  1000000   10.00\n")   # at the bound: accepted
    write("empty.txt", b"")
    write("blank_lines.txt", "\n   \n\r\n")
    write("header_only.csv", "customer_id,date,quantity,price\r\n")
    write("no_quantity_column.csv", "customer_id,date,price\n00001,19970101,11.77\n")
    write("unrecognized.txt", "<html><body>Not found</body></html>\n")
    noise = random.Random(5)
    write("binary.bin", bytes(noise.randrange(256) for _ in range(4096)))
    write("utf16.txt", fixed_width(rows).encode("utf-16"))                  # with BOM
    write("utf16_no_bom.txt", fixed_width(rows).encode("utf-16-le"))
    write("latin1.csv", ("Kunde,Datum,Menge,Betrag\n00001,19970101,1,11.77\nJosé,19970102,1,12.00\n")
          .encode("latin-1"))
    write("gzip_without_gz_name.txt", gzip.compress(fixed_width(rows).encode(), mtime=0))
    write("truncated.txt.gz", gzip.compress(fixed_width(master_rows(3000, seed=6)).encode(), mtime=0)[:20000])
    write("mostly_bad.txt", fixed_width(rows[:10]) + " 00001 1997xx01  1   11.77\n" * 3)


if __name__ == "__main__":
    main()
