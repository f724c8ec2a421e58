"""Features: one row per customer as of the run's analysis date."""

from cdnow import pipeline
from cdnow.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    run = event["run"]
    logger.append_keys(run_id=run["run_id"])
    result = pipeline.build_features(run)
    logger.info("features staged", extra={"customers": result["customers"]})
    metrics.add_metric(name="Customers", unit="Count", value=result["customers"])
    return result
