"""Value: lifetime value per customer (the purchase model that checks best on a holdout, and
Gamma-Gamma), with every model's holdout check.

On the Spark path it runs twice: first it fits on the Features job's sample and writes its fit;
after the Score job, with that first result (``fitted``), it reports the job's values."""

from cdnow import pipeline
from cdnow.adapters.events import parse_payload
from cdnow.adapters.observability import handler, logger, metrics
from cdnow.domain.steps import ModelPayload


@handler
def lambda_handler(event, context):
    payload = parse_payload(event, ModelPayload, "the Value step's payload")
    result = pipeline.value(payload.run_state, analysis_date=payload.features.analysis_date,
                             transactions_uri=payload.features.transactions_uri,
                             features=payload.features_state, fitted=payload.fitted)
    if result.get("skipped"):
        # The run succeeds without it; its summary, message and report carry the warning.
        logger.info("lifetime value skipped", extra={"reason": result["skipped"]})
        return result
    if "fitted" in result:
        logger.info("lifetime value fitted on the sample", extra={"fit": result["fitted"]})
        metrics.add_metric(name="FittedCustomers", unit="Count", value=result["fitted"]["customers"])
        return result
    logger.info("customer value staged", extra={"metrics": result["metrics"]})
    metrics.add_metric(name="TotalClv12m", unit="None", value=result["metrics"]["total_clv_12m"])
    return result
