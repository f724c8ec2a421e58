"""What a run is: its identity, derived from the input object, and where its files live.

The same object (bucket, key, version or ETag) with the same options always gives the same
run_id, so a redelivered event or a rerun replaces its own outputs instead of adding a second
copy. A run's options come with the execution's input or ride on the upload as the object's
``cdnow-options`` metadata. A run writes under
its own `runs/run_id=<id>/` prefix of the curated bucket; Publish is the only step that makes
it visible in the catalog.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Annotated, Any, Literal
from urllib.parse import quote, unquote

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from .defaults import FIT_FILES

INCOMING_PREFIX = "incoming/"
DEFAULT_MAX_BAD_ROW_SHARE = 0.05
DEFAULT_CURRENCY = "USD"
# Decimals an amount keeps: the currency's minor unit (ISO 4217), 2 unless listed here. The
# Transform rounds each line amount to it (half up; a unit price times a quantity is rounded
# once, as an invoice line is), so no sum carries fractions of a cent. The Glue script's
# DEFAULT_AMOUNT_DECIMALS is DEFAULT_CURRENCY's, by a test.
CURRENCY_DECIMALS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
                     "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


def currency_decimals(currency: str) -> int:
    """The decimals an amount in ``currency`` keeps (its ISO 4217 minor unit)."""
    return CURRENCY_DECIMALS.get(currency.upper(), 2)

# Limits of one delivery (template parameters MaxDeliveryBytes, MaxDeliveryRows,
# MaxCompressionRatio; the Glue script's DEFAULT_MAX_DELIVERY_* are the same, by a test): a file
# past one fails its run, naming the limit, before Spark reads it.
DEFAULT_MAX_DELIVERY_BYTES = 20_000_000_000
DEFAULT_MAX_DELIVERY_ROWS = 100_000_000
DEFAULT_MAX_COMPRESSION_RATIO = 100
# Characters a key may not hold (besides control characters): Spark (Hadoop) reads * ? [ ] { } \\
# in a path as a file pattern, so it would read other files or none, and a colon makes the name a
# URI scheme ("Relative path in absolute URI"). Ingest refuses them before anything runs.
REFUSED_KEY_CHARACTERS = frozenset("*?[]{}\\:")
REFUSED_KEY_REASON = "Spark reads * ? [ ] { } \\ as a file pattern and a colon as a URI scheme"
# The Transform job's --date_order values, and the fields a column_mapping maps with the header
# names recognized for each (case, spaces, underscores and hyphens ignored). The Glue script cannot
# import this package: these are glue/cdnow_transform.py's DATE_ORDERS and ROLE_ALIASES, kept
# equal by a test, for Ingest's checks and the CLI's --help.
DATE_ORDERS = ("day_first", "month_first")
COLUMN_ROLES = {
    "customer_id": ("customer_id", "customer", "cust_id", "customer_no", "customer_number", "client_id", "id"),
    "order_date": ("date", "order_date", "invoice_date", "purchase_date", "transaction_date", "order_time",
                   "created_at", "timestamp"),
    "quantity": ("quantity", "qty", "units", "cds"),
    "amount": ("amount", "line_total", "line_amount", "total", "sales", "revenue", "dollars", "dollar_value"),
    "unit_price": ("unit_price", "price_each", "item_price"),
    "order_id": ("order_id", "invoice", "invoice_no", "invoice_number", "order_no", "order_number",
                 "transaction_id"),
}
# Run options riding on an upload: one percent-encoded JSON object in this user-metadata key
# (x-amz-meta-cdnow-options). S3 metadata is US-ASCII and at most 2 KB per object; AWS returns
# other characters encoded and moto does not, so the JSON is always percent-encoded UTF-8.
OPTIONS_METADATA_KEY = "cdnow-options"
MAX_METADATA_BYTES = 2048
# A delivery belongs to a dataset: the folder under incoming/ that holds it
# (incoming/<dataset>/<file>); a file directly under incoming/ belongs to none. A dataset's
# standing options live in incoming/<dataset>/_dataset.json (export tools rarely set metadata):
# the same options as an upload's, which override them.
DATASET_OPTIONS_FILE = "_dataset.json"
MAX_DATASET_OPTIONS_BYTES = 64 * 1024
_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Every option a run takes, however it is started (execution input or upload metadata).
RUN_OPTIONS = ("analysis_date", "churn_horizon_days", "churn_label", "max_bad_share", "column_mapping",
               "date_order", "currency", "snapshot", "margin", "engine")
# Where the Features step computes the customer_features table (option ``engine``): "auto" takes
# the Glue Spark job for a run of at least the stack's SparkFeaturesMinRows rows (the Features
# function's SPARK_FEATURES_MIN_ROWS: a file's accepted rows, plus its dataset's history rows for
# a delivery to a dataset or a replay) and the Lambda otherwise; "lambda" and "spark" force one path.
ENGINES = ("auto", "lambda", "spark")
DEFAULT_ENGINE = "auto"
# The template parameter SparkFeaturesMinRows's default (by a test): docs/SCALING.md's measured
# Lambda boundary, about 10.5 M rows at 3,008 MB, rounded down.
DEFAULT_SPARK_FEATURES_MIN_ROWS = 10_000_000
# How long a report's pre-signed link works (template parameter ReportLinkExpirySeconds): a day.
DEFAULT_REPORT_LINK_EXPIRY_SECONDS = 86_400


class InvalidRunRequest(ValueError):
    """The event that started the run does not name a usable input object, or an option is bad."""


def derive_run_id(bucket: str, key: str, version: str, options: dict | None = None) -> str:
    """A readable, stable id: the file's stem plus a hash of the object's identity and of the
    run's options (``canonical_options``), so the same file with other options is another run.
    Without options the hash is the object's identity alone."""
    identity = f"{bucket}/{key}@{version}"
    if options:
        identity += f"?{canonical_options(options)}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    stem = key.rsplit("/", 1)[-1].split(".", 1)[0]
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:40] or "run"
    return f"{slug}-{digest}"


def canonical_options(options: dict) -> str:
    """The options as one stable string: keys sorted, no spaces, the unset ones left out."""
    return json.dumps({k: v for k, v in options.items() if v is not None}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)


def encode_options_metadata(options: dict) -> str:
    """The value of the ``cdnow-options`` metadata key for these options: percent-encoded JSON,
    pure ASCII, refused when it would not fit S3's 2 KB of user metadata."""
    value = quote(canonical_options(validate_options(options, "options")), safe="")
    if len(OPTIONS_METADATA_KEY) + len(value) > MAX_METADATA_BYTES:
        raise InvalidRunRequest(f"the options take {len(value):,} bytes encoded; S3 keeps at most "
                                f"{MAX_METADATA_BYTES:,} bytes of metadata per object")
    return value


def decode_options_metadata(value: str, source: str) -> dict:
    """The options an upload carries in its ``cdnow-options`` metadata, validated."""
    where = f"{source}: metadata {OPTIONS_METADATA_KEY}"
    try:
        options = json.loads(unquote(value, errors="strict"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRunRequest(f"{where} is not percent-encoded JSON ({exc})") from None
    return _options_object(options, where, "options", where)


def _options_object(options, where: str, what: str, source: str) -> dict:
    """Options read from a document (upload metadata, _dataset.json): a JSON object naming only
    RUN_OPTIONS, each validated; ``where`` starts each message, ``source`` validate_options'."""
    if not isinstance(options, dict):
        raise InvalidRunRequest(f"{where} must be a JSON object of {what}, got {type(options).__name__}")
    unknown = sorted(set(options) - set(RUN_OPTIONS))
    if unknown:
        raise InvalidRunRequest(f"{where} names unknown option(s) {', '.join(unknown)}; "
                                f"the options are {', '.join(RUN_OPTIONS)}")
    return validate_options(options, source)


def dataset_of(key: str) -> str | None:
    """The dataset a key under incoming/ delivers to (its first folder there), None for a file
    directly under incoming/; InvalidRunRequest for a folder name that cannot name a dataset."""
    folder, _, rest = key.removeprefix(INCOMING_PREFIX).partition("/")
    if not rest:
        return None
    if not _DATASET_NAME.fullmatch(folder):
        raise InvalidRunRequest(f"{key}: the folder {folder!r} under {INCOMING_PREFIX} names the dataset and may hold "
                                "only letters, digits, '.', '_' and '-' (starting with a letter or digit), at most 64 of them")
    return folder


def dataset_options_key(dataset: str) -> str:
    return f"{INCOMING_PREFIX}{dataset}/{DATASET_OPTIONS_FILE}"


def is_dataset_options(key: str) -> bool:
    """Whether the key is a dataset's standing options file rather than a delivery."""
    dataset = dataset_of(key) if key.startswith(INCOMING_PREFIX) else None
    return dataset is not None and key == dataset_options_key(dataset)


def parse_dataset_options(body: bytes, source: str) -> dict:
    """A dataset's _dataset.json: one JSON object of run options, validated like an upload's."""
    if len(body) >= MAX_DATASET_OPTIONS_BYTES:
        raise InvalidRunRequest(f"{source}: larger than {MAX_DATASET_OPTIONS_BYTES // 1024} KiB; it holds run options only")
    try:
        options = json.loads(body.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRunRequest(f"{source}: not a JSON object of run options ({exc})") from None
    return _options_object(options, f"{source}:", "run options", source)


def _share(value) -> float:
    """An option that is a share (0..1) as a number; -1 (outside every share) for a value that
    is no number, true and false included."""
    if isinstance(value, bool):
        return -1.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return -1.0


def validation_message(exc: ValidationError) -> str:
    """One line naming each field a model refused and why. The options' own checks raise messages
    that start with the option's name; a shape error (a missing field, a wrong type) is named by
    its path in the input, e.g. ``erase_customers.0: Input should be a valid string, got 7``."""
    parts = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(p) for p in error["loc"]) or "input"
        if error["type"] == "value_error":
            parts.append(error["msg"].removeprefix("Value error, "))
        elif error["type"] == "missing":
            parts.append(f"{path} is missing")
        else:
            parts.append(f"{path}: {error['msg']}, got {error['input']!r:.120}")
    return "; ".join(parts)


class RunOptions(BaseModel):
    """Every run option (RUN_OPTIONS), however a run is started: each checked and normalized, None
    where not set (the stack's default applies where it is used). Other keys are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    analysis_date: str | None = None
    churn_horizon_days: int | None = None
    churn_label: str | dict | None = None
    max_bad_share: float | None = None
    column_mapping: dict[str, str] | None = None
    date_order: str | None = None
    currency: str | None = None
    snapshot: bool | None = None
    margin: float | None = None
    engine: str | None = None

    @field_validator("churn_horizon_days", mode="before")
    @classmethod
    def _horizon(cls, horizon):
        if horizon is not None and (isinstance(horizon, bool) or not str(horizon).isdigit() or int(horizon) <= 0):
            raise ValueError(f"churn_horizon_days must be a positive whole number of days, got {horizon!r}")
        return None if horizon is None else int(horizon)

    @field_validator("analysis_date", mode="before")
    @classmethod
    def _analysis_date(cls, analysis_date):
        if analysis_date is None:
            return None
        try:
            valid = bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(analysis_date))) and date.fromisoformat(analysis_date)
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(f"analysis_date must be a date YYYY-MM-DD, got {analysis_date!r}")
        return analysis_date

    @field_validator("churn_label", mode="before")
    @classmethod
    def _churn_label(cls, label):
        if label is not None and not isinstance(label, (str, dict)):
            raise ValueError(f"churn_label must be a label name or an object, got {label!r}")
        return label

    @field_validator("max_bad_share", mode="before")
    @classmethod
    def _max_bad_share(cls, share):
        if share is not None and not 0.0 <= _share(share) <= 1.0:
            raise ValueError(f"max_bad_share must be a number from 0 to 1, got {share!r}")
        return None if share is None else _share(share)

    @field_validator("column_mapping", mode="before")
    @classmethod
    def _column_mapping(cls, mapping):
        if mapping is None:
            return None
        if not (isinstance(mapping, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())):
            raise ValueError(f"column_mapping must map field names to column names, got {mapping!r}")
        unknown = sorted(set(mapping) - set(COLUMN_ROLES))
        if unknown:
            raise ValueError(f"column_mapping names unknown field(s) {', '.join(unknown)}; "
                             f"the fields are {', '.join(COLUMN_ROLES)}")
        return mapping or None

    @field_validator("date_order", mode="before")
    @classmethod
    def _date_order(cls, date_order):
        if date_order is not None and date_order not in DATE_ORDERS:
            raise ValueError(f"date_order must be one of {', '.join(DATE_ORDERS)}, got {date_order!r}")
        return date_order

    @field_validator("snapshot", mode="before")
    @classmethod
    def _snapshot(cls, snapshot):
        if snapshot is not None and not isinstance(snapshot, bool):
            raise ValueError(f"snapshot must be true or false, got {snapshot!r}")
        return True if snapshot else None

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, currency):
        if currency is not None and not (isinstance(currency, str) and re.fullmatch(r"[A-Za-z]{3}", currency)):
            raise ValueError(f"currency must be a three-letter ISO 4217 code such as USD, GBP or EUR, got {currency!r}")
        return None if currency is None else currency.upper()

    @field_validator("margin", mode="before")
    @classmethod
    def _margin(cls, margin):
        if margin is not None and not 0.0 < _share(margin) <= 1.0:
            raise ValueError("margin must be the share of revenue that is profit, a number above 0 and at most 1 "
                             f"(0.3 for 30%), got {margin!r}")
        return None if margin is None else _share(margin)

    @field_validator("engine", mode="before")
    @classmethod
    def _engine(cls, engine):
        if engine is not None and engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)} (where Features runs; default "
                             f"{DEFAULT_ENGINE}), got {engine!r}")
        return engine


def validate_options(options: dict, where: str) -> dict:
    """The run options among ``options`` (other keys ignored), each checked and normalized
    (``RunOptions``); an option that is not set is left out. A bad option is an InvalidRunRequest
    naming it, after ``where``."""
    try:
        return RunOptions.model_validate(options).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise InvalidRunRequest(f"{where}: {validation_message(exc)}") from None


def features_engine(run: dict, rows: int, spark_min_rows: int) -> str:
    """Where the run's features are computed, "spark" or "lambda": the run's engine option, and
    for "auto" the Spark path from ``spark_min_rows`` rows on: the rows the run computes on, the
    delivery's accepted rows plus, for a dataset's run, its history's (before replacements: at
    most what the history holds after the run)."""
    engine = run.get("engine") or DEFAULT_ENGINE
    if engine == "auto":
        return "spark" if rows >= spark_min_rows else "lambda"
    return engine


@dataclass(frozen=True)
class RunRequest:
    """The input object and the run's options, from an EventBridge S3 event or a direct start,
    merged with the options its upload carries (``with_upload_options``).

    ``options`` holds only what the run was given (``validate_options``): an unset option takes
    the stack's default where it is used (``churn_horizon_days``, ``max_bad_share``) or the
    code's (``currency``: DEFAULT_CURRENCY). ``column_mapping`` maps fields to the column names a
    delimited or parquet input uses, e.g. {"customer_id": "Kunde"}; ``churn_label`` None is the
    temporal label (no purchase in the horizon)."""

    bucket: str
    key: str
    options: dict = field(default_factory=dict)

    @property
    def input_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def option(self, name: str):
        return self.options.get(name)

    def with_dataset_options(self, standing: dict) -> RunRequest:
        """The request with its dataset's standing options (``_dataset.json``) beneath its own:
        an option of the upload or of the execution's input wins."""
        return RunRequest(self.bucket, self.key, {**standing, **self.options}) if standing else self

    def with_upload_options(self, metadata: dict) -> RunRequest:
        """The request with the options of the object's ``cdnow-options`` metadata (from a head
        of the object) added; an option given when the execution was started wins."""
        value = {k.lower(): v for k, v in (metadata or {}).items()}.get(OPTIONS_METADATA_KEY)
        if not value:
            return self
        uploaded = decode_options_metadata(value, self.input_uri)
        return RunRequest(self.bucket, self.key, {**uploaded, **self.options})


@dataclass(frozen=True)
class DeliveryLimits:
    """What one delivery may hold: uncompressed bytes, lines, and for a gzip file the ratio of its
    uncompressed to its compressed size (a decompression bomb is refused as soon as it shows)."""

    max_bytes: int = DEFAULT_MAX_DELIVERY_BYTES
    max_rows: int = DEFAULT_MAX_DELIVERY_ROWS
    max_compression_ratio: int = DEFAULT_MAX_COMPRESSION_RATIO

    def job_arguments(self) -> dict[str, str]:
        return {"--max_delivery_bytes": str(self.max_bytes), "--max_delivery_rows": str(self.max_rows),
                "--max_compression_ratio": str(self.max_compression_ratio)}


@dataclass(frozen=True)
class Execution:
    """The state machine execution Ingest runs in (the state machine passes it with the input).

    ``event_id`` is the EventBridge event's id, which every redelivery of that event shares (None
    for a hand-started execution: each start is deliberate). ``order`` sorts the executions waiting
    for one dataset: the event's time (the start time for a hand-started one), then the execution."""

    id: str
    event_id: str | None
    order: str


def _utc_instant(value) -> str:
    """An EventBridge ``time`` or a Step Functions start time as one sortable ISO form (UTC, microseconds)."""
    instant = datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ExecutionStarted(BaseModel):
    """The execution the state machine passes Ingest beside its input ($$.Execution)."""

    id: str
    start_time: str


class IngestPayload(BaseModel):
    """What the state machine passes Ingest: the execution's input and the execution."""

    input: dict[str, Any]
    execution: ExecutionStarted


def parse_ingest_payload(payload: dict) -> tuple[dict, Execution | None]:
    """The run input and its execution, from what the state machine passes Ingest
    (``IngestPayload``); a payload without "execution" is a run input invoked directly (no
    execution: no lease, no event check)."""
    if not (isinstance(payload, dict) and "execution" in payload and "input" in payload):
        return payload, None
    try:
        parsed = IngestPayload.model_validate(payload)
    except ValidationError as exc:
        raise InvalidRunRequest(f"Ingest's payload: {validation_message(exc)}") from None
    event, execution = parsed.input, parsed.execution
    event_id = event.get("id") if "detail" in event else None
    when = event.get("time") if "detail" in event and event.get("time") is not None else execution.start_time
    name = execution.id.rsplit(":", 1)[-1]
    return event, Execution(execution.id, str(event_id) if event_id else None, f"{_utc_instant(when)}#{name}")


def _options_beside(model: BaseModel, options: dict) -> dict:
    """A hand-started input's options: its keys beside the named fields, then its "options" object."""
    return {**(model.model_extra or {}), **options}


class RunInput(BaseModel):
    """A hand-started execution's input for a file: the object, and any of RUN_OPTIONS at the top
    level or under "options" (other keys are ignored)."""

    model_config = ConfigDict(extra="allow")

    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


def object_request(bucket: str, key: str, options: dict, where: str) -> RunRequest:
    """The run of one object: its key checked (``REFUSED_KEY_CHARACTERS``), its options validated."""
    refused = sorted({c for c in key if c in REFUSED_KEY_CHARACTERS or ord(c) < 32 or ord(c) == 127})
    if refused:
        shown = " ".join(repr(c) if ord(c) < 32 or ord(c) == 127 else c for c in refused)
        raise InvalidRunRequest(f"s3://{bucket}/{key}: the name holds {shown}, which the Transform cannot "
                                f"read in a file name ({REFUSED_KEY_REASON}); rename the file without "
                                "them, e.g. with - or _ in their place")
    return RunRequest(bucket, key, validate_options(options, where))


def parse_run_request(event: dict) -> RunRequest:
    """A hand-started execution's input for a file (``RunInput``). An S3 "Object Created" event
    is the adapters' to parse (adapters/events.py, with Powertools' model of it)."""
    try:
        parsed = RunInput.model_validate(event)
    except ValidationError as exc:
        raise InvalidRunRequest("the run input names no object: expected an S3 'Object Created' event or "
                                f"{{'bucket': ..., 'key': ...}} ({validation_message(exc)})") from None
    return object_request(parsed.bucket, parsed.key, _options_beside(parsed, parsed.options), "run input")


# An erasure names at most this many customers (an execution's input is at most 256 KB).
MAX_ERASED_CUSTOMERS = 1000


@dataclass(frozen=True)
class ReplayRequest:
    """A dataset's latest analysis computed again from its history, with no file delivered (after
    an upgrade, or to take erased customers out): a hand-started execution's input
    (``ReplayInput``)."""

    bucket: str
    dataset: str
    erase_customers: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)

    @property
    def input_uri(self) -> str:
        """Where the run's rows come from, as messages name it: the dataset's folder."""
        return f"s3://{self.bucket}/{INCOMING_PREFIX}{self.dataset}/"

    def with_dataset_options(self, standing: dict) -> ReplayRequest:
        return ReplayRequest(self.bucket, self.dataset, self.erase_customers, {**standing, **self.options})


def is_replay(event: dict) -> bool:
    return isinstance(event, dict) and "replay" in event


def parse_request(event: dict) -> RunRequest | ReplayRequest:
    """What a hand-started execution's input asks for: a replay of a dataset, or a run of an object."""
    return parse_replay_request(event) if is_replay(event) else parse_run_request(event)


def check_dataset_name(name: str) -> str:
    """The name, if it can name a dataset (a folder under incoming/); InvalidRunRequest otherwise."""
    dataset_of(f"{INCOMING_PREFIX}{name}/file")
    return name


def _customer_id(value: str) -> str:
    if not value.strip():
        raise ValueError(f"erase_customers holds an empty customer id ({value!r}); each names a customer")
    return value


class ReplayInput(BaseModel):
    """A replay's input: {"bucket": <raw bucket>, "dataset": NAME, "replay": true}, with any run
    options (at the top level or under "options") and "erase_customers": [ids] to delete those
    customers' rows from the history first."""

    model_config = ConfigDict(extra="allow")

    bucket: str = Field(min_length=1)
    dataset: str
    replay: Literal[True]
    erase_customers: list[Annotated[str, AfterValidator(_customer_id)]] | None = Field(
        default=None, max_length=MAX_ERASED_CUSTOMERS)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, dataset: str) -> str:
        return check_dataset_name(dataset)


def parse_replay_request(event: dict) -> ReplayRequest:
    """The replay an execution's input asks for (``ReplayInput``); InvalidRunRequest naming the
    field otherwise."""
    try:
        parsed = ReplayInput.model_validate(event)
    except ValidationError as exc:
        raise InvalidRunRequest(f"replay input: {validation_message(exc)}") from None
    options = validate_options(_options_beside(parsed, parsed.options), "replay input")
    if options.get("snapshot"):
        raise InvalidRunRequest("snapshot is an option of a delivered file, not of a replay")
    return ReplayRequest(parsed.bucket, parsed.dataset, tuple(sorted(set(parsed.erase_customers or ()))), options)


def derive_replay_run_id(dataset: str, execution_id: str) -> str:
    """Each replay is a run of its own: the dataset's name, "replay" and a hash of the execution."""
    digest = hashlib.sha256(f"{dataset}@{execution_id}".encode()).hexdigest()[:12]
    slug = re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-")[:33] or "dataset"
    return f"{slug}-replay-{digest}"


@dataclass(frozen=True)
class RunLayout:
    """Every location a run reads or writes, from the curated bucket and the run_id."""

    curated_bucket: str
    run_id: str

    @property
    def prefix(self) -> str:
        return f"s3://{self.curated_bucket}/runs/run_id={self.run_id}/"

    @property
    def manifest(self) -> str:
        return f"{self.prefix}manifest.json"

    @property
    def transactions(self) -> str:
        return f"{self.prefix}transactions/"

    @property
    def quarantine(self) -> str:
        return f"{self.prefix}quarantine/"

    @property
    def analysed(self) -> str:
        """The rows a dataset's run analyses: its history with this delivery joined (Features)."""
        return f"{self.prefix}analysed/"

    def delivery_record(self, dataset: str, sha256: str) -> str:
        """A delivery of the dataset, recorded by Publish when it joined the history (its content's
        SHA-256 names it, so Ingest finds a delivery whose content the dataset already holds)."""
        return f"s3://{self.curated_bucket}/datasets/{dataset}/deliveries/{sha256}.json"

    @property
    def transform_summary(self) -> str:
        """Written by the Glue job: row counts by outcome and reason."""
        return f"{self.prefix}transform.json"

    @property
    def history_plan(self) -> str:
        """Written by Features for the Spark path's job on a dataset's run: the history's current
        files, the delivery or the replay's erased customers, where the job writes what Publish
        commits to the history."""
        return f"{self.prefix}history_plan.json"

    @property
    def features_job_summary(self) -> str:
        """Written by the Features Glue job (the Spark path): its counts, read by Features after it."""
        return f"{self.prefix}features_job.json"

    # The Spark path's model files (issue 18): the Features job's sample and value spend, the
    # model steps' fits, the Score job's summary and its value-simulation sample.
    @property
    def model_sample(self) -> str:
        """The customers the model steps fit on (customer_features rows with stratum, sample_weight)."""
        return f"{self.prefix}model_sample/customers/"

    @property
    def model_sample_transactions(self) -> str:
        """Every transaction row of the sampled customers."""
        return f"{self.prefix}model_sample/transactions/"

    @property
    def value_spend(self) -> str:
        """repeat_spend and gross_spend of every customer (``clv.value_inputs_from``)."""
        return f"{self.prefix}value_spend/"

    @property
    def fits(self) -> str:
        """The model steps' fits, one file per model (FIT_FILES), which the Score job applies."""
        return f"{self.prefix}fits/"

    def fit(self, model: str) -> str:
        return f"{self.fits}{FIT_FILES[model]}"

    @property
    def score_job_summary(self) -> str:
        """Written by the Score job: rows scored and the aggregates the model steps report."""
        return f"{self.prefix}score_job.json"

    @property
    def value_simulation_sample(self) -> str:
        """Written by the Score job: value inputs and segment of a sample drawn per segment, on
        which the segments' value intervals are simulated."""
        return f"{self.prefix}value_simulation_sample/"

    @property
    def run_summary(self) -> str:
        return f"{self.prefix}run_summary.json"

    @property
    def charts(self) -> str:
        """SVG charts for the run's report."""
        return f"{self.prefix}charts/"

    def chart(self, name: str) -> str:
        return f"{self.charts}{name}.svg"

    @property
    def report(self) -> str:
        """The run's HTML report, beside (not under) the run prefix: reports/ holds every run's."""
        return f"s3://{self.curated_bucket}/reports/{self.run_id}.html"

    def staged(self, table: str) -> str:
        """A table's rows for this run before Publish makes them visible."""
        return f"{self.prefix}staging/{table}/"

    def published(self, table: str) -> str:
        """A published table's location (all runs; one run_id= partition each)."""
        return f"s3://{self.curated_bucket}/tables/{table}/"

    def published_attempt(self, table: str, attempt: str) -> str:
        """Where one Publish attempt writes the run's rows of a table; the catalog partition
        points at the attempt that succeeded."""
        return f"{self.published(table)}run_id={self.run_id}/{attempt}/"
