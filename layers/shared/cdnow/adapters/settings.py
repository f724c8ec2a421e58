"""Each function's settings: one pydantic model per function, read from its environment once per
invocation (``from_environment``). The template sets the variables from its parameters; a
parameter's default and the field's default are the same value (tests/unit/test_settings.py reads
both), and the value lives once in the code: domain/runs.py's DEFAULT_* constants.

A variable that does not fit its field fails the invocation naming the variable, never with a
pydantic traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..domain.defaults import DEFAULT_CHURN_HORIZON_DAYS
from ..domain.runs import (
    DEFAULT_MAX_BAD_ROW_SHARE, DEFAULT_MAX_COMPRESSION_RATIO, DEFAULT_MAX_DELIVERY_BYTES,
    DEFAULT_MAX_DELIVERY_ROWS, DEFAULT_REPORT_LINK_EXPIRY_SECONDS, DEFAULT_SPARK_FEATURES_MIN_ROWS,
    DeliveryLimits,
)

Settings = TypeVar("Settings", bound="FunctionSettings")


class SettingsError(RuntimeError):
    """A function's environment does not fit its settings model (a deployment error)."""


class FunctionSettings(BaseModel):
    """Fields are aliased to their environment variables; variables the model does not name
    (Lambda's own, Powertools') are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def from_environment(cls: type[Settings], environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        try:
            return cls.model_validate({name: environ[name] for name in cls.variables() if name in environ})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'environment'}: "
                                 f"{e['msg'].removeprefix('Value error, ')}"
                                 + (f" (got {e['input']!r:.80})" if e["loc"] else "")
                                 for e in exc.errors(include_url=False))
            raise SettingsError(f"the function's environment does not fit {cls.__name__}: {problems}") from None

    @classmethod
    def variables(cls) -> list[str]:
        """The environment variables the model reads."""
        return [info.alias or name for name, info in cls.model_fields.items()]


class IngestSettings(FunctionSettings):
    curated_bucket: str = Field(alias="CURATED_BUCKET", min_length=1)
    churn_horizon_days: int = Field(DEFAULT_CHURN_HORIZON_DAYS, alias="CHURN_HORIZON_DAYS", gt=0)
    max_bad_row_share: float = Field(DEFAULT_MAX_BAD_ROW_SHARE, alias="MAX_BAD_ROW_SHARE", ge=0, le=1)
    max_delivery_bytes: int = Field(DEFAULT_MAX_DELIVERY_BYTES, alias="MAX_DELIVERY_BYTES", gt=0)
    max_delivery_rows: int = Field(DEFAULT_MAX_DELIVERY_ROWS, alias="MAX_DELIVERY_ROWS", gt=0)
    max_compression_ratio: int = Field(DEFAULT_MAX_COMPRESSION_RATIO, alias="MAX_COMPRESSION_RATIO", gt=1)
    # The dataset coordination (leases): off without a table (a bare deployment of the function).
    coordination_table: str | None = Field(None, alias="COORDINATION_TABLE")
    lease_seconds: int | None = Field(None, alias="LEASE_SECONDS", gt=0)
    dataset_wait_seconds: int | None = Field(None, alias="DATASET_WAIT_SECONDS", gt=0)

    @model_validator(mode="after")
    def _coordination_complete(self) -> IngestSettings:
        if self.coordination_table and not (self.lease_seconds and self.dataset_wait_seconds):
            raise ValueError("COORDINATION_TABLE needs LEASE_SECONDS and DATASET_WAIT_SECONDS beside it")
        return self

    @property
    def limits(self) -> DeliveryLimits:
        return DeliveryLimits(max_bytes=self.max_delivery_bytes, max_rows=self.max_delivery_rows,
                              max_compression_ratio=self.max_compression_ratio)


class CatalogSettings(FunctionSettings):
    """Segment and Publish: the Glue database the run's tables are published to."""

    glue_database: str = Field(alias="GLUE_DATABASE", min_length=1)


class FeaturesSettings(CatalogSettings):
    # Accepted rows from which engine "auto" takes the Spark path (SparkFeaturesMinRows).
    spark_features_min_rows: int = Field(DEFAULT_SPARK_FEATURES_MIN_ROWS, alias="SPARK_FEATURES_MIN_ROWS", gt=0)


class ReportSettings(FunctionSettings):
    # How long the report's pre-signed link works (ReportLinkExpirySeconds); a link signed with
    # the function's role credentials may stop working sooner, when they expire.
    report_link_expiry_seconds: int = Field(DEFAULT_REPORT_LINK_EXPIRY_SECONDS, alias="REPORT_LINK_EXPIRY_SECONDS",
                                            gt=0, le=604_800)


class ModelSettings(FunctionSettings):
    """Churn and Value read no setting of their own: the run carries theirs (its options)."""


# Each function (its POWERTOOLS_SERVICE_NAME) -> its settings model.
FUNCTION_SETTINGS: dict[str, type[FunctionSettings]] = {
    "ingest": IngestSettings, "features": FeaturesSettings, "segment": CatalogSettings, "churn": ModelSettings,
    "value": ModelSettings, "publish": CatalogSettings, "report": ReportSettings,
}
