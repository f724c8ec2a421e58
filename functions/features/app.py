"""Features: one row per customer as of the run's analysis date.

Invoked twice for a run planned for Spark: first it plans (the result says ``engine`` "spark" and
carries the Features Glue job's arguments), then, after the job, with ``spark`` (that plan) to
return the job's result in the Lambda path's shape."""

import os

from cdnow import pipeline
from cdnow.adapters.observability import handler, logger, metrics
from cdnow.domain.runs import DEFAULT_SPARK_FEATURES_MIN_ROWS


@handler
def lambda_handler(event, context):
    run = event["run"]
    if event.get("spark") is not None:
        result = pipeline.features_from_spark(run, event["spark"])
    else:
        # The stack's SparkFeaturesMinRows: accepted rows from which "auto" takes the Spark path.
        spark_min_rows = int(os.environ.get("SPARK_FEATURES_MIN_ROWS", DEFAULT_SPARK_FEATURES_MIN_ROWS))
        result = pipeline.build_features(run, database=os.environ["GLUE_DATABASE"], spark_min_rows=spark_min_rows)
        if result["engine"] == "spark":
            logger.info("features planned for the Features Glue job",
                        extra={"analysis_date": result["analysis_date"], "rows": result["rows"].get("accepted")})
            return result
    logger.info("features staged", extra={"customers": result["customers"], "engine": result["engine"]})
    metrics.add_metric(name="Customers", unit="Count", value=result["customers"])
    return result
