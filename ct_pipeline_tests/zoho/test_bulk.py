"""Bulk Read against the emulator: jobs, pages past the per-job limit, read_all's choice."""

import itertools

import pandas as pd

from ct_pipeline.assets.zoho import ROW_HASH, with_row_hashes
from ct_pipeline.zoho.bulk import FIRST_POLL_SECONDS, download_pacer, poll_waits
from ct_pipeline_tests.zoho.conftest import CONTACT_FIELDS


def _by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("id").reset_index(drop=True)


def test_bulk_read_gives_the_records_api_shape_and_values(sandbox):
    zoho = sandbox.client()

    from_bulk = zoho.bulk_read("Contacts", CONTACT_FIELDS)
    from_records = zoho.read_records("Contacts", CONTACT_FIELDS).records

    pd.testing.assert_frame_equal(_by_id(from_bulk), _by_id(from_records))
    # So a nightly Bulk Read finds unchanged every record an incremental read stored.
    bulk_hashes = with_row_hashes(from_bulk).set_index("id")[ROW_HASH]
    record_hashes = with_row_hashes(from_records).set_index("id")[ROW_HASH]
    assert bulk_hashes.sort_index().equals(record_hashes.sort_index())


def test_bulk_read_follows_pages_past_the_per_job_limit(start_sandbox, crm):
    sandbox = start_sandbox(bulk_page_size=1_000)
    zoho = sandbox.client()

    records = zoho.bulk_read("Contacts", ["Last_Name", "Owner"])

    assert sorted(records["id"]) == sorted(crm.contacts["id"])
    assert zoho.usage()["calls"]["bulk_create"] == 3


def test_bulk_read_of_deals_flattens_contact_lookups(sandbox, crm):
    deals = sandbox.client().bulk_read("Deals", ["Deal_Name", "Contact_Name", "Amount"])

    truth = crm.deals.set_index("id")
    deal = deals.set_index("id").loc[truth.index[0]]
    assert deal["Contact_Name_id"] == truth.iloc[0]["Contact_Name.id"]
    assert deal["Contact_Name_name"] == truth.iloc[0]["Contact_Name.name"]


def test_read_all_counts_then_uses_bulk_read_above_the_threshold(sandbox, crm):
    zoho = sandbox.client(bulk_read_threshold=1_000)

    records = zoho.read_all("Contacts", CONTACT_FIELDS)

    calls = zoho.usage()["calls"]
    assert sorted(records["id"]) == sorted(crm.contacts["id"])
    assert calls["count"] == 1
    assert calls["bulk_create"] == 1
    assert "records" not in calls


def test_read_all_without_record_count_hands_over_to_bulk_read_past_the_threshold(
    start_sandbox, crm
):
    # Without Get Record Count the client reads pages until it passes the threshold (1,000
    # records: at most 6 pages) and then switches to Bulk Read.
    zoho = start_sandbox(record_count=False).client(bulk_read_threshold=1_000)

    records = zoho.read_all("Contacts", CONTACT_FIELDS)

    calls = zoho.usage()["calls"]
    assert sorted(records["id"]) == sorted(crm.contacts["id"])
    assert calls["bulk_create"] == 1
    assert calls["records"] <= 1_000 // 200 + 1


def test_read_all_uses_the_records_api_at_or_below_the_threshold(sandbox, crm):
    zoho = sandbox.client(bulk_read_threshold=len(crm.contacts))

    records = zoho.read_all("Contacts", CONTACT_FIELDS)

    assert sorted(records["id"]) == sorted(crm.contacts["id"])
    assert "bulk_create" not in zoho.usage()["calls"]


def test_status_polls_start_within_a_second_and_grow_to_the_configured_interval():
    waits = list(itertools.islice(poll_waits(10.0), 12))

    assert waits[0] == FIRST_POLL_SECONDS
    assert waits == sorted(waits)
    assert waits[-1] == 10.0
    assert list(itertools.islice(poll_waits(0.05), 3)) == [0.05, 0.05, 0.05]


def test_downloads_are_paced_to_the_per_minute_limit():
    pacer = download_pacer(per_minute=2)

    assert pacer.try_acquire("bulk_download", blocking=False)
    assert pacer.try_acquire("bulk_download", blocking=False)
    # A third download in the same minute would be answered 429: it waits instead.
    assert not pacer.try_acquire("bulk_download", blocking=False)
