"""Each function's settings model against the template: every default exists once.

The template's parameters feed the functions' environment variables; each function reads its
variables through its settings model (cdnow.adapters.settings). A parameter's default must be the
field's default (the code's DEFAULT_* constant), a required field must be set by the template, and
no variable may repeat a code default as a literal. The Glue scripts cannot import the layer:
their copies are compared here too.
"""

from __future__ import annotations

import pytest

from cdnow.adapters.settings import (
    FUNCTION_SETTINGS, FeaturesSettings, IngestSettings, ReportSettings, SettingsError,
)
from cdnow.domain import churn, runs
from cdnow_offline.template import load_template


@pytest.fixture(scope="module")
def template(root):
    return load_template(root / "template.yaml")


def functions(template) -> dict[str, dict[str, object]]:
    """Each Lambda function's service name -> its environment (the Globals' and its own)."""
    shared = template["Globals"]["Function"]["Environment"]["Variables"]
    found = {}
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            own = resource["Properties"].get("Environment", {}).get("Variables", {})
            environment = {**shared, **own}
            found[environment["POWERTOOLS_SERVICE_NAME"]] = environment
    return found


def test_every_function_has_a_settings_model(template):
    assert set(functions(template)) == set(FUNCTION_SETTINGS)


def test_each_default_exists_once_in_the_code_and_the_template_uses_it(template):
    parameters = template["Parameters"]
    compared = set()
    for service, environment in functions(template).items():
        model = FUNCTION_SETTINGS[service]
        for name, info in model.model_fields.items():
            variable = info.alias
            value = environment.get(variable)
            if info.is_required():
                assert value is not None, f"{service}: {variable} is required but the template does not set it"
                continue
            if value is None:
                continue
            if info.default is None:
                continue  # no code default to repeat (LEASE_SECONDS follows the state machine's timeout)
            assert isinstance(value, dict) and set(value) == {"Ref"}, \
                f"{service}: {variable} is the literal {value!r}; its default is the code's, a setting is a parameter"
            parameter = parameters.get(value["Ref"])
            if parameter is None or "Default" not in parameter:
                continue  # a resource's name (a table), not a setting with a default
            default = type(info.default)(parameter["Default"])
            assert default == info.default, f"{value['Ref']}'s default {default!r} is not {model.__name__}.{name}'s"
            compared.add(value["Ref"])
    assert compared >= {"ChurnHorizonDays", "MaxBadRowShare", "MaxDeliveryBytes", "MaxDeliveryRows",
                        "MaxCompressionRatio", "SparkFeaturesMinRows", "ReportLinkExpirySeconds"}


def test_a_default_has_one_home_in_the_layer_and_the_glue_scripts_copies_equal_it():
    import cdnow_transform

    assert not hasattr(churn, "DEFAULT_HORIZON_DAYS")  # the churn model takes defaults.DEFAULT_CHURN_HORIZON_DAYS
    assert cdnow_transform.DEFAULT_MAX_BAD_SHARE == runs.DEFAULT_MAX_BAD_ROW_SHARE
    for name in ("DEFAULT_MAX_DELIVERY_BYTES", "DEFAULT_MAX_DELIVERY_ROWS", "DEFAULT_MAX_COMPRESSION_RATIO"):
        assert getattr(cdnow_transform, name) == getattr(runs, name), name


def test_settings_come_from_the_environment_with_the_code_s_defaults():
    settings = IngestSettings.from_environment({"CURATED_BUCKET": "curated", "CHURN_HORIZON_DAYS": "90",
                                                "AWS_REGION": "us-east-1"})
    assert settings.curated_bucket == "curated" and settings.churn_horizon_days == 90
    assert settings.max_bad_row_share == runs.DEFAULT_MAX_BAD_ROW_SHARE
    assert settings.limits == runs.DeliveryLimits()
    assert settings.coordination_table is None
    assert FeaturesSettings.from_environment({"GLUE_DATABASE": "db"}).spark_features_min_rows == \
        runs.DEFAULT_SPARK_FEATURES_MIN_ROWS
    assert ReportSettings.from_environment({}).report_link_expiry_seconds == runs.DEFAULT_REPORT_LINK_EXPIRY_SECONDS


@pytest.mark.parametrize("model, environment, message", [
    (IngestSettings, {}, r"IngestSettings: CURATED_BUCKET: Field required"),
    (IngestSettings, {"CURATED_BUCKET": "c", "CHURN_HORIZON_DAYS": "soon"},
     r"CHURN_HORIZON_DAYS: Input should be a valid integer.*'soon'"),
    (IngestSettings, {"CURATED_BUCKET": "c", "MAX_BAD_ROW_SHARE": "5"}, r"MAX_BAD_ROW_SHARE: Input should be less than or equal to 1"),
    (IngestSettings, {"CURATED_BUCKET": "c", "COORDINATION_TABLE": "t"},
     r"COORDINATION_TABLE needs LEASE_SECONDS and DATASET_WAIT_SECONDS"),
    (FeaturesSettings, {"GLUE_DATABASE": "db", "SPARK_FEATURES_MIN_ROWS": "0"}, r"SPARK_FEATURES_MIN_ROWS: Input should be greater than 0"),
    (ReportSettings, {"REPORT_LINK_EXPIRY_SECONDS": "9999999"}, r"REPORT_LINK_EXPIRY_SECONDS: Input should be less than or equal to 604800"),
])
def test_a_bad_environment_names_the_variable(model, environment, message):
    with pytest.raises(SettingsError, match=message):
        model.from_environment(environment)
