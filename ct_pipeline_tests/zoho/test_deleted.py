"""Deleted records against the emulator."""

from datetime import UTC, datetime, timedelta

from ct_pipeline.zoho import DELETED_COLUMNS


def test_deleted_records_since_a_cursor_are_listed_with_documented_columns(sandbox, crm):
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


def test_deletions_before_the_cursor_are_left_out(sandbox, crm):
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
