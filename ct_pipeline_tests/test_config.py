"""The sync configuration loads the example and rejects bad files, naming the key."""

from __future__ import annotations

import re

import pytest
import yaml
from pydantic import BaseModel

from ct_pipeline.config import (
    IdentitySettings,
    SyncConfig,
    SyncConfigError,
    identity_column,
    load_sync_config,
    parse_sync_config,
)
from ct_pipeline.identity.groups import CANONICAL_KEYS


def every_setting(model: type[BaseModel] = SyncConfig, prefix: tuple[str, ...] = ()):
    """The dotted path of every key a configuration file can set, nested list items included."""
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        annotation = field.annotation
        item = getattr(annotation, "__args__", (None,))[0]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from every_setting(annotation, path)
        elif isinstance(item, type) and issubclass(item, BaseModel):
            yield path
            yield from every_setting(item, (*path, "0"))
        else:
            yield path


def document_setting(path: tuple[str, ...], value: object) -> dict:
    """A configuration document that sets `path` (list positions as digits) to `value`."""
    head, *rest = path
    if not rest:
        return {head: value}
    if rest[0].isdigit():
        return {head: [document_setting(tuple(rest[1:]), value)]}
    return {head: document_setting(tuple(rest), value)}


def test_the_packaged_example_is_valid_and_uses_the_documented_defaults():
    config = load_sync_config()

    assert config.clevertap.batch_size == 1000
    assert config.identity.order == ["phone", "email"]
    assert config.identity.default_region == "IN"
    assert "Contacts" in config.zoho.modules
    assert {mapping.clevertap for mapping in config.profile.mappings} >= {"Name", "City"}


def test_ct_sync_config_names_the_file_to_load(tmp_path, monkeypatch):
    path = tmp_path / "sync.yaml"
    path.write_text("identity: {order: [email]}\n")
    monkeypatch.setenv("CT_SYNC_CONFIG", str(path))

    assert load_sync_config().identity.order == ["email"]


def test_an_empty_file_means_every_default():
    assert parse_sync_config("").clevertap.batch_size == 1000


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("clevertap: {batch_size: 1001}", "clevertap.batch_size"),
        ("clevertap: {batch_size: 0}", "clevertap.batch_size"),
        ("clevertap: {max_concurrency: 16}", "clevertap.max_concurrency"),
        ("clevertap: {unknown_outcome_policy: retry}", "clevertap.unknown_outcome_policy"),
        ("clevertap: {region: in1}", "clevertap.region"),
        ("identity: {order: [fone]}", "identity.order.0"),
        ("identity: {order: [phone, phone]}", "identity.order"),
        ("identity: {order: []}", "identity.order"),
        ("identity: {default_region: india}", "identity.default_region"),
        ("identity: {order: [email], email_fields: []}", "identity"),
        ("identity: {phone_fields: ['Home Phone']}", "identity.phone_fields"),
        ("identity: {phone_fields: [Mobile, Mobile]}", "identity.phone_fields"),
        ("identity: {email_fields: [Work, Work_Email]}", "email_fields: Work and Work_Email"),
        ("identity: {phone_fields: [Email]}", "phone_fields and email_fields: Email"),
        ("identity: {canonical_order: [age]}", "identity.canonical_order.0"),
        ("identity: {canonical_order: [deals, deals]}", "identity.canonical_order"),
        ("identity: {module_priority: [Accounts]}", "identity.module_priority.0"),
        ("identity: {module_priority: []}", "identity.module_priority"),
        ("identity: {module_priority: [Leads, Contacts]}", "identity.module_priority: with"),
        ("identity: {canonical_order: [modified, module]}", "identity.canonical_order: with"),
        ("identity: {canonical_order: [deals]}", "identity.canonical_order: with"),
        ("zoho: {modules: [Leads]}", "zoho.modules"),
        ("zoho: {modules: [Contacts, Accounts]}", "zoho.modules.1"),
        ("profile: {mappings: [{zoho: A, clevertap: X}, {zoho: B, clevertap: X}]}", "profile"),
        ("profile: {mappings: [{zoho: A, clevertap: X, type: text}]}", "profile.mappings.0.type"),
        ("deal_events: {campaigns: [{stage: Approved, campaign_id: abc}]}", "campaign_id"),
        ("quality: {rejection_ceiling: 2}", "quality.rejection_ceiling"),
        ("writeback: {events: [{event: Charged}]}", "writeback.events.0.field"),
        ("colour: blue", "colour"),
    ],
)
def test_an_invalid_setting_fails_at_load_naming_the_key(text: str, named: str):
    with pytest.raises(SyncConfigError, match=named.replace(".", r"\.")):
        parse_sync_config(text)


SETTINGS = [".".join(path) for path in every_setting()]


def test_every_setting_is_found_in_the_model():
    assert len(SETTINGS) >= 35
    assert {"clevertap.batch_size", "profile.mappings.0.type", "writeback.events.0.value"} <= set(
        SETTINGS
    )


@pytest.mark.parametrize("setting", SETTINGS)
def test_every_setting_given_a_value_of_the_wrong_shape_fails_naming_it(setting: str):
    # No setting takes a mapping of unknown keys: scalars, lists and sections all refuse it.
    document = document_setting(tuple(setting.split(".")), {"not": {"a": "setting"}})

    with pytest.raises(SyncConfigError, match=re.escape(setting) + r"(\.|:)"):
        parse_sync_config(yaml.safe_dump(document))


@pytest.mark.parametrize(
    "section", sorted({setting.rsplit(".", 1)[0] for setting in SETTINGS if "." in setting})
)
def test_a_misspelt_key_in_every_section_fails_naming_it(section: str):
    document = document_setting((*section.split("."), "colour"), "blue")

    with pytest.raises(SyncConfigError, match=re.escape(f"{section}.colour: is not")):
        parse_sync_config(yaml.safe_dump(document))


def test_identity_fields_beyond_mobile_and_phone_are_read_and_linked():
    settings = parse_sync_config(
        "identity: {phone_fields: [Home_Phone, Mobile], email_fields: [Work_Email]}"
    ).identity

    assert settings.linked_fields() == {
        "Mobile": "phone",
        "Phone": "phone",
        "Home_Phone": "phone",
        "Email": "email",
        "Secondary_Email": "email",
        "Work_Email": "email",
    }
    assert [identity_column(field, kind) for field, kind in settings.linked_fields().items()] == [
        "mobile_e164",
        "phone_e164",
        "home_phone_e164",
        "email",
        "secondary_email",
        "work_email",
    ]


def test_a_lead_may_come_first_when_leads_become_profiles():
    config = parse_sync_config(
        "zoho: {profiles_from_leads: true}\n"
        "identity: {canonical_order: [modified], module_priority: [Leads, Contacts]}"
    )
    assert config.identity.canonical_order == ["modified"]
    assert parse_sync_config("identity: {canonical_order: [deals, module]}").identity


def test_the_canonical_keys_are_the_duplicate_groupings():
    literal = IdentitySettings.model_fields["canonical_order"].annotation.__args__[0]
    assert set(literal.__args__) == set(CANONICAL_KEYS)
    assert tuple(IdentitySettings().canonical_order) == CANONICAL_KEYS


def test_a_literal_error_lists_the_allowed_values():
    with pytest.raises(SyncConfigError, match="'resend' or 'hold'"):
        parse_sync_config("clevertap: {unknown_outcome_policy: retry}")


def test_a_file_that_is_not_yaml_is_reported_as_such():
    with pytest.raises(SyncConfigError, match="not valid YAML"):
        parse_sync_config("identity: [")


def test_a_missing_file_names_the_environment_variable(tmp_path):
    with pytest.raises(SyncConfigError, match="CT_SYNC_CONFIG"):
        load_sync_config(tmp_path / "absent.yaml")


WRITEBACK_EVENT = "{event: Charged, field: Last_Purchase_Date, value: $event_date, note_title: P"


@pytest.mark.parametrize(
    ("text", "named", "says"),
    [
        (
            "profile: {mappings: [{zoho: Subscription_Status, clevertap: Plan}]}\n"
            "writeback: {events: [{event: Cancelled, field: Subscription_Status, "
            "value: Cancelled, note_title: C}]}",
            "writeback.events.0.field Subscription_Status",
            "also in profile.mappings",
        ),
        (
            f"writeback: {{events: [{WRITEBACK_EVENT}, note_content: 'Paid by {{phone}}'}}]}}",
            "writeback.events.0.note_content",
            "{phone}, which is not a placeholder",
        ),
        (
            f"writeback: {{events: [{WRITEBACK_EVENT}, note_content: 'On {{date:%d}}'}}]}}",
            "writeback.events.0.note_content",
            "{date:%d}, which is not a placeholder",
        ),
        (
            f"writeback: {{events: [{WRITEBACK_EVENT}, note_content: 'Paid {{}}'}}]}}",
            "writeback.events.0.note_content",
            "{}, which is not a placeholder",
        ),
        (
            f"writeback: {{events: [{WRITEBACK_EVENT}, note_content: 'Paid {{event'}}]}}",
            "writeback.events.0.note_content",
            "for literal braces",
        ),
        ("writeback: {trigger: [workflows]}", "writeback.trigger.0", "'workflow'"),
        ("writeback: {retry_window_seconds: 5}", "writeback.retry_window_seconds", "10"),
    ],
    ids=[
        "field-synced-forward",
        "unknown-placeholder",
        "format-spec",
        "positional",
        "unclosed-brace",
        "unknown-trigger",
        "window-too-short",
    ],
)
def test_a_bad_writeback_setting_fails_naming_the_key_and_the_fix(text, named, says):
    with pytest.raises(SyncConfigError) as refused:
        parse_sync_config(text)

    assert named in str(refused.value)
    assert says in str(refused.value)


def test_the_writeback_defaults_fire_no_zoho_rules_and_keep_the_note_text():
    settings = parse_sync_config(f"writeback: {{events: [{WRITEBACK_EVENT}}}]}}").writeback

    assert settings.trigger == []
    assert settings.retry_window_seconds == 600
    assert settings.events[0].note_content.startswith("{event} on {time}, reported by {source}")
