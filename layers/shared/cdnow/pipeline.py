"""One function per pipeline step: read the run's inputs, call the domain logic, stage the output.

Handlers (functions/<step>/app.py) only parse the event and call these; the domain modules
(``domain/``: features, segments, churn, clv, runs) never see S3; ``adapters/storage`` is the
only module that talks to AWS; ``presentation/`` draws the charts and writes the report and the
message. This seam is the one module that imports all three. Each step returns a small,
JSON-ready dict: states pass locations and summaries, never data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta, timezone

from .adapters import leases, storage
from .adapters.events import parse_request
from .domain.defaults import DEFAULT_CHURN_HORIZON_DAYS
from .domain.runs import (
    DEFAULT_CURRENCY, DEFAULT_ENGINE, DEFAULT_SPARK_FEATURES_MIN_ROWS,
    INCOMING_PREFIX, MAX_DATASET_OPTIONS_BYTES, currency_decimals, dataset_of,
    dataset_options_key, DeliveryLimits, derive_replay_run_id, derive_run_id, Execution,
    features_engine, InvalidRunRequest, is_dataset_options, parse_dataset_options,
    ReplayRequest, RunLayout, RunRequest,
)
from .domain.support import InsufficientData

# The Transform's accepted rows (glue/cdnow_transform.py's TRANSACTION_COLUMNS but the line number).
TRANSACTION_COLUMNS = ["customer_id", "order_date", "quantity", "amount", "is_return", "order_id"]
# What the Transform counted that the run summary, the notification and the report show.
ROW_COUNTS = ("read", "accepted", "excluded", "excluded_amount", "quarantined", "by_reason", "return_lines",
              "returned_amount", "zero_amount_rows", "rounded_amounts", "identical_rows", "multi_line_records")
# How the Transform read the file.
INPUT_READING = ("format", "columns", "amount_from", "money_reading", "amount_decimals", "order_ids", "date_order",
                 "date_order_decided_by")
TABLES = ("customer_features", "customer_segments", "segment_profiles", "churn_scores", "customer_value",
          "model_metrics")
OPTIONAL_TABLES = ("segment_migration",)
# The tables each model stages; a model the data cannot support (InsufficientData) stages none
# of them and the run publishes the rest.
MODEL_TABLES = {
    "segment": ("customer_segments", "segment_profiles", "segment_migration"),
    "churn": ("churn_scores",),
    "value": ("customer_value",),
}
MODEL_NAMES = {"segment": "Segments", "churn": "Churn model", "value": "Lifetime value"}


@dataclass(frozen=True)
class Coordination:
    """Where and how executions take turns (Ingest's environment): the coordination table, how
    long a lease lasts (the execution's timeout: a holder never outlives it) and how long a
    waiting execution waits between tries (a waiter silent for six tries is dropped)."""

    table: str
    lease_s: int
    wait_s: int


def ingest(request: RunRequest | ReplayRequest, curated_bucket: str, default_horizon_days: int,
           default_max_bad_share: float, execution: Execution | None = None,
           coordination: Coordination | None = None, limits: DeliveryLimits = DeliveryLimits()) -> dict:
    """Check the object and its options, derive the run, write its manifest; return the run
    descriptor (with the Transform job's arguments, which the state machine passes on as they are).

    In an execution (``coordination`` set): a redelivered event ends here (``duplicate_of``), and a
    dataset's delivery first takes the dataset's lease (``lease``) or says it waits (``waiting``),
    so a dataset's deliveries run one at a time, in event-time order. A replay (ReplayRequest)
    takes the lease the same way and analyses the history with no delivery (``replay``)."""
    replay = isinstance(request, ReplayRequest)
    if replay:
        dataset = request.dataset
        if not (execution and coordination):
            raise InvalidRunRequest(f"a replay of the dataset {dataset} runs in an execution of the state machine "
                                    "(it must hold the dataset), not by invoking Ingest")
    else:
        if not request.key.startswith(INCOMING_PREFIX):
            raise InvalidRunRequest(f"{request.input_uri}: only objects under {INCOMING_PREFIX} start a run")
        dataset = dataset_of(request.key)
    now = int(time.time())
    if execution and execution.event_id and coordination:
        first = leases.claim_event(coordination.table, execution.event_id, execution.id, now)
        if first is not None:
            return {"run_id": "none", "input_uri": request.input_uri, "dataset": dataset, "duplicate_of": first}
    if not replay and is_dataset_options(request.key):
        # A dataset's standing options, not a delivery: checked now, so a mistake is announced
        # when it is uploaded rather than by the next delivery; no computation.
        body = storage.read_bytes_if_exists(request.input_uri, MAX_DATASET_OPTIONS_BYTES) or b""
        return {"run_id": "none", "input_uri": request.input_uri, "dataset": dataset,
                "dataset_options": parse_dataset_options(body, request.input_uri)}
    defaults = (default_horizon_days, default_max_bad_share)
    if not (dataset and execution and coordination):
        return _admit(request, curated_bucket, *defaults, dataset, limits)
    waiting = leases.take_turn(coordination.table, dataset, execution.id, execution.order, now,
                               lease_s=coordination.lease_s, stale_s=6 * coordination.wait_s)
    if waiting is not None:
        return {"run_id": "none", "input_uri": request.input_uri, "dataset": dataset,
                "waiting": {"holder": waiting.holder, "ahead": waiting.ahead, "seconds": coordination.wait_s}}
    try:
        if replay:
            run = _admit_replay(request, curated_bucket, *defaults, execution)
        else:
            run = _admit(request, curated_bucket, *defaults, dataset, limits)
    except Exception:
        leases.give_back(coordination.table, dataset, execution.id)
        raise
    if "already_delivered" in run:
        leases.give_back(coordination.table, dataset, execution.id)
        return run
    # What the state machine's release step needs (the lease's key) and Publish's record shows.
    run["lease"] = {"pk": leases.dataset_key(dataset), "holder": execution.id}
    return run


def _standing_options(request, dataset: str):
    """The request with its dataset's _dataset.json beneath its own options, and where that file is."""
    standing_uri = f"s3://{request.bucket}/{dataset_options_key(dataset)}"
    body = storage.read_bytes_if_exists(standing_uri, MAX_DATASET_OPTIONS_BYTES)
    if body is None:
        return request, None
    return request.with_dataset_options(parse_dataset_options(body, standing_uri)), standing_uri


def _run_settings(options: dict, default_horizon_days: int, default_max_bad_share: float) -> dict:
    """The run descriptor's settings from its options, each unset one at the stack's default."""
    return {
        "analysis_date": options.get("analysis_date"),
        "churn_horizon_days": options.get("churn_horizon_days", default_horizon_days),
        "churn_label": options.get("churn_label"),
        "max_bad_share": options.get("max_bad_share", default_max_bad_share),
        "column_mapping": options.get("column_mapping"),
        "date_order": options.get("date_order"),
        "currency": options.get("currency", DEFAULT_CURRENCY),
        # CLV is revenue unless a margin is given.
        "margin": options.get("margin", 1.0),
        # Where Features runs (a Choice after it sends a run planned for Spark to the Glue job).
        "engine": options.get("engine", DEFAULT_ENGINE),
    }


def _admit_replay(request: ReplayRequest, curated_bucket: str, default_horizon_days: int,
                  default_max_bad_share: float, execution: Execution) -> dict:
    """The run of a replay: the dataset's history analysed again (Features reads it; no Transform),
    the erased customers' rows deleted from the history in Publish's switch."""
    request, standing_uri = _standing_options(request, request.dataset)
    run_id = derive_replay_run_id(request.dataset, execution.id)
    layout = RunLayout(curated_bucket, run_id)
    run = {
        "run_id": run_id,
        "input_uri": request.input_uri,
        "curated_bucket": curated_bucket,
        "run_prefix": layout.prefix,
        "dataset": request.dataset,
        "delivery": None,
        "replay": {"erase_customers": list(request.erase_customers)},
        "options": request.options,
        "dataset_options_uri": standing_uri,
        **_run_settings(request.options, default_horizon_days, default_max_bad_share),
    }
    storage.write_json(layout.manifest, run)
    return run


def execution_ended(detail: dict, coordination: Coordination) -> dict:
    """Give back the lease (and the place in the queue) of an execution that ended, from its
    EventBridge status-change event: the one release a timed-out or aborted execution gets, a
    delivery's or a replay's alike."""
    try:
        request = parse_request(json.loads(detail.get("input") or "{}"))
        dataset = request.dataset if isinstance(request, ReplayRequest) else dataset_of(request.key)
    except (InvalidRunRequest, ValueError):
        return {"released": False, "reason": "the execution's input names no dataset's delivery or replay"}
    if not dataset:
        return {"released": False, "reason": "not a dataset's delivery"}
    released = leases.give_back(coordination.table, dataset, detail["executionArn"])
    return {"released": released, "dataset": dataset, "status": detail.get("status")}


def _admit(request: RunRequest, curated_bucket: str, default_horizon_days: int, default_max_bad_share: float,
           dataset: str | None, limits: DeliveryLimits) -> dict:
    """The run of a delivery: its options, identity, manifest; or why there is nothing to compute."""
    head = storage.head_object(request.input_uri)
    if head["ContentLength"] == 0:
        raise InvalidRunRequest(f"{request.input_uri}: the file is empty (0 bytes)")
    if head["ContentLength"] > limits.max_bytes:
        raise InvalidRunRequest(f"{request.input_uri}: {head['ContentLength']:,} bytes, more than the stack's "
                                f"MaxDeliveryBytes of {limits.max_bytes:,}; split the export into smaller files")
    # An upload carries its options as metadata: EventBridge's event does not, the head does.
    request = request.with_upload_options(head.get("Metadata") or {})
    standing_uri = None
    if dataset:
        request, standing_uri = _standing_options(request, dataset)
    options = request.options
    # The run is the content at this key (its ETag) with its options, not the upload: a file
    # delivered twice is one run, also on a versioned bucket where each upload is a new version.
    etag = head["ETag"].strip('"')
    # Rows dated after the day after this are in the future (S3 keeps LastModified in UTC).
    last_modified_day = head["LastModified"].astimezone(timezone.utc).date().isoformat()
    latest_analysis_date = date.fromisoformat(last_modified_day) + timedelta(days=1)
    if options.get("analysis_date") and date.fromisoformat(options["analysis_date"]) > latest_analysis_date:
        raise InvalidRunRequest(
            f"{request.input_uri}: analysis_date {options['analysis_date']} is after the file was delivered "
            f"({last_modified_day}): the analysis date is at most the day after the delivery, "
            f"{latest_analysis_date.isoformat()}")
    run_id = derive_run_id(request.bucket, request.key, etag, options)
    layout = RunLayout(curated_bucket, run_id)
    delivery = None
    if dataset:
        sha256 = storage.content_sha256(request.input_uri)
        record = storage.read_bytes_if_exists(layout.delivery_record(dataset, sha256), 64 * 1024)
        if record is not None:
            # The dataset holds this content already (under this key or another): no computation.
            return {"run_id": "none", "input_uri": request.input_uri, "dataset": dataset,
                    "already_delivered": json.loads(record)}
        delivery = {"id": sha256, "sha256": sha256, "key": request.key, "snapshot": bool(options.get("snapshot"))}
    settings = _run_settings(options, default_horizon_days, default_max_bad_share)
    max_bad_share = settings["max_bad_share"]
    run = {
        "run_id": run_id,
        "input_uri": request.input_uri,
        "input_version": head.get("VersionId") or etag,
        "input_etag": etag,
        "input_bytes": head["ContentLength"],
        "curated_bucket": curated_bucket,
        "run_prefix": layout.prefix,
        "dataset": dataset,
        # A dataset's delivery: its content hash and key, and whether it replaces the whole history.
        "delivery": delivery,
        # What the run was asked for: the dataset's standing options (dataset_options_uri), the
        # upload's metadata and the execution's input, each over the one before.
        "options": options,
        "dataset_options_uri": standing_uri,
        **settings,
        "input_last_modified_date": last_modified_day,
        # Glue job arguments are strings.
        "transform_arguments": {
            "--run_id": run_id,
            "--input_uri": request.input_uri,
            "--run_prefix": layout.prefix,
            "--max_bad_share": repr(float(max_bad_share)),
            "--column_mapping": json.dumps(options.get("column_mapping")),
            "--last_modified_date": last_modified_day,
            "--amount_decimals": str(currency_decimals(settings["currency"])),
            **limits.job_arguments(),
        },
    }
    if options.get("date_order"):
        run["transform_arguments"]["--date_order"] = options["date_order"]
    storage.write_json(layout.manifest, run)
    return run


def _layout(run: dict) -> RunLayout:
    return RunLayout(run["curated_bucket"], run["run_id"])


def build_features(run: dict, database: str, spark_min_rows: int = DEFAULT_SPARK_FEATURES_MIN_ROWS) -> dict:
    """Features of every customer as of the analysis date, on the rows the run analyses: the
    delivery's own, or for a dataset's run the dataset's history after it (the delivery joined
    by ``domain.history``'s rules, or a replay's erased customers left out), staged for the model
    steps as ``transactions_uri``.

    The planner of the step's two paths: it reads the Transform's summary (and a dataset's
    current history files, not their rows) first, and a run that ``features_engine`` sends to
    Spark (its ``engine`` option, or for "auto" at least ``spark_min_rows`` rows: the delivery's
    accepted rows plus the history's) reads no row here; it returns ``engine`` "spark" with the
    Glue job's arguments (``_spark_features_plan``), and the state machine runs the job, then
    ``features_from_spark``. Every other run is computed here (``engine`` "lambda")."""
    from .domain.features import customer_features, default_analysis_date, run_analysis_date

    layout = _layout(run)
    replay = run.get("replay") is not None
    transform = None if replay else storage.read_json(layout.transform_summary)
    history_files, history_rows = [], 0
    if run.get("dataset"):
        from .adapters import history

        history_files, history_rows = history.current_files(database, run["dataset"])
        if replay and not history_files:
            raise InvalidRunRequest(f"the dataset {run['dataset']} has no history to replay: deliver a file to "
                                    f"{INCOMING_PREFIX}{run['dataset']}/ first")
    delivered = 0 if replay else int(transform.get("accepted") or 0)
    if features_engine(run, delivered + history_rows, spark_min_rows) == "spark":
        return _spark_features_plan(run, transform, history_files)
    if replay:
        transform, transactions, history_counts = _replayed_history(run, database)
    else:
        transactions = storage.read_table(layout.transactions, columns=TRANSACTION_COLUMNS)
        history_counts = None
    if transactions.empty:
        raise ValueError(f"{run['input_uri']}: no valid transactions to build features from")
    transactions_uri = layout.transactions
    if run.get("dataset"):
        if not replay:
            transactions, history_counts = _with_history(run, database, transactions)
        storage.delete_prefix(layout.analysed)
        storage.stage_table(transactions, layout.analysed)
        transactions_uri = layout.analysed
        # Read back as the model steps will read it: the same types as the Transform's rows.
        transactions = storage.read_table(transactions_uri, columns=TRANSACTION_COLUMNS)
    analysis_date = run_analysis_date(run.get("analysis_date"), default_analysis_date(transactions).date(),
                                      transform.get("latest_allowed_date"))
    features = customer_features(transactions, analysis_date)
    if features.empty:
        raise ValueError(f"{run['input_uri']}: no customer bought anything before the analysis date "
                         f"{analysis_date.isoformat()}")
    storage.stage_table(features, layout.staged("customer_features"))
    return _features_result(run, transform, "lambda", analysis_date.isoformat(), int(len(features)),
                            int(features.attrs.get("customers_without_purchase", 0)), transactions_uri,
                            history_counts)


def _features_result(run: dict, transform: dict, engine: str, analysis_date: str, customers: int,
                     customers_without_purchase: int, transactions_uri: str, history_counts: dict | None) -> dict:
    """What the Features step returns, whichever path computed the table: the models, Publish and
    Report read this shape."""
    return {
        "analysis_date": analysis_date,
        "customers": customers,
        # Customers whose only rows in the window are returns: left out of the analysis.
        "customers_without_purchase": customers_without_purchase,
        "rows": {k: transform[k] for k in ROW_COUNTS if k in transform},
        "input_format": transform.get("format"),
        "input_reading": {k: transform.get(k) for k in INPUT_READING},
        "currency": run.get("currency") or DEFAULT_CURRENCY,
        "transactions_uri": transactions_uri,
        "history": history_counts,
        # Which path computed customer_features: this Lambda, or the Features Glue job.
        "engine": engine,
    }


def _spark_features_plan(run: dict, transform: dict | None, history_files: list[str]) -> dict:
    """The Spark path's plan, from the Transform's summary (and a dataset's history files) alone:
    no row is read. The Features Glue job's arguments are strings, which the state machine passes
    on as they are. A single file's analysis date is decided here, by the Lambda's rule; a
    dataset's depends on its whole history after the run, so the job decides it by the same rule
    (the run's option, else the day after the last order, never later than the Transform's latest
    allowed date) and ``features_from_spark`` checks it against ``run_analysis_date``."""
    from .domain.features import run_analysis_date

    layout = _layout(run)
    dataset = run.get("dataset")
    if transform is not None and (not transform.get("accepted") or not transform.get("last_order_date")):
        raise ValueError(f"{run['input_uri']}: no valid transactions to build features from")
    if dataset:
        analysis_date = run.get("analysis_date")
    else:
        day_after_last = date.fromisoformat(transform["last_order_date"]) + timedelta(days=1)
        analysis_date = run_analysis_date(run.get("analysis_date"), day_after_last,
                                          transform.get("latest_allowed_date")).isoformat()
    arguments = {
        "--run_id": run["run_id"],
        **({"--transactions_uri": layout.transactions} if transform is not None else {}),
        **({"--analysis_date": analysis_date} if analysis_date else {}),
        "--output_uri": layout.staged("customer_features"),
        "--summary_uri": layout.features_job_summary,
        # What the model steps fit on and the Score job values with (issue 18's Spark path).
        "--sample_uri": layout.model_sample,
        "--sample_transactions_uri": layout.model_sample_transactions,
        "--value_spend_uri": layout.value_spend,
    }
    if dataset:
        from .adapters import history

        latest_allowed = (transform or {}).get("latest_allowed_date")
        delivery = run.get("delivery")
        storage.write_json(layout.history_plan, {
            "dataset": dataset,
            "files": history_files,
            "delivery": None if delivery is None else {key: delivery[key] for key in ("id", "key", "snapshot")},
            "erase_customers": list((run.get("replay") or {}).get("erase_customers") or ()),
            "output_uri": history.run_files_location(run["curated_bucket"], dataset, run["run_id"]),
        })
        arguments.update({
            "--history_plan_uri": layout.history_plan,
            "--history_data_uri": history.data_location(run["curated_bucket"], dataset),
            **({"--latest_allowed_date": latest_allowed} if latest_allowed and not analysis_date else {}),
        })
    return {
        "engine": "spark",
        "analysis_date": analysis_date,
        "rows": {k: transform[k] for k in ROW_COUNTS if k in transform} if transform is not None else {},
        "transactions_uri": layout.transactions,
        "features_uri": layout.staged("customer_features"),
        "summary_uri": layout.features_job_summary,
        "job_arguments": arguments,
    }


# The Features job's summary of a dataset's run: what Publish commits (beside the history counts).
HISTORY_COMMIT = ("files_uri", "written", "removed_files")


def features_from_spark(run: dict, plan: dict, database: str) -> dict:
    """The Features step's result after the Features Glue job computed the table as ``plan``
    (``_spark_features_plan``) asked: the job's summary and the Transform's counts, in the shape
    the Lambda path returns."""
    from .adapters import glue_code
    from .domain.features import run_analysis_date

    layout = _layout(run)
    job = storage.read_json(layout.features_job_summary)
    models = job.get("models") or {}
    if not (models.get("sample") and models.get("value_spend_uri")):
        raise ValueError(f"run {run['run_id']}: the Features job's summary {layout.features_job_summary} has no "
                         "models' sample or value spend: the job ran without the plan's arguments")
    replay = run.get("replay") is not None
    transform = _replay_counts(int(job["rows_read"])) if replay else storage.read_json(layout.transform_summary)
    expected = plan["analysis_date"]
    if expected is None:  # a dataset's: the job decided it on the history after the run, by this rule
        day_after_last = date.fromisoformat(models["last_order_date"]) + timedelta(days=1)
        expected = run_analysis_date(None, day_after_last, transform.get("latest_allowed_date")).isoformat()
    if job.get("analysis_date") != expected or job.get("features_uri") != layout.staged("customer_features"):
        raise ValueError(f"run {run['run_id']}: the Features job's summary {layout.features_job_summary} is not "
                         f"this plan's (analysis date {job.get('analysis_date')}, expected {expected})")
    history_counts = None
    if run.get("dataset"):
        history_counts = {key: value for key, value in job["history"].items() if key not in HISTORY_COMMIT}
    result = _features_result(run, transform, "spark", job["analysis_date"], int(job["customers"]),
                              int(job.get("customers_without_purchase", 0)),
                              None if replay else layout.transactions, history_counts)
    if run.get("dataset"):
        # What Publish commits to the history: the files the job wrote, and the files they replace.
        result["history_commit"] = {key: job["history"][key] for key in HISTORY_COMMIT}
    # What the model steps fit on (the sample, the whole log's span), and the Score job's
    # arguments (strings), with this layer's own code for its executors.
    result["spark_models"] = {
        "sample": {key: models["sample"][key] for key in ("customers", "sampled", "rate")},
        **{key: models[key] for key in ("first_order_date", "last_order_date", "net_of_returns")},
        "score_arguments": {
            "--run_id": run["run_id"],
            "--extra-py-files": glue_code.shipped_package(run["curated_bucket"]),
            "--features_uri": layout.staged("customer_features"),
            "--fits_uri": layout.fits,
            "--value_spend_uri": layout.value_spend,
            "--net_of_returns": "true" if models["net_of_returns"] else "false",
            "--segments_uri": layout.staged("customer_segments"),
            "--churn_uri": layout.staged("churn_scores"),
            "--value_uri": layout.staged("customer_value"),
            "--profiles_uri": layout.staged("segment_profiles"),
            "--simulation_sample_uri": layout.value_simulation_sample,
            "--migration_uri": layout.staged("segment_migration"),
            "--summary_uri": layout.score_job_summary,
        },
    }
    # The published run whose segments this run's are compared with (segment_migration): where
    # its rows are, for the Score job to read; the Segment step reports the job's counts.
    previous_id = _previous_run_id(run, database)
    location = None if previous_id is None else storage.partition_location_of(database, "customer_segments",
                                                                              previous_id)
    if location is not None:
        result["spark_models"]["score_arguments"].update({"--previous_run_id": previous_id,
                                                          "--previous_segments_uri": location.rstrip("/") + "/"})
    return result


def _replayed_history(run: dict, database: str):
    """A replay's rows: the dataset's history without the customers it erases (not committed:
    Publish deletes them from the history). ``build_features`` has checked there is a history."""
    from .adapters import history

    rows = history.read_history(database, run["dataset"])
    erased = rows["customer_id"].isin(run["replay"]["erase_customers"])
    rows = rows.loc[~erased, TRANSACTION_COLUMNS].reset_index(drop=True)
    replay_counts = {"history_rows": len(rows), "replayed": True, "erased_rows": int(erased.sum()),
                     "erased_customers": len(run["replay"]["erase_customers"])}
    return _replay_counts(len(rows)), rows, replay_counts


def _replay_counts(rows: int) -> dict:
    """A replay's row counts, in the Transform summary's shape: every row read from the history
    is accepted (it was when delivered); erased rows are not read."""
    return {"read": rows, "accepted": rows, "excluded": 0, "quarantined": 0, "by_reason": {}, "format": "history"}


def _delivery_rows(run: dict, transactions):
    """The delivery's accepted rows as the history keeps them: tagged with the delivery."""
    delivery = run["delivery"]
    return transactions[TRANSACTION_COLUMNS].assign(delivery_id=delivery["id"], delivery_key=delivery["key"])


def _with_history(run: dict, database: str, transactions):
    """The dataset's history with this delivery joined (not committed: Publish does that)."""
    from .adapters import history
    from .domain.history import DELIVERY_COLUMNS, combine, replacement_of

    delivery = _delivery_rows(run, transactions)
    earlier = history.read_history(database, run["dataset"])
    if earlier is None:
        earlier = delivery.iloc[0:0]
    combined = combine(earlier[TRANSACTION_COLUMNS + list(DELIVERY_COLUMNS)], delivery,
                       replacement_of(delivery, run["delivery"]["key"], run["delivery"]["snapshot"]))
    return combined.rows, combined.counts()


def _skip_model(layout: RunLayout, model: str, reason: Exception) -> dict:
    """What a model step returns when the data cannot support the model: the reason, and none of
    its tables, metrics or fit staged (a rerun removes what an earlier attempt staged; the Score
    job scores no model without a fit)."""
    for table in MODEL_TABLES[model]:
        storage.delete_prefix(layout.staged(table))
    storage.delete_prefix(f"{layout.staged('model_metrics')}{model}/")
    storage.delete_prefix(layout.fit(model))
    return {"skipped": str(reason), "charts": []}


# ---------------------------------------------------------------------------------------------
# The Spark path's model steps (issue 18). Each model step runs twice: first it fits on the
# Features job's sample and writes its fit (``RunLayout.fit``); the Score job applies the fits to
# every customer and aggregates; then the step runs again with its first result (``fitted``) and
# turns the Score job's summary into the Lambda path's result. Neither run reads a table that
# grows with the customers.

def _on_spark(features: dict | None) -> bool:
    return bool(features) and features.get("engine") == "spark"


def _spark_step(fitted: dict | None, fit: Callable[[], dict], report: Callable[[], dict]) -> dict:
    """A model step on the Spark path: its first run fits on the sample (``fit``); its second,
    with that result (``fitted``), reports the Score job's figures, unless the fit was skipped."""
    if fitted is None:
        return fit()
    if fitted.get("skipped"):
        return fitted
    return report()


def _sample_transactions(layout: RunLayout):
    """Every row of the sampled customers, as the Transform wrote them."""
    return storage.read_table(layout.model_sample_transactions, columns=TRANSACTION_COLUMNS)


def _score_job_figures(layout: RunLayout, model: str) -> dict:
    job = storage.read_json(layout.score_job_summary)
    scored = (job.get("scored") or {}).get(model)
    if scored is None:
        raise ValueError(f"the Score job's summary {layout.score_job_summary} has no {model} scores, "
                         f"though its fit {layout.fit(model)} was written")
    return scored


def _fit_segments_on_sample(run: dict) -> dict:
    from .domain.segments import fit_segments

    layout = _layout(run)
    try:
        fit = fit_segments(storage.read_table(layout.model_sample))
    except InsufficientData as exc:
        return _skip_model(layout, "segment", exc)
    storage.write_json(layout.fit("segment"), fit.to_dict())
    return {"fitted": {"uri": layout.fit("segment"), "customers": int(fit.fitted_customers)}}


def _segments_from_scores(run: dict, database: str, fitted: dict) -> dict:
    import pandas as pd

    from .domain.segments import SegmentFit, segmentation_from_aggregates

    layout = _layout(run)
    scored = _score_job_figures(layout, "segment")
    fit = SegmentFit.from_dict(storage.read_json(layout.fit("segment")))
    result = segmentation_from_aggregates(
        fit, storage.read_table(layout.staged("segment_profiles")), scored["cells"]["customers"],
        scored["cells"]["revenue_cents"], scored["overall_means"], pd.DataFrame(scored["clusters"]),
        scored["cluster_split"])
    return _segment_outcome(run, database, layout, result, None, scored.get("migration"))


def _fit_churn_on_sample(run: dict, features: dict) -> dict:
    import pandas as pd

    from .domain.churn import NO_PURCHASE_IN_HORIZON, bgnbd_baselines, fit_churn

    layout = _layout(run)
    span = features["spark_models"]
    horizon = int(run.get("churn_horizon_days") or DEFAULT_CHURN_HORIZON_DAYS)
    try:
        # The whole log's span, not the sample's: whether a label window is observed and the
        # history long enough is a property of the log.
        fit = fit_churn(_sample_transactions(layout), pd.Timestamp(features["analysis_date"]), horizon,
                        label=run.get("churn_label") or NO_PURCHASE_IN_HORIZON, baselines=bgnbd_baselines(horizon),
                        history_start=span["first_order_date"],
                        history_end=pd.Timestamp(span["last_order_date"]) + pd.Timedelta(days=1))
    except InsufficientData as exc:
        return _skip_model(layout, "churn", exc)
    storage.write_bytes(layout.fit("churn"), fit.to_bytes(), "application/octet-stream")
    return {"fitted": {"uri": layout.fit("churn"), "customers": int(fit.driver_center_customers)}}


def _churn_from_scores(run: dict, fitted: dict) -> dict:
    import pandas as pd

    from .domain.churn import SCORE_COLUMNS, SCORE_SUMMARY_FIGURES, ChurnFit, ChurnResult, churn_metrics

    layout = _layout(run)
    scored = _score_job_figures(layout, "churn")
    fit = ChurnFit.from_bytes(storage.read_bytes(layout.fit("churn")))
    result = ChurnResult(scores=pd.DataFrame(columns=SCORE_COLUMNS),
                         metrics=churn_metrics(fit.metrics, {key: scored[key] for key in SCORE_SUMMARY_FIGURES}),
                         calibration=fit.calibration, curves=fit.curves, drivers=fit.drivers)
    return _churn_outcome(layout, result)


def _fit_value_on_sample(run: dict, features: dict) -> dict:
    import pandas as pd

    from .domain.clv import fit_value, value_inputs

    layout = _layout(run)
    span = features["spark_models"]
    transactions = _sample_transactions(layout)
    analysis_day = pd.Timestamp(features["analysis_date"])
    try:
        comparison, holdout = _chosen_purchase_model(transactions, pd.Timestamp(span["first_order_date"]),
                                                     analysis_day)
        inputs = value_inputs(transactions, analysis_day)
        weights = None
        if span["sample"]["rate"] < 1:
            # Each sampled customer stands for its stratum's customers over its drawn customers.
            sample = storage.read_table(layout.model_sample, columns=["customer_id", "sample_weight"])
            weights = inputs[["customer_id"]].merge(sample, on="customer_id", how="left")["sample_weight"]
            if weights.isna().any():
                # Never expected (the sample's transactions are its customers'): said, not weighted 0.
                unweighted = inputs["customer_id"][weights.isna().to_numpy()]
                raise RuntimeError(f"{layout.model_sample}: {len(unweighted)} sampled customers have transactions "
                                   f"but no sample_weight (first: {unweighted.iloc[0]})")
            weights = weights.to_numpy(dtype=float)
        fit = fit_value(inputs, model=comparison["chosen"], margin=float(run.get("margin") or 1.0),
                        start=holdout["params"], weights=weights)
    except InsufficientData as exc:
        return _skip_model(layout, "value", exc)
    storage.write_json(layout.fit("value"), fit.to_dict())
    return {"fitted": {"uri": layout.fit("value"), "customers": int(fit.fitted_customers)},
            "holdout": holdout, "purchase_models": comparison}


def _value_from_scores(run: dict, analysis_date: str, fitted: dict) -> dict:
    import pandas as pd

    from .domain.clv import VALUE_TOTALS, ValueFit, segment_value_from_sample, value_metrics

    layout = _layout(run)
    scored = _score_job_figures(layout, "value")
    fit = ValueFit.from_dict(storage.read_json(layout.fit("value")))
    metrics = {"analysis_date": pd.Timestamp(analysis_date).date().isoformat(),
               **value_metrics(fit, {key: scored[key] for key in VALUE_TOTALS})}
    if scored.get("segment_totals") is not None:
        metrics["segment_value"] = segment_value_from_sample(
            storage.read_table(layout.value_simulation_sample), pd.DataFrame(scored["segment_totals"]), fit)
    return _value_outcome(run, layout, metrics, fitted["holdout"], fitted["purchase_models"], scored["chart_data"])


def _write_figures(layout: RunLayout, figures: dict[str, str]) -> list[str]:
    for name, svg in figures.items():
        storage.write_text(layout.chart(name), svg, "image/svg+xml")
    return sorted(figures)


def _stage_model_metrics(layout: RunLayout, model: str, metrics: dict) -> None:
    """The numeric metrics as rows (model, metric, value) of the model_metrics table."""
    import pandas as pd

    rows = [
        {"model": model, "metric": name, "value": float(value)}
        for name, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    storage.stage_table(pd.DataFrame(rows), f"{layout.staged('model_metrics')}{model}/")


def _previous_segments(run: dict, database: str):
    """(run_id, customer_segments rows) of the most recently published other run, or None
    (``_previous_run_id``)."""
    previous_id = _previous_run_id(run, database)
    if previous_id is None:
        return None
    return previous_id, storage.read_published_run(database, "customer_segments", previous_id)


def _previous_run_id(run: dict, database: str) -> str | None:
    """The most recently published other run, or None.

    "Previous" is by publication time among the runs in the ``runs`` table (for a dataset's
    delivery, the dataset's runs), this run's own earlier publication excluded (a rerun compares
    with the run before it, not with itself).
    """
    # A small table: every column, since runs published before datasets existed have no dataset.
    runs = storage.read_published_table(database, "runs")
    if runs is None:
        return None
    runs = runs[runs["run_id"] != run["run_id"]]
    if run.get("dataset"):
        # A dataset's run compares with the dataset's previous run, not with another dataset's.
        runs = runs[runs["dataset"].fillna("") == run["dataset"]] if "dataset" in runs.columns else runs.iloc[0:0]
    if runs.empty:
        return None
    return str(runs.sort_values(["published_at", "run_id"]).iloc[-1]["run_id"])


def segment(run: dict, database: str, features: dict | None = None, fitted: dict | None = None) -> dict:
    """The Segment step. On the Spark path (``features`` engine "spark") it fits on the sample,
    or with ``fitted`` (its first result) reports the Score job's segments."""
    from .domain.segments import segment_customers

    if _on_spark(features):
        return _spark_step(fitted, lambda: _fit_segments_on_sample(run),
                           lambda: _segments_from_scores(run, database, fitted))
    layout = _layout(run)
    try:
        result = segment_customers(storage.read_table(layout.staged("customer_features")))
    except InsufficientData as exc:
        return _skip_model(layout, "segment", exc)
    storage.stage_table(result.assignments, layout.staged("customer_segments"))
    storage.stage_table(result.profiles, layout.staged("segment_profiles"))
    return _segment_outcome(run, database, layout, result, result.assignments)


def _segment_outcome(run: dict, database: str, layout: RunLayout, result, assignments,
                     spark_migration: dict | None = None) -> dict:
    """The Segment step's result, metrics, migration and charts, whichever path scored the
    customers; ``assignments``: their customer_segments rows (None on the Spark path, whose
    Score job compared them with the previous run: ``spark_migration``, None when there was
    none)."""
    from .domain.segments import segment_migration
    from .presentation.figures import segment_figures

    summary = result.summary()
    _stage_model_metrics(layout, "segment", {
        "n_clusters": result.n_clusters,
        **{f"{key}_k{row['k']}": row[key] for row in result.k_selection for key in ("silhouette", "stability")},
    })
    previous = _previous_segments(run, database) if assignments is not None else None
    if spark_migration is not None:
        summary["migration"] = {key: spark_migration[key] for key in ("previous_run_id", "customers_moved")}
    elif previous is None:
        # A rerun must not publish a migration table an earlier attempt staged.
        storage.delete_prefix(layout.staged("segment_migration"))
        summary["migration"] = None
    else:
        previous_id, previous_segments = previous
        migration = segment_migration(previous_segments[["customer_id", "segment_name"]],
                                      assignments[["customer_id", "segment_name"]])
        storage.stage_table(migration.assign(previous_run_id=previous_id), layout.staged("segment_migration"))
        moved = migration[migration["from_segment"] != migration["to_segment"]]["customers"].sum()
        summary["migration"] = {"previous_run_id": previous_id, "customers_moved": int(moved)}
    summary["charts"] = _write_figures(layout, segment_figures(result))
    # The grid and index are chart data, drawn above; the run summary keeps the decisions.
    summary.pop("rfm_grid", None)
    summary.pop("profile_index", None)
    return summary


def churn(run: dict, analysis_date: str, transactions_uri: str | None = None, features: dict | None = None,
          fitted: dict | None = None) -> dict:
    """The Churn step. On the Spark path (``features`` engine "spark") it fits on the sample,
    or with ``fitted`` (its first result) reports the Score job's scores."""
    import pandas as pd

    from .domain.churn import NO_PURCHASE_IN_HORIZON, bgnbd_baselines, train_and_score

    if _on_spark(features):
        return _spark_step(fitted, lambda: _fit_churn_on_sample(run, features), lambda: _churn_from_scores(run, fitted))
    layout = _layout(run)
    # The rows Features analysed (a dataset's history with the delivery), as of the same date.
    transactions = storage.read_table(transactions_uri or layout.transactions, columns=TRANSACTION_COLUMNS)
    horizon = int(run.get("churn_horizon_days") or DEFAULT_CHURN_HORIZON_DAYS)
    try:
        result = train_and_score(
            transactions, pd.Timestamp(analysis_date), horizon_days=horizon,
            label=run.get("churn_label") or NO_PURCHASE_IN_HORIZON,
            baselines=bgnbd_baselines(horizon),
        )
    except InsufficientData as exc:
        return _skip_model(layout, "churn", exc)
    storage.stage_table(result.scores, layout.staged("churn_scores"))
    return _churn_outcome(layout, result)


def _churn_outcome(layout: RunLayout, result) -> dict:
    """The Churn step's result, metrics and charts, whichever path scored the customers."""
    from .presentation.figures import churn_figures

    _stage_model_metrics(layout, "churn", result.metrics)
    return {
        "metrics": result.metrics,
        "calibration": result.calibration,
        "drivers": result.drivers,
        "charts": _write_figures(layout, churn_figures(result)),
    }


def _staged_segments(layout: RunLayout):
    """The run's customer_segments as Segment staged them before Value (same branch of the
    state machine), or None when Segment was skipped for its data."""
    if not storage.parquet_files(layout.staged("customer_segments")):
        return None
    return storage.read_table(layout.staged("customer_segments"), columns=["customer_id", "segment_name"])


def value(run: dict, analysis_date: str, transactions_uri: str | None = None, features: dict | None = None,
          fitted: dict | None = None) -> dict:
    """The Value step. On the Spark path (``features`` engine "spark") it fits on the sample,
    or with ``fitted`` (its first result) reports the Score job's values."""
    import pandas as pd

    from .domain.clv import customer_value
    from .presentation.figures import value_chart_data

    if _on_spark(features):
        return _spark_step(fitted, lambda: _fit_value_on_sample(run, features),
                           lambda: _value_from_scores(run, analysis_date, fitted))
    layout = _layout(run)
    transactions = storage.read_table(transactions_uri or layout.transactions, columns=TRANSACTION_COLUMNS)
    analysis_day = pd.Timestamp(analysis_date)
    try:
        comparison, holdout = _chosen_purchase_model(transactions, transactions["order_date"].min(), analysis_day)
        # The calibration fit is close to the final one: starting there saves most of the search.
        table, metrics = customer_value(transactions, analysis_day, model=comparison["chosen"],
                                        margin=float(run.get("margin") or 1.0),
                                        segments=_staged_segments(layout), start=holdout["params"])
    except InsufficientData as exc:
        return _skip_model(layout, "value", exc)
    storage.stage_table(table, layout.staged("customer_value"))
    features_rows = storage.read_table(layout.staged("customer_features"),
                                       columns=["customer_id", "recency_days", "purchase_days"])
    return _value_outcome(run, layout, metrics, holdout, comparison, value_chart_data(table, features_rows))


def _chosen_purchase_model(transactions, first_day, analysis_day) -> tuple[dict, dict]:
    """Every purchase model fitted on the first half of the history (from ``first_day``, the
    whole log's first order date) and checked on the second: the comparison, and the check of
    the one with the smallest per-customer holdout error, which values the customers."""
    from .domain.clv import compare_purchase_models, default_calibration_end

    comparison = compare_purchase_models(transactions, default_calibration_end(first_day, analysis_day), analysis_day)
    return comparison, next(check for check in comparison["checks"] if check["model"] == comparison["chosen"])


def _value_outcome(run: dict, layout: RunLayout, metrics: dict, holdout: dict, comparison: dict,
                   chart_data: dict) -> dict:
    """The Value step's result, metrics and charts, whichever path valued the customers."""
    from .presentation.figures import value_figures

    _stage_model_metrics(layout, "value", {
        **metrics,
        "holdout_predicted_purchases": holdout["predicted_holdout_purchases"],
        "holdout_actual_purchases": holdout["actual_holdout_purchases"],
        **{f"holdout_mean_absolute_error_{check['model']}": check["mean_absolute_error"]
           for check in comparison["checks"]},
    })
    # CLV is revenue in the run's currency: the progress line and the summary say which.
    currency = run.get("currency") or DEFAULT_CURRENCY
    return {
        "metrics": {**metrics, "currency": currency},
        "holdout": holdout,
        "purchase_models": comparison,
        "charts": _write_figures(layout, value_figures(chart_data, holdout, currency=currency)),
    }


def _run_row(run: dict, features: dict, models: dict | None, tables: list[str]):
    """The run's row of the ``runs`` table: what was analysed, what was skipped, when it was
    published."""
    from datetime import datetime, timezone

    import pandas as pd

    return pd.DataFrame([{
        "input_uri": run["input_uri"],
        "dataset": run.get("dataset") or "",
        "input_version": str(run.get("input_version") or ""),
        "analysis_date": features["analysis_date"],
        "churn_horizon_days": int(run.get("churn_horizon_days") or DEFAULT_CHURN_HORIZON_DAYS),
        "rows_read": int(features["rows"]["read"]),
        "rows_quarantined": int(features["rows"]["quarantined"]),
        "rows_excluded": int(sum((features["rows"].get("excluded") or {}).values())),
        "customers": int(features["customers"]),
        "currency": features.get("currency") or DEFAULT_CURRENCY,
        "warnings": "; ".join(f"{MODEL_NAMES[model]} skipped: {reason}"
                              for model, reason in skipped_models(models).items()),
        # What the documented queries look for: the latest run that has each table they read.
        "published_tables": ",".join(tables),
        "published_at": pd.Timestamp(datetime.now(timezone.utc)).tz_localize(None),
    }])


def skipped_models(models: dict | None) -> dict[str, str]:
    """model -> why it was skipped, for the models the data could not support."""
    return {model: result["skipped"] for model, result in (models or {}).items()
            if isinstance(result, dict) and result.get("skipped")}


def required_tables(models: dict | None) -> list[str]:
    """The tables a run must have staged to be published: every table but a skipped model's
    (and model_metrics when every model was skipped)."""
    skipped = skipped_models(models)
    left_out = {table for model in skipped for table in MODEL_TABLES[model]}
    if len(skipped) == len(MODEL_TABLES):
        left_out.add("model_metrics")
    return [table for table in TABLES if table not in left_out]


def publish(run: dict, database: str, features: dict, models: dict | None = None) -> list[dict]:
    """Make every staged table of the run its partition of the catalog table, and record the
    run in the ``runs`` table: all of it or none of it.

    Nothing is written unless every required table was staged (``segment_migration`` exists
    only when an earlier run had been published; a model skipped for its data stages none). Then two phases: every staged table's files are
    copied as they are (streamed, never parsed: memory stays flat at any scale) and the run's
    row of ``runs`` written, each into a new folder of this attempt (invisible: no partition
    points there), and only
    then each partition is pointed at its new folder. If anything fails, the partitions switched
    so far point back where they were (or are removed) and the new folders are deleted, so the
    catalog is as it was before; after success the folders they pointed to before go.
    """
    from datetime import datetime, timezone
    from uuid import uuid4

    layout = _layout(run)
    files = {table: storage.parquet_files(layout.staged(table)) for table in TABLES + OPTIONAL_TABLES}
    staged = [table for table, paths in files.items() if paths]
    missing = [table for table in required_tables(models) if table not in staged]
    if missing:
        raise ValueError(f"run {run['run_id']}: table(s) {', '.join(missing)} not staged, nothing published")
    delivered = bool(run.get("dataset") and run.get("delivery"))
    runs_row = _run_row(run, features, models, [*staged, "runs", *(["deliveries"] if delivered else [])])

    attempt = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid4().hex[:8]}"
    # The runs table last: a run is complete in it only once everything else is switched.
    order = [*staged, "runs"]
    new = {table: layout.published_attempt(table, attempt) for table in order}
    columns: dict[str, dict[str, str]] = {}
    rows: dict[str, int] = {}
    previous: dict[str, str | None] = {}
    history_before: list[int | None] = []  # the history's snapshot before this delivery joined it
    try:
        for table in staged:
            columns[table], rows[table] = storage.copy_table(layout.staged(table), new[table], files[table])
        storage.stage_table(runs_row, new["runs"])
        columns["runs"], rows["runs"] = storage.athena_columns(runs_row), len(runs_row)
        for table in order:
            previous[table] = storage.point_partition(
                columns[table], database, table, layout.published(table), new[table], run["run_id"])
        if run.get("dataset"):
            record = _join_history(run, database, features, history_before)
            if record is not None:
                # The delivery's row of the deliveries table, in the same switch as the rest.
                new["deliveries"] = layout.published_attempt("deliveries", attempt)
                row = _delivery_row(record)
                storage.stage_table(row, new["deliveries"])
                columns["deliveries"], rows["deliveries"] = storage.athena_columns(row), len(row)
                previous["deliveries"] = storage.point_partition(
                    columns["deliveries"], database, "deliveries", layout.published("deliveries"),
                    new["deliveries"], run["run_id"])
    except BaseException:
        if history_before:
            from .adapters import history

            history.roll_back(database, run["dataset"], history_before[0])
        for table, location in reversed(previous.items()):
            storage.restore_partition(database, table, run["run_id"], location)
        for location in new.values():
            storage.delete_prefix(location)
        raise
    for table, location in previous.items():
        if location is not None and location != new[table]:
            storage.delete_prefix(location, keep=new[table])
    if (run.get("replay") or {}).get("erase_customers"):
        from .adapters import history

        # Erased for good: no earlier snapshot of the history, and no file of one, keeps their rows.
        history.forget_earlier_snapshots(database, run["dataset"])
    return [{"table": table, "database": database, "rows": int(rows[table]), "location": new[table]}
            for table in [*order, *(["deliveries"] if "deliveries" in new else [])]]


def _join_history(run: dict, database: str, features: dict, history_before: list) -> dict | None:
    """The delivery joins its dataset's history (one Iceberg commit), then its record is written
    (what Ingest finds when the same content comes again); a replay's erased customers leave it
    (one commit). ``history_before`` receives the snapshot to roll back to if anything after the
    commit fails."""
    from datetime import datetime, timezone

    from .adapters import history
    from .domain.history import replacement_of

    layout = _layout(run)
    properties = {"cdnow.run_id": run["run_id"]}
    # On the Spark path the Features job wrote what joins the history (the delivery's rows, and
    # the other rows of each file it replaces): committed as those files, no row read here.
    job_files = features.get("history_commit") if _on_spark(features) else None
    if run.get("replay") is not None:
        erased = run["replay"]["erase_customers"]
        if job_files is not None and job_files["removed_files"]:  # the files that held erased rows
            history_before.append(history.current_snapshot(database, run["dataset"]))
            _commit_job_files(run, database, job_files, properties)
        elif job_files is None and erased:
            history_before.append(history.current_snapshot(database, run["dataset"]))
            history.erase_customers(database, run["dataset"], erased, properties)
        return None
    properties["cdnow.delivery_key"] = run["delivery"]["key"]
    history_before.append(history.current_snapshot(database, run["dataset"]))
    if job_files is not None:
        snapshot_id = _commit_job_files(run, database, job_files, properties)
        delivered_rows = int(features["history"]["delivery_rows"])
    else:
        delivery = _delivery_rows(run, storage.read_table(layout.transactions, columns=TRANSACTION_COLUMNS))
        replacement = replacement_of(delivery, run["delivery"]["key"], run["delivery"]["snapshot"])
        snapshot_id = history.commit_delivery(database, run["curated_bucket"], run["dataset"], delivery,
                                              replacement, properties)
        delivered_rows = len(delivery)
    record = {
        "dataset": run["dataset"], "delivery_id": run["delivery"]["id"], "sha256": run["delivery"]["sha256"],
        "key": run["delivery"]["key"], "input_uri": run["input_uri"], "run_id": run["run_id"],
        "snapshot": run["delivery"]["snapshot"], "rows": delivered_rows, "history": features.get("history"),
        "history_snapshot_id": snapshot_id, "delivered_at": datetime.now(timezone.utc).isoformat(),
    }
    storage.write_json(layout.delivery_record(run["dataset"], run["delivery"]["sha256"]), record)
    return record


def _commit_job_files(run: dict, database: str, job_files: dict, properties: dict[str, str]) -> int:
    """The Features job's files join the dataset's history and the files they replace leave it
    (``features_from_spark``'s ``history_commit``): the new snapshot id."""
    from .adapters import history

    added = storage.parquet_files(job_files["files_uri"]) if job_files["written"] else []
    return history.commit_files(database, run["curated_bucket"], run["dataset"], added, job_files["removed_files"],
                                properties)


def _delivery_row(record: dict):
    """A delivery's row of the ``deliveries`` table (Athena: which file brought what, when)."""
    import pandas as pd

    history = record.get("history") or {}
    return pd.DataFrame([{
        "dataset": record["dataset"], "delivery_id": record["delivery_id"], "sha256": record["sha256"],
        "delivery_key": record["key"], "input_uri": record["input_uri"], "snapshot": bool(record["snapshot"]),
        "rows": int(record["rows"]),
        **{key: int(history.get(key) or 0) for key in ("replaced_by_key", "replaced_by_order_id",
                                                         "replaced_by_snapshot", "history_rows")},
        "history_snapshot_id": int(record["history_snapshot_id"]),
        "delivered_at": pd.Timestamp(record["delivered_at"]).tz_convert(None),
    }])


def run_summary(run: dict, features: dict, models: dict, tables: list[dict]) -> dict:
    """The run-complete message: what a subscriber needs without opening a table. A skipped
    model's figures are null, and ``warnings`` says which model was skipped and why."""
    layout = _layout(run)
    charts = [layout.chart(name) for model in ("segment", "churn", "value") for name in models[model]["charts"]]
    segment, churn, value = models["segment"], models["churn"], models["value"]
    return {
        "run_id": run["run_id"],
        "status": "SUCCEEDED",
        "input_uri": run["input_uri"],
        "dataset": run.get("dataset"),
        # A dataset's run: how the delivery changed the history it analysed.
        "history": features.get("history"),
        "rows": features["rows"],
        "input_reading": features.get("input_reading"),
        "options": run.get("options") or {},
        "currency": features.get("currency") or DEFAULT_CURRENCY,
        "customers": features["customers"],
        "customers_without_purchase": features.get("customers_without_purchase", 0),
        "analysis_date": features["analysis_date"],
        # Where the customer_features table was computed: "lambda" or "spark" (the Features Glue job).
        "engine": features.get("engine", "lambda"),
        "churn_horizon_days": int(run.get("churn_horizon_days") or DEFAULT_CHURN_HORIZON_DAYS),
        "warnings": [{"model": model, "reason": reason, "message": f"{MODEL_NAMES[model]} skipped: {reason}"}
                     for model, reason in skipped_models(models).items()],
        "segmentation": None if segment.get("skipped") else
        {k: v for k, v in segment.items() if k not in ("charts", "segments")},
        "segments": segment.get("segments") or {},
        "churn": churn.get("metrics"),
        "churn_calibration": churn.get("calibration"),
        "churn_drivers": churn.get("drivers"),
        "value": value.get("metrics"),
        "value_holdout": value.get("holdout"),
        # Every purchase model's holdout check and which one valued the customers.
        "value_models": value.get("purchase_models"),
        "charts": charts,
        "tables": {t["table"]: {k: v for k, v in t.items() if k != "table"} for t in tables},
    }


def record_summary(run: dict, summary: dict) -> None:
    storage.write_json(_layout(run).run_summary, summary)


QUARANTINE_EXAMPLES_PER_REASON = 3


def _quarantine_examples(layout: RunLayout, per_reason: int = QUARANTINE_EXAMPLES_PER_REASON) -> list[dict]:
    """The first few quarantined lines of each reason, in file order (line number, raw text)."""
    try:
        rows = storage.read_table(layout.quarantine, columns=["line_number", "raw_line", "reason"])
    except FileNotFoundError:
        return []
    rows = rows.sort_values(["reason", "line_number"]).groupby("reason", sort=True).head(per_reason)
    return [{"reason": str(r.reason), "line_number": int(r.line_number), "raw_line": str(r.raw_line)}
            for r in rows.itertuples(index=False)]


def report(run: dict, link_expiry_s: int) -> dict:
    """Render the published run's report to ``reports/<run_id>.html``, pre-sign a link to it, and
    compose the run-complete message around the link.

    Runs after Publish and reads only what Publish made visible (run_summary.json, the charts,
    the run's segment_profiles partition) plus a few quarantined lines, so the report shows
    exactly the published run.
    """
    from datetime import datetime, timedelta, timezone

    from .presentation.messages import run_complete_message, subject
    from .presentation.report import chart_name, render_report

    layout = _layout(run)
    summary = storage.read_json(layout.run_summary)
    charts = {chart_name(uri): storage.read_text(uri) for uri in summary.get("charts", [])}
    profiles = (storage.read_table(summary["tables"]["segment_profiles"]["location"]).to_dict("records")
                if "segment_profiles" in summary["tables"] else [])
    examples = _quarantine_examples(layout) if summary["rows"].get("quarantined") else []
    html = render_report(summary, charts, profiles=profiles, quarantine_examples=examples)
    storage.write_text(layout.report, html, "text/html; charset=utf-8")
    expires_at = datetime.now(timezone.utc) + timedelta(seconds=link_expiry_s)
    report_info = {
        "uri": layout.report,
        "url": storage.presign_get(layout.report, link_expiry_s),
        "expires_at": expires_at.strftime("%Y-%m-%d %H:%M UTC"),
        "bytes": len(html.encode()),
    }
    return {**report_info, "subject": subject(summary), "message": run_complete_message(summary, report_info)}


def failure_notice(failure: dict) -> dict:
    """The run-failed notice for the state machine's failure path: subject and SNS message."""
    from .presentation.messages import failure_message

    return failure_message(failure.get("failed_state") or "?", failure.get("error"), failure.get("run"),
                           failure.get("execution") or "", rows=_counts_so_far(failure.get("run") or {}))


def _counts_so_far(run: dict) -> dict | None:
    """The row counts the Transform wrote before the run failed (None when it wrote none: the run
    failed before or in it), so a failed run still says what its file held."""
    if not (run.get("curated_bucket") and run.get("run_id") not in (None, "none")):
        return None
    body = storage.read_bytes_if_exists(_layout(run).transform_summary, 1024 * 1024)
    if body is None:
        return None
    transform = json.loads(body)
    return {k: transform[k] for k in ROW_COUNTS if k in transform}
