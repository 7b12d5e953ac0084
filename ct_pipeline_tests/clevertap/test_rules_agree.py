"""The client's local checks and the emulator's checks give the same verdict on the same records.

Every record of RECORDS goes through `validate_record` and, in one `/1/upload?dryRun=1` request,
through the emulator. Both must accept it or both refuse it, and when the client names a
CleverTap code it must be the emulator's. STRICTER lists the few rules the client adds on
purpose: CleverTap would take those records, but they are mistakes, so the client refuses them
and names no CleverTap code.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from ct_pipeline.clevertap import validate_record
from ct_pipeline.clevertap.results import SKIPPED_RECORD_NUMBER
from ct_pipeline.sandbox.credentials import (
    SANDBOX_CLEVERTAP_ACCOUNT_ID,
    SANDBOX_CLEVERTAP_PASSCODE,
)
from ct_pipeline.sandbox.server import RunningServer

TS = 1_768_469_400  # 2026-01-15 09:30 UTC
CLEVERTAP_CODE = re.compile(r"code (\d+)")


def profile(identity: object = "C-1", **data: object) -> dict:
    return {"type": "profile", "identity": identity, "ts": TS, "profileData": data}


def event(name: str = "Deal Stage Changed", **data: object) -> dict:
    return {"type": "event", "identity": "C-1", "ts": TS, "evtName": name, "evtData": data}


def envelope(**fields: object) -> dict:
    return {**profile(Name="A"), **fields}


# name -> (the emulator's code, or None when it accepts, and the record)
RECORDS: dict[str, tuple[int | None, object]] = {
    # accepted by both
    "documented profile": (
        None,
        profile(
            "1189549",
            Name="Jack Montana",
            Email="jack@example.com",
            Phone="+14155551234",
            Gender="M",
            DOB="$D_1487576752",
            **{"MSG-sms": False},
            **{"Customer Type": "Platinum"},
        ),
    ),
    "documented Charged event": (
        None,
        event("Charged", Amount=300, Items=[{"Category": "books", "Quantity": 1}]),
    ),
    "number identity": (None, profile(1189549, Name="A")),
    "objectId only": (None, {"type": "profile", "objectId": "-1a06385", "profileData": {}}),
    "FBID only": (None, {"type": "event", "FBID": "34322423", "evtName": "Viewed"}),
    "no ts": (None, {"type": "profile", "identity": "C-1", "profileData": {"Name": "A"}}),
    "every subscription flag": (
        None,
        profile(**{"MSG-push": True, "MSG-sms": False, "MSG-whatsapp": True, "MSG-email": False}),
    ),
    "standard values": (
        None,
        profile(Employed="Y", Married="N", Education="Graduate", Age=150, Photo="https://x.in/p"),
    ),
    "multi-value list": (None, profile(Tags=["gold", "emi"])),
    "$add a list": (None, profile(Tags={"$add": ["gold"]})),
    "$remove one string": (None, profile(Tags={"$remove": "gold"})),
    "CT and wzrk_ key prefixes": (None, profile(**{"CT Region": "West", "wzrk_note": "x"})),
    "120-byte profile key": (None, profile(**{"k" * 120: 1})),
    "512-byte value": (None, profile(Note="é" * 256)),
    "date in 1950": (None, profile(DOB="$D_-631152000")),
    "100 event properties": (None, event(**{f"p{n}": n for n in range(100)})),
    "App Installed is not restricted": (None, event("App Installed")),
    "profileData identity": (None, profile(identity="C-2")),
    # refused by both
    "no evtName": (509, {"type": "event", "identity": "C-1", "evtData": {}}),
    "blank evtName": (509, event("  ")),
    "restricted event": (513, event("Web Page Viewed")),
    "restricted event, other case": (513, event("app launched")),
    "restricted wzrk_d": (513, event("wzrk_d")),
    "restricted SCEnd": (513, event("SCEnd")),
    "gender not M or F": (514, profile(Gender="Male")),
    "gender as a list": (514, profile(Gender=["M"])),
    "email without a domain": (515, profile(Email="jack@")),
    "email ending in a dot": (515, profile(Email="jack@example.com.")),
    "phone without +": (516, profile(Phone="9876543210")),
    "phone with spaces": (516, profile(Phone="+91 98765 43210")),
    "phone with non-ASCII digits": (516, profile(Phone="+91\u0669\u0668\u0667\u0666\u0665\u0664")),
    "phone as a number": (516, profile(Phone=919876543210)),
    "employed not Y or N": (517, profile(Employed="yes")),
    "education unknown": (518, profile(Education="PhD")),
    "married not Y or N": (519, profile(Married="maybe")),
    "age negative": (520, profile(Age=-1)),
    "age over 150": (520, profile(Age=151)),
    "age as text": (520, profile(Age="34")),
    "101 event properties": (522, event(**{f"p{n}": n for n in range(101)})),
    "257 custom keys": (522, profile(**{f"c{n}": n for n in range(257)})),
    "no identity": (523, {"type": "profile", "ts": TS, "profileData": {}}),
    "blank identity": (523, profile("  ", Name="A")),
    "boolean identity": (523, profile(True, Name="A")),
    "float identity": (523, profile(5.5, Name="A")),
    "empty profileData identity": (523, profile(identity="")),
    "boolean profileData identity": (523, profile(identity=True)),
    "unknown type": (524, envelope(type="user")),
    "ts as an ISO string": (525, envelope(ts="2026-01-15T09:30:00Z")),
    "ts in milliseconds": (525, envelope(ts=TS * 1000)),
    "ts negative": (525, envelope(ts=-5)),
    "objectId with spaces": (526, {"type": "profile", "objectId": "a b", "profileData": {}}),
    "profileData not an object": (512, envelope(profileData=["Name"])),
    "evtData not an object": (512, {**event(), "evtData": ["a"]}),
    "object in an event": (512, event(Address={"City": "Pune"})),
    "list in an event": (512, event(Tags=["a"])),
    "Charged Items not objects": (512, event("Charged", Items=["books"])),
    "121-character event key": (512, event(**{"k" * 121: 1})),
    "121-byte profile key": (512, profile(**{"é" * 61: 1})),
    "513-byte value": (512, profile(Note="x" * 513)),
    "blank key": (512, profile(**{" ": "x"})),
    "$ key": (512, profile(**{"$Score": 1})),
    "envelope key as a property": (512, profile(objectId="x")),
    "bad $D_ date": (512, profile(Closing="$D_tomorrow")),
    "$D_ in milliseconds": (512, event(Closing="$D_1487576752000")),
    "$D_ before 1900": (512, profile(Joined="$D_-3000000000")),
    "flag not a boolean": (512, profile(**{"MSG-whatsapp": "yes"})),
    "multi-value with a number": (512, profile(Tags=["a", 1])),
    "multi-value over 100 items": (512, profile(Tags=[str(n) for n in range(101)])),
    "multi-value item over 512 bytes": (512, profile(Tags=["é" * 257])),
    "unknown operator": (512, profile(Score={"$incr": 1})),
    "Name as a list": (512, profile(Name=["Asha", "Rao"])),
    "Photo as a list": (512, profile(Photo=["https://x.in/p"])),
    "Customer Type with $add": (512, profile(**{"Customer Type": {"$add": ["Gold"]}})),
}

# name -> (why the client refuses what CleverTap takes, the record)
STRICTER: dict[str, tuple[str, object]] = {
    "ts with a fraction": ("ts is whole seconds everywhere else", envelope(ts=TS + 0.5)),
    "ts in 1990": ("a default value, not a CRM moment", envelope(ts=631_152_000)),
    "ts next week": (
        "a clock error or a wrong unit",
        envelope(ts=int(time.time()) + 7 * 86_400),
    ),
    "unknown record key": ("a typo would be dropped silently", envelope(source="CRM")),
    "device token": (
        "this client sends no tokens",
        {"type": "token", "objectId": "abc", "tokenData": {"id": "t", "type": "fcm"}},
    ),
    "profile with evtName": ("a profile/event mix-up", envelope(evtName="Signed Up")),
    "null value": ("CleverTap ignores it; leaving it out says so", profile(Name=None)),
    "DOB not a date": ("CleverTap keeps it as text, no date", profile(DOB="1990-05-17")),
    "object inside Charged Items": (
        "items hold plain properties",
        event("Charged", Items=[{"Category": {"name": "books"}}]),
    ),
}


@pytest.fixture(scope="module")
def emulator_codes(clevertap_server: RunningServer) -> dict[str, int | None]:
    """The code the emulator gives each record of RECORDS and STRICTER (None: accepted)."""
    names = [*RECORDS, *STRICTER]
    records = [RECORDS[name][1] if name in RECORDS else STRICTER[name][1] for name in names]
    with httpx.Client(base_url=clevertap_server.url, timeout=30) as http:
        http.post("/__sandbox/reset").raise_for_status()
        response = http.post(
            "/1/upload",
            params={"dryRun": 1},
            json={"d": records},
            headers={
                "X-CleverTap-Account-Id": SANDBOX_CLEVERTAP_ACCOUNT_ID,
                "X-CleverTap-Passcode": SANDBOX_CLEVERTAP_PASSCODE,
            },
        )
    response.raise_for_status()
    codes: dict[str, int | None] = dict.fromkeys(names)
    for entry in response.json()["unprocessed"]:
        position = int(SKIPPED_RECORD_NUMBER.search(entry["error"])[1]) - 1
        codes[names[position]] = entry["code"]
    return codes


@pytest.mark.parametrize(("code", "record"), RECORDS.values(), ids=list(RECORDS))
def test_the_client_and_the_emulator_agree(
    emulator_codes: dict[str, int | None], request: pytest.FixtureRequest, code, record
):
    name = request.node.callspec.id
    reason = validate_record(record)

    assert emulator_codes[name] == code, "the row no longer tests what its name says"
    assert (reason is None) == (code is None), reason
    named = CLEVERTAP_CODE.search(reason or "")
    if named is not None:
        assert int(named[1]) == code, reason


@pytest.mark.parametrize(("why", "record"), STRICTER.values(), ids=list(STRICTER))
def test_the_client_refuses_on_purpose_what_the_emulator_takes(
    emulator_codes: dict[str, int | None], request: pytest.FixtureRequest, why, record
):
    reason = validate_record(record)

    assert emulator_codes[request.node.callspec.id] is None
    assert reason is not None, why
    assert CLEVERTAP_CODE.search(reason) is None, f"claims a CleverTap code: {reason}"
