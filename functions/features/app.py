"""Features: one row per customer as of the run's analysis date.

Invoked twice for a run planned for Spark: first it plans (the result says ``engine`` "spark" and
carries the Features Glue job's arguments), then, after the job, with ``spark`` (that plan) to
return the job's result in the Lambda path's shape."""

from cdnow import pipeline
from cdnow.adapters.events import parse_payload
from cdnow.adapters.observability import handler, logger, metrics
from cdnow.adapters.settings import FeaturesSettings
from cdnow.domain.steps import FeaturesPayload


@handler
def lambda_handler(event, context):
    payload = parse_payload(event, FeaturesPayload, "the Features step's payload")
    run = payload.run_state
    settings = FeaturesSettings.from_environment()
    if payload.spark is not None:
        result = pipeline.features_from_spark(run, payload.spark, database=settings.glue_database)
    else:
        result = pipeline.build_features(run, database=settings.glue_database,
                                         spark_min_rows=settings.spark_features_min_rows)
        if result["engine"] == "spark":
            logger.info("features planned for the Features Glue job",
                        extra={"analysis_date": result["analysis_date"], "rows": result["rows"].get("accepted")})
            return result
    logger.info("features staged", extra={"customers": result["customers"], "engine": result["engine"]})
    metrics.add_metric(name="Customers", unit="Count", value=result["customers"])
    return result
