"""Churn: a classifier trained on a temporal split, scoring every customer."""

from cdnow import pipeline
from cdnow.adapters.observability import handler, logger, metrics


@handler
def lambda_handler(event, context):
    run = event["run"]
    result = pipeline.churn(run, analysis_date=event["features"]["analysis_date"],
                             transactions_uri=event["features"].get("transactions_uri"))
    if result.get("skipped"):
        # The run succeeds without it; its summary, message and report carry the warning.
        logger.info("churn model skipped", extra={"reason": result["skipped"]})
        return result
    logger.info("churn scores staged", extra={"metrics": result["metrics"]})
    metrics.add_metric(name="ChurnValidationRocAuc", unit="None", value=result["metrics"]["roc_auc"])
    return result
