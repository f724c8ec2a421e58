"""One function per pipeline step: read the run's inputs, call the domain logic, stage the output.

Handlers (functions/<step>/app.py) only parse the event and call these; the domain modules
(features, segments, churn) never see S3; storage is the only module that talks to AWS. Each
step returns a small, JSON-ready dict: states pass locations and summaries, never data.
"""

from __future__ import annotations

from datetime import date

from . import storage
from .runs import DEFAULT_CHURN_HORIZON_DAYS, INCOMING_PREFIX, InvalidRunRequest, RunLayout, RunRequest, derive_run_id

TRANSACTION_COLUMNS = ["customer_id", "order_date", "quantity", "amount"]
TABLES = ("customer_features", "customer_segments", "segment_profiles", "churn_scores", "model_metrics")


def ingest(request: RunRequest, curated_bucket: str, default_horizon_days: int) -> dict:
    """Check the object, derive the run, write its manifest; return the run descriptor."""
    if not request.key.startswith(INCOMING_PREFIX):
        raise InvalidRunRequest(f"{request.input_uri}: only objects under {INCOMING_PREFIX} start a run")
    head = storage.head_object(request.input_uri)
    if head["ContentLength"] == 0:
        raise InvalidRunRequest(f"{request.input_uri}: the file is empty (0 bytes)")
    # The version id identifies the object on a versioned bucket; the ETag otherwise.
    version = head.get("VersionId") or head["ETag"].strip('"')
    run_id = derive_run_id(request.bucket, request.key, version)
    layout = RunLayout(curated_bucket, run_id)
    run = {
        "run_id": run_id,
        "input_uri": request.input_uri,
        "input_version": version,
        "input_bytes": head["ContentLength"],
        "curated_bucket": curated_bucket,
        "run_prefix": layout.prefix,
        "analysis_date": request.analysis_date,
        "churn_horizon_days": request.churn_horizon_days or default_horizon_days,
    }
    storage.write_json(layout.manifest, run)
    return run


def _layout(run: dict) -> RunLayout:
    return RunLayout(run["curated_bucket"], run["run_id"])


def build_features(run: dict) -> dict:
    from .features import customer_features, default_analysis_date

    layout = _layout(run)
    transform = storage.read_json(layout.transform_summary)
    transactions = storage.read_table(layout.transactions, columns=TRANSACTION_COLUMNS)
    if transactions.empty:
        raise ValueError(f"{run['input_uri']}: no valid transactions to build features from")
    analysis_date = (
        date.fromisoformat(run["analysis_date"]) if run.get("analysis_date")
        else default_analysis_date(transactions).date()
    )
    features = customer_features(transactions, analysis_date)
    storage.stage_table(features, layout.staged("customer_features"))
    return {
        "analysis_date": analysis_date.isoformat(),
        "customers": int(len(features)),
        "rows": {k: transform[k] for k in ("read", "accepted", "quarantined", "by_reason")},
        "input_format": transform.get("format"),
    }


def segment(run: dict) -> dict:
    from .segments import segment_customers

    layout = _layout(run)
    features = storage.read_table(layout.staged("customer_features"))
    assignments, profiles = segment_customers(features)
    storage.stage_table(assignments, layout.staged("customer_segments"))
    storage.stage_table(profiles, layout.staged("segment_profiles"))
    return {
        "segments": {
            row.segment_name: {"customers": int(row.customers), "revenue_share": round(float(row.revenue_share), 4)}
            for row in profiles.itertuples()
        }
    }


def churn(run: dict, analysis_date: str) -> dict:
    import pandas as pd

    from .churn import train_and_score

    layout = _layout(run)
    transactions = storage.read_table(layout.transactions, columns=TRANSACTION_COLUMNS)
    horizon = int(run.get("churn_horizon_days") or DEFAULT_CHURN_HORIZON_DAYS)
    scores, model_metrics = train_and_score(transactions, pd.Timestamp(analysis_date), horizon_days=horizon)
    storage.stage_table(scores, layout.staged("churn_scores"))
    rows = [
        {"model": "churn", "metric": name, "value": float(value)}
        for name, value in model_metrics.items() if isinstance(value, (int, float))
    ]
    storage.stage_table(pd.DataFrame(rows), layout.staged("model_metrics") + "churn/")
    return {"metrics": model_metrics}


def publish(run: dict, database: str) -> list[dict]:
    """Make every staged table of the run its partition of the catalog table; nothing is
    published unless every table was staged (a missing one fails before the first write)."""
    layout = _layout(run)
    frames = {}
    for table in TABLES:
        try:
            frames[table] = storage.read_table(layout.staged(table))
        except FileNotFoundError:
            raise ValueError(f"run {run['run_id']}: table {table} was not staged, nothing published") from None
    published = []
    for table, frame in frames.items():
        location = layout.published(table)
        storage.publish_table(frame, location, database, table, run["run_id"])
        published.append({
            "table": table, "database": database, "rows": int(len(frame)),
            "location": f"{location}{storage.PARTITION_COLUMN}={run['run_id']}/",
        })
    return published


def run_summary(run: dict, features: dict, models: dict, tables: list[dict]) -> dict:
    """The run-complete message: what a subscriber needs without opening a table."""
    return {
        "run_id": run["run_id"],
        "status": "SUCCEEDED",
        "input_uri": run["input_uri"],
        "rows": features["rows"],
        "customers": features["customers"],
        "analysis_date": features["analysis_date"],
        "segments": models["segment"]["segments"],
        "churn": models["churn"]["metrics"],
        "tables": {t["table"]: {k: v for k, v in t.items() if k != "table"} for t in tables},
    }


def record_summary(run: dict, summary: dict) -> None:
    storage.write_json(_layout(run).run_summary, summary)
