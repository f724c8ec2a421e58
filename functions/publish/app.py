"""Publish: the last step; the run's tables become visible in the catalog all at once."""

from cdnow import pipeline
from cdnow.adapters.events import parse_payload
from cdnow.adapters.observability import handler, logger, metrics
from cdnow.adapters.settings import CatalogSettings
from cdnow.domain.steps import PublishPayload


@handler
def lambda_handler(event, context):
    payload = parse_payload(event, PublishPayload, "the Publish step's payload")
    run, features = payload.run_state, payload.features.model_dump()
    tables = pipeline.publish(run, database=CatalogSettings.from_environment().glue_database, features=features,
                              models=payload.models)
    summary = pipeline.run_summary(run, features, payload.models, tables)
    pipeline.record_summary(run, summary)
    logger.info("run published", extra={"tables": [t["table"] for t in tables]})
    metrics.add_metric(name="RunsPublished", unit="Count", value=1)
    return summary
