"""Report: after Publish, the run's HTML report, a pre-signed link and the run-complete message;
on the failure path, the run-failed message (``{"failure": ...}``)."""

from cdnow import pipeline
from cdnow.adapters.events import parse_payload
from cdnow.adapters.observability import handler, logger, metrics
from cdnow.adapters.settings import ReportSettings
from cdnow.domain.steps import FailurePayload, StepPayload


@handler
def lambda_handler(event, context):
    if isinstance(event, dict) and "failure" in event:
        failure = parse_payload(event["failure"], FailurePayload, "the failure path's payload")
        notice = pipeline.failure_notice(failure.model_dump())
        logger.info("failure notice composed", extra={"subject": notice["subject"]})
        return notice
    payload = parse_payload(event, StepPayload, "the Report step's payload")
    result = pipeline.report(payload.run_state, link_expiry_s=ReportSettings.from_environment().report_link_expiry_seconds)
    logger.info("report written", extra={"uri": result["uri"], "bytes": result["bytes"]})
    metrics.add_metric(name="ReportBytes", unit="Bytes", value=result["bytes"])
    return result
