"""Ingest: the first step of a run. Validates the raw object and derives the run from it."""

import os

from cdnow import pipeline
from cdnow.adapters.observability import bind_run, handler, logger, metrics
from cdnow.domain.runs import DEFAULT_CHURN_HORIZON_DAYS, DEFAULT_MAX_BAD_ROW_SHARE, parse_run_request


@handler
def lambda_handler(event, context):
    request = parse_run_request(event)
    run = pipeline.ingest(
        request,
        curated_bucket=os.environ["CURATED_BUCKET"],
        default_horizon_days=int(os.environ.get("CHURN_HORIZON_DAYS", DEFAULT_CHURN_HORIZON_DAYS)),
        default_max_bad_share=float(os.environ.get("MAX_BAD_ROW_SHARE", DEFAULT_MAX_BAD_ROW_SHARE)),
    )
    if "dataset_options" in run:
        logger.info("dataset options checked", extra={"input_uri": run["input_uri"], "options": run["dataset_options"]})
        return run
    if "already_delivered" in run:
        logger.info("already delivered", extra={"input_uri": run["input_uri"], "earlier": run["already_delivered"]})
        return run
    bind_run(run["run_id"])
    logger.info("run started", extra={"input_uri": run["input_uri"]})
    metrics.add_metric(name="RunsStarted", unit="Count", value=1)
    return run
