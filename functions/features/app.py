"""Features: one row per customer as of the run's analysis date."""

import os

from cdnow import pipeline
from cdnow.adapters.observability import handler, logger, metrics


@handler
def lambda_handler(event, context):
    run = event["run"]
    result = pipeline.build_features(run, database=os.environ["GLUE_DATABASE"])
    logger.info("features staged", extra={"customers": result["customers"]})
    metrics.add_metric(name="Customers", unit="Count", value=result["customers"])
    return result
