"""The run coordination table's rules (adapters/leases.py) on moto's DynamoDB: one execution per
event, one holder per dataset, waiters served in event-time order, a silent waiter dropped."""

import boto3
import pytest
from moto import mock_aws

from cdnow.adapters import leases

TABLE = "coordination"
LEASE_S, STALE_S = 14_400, 60


@pytest.fixture
def table(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
        yield TABLE


def take(execution: str, order: str, now: int = 1000):
    return leases.take_turn(TABLE, "shop", execution, order, now, lease_s=LEASE_S, stale_s=STALE_S)


def test_an_event_is_handled_by_the_first_execution_only(table):
    assert leases.claim_event(table, "event-1", "exec-a", 1000) is None
    assert leases.claim_event(table, "event-1", "exec-a", 1001) is None  # the same execution, tried again
    assert leases.claim_event(table, "event-1", "exec-b", 1002) == "exec-a"
    assert leases.claim_event(table, "event-2", "exec-b", 1002) is None


def test_one_holder_per_dataset_and_waiters_in_event_time_order(table):
    assert take("exec-a", "2026-01-01T00:00:05.000000Z#a") is None
    # The later event asks first; the earlier one asks next: the earlier goes before it.
    assert take("exec-c", "2026-01-01T00:00:09.000000Z#c") == leases.Waiting("exec-a", 0)
    assert take("exec-b", "2026-01-01T00:00:07.000000Z#b") == leases.Waiting("exec-a", 0)
    assert take("exec-c", "2026-01-01T00:00:09.000000Z#c", now=1010) == leases.Waiting("exec-a", 1)
    assert take("exec-a", "2026-01-01T00:00:05.000000Z#a") is None  # trying again keeps it
    assert leases.give_back(table, "shop", "exec-z") is False  # not the holder: nothing released
    assert leases.give_back(table, "shop", "exec-a") is True
    assert take("exec-c", "2026-01-01T00:00:09.000000Z#c", now=1020) == leases.Waiting(None, 1)
    assert take("exec-b", "2026-01-01T00:00:07.000000Z#b", now=1020) is None
    assert leases.give_back(table, "shop", "exec-b") is True
    assert take("exec-c", "2026-01-01T00:00:09.000000Z#c", now=1030) is None


def test_other_datasets_do_not_wait(table):
    assert take("exec-a", "2026-01-01T00:00:05.000000Z#a") is None
    assert leases.take_turn(TABLE, "other", "exec-b", "2026-01-01T00:00:06.000000Z#b", 1000,
                            lease_s=LEASE_S, stale_s=STALE_S) is None


def test_an_expired_lease_and_a_silent_waiter_are_passed_over(table):
    assert take("exec-a", "2026-01-01T00:00:05.000000Z#a", now=1000) is None
    assert take("exec-b", "2026-01-01T00:00:06.000000Z#b", now=1000) == leases.Waiting("exec-a", 0)
    assert take("exec-c", "2026-01-01T00:00:07.000000Z#c", now=1000) == leases.Waiting("exec-a", 1)
    # exec-b stopped asking (aborted while waiting) and exec-a outlived its lease (timed out).
    later = 1000 + LEASE_S + 1
    assert take("exec-c", "2026-01-01T00:00:07.000000Z#c", now=later) is None
    assert take("exec-b", "2026-01-01T00:00:06.000000Z#b", now=later) == leases.Waiting("exec-c", 0)


@pytest.mark.parametrize("execution_input", [
    "an S3 event",  # events/s3-object-created.json, for raw/incoming/shop/june.csv
    {"bucket": "raw", "dataset": "shop", "replay": True, "erase_customers": ["42"]},  # was never released
])
def test_an_execution_that_ended_gives_its_dataset_back(table, execution_input, root):
    import json

    from cdnow import pipeline

    if execution_input == "an S3 event":
        execution_input = json.loads((root / "events" / "s3-object-created.json").read_text())
        execution_input["detail"]["bucket"]["name"] = "raw"
        execution_input["detail"]["object"]["key"] = "incoming/shop/june.csv"

    assert take("arn:exec-a", "2026-01-01T00:00:05.000000Z#a") is None
    assert take("arn:exec-b", "2026-01-01T00:00:06.000000Z#b") == leases.Waiting("arn:exec-a", 0)
    ended = pipeline.execution_ended({"executionArn": "arn:exec-a", "status": "ABORTED",
                                      "input": json.dumps(execution_input)},
                                     pipeline.Coordination(table, lease_s=LEASE_S, wait_s=10))
    assert ended == {"released": True, "dataset": "shop", "status": "ABORTED"}
    assert take("arn:exec-b", "2026-01-01T00:00:06.000000Z#b") is None
