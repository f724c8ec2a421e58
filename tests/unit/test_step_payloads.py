"""Each step's payload parsed with its model (cdnow.domain.steps, through Powertools' parser in
cdnow.adapters.events): the recorded payloads of a real offline run fit, and a payload that lost a
field fails naming it."""

from __future__ import annotations

import copy
import json

import pytest

from cdnow.adapters.events import parse_payload
from cdnow.domain.runs import InvalidRunRequest
from cdnow.domain.steps import FeaturesPayload, ModelPayload, PublishPayload, StepPayload


@pytest.fixture(scope="module")
def recorded(root):
    """Payloads recorded from an offline run of data/CDNOW_sample.txt (events/record_events.py)."""
    return {name: json.loads((root / "events" / f"{name}.json").read_text()) for name in ("features", "models", "publish")}


def test_the_recorded_payloads_fit_and_keep_every_field(recorded):
    features = parse_payload(recorded["features"], FeaturesPayload, "Features")
    assert features.spark is None
    assert features.run_state == recorded["features"]["run"]  # nothing dropped, nothing added
    model = parse_payload(recorded["models"], ModelPayload, "Churn")
    assert model.features.analysis_date == recorded["models"]["features"]["analysis_date"]
    assert model.features.model_dump() == recorded["models"]["features"]
    publish = parse_payload(recorded["publish"], PublishPayload, "Publish")
    assert publish.models == recorded["publish"]["models"]


@pytest.mark.parametrize("model, name, drop, message", [
    (StepPayload, "features", ("run",), r"the Report step's payload: run is missing"),
    (StepPayload, "features", ("run", "run_id"), r"run\.run_id is missing"),
    (ModelPayload, "models", ("features", "analysis_date"), r"the Churn step's payload: features\.analysis_date is missing"),
])
def test_a_payload_that_lost_a_field_names_it(recorded, model, name, drop, message):
    payload = copy.deepcopy(recorded[name])
    holder = payload
    for part in drop[:-1]:
        holder = holder[part]
    del holder[drop[-1]]
    what = "the Report step's payload" if model is StepPayload else "the Churn step's payload"
    with pytest.raises(InvalidRunRequest, match=message):
        parse_payload(payload, model, what)


def test_a_payload_of_the_wrong_type_names_the_field(recorded):
    payload = copy.deepcopy(recorded["models"])
    payload["features"]["transactions_uri"] = 42
    with pytest.raises(InvalidRunRequest, match=r"features\.transactions_uri: Input should be a valid string, got 42"):
        parse_payload(payload, ModelPayload, "the Value step's payload")
