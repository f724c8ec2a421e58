"""The run coordination table (DynamoDB, `RunCoordinationTable` in template.yaml): one run per
object event, and one run per dataset at a time, by conditional writes.

Items (partition key ``pk``, sort key ``sk``):

- ``event#<EventBridge event id>`` / ``event``: the execution that handles that event. EventBridge
  delivers an event at least once; a second execution for the same event finds this item and
  ends without a run. Kept ``EVENT_KEEP_S`` (DynamoDB's TTL deletes it from ``expires_at``).
- ``dataset#<name>`` / ``lease``: the execution whose run has the dataset's history, until it
  gives it back (the state machine on every terminal path, Ingest on its own failure, and for an
  execution that ended any other way the status-change event) or ``expires_at`` passes (the
  execution's timeout: a holder can never outlive it).
- ``dataset#<name>`` / ``queue#<event time>#<execution>``: an execution waiting for the lease,
  refreshed on each try (``seen_at``). The lease goes to the first in event-time order; one whose
  execution stopped trying (aborted while waiting) is dropped once it is ``stale_s`` old.

No library does this: Powertools' idempotency makes a repeated invocation return the first one's
result (both executions would then run), not one run per event with the rest waiting in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import boto3

# An event's record outlives any redelivery of it (EventBridge retries for at most 24 hours).
EVENT_KEEP_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Waiting:
    """Why an execution may not run yet: who holds the dataset, and how many wait before it."""

    holder: str | None
    ahead: int


def _table(name: str):
    return boto3.resource("dynamodb").Table(name)


def _conditional_failure(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def claim_event(table: str, event_id: str, execution: str, now: int) -> str | None:
    """Record that ``execution`` handles the event; the execution that already does, or None."""
    items = _table(table)
    try:
        items.put_item(
            Item={"pk": f"event#{event_id}", "sk": "event", "execution": execution, "expires_at": now + EVENT_KEEP_S},
            ConditionExpression="attribute_not_exists(pk) OR execution = :me",
            ExpressionAttributeValues={":me": execution},
        )
        return None
    except Exception as exc:  # botocore's ClientError, raised by the resource's client
        if not _conditional_failure(exc):
            raise
    first = items.get_item(Key={"pk": f"event#{event_id}", "sk": "event"}, ConsistentRead=True).get("Item") or {}
    return str(first.get("execution", "another execution"))


def dataset_key(dataset: str) -> str:
    """The partition of a dataset's lease and queue (the state machine's release step names it)."""
    return f"dataset#{dataset}"


def _queue_key(order: str) -> str:
    return f"queue#{order}"


def _queue(items, pk: str) -> list[dict]:
    """The dataset's waiting executions, in event-time order."""
    return items.query(
        KeyConditionExpression="pk = :pk AND begins_with(sk, :queue)",
        ExpressionAttributeValues={":pk": pk, ":queue": "queue#"}, ConsistentRead=True,
    )["Items"]


def take_turn(table: str, dataset: str, execution: str, order: str, now: int, lease_s: int,
              stale_s: int) -> Waiting | None:
    """Take the dataset's lease for ``execution`` when it is free and no earlier delivery waits
    for it (None), or join the queue and say who is ahead (Waiting). Trying again is safe."""
    items = _table(table)
    pk = dataset_key(dataset)
    items.put_item(Item={"pk": pk, "sk": _queue_key(order), "execution": execution, "seen_at": now,
                         "expires_at": now + lease_s})
    live = []
    for entry in _queue(items, pk):
        if entry["execution"] != execution and int(entry["seen_at"]) < now - stale_s:
            _forget(items, pk, entry["sk"], entry["seen_at"])
        else:
            live.append(entry)
    ahead = next(i for i, entry in enumerate(live) if entry["execution"] == execution)
    if ahead:
        lease = items.get_item(Key={"pk": pk, "sk": "lease"}, ConsistentRead=True).get("Item") or {}
        return Waiting(lease.get("holder"), ahead)
    try:
        items.put_item(
            Item={"pk": pk, "sk": "lease", "holder": execution, "since": now, "expires_at": now + lease_s},
            ConditionExpression="attribute_not_exists(sk) OR holder = :me OR expires_at < :now",
            ExpressionAttributeValues={":me": execution, ":now": now},
        )
    except Exception as exc:
        if not _conditional_failure(exc):
            raise
        lease = items.get_item(Key={"pk": pk, "sk": "lease"}, ConsistentRead=True).get("Item") or {}
        return Waiting(lease.get("holder"), 0)
    items.delete_item(Key={"pk": pk, "sk": _queue_key(order)})
    return None


def _forget(items, pk: str, sk: str, seen_at) -> None:
    """Drop a waiter that stopped trying (unless it tried again meanwhile)."""
    try:
        items.delete_item(Key={"pk": pk, "sk": sk}, ConditionExpression="seen_at = :seen",
                          ExpressionAttributeValues={":seen": seen_at})
    except Exception as exc:
        if not _conditional_failure(exc):
            raise


def give_back(table: str, dataset: str, execution: str) -> bool:
    """Release the dataset's lease if ``execution`` holds it (True), and its place in the queue."""
    items = _table(table)
    pk = dataset_key(dataset)
    for entry in _queue(items, pk):
        if entry["execution"] == execution:
            items.delete_item(Key={"pk": pk, "sk": entry["sk"]})
    try:
        items.delete_item(Key={"pk": pk, "sk": "lease"}, ConditionExpression="holder = :me",
                          ExpressionAttributeValues={":me": execution})
        return True
    except Exception as exc:
        if not _conditional_failure(exc):
            raise
        return False
