"""Churn: a classifier trained on a temporal split, scoring every customer."""

from cdnow import pipeline
from cdnow.adapters.events import parse_payload
from cdnow.adapters.observability import handler, logger, metrics
from cdnow.domain.steps import ModelPayload


@handler
def lambda_handler(event, context):
    payload = parse_payload(event, ModelPayload, "the Churn step's payload")
    result = pipeline.churn(payload.run_state, analysis_date=payload.features.analysis_date,
                             transactions_uri=payload.features.transactions_uri)
    if result.get("skipped"):
        # The run succeeds without it; its summary, message and report carry the warning.
        logger.info("churn model skipped", extra={"reason": result["skipped"]})
        return result
    logger.info("churn scores staged", extra={"metrics": result["metrics"]})
    metrics.add_metric(name="ChurnValidationRocAuc", unit="None", value=result["metrics"]["roc_auc"])
    return result
