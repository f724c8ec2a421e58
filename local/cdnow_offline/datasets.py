"""The bundled CDNOW files as transaction frames, and larger logs made from them.

For tests and benchmarks of the domain logic, which start from a transaction frame
(customer_id, order_date, quantity, amount; see ``cdnow.features``). The pipeline itself never
reads files this way: parsing, typing and quarantine are the Glue transform's job
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
