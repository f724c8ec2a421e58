"""Ingest: the first step of a run. Validates the raw object and derives the run from it; in an
execution, ends a redelivered event and makes a dataset's deliveries take turns. Also receives the
state machine's status-change events, to give back the lease of an execution that ended without
doing so (timed out, aborted)."""

from cdnow import pipeline
from cdnow.adapters.events import parse_request
from cdnow.adapters.observability import bind_run, handler, logger, metrics
from cdnow.adapters.settings import IngestSettings
from cdnow.domain.runs import parse_ingest_payload

EXECUTION_STATUS_CHANGE = "Step Functions Execution Status Change"


def _coordination(settings: IngestSettings) -> pipeline.Coordination | None:
    if not settings.coordination_table:
        return None
    return pipeline.Coordination(settings.coordination_table, lease_s=settings.lease_seconds,
                                 wait_s=settings.dataset_wait_seconds)


@handler
def lambda_handler(event, context):
    settings = IngestSettings.from_environment()
    if isinstance(event, dict) and event.get("detail-type") == EXECUTION_STATUS_CHANGE:
        outcome = pipeline.execution_ended(event.get("detail") or {}, _coordination(settings))
        logger.info("execution ended", extra={"execution": (event.get("detail") or {}).get("executionArn"), **outcome})
        return outcome
    run_input, execution = parse_ingest_payload(event)
    request = parse_request(run_input)
    run = pipeline.ingest(
        request,
        curated_bucket=settings.curated_bucket,
        default_horizon_days=settings.churn_horizon_days,
        default_max_bad_share=settings.max_bad_row_share,
        execution=execution,
        coordination=_coordination(settings),
        limits=settings.limits,
    )
    for outcome in ("dataset_options", "already_delivered", "duplicate_of", "waiting"):
        if outcome in run:
            logger.info(outcome.replace("_", " "), extra={"input_uri": run["input_uri"], outcome: run[outcome]})
            return run
    bind_run(run["run_id"])
    logger.info("run started", extra={"input_uri": run["input_uri"], "replay": run.get("replay")})
    metrics.add_metric(name="RunsStarted", unit="Count", value=1)
    return run
