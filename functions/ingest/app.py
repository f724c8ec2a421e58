"""Ingest: the first step of a run. Validates the raw object and derives the run from it; in an
execution, ends a redelivered event and makes a dataset's deliveries take turns. Also receives the
state machine's status-change events, to give back the lease of an execution that ended without
doing so (timed out, aborted)."""

import os

from cdnow import pipeline
from cdnow.adapters.observability import bind_run, handler, logger, metrics
from cdnow.domain.runs import (
    DEFAULT_CHURN_HORIZON_DAYS, DEFAULT_MAX_BAD_ROW_SHARE, DEFAULT_MAX_COMPRESSION_RATIO, DEFAULT_MAX_DELIVERY_BYTES,
    DEFAULT_MAX_DELIVERY_ROWS, DeliveryLimits, parse_ingest_payload, parse_request,
)

EXECUTION_STATUS_CHANGE = "Step Functions Execution Status Change"


def _coordination() -> pipeline.Coordination | None:
    table = os.environ.get("COORDINATION_TABLE")
    if not table:
        return None
    return pipeline.Coordination(table, lease_s=int(os.environ["LEASE_SECONDS"]),
                                 wait_s=int(os.environ["DATASET_WAIT_SECONDS"]))


@handler
def lambda_handler(event, context):
    if isinstance(event, dict) and event.get("detail-type") == EXECUTION_STATUS_CHANGE:
        outcome = pipeline.execution_ended(event.get("detail") or {}, _coordination())
        logger.info("execution ended", extra={"execution": (event.get("detail") or {}).get("executionArn"), **outcome})
        return outcome
    run_input, execution = parse_ingest_payload(event)
    request = parse_request(run_input)
    run = pipeline.ingest(
        request,
        curated_bucket=os.environ["CURATED_BUCKET"],
        default_horizon_days=int(os.environ.get("CHURN_HORIZON_DAYS", DEFAULT_CHURN_HORIZON_DAYS)),
        default_max_bad_share=float(os.environ.get("MAX_BAD_ROW_SHARE", DEFAULT_MAX_BAD_ROW_SHARE)),
        execution=execution,
        coordination=_coordination(),
        limits=DeliveryLimits(
            max_bytes=int(os.environ.get("MAX_DELIVERY_BYTES", DEFAULT_MAX_DELIVERY_BYTES)),
            max_rows=int(os.environ.get("MAX_DELIVERY_ROWS", DEFAULT_MAX_DELIVERY_ROWS)),
            max_compression_ratio=int(os.environ.get("MAX_COMPRESSION_RATIO", DEFAULT_MAX_COMPRESSION_RATIO))),
    )
    for outcome in ("dataset_options", "already_delivered", "duplicate_of", "waiting"):
        if outcome in run:
            logger.info(outcome.replace("_", " "), extra={"input_uri": run["input_uri"], outcome: run[outcome]})
            return run
    bind_run(run["run_id"])
    logger.info("run started", extra={"input_uri": run["input_uri"], "replay": run.get("replay")})
    metrics.add_metric(name="RunsStarted", unit="Count", value=1)
    return run
