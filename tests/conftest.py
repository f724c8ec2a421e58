from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def spark():
    """The offline stack's one local SparkSession (the JVM start is the slow part), shared with
    the Glue adapter when both run in one pytest process."""
    from cdnow_offline.spark import session

    return session()
