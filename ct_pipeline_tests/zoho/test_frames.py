"""The DataFrame shape of Zoho records: flattened lookups, UTC datetimes, string ids."""

import pandas as pd

from ct_pipeline.zoho.bulk import bulk_query_fields, lookup_columns
from ct_pipeline.zoho.frames import (
    ModuleSchema,
    csv_frame,
    deleted_frame,
    empty_frame,
    output_columns,
    records_frame,
)

FIELDS = ["Last_Name", "Owner", "Account_Name", "Modified_Time", "Email_Opt_Out", "Date_of_Birth"]
RECORD = {
    "id": "5725767000000411001",
    "Last_Name": "Iyer",
    "Owner": {"id": "5725767000000235011", "name": "Asha Rao", "email": "asha@example.com"},
    "Account_Name": {"id": "5725767000000311001", "name": "Zylker"},
    "Modified_Time": "2024-03-01T10:15:30+05:30",
    "Email_Opt_Out": False,
    "Date_of_Birth": "1990-02-01",
}
CONTACTS = ModuleSchema.standard("Contacts")


def test_lookups_flatten_to_id_and_name_and_owner_keeps_email():
    frame = records_frame([RECORD], FIELDS, CONTACTS)

    row = frame.iloc[0]
    assert row["Owner_id"] == "5725767000000235011"
    assert row["Owner_name"] == "Asha Rao"
    assert row["Owner_email"] == "asha@example.com"
    assert row["Account_Name_id"] == "5725767000000311001"
    assert row["Account_Name_name"] == "Zylker"
    assert "Owner" not in frame.columns


def test_columns_are_id_then_requested_fields_in_order():
    frame = records_frame([RECORD], FIELDS, CONTACTS)

    assert list(frame.columns) == [
        "id",
        "Last_Name",
        "Owner_id",
        "Owner_name",
        "Owner_email",
        "Account_Name_id",
        "Account_Name_name",
        "Modified_Time",
        "Email_Opt_Out",
        "Date_of_Birth",
    ]


def test_datetimes_become_utc_and_dates_stay_iso_strings():
    frame = records_frame([RECORD], FIELDS, CONTACTS)

    assert frame["Modified_Time"].iloc[0] == pd.Timestamp("2024-03-01T04:45:30Z")
    assert str(frame["Modified_Time"].dt.tz) == "UTC"
    assert frame["Date_of_Birth"].iloc[0] == "1990-02-01"


def test_ids_stay_exact_strings():
    frame = records_frame([RECORD], FIELDS, CONTACTS)

    assert frame["id"].iloc[0] == "5725767000000411001"
    assert frame["id"].dtype == "str"


def test_null_lookup_gives_null_id_and_name():
    frame = records_frame([{**RECORD, "Account_Name": None}], FIELDS, CONTACTS)

    assert frame["Account_Name_id"].isna().all()
    assert frame["Account_Name_name"].isna().all()


def test_empty_read_has_the_same_columns_and_dtypes_as_a_full_one():
    full = records_frame([RECORD], FIELDS, CONTACTS)
    empty = empty_frame(FIELDS, CONTACTS)

    assert len(empty) == 0
    assert list(empty.columns) == list(full.columns) == output_columns(FIELDS, CONTACTS)
    assert empty.dtypes.to_dict() == full.dtypes.to_dict()


def test_metadata_types_custom_fields():
    schema = ModuleSchema.from_fields_metadata(
        "Contacts",
        [
            {"api_name": "Subscription_Value_INR", "data_type": "currency"},
            {"api_name": "App_Uninstalled", "data_type": "boolean"},
            {"api_name": "Partner", "data_type": "lookup"},
        ],
    )
    record = {"id": "1", "Subscription_Value_INR": 499, "App_Uninstalled": None, "Partner": None}

    fields = ["Subscription_Value_INR", "App_Uninstalled", "Partner"]

    frame = records_frame([record], fields, schema)

    assert frame["Subscription_Value_INR"].dtype == "float64"
    assert frame["App_Uninstalled"].dtype == "boolean"
    assert list(frame.columns[-2:]) == ["Partner_id", "Partner_name"]


def test_unknown_object_field_is_still_flattened():
    record = {"id": "1", "Partner": {"id": "9", "name": "Acme"}}

    frame = records_frame([record], ["Partner"], ModuleSchema.standard("Contacts"))

    assert frame[["Partner_id", "Partner_name"]].iloc[0].tolist() == ["9", "Acme"]


def test_bulk_csv_parses_into_the_records_api_shape():
    header = bulk_query_fields(["id", *FIELDS], CONTACTS)
    table = pd.DataFrame(
        [
            {
                "id": "5725767000000411001",
                "Last_Name": "Iyer",
                "Owner": "5725767000000235011",
                "Owner.full_name": "Asha Rao",
                "Owner.email": "asha@example.com",
                "Account_Name": "5725767000000311001",
                "Account_Name.Account_Name": "Zylker",
                "Modified_Time": "2024-03-01T10:15:30+05:30",
                "Email_Opt_Out": "false",
                "Date_of_Birth": "1990-02-01",
            }
        ],
        dtype="str",
    )
    assert set(table.columns) <= {"id", *header}

    from_csv = csv_frame(table, FIELDS, CONTACTS, lookup_columns(FIELDS, CONTACTS, table.columns))
    from_json = records_frame([RECORD], FIELDS, CONTACTS)

    pd.testing.assert_frame_equal(from_csv, from_json)


def test_deleted_entries_have_documented_columns():
    frame = deleted_frame(
        [
            {
                "id": "1",
                "display_name": "Ravi",
                "type": "recycle",
                "deleted_by": {"id": "7", "name": "Asha"},
                "created_by": None,
                "deleted_time": "2024-03-01T10:00:00+05:30",
            }
        ]
    )

    assert list(frame.columns) == list(deleted_frame([]).columns)
    assert frame["deleted_time"].iloc[0] == pd.Timestamp("2024-03-01T04:30:00Z")
    assert frame["deleted_by_id"].iloc[0] == "7"
    assert frame["created_by_id"].isna().all()
