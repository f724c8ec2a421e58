"""Segment: K-Means customer segments, named from their profiles.

On the Spark path it runs twice: first it fits on the Features job's sample and writes its fit;
after the Score job, with that first result (``fitted``), it reports the job's segments."""

from cdnow import pipeline
from cdnow.adapters.events import parse_payload
from cdnow.adapters.observability import handler, logger, metrics
from cdnow.adapters.settings import CatalogSettings
from cdnow.domain.steps import ModelPayload


@handler
def lambda_handler(event, context):
    payload = parse_payload(event, ModelPayload, "the Segment step's payload")
    result = pipeline.segment(payload.run_state, database=CatalogSettings.from_environment().glue_database,
                              features=payload.features_state, fitted=payload.fitted)
    if result.get("skipped"):
        # The run succeeds without it; its summary, message and report carry the warning.
        logger.info("segments skipped", extra={"reason": result["skipped"]})
        return result
    if "fitted" in result:
        logger.info("segments fitted on the sample", extra={"fit": result["fitted"]})
        metrics.add_metric(name="FittedCustomers", unit="Count", value=result["fitted"]["customers"])
        return result
    logger.info("segments staged", extra={"segments": result["segments"]})
    metrics.add_metric(name="Segments", unit="Count", value=len(result["segments"]))
    return result
