"""Identities: who each CRM record is in CleverTap, which records are one person, who needs review.

The identity functions in `ct_pipeline.identity` do the work; these assets read the raw Zoho
tables, apply the configured policy and keep the results in the warehouse.
"""

import dagster as dg
import numpy as np
import pandas as pd

from ct_pipeline.assets import incremental, schemas
from ct_pipeline.assets.common import OWNERS, WAREHOUSE_KIND, warehouse_table_metadata
from ct_pipeline.assets.zoho import TABLES, zoho_cases, zoho_contacts, zoho_deals, zoho_leads
from ct_pipeline.config import IdentitySettings, SyncConfig, SyncConfigResource, identity_column
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
from ct_pipeline.warehouse.state import PERSON_CHANGES, request_full_derivation

GROUP = "identity"
IDENTITIES_TABLE = "contact_identities"
MEMBERS_TABLE = "duplicate_profiles"
REVIEW_TABLE = "identity_review_queue"
# Why records were grouped: the field and the masked or hashed value that linked them.
LINKS_TABLE = "duplicate_profile_links"
# The identity rows of queued records as they were before this derivation changed them, for
# the duplicate grouping to find who they linked to; emptied when the derivation finished.
PREVIOUS_TABLE = "contact_identities_previous"
# The records an incremental run derived again, for the profile and review assets.
SCOPE_TABLE = "derivation_scope"
# profile_attributes' table (named here: segments imports this module).
PROFILE_TABLE = "profile_attributes"
MEMBER_INDEXES = [["zoho_id"], ["group_id"], ["canonical_identity"]]

# `duplicate_profiles.status`: what happens to the person a record belongs to.
PUSH = "push"
NO_IDENTITY = "no_identity"
GROUP_TOO_LARGE = "duplicate_group_too_large"
IDENTITY_COLLISION = "identity_collision"

# What the duplicate grouping reads of contact_identities, besides the link columns.
GROUPING_COLUMNS = ["module", "zoho_id", "modified_time", "deal_count", "identity"]


@dg.asset(
    name=IDENTITIES_TABLE,
    group_name=GROUP,
    deps=[zoho_contacts, zoho_leads, zoho_deals, zoho_cases],
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
    queued = incremental.queued_people(warehouse)
    downstream = [MEMBERS_TABLE, LINKS_TABLE, REVIEW_TABLE, PROFILE_TABLE]
    everything = incremental.must_derive_everything(
        context, warehouse, queued, [IDENTITIES_TABLE, *downstream], config
    )
    if everything:
        identities = identify(person_records(warehouse, config.identity), config)
        with warehouse.transaction() as tx:
            tx.replace_table(IDENTITIES_TABLE, identities, key=["module", "zoho_id"])
            # Looked up by value in incremental runs.
            for column in ("zoho_id", *link_columns(config.identity).all):
                tx.create_index(IDENTITIES_TABLE, [column])
            # Until the last derivation asset finished, later runs derive everything too.
            request_full_derivation(tx, [PERSON_CHANGES])
            incremental.record_mode(tx, context.run.run_id, everything=True, config=config)
    else:
        identities = _identify_queued(warehouse, queued, config)
        with warehouse.transaction() as tx:
            incremental.record_mode(tx, context.run.run_id, everything=False, config=config)

    contacts = identities[identities["module"] == "Contacts"]
    identified = int(contacts["identity"].notna().sum())
    context.log.info(f"{identified} of {len(contacts)} Contacts have a usable identity")
    return dg.MaterializeResult(
        metadata={
            **warehouse_table_metadata(warehouse, IDENTITIES_TABLE),
            "records derived": len(identities),
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


def _identify_queued(
    warehouse: WarehouseResource, queued: pd.DataFrame, config: SyncConfig
) -> pd.DataFrame:
    """Identities of the queued records only; their rows before are kept for the grouping."""
    keys = incremental.keys_of(queued)
    identities = identify(person_records(warehouse, config.identity, keys), config)
    previous = incremental.rows_for_keys(warehouse, IDENTITIES_TABLE, keys)
    with warehouse.transaction() as tx:
        # A record queued again by a run that died keeps its first `previous` row.
        tx.upsert(PREVIOUS_TABLE, previous, key=["module", "zoho_id"], keep_existing=True)
        incremental.delete_keys(tx, IDENTITIES_TABLE, keys)
        tx.upsert(IDENTITIES_TABLE, identities, key=["module", "zoho_id"])
    return identities


def person_records(
    warehouse: WarehouseResource,
    settings: IdentitySettings,
    keys: set[tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """Contacts and Leads in one frame: module, zoho_id, modified_time, every person field
    the identity settings read (`linked_fields`; a field a module lacks is empty), deal_count.

    With `keys`, only those (module, zoho_id) records, read by id.
    """
    fields = list(settings.linked_fields())
    if keys is None:
        deals = warehouse.read_table(TABLES["Deals"], columns=["Contact_Name_id"])
    else:
        contact_ids = [zoho_id for module, zoho_id in keys if module == "Contacts"]
        deals = warehouse.read_rows(
            TABLES["Deals"], "Contact_Name_id", contact_ids, columns=["Contact_Name_id"]
        )
    deal_counts = deals["Contact_Name_id"].dropna().value_counts()
    frames = []
    for module in ("Contacts", "Leads"):
        stored = warehouse.column_names(TABLES[module])
        columns = [c for c in ("id", "Modified_Time", *fields) if c in stored]
        if keys is None:
            table = warehouse.read_table(TABLES[module], columns=columns)
        else:
            ids = [zoho_id for owner, zoho_id in keys if owner == module]
            table = warehouse.read_rows(TABLES[module], "id", ids, columns=columns)
        if table.empty:
            continue
        frame = pd.DataFrame(
            {
                "module": module,
                "zoho_id": table["id"].astype("str"),
                "modified_time": pd.to_datetime(table["Modified_Time"], utc=True),
            }
        )
        for column in fields:
            frame[column] = table[column].astype("str") if column in table else None
        counts = frame["zoho_id"].map(deal_counts) if module == "Contacts" else None
        frame["deal_count"] = 0 if counts is None else counts.fillna(0).astype("int64")
        frames.append(frame)
    if not frames:
        columns = ["module", "zoho_id", "modified_time", *fields, "deal_count"]
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


def link_columns(settings: IdentitySettings) -> incremental.LinkColumns:
    """The contact_identities columns of the linked fields: the duplicate grouping's links."""
    fields = settings.linked_fields().items()
    return incremental.LinkColumns(
        phones=tuple(identity_column(field, kind) for field, kind in fields if kind == "phone"),
        emails=tuple(identity_column(field, kind) for field, kind in fields if kind == "email"),
    )


def identify(records: pd.DataFrame, config: SyncConfig) -> pd.DataFrame:
    """Each record's identity under the policy, with every linked field normalised (phones in
    E.164, emails cleaned) in its `identity_column`."""
    policy = identity_policy(config)
    normalised = {
        field: normalize_phones(
            records[field], policy.region, mobile_field=field in policy.mobile_columns
        )
        if kind == "phone"
        else normalize_emails(records[field])
        for field, kind in config.identity.linked_fields().items()
    }
    chosen = choose_identity(records, policy, normalised)
    identities = pd.DataFrame(
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
        }
    )
    for field, kind in config.identity.linked_fields().items():
        value = normalised[field]["e164" if kind == "phone" else "email"]
        identities[identity_column(field, kind)] = value
    return identities


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
        "canonical record (by default Contact over Lead, then with deals, then most recently "
        "modified: identity.canonical_order and module_priority) and a canonical identity; "
        "`status` says whether the person is pushed, and if not why."
    ),
)
def duplicate_profiles(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    sync_config: SyncConfigResource,
) -> dg.MaterializeResult:
    settings = sync_config.load().identity
    if incremental.derives_everything(context, warehouse):
        columns = [*GROUPING_COLUMNS, *link_columns(settings).all]
        identities = warehouse.read_table(IDENTITIES_TABLE, columns=columns)
        members, groups = group_members(identities, settings)
        with warehouse.transaction() as tx:
            tx.replace_table(MEMBERS_TABLE, members, key=["module", "zoho_id"])
            tx.replace_table(LINKS_TABLE, groups.links.drop(columns=["value"]))
            for columns in MEMBER_INDEXES:
                tx.create_index(MEMBERS_TABLE, columns)
            tx.create_index(LINKS_TABLE, ["record_id"])
    else:
        members, groups = _regroup_queued(warehouse, settings)

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


def _regroup_queued(
    warehouse: WarehouseResource, settings: IdentitySettings
) -> tuple[pd.DataFrame, DuplicateGroups]:
    """Group again only the queued records and those they link or linked to; fix the collision
    status of people elsewhere who claim an identity these records claim, or claimed."""
    seeds = incremental.keys_of(incremental.queued_people(warehouse))
    if not seeds:
        nothing = pd.DataFrame()
        warehouse.replace_table(SCOPE_TABLE, pd.DataFrame({"module": [], "zoho_id": []}))
        members = warehouse.read_rows(MEMBERS_TABLE, "zoho_id", [])
        return members, DuplicateGroups(nothing, nothing, nothing, nothing)
    previous = incremental.rows_for_keys(warehouse, PREVIOUS_TABLE, seeds)
    links = link_columns(settings)
    rows, suppressed = incremental.duplicate_scope(
        warehouse,
        IDENTITIES_TABLE,
        MEMBERS_TABLE,
        seeds,
        previous,
        settings.max_records_per_value,
        links,
    )
    members, groups = group_members(
        incremental.without_suppressed(rows, suppressed, links), settings
    )
    scope = incremental.keys_of(rows) | seeds
    before = incremental.rows_for_keys(warehouse, MEMBERS_TABLE, scope)
    claimed = set(members["canonical_identity"].dropna()) | set(
        before["canonical_identity"].dropna()
    )
    others = warehouse.read_rows(MEMBERS_TABLE, "canonical_identity", claimed)
    others = others[~incremental.in_keys(others, scope)]
    members, others = _with_collisions(members, others)
    changed_others = others[others["status"] != others["status_before"]].drop(
        columns=["status_before"]
    )

    with warehouse.transaction() as tx:
        incremental.delete_keys(tx, MEMBERS_TABLE, scope)
        tx.upsert(
            MEMBERS_TABLE,
            pd.concat([members, changed_others], ignore_index=True),
            key=["module", "zoho_id"],
        )
        tx.execute_in(f"DELETE FROM {LINKS_TABLE} WHERE record_id IN :keys", [z for _, z in scope])
        tx.append(LINKS_TABLE, groups.links.drop(columns=["value"]))
        touched = pd.DataFrame(
            sorted(scope | incremental.keys_of(changed_others)), columns=["module", "zoho_id"]
        )
        tx.replace_table(SCOPE_TABLE, touched, key=["module", "zoho_id"])
    return members, groups


def _with_collisions(
    members: pd.DataFrame, others: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Statuses of `members` and of the `others` claiming the same identities, with an identity
    claimed by two different people (canonical ids) marked as a collision for all of them."""
    others = others.assign(status_before=others["status"])
    both = pd.concat([members.assign(_own=True), others.assign(_own=False)], ignore_index=True)
    claims = both.dropna(subset=["canonical_identity"]).drop_duplicates(
        ["canonical_identity", "canonical_id"]
    )
    people = claims.groupby("canonical_identity").size()
    collision = both["canonical_identity"].map(people).fillna(0).to_numpy() > 1
    both["status"] = person_status(both["canonical_identity"], collision, both["group_status"])
    own = both["_own"].to_numpy(dtype=bool)
    return (
        both[own].drop(columns=["_own", "status_before"]).reset_index(drop=True),
        both[~own].drop(columns=["_own"]).reset_index(drop=True),
    )


def person_status(
    canonical_identity: pd.Series, collision: np.ndarray, group_status: pd.Series
) -> pd.Series:
    """What happens to each record's person: pushed, or why not (the most severe reason)."""
    status = pd.Series(PUSH, index=canonical_identity.index, dtype="str")
    status[canonical_identity.isna().to_numpy()] = NO_IDENTITY
    status[np.asarray(collision, dtype=bool)] = IDENTITY_COLLISION
    status[(group_status.astype("str") == OVERSIZED).to_numpy()] = GROUP_TOO_LARGE
    return status


def group_members(
    identities: pd.DataFrame, settings: IdentitySettings
) -> tuple[pd.DataFrame, DuplicateGroups]:
    """One row per record: its group, whether it is canonical, and what happens to the person."""
    links = link_columns(settings)
    options = GroupingOptions(
        id_column="zoho_id",
        module_column="module",
        modified_column="modified_time",
        deals_column="deal_count",
        identity_column="identity",
        phone_columns=links.phones,
        email_columns=links.emails,
        max_records_per_value=settings.max_records_per_value,
        max_group_size=settings.max_group_size,
        module_priority=tuple(settings.module_priority),
        canonical_order=tuple(settings.canonical_order),
    )
    groups = find_duplicate_groups(identities, options)
    found = groups.records
    status = person_status(
        found["canonical_identity"], found["identity_collision"].to_numpy(), found["group_status"]
    )
    canonical = found["canonical_identity"].astype("str")
    group_id = stable_group_ids(identities["zoho_id"], found["group_id"])
    renumber = pd.Series(group_id, index=found.index).groupby(found["group_id"].to_numpy()).first()
    groups.links["group_id"] = groups.links["group_id"].map(renumber).astype("int64")
    members = pd.DataFrame(
        {
            "module": identities["module"].astype("str"),
            "zoho_id": identities["zoho_id"].astype("str"),
            "group_id": group_id,
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
    if incremental.derives_everything(context, warehouse):
        # Only the records held back, with their own reason: a small share of the tables.
        held = warehouse.read_sql(
            f"SELECT m.module, m.zoho_id, m.status, i.reason FROM {MEMBERS_TABLE} m "
            f"LEFT JOIN {IDENTITIES_TABLE} i ON i.module = m.module AND i.zoho_id = m.zoho_id "
            "WHERE m.status <> :push",
            {"push": PUSH},
        )
        queue = review_queue(held, held[["module", "zoho_id", "reason"]])
        warehouse.replace_table(REVIEW_TABLE, queue, key=["module", "zoho_id"])
    else:
        # Only the records this run grouped again (or whose collision status changed).
        scope = incremental.keys_of(warehouse.read_table(SCOPE_TABLE))
        members = incremental.rows_for_keys(warehouse, MEMBERS_TABLE, scope)
        identities = incremental.rows_for_keys(
            warehouse, IDENTITIES_TABLE, scope, ["module", "zoho_id", "reason"]
        )
        queue = review_queue(members, identities)
        with warehouse.transaction() as tx:
            incremental.delete_keys(tx, REVIEW_TABLE, scope)
            tx.upsert(REVIEW_TABLE, queue, key=["module", "zoho_id"])

    by_reason = queue["reason"].value_counts().to_dict()
    context.log.info(f"{len(queue)} records in the review queue: {by_reason}")
    return dg.MaterializeResult(
        metadata={
            **warehouse_table_metadata(warehouse, REVIEW_TABLE),
            "review queue": len(queue),
            "by reason": dg.MetadataValue.json(by_reason),
        }
    )


def stable_group_ids(zoho_ids: pd.Series, groups: pd.Series) -> np.ndarray:
    """A group number that depends on who is in the group, not on the order records were read
    in: a hash of the group's smallest Zoho id. An incremental run that groups a few records
    again gives them the numbers a full recompute would."""
    smallest = zoho_ids.astype("str").groupby(groups.to_numpy()).transform("min")
    hashed = pd.util.hash_array(smallest.to_numpy(dtype=object))
    return (hashed >> np.uint64(1)).astype(np.int64)


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
