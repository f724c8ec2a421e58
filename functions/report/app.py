"""Report: after Publish, the run's HTML report, a pre-signed link and the run-complete message;
on the failure path, the run-failed message (``{"failure": ...}``)."""

import os

from cdnow import pipeline
from cdnow.adapters.observability import handler, logger, metrics

DEFAULT_LINK_EXPIRY_SECONDS = 86_400


@handler
def lambda_handler(event, context):
    if "failure" in event:
        notice = pipeline.failure_notice(event["failure"])
        logger.info("failure notice composed", extra={"subject": notice["subject"]})
        return notice
    run = event["run"]
    expiry = int(os.environ.get("REPORT_LINK_EXPIRY_SECONDS", DEFAULT_LINK_EXPIRY_SECONDS))
    result = pipeline.report(run, link_expiry_s=expiry)
    logger.info("report written", extra={"uri": result["uri"], "bytes": result["bytes"]})
    metrics.add_metric(name="ReportBytes", unit="Bytes", value=result["bytes"])
    return result
