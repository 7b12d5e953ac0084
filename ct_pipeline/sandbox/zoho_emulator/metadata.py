"""Metadata endpoints the official SDKs call before touching records: modules, fields, users, org.

The field list is derived from the module DataFrames (research/zoho.md §9: the SDK reads
`settings/fields?module=X` for `api_name`, `data_type`, `json_type`, `system_mandatory` and
`lookup` before every record operation, and `settings/modules` when refreshing).
"""

from __future__ import annotations

import zlib
from typing import Any

from ct_pipeline.sandbox.zoho_emulator.replies import Reply, ZohoApiError
from ct_pipeline.sandbox.zoho_emulator.store import MODULES, CrmStore, FieldSpec, offset_suffix

# Picklists with more distinct values than this are described without their value list.
MAX_PICKLIST_VALUES = 200
SYSTEM_MANDATORY = {"Last_Name", "Deal_Name", "Stage", "Subject", "Note_Content"}
JSON_TYPES = {
    "boolean": "boolean",
    "double": "double",
    "currency": "double",
    "integer": "integer",
    "lookup": "jsonobject",
    "ownerlookup": "jsonobject",
}
FIELD_LENGTHS = {"email": 100, "phone": 30, "date": 20, "datetime": 120}
# The sandbox org's Zoho group id and its primary user's Zoho user id (fixed, like Zoho's).
ORG_ZGID = "60042101"
ORG_PRIMARY_ZUID = "60042100"
SINGULAR_LABELS = {"Contacts": "Contact", "Leads": "Lead", "Deals": "Deal", "Cases": "Case"}
# Accounts are only lookup targets here; SDKs read their field list to parse `Account_Name`.
ACCOUNT_FIELDS = (
    ("Account_Name", "text"),
    ("Owner", "ownerlookup"),
    ("Created_Time", "datetime"),
    ("Modified_Time", "datetime"),
)
NOTE_FIELDS = (
    ("Note_Title", "text"),
    ("Note_Content", "textarea"),
    ("Parent_Id", "lookup"),
    ("Owner", "ownerlookup"),
    ("Created_Time", "datetime"),
    ("Modified_Time", "datetime"),
)


def modules_reply(store: CrmStore, module: str | None = None) -> Reply:
    """`GET /crm/{v}/settings/modules[/{api_name}]`."""
    entries = [module_json(name, index) for index, name in enumerate((*MODULES, "Notes"))]
    if module is not None:
        entries = [entry for entry in entries if entry["api_name"].lower() == module.lower()]
        if not entries:
            raise ZohoApiError(
                400,
                "INVALID_MODULE",
                "the module name given seems to be invalid",
                {"module": module},
            )
    return Reply(200, {"modules": entries})


def fields_reply(store: CrmStore, module: str | None) -> Reply:
    """`GET /crm/{v}/settings/fields?module=X`: the module's fields, derived from its columns."""
    if not module:
        raise ZohoApiError(
            400,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing; send module=<module API name>",
            {"param_name": "module"},
        )
    fixed = {"notes": ("Notes", NOTE_FIELDS), "accounts": ("Accounts", ACCOUNT_FIELDS)}
    if module.lower() in fixed:
        name, described = fixed[module.lower()]
        specs = [
            FieldSpec(api_name, kind, (api_name,), lookup_module=_lookup_target(kind))
            for api_name, kind in described
        ]
        return Reply(200, {"fields": [field_json(name, spec, None) for spec in specs]})
    table = store.table(module)
    fields = [field_json(table.name, _id_field(), None)]
    for spec in table.fields.values():
        values = None
        if spec.data_type == "picklist":
            values = table.frame[spec.columns[0]].dropna().unique().tolist()
        fields.append(field_json(table.name, spec, values))
    return Reply(200, {"fields": fields})


def users_reply(store: CrmStore, kind: str | None) -> Reply:
    """`GET /crm/{v}/users?type=...`: the CRM users; CurrentUser is the sandbox user."""
    frame = store.users
    if kind == "CurrentUser":
        frame = frame.iloc[:1]
    users = [
        {
            "id": str(row["id"]),
            "full_name": str(row["name"]),
            "first_name": str(row["name"]).split(" ")[0],
            "last_name": str(row["name"]).split(" ")[-1],
            "email": str(row["email"]),
            "status": "active",
            "confirm": True,
            "role": {"name": "CEO" if index == 0 else "Manager", "id": _stable_id("role", index)},
            "profile": {
                "name": "Administrator" if index == 0 else "Standard",
                "id": _stable_id("profile", index),
            },
            "time_zone": time_zone_name(store),
            "locale": "en_IN",
        }
        for index, row in enumerate(frame.to_dict("records"))
    ]
    info = {"per_page": 200, "count": len(users), "page": 1, "more_records": False}
    return Reply(200, {"users": users, "info": info})


def org_reply(store: CrmStore) -> Reply:
    """`GET /crm/{v}/org`: the sandbox organisation (Enterprise edition, INR).

    Zoho's sample responses carry `zgid` (the org's Zoho group id) and `primary_zuid` (its
    primary user's Zoho user id) as numeric strings; the official SDKs sign a token in as
    `<current user email>:<zgid>`, so an org without `zgid` leaves their tokens unsigned.
    """
    user = store.current_user
    org = {
        "id": _stable_id("org", 0),
        "zgid": ORG_ZGID,
        "primary_zuid": ORG_PRIMARY_ZUID,
        "company_name": "ct_pipeline sandbox",
        "primary_email": user["email"],
        "time_zone": time_zone_name(store),
        "currency": "INR",
        "iso_code": "INR",
        "country_code": "IN",
        "license_details": {
            "paid": True,
            "paid_type": "enterprise",
            "users_license_purchased": len(store.users),
        },
    }
    return Reply(200, {"org": [org]})


def module_json(name: str, index: int) -> dict[str, Any]:
    """One entry of `settings/modules`."""
    return {
        "id": _stable_id("module", index),
        "api_name": name,
        "module_name": name,
        "singular_label": SINGULAR_LABELS.get(name, "Note"),
        "plural_label": name,
        "api_supported": True,
        "generated_type": "default",
        "creatable": True,
        "editable": True,
        "deletable": True,
        "viewable": True,
        "visible": True,
        "status": "visible",
        "sequence_number": index + 1,
        "modified_time": None,
    }


def field_json(module: str, spec: FieldSpec, picklist: list[Any] | None) -> dict[str, Any]:
    """One entry of `settings/fields`, with the keys the official SDKs read."""
    label = spec.api_name.replace("__s", "").replace("_", " ")
    entry: dict[str, Any] = {
        "id": _stable_id(f"{module}.{spec.api_name}", 0),
        "api_name": spec.api_name,
        "field_label": label,
        "display_label": label,
        "data_type": spec.data_type,
        "json_type": JSON_TYPES.get(spec.data_type, "string"),
        "length": FIELD_LENGTHS.get(spec.data_type, 255),
        "read_only": spec.read_only,
        "field_read_only": spec.read_only,
        "system_mandatory": spec.api_name in SYSTEM_MANDATORY,
        "custom_field": spec.api_name not in _STANDARD_FIELDS,
        "visible": True,
        "created_source": "default",
        "lookup": {},
        "pick_list_values": [],
    }
    if spec.is_lookup:
        target = "users" if spec.lookup_module == "users" else spec.lookup_module
        entry["lookup"] = {
            "display_label": label,
            "api_name": spec.api_name,
            "module": {"api_name": target, "id": _stable_id(f"module.{target}", 0)},
            "id": _stable_id(f"lookup.{module}.{spec.api_name}", 0),
        }
    if picklist is not None and len(picklist) <= MAX_PICKLIST_VALUES:
        entry["pick_list_values"] = [
            {
                "display_value": str(value),
                "actual_value": str(value),
                "id": _stable_id(f"{module}.{spec.api_name}.{value}", 0),
                "sequence_number": number + 1,
                "type": "used",
            }
            for number, value in enumerate(sorted(str(value) for value in picklist))
        ]
    return entry


def time_zone_name(store: CrmStore) -> str:
    """An IANA-style name for the org's offset (Asia/Kolkata for +05:30)."""
    suffix = offset_suffix(store.tz_offset)
    return "Asia/Kolkata" if suffix == "+05:30" else f"GMT{suffix}"


def _lookup_target(kind: str) -> str | None:
    return {"ownerlookup": "users", "lookup": "Contacts"}.get(kind)


def _id_field() -> FieldSpec:
    return FieldSpec("id", "bigint", ("id",), read_only=True)


def _stable_id(name: str, index: int) -> str:
    # Deterministic 19-digit ids so that metadata is identical across sandbox restarts.
    return str(4_100_000_000_000_000_000 + zlib.crc32(name.encode()) * 1000 + index)


_STANDARD_FIELDS = frozenset(
    {
        "id",
        "Owner",
        "Salutation",
        "First_Name",
        "Last_Name",
        "Full_Name",
        "Email",
        "Secondary_Email",
        "Phone",
        "Mobile",
        "Mailing_Street",
        "Mailing_City",
        "Mailing_State",
        "Mailing_Zip",
        "Mailing_Country",
        "Date_of_Birth",
        "Lead_Source",
        "Email_Opt_Out",
        "Account_Name",
        "Created_Time",
        "Modified_Time",
        "Company",
        "Lead_Status",
        "City",
        "State",
        "Country",
        "Converted__s",
        "Deal_Name",
        "Pipeline",
        "Stage",
        "Amount",
        "Closing_Date",
        "Probability",
        "Type",
        "Contact_Name",
        "Case_Number",
        "Subject",
        "Status",
        "Priority",
        "Case_Origin",
        "Related_To",
        "Note_Title",
        "Note_Content",
        "Parent_Id",
    }
)
