"""What arrives at a handler, parsed with Powertools' parser (pydantic models): the S3 "Object
Created" event EventBridge delivers, a hand-started execution's input, and each step's payload.

A payload that does not fit its model is an InvalidRunRequest naming the field(s) and why, never
a pydantic traceback: the failure path puts the message in the run-failed notice.
"""

from __future__ import annotations

from typing import TypeVar

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from pydantic import BaseModel, ValidationError

from ..domain import runs
from ..domain.runs import InvalidRunRequest, ReplayRequest, RunRequest, validation_message

Model = TypeVar("Model", bound=BaseModel)


def is_object_created(event: dict) -> bool:
    """Whether an execution's input is an EventBridge event (S3's "Object Created") rather than a
    hand-started input."""
    return isinstance(event, dict) and "detail" in event


def parse_payload(event: dict, model: type[Model], what: str) -> Model:
    """The event as ``model``; InvalidRunRequest "<what>: <field> ..." when it does not fit."""
    try:
        return parse(event=event, model=model)
    except ValidationError as exc:
        raise InvalidRunRequest(f"{what}: {validation_message(exc)}") from None


def parse_request(event: dict) -> RunRequest | ReplayRequest:
    """What an execution's input asks for: the object of an S3 "Object Created" event (its
    options ride on the upload, read later from the object's head), a hand-started run of an
    object, or a replay of a dataset (domain/runs.py's models)."""
    if not is_object_created(event):
        return runs.parse_request(event)
    created = parse_payload(event, S3EventNotificationEventBridgeModel, "the S3 'Object Created' event")
    return runs.object_request(created.detail.bucket.name, created.detail.object.key, {}, "the event")
