"""The columns of each asset's warehouse table, as Dagster shows them on the asset's page.

Each schema is declared on its asset definition (`dagster/column_schema`), so the UI lists an
asset's columns before it was ever materialised. Tests compare them with the tables a run writes.
"""

import dagster as dg

from ct_pipeline.config import SyncConfig

# Zoho lookups come back flattened into these columns.
LOOKUP_PARTS = {
    "Owner": ("_id", "_name", "_email"),
    "Account_Name": ("_id", "_name"),
    "Contact_Name": ("_id", "_name"),
    "Related_To": ("_id", "_name"),
}
ZOHO_FIELD_TYPES = {
    "Created_Time": "timestamp",
    "Modified_Time": "timestamp",
    "Amount": "number",
    "Converted__s": "boolean",
}
PERSONAL = "personal data: phone or email"


def _schema(*columns: tuple[str, str, str]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, kind, description) for name, kind, description in columns]
    )


def zoho_table_schema(module: str, fields: list[str]) -> dg.TableSchema:
    """A raw Zoho module table: the record id, then each field read (lookups flattened)."""
    columns = [("id", "string", f"Zoho {module} record id (primary key)")]
    for field in fields:
        if field in LOOKUP_PARTS:
            for suffix in LOOKUP_PARTS[field]:
                columns.append(
                    (f"{field}{suffix}", "string", f"lookup {field}, {suffix.strip('_')}")
                )
            continue
        columns.append((field, ZOHO_FIELD_TYPES.get(field, "string"), f"Zoho field {field}"))
    columns.append(("...", "any", "plus the Zoho fields the profile mappings read (Contacts)"))
    columns.append(("ct_row_hash", "integer", "hash of the record's fields, to find changes"))
    return _schema(*columns)


CONTACT_IDENTITIES = _schema(
    ("module", "string", "Contacts or Leads"),
    ("zoho_id", "string", "Zoho record id"),
    ("modified_time", "timestamp", "the record's Modified_Time"),
    ("deal_count", "integer", "deals linked to the Contact"),
    ("identity", "string", f"the CleverTap identity chosen, E.164 phone or email ({PERSONAL})"),
    ("identity_kind", "string", "phone or email"),
    ("identity_source", "string", "the Zoho field the identity came from"),
    ("identity_risk", "string", "why the identity may be doubtful, if it is"),
    ("reason", "string", "why the record has no identity, if it has none"),
    ("mobile_e164", "string", f"Mobile in E.164 ({PERSONAL})"),
    ("phone_e164", "string", f"Phone in E.164 ({PERSONAL})"),
    ("email", "string", f"Email, trimmed and lower-cased ({PERSONAL})"),
    ("secondary_email", "string", f"Secondary_Email, normalised ({PERSONAL})"),
)

DUPLICATE_PROFILES = _schema(
    ("module", "string", "Contacts or Leads"),
    ("zoho_id", "string", "Zoho record id"),
    ("group_id", "integer", "the person: records sharing a group id are one person"),
    ("group_size", "integer", "records in the group"),
    ("group_status", "string", "single, merged or oversized"),
    ("is_canonical", "boolean", "the record whose data the person's profile is built from"),
    ("canonical_id", "string", "Zoho id of the group's canonical record"),
    ("canonical_identity", "string", f"the identity the person is pushed under ({PERSONAL})"),
    ("canonical_kind", "string", "phone or email"),
    ("status", "string", "push, no_identity, identity_collision or duplicate_group_too_large"),
)

IDENTITY_REVIEW_QUEUE = _schema(
    ("zoho_id", "string", "Zoho record id"),
    ("module", "string", "Contacts or Leads"),
    ("reason", "string", "why the record is held back, e.g. no_phone_or_email"),
)

DEAL_STAGE_EVENTS = _schema(
    ("event_id", "string", "deterministic id: deal, previous stage, stage and time"),
    ("kind", "string", "event, or campaign for an API-triggered campaign"),
    ("name", "string", "event name, or the campaign id"),
    ("deal_id", "string", "Zoho Deal id"),
    ("contact_id", "string", "Zoho Contact id of the deal"),
    ("status", "string", "pending, or held when the Contact has no pushed identity"),
    ("reason", "string", "why the event is held"),
    ("payload", "json", "event properties: stage_name, previous_stage, deal value, ..."),
    ("event_time", "timestamp", "the deal's Modified_Time"),
)

PROFILE_BATCHES = _schema(
    ("batch", "integer", "upload batch number"),
    ("identity", "string", f"the person's identity ({PERSONAL})"),
    ("contact_id", "string", "Zoho Contact id"),
    ("payload_hash", "string", "hash of the profile data, compared with the last accepted one"),
    ("record", "json", f"the /1/upload profile record ({PERSONAL})"),
)

EVENT_BATCHES = _schema(
    ("batch", "integer", "upload batch number"),
    ("event_id", "string", "outbox id"),
    ("kind", "string", "event or campaign"),
    ("name", "string", "event name or campaign id"),
    ("identity", "string", f"the person's identity ({PERSONAL})"),
    ("deal_id", "string", "Zoho Deal id"),
    ("payload", "json", "event properties"),
    ("event_time", "timestamp", "when the stage changed"),
)

# What CleverTap said about each uploaded record (both upload assets).
_OUTCOME = (
    ("outcome", "string", "accepted, rejected, rejected_locally, failed or dry_run"),
    ("code", "integer", "CleverTap's error code when refused"),
    ("error", "string", "CleverTap's error text when refused"),
    ("batch", "integer", "upload batch number"),
)

PROFILE_OUTCOMES = _schema(
    ("key", "string", f"the identity uploaded ({PERSONAL})"),
    *_OUTCOME,
    ("contact_id", "string", "Zoho Contact id"),
)

EVENT_OUTCOMES = _schema(
    ("key", "string", "outbox event id"),
    *_OUTCOME,
    ("maybe_delivered", "boolean", "a failure CleverTap may still have processed"),
    ("contact_id", "string", "Zoho Deal id of the event"),
)

RECONCILIATION = _schema(
    ("identity", "string", f"the person's identity ({PERSONAL})"),
    ("decision", "string", "new, same_identity, other_identity or conflict (held for review)"),
    ("upload_identity", "string", f"the identity CleverTap already holds them under ({PERSONAL})"),
    ("provisional", "boolean", "decided by a dry run: the next real run looks the person up again"),
)

WEBHOOK_INBOX = _schema(
    ("event_id", "string", "id of the distinct webhook event (a retried delivery adds nothing)"),
    ("delivery_id", "string", "the delivery that first carried it"),
    ("received_at", "timestamp", "when the receiver stored it"),
    ("event_name", "string", "the event's name, from the campaign's key-value pair"),
    ("event_time", "timestamp", "when the event happened"),
    ("target_id", "string", "CleverTap campaign id"),
    ("identity", "string", f"the identity CleverTap sent ({PERSONAL})"),
    ("email", "string", f"the email CleverTap sent ({PERSONAL})"),
    ("phone", "string", f"the phone CleverTap sent ({PERSONAL})"),
    ("object_id", "string", "CleverTap's id of the profile"),
    ("crm_contact_id", "string", "the profile's crm_contact_id property, when set"),
    ("properties", "json", "event properties"),
    ("status", "string", "received, matched, applied or parked"),
    ("reason", "string", "why an event is parked"),
    ("contact_id", "string", "the Zoho Contact it was matched to"),
    ("matched_by", "string", "how it was matched: crm_contact_id, identity, email or phone"),
    ("field", "string", "the Zoho field the event writes"),
    ("value", "string", "the value written"),
    ("event_date", "string", "the event's date in writeback.timezone"),
    ("field_status", "string", "whether the field was written"),
    ("note_status", "string", "whether the Note was added"),
    ("note_id", "string", "the Zoho Note id"),
    ("attempts", "integer", "write-back attempts"),
    ("last_error", "string", "Zoho's last error"),
    ("updated_at", "timestamp", "last change of this row"),
)

CRM_WRITEBACK_LOG = _schema(
    ("event_id", "string", "the webhook event written"),
    ("step", "string", "field or note"),
    ("run_id", "string", "the Dagster run"),
    ("contact_id", "string", "the Zoho Contact"),
    ("outcome", "string", "Zoho's answer for this record"),
    ("code", "string", "Zoho's code"),
    ("message", "string", "Zoho's message, cut to 200 characters"),
    ("at", "timestamp", "when Zoho answered"),
)


def profile_attributes_schema(config: SyncConfig) -> dg.TableSchema:
    """One row per person to push: bookkeeping, the configured mappings, the built-in flags."""
    mapped = [
        (mapping.clevertap, mapping.type, f"from Zoho {mapping.zoho}")
        for mapping in config.profile.mappings
    ]
    return _schema(
        ("identity", "string", f"the CleverTap identity (primary key; {PERSONAL})"),
        ("identity_kind", "string", "phone or email"),
        ("crm_contact_id", "string", "Zoho Contact id"),
        ("modified_time", "timestamp", "the Contact's Modified_Time"),
        *mapped,
        ("Email", "string", f"the person's email, unless shared ({PERSONAL})"),
        ("Phone", "string", f"the person's phone in E.164, unless shared ({PERSONAL})"),
        ("crm_deal_stage", "string", "stage of the Contact's latest open deal"),
        ("has_open_escalation", "boolean", "an open Case at an escalation priority"),
        ("crm_deleted", "boolean", "true once for a Contact deleted in Zoho"),
    )
