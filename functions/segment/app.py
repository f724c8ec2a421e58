"""Segment: K-Means customer segments, named from their profiles."""

from cdnow import pipeline
from cdnow.adapters.events import parse_payload
from cdnow.adapters.observability import handler, logger, metrics
from cdnow.adapters.settings import CatalogSettings
from cdnow.domain.steps import StepPayload


@handler
def lambda_handler(event, context):
    payload = parse_payload(event, StepPayload, "the Segment step's payload")
    result = pipeline.segment(payload.run_state, database=CatalogSettings.from_environment().glue_database)
    if result.get("skipped"):
        # The run succeeds without it; its summary, message and report carry the warning.
        logger.info("segments skipped", extra={"reason": result["skipped"]})
        return result
    logger.info("segments staged", extra={"segments": result["segments"]})
    metrics.add_metric(name="Segments", unit="Count", value=len(result["segments"]))
    return result
