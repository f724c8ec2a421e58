"""The comparisons the tests of issue 18's two paths share: equal JSON figures, equal tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def assert_same_figures(got, expected, path: str = "") -> None:
    """Equal JSON-like values: the same keys, lists, strings and booleans; numbers to 1e-9
    relative (sums in another order); ``path`` names the first difference."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(expected), path
        for key in expected:
            assert_same_figures(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), path
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_same_figures(g, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-9, nan_ok=True), path
    else:
        assert got == expected, path


def assert_same_rows(got: pd.DataFrame, expected: pd.DataFrame, name: str = "") -> None:
    """The same columns and customers (in any row order); numbers to 1e-9 relative, the rest
    (ids, names, ranks, bands) exactly, nulls where the other has them."""
    assert list(got.columns) == list(expected.columns) and len(got) == len(expected), name
    got = got.sort_values("customer_id").reset_index(drop=True)
    expected = expected.sort_values("customer_id").reset_index(drop=True)
    for column in expected.columns:
        if expected[column].dtype.kind == "f":
            np.testing.assert_allclose(got[column].to_numpy(dtype=np.float64),
                                       expected[column].to_numpy(dtype=np.float64), rtol=1e-9, atol=0,
                                       err_msg=f"{name}.{column}")
        else:
            assert got[column].astype(object).where(got[column].notna(), None).tolist() == \
                expected[column].astype(object).where(expected[column].notna(), None).tolist(), f"{name}.{column}"
