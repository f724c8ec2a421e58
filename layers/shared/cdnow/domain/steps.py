"""What the state machine passes each step after Ingest (statemachine/pipeline.asl.json): the
run Ingest made and the results of the steps before. The handlers parse their payload with these
models (adapters/events.py), so a payload that lost a field fails naming it, before any work.

The run and the step results are dicts the pipeline owns; the models name the fields a step reads
and keep the rest as they came (``extra="allow"``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Run(BaseModel):
    """The run Ingest made (its manifest): its id and curated bucket name every location it
    reads and writes (``RunLayout``)."""

    model_config = ConfigDict(extra="allow")

    run_id: str = Field(min_length=1)
    curated_bucket: str = Field(min_length=1)


class FeaturesOutcome(BaseModel):
    """The Features step's result, as the model steps and Publish read it."""

    model_config = ConfigDict(extra="allow")

    analysis_date: str
    transactions_uri: str | None = None


class StepPayload(BaseModel):
    """A step that reads the run alone (Report)."""

    run: Run

    @property
    def run_state(self) -> dict:
        """The run as the pipeline's functions take it: every field it came with."""
        return self.run.model_dump()


class FeaturesPayload(StepPayload):
    """Features: the run, and after the Features Glue job, the plan it ran (``spark``)."""

    spark: dict[str, Any] | None = None


class ModelPayload(StepPayload):
    """Segment, Churn and Value: the run and the Features step's result; on the Spark path's
    second run of the step (after the Score job), its first result (``fitted``)."""

    features: FeaturesOutcome
    fitted: dict[str, Any] | None = None

    @property
    def features_state(self) -> dict:
        return self.features.model_dump()


class PublishPayload(ModelPayload):
    """Publish: the run, the Features result and the three models' results."""

    models: Any = None


class FailurePayload(BaseModel):
    """The failure path's payload to Report: the state that failed, its error (Error, Cause) and
    whatever the run had become (nothing when Ingest itself failed)."""

    failed_state: str | None = None
    error: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    execution: str = ""
