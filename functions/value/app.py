"""Value: BG/NBD + Gamma-Gamma lifetime value per customer, with a holdout check."""

from cdnow import pipeline
from cdnow.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    run = event["run"]
    logger.append_keys(run_id=run["run_id"])
    result = pipeline.value(run, analysis_date=event["features"]["analysis_date"])
    logger.info("customer value staged", extra={"metrics": result["metrics"]})
    metrics.add_metric(name="TotalClv12m", unit="None", value=result["metrics"]["total_clv_12m"])
    return result
