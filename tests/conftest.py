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


@pytest.fixture
def mocked_aws(monkeypatch):
    """moto's in-process mock with test credentials and no endpoint or profile of the machine's:
    for a Glue script's main, whose boto3 calls go to AWS on Glue."""
    from moto import mock_aws

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield
