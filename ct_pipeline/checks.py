"""Data-quality checks on the sync's tables; the blocking ones stop bad data before CleverTap."""

import dagster as dg
import orjson
import pandas as pd
import pandera.pandas as pa

from ct_pipeline.assets import incremental
from ct_pipeline.assets.clevertap import (
    EVENT_BATCHES,
    EVENT_OUTCOMES,
    PROFILE_BATCHES,
    PROFILE_OUTCOMES,
    clevertap_event_batches,
    clevertap_event_sync,
    clevertap_profile_batches,
    clevertap_profile_sync,
)
from ct_pipeline.assets.identity import (
    IDENTITIES_TABLE,
    MEMBERS_TABLE,
    PUSH,
    SCOPE_TABLE,
    contact_identities,
    duplicate_profiles,
)
from ct_pipeline.assets.segments import CHANGES_TABLE as PROFILE_CHANGES_TABLE
from ct_pipeline.assets.segments import TABLE as PROFILE_TABLE
from ct_pipeline.assets.segments import profile_attributes
from ct_pipeline.assets.zoho import TABLES, zoho_contacts
from ct_pipeline.config import CLEVERTAP_MAX_BATCH, SyncConfigResource
from ct_pipeline.identity import normalize_phones
from ct_pipeline.warehouse import WarehouseResource

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
E164_PATTERN = r"^\+[1-9]\d{6,14}$"


@dg.asset_check(
    asset=zoho_contacts,
    blocking=True,
    description=(
        "Every Zoho field the profile mappings and identity.phone_fields and email_fields "
        "read is a column of zoho_contacts. A field renamed or removed in Zoho fails "
        "here, naming the field, instead of silently pushing empty properties or leaving "
        "people without an identity."
    ),
)
def mapped_fields_present(
    warehouse: WarehouseResource, sync_config: SyncConfigResource
) -> dg.AssetCheckResult:
    config = sync_config.load()
    columns = set(warehouse.read_sql(f"SELECT * FROM {TABLES['Contacts']} WHERE 1 = 0").columns)
    identity = config.identity
    read = [m.zoho for m in config.profile.mappings]
    read += [f for f in (*identity.phone_fields, *identity.email_fields) if f not in read]
    missing = [field for field in read if field not in columns]
    return dg.AssetCheckResult(
        passed=not missing,
        description=(
            f"mapped or identity fields missing from zoho_contacts: {', '.join(missing)}"
            if missing
            else None
        ),
        metadata={"mapped fields": len(config.profile.mappings), "missing": ", ".join(missing)},
    )


@dg.asset_check(
    asset=contact_identities,
    blocking=True,
    description=(
        "The share of Contacts with a usable CleverTap identity is at least "
        "quality.identity_coverage_floor: a sudden drop means a broken field or import."
    ),
)
def identity_coverage(
    warehouse: WarehouseResource, sync_config: SyncConfigResource
) -> dg.AssetCheckResult:
    floor = sync_config.load().quality.identity_coverage_floor
    coverage = warehouse.read_sql(
        f"SELECT COUNT(*) AS records, COUNT(identity) AS identified FROM {IDENTITIES_TABLE} "
        "WHERE module = 'Contacts'"
    ).iloc[0]
    share = float(coverage["identified"]) / max(int(coverage["records"]), 1)
    return dg.AssetCheckResult(
        passed=share >= floor or int(coverage["records"]) == 0,
        metadata={
            "coverage": round(share, 4),
            "floor": floor,
            "contacts": int(coverage["records"]),
        },
    )


@dg.asset_check(
    asset=duplicate_profiles,
    blocking=True,
    description=(
        "No CleverTap identity is claimed by two different canonical people: CleverTap would "
        "merge them, and its merges cannot be undone."
    ),
)
def no_identity_claimed_twice(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    columns = ["group_id", "canonical_identity", "status"]
    if incremental.derives_everything(context, warehouse):
        members = warehouse.read_table(MEMBERS_TABLE, columns=columns)
    else:
        # Everyone claiming an identity a record of this run claims.
        scope = incremental.keys_of(warehouse.read_table(SCOPE_TABLE))
        claimed = incremental.rows_for_keys(warehouse, MEMBERS_TABLE, scope)
        members = warehouse.read_rows(
            MEMBERS_TABLE, "canonical_identity", claimed["canonical_identity"].dropna(), columns
        )
    pushed = members[members["status"] == PUSH].drop_duplicates(["group_id"])
    claimed_twice = int(pushed["canonical_identity"].duplicated().sum())
    return dg.AssetCheckResult(passed=claimed_twice == 0, metadata={"claimed twice": claimed_twice})


PROFILE_SCHEMA = pa.DataFrameSchema(
    {
        "identity": pa.Column(str, unique=True, nullable=False),
        "identity_kind": pa.Column(str, pa.Check.isin(["phone", "email"]), nullable=True),
        "crm_contact_id": pa.Column(str, pa.Check.str_matches(r"^\d+$"), nullable=False),
        "Phone": pa.Column(str, pa.Check.str_matches(E164_PATTERN), nullable=True),
        "Email": pa.Column(str, pa.Check.str_matches(EMAIL_PATTERN), nullable=True),
        "has_open_escalation": pa.Column(nullable=True),
    },
    strict=False,
    coerce=False,
)


@dg.asset_check(
    asset=profile_attributes,
    blocking=True,
    description=(
        "Every profile's identity is a valid number in E.164 form (libphonenumber) or a valid "
        "email, as its kind says, and appears once; Phone and Email are well formed."
    ),
)
def profile_identities_valid(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    if incremental.derives_everything(context, warehouse):
        profiles = warehouse.read_table(PROFILE_TABLE)
    else:
        # Only the rows this run rewrote; the others passed when they were written.
        rewritten = warehouse.read_table(PROFILE_CHANGES_TABLE, columns=["identity"])
        profiles = warehouse.read_rows(PROFILE_TABLE, "identity", rewritten["identity"])
    if profiles.empty:
        return dg.AssetCheckResult(passed=True, metadata={"profiles": 0})
    errors = 0
    try:
        PROFILE_SCHEMA.validate(profiles, lazy=True)
    except pa.errors.SchemaErrors as failure:
        errors = len(failure.failure_cases)
    live = profiles[profiles["identity_kind"].notna()]
    phones = live.loc[live["identity_kind"] == "phone", "identity"]
    invalid_phones = int((normalize_phones(phones)["e164"] != phones).sum())
    emails = live.loc[live["identity_kind"] == "email", "identity"]
    invalid_emails = int((~emails.str.match(EMAIL_PATTERN)).sum())
    return dg.AssetCheckResult(
        passed=errors == 0 and invalid_phones == 0 and invalid_emails == 0,
        metadata={
            "profiles": len(profiles),
            "schema failures": errors,
            "invalid phone identities": invalid_phones,
            "invalid email identities": invalid_emails,
        },
    )


@dg.asset_check(
    asset=clevertap_profile_batches,
    blocking=True,
    description=(
        "Each upload batch holds at most the configured batch size (never above CleverTap's "
        "1,000); the identity each record is uploaded under (reconciliation may have chosen "
        "one CleverTap already held) is a valid E.164 number or email, and no two records are "
        "uploaded under one identity: CleverTap would merge those people."
    ),
)
def profile_batches_well_formed(
    warehouse: WarehouseResource, sync_config: SyncConfigResource
) -> dg.AssetCheckResult:
    limit = min(sync_config.load().clevertap.batch_size, CLEVERTAP_MAX_BATCH)
    batches = warehouse.read_table(PROFILE_BATCHES, columns=["batch", "identity", "record"])
    largest = _largest_batch(batches)
    uploaded = pd.Series(
        [orjson.loads(record).get("identity") for record in batches["record"]], dtype="object"
    )
    repeated = int(uploaded.duplicated().sum())
    invalid = _invalid_identities(uploaded, reconciled=uploaded != batches["identity"])
    return dg.AssetCheckResult(
        passed=largest <= limit and repeated == 0 and invalid == 0,
        metadata={
            "largest batch": largest,
            "limit": limit,
            "uploaded identities repeated": repeated,
            "invalid uploaded identities": invalid,
        },
    )


@dg.asset_check(
    asset=clevertap_event_batches,
    blocking=True,
    description=(
        "Every event and campaign trigger waiting to be sent has an identity and a name, and "
        "each event batch holds at most the configured batch size."
    ),
)
def event_batches_addressed(
    warehouse: WarehouseResource, sync_config: SyncConfigResource
) -> dg.AssetCheckResult:
    limit = min(sync_config.load().clevertap.batch_size, CLEVERTAP_MAX_BATCH)
    batches = warehouse.read_table(EVENT_BATCHES, columns=["batch", "kind", "identity", "name"])
    unaddressed = int((batches["identity"].isna() | batches["name"].isna()).sum())
    largest = _largest_batch(batches, by=["kind", "batch"])
    return dg.AssetCheckResult(
        passed=unaddressed == 0 and largest <= limit,
        metadata={"without identity": unaddressed, "largest batch": largest, "limit": limit},
    )


@dg.asset_check(
    asset=clevertap_profile_sync,
    description=(
        "Warns when the share of pushed profiles CleverTap (or the local rules) rejected is "
        "above quality.rejection_ceiling; rejected records are in the clevertap_rejections "
        "table (`ct-pipeline rejections`)."
    ),
)
def profile_rejection_share(
    warehouse: WarehouseResource, sync_config: SyncConfigResource
) -> dg.AssetCheckResult:
    return _rejection_share(
        warehouse, PROFILE_OUTCOMES, sync_config.load().quality.rejection_ceiling
    )


@dg.asset_check(
    asset=clevertap_event_sync,
    description=(
        "Warns when the share of stage events CleverTap (or the local rules) rejected in this "
        "run is above quality.rejection_ceiling; rejected events are in clevertap_rejections "
        "and their outbox rows are `rejected`."
    ),
)
def event_rejection_share(
    warehouse: WarehouseResource, sync_config: SyncConfigResource
) -> dg.AssetCheckResult:
    return _rejection_share(warehouse, EVENT_OUTCOMES, sync_config.load().quality.rejection_ceiling)


def _rejection_share(
    warehouse: WarehouseResource, table: str, ceiling: float
) -> dg.AssetCheckResult:
    outcomes = warehouse.read_table(table, columns=["outcome"])
    attempted = outcomes[outcomes["outcome"] != "dry_run"]
    rejected = int(attempted["outcome"].isin(["rejected", "rejected_locally"]).sum())
    share = rejected / max(len(attempted), 1)
    return dg.AssetCheckResult(
        passed=share <= ceiling,
        # After the upload, nothing is left to stop: a warning for the person in the UI.
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rejected": rejected,
            "attempted": len(attempted),
            "share": round(share, 4),
            "ceiling": ceiling,
        },
    )


def _largest_batch(batches: pd.DataFrame, by: list[str] | None = None) -> int:
    if batches.empty:
        return 0
    return int(batches.groupby(by or ["batch"]).size().max())


def _invalid_identities(identities: pd.Series, reconciled: pd.Series) -> int:
    """Identities that are neither an email nor an E.164 number; those reconciliation took
    from CleverTap's answers are also parsed with libphonenumber (the others were, in
    profile_identities_valid)."""
    text = identities.astype("str")
    email = text.str.match(EMAIL_PATTERN)
    phone = text.str.match(E164_PATTERN)
    shaped_badly = identities.isna() | ~(email | phone)
    checked = text[phone & reconciled.to_numpy()]
    parsed_badly = int((normalize_phones(checked)["e164"] != checked).sum()) if len(checked) else 0
    return int(shaped_badly.sum()) + parsed_badly


CHECKS = [
    mapped_fields_present,
    identity_coverage,
    no_identity_claimed_twice,
    profile_identities_valid,
    profile_batches_well_formed,
    event_batches_addressed,
    profile_rejection_share,
    event_rejection_share,
]
