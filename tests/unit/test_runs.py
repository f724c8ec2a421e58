"""Run identity and run requests (pure logic of cdnow.domain.runs)."""

import pytest

from cdnow.domain.runs import InvalidRunRequest, RunLayout, derive_run_id, parse_run_request


def test_run_id_is_stable_per_object_version_and_readable():
    a = derive_run_id("raw", "incoming/CDNOW_master.txt", "etag1")
    assert a == derive_run_id("raw", "incoming/CDNOW_master.txt", "etag1")
    assert a.startswith("cdnow-master-")
    assert a != derive_run_id("raw", "incoming/CDNOW_master.txt", "etag2")
    assert a != derive_run_id("raw", "incoming/other/CDNOW_master.txt", "etag1")


def test_parses_eventbridge_object_created_and_direct_input():
    event = {"detail-type": "Object Created", "detail": {"bucket": {"name": "raw"}, "object": {"key": "incoming/a.txt"}}}
    assert parse_run_request(event).input_uri == "s3://raw/incoming/a.txt"
    direct = parse_run_request({"bucket": "raw", "key": "incoming/a.txt", "analysis_date": "1998-07-01", "churn_horizon_days": 90})
    assert (direct.analysis_date, direct.churn_horizon_days) == ("1998-07-01", 90)
    assert direct.churn_label is None
    label = {"feature": "recency_days", "threshold": 90}
    assert parse_run_request({"bucket": "raw", "key": "incoming/a.txt", "churn_label": label}).churn_label == label


@pytest.mark.parametrize("event, message", [
    ({"foo": 1}, "names no object"),
    ({"bucket": "raw", "key": "incoming/a", "churn_horizon_days": -3}, "churn_horizon_days"),
    ({"bucket": "raw", "key": "incoming/a", "analysis_date": "01/07/1998"}, "YYYY-MM-DD"),
    ({"bucket": "raw", "key": "incoming/a", "churn_label": 90}, "churn_label"),
    ({"bucket": "raw", "key": "incoming/a", "max_bad_share": 1.5}, "max_bad_share"),
    ({"bucket": "raw", "key": "incoming/export[1].csv"}, r"s3://raw/incoming/export\[1\]\.csv: .*file pattern"),
    ({"bucket": "raw", "key": "incoming/a", "column_mapping": {"customer_id": 3}}, "column_mapping"),
])
def test_refuses_unusable_requests(event, message):
    with pytest.raises(InvalidRunRequest, match=message):
        parse_run_request(event)


def test_layout_keeps_a_run_under_its_own_prefix():
    layout = RunLayout("curated", "r-1")
    assert layout.transactions == "s3://curated/runs/run_id=r-1/transactions/"
    assert layout.staged("churn_scores").startswith(layout.prefix)
    assert layout.published("churn_scores") == "s3://curated/tables/churn_scores/"
