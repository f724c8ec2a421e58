"""The benchmark logs made from the bundled CDNOW files (cdnow_offline.datasets)."""

import pandas as pd
import pytest

from cdnow.domain.features import customer_features
from cdnow_offline.datasets import read_cdnow, replicate, resample_customers


@pytest.fixture(scope="module")
def master():
    return read_cdnow()


def test_replicate_keeps_every_history_under_new_ids(master):
    copies = replicate(master.head(50), 3)
    assert len(copies) == 150 and copies["customer_id"].str[:2].tolist()[::50] == ["0-", "1-", "2-"]
    assert (copies["amount"].to_numpy()[100:] == master.head(50)["amount"].to_numpy()).all()


def test_resampled_customers_keep_their_whole_histories(master):
    log = resample_customers(master, 0.5, seed=3)
    assert log["order_date"].is_monotonic_increasing
    features = customer_features(log, "1998-07-01").set_index("customer_id")
    source = customer_features(master, "1998-07-01").set_index("customer_id")
    assert len(features) == round(len(source) * 0.5)
    # Every drawn customer ("r<draw>-<original id>") has exactly the original's features.
    original = features.index.str.split("-", n=1).str[1]
    pd.testing.assert_frame_equal(features.reset_index(drop=True),
                                  source.loc[original].reset_index(drop=True))
    assert resample_customers(master, 0.5, seed=3).equals(log)  # seeded: the same log again
