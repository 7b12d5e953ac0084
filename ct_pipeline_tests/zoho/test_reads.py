"""Reads through the records API against the emulator: paging, windows, cursors, many fields."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from ct_pipeline.zoho import ZohoError, output_columns
from ct_pipeline.zoho.frames import ModuleSchema
from ct_pipeline_tests.zoho.conftest import CONTACT_FIELDS, CUSTOM_TEXT_FIELDS

FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


def _latest_modified(crm) -> datetime:
    return crm.contacts["Modified_Time"].max().floor("s").to_pydatetime()


def test_full_read_past_2000_records_returns_every_contact_once(sandbox, crm):
    read = sandbox.client().read_records("Contacts", CONTACT_FIELDS)

    assert len(crm.contacts) > 2_000
    assert sorted(read.records["id"]) == sorted(crm.contacts["id"])
    assert read.records["id"].is_unique
    assert sandbox.stats()["statuses"].get("400", 0) == 0


def test_read_values_match_the_crm_with_lookups_flattened(sandbox, crm):
    read = sandbox.client().read_records("Contacts", CONTACT_FIELDS)

    truth = crm.contacts.set_index("id")
    row = read.records.set_index("id").loc[truth.index[0]]
    expected = truth.iloc[0]
    assert row["Last_Name"] == expected["Last_Name"]
    assert row["Owner_id"] == expected["Owner.id"]
    assert row["Owner_name"] == expected["Owner.name"]
    assert row["Owner_email"] == expected["Owner.email"]
    assert row["Modified_Time"] == expected["Modified_Time"].floor("s")
    assert row["Subscription_Value_INR"] == pytest.approx(expected["Subscription_Value_INR"])


def test_columns_are_documented_and_typed(sandbox):
    zoho = sandbox.client()

    records = zoho.read_records("Contacts", CONTACT_FIELDS).records

    schema = ModuleSchema.standard("Contacts")
    assert list(records.columns) == output_columns(CONTACT_FIELDS, schema)
    assert str(records["Modified_Time"].dt.tz) == "UTC"
    assert records["id"].dtype == "str"
    assert records["App_Uninstalled"].dtype == "boolean"
    assert records["Subscription_Value_INR"].dtype == "float64"


def test_window_restarts_at_the_servers_page_token_cap(start_sandbox, crm):
    sandbox = start_sandbox(page_token_cap=1_000)

    read = sandbox.client().read_records("Contacts", CONTACT_FIELDS)

    assert sorted(read.records["id"]) == sorted(crm.contacts["id"])
    assert read.records["id"].is_unique
    # The emulator refused the chain past its cap (PAGINATION_LIMIT_EXCEEDED) and the read went on.
    assert sandbox.stats()["statuses"].get("400", 0) >= 1


def test_window_restarts_before_the_cap_when_the_client_knows_it(start_sandbox, crm):
    sandbox = start_sandbox(page_token_cap=1_000)

    read = sandbox.client(page_token_cap=1_000).read_records("Contacts", CONTACT_FIELDS)

    assert read.records["id"].nunique() == len(crm.contacts)
    assert sandbox.stats()["statuses"].get("400", 0) == 0


def test_window_that_cannot_advance_raises_instead_of_looping(start_sandbox, crm):
    sandbox = start_sandbox(page_token_cap=200)
    same_second = "2099-01-01T00:00:00+00:00"
    sandbox.upsert(
        "Contacts",
        [{"id": rid, "Modified_Time": same_second} for rid in crm.contacts["id"][:450]],
    )

    with pytest.raises(ZohoError, match="share one Modified_Time second"):
        sandbox.client(page_token_cap=200).read_records(
            "Contacts", ["Last_Name"], datetime(2098, 1, 1, tzinfo=UTC)
        )


def test_nothing_changed_gives_empty_frame_and_keeps_the_cursor(since_sandbox):
    read = since_sandbox.client().read_records("Contacts", CONTACT_FIELDS, modified_since=FUTURE)

    assert len(read.records) == 0
    assert list(read.records.columns) == output_columns(
        CONTACT_FIELDS, ModuleSchema.standard("Contacts")
    )
    assert read.cursor == FUTURE


def test_incremental_read_returns_edits_and_advances_the_cursor(since_sandbox, crm):
    sandbox = since_sandbox
    zoho = sandbox.client()
    first = zoho.read_records("Contacts", CONTACT_FIELDS)
    edited = list(crm.contacts["id"][:2])
    sandbox.upsert("Contacts", [{"id": rid, "Last_Name": "Edited"} for rid in edited])

    second = zoho.read_records("Contacts", CONTACT_FIELDS, modified_since=first.cursor)

    assert set(edited) <= set(second.records["id"])
    changed = second.records.set_index("id").loc[edited, "Last_Name"]
    assert changed.tolist() == ["Edited", "Edited"]
    assert second.cursor > first.cursor
    assert len(second.records) < len(crm.contacts)


def test_edit_in_the_same_second_as_the_cursor_is_not_lost(since_sandbox, crm):
    sandbox = since_sandbox
    zoho = sandbox.client()
    cursor_second = (_latest_modified(crm) + timedelta(days=1)).isoformat()
    first_id, second_id = crm.contacts["id"][:2]
    sandbox.upsert("Contacts", [{"id": first_id, "Modified_Time": cursor_second}])
    read = zoho.read_records("Contacts", ["Last_Name"], modified_since=_latest_modified(crm))
    assert read.cursor == datetime.fromisoformat(cursor_second)

    sandbox.upsert(
        "Contacts",
        [{"id": second_id, "Last_Name": "Later", "Modified_Time": cursor_second}],
    )
    again = zoho.read_records("Contacts", ["Last_Name"], modified_since=read.cursor)

    assert second_id in set(again.records["id"])
    assert again.records.set_index("id").loc[second_id, "Last_Name"] == "Later"


def test_a_read_reports_whether_zoho_included_the_if_modified_since_second(
    since_sandbox, since_inclusive, crm
):
    sandbox = since_sandbox
    zoho = sandbox.client()
    shared_second = _latest_modified(crm) + timedelta(days=1)
    ids = crm.contacts["id"][:3].tolist()
    sandbox.upsert("Contacts", [{"id": i, "Modified_Time": shared_second.isoformat()} for i in ids])
    after = shared_second + timedelta(seconds=1)

    # Asked from the second after, the client names the shared second in the header.
    hedged = zoho.read_records("Contacts", ["Last_Name"], modified_since=after)
    exact = zoho.read_records("Contacts", ["Last_Name"], modified_since=after, inclusive_since=True)

    assert hedged.server_inclusive == since_inclusive
    assert len(hedged.records) == len(exact.records) == 0
    assert not exact.server_inclusive
    assert hedged.cursor == exact.cursor == after


def test_more_than_fifty_fields_are_read_in_groups_and_joined_by_id(start_sandbox, wide_crm):
    sandbox = start_sandbox(wide_crm)
    custom = [f"Custom_Text_{number:02d}" for number in range(1, CUSTOM_TEXT_FIELDS + 1)]
    fields = [name for name in wide_crm.contacts.columns if name != "id" and "." not in name]
    fields = [name for name in fields if not name.startswith("_")] + ["Owner", "Account_Name"]
    assert len(fields) > 50

    records = sandbox.client().read_records("Contacts", fields).records

    assert len(records) == len(wide_crm.contacts)
    truth = wide_crm.contacts.set_index("id")
    joined = records.set_index("id").loc[truth.index]
    assert (joined[custom].to_numpy() == truth[custom].to_numpy()).all()
    assert (joined["Last_Name"].to_numpy() == truth["Last_Name"].to_numpy()).all()


def test_has_changes_is_false_until_a_record_changes(sandbox, crm):
    zoho = sandbox.client()
    cursor = zoho.read_records("Contacts", ["Last_Name"]).cursor
    calls_before = zoho.usage()["calls"]["records"]

    unchanged = zoho.has_changes("Contacts", cursor)
    sandbox.upsert("Contacts", [{"id": crm.contacts["id"][0], "Last_Name": "Moved"}])
    changed = zoho.has_changes("Contacts", cursor)

    assert (unchanged, changed) == (False, True)
    assert zoho.usage()["calls"]["records"] - calls_before == 2


def test_other_modules_flatten_their_lookups(sandbox, crm):
    zoho = sandbox.client()

    deals = zoho.read_records("Deals", ["Deal_Name", "Stage", "Contact_Name", "Amount"]).records
    cases = zoho.read_records("Cases", ["Subject", "Related_To", "Priority"]).records

    assert len(deals) == len(crm.deals) and len(cases) == len(crm.cases)
    truth = crm.deals.set_index("id")
    deal = deals.set_index("id").loc[truth.index[0]]
    assert deal["Contact_Name_id"] == truth.iloc[0]["Contact_Name.id"]
    assert deal["Contact_Name_name"] == truth.iloc[0]["Contact_Name.name"]
    assert {"Related_To_id", "Related_To_name"} <= set(cases.columns)
    assert pd.api.types.is_float_dtype(deals["Amount"])


def test_the_client_works_unchanged_on_api_version_v7(sandbox, crm):
    zoho = sandbox.client(api_version="v7", bulk_read_threshold=0)
    contact_id = crm.contacts["id"][0]
    sandbox.delete("Contacts", crm.contacts["id"][1])

    read = zoho.read_records("Contacts", CONTACT_FIELDS)
    bulk = zoho.read_all("Contacts", ["Last_Name"])
    deleted = zoho.read_deleted("Contacts", None)
    [outcome] = zoho.update_records("Contacts", [{"id": contact_id, "Lifecycle_Stage": "Churned"}])

    assert len(read.records) == len(bulk) == len(crm.contacts) - 1
    assert deleted["id"].tolist() == [crm.contacts["id"][1]]
    assert outcome.ok
    called = sandbox.stats()["calls"]
    assert {name for name in called if "/v8/" in name} == set()
    assert {
        "GET /crm/v7/settings/fields",
        "GET /crm/v7/Contacts",
        "GET /crm/v7/Contacts/actions/count",
        "POST /crm/bulk/v7/read",
        "GET /crm/v7/Contacts/deleted",
        "PUT /crm/v7/Contacts",
    } <= set(called)
