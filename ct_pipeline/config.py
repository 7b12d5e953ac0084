"""The sync configuration: a YAML file validated with pydantic, failing fast with the key named.

`load_sync_config()` reads the file named by `CT_SYNC_CONFIG`, or the packaged example
(`ct_pipeline/sync.example.yaml`), which documents every key.
"""

from __future__ import annotations

import os
import re
import string
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ct_pipeline.zoho.resource import DEFAULT_BULK_READ_THRESHOLD

CONFIG_ENV_VAR = "CT_SYNC_CONFIG"
EXAMPLE_CONFIG = "sync.example.yaml"

# https://developer.clevertap.com/docs/upload-user-profiles-api : at most 1,000 records a request.
CLEVERTAP_MAX_BATCH = 1000
# CleverTap allows 15 concurrent upload requests per account (research/clevertap.md §3).
CLEVERTAP_MAX_CONCURRENCY = 15

ZohoModule = Literal["Contacts", "Leads", "Deals", "Cases"]
IdentityKind = Literal["phone", "email"]
PersonModule = Literal["Contacts", "Leads"]
# What decides a duplicate group's canonical record (ct_pipeline.identity.groups.CANONICAL_KEYS).
CanonicalKey = Literal["module", "deals", "modified"]
# A Zoho field's API name (what the API and the warehouse columns use).
ZOHO_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")
# Contacts' own phone and email fields: always read, normalised and used to link duplicates,
# whichever of them (and of any other field) the identity is chosen from.
STANDARD_PHONE_FIELDS = ("Mobile", "Phone")
STANDARD_EMAIL_FIELDS = ("Email", "Secondary_Email")
MappingType = Literal["string", "number", "integer", "boolean", "date"]


class SyncConfigError(ValueError):
    """The sync configuration file is missing, unreadable or invalid."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ZohoSettings(_Section):
    """What is read from Zoho CRM, and how hard."""

    modules: list[ZohoModule] = ["Contacts", "Leads", "Deals", "Cases"]
    profiles_from_leads: bool = False
    bulk_read_threshold: Annotated[int, Field(ge=0)] = DEFAULT_BULK_READ_THRESHOLD
    max_concurrency: Annotated[int, Field(ge=1, le=25)] = 5

    @field_validator("modules")
    @classmethod
    def _contacts_required(cls, modules: list[str]) -> list[str]:
        if "Contacts" not in modules:
            raise ValueError("must include Contacts: profiles are built from Contacts")
        if len(set(modules)) != len(modules):
            raise ValueError("lists a module twice")
        return modules


class IdentitySettings(_Section):
    """How each record's CleverTap identity is chosen, and how duplicates are linked."""

    order: Annotated[list[IdentityKind], Field(min_length=1, max_length=2)] = ["phone", "email"]
    phone_fields: list[str] = ["Mobile", "Phone"]
    email_fields: list[str] = ["Email"]
    default_region: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "IN"
    mobile_only: bool = True
    max_records_per_value: Annotated[int, Field(ge=2)] = 5
    max_group_size: Annotated[int, Field(ge=2)] = 10
    # A duplicate group's canonical record: the first by these keys in turn (module: earlier in
    # module_priority; deals: with deals; modified: most recently modified), then the smallest
    # Zoho id.
    canonical_order: Annotated[list[CanonicalKey], Field(max_length=3)] = [
        "module",
        "deals",
        "modified",
    ]
    module_priority: Annotated[list[PersonModule], Field(min_length=1, max_length=2)] = [
        "Contacts",
        "Leads",
    ]

    @field_validator("order", "canonical_order", "module_priority")
    @classmethod
    def _no_repeats(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("lists a value twice")
        return values

    @field_validator("phone_fields", "email_fields")
    @classmethod
    def _api_names(cls, fields: list[str]) -> list[str]:
        for field in fields:
            if not ZOHO_API_NAME.fullmatch(field):
                raise ValueError(
                    f"{field!r} is not a Zoho API name; use the field's API name (letters, "
                    "digits and underscores, as in Home_Phone)"
                )
        if len(set(fields)) != len(fields):
            raise ValueError("lists a field twice")
        return fields

    @model_validator(mode="after")
    def _fields_for_each_kind(self) -> IdentitySettings:
        if "phone" in self.order and not self.phone_fields:
            raise ValueError("phone_fields is empty but order uses phone")
        if "email" in self.order and not self.email_fields:
            raise ValueError("email_fields is empty but order uses email")
        phones = {*STANDARD_PHONE_FIELDS, *self.phone_fields}
        emails = {*STANDARD_EMAIL_FIELDS, *self.email_fields}
        both = sorted(phones & emails)
        if both:
            raise ValueError(
                f"phone_fields and email_fields: {', '.join(both)} cannot be both a phone and "
                "an email field; list each field in one of them"
            )
        columns: dict[str, str] = {}
        for field, kind in self.linked_fields().items():
            column = identity_column(field, kind)
            if column in columns:
                raise ValueError(
                    f"{kind}_fields: {columns[column]} and {field} would both be stored as "
                    f"column {column} of contact_identities; list only one of them"
                )
            columns[column] = field
        return self

    def linked_fields(self) -> dict[str, IdentityKind]:
        """Every person field read, normalised and used to link duplicates, with its kind:
        Contacts' own phone and email fields, then the configured ones."""
        fields: dict[str, IdentityKind] = {}
        for field in (*STANDARD_PHONE_FIELDS, *self.phone_fields):
            fields[field] = "phone"
        for field in (*STANDARD_EMAIL_FIELDS, *self.email_fields):
            fields[field] = "email"
        return fields


def identity_column(field: str, kind: IdentityKind) -> str:
    """The contact_identities column that holds a person field's normalised value: the field
    lower-cased with `_e164` for a phone field (mobile_e164), lower-cased for an email field
    whose name ends in email (email, secondary_email), and with `_email` for another."""
    name = field.lower()
    if kind == "phone":
        return f"{name}_e164"
    return name if name.endswith("email") else f"{name}_email"


class FieldMapping(_Section):
    """One Zoho field copied to one CleverTap profile property."""

    zoho: Annotated[str, Field(min_length=1)]
    clevertap: Annotated[str, Field(min_length=1, max_length=120)]
    type: MappingType = "string"


class ProfileSettings(_Section):
    """Zoho fields that become CleverTap profile properties."""

    mappings: list[FieldMapping] = []

    @field_validator("mappings")
    @classmethod
    def _unique_targets(cls, mappings: list[FieldMapping]) -> list[FieldMapping]:
        targets = [mapping.clevertap for mapping in mappings]
        repeated = sorted({target for target in targets if targets.count(target) > 1})
        if repeated:
            raise ValueError(f"CleverTap keys mapped twice: {', '.join(repeated)}")
        return mappings


class StageCampaign(_Section):
    """A deal stage whose arrival fires an API-triggered CleverTap campaign."""

    stage: Annotated[str, Field(min_length=1)]
    campaign_id: Annotated[str, Field(pattern=r"^\d+$")]


class DealEventSettings(_Section):
    """Which deal-stage transitions become CleverTap events and campaigns."""

    event_name: Annotated[str, Field(min_length=1, max_length=512)] = "Deal Stage Changed"
    stages: Literal["all"] | list[str] = "all"
    campaigns: list[StageCampaign] = []
    # A deal in one of these stages is over: it no longer sets crm_deal_stage.
    closed_stages: list[str] = [
        "Disbursed",
        "EMI Activated",
        "Delivered",
        "Closed Won",
        "Closed Lost",
        "Rejected",
    ]


class EscalationSettings(_Section):
    """Which open Cases set `has_open_escalation` on the Contact's profile."""

    case_priorities: Annotated[list[str], Field(min_length=1)] = ["High"]
    open_statuses: Annotated[list[str], Field(min_length=1)] = ["New", "On Hold", "Escalated"]


class CleverTapSettings(_Section):
    """How uploads to CleverTap are batched and what happens to uncertain outcomes."""

    batch_size: Annotated[int, Field(ge=1, le=CLEVERTAP_MAX_BATCH)] = CLEVERTAP_MAX_BATCH
    max_concurrency: Annotated[int, Field(ge=1, le=CLEVERTAP_MAX_CONCURRENCY)] = 4
    unknown_outcome_policy: Literal["resend", "hold"] = "resend"
    deleted_contacts: Literal["ignore", "flag"] = "flag"
    # Before a person's first push, look them up in CleverTap by identity and email, so a
    # profile the app's SDK already created under another identity is updated, not duplicated.
    reconcile_new_profiles: bool = False


class QualitySettings(_Section):
    """Thresholds that fail the run before bad data reaches CleverTap."""

    identity_coverage_floor: Annotated[float, Field(ge=0.0, le=1.0)] = 0.6
    rejection_ceiling: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05


# What a Note's content may name. None of it is personal data: the Note is read in the CRM by
# people who see the Contact anyway, but it must not copy identities around.
NOTE_PLACEHOLDERS = {
    "event": "the CleverTap event name",
    "date": "the event's date in writeback.timezone (YYYY-MM-DD)",
    "time": "the event's time in UTC when the delivery gave one, else its date",
    "campaign": "the CleverTap webhook campaign id (targetId), empty when none was sent",
    "source": "'CleverTap webhook campaign <id>', or 'CleverTap' without an id",
    "event_ref": "the first 16 characters of the event's id in clevertap_webhook_inbox",
}
DEFAULT_NOTE_CONTENT = (
    "{event} on {time}, reported by {source}. Written by ct_pipeline (event {event_ref})."
)
# Zoho's Update Records trigger values (research/zoho.md §6).
ZohoTrigger = Literal["workflow", "approval", "blueprint"]


class WritebackEvent(_Section):
    """A CleverTap webhook event and what it writes to the matching Zoho Contact."""

    event: Annotated[str, Field(min_length=1)]
    field: Annotated[str, Field(min_length=1)]
    value: str | bool | int | float
    note_title: Annotated[str, Field(min_length=1, max_length=120)]
    # The Note's text, with {placeholders} from NOTE_PLACEHOLDERS.
    note_content: Annotated[str, Field(min_length=1, max_length=2000)] = DEFAULT_NOTE_CONTENT

    @field_validator("note_content")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        allowed = ", ".join(f"{{{name}}}" for name in NOTE_PLACEHOLDERS)
        try:
            parts = list(string.Formatter().parse(template))
        except ValueError as error:
            raise ValueError(
                f"is not a template ({error}); write {{{{ and }}}} for literal braces"
            ) from None
        for _, name, spec, conversion in parts:
            if name is None:
                continue
            if name not in NOTE_PLACEHOLDERS or spec or conversion:
                raise ValueError(
                    f"uses {{{name}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}}, which is not a placeholder; use {allowed}"
                )
        return template


class WritebackSettings(_Section):
    """The CleverTap -> Zoho flow."""

    events: list[WritebackEvent] = []
    # CleverTap's webhook body names no event: each webhook campaign carries it as the value of
    # this key in its key-value pairs.
    event_key: Annotated[str, Field(min_length=1, max_length=120)] = "event"
    # `$event_date` is the event's date in this time zone.
    timezone: str = "Asia/Kolkata"
    # Larger webhook bodies are refused (413) before they are read.
    max_body_bytes: Annotated[int, Field(ge=1024, le=100 * 1024 * 1024)] = 5 * 1024 * 1024
    # The Zoho rules the Contact updates may set off. Zoho runs every workflow, approval and
    # blueprint rule on an update that names none; by default none run, since a rule that
    # updates a synced field or mails the customer would act on every webhook.
    trigger: list[ZohoTrigger] = []
    # An event without a time of its own (CleverTap's payload has none) that arrives again
    # within this many seconds of the first copy is CleverTap's retry; later, a new event.
    retry_window_seconds: Annotated[int, Field(ge=10, le=86_400)] = 600

    @field_validator("events")
    @classmethod
    def _one_entry_per_event(cls, events: list[WritebackEvent]) -> list[WritebackEvent]:
        names = [event.event.casefold() for event in events]
        repeated = sorted(
            {event.event for event in events if names.count(event.event.casefold()) > 1}
        )
        if repeated:
            raise ValueError(f"events listed twice: {', '.join(repeated)}")
        return events

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, timezone: str) -> str:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{timezone!r} is not an IANA time zone such as Asia/Kolkata"
            ) from None
        return timezone


class SyncConfig(_Section):
    """The whole sync configuration."""

    zoho: ZohoSettings = ZohoSettings()
    identity: IdentitySettings = IdentitySettings()
    profile: ProfileSettings = ProfileSettings()
    deal_events: DealEventSettings = DealEventSettings()
    escalation: EscalationSettings = EscalationSettings()
    clevertap: CleverTapSettings = CleverTapSettings()
    quality: QualitySettings = QualitySettings()
    writeback: WritebackSettings = WritebackSettings()

    @model_validator(mode="after")
    def _contacts_canonical_unless_leads_are_profiles(self) -> SyncConfig:
        # Leads never have deals (deals belong to Contacts), so only `module` can put a
        # Contact ahead of a Lead that is more recently modified or has the smaller id.
        if self.zoho.profiles_from_leads:
            return self
        order = self.identity.canonical_order
        if self.identity.module_priority[0] != "Contacts":
            key = "identity.module_priority"
        elif "module" not in order or (
            "modified" in order and order.index("modified") < order.index("module")
        ):
            key = "identity.canonical_order"
        else:
            return self
        raise ValueError(
            f"{key}: with zoho.profiles_from_leads false a Lead must not be a duplicate "
            "group's canonical record, or nobody in its group would be pushed; keep Contacts "
            "first in module_priority and module before modified in canonical_order"
        )

    @model_validator(mode="after")
    def _writeback_fields_not_synced_forward(self) -> SyncConfig:
        mapped = {mapping.zoho for mapping in self.profile.mappings}
        for position, event in enumerate(self.writeback.events):
            if event.field in mapped:
                raise ValueError(
                    f"writeback.events.{position}.field {event.field} is also in "
                    "profile.mappings: a field written back from CleverTap must not be synced "
                    "forward, or every write-back would be pushed straight back"
                )
        return self


def load_sync_config(path: str | os.PathLike[str] | None = None) -> SyncConfig:
    """Load and validate the sync configuration from `path`, `$CT_SYNC_CONFIG` or the example."""
    source = path or os.environ.get(CONFIG_ENV_VAR)
    if source:
        config_path = Path(source)
        try:
            text = config_path.read_text(encoding="utf-8")
        except OSError as error:
            raise SyncConfigError(
                f"cannot read the sync configuration {config_path}: {error.strerror}; "
                f"check {CONFIG_ENV_VAR}"
            ) from None
        origin = str(config_path)
    else:
        text = resources.files("ct_pipeline").joinpath(EXAMPLE_CONFIG).read_text(encoding="utf-8")
        origin = f"the packaged {EXAMPLE_CONFIG}"
    return parse_sync_config(text, origin=origin)


def parse_sync_config(text: str, origin: str = "the sync configuration") -> SyncConfig:
    """Validate YAML text as a sync configuration; errors name the key and what is allowed."""
    try:
        document: Any = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SyncConfigError(f"{origin} is not valid YAML: {error}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise SyncConfigError(
            f"{origin} must be a mapping of sections, not {type(document).__name__}"
        )
    try:
        return SyncConfig.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(_describe(problem) for problem in error.errors())
        raise SyncConfigError(f"{origin} is invalid: {problems}") from None


def _describe(problem: Any) -> str:
    key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
    message = problem["msg"]
    if problem["type"] == "extra_forbidden":
        message = "is not a known key (check its spelling and section)"
    elif problem["type"] == "literal_error":
        expected = problem.get("ctx", {}).get("expected", "")
        message = f"got {problem.get('input')!r}; allowed values are {expected}"
    elif isinstance(problem.get("input"), str | int | float | bool):
        message = f"{message} (got {problem['input']!r})"
    return f"{key}: {message}"


class SyncConfigResource(dg.ConfigurableResource):
    """The sync configuration, loaded from `path`, `$CT_SYNC_CONFIG` or the packaged example."""

    path: str | None = None

    def load(self) -> SyncConfig:
        """The validated configuration (raises SyncConfigError naming a bad key)."""
        return load_sync_config(self.path)
