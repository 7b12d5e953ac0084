"""Deleted records against the emulator."""

from datetime import UTC, datetime, timedelta

from ct_pipeline.zoho import DELETED_COLUMNS


def test_deleted_records_since_a_cursor_are_listed_with_documented_columns(since_sandbox, crm):
    sandbox = since_sandbox
    zoho = sandbox.client()
    before = datetime.now(UTC) - timedelta(seconds=1)
    gone = list(crm.contacts["id"][:3])
    for record_id in gone:
        sandbox.delete("Contacts", record_id)

    deleted = zoho.read_deleted("Contacts", before)

    assert list(deleted.columns) == list(DELETED_COLUMNS)
    assert sorted(deleted["id"]) == sorted(gone)
    assert (deleted["deleted_time"] >= before.replace(microsecond=0)).all()
    assert str(deleted["deleted_time"].dt.tz) == "UTC"


def test_deletions_before_the_cursor_are_left_out(since_sandbox, crm):
    sandbox = since_sandbox
    zoho = sandbox.client()
    sandbox.delete("Contacts", crm.contacts["id"][0])

    later = zoho.read_deleted("Contacts", datetime.now(UTC) + timedelta(minutes=5))

    assert len(later) == 0
    assert list(later.columns) == list(DELETED_COLUMNS)


def test_deleted_record_leaves_the_full_read(sandbox, crm):
    zoho = sandbox.client()
    gone = crm.contacts["id"][0]
    sandbox.delete("Contacts", gone)

    records = zoho.read_records("Contacts", ["Last_Name"]).records

    assert gone not in set(records["id"])
    assert len(records) == len(crm.contacts) - 1


def test_more_than_2000_deletions_since_the_cursor_are_all_listed(sandbox, crm):
    zoho = sandbox.client()
    before = datetime.now(UTC) - timedelta(seconds=1)
    gone = crm.contacts["id"][:2_100].tolist()
    sandbox.delete_many("Contacts", gone)

    deleted = zoho.read_deleted("Contacts", before)

    assert sorted(deleted["id"]) == sorted(gone)
    # The listing has no page token: pages 11 and 12 are asked for by `page`, as documented.
    assert zoho.usage()["calls"]["deleted"] == 11
    assert sandbox.stats()["statuses"].get("400", 0) == 0
