"""Run identity and run requests (cdnow.domain.runs; the S3 event with Powertools' model in
cdnow.adapters.events)."""

import copy
import json

import pytest

from urllib.parse import quote

from cdnow.adapters.events import parse_request
from cdnow.domain.runs import (
    OPTIONS_METADATA_KEY, RUN_OPTIONS, InvalidRunRequest, RunLayout, decode_options_metadata, derive_run_id,
    Execution, ReplayRequest, derive_replay_run_id, encode_options_metadata, is_replay, parse_ingest_payload,
    parse_replay_request, parse_run_request,
)


def test_run_id_is_stable_per_object_version_and_readable():
    a = derive_run_id("raw", "incoming/CDNOW_master.txt", "etag1")
    assert a == derive_run_id("raw", "incoming/CDNOW_master.txt", "etag1")
    assert a.startswith("cdnow-master-")
    assert a != derive_run_id("raw", "incoming/CDNOW_master.txt", "etag2")
    assert a != derive_run_id("raw", "incoming/other/CDNOW_master.txt", "etag1")


def test_run_id_hashes_the_options_so_other_options_are_another_run():
    plain = derive_run_id("raw", "incoming/CDNOW_master.txt", "etag1")
    assert derive_run_id("raw", "incoming/CDNOW_master.txt", "etag1", {}) == plain
    horizon = derive_run_id("raw", "incoming/CDNOW_master.txt", "etag1", {"churn_horizon_days": 90})
    assert horizon != plain and horizon.startswith("cdnow-master-")
    # Canonical: the order of the keys and unset options do not matter.
    both = {"churn_horizon_days": 90, "analysis_date": "1998-01-01"}
    assert derive_run_id("raw", "k", "e", both) == derive_run_id(
        "raw", "k", "e", {"analysis_date": "1998-01-01", "currency": None, "churn_horizon_days": 90})


@pytest.fixture
def object_created(root):
    """The "Object Created" event EventBridge delivers (events/s3-object-created.json), for raw/incoming/a.csv."""
    event = json.loads((root / "events" / "s3-object-created.json").read_text())
    event["detail"]["bucket"]["name"], event["detail"]["object"]["key"] = "raw", "incoming/a.csv"
    return event


def test_parses_eventbridge_object_created_and_direct_input(object_created):
    assert parse_request(object_created).input_uri == "s3://raw/incoming/a.csv"
    direct = parse_run_request({"bucket": "raw", "key": "incoming/a.txt", "analysis_date": "1998-07-01",
                                "churn_horizon_days": "90", "currency": "gbp"})
    assert direct.options == {"analysis_date": "1998-07-01", "churn_horizon_days": 90, "currency": "GBP"}
    assert direct.option("churn_label") is None
    label = {"feature": "recency_days", "threshold": 90}
    assert parse_run_request({"bucket": "raw", "key": "incoming/a.txt", "churn_label": label}).option("churn_label") == label
    nested = parse_run_request({"bucket": "raw", "key": "incoming/a.txt", "options": {"date_order": "day_first"}})
    assert nested.options == {"date_order": "day_first"}


@pytest.mark.parametrize("path, message", [
    (("detail", "request-id"), r"the S3 'Object Created' event: detail\.request-id is missing"),
    (("detail", "object", "key"), r"detail\.object\.key is missing"),
    (("detail", "bucket"), r"detail\.bucket is missing"),
])
def test_an_incomplete_s3_event_names_the_missing_field(object_created, path, message):
    broken = copy.deepcopy(object_created)
    holder = broken
    for part in path[:-1]:
        holder = holder[part]
    del holder[path[-1]]
    with pytest.raises(InvalidRunRequest, match=message):
        parse_request(broken)
    object_created["detail"]["object"]["key"] = "incoming/export[1].csv"  # the key check holds for events too
    with pytest.raises(InvalidRunRequest, match=r"export\[1\]\.csv: the name holds \[ \]"):
        parse_request(object_created)


def test_options_ride_on_the_upload_as_percent_encoded_json_metadata(object_created):
    options = {"column_mapping": {"unit_price": "Stückpreis", "customer_id": "Kundennummer"},
               "analysis_date": "2011-12-10", "churn_horizon_days": 90, "currency": "EUR"}
    value = encode_options_metadata(options)
    assert value.isascii() and "%C3%BC" in value  # ü, encoded: S3 metadata is US-ASCII
    assert decode_options_metadata(value, "s3://raw/incoming/a.csv") == options
    request = parse_request(object_created)
    assert request.with_upload_options({OPTIONS_METADATA_KEY: value}).options == options
    # boto3 gives metadata keys in lower case; a hand-started option wins over the upload's.
    direct = parse_run_request({"bucket": "raw", "key": "incoming/a.csv", "churn_horizon_days": 30})
    merged = direct.with_upload_options({"Cdnow-Options": value}).options
    assert merged == {**options, "churn_horizon_days": 30}
    assert request.with_upload_options({}).options == {}


@pytest.mark.parametrize("value, message", [
    ("not json", r"s3://raw/incoming/a\.csv: metadata cdnow-options is not percent-encoded JSON"),
    (quote("[1, 2]"), "must be a JSON object of options"),
    (quote('{"horizon": 90}'), "unknown option.*horizon; the options are " + ", ".join(RUN_OPTIONS)),
    (quote('{"churn_horizon_days": 0}'), "metadata cdnow-options: churn_horizon_days must be a positive"),
    (quote('{"currency": "pounds"}'), "currency must be a three-letter ISO 4217 code"),
    (quote('{"analysis_date": "1998-02-30"}'), "analysis_date must be a date YYYY-MM-DD"),
    (quote('{"date_order": "ymd"}'), "date_order must be one of day_first, month_first"),
])
def test_bad_upload_options_name_the_object_and_the_option(value, message):
    with pytest.raises(InvalidRunRequest, match=message):
        decode_options_metadata(value, "s3://raw/incoming/a.csv")


def test_options_too_large_for_s3_metadata_are_refused_before_the_upload():
    mapping = {"customer_id": "x" * 3000}
    with pytest.raises(InvalidRunRequest, match="at most 2,048 bytes of metadata"):
        encode_options_metadata({"column_mapping": mapping})


@pytest.mark.parametrize("event, message", [
    ({"foo": 1}, "names no object.*bucket is missing; key is missing"),
    ({"bucket": "", "key": "incoming/a"}, "bucket: String should have at least 1 character"),
    ({"bucket": "raw", "key": "incoming/a", "churn_horizon_days": -3}, "churn_horizon_days"),
    ({"bucket": "raw", "key": "incoming/a", "analysis_date": "01/07/1998"}, "YYYY-MM-DD"),
    ({"bucket": "raw", "key": "incoming/a", "churn_label": 90}, "churn_label"),
    ({"bucket": "raw", "key": "incoming/a", "max_bad_share": 1.5}, "max_bad_share"),
    ({"bucket": "raw", "key": "incoming/export[1].csv"}, r"s3://raw/incoming/export\[1\]\.csv: .*\[ \].*file pattern"),
    # Issue 20, case 4: a colon crashed the Transform with a Java URISyntaxException.
    ({"bucket": "raw", "key": "incoming/orders 2026-12-05T10:00.csv"}, r"holds :, .*colon as a URI scheme.*rename"),
    ({"bucket": "raw", "key": "incoming/a\tb.csv"}, r"holds '\\t'"),
    ({"bucket": "raw", "key": "incoming/a", "column_mapping": {"customer_id": 3}}, "column_mapping"),
    ({"bucket": "raw", "key": "incoming/a", "date_order": "ymd"}, "run input: date_order"),
    ({"bucket": "raw", "key": "incoming/a", "currency": "€"}, "run input: currency"),
    ({"bucket": "raw", "key": "incoming/a", "margin": 0}, "run input: margin must be the share of revenue"),
    ({"bucket": "raw", "key": "incoming/a", "margin": 30}, "run input: margin .* got 30"),
    ({"bucket": "raw", "key": "incoming/a", "margin": "a third"}, "run input: margin"),
])
def test_refuses_unusable_requests(event, message):
    with pytest.raises(InvalidRunRequest, match=message):
        parse_run_request(event)


def test_layout_keeps_a_run_under_its_own_prefix():
    layout = RunLayout("curated", "r-1")
    assert layout.transactions == "s3://curated/runs/run_id=r-1/transactions/"
    assert layout.staged("churn_scores").startswith(layout.prefix)
    assert layout.published("churn_scores") == "s3://curated/tables/churn_scores/"


def test_the_transform_job_takes_the_same_date_orders_and_mapping_fields():
    """The Glue script cannot import the layer: its copies of the option values must be equal."""
    import cdnow_transform
    from cdnow.domain import runs

    assert runs.DATE_ORDERS == cdnow_transform.DATE_ORDERS
    assert runs.COLUMN_ROLES == cdnow_transform.ROLE_ALIASES
    assert runs.DEFAULT_MAX_BAD_ROW_SHARE == cdnow_transform.DEFAULT_MAX_BAD_SHARE


def test_a_delivery_belongs_to_the_dataset_folder_it_is_put_in():
    from cdnow.domain.runs import dataset_of, is_dataset_options

    assert dataset_of("incoming/CDNOW_master.txt") is None  # a world of its own, as before
    assert dataset_of("incoming/shop-eu/2011-06.csv") == "shop-eu"
    assert dataset_of("incoming/shop-eu/2011/06.csv") == "shop-eu"
    assert is_dataset_options("incoming/shop-eu/_dataset.json")
    assert not is_dataset_options("incoming/_dataset.json") and not is_dataset_options("incoming/shop-eu/a.json")
    with pytest.raises(InvalidRunRequest, match=r"the folder 'shop eu' under incoming/ names the dataset"):
        dataset_of("incoming/shop eu/a.csv")


def test_standing_options_are_checked_like_upload_options_and_the_upload_wins():
    from cdnow.domain.runs import parse_dataset_options

    standing = parse_dataset_options(b'\xef\xbb\xbf{"currency": "gbp", "churn_horizon_days": 90}', "s3://raw/x")
    assert standing == {"currency": "GBP", "churn_horizon_days": 90}
    request = parse_run_request({"bucket": "raw", "key": "incoming/shop/a.csv"})
    uploaded = request.with_upload_options({OPTIONS_METADATA_KEY: quote('{"churn_horizon_days": 30}')})
    assert uploaded.with_dataset_options(standing).options == {"currency": "GBP", "churn_horizon_days": 30}
    for body, message in [(b"{", "not a JSON object of run options"), (b"[]", "must be a JSON object"),
                          (b'{"horizon": 1}', "unknown option.*horizon"), (b'{"currency": 1}', "currency must be")]:
        with pytest.raises(InvalidRunRequest, match=f"s3://raw/incoming/shop/_dataset.json: .*{message}"):
            parse_dataset_options(body, "s3://raw/incoming/shop/_dataset.json")


def test_ingest_reads_the_execution_beside_its_input():
    event = {"id": "e-1", "time": "2026-12-05T12:00:07Z", "detail": {"bucket": {"name": "raw"}, "object": {"key": "incoming/shop/a.csv"}}}
    started = {"id": "arn:aws:states:us-east-1:123456789012:execution:m:run-1", "start_time": "2026-12-05T12:00:09.250Z"}
    run_input, execution = parse_ingest_payload({"input": event, "execution": started})
    assert run_input == event
    # The event's id (its redeliveries share it) and time order the deliveries, not the start.
    assert execution == Execution(started["id"], "e-1", "2026-12-05T12:00:07.000000Z#run-1")
    direct = {"bucket": "raw", "key": "incoming/shop/a.csv"}
    _, execution = parse_ingest_payload({"input": direct, "execution": started})
    assert execution == Execution(started["id"], None, "2026-12-05T12:00:09.250000Z#run-1")
    assert parse_ingest_payload(direct) == (direct, None)  # invoked directly: no execution
    with pytest.raises(InvalidRunRequest, match="Ingest's payload: input: Input should be a valid dictionary"):
        parse_ingest_payload({"input": "text", "execution": started})
    with pytest.raises(InvalidRunRequest, match="Ingest's payload: execution.start_time is missing"):
        parse_ingest_payload({"input": direct, "execution": {"id": started["id"]}})


def test_a_replay_names_its_dataset_and_the_customers_it_erases():
    request = parse_replay_request({"bucket": "raw", "dataset": "shop", "replay": True,
                                    "erase_customers": ["42", "7", "42"], "currency": "eur"})
    assert request == ReplayRequest("raw", "shop", ("42", "7"), {"currency": "EUR"})
    assert request.input_uri == "s3://raw/incoming/shop/"
    assert is_replay({"replay": True}) and not is_replay({"bucket": "raw", "key": "incoming/a.txt"})
    assert derive_replay_run_id("Shop EU", "arn:1").startswith("shop-eu-replay-")
    assert derive_replay_run_id("shop", "arn:1") != derive_replay_run_id("shop", "arn:2")  # each replay a run


@pytest.mark.parametrize("event, message", [
    ({"bucket": "raw", "replay": True}, "replay input: dataset is missing"),
    ({"dataset": "shop", "replay": True}, "replay input: bucket is missing"),
    ({"bucket": "raw", "dataset": "../x", "replay": True}, "names the dataset"),
    ({"bucket": "raw", "dataset": "shop", "replay": "yes"}, "replay: Input should be True, got 'yes'"),
    ({"bucket": "raw", "dataset": "shop", "replay": True, "erase_customers": "42"}, "erase_customers: Input should be a valid list"),
    ({"bucket": "raw", "dataset": "shop", "replay": True, "erase_customers": [""]}, "erase_customers holds an empty customer id"),
    ({"bucket": "raw", "dataset": "shop", "replay": True, "erase_customers": [7]}, "erase_customers.0: Input should be a valid string"),
    ({"bucket": "raw", "dataset": "shop", "replay": True, "erase_customers": ["1"] * 1001}, "erase_customers: List should have at most 1000 items"),
    ({"bucket": "raw", "dataset": "shop", "replay": True, "snapshot": True}, "not of a replay"),
    ({"bucket": "raw", "dataset": "shop", "replay": True, "churn_horizon_days": 0}, "churn_horizon_days"),
])
def test_a_bad_replay_names_the_field(event, message):
    with pytest.raises(InvalidRunRequest, match=message):
        parse_replay_request(event)


def test_a_margin_is_a_share_of_revenue():
    request = parse_run_request({"bucket": "raw", "key": "incoming/a", "margin": "0.3"})
    assert request.options == {"margin": 0.3}
    assert parse_run_request({"bucket": "raw", "key": "incoming/a", "margin": 1}).options == {"margin": 1.0}
