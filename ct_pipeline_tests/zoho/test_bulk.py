"""Bulk Read against the emulator: jobs, pages past the per-job limit, read_all's choice."""

import itertools

import pandas as pd
import pytest

from ct_pipeline.assets.zoho import MODULE_FIELDS, ROW_HASH, with_row_hashes
from ct_pipeline.zoho import ZohoError
from ct_pipeline.zoho.bulk import FIRST_POLL_SECONDS, download_pacer, poll_waits
from ct_pipeline_tests.zoho.conftest import CONTACT_FIELDS

# Leads carry Converted__s: Get Records leaves converted Leads out unless asked for them.
FIELDS_BY_MODULE = {"Contacts": CONTACT_FIELDS, "Leads": MODULE_FIELDS["Leads"]}


def _by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("id").reset_index(drop=True)


@pytest.mark.parametrize("module", sorted(FIELDS_BY_MODULE))
def test_bulk_read_gives_the_records_api_shape_and_values(sandbox, crm, module):
    zoho = sandbox.client()
    fields = FIELDS_BY_MODULE[module]

    from_bulk = zoho.bulk_read(module, fields)
    from_records = zoho.read_records(module, fields).records

    assert len(from_records) == len(crm.module(module))
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


def test_read_all_gives_the_same_leads_on_both_paths_converted_ones_included(sandbox, crm):
    fields = FIELDS_BY_MODULE["Leads"]

    through_bulk = sandbox.client(bulk_read_threshold=0).read_all("Leads", fields)
    through_records = sandbox.client(bulk_read_threshold=len(crm.leads)).read_all("Leads", fields)

    assert crm.leads["Converted__s"].any()
    assert sorted(through_bulk["id"]) == sorted(through_records["id"]) == sorted(crm.leads["id"])
    assert through_records["Converted__s"].sum() == crm.leads["Converted__s"].sum()


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


def test_a_failed_job_raises_naming_the_job_and_returns_no_partial_table(start_sandbox, crm):
    sandbox = start_sandbox(bulk_page_size=1_000)
    zoho = sandbox.client()
    zoho.unknown_fields("Contacts", ["Last_Name"])
    # From the first job's first status call on, the next job created fails: the second page.
    sandbox.faults(after_calls=1, bulk_job_failures=1)

    with pytest.raises(ZohoError) as raised:
        zoho.bulk_read("Contacts", ["Last_Name"])

    message = str(raised.value)
    assert "Bulk Read job" in message and "of Contacts failed in Zoho" in message
    assert "INTERNAL_ERROR" in message and "nothing of this read was kept" in message
    calls = zoho.usage()["calls"]
    assert calls["bulk_create"] == 2
    # The first page was downloaded, the failed one never was, and nothing was returned.
    assert calls["bulk_download"] == 1
    assert sandbox.stats()["faults_served"]["bulk_job_failures"] == 1


def test_job_creation_whose_answer_is_lost_is_retried_at_the_cost_of_a_second_job(sandbox, crm):
    zoho = sandbox.client()
    zoho.unknown_fields("Contacts", ["Last_Name"])
    # Zoho creates the job and charges it, but the client sees a 500.
    sandbox.faults(lost_answers=1)

    records = zoho.bulk_read("Contacts", ["Last_Name"])

    assert sorted(records["id"]) == sorted(crm.contacts["id"])
    stats = sandbox.stats()
    assert stats["faults_served"]["lost_answers"] == 1
    assert stats["calls"]["POST /crm/bulk/v8/read"] == 2
    # Two jobs were created and charged; the read itself is whole and read once.
    assert stats["credits"]["POST /crm/bulk/v8/read"] == 100
    assert zoho.usage()["calls"]["bulk_create"] == 2
