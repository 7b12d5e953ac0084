"""Record builders and the local checks that keep records CleverTap would refuse from being sent."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ct_pipeline.clevertap import (
    build_event_record,
    build_profile_record,
    clevertap_date,
    epoch_seconds,
    validate_record,
)
from ct_pipeline.clevertap.payloads import build_profile_records

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NOW_TS = int(NOW.timestamp())


def profile(**profile_data: object) -> dict:
    """A valid profile record carrying `profile_data`."""
    return build_profile_record("+919876543210", profile_data, NOW)


def event(name: str = "Deal Stage Changed", **event_data: object) -> dict:
    """A valid event record carrying `event_data`."""
    return build_event_record("+919876543210", name, event_data, NOW)


def reason(record: dict) -> str | None:
    """The local rejection reason for `record`, judged at NOW."""
    return validate_record(record, now=NOW_TS)


def test_profile_record_has_the_documented_shape():
    record = build_profile_record("C-1", {"Name": "Asha Rao", "Customer Type": "Gold"}, NOW)

    assert record == {
        "type": "profile",
        "identity": "C-1",
        "ts": NOW_TS,
        "profileData": {"Name": "Asha Rao", "Customer Type": "Gold"},
    }
    assert reason(record) is None


def test_event_record_has_the_documented_shape():
    record = build_event_record("C-1", "Deal Stage Changed", {"stage_name": "Won"}, NOW_TS)

    assert record == {
        "type": "event",
        "identity": "C-1",
        "ts": NOW_TS,
        "evtName": "Deal Stage Changed",
        "evtData": {"stage_name": "Won"},
    }
    assert reason(record) is None


def test_datetimes_and_dates_become_clevertap_dates():
    moment = datetime(2024, 2, 29, 10, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))

    record = profile(DOB=date(1990, 5, 17), Last_Seen=moment, Renewal=pd.Timestamp(moment))

    assert (
        record["profileData"]["DOB"] == f"$D_{int(datetime(1990, 5, 17, tzinfo=UTC).timestamp())}"
    )
    assert record["profileData"]["Last_Seen"] == f"$D_{int(moment.timestamp())}"
    assert record["profileData"]["Renewal"] == record["profileData"]["Last_Seen"]
    assert reason(record) is None


def test_missing_values_are_left_out_of_the_record():
    record = profile(Name="Asha", City=None, Score=float("nan"), Tier=pd.NA, Seen=pd.NaT)

    assert record["profileData"] == {"Name": "Asha"}


def test_numpy_values_become_plain_json_values():
    record = event(amount=np.float64(1500.5), units=np.int64(3), paid=np.bool_(True))

    assert record["evtData"] == {"amount": 1500.5, "units": 3, "paid": True}
    assert type(record["evtData"]["units"]) is int
    assert reason(record) is None


def test_timestamp_is_whole_epoch_seconds():
    assert epoch_seconds(datetime(2026, 1, 1, tzinfo=UTC)) == 1_767_225_600
    assert epoch_seconds(1_767_225_600.9) == 1_767_225_600


def test_naive_datetime_is_refused_at_build_time():
    with pytest.raises(ValueError, match="timezone-aware"):
        build_profile_record("C-1", {}, datetime(2026, 1, 1))


def test_clevertap_date_of_a_bare_date_is_midnight_utc():
    assert clevertap_date(date(2026, 1, 1)) == "$D_1767225600"


def test_phone_must_be_international_form():
    assert reason(profile(Phone="+919876543210")) is None
    for bad in ("9876543210", "+91 98765 43210", "+0919876543210", "+91-9876543210"):
        problem = reason(profile(Phone=bad))
        assert problem is not None and "516" in problem


def test_rejection_reason_never_contains_the_phone_number():
    problem = reason(profile(Phone="98765 43210"))

    assert problem is not None
    assert "98765" not in problem and "43210" not in problem


def test_invalid_email_is_rejected_without_echoing_it():
    problem = reason(profile(Email="asha.rao@@mail"))

    assert problem is not None and "515" in problem
    assert "asha" not in problem


def test_subscription_flags_must_be_booleans():
    flags = {"MSG-push": True, "MSG-sms": False, "MSG-whatsapp": True, "MSG-email": False}
    assert reason(profile(**flags)) is None

    for flag in flags:
        problem = reason(profile(**{flag: "yes"}))
        assert problem is not None and flag in problem


def test_standard_keys_only_take_documented_values():
    assert reason(profile(Gender="F", Employed="Y", Married="N", Education="Graduate")) is None
    assert reason(profile(Age=34)) is None
    assert "Gender" in reason(profile(Gender="female"))
    assert "Age" in reason(profile(Age="34"))
    assert "Education" in reason(profile(Education="PhD"))


def test_dob_must_be_a_clevertap_date():
    assert "DOB" in reason(profile(DOB="1990-05-17"))
    assert reason(profile(DOB="$D_-631152000")) is None
    # Milliseconds, or before 1900: a wrong unit or a typo.
    assert "DOB" in reason(profile(DOB="$D_631152000000"))
    assert "DOB" in reason(profile(DOB="$D_-3000000000"))


def test_standard_keys_hold_one_value():
    for key in ("Name", "Photo", "Customer Type", "Gender", "Phone", "MSG-sms", "identity"):
        for value in (["a"], {"$add": ["a"]}):
            problem = reason(profile(**{key: value}))
            assert problem is not None and "holds one value" in problem


def test_identity_in_profile_data_is_a_non_empty_string_or_number():
    assert reason(profile(identity="C-7")) is None
    assert reason(profile(identity=7)) is None
    for bad in ("", True, 7.5):
        assert "523" in reason(profile(identity=bad))


def test_phone_digits_are_ascii():
    assert "516" in reason(profile(Phone="+91\u0669\u0668\u0667\u0666\u0665\u0664\u0663\u0662"))


def test_object_id_must_look_like_a_clevertap_id():
    record = build_profile_record(None, {"Name": "Asha"}, NOW)

    assert "526" in reason({**record, "objectId": "not an id"})


def test_key_longer_than_120_bytes_is_rejected():
    assert reason(profile(**{"k" * 120: 1})) is None
    assert "120 bytes" in reason(profile(**{"k" * 121: 1}))
    # Multi-byte characters count by bytes for profile keys.
    assert "120 bytes" in reason(profile(**{"é" * 61: 1}))


def test_event_key_longer_than_120_characters_is_rejected():
    assert reason(event(**{"é" * 120: 1})) is None
    assert "120 characters" in reason(event(**{"k" * 121: 1}))


def test_value_longer_than_512_bytes_is_rejected():
    assert reason(profile(Notes="x" * 512)) is None
    assert "512 bytes" in reason(profile(Notes="x" * 513))
    assert "512 bytes" in reason(event(note="x" * 513))


def test_more_than_256_custom_profile_keys_is_rejected():
    standard = {"Name": "Asha", "Email": "asha@example.com", "Phone": "+919876543210"}
    assert reason(profile(**standard, **{f"custom_{i}": i for i in range(256)})) is None

    problem = reason(profile(**standard, **{f"custom_{i}": i for i in range(257)}))
    assert problem is not None and "257 custom keys" in problem


def test_more_event_properties_than_the_default_limit_is_rejected():
    assert reason(event(**{f"p{i}": i for i in range(100)})) is None
    assert "522" in reason(event(**{f"p{i}": i for i in range(101)}))


def test_only_the_dollar_key_prefix_is_reserved():
    problem = reason(profile(**{"$price": "x"}))
    assert problem is not None and "starts with $" in problem
    # CleverTap's own properties use these prefixes, but it publishes no rule against them.
    assert reason(profile(**{"CT Source": "x", "wzrk_id": "y"})) is None


def test_record_envelope_keys_are_reserved_as_property_keys():
    assert "reserved" in reason(profile(objectId="x"))
    assert "reserved" in reason(event(ts=1))


def test_missing_identity_is_rejected():
    record = build_profile_record(None, {"Name": "Asha"}, NOW)

    assert "523" in reason(record)
    assert "523" in reason({**record, "identity": "  "})


def test_object_id_is_an_identity():
    record = build_profile_record(None, {"Name": "Asha"}, NOW)

    assert reason({**record, "objectId": "-1a063854f83a4c6484285039ecff87cb"}) is None


def test_missing_event_name_is_rejected():
    assert "509" in reason(event(name=""))
    record = event()
    del record["evtName"]
    assert "509" in reason(record)


def test_restricted_system_event_is_rejected_whatever_its_case():
    for name in ("Web Page Viewed", "App Launched", "app launched", "wzrk_d", "SCOutgoing"):
        assert "513" in reason(event(name=name))
    assert reason(event(name="App Installed")) is None


def test_timestamp_must_be_sane_epoch_seconds():
    record = profile(Name="Asha")

    assert "525" in reason({**record, "ts": NOW_TS * 1000})
    assert "525" in reason({**record, "ts": "2026-06-01T12:00:00Z"})
    assert "525" in reason({**record, "ts": -1})
    # CleverTap would take these; they are refused here as mistakes, naming no CleverTap code.
    assert "before 2000" in reason({**record, "ts": 86_400})
    assert "whole epoch seconds" in reason({**record, "ts": float(NOW_TS)})
    assert "future" in reason({**record, "ts": NOW_TS + 2 * 86_400})
    assert reason({**record, "ts": NOW_TS + 3600}) is None


def test_timestamp_may_be_left_out():
    record = profile(Name="Asha")
    del record["ts"]

    assert reason(record) is None


def test_unknown_record_type_and_keys_are_rejected():
    record = profile(Name="Asha")

    assert "524" in reason({**record, "type": "user"})
    assert "not device tokens" in reason({**record, "type": "token"})
    assert "unknown record key 'source'" in reason({**record, "source": "Segment"})


def test_nested_object_values_are_rejected_except_multi_value_operations():
    assert reason(profile(Stuff={"$add": ["bag", "shoes"]})) is None
    assert reason(profile(Stuff={"$remove": "bag"})) is None
    assert reason(profile(Stuff=["bag", "shoes"])) is None
    assert "512 bytes" in reason(profile(Stuff=["é" * 257]))
    assert "is an object" in reason(profile(Address={"city": "Pune"}))
    assert "at most 100" in reason(profile(Stuff=[str(i) for i in range(101)]))
    assert "is a list" in reason(event(items=["a", "b"]))


def test_charged_event_may_carry_items():
    items = [{"Category": "books", "Quantity": 1}]

    assert reason(event("Charged", Amount=300, Items=items)) is None
    assert "list of objects" in reason(event("Charged", Items="books"))


def test_non_finite_numbers_are_rejected():
    record = profile(Name="Asha")
    record["profileData"]["Score"] = float("inf")

    assert "finite" in reason(record)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.text(max_size=8)),
            st.one_of(st.none(), st.floats(allow_infinity=False)),
            st.one_of(st.none(), st.integers(-(2**40), 2**40)),
            st.one_of(st.none(), st.booleans()),
            st.one_of(
                st.none(),
                st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)).map(
                    lambda moment: moment.replace(tzinfo=UTC)
                ),
            ),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_profile_records_built_by_column_equal_those_built_one_by_one(rows):
    names, amounts, counts, flags, moments = zip(*rows, strict=True)
    frame = pd.DataFrame(
        {
            "Name": pd.Series(names, dtype="str"),
            "value_inr": pd.Series(amounts, dtype="float64"),
            "count": pd.array(counts, dtype="Int64"),
            "flag": pd.array(flags, dtype="boolean"),
            "DOB": pd.to_datetime(pd.Series(moments, dtype="object"), utc=True),
        }
    )
    modified = frame["DOB"]
    identities = [f"+9198765{index:05d}" for index in range(len(frame))]

    built = build_profile_records(identities, frame, modified)

    for index, record in enumerate(built):
        present = {key: value for key, value in frame.iloc[index].items() if not pd.isna(value)}
        moment = modified.iloc[index]
        expected = build_profile_record(
            identities[index], present, NOW if pd.isna(moment) else moment.to_pydatetime()
        )
        if pd.isna(moment):
            # A missing time becomes the time of building, in both.
            expected["ts"] = record["ts"]
        assert record == expected
