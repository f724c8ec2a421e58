"""Segment: K-Means customer segments, named from their profiles."""

import os

from cdnow import pipeline
from cdnow.adapters.observability import handler, logger, metrics


@handler
def lambda_handler(event, context):
    run = event["run"]
    result = pipeline.segment(run, database=os.environ["GLUE_DATABASE"])
    if result.get("skipped"):
        # The run succeeds without it; its summary, message and report carry the warning.
        logger.info("segments skipped", extra={"reason": result["skipped"]})
        return result
    logger.info("segments staged", extra={"segments": result["segments"]})
    metrics.add_metric(name="Segments", unit="Count", value=len(result["segments"]))
    return result
