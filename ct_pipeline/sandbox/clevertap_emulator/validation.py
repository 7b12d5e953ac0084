"""Per-record checks of `/1/upload`, answering with CleverTap's documented rejection codes.

CleverTap accepts a valid request with HTTP 200 and lists each record it refused in
`unprocessed`, with a numeric code and a message of the form
`"<what>. ErrorCode: <code> - <why>. Skipped record number : <1-based index>"`
(developer.clevertap.com/docs/api-errors; a real production body quoted in
rudderlabs/rudder-server `error_extractor_test.go`).

CleverTap documents codes for identity, type, timestamp, event name and the standard profile
fields, but none for its key and value limits, reserved keys or malformed values such as a bad
`$D_` date. For those the emulator answers 512 ("invalid structure") and 522 (too many
properties) and says in the message which key broke which rule; the key is named, its value
never is (values are personal data).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

# Limits from developer.clevertap.com upload-user-profiles-api and upload-events-api:
# profile keys 120 bytes, event keys 120 characters, values 512 bytes, 256 custom profile keys.
MAX_KEY_BYTES = 120
MAX_VALUE_BYTES = 512
MAX_CUSTOM_PROFILE_KEYS = 256
# upload-events-api (2026-06 revision): 100 properties per event by default, configurable per
# account; older revisions said 256.
DEFAULT_MAX_EVENT_PROPERTIES = 100
# docs.clevertap.com platform-considerations: a multi-value property holds at most 100 strings.
MAX_MULTI_VALUE_ITEMS = 100
# `ts` is UNIX epoch seconds; a value past 10**10 (year 2286) is milliseconds sent by mistake.
MAX_EPOCH_SECONDS = 10**10
# `$D_` dates before 1900 are taken for a wrong unit or a typo.
MIN_DATE_EPOCH_SECONDS = -2_208_988_800

# Below these lengths a key or string value cannot break the byte limits (4 bytes a character).
SHORT_KEY_CHARS = MAX_KEY_BYTES // 4
SHORT_VALUE_CHARS = MAX_VALUE_BYTES // 4
PLAIN_SCALAR_TYPES = frozenset({int, float, bool, type(None)})

RECORD_TYPES = frozenset({"profile", "event", "token"})
IDENTITY_KEYS = ("identity", "objectId", "FBID", "GPID")
DATE_PREFIX = "$D_"
MULTI_VALUE_OPERATORS = frozenset({"$add", "$remove"})
SUBSCRIPTION_FLAGS = frozenset({"MSG-email", "MSG-push", "MSG-sms", "MSG-whatsapp"})
STANDARD_PROFILE_KEYS = frozenset(
    {
        "Name",
        "Email",
        "Phone",
        "Gender",
        "DOB",
        "Age",
        "Employed",
        "Education",
        "Married",
        "Photo",
        "Customer Type",
        "identity",
        *SUBSCRIPTION_FLAGS,
    }
)
# No list of reserved property keys is published; the emulator reserves the record envelope's
# own keys and the `$` prefix that CleverTap uses for operators and dates.
RESERVED_PROPERTY_KEYS = frozenset(
    {"objectId", "FBID", "GPID", "type", "ts", "evtName", "evtData", "profileData", "tokenData"}
)
# System events an API caller may not raise (code 513), matched ignoring case. "Web Page Viewed"
# is the one seen rejected in production (rudder-server sample); the rest are the names
# CleverTap's Android SDK refuses (clevertap-android-sdk ValidationConfig).
RESTRICTED_EVENT_NAMES = frozenset(
    {
        "App Launched",
        "App Uninstalled",
        "Notification Sent",
        "Notification Viewed",
        "Notification Clicked",
        "Notification Bounced",
        "UTM Visited",
        "Stayed",
        "Geocluster Entered",
        "Geocluster Exited",
        "SCOutgoing",
        "SCIncoming",
        "SCEnd",
        "SCCampaignOptOut",
        "wzrk_d",
        "Web Page Viewed",
    }
)
RESTRICTED_EVENT_NAMES_FOLDED = frozenset(name.casefold() for name in RESTRICTED_EVENT_NAMES)
TOKEN_TYPES = frozenset({"fcm", "apns", "gcm", "wns", "mpns", "chrome"})
CHARGED_EVENT = "Charged"
CHARGED_ITEMS_KEY = "Items"

GENDERS = frozenset({"M", "F"})
YES_NO = frozenset({"Y", "N"})
EDUCATION_LEVELS = frozenset({"School", "College", "Graduate"})
MAX_AGE = 150

E164_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
OBJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
DATE_DIGITS = re.compile(r"-?[0-9]{1,11}")

# code -> (what was wrong, the documented description)
REJECTION_TEXT: dict[int, tuple[str, str]] = {
    509: ("Event Name is incorrect", "Event name is mandatory"),
    512: ("Record structure is incorrect", "Invalid event structure"),
    513: ("Event Name is incorrect", "Trying to raise a restricted system event"),
    514: ("Gender is incorrect", "Gender invalid"),
    515: ("Email is incorrect", "Email invalid"),
    516: ("Phone is incorrect", "Phone number invalid"),
    517: ("Employed is incorrect", "Employment status invalid"),
    518: ("Education is incorrect", "Education status invalid"),
    519: ("Married is incorrect", "Marital status invalid"),
    520: ("Age is incorrect", "Age invalid"),
    522: ("Properties are incorrect", "Properties limit exceeded"),
    523: ("Identity is incorrect", "Identity is mandatory"),
    524: ("Record type is incorrect", "Data is neither event nor profile"),
    525: ("Timestamp is incorrect", "Timestamp is not in UNIX epoch format"),
    526: ("Identity is incorrect", "objectId invalid"),
    528: ("Event Name is incorrect", "Discarded event is raised"),
    530: ("Token is incorrect", "Invalid 'objectId'"),
    531: ("Token is incorrect", "Invalid token data"),
    532: ("Token is incorrect", "Token 'id' is not present"),
    533: ("Token is incorrect", "Token 'type' is not present"),
    534: ("Token is incorrect", "Token 'type' is not valid for 'objectId'"),
    535: ("Token is incorrect", "Invalid token data"),
    555: ("Server error", "Miscellaneous server error"),
}


@dataclass(frozen=True)
class Rejection:
    """Why CleverTap would refuse one record: its code and, optionally, a precise reason."""

    code: int
    detail: str | None = None

    def message(self, index: int) -> str:
        """The `error` text for the record at 0-based `index`, in CleverTap's format."""
        what, why = REJECTION_TEXT.get(self.code, ("Record is incorrect", "Record rejected"))
        return (
            f"{what}. ErrorCode: {self.code} - {self.detail or why}. "
            f"Skipped record number : {index + 1}"
        )


ValueCheck = Callable[[object], "Rejection | None"]


class RecordValidator:
    """Checks upload records against the documented rules; holds the account's settings."""

    def __init__(
        self,
        *,
        max_event_properties: int = DEFAULT_MAX_EVENT_PROPERTIES,
        discarded_events: Collection[str] = (),
    ) -> None:
        self.max_event_properties = max_event_properties
        self.discarded_events = frozenset(discarded_events)

    def check(self, record: object) -> Rejection | None:
        """The reason `record` would be refused, or None when CleverTap would accept it."""
        if not isinstance(record, dict):
            return Rejection(524)
        record_type = record.get("type")
        if not isinstance(record_type, str) or record_type not in RECORD_TYPES:
            return Rejection(524)
        if record_type == "token":
            return _check_token(record)

        rejection = _check_identity(record) or _check_timestamp(record)
        if rejection:
            return rejection
        if record_type == "event":
            return self._check_event(record)
        return _check_profile(record)

    def _check_event(self, record: dict) -> Rejection | None:
        name = record.get("evtName")
        if not isinstance(name, str) or not name.strip():
            return Rejection(509)
        if name.casefold() in RESTRICTED_EVENT_NAMES_FOLDED:
            return Rejection(513)
        if name in self.discarded_events:
            return Rejection(528)

        properties = record.get("evtData", {})
        if not isinstance(properties, dict):
            return Rejection(512, "evtData must be a JSON object")
        if len(properties) > self.max_event_properties:
            return Rejection(
                522,
                f"an event carries at most {self.max_event_properties} properties, "
                f"this one has {len(properties)}",
            )
        for key, value in properties.items():
            if _plainly_valid(key, value):
                continue
            rejection = _check_key(key, character_limit=True) or _check_event_value(
                name, key, value
            )
            if rejection:
                return rejection
        return None


def _check_identity(record: dict) -> Rejection | None:
    present = [key for key in IDENTITY_KEYS if _given(record.get(key))]
    if not present:
        return Rejection(523)
    for key in present:
        value = record[key]
        if key == "objectId":
            if not isinstance(value, str) or not OBJECT_ID.fullmatch(value):
                return Rejection(526)
        elif isinstance(value, bool) or not isinstance(value, str | int):
            return Rejection(523, f"{key} must be a string or a number")
    return None


def _given(value: object) -> bool:
    # A blank string names nobody: it counts as no identity at all.
    return value is not None and not (isinstance(value, str) and not value.strip())


def _check_timestamp(record: dict) -> Rejection | None:
    if "ts" not in record:
        return None
    ts = record["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not 0 < ts < MAX_EPOCH_SECONDS:
        return Rejection(525)
    return None


def _check_profile(record: dict) -> Rejection | None:
    profile_data = record.get("profileData")
    if not isinstance(profile_data, dict):
        return Rejection(512, "profileData must be a JSON object")

    custom_keys = 0
    for key, value in profile_data.items():
        if key in STANDARD_PROFILE_KEYS:
            rejection = STANDARD_VALUE_CHECKS[key](value)
        elif _plainly_valid(key, value):
            custom_keys += 1
            continue
        else:
            custom_keys += 1
            rejection = _check_key(key, character_limit=False) or _check_custom_value(key, value)
        if rejection:
            return rejection
    if custom_keys > MAX_CUSTOM_PROFILE_KEYS:
        return too_many_custom_keys(custom_keys)
    return None


def _plainly_valid(key: str, value: object) -> bool:
    # The common case, decided without encoding anything: a short ordinary key with a number,
    # a boolean or a short string that is not a date. Anything else takes the full checks.
    if (
        not 0 < len(key) <= SHORT_KEY_CHARS
        or key[0] == "$"
        or key in RESERVED_PROPERTY_KEYS
        or key.isspace()
    ):
        return False
    kind = value.__class__
    if kind is str:
        return len(value) <= SHORT_VALUE_CHARS and not value.startswith(DATE_PREFIX)
    return kind in PLAIN_SCALAR_TYPES


def too_many_custom_keys(count: int) -> Rejection:
    """The rejection for a profile that would hold `count` custom keys, over the limit."""
    return Rejection(
        522,
        f"a profile holds at most {MAX_CUSTOM_PROFILE_KEYS} custom keys, this one would hold "
        f"{count}",
    )


def _check_key(key: str, *, character_limit: bool) -> Rejection | None:
    if not key.strip() or key.startswith("$") or key in RESERVED_PROPERTY_KEYS:
        return Rejection(512, f"property key '{key[:MAX_KEY_BYTES]}' is reserved or blank")
    too_long = len(key) > MAX_KEY_BYTES if character_limit else _longer_than(key, MAX_KEY_BYTES)
    if too_long:
        return Rejection(512, f"property key '{key[:40]}...' is longer than {MAX_KEY_BYTES}")
    return None


def _check_custom_value(key: str, value: object) -> Rejection | None:
    if isinstance(value, dict):
        return _check_multi_value_operation(key, value)
    if isinstance(value, list):
        return _check_multi_value(key, value)
    return _check_scalar(key, value)


def _check_event_value(event_name: str, key: str, value: object) -> Rejection | None:
    if isinstance(value, dict | list):
        # Charged's Items array of objects is the one nested structure events may carry.
        if (
            event_name == CHARGED_EVENT
            and key == CHARGED_ITEMS_KEY
            and isinstance(value, list)
            and all(isinstance(item, dict) for item in value)
        ):
            return None
        return Rejection(512, f"event property '{key}' must not be an object or an array")
    return _check_scalar(key, value)


def _check_scalar(key: str, value: object) -> Rejection | None:
    if isinstance(value, str):
        if _longer_than(value, MAX_VALUE_BYTES):
            return Rejection(512, f"value of '{key}' is longer than {MAX_VALUE_BYTES} bytes")
        if value.startswith(DATE_PREFIX) and parse_date(value) is None:
            return Rejection(
                512, f"value of '{key}' is not a date: use $D_ and the epoch in seconds"
            )
    return None


def _check_multi_value(key: str, values: list) -> Rejection | None:
    if len(values) > MAX_MULTI_VALUE_ITEMS:
        return Rejection(512, f"multi-value '{key}' holds more than {MAX_MULTI_VALUE_ITEMS} items")
    for item in values:
        if not isinstance(item, str):
            return Rejection(512, f"multi-value '{key}' must hold strings only")
        if _longer_than(item, MAX_VALUE_BYTES):
            return Rejection(
                512, f"an item of multi-value '{key}' is longer than {MAX_VALUE_BYTES} bytes"
            )
    return None


def _check_multi_value_operation(key: str, operation: dict) -> Rejection | None:
    if len(operation) != 1 or next(iter(operation)) not in MULTI_VALUE_OPERATORS:
        return Rejection(
            512, f'object value of \'{key}\' must be {{"$add": [...]}} or {{"$remove": [...]}}'
        )
    operand = next(iter(operation.values()))
    if isinstance(operand, str):
        operand = [operand]
    if not isinstance(operand, list):
        return Rejection(512, f"operand of '{key}' must be a string or a list of strings")
    return _check_multi_value(key, operand)


def _check_phone(value: object) -> Rejection | None:
    if isinstance(value, str) and E164_PHONE.fullmatch(value):
        return None
    return Rejection(516, "Phone must be +<country code><number>")


def _check_email(value: object) -> Rejection | None:
    if isinstance(value, str) and EMAIL.fullmatch(value):
        return None
    return Rejection(515)


def _one_of(code: int, allowed: frozenset[str]) -> ValueCheck:
    def check(value: object) -> Rejection | None:
        return None if isinstance(value, str) and value in allowed else Rejection(code)

    return check


def _check_age(value: object) -> Rejection | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_AGE:
        return None
    return Rejection(520)


def _check_identity_property(value: object) -> Rejection | None:
    if isinstance(value, str) and value or isinstance(value, int) and not isinstance(value, bool):
        return _check_scalar("identity", value)
    return Rejection(523, "profileData identity must be a non-empty string or a number")


def _check_subscription_flag(key: str) -> ValueCheck:
    def check(value: object) -> Rejection | None:
        if isinstance(value, bool):
            return None
        return Rejection(512, f"subscription flag '{key}' must be true or false")

    return check


def _check_standard_scalar(key: str) -> ValueCheck:
    def check(value: object) -> Rejection | None:
        if isinstance(value, dict | list):
            return Rejection(512, f"'{key}' must be a single value")
        return _check_scalar(key, value)

    return check


STANDARD_VALUE_CHECKS = {
    "Phone": _check_phone,
    "Email": _check_email,
    "Gender": _one_of(514, GENDERS),
    "Employed": _one_of(517, YES_NO),
    "Married": _one_of(519, YES_NO),
    "Education": _one_of(518, EDUCATION_LEVELS),
    "Age": _check_age,
    "identity": _check_identity_property,
    "Name": _check_standard_scalar("Name"),
    "DOB": _check_standard_scalar("DOB"),
    "Photo": _check_standard_scalar("Photo"),
    "Customer Type": _check_standard_scalar("Customer Type"),
    **{flag: _check_subscription_flag(flag) for flag in SUBSCRIPTION_FLAGS},
}


def _check_token(record: dict) -> Rejection | None:
    object_id = record.get("objectId")
    if not isinstance(object_id, str) or not OBJECT_ID.fullmatch(object_id):
        return Rejection(530)
    token_data = record.get("tokenData")
    if not isinstance(token_data, dict):
        return Rejection(531)
    if not isinstance(token_data.get("id"), str) or not token_data["id"]:
        return Rejection(532)
    if "type" not in token_data:
        return Rejection(533)
    if not isinstance(token_data["type"], str) or token_data["type"] not in TOKEN_TYPES:
        return Rejection(534)
    if "keys" in token_data and not isinstance(token_data["keys"], dict):
        return Rejection(535)
    return None


def parse_date(value: str) -> int | None:
    """The epoch seconds of a `$D_<epoch seconds>` value, or None when it is not one."""
    digits = value[len(DATE_PREFIX) :]
    if not DATE_DIGITS.fullmatch(digits):
        return None
    epoch = int(digits)
    if not MIN_DATE_EPOCH_SECONDS <= epoch < MAX_EPOCH_SECONDS:
        return None
    return epoch


def _longer_than(text: str, limit_bytes: int) -> bool:
    # A character is at most 4 UTF-8 bytes, so short strings need no encoding.
    return len(text) * 4 > limit_bytes and len(text.encode()) > limit_bytes
