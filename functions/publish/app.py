"""Publish: the last step; the run's tables become visible in the catalog all at once."""

import os

from cdnow import pipeline
from cdnow.adapters.observability import handler, logger, metrics


@handler
def lambda_handler(event, context):
    run = event["run"]
    tables = pipeline.publish(run, database=os.environ["GLUE_DATABASE"], features=event["features"],
                              models=event["models"])
    summary = pipeline.run_summary(run, event["features"], event["models"], tables)
    pipeline.record_summary(run, summary)
    logger.info("run published", extra={"tables": [t["table"] for t in tables]})
    metrics.add_metric(name="RunsPublished", unit="Count", value=1)
    return summary
