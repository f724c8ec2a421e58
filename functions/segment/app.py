"""Segment: K-Means customer segments, named from their profiles."""

import os

from cdnow import pipeline
from cdnow.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    run = event["run"]
    logger.append_keys(run_id=run["run_id"])
    result = pipeline.segment(run, database=os.environ["GLUE_DATABASE"])
    logger.info("segments staged", extra={"segments": result["segments"]})
    metrics.add_metric(name="Segments", unit="Count", value=len(result["segments"]))
    return result
