"""The bundled CDNOW files as transaction frames, and larger logs made from them.

For tests and benchmarks of the domain logic, which start from a transaction frame
(customer_id, order_date, quantity, amount; see ``cdnow.domain.features``). The pipeline itself
never reads files this way: parsing, typing and quarantine are the Glue transform's job
(``glue/cdnow_transform.py``); this reader trusts the two well-formed bundled files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[2] / "data"
MASTER = DATA / "CDNOW_master.txt"
SAMPLE = DATA / "CDNOW_sample.txt"


def read_cdnow(path: Path = MASTER) -> pd.DataFrame:
    """A CDNOW fixed-width file: master (``id date cds dollars``) or sample
    (``master_id sample_id date cds dollars``; the master id is the customer id).

    customer_id stays the zero-padded text of the file; order_date is a datetime.
    """
    raw = pd.read_csv(path, sep=r"\s+", header=None, dtype=str)
    if raw.shape[1] not in (4, 5):
        raise ValueError(f"{path}: {raw.shape[1]} fields per line; a CDNOW file has 4 (master) "
                         "or 5 (sample)")
    date = raw.shape[1] - 3
    return pd.DataFrame({
        "customer_id": raw[0].astype("str"),
        "order_date": pd.to_datetime(raw[date], format="%Y%m%d"),
        "quantity": raw[date + 1].astype("int64"),
        "amount": raw[date + 2].astype("float64"),
    })


def replicate(frame: pd.DataFrame, copies: int) -> pd.DataFrame:
    """``copies`` copies of a frame with a customer_id column (a transaction log, or one row per
    customer), each copy's ids prefixed with its number ("00-00001" ... "99-23570" for 100
    copies): ``copies`` times the customers and rows, with the same histories."""
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    n = len(frame)
    width = len(str(copies - 1))
    prefixes = pd.Series([f"{c:0{width}d}-" for c in range(copies)], dtype="str")
    ids = pd.Series(np.tile(frame["customer_id"].to_numpy(dtype=object), copies), dtype="str")
    out = {"customer_id": prefixes.repeat(n).reset_index(drop=True) + ids}
    for column in frame.columns.drop("customer_id"):
        out[column] = np.tile(frame[column].to_numpy(), copies)
    return pd.DataFrame(out)[list(frame.columns)]


def resample_customers(transactions: pd.DataFrame, scale: float, seed: int = 0) -> pd.DataFrame:
    """A log ``scale`` times the size of ``transactions`` that keeps its character: customers
    drawn with replacement (each with the whole purchase history: dates, quantities, amounts),
    every draw under a new id ("r0000000-00001": the draw number, then the original id), so
    frequency, recency, spend and cohort keep their joint distribution. Rows are in date
    order, as an export lists them (customers interleaved)."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    ids, first_row, counts = np.unique(transactions["customer_id"].to_numpy(dtype=object),
                                       return_index=True, return_counts=True)
    order = np.argsort(transactions["customer_id"].to_numpy(dtype=object), kind="stable")
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=int(round(len(ids) * scale)))
    lengths = counts[draws]
    # Row positions of every drawn customer's rows, in the sorted order of the source.
    offsets = np.repeat(starts[draws] - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    rows = order[np.arange(int(lengths.sum())) + offsets]
    width = len(str(len(draws) - 1))
    draw_ids = pd.Series([f"r{d:0{width}d}-" for d in range(len(draws))], dtype="str")
    dates = transactions["order_date"].to_numpy()[rows]
    by_date = np.argsort(dates, kind="stable")
    customer_ids = (draw_ids.repeat(lengths).reset_index(drop=True)
                    + pd.Series(transactions["customer_id"].to_numpy(dtype=object)[rows], dtype="str"))
    return pd.DataFrame({
        "customer_id": customer_ids.iloc[by_date].reset_index(drop=True),
        "order_date": dates[by_date],
        "quantity": transactions["quantity"].to_numpy()[rows][by_date],
        "amount": transactions["amount"].to_numpy()[rows][by_date],
    })
