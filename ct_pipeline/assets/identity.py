"""Identities: who each CRM record is in CleverTap, which records are one person, who needs review.

The identity functions in `ct_pipeline.identity` do the work; these assets read the raw Zoho
tables, apply the configured policy and keep the results in the warehouse.
"""

import dagster as dg
import pandas as pd

from ct_pipeline.assets import schemas
from ct_pipeline.assets.common import OWNERS, WAREHOUSE_KIND, warehouse_table_metadata
from ct_pipeline.assets.zoho import TABLES, zoho_contacts, zoho_deals, zoho_leads
from ct_pipeline.config import SyncConfig, SyncConfigResource
from ct_pipeline.identity import (
    DuplicateGroups,
    GroupingOptions,
    IdentityPolicy,
    choose_identity,
    find_duplicate_groups,
    normalize_emails,
    normalize_phones,
)
from ct_pipeline.identity.groups import OVERSIZED
from ct_pipeline.warehouse import WarehouseResource

GROUP = "identity"
IDENTITIES_TABLE = "contact_identities"
MEMBERS_TABLE = "duplicate_profiles"
REVIEW_TABLE = "identity_review_queue"
# Why records were grouped: the field and the masked or hashed value that linked them.
LINKS_TABLE = "duplicate_profile_links"

# `duplicate_profiles.status`: what happens to the person a record belongs to.
PUSH = "push"
NO_IDENTITY = "no_identity"
GROUP_TOO_LARGE = "duplicate_group_too_large"
IDENTITY_COLLISION = "identity_collision"

PERSON_COLUMNS = ["Mobile", "Phone", "Email", "Secondary_Email"]


@dg.asset(
    name=IDENTITIES_TABLE,
    group_name=GROUP,
    deps=[zoho_contacts, zoho_leads, zoho_deals],
    kinds={"pandas", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata={"dagster/column_schema": schemas.CONTACT_IDENTITIES},
    description=(
        "One row per Zoho Contact and Lead: its phone numbers in E.164 (libphonenumber), its "
        "email trimmed and lower-cased, and the CleverTap identity the configured policy picks "
        "(phone or email first, with fallback), with the field it came from, or the reason it "
        "has none."
    ),
)
def contact_identities(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    sync_config: SyncConfigResource,
) -> dg.MaterializeResult:
    config = sync_config.load()
    records = person_records(warehouse)
    identities = identify(records, config)
    warehouse.replace_table(IDENTITIES_TABLE, identities, key=["module", "zoho_id"])

    contacts = identities[identities["module"] == "Contacts"]
    identified = int(contacts["identity"].notna().sum())
    context.log.info(f"{identified} of {len(contacts)} Contacts have a usable identity")
    return dg.MaterializeResult(
        metadata={
            **warehouse_table_metadata(warehouse, IDENTITIES_TABLE),
            "contacts": len(contacts),
            "leads": int((identities["module"] == "Leads").sum()),
            "with identity": identified,
            "identity coverage": round(identified / max(len(contacts), 1), 4),
            "by source field": dg.MetadataValue.json(
                identities["identity_source"].value_counts().to_dict()
            ),
            "reasons for no identity": dg.MetadataValue.json(
                identities["reason"].value_counts().to_dict()
            ),
        }
    )


def person_records(warehouse: WarehouseResource) -> pd.DataFrame:
    """Contacts and Leads in one frame: module, zoho_id, person fields, deal_count, modified."""
    deals = warehouse.read_table(TABLES["Deals"], columns=["Contact_Name_id"])
    deal_counts = deals["Contact_Name_id"].dropna().value_counts()
    frames = []
    for module in ("Contacts", "Leads"):
        table = warehouse.read_table(TABLES[module])
        if table.empty:
            continue
        frame = pd.DataFrame(
            {
                "module": module,
                "zoho_id": table["id"].astype("str"),
                "modified_time": pd.to_datetime(table["Modified_Time"], utc=True),
            }
        )
        for column in PERSON_COLUMNS:
            frame[column] = table[column].astype("str") if column in table else None
        counts = frame["zoho_id"].map(deal_counts) if module == "Contacts" else None
        frame["deal_count"] = 0 if counts is None else counts.fillna(0).astype("int64")
        frames.append(frame)
    if not frames:
        columns = ["module", "zoho_id", "modified_time", *PERSON_COLUMNS, "deal_count"]
        return pd.DataFrame({column: pd.Series(dtype="str") for column in columns})
    return pd.concat(frames, ignore_index=True)


def identity_policy(config: SyncConfig) -> IdentityPolicy:
    """The identity functions' policy from the sync configuration."""
    settings = config.identity
    return IdentityPolicy(
        prefer=settings.order[0],
        phone_columns=tuple(settings.phone_fields) if "phone" in settings.order else (),
        email_columns=tuple(settings.email_fields) if "email" in settings.order else (),
        mobile_columns=("Mobile",),
        mobile_only=settings.mobile_only,
        region=settings.default_region,
    )


def identify(records: pd.DataFrame, config: SyncConfig) -> pd.DataFrame:
    """Each record's identity under the policy, with its normalised phone and email."""
    chosen = choose_identity(records, identity_policy(config))
    region = config.identity.default_region
    mobile = normalize_phones(records["Mobile"], region, mobile_field=True)["e164"]
    phone = normalize_phones(records["Phone"], region)["e164"]
    email = normalize_emails(records["Email"])["email"]
    secondary = normalize_emails(records["Secondary_Email"])["email"]
    return pd.DataFrame(
        {
            "module": records["module"],
            "zoho_id": records["zoho_id"],
            "modified_time": records["modified_time"],
            "deal_count": records["deal_count"],
            "identity": chosen["identity"],
            "identity_kind": chosen["identity_kind"],
            "identity_source": chosen["identity_source"],
            "identity_risk": chosen["identity_risk"],
            "reason": chosen["no_identity_reason"],
            "mobile_e164": mobile,
            "phone_e164": phone,
            "email": email,
            "secondary_email": secondary,
        }
    )


@dg.asset(
    name=MEMBERS_TABLE,
    group_name=GROUP,
    deps=[contact_identities],
    kinds={"pandas", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata={"dagster/column_schema": schemas.DUPLICATE_PROFILES},
    description=(
        "Records of one person grouped together: Contacts and Leads linked by a shared phone or "
        "email, never through a placeholder or a value shared by many records. Each group has a "
        "canonical record (Contact over Lead, then with deals, then most recently modified) "
        "and a canonical identity; `status` says whether the person is pushed, and if not why."
    ),
)
def duplicate_profiles(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    sync_config: SyncConfigResource,
) -> dg.MaterializeResult:
    settings = sync_config.load().identity
    identities = warehouse.read_table(IDENTITIES_TABLE)
    members, groups = group_members(
        identities, settings.max_records_per_value, settings.max_group_size
    )
    links = groups.links.drop(columns=["value"])
    with warehouse.transaction() as tx:
        tx.replace_table(MEMBERS_TABLE, members, key=["module", "zoho_id"])
        tx.replace_table(LINKS_TABLE, links)

    sizes = members.groupby("group_id").size()
    statuses = members.drop_duplicates("group_id")["status"].value_counts().to_dict()
    context.log.info(f"{int((sizes > 1).sum())} duplicate groups; people by status {statuses}")
    return dg.MaterializeResult(
        metadata={
            **warehouse_table_metadata(warehouse, MEMBERS_TABLE),
            "duplicate groups": int((sizes > 1).sum()),
            "records in duplicate groups": int(sizes[sizes > 1].sum()),
            "largest group": int(sizes.max()) if len(sizes) else 0,
            "values too shared to link": len(groups.suppressed),
            "identities claimed by several people": len(groups.collisions),
            "people by status": dg.MetadataValue.json(statuses),
        }
    )


def group_members(
    identities: pd.DataFrame, max_records_per_value: int, max_group_size: int
) -> tuple[pd.DataFrame, DuplicateGroups]:
    """One row per record: its group, whether it is canonical, and what happens to the person."""
    options = GroupingOptions(
        id_column="zoho_id",
        module_column="module",
        modified_column="modified_time",
        deals_column="deal_count",
        identity_column="identity",
        phone_columns=("mobile_e164", "phone_e164"),
        email_columns=("email", "secondary_email"),
        max_records_per_value=max_records_per_value,
        max_group_size=max_group_size,
    )
    groups = find_duplicate_groups(identities, options)
    found = groups.records
    status = pd.Series(PUSH, index=found.index, dtype="str")
    status[found["canonical_identity"].isna()] = NO_IDENTITY
    status[found["identity_collision"].astype(bool)] = IDENTITY_COLLISION
    status[found["group_status"].astype("str") == OVERSIZED] = GROUP_TOO_LARGE
    canonical = found["canonical_identity"].astype("str")
    members = pd.DataFrame(
        {
            "module": identities["module"].astype("str"),
            "zoho_id": identities["zoho_id"].astype("str"),
            "group_id": found["group_id"].astype("int64"),
            "group_size": found["group_size"].astype("int64"),
            "group_status": found["group_status"].astype("str"),
            "is_canonical": found["is_canonical"].astype(bool),
            "canonical_id": found["canonical_id"].astype("str"),
            "canonical_identity": canonical,
            "canonical_kind": canonical.str.startswith("+").map({True: "phone", False: "email"}),
            "status": status,
        }
    )
    return members, groups


@dg.asset(
    name=REVIEW_TABLE,
    group_name=GROUP,
    deps=[duplicate_profiles],
    kinds={"pandas", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata={"dagster/column_schema": schemas.IDENTITY_REVIEW_QUEUE},
    description=(
        "Records that are not pushed to CleverTap and need a person to look: no usable phone or "
        "email, a duplicate group too large to merge safely, or an identity two different "
        "people claim. Holds the Zoho id, the module and the reason, never the phone or email."
    ),
)
def identity_review_queue(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    members = warehouse.read_table(MEMBERS_TABLE)
    identities = warehouse.read_table(IDENTITIES_TABLE, columns=["module", "zoho_id", "reason"])
    queue = review_queue(members, identities)
    warehouse.replace_table(REVIEW_TABLE, queue, key=["module", "zoho_id"])

    by_reason = queue["reason"].value_counts().to_dict()
    context.log.info(f"{len(queue)} records in the review queue: {by_reason}")
    return dg.MaterializeResult(
        metadata={
            **warehouse_table_metadata(warehouse, REVIEW_TABLE),
            "review queue": len(queue),
            "by reason": dg.MetadataValue.json(by_reason),
        }
    )


def review_queue(members: pd.DataFrame, identities: pd.DataFrame) -> pd.DataFrame:
    """Records held back from CleverTap, with the reason (no personal data)."""
    held = members[members["status"] != PUSH][["module", "zoho_id", "status"]]
    reasons = identities.set_index(["module", "zoho_id"])["reason"]
    keys = pd.MultiIndex.from_frame(held[["module", "zoho_id"]])
    own_reason = pd.Series(reasons.reindex(keys).to_numpy(), index=held.index)
    held = held.assign(
        reason=held["status"].where(held["status"] != NO_IDENTITY, own_reason.fillna(NO_IDENTITY))
    )
    return held[["zoho_id", "module", "reason"]].reset_index(drop=True)
