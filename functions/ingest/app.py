"""Ingest: the first step of a run. Validates the raw object and derives the run from it."""

import os

from cdnow import pipeline
from cdnow.observability import logger, metrics, tracer
from cdnow.runs import DEFAULT_CHURN_HORIZON_DAYS, DEFAULT_MAX_BAD_ROW_SHARE, parse_run_request


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    request = parse_run_request(event)
    run = pipeline.ingest(
        request,
        curated_bucket=os.environ["CURATED_BUCKET"],
        default_horizon_days=int(os.environ.get("CHURN_HORIZON_DAYS", DEFAULT_CHURN_HORIZON_DAYS)),
        default_max_bad_share=float(os.environ.get("MAX_BAD_ROW_SHARE", DEFAULT_MAX_BAD_ROW_SHARE)),
    )
    logger.append_keys(run_id=run["run_id"])
    logger.info("run started", extra={"input_uri": run["input_uri"]})
    metrics.add_metric(name="RunsStarted", unit="Count", value=1)
    return run
