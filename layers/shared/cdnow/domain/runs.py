"""What a run is: its identity, derived from the input object, and where its files live.

The same object (bucket, key, version or ETag) always gives the same run_id, so a redelivered
event or a rerun replaces its own outputs instead of adding a second copy. A run writes under
its own `runs/run_id=<id>/` prefix of the curated bucket; Publish is the only step that makes
it visible in the catalog.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

INCOMING_PREFIX = "incoming/"
DEFAULT_CHURN_HORIZON_DAYS = 180
DEFAULT_MAX_BAD_ROW_SHARE = 0.05
# The Transform job's --date_order values (glue/cdnow_transform.py's DATE_ORDERS; a test keeps them equal).
DATE_ORDERS = ("day_first", "month_first")


class InvalidRunRequest(ValueError):
    """The event that started the run does not name a usable input object."""


def derive_run_id(bucket: str, key: str, version: str) -> str:
    """A readable, stable id: the file's stem plus a hash of the object's identity."""
    digest = hashlib.sha256(f"{bucket}/{key}@{version}".encode()).hexdigest()[:12]
    stem = key.rsplit("/", 1)[-1].split(".", 1)[0]
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:40] or "run"
    return f"{slug}-{digest}"


@dataclass(frozen=True)
class RunRequest:
    """The input object and per-run options, from an EventBridge S3 event or a direct start."""

    bucket: str
    key: str
    analysis_date: str | None = None
    churn_horizon_days: int | None = None
    # What churn means for the run: None is the temporal label (no purchase in the horizon);
    # anything else is checked, and a feature threshold refused, by the churn step.
    churn_label: str | dict | None = None
    # A file whose share of quarantined rows is above this fails the run (None: the stack's).
    max_bad_share: float | None = None
    # Field -> column name for a delimited or parquet input whose header the Transform does not
    # recognize, e.g. {"customer_id": "Kunde", "order_date": "Datum"}.
    column_mapping: dict | None = None
    # How the file writes slashed dates when no date in it tells (one of DATE_ORDERS).
    date_order: str | None = None

    @property
    def input_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_run_request(event: dict) -> RunRequest:
    """Accept what EventBridge sends for "Object Created" ({"detail": {"bucket", "object"}}) or a
    hand-started execution's input ({"bucket", "key", optional "analysis_date",
    "churn_horizon_days", "churn_label", "max_bad_share", "column_mapping", "date_order"})."""
    options = event.get("options", {}) if isinstance(event.get("options"), dict) else {}
    if "detail" in event:
        detail = event["detail"] or {}
        bucket = (detail.get("bucket") or {}).get("name")
        key = (detail.get("object") or {}).get("key")
    else:
        bucket, key = event.get("bucket"), event.get("key")
        options = {**event, **options}
    if not bucket or not key:
        raise InvalidRunRequest(
            "the run input names no object: expected an S3 'Object Created' event or "
            f"{{'bucket': ..., 'key': ...}}, got keys {sorted(event)}"
        )
    if re.search(r"[*?\[\]{}\\]", key):
        # Spark (Hadoop) reads such a name as a glob pattern: it would read other files, or none.
        raise InvalidRunRequest(f"s3://{bucket}/{key}: the name holds one of * ? [ ] {{ }} \\, which the "
                                "Transform would read as a file pattern; rename the file")
    horizon = options.get("churn_horizon_days")
    if horizon is not None and (not str(horizon).isdigit() or int(horizon) <= 0):
        raise InvalidRunRequest(f"churn_horizon_days must be a positive whole number of days, got {horizon!r}")
    analysis_date = options.get("analysis_date")
    if analysis_date is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(analysis_date)):
        raise InvalidRunRequest(f"analysis_date must be YYYY-MM-DD, got {analysis_date!r}")
    label = options.get("churn_label")
    if label is not None and not isinstance(label, (str, dict)):
        raise InvalidRunRequest(f"churn_label must be a label name or an object, got {label!r}")
    share = options.get("max_bad_share")
    if share is not None:
        try:
            share = float(share)
        except (TypeError, ValueError):
            share = -1.0
        if not 0.0 <= share <= 1.0:
            raise InvalidRunRequest(f"max_bad_share must be a number from 0 to 1, got {options['max_bad_share']!r}")
    mapping = options.get("column_mapping")
    if mapping is not None and not (
            isinstance(mapping, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())):
        raise InvalidRunRequest(f"column_mapping must map field names to column names, got {mapping!r}")
    date_order = options.get("date_order")
    if date_order is not None and date_order not in DATE_ORDERS:
        raise InvalidRunRequest(f"date_order must be one of {', '.join(DATE_ORDERS)}, got {date_order!r}")
    return RunRequest(bucket, key, analysis_date, int(horizon) if horizon is not None else None, label,
                      share, mapping, date_order)


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
    def transform_summary(self) -> str:
        """Written by the Glue job: row counts by outcome and reason."""
        return f"{self.prefix}transform.json"

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
