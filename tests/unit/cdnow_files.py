"""The CDNOW files of data/ as transaction frames, for tests that run on the real data."""

from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[2] / "data"
MASTER = DATA / "CDNOW_master.txt"


def load_master(path: Path = MASTER) -> pd.DataFrame:
    """customer_id (str, zero-padded as in the file), order_date, quantity, amount."""
    raw = pd.read_csv(path, sep=r"\s+", header=None,
                      names=["customer_id", "order_date", "quantity", "amount"],
                      dtype={"customer_id": str, "order_date": str})
    return pd.DataFrame({
        "customer_id": raw["customer_id"],
        "order_date": pd.to_datetime(raw["order_date"], format="%Y%m%d"),
        "quantity": raw["quantity"].astype("int64"),
        "amount": raw["amount"].astype("float64"),
    })
