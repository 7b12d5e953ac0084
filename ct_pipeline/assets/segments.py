"""`profile_attributes`: one row per CleverTap identity, with the attributes teams segment on."""

import dagster as dg
import pandas as pd

from ct_pipeline.assets import incremental, schemas
from ct_pipeline.assets.common import (
    OWNERS,
    WAREHOUSE_KIND,
    mask_identity,
    warehouse_table_metadata,
)
from ct_pipeline.assets.identity import (
    IDENTITIES_TABLE,
    MEMBERS_TABLE,
    PREVIOUS_TABLE,
    PUSH,
    SCOPE_TABLE,
    duplicate_profiles,
)
from ct_pipeline.assets.zoho import DELETED_RECORDS, TABLES, zoho_cases, zoho_contacts, zoho_deals
from ct_pipeline.config import FieldMapping, SyncConfig, SyncConfigResource, load_sync_config
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.warehouse.state import PUSHED_PROFILES, fold_accepted_profiles

GROUP = "segments"
TABLE = "profile_attributes"
# The identities whose rows an incremental run rewrote, for clevertap_profile_batches.
CHANGES_TABLE = "profile_attribute_changes"
# How a profile's Email and Phone come from the identity columns (first present wins).
REACHABLE = {"Email": ("email", "secondary_email"), "Phone": ("mobile_e164", "phone_e164")}
REACHABLE_COLUMNS = [column for columns in REACHABLE.values() for column in columns]
# What the profiles are built from, beyond the mapped Contact fields.
MEMBER_COLUMNS = [
    "module",
    "zoho_id",
    "is_canonical",
    "status",
    "canonical_identity",
    "canonical_kind",
]
DEAL_COLUMNS = ["id", "Contact_Name_id", "Stage", "Modified_Time"]
CASE_COLUMNS = ["Related_To_id", "Priority", "Status"]

# Attributes every profile carries besides the configured mappings.
BUILT_IN_COLUMNS = [
    "Email",
    "Phone",
    "crm_contact_id",
    "crm_deal_stage",
    "has_open_escalation",
    "crm_deleted",
]


PREVIEW_ROWS = 5
# Profile columns that identify a person; the UI preview never shows them.
PERSONAL_COLUMNS = {"Name", "Email", "Phone", "DOB", "modified_time"}


class MissingMappedFieldError(ValueError):
    """A mapped Zoho field is absent from the extracted records (renamed or removed in Zoho)."""


@dg.asset(
    name=TABLE,
    group_name=GROUP,
    deps=[duplicate_profiles, zoho_contacts, zoho_deals, zoho_cases],
    kinds={"pandas", WAREHOUSE_KIND},
    owners=OWNERS,
    # The configured mappings are columns too, so the schema is read from the sync
    # configuration when the code location loads (a materialisation records the actual one).
    metadata={"dagster/column_schema": schemas.profile_attributes_schema(load_sync_config())},
    description=(
        "One row per person to push to CleverTap, keyed by the identity the app's SDK uses: "
        "the configured Zoho field mappings plus Email, Phone (E.164), crm_contact_id, "
        "crm_deal_stage (the stage of the Contact's latest open deal), has_open_escalation (an "
        "open Case at an escalation priority) and crm_deleted for Contacts deleted in Zoho. "
        "Only canonical records of duplicate groups with a usable, uncontested identity."
    ),
)
def profile_attributes(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    sync_config: SyncConfigResource,
) -> dg.MaterializeResult:
    config = sync_config.load()
    # Hashes a run that died mid-upload left in the journal count as pushed from here on.
    fold_accepted_profiles(warehouse)
    if incremental.derives_everything(context, warehouse):
        profiles, tombstones = _all_profiles(warehouse, config)
        table = with_tombstones(profiles, tombstones)
        with warehouse.transaction() as tx:
            tx.replace_table(TABLE, table, key=["identity"])
            tx.create_index(TABLE, ["crm_contact_id"])
            if tx.table_exists(PUSHED_PROFILES):
                tx.create_index(PUSHED_PROFILES, ["contact_id"])
    else:
        profiles, tombstones = _queued_profiles(warehouse, config)
        table = with_tombstones(profiles, tombstones)
    context.log.info(
        f"{len(profiles)} profiles, {int(profiles['has_open_escalation'].sum())} escalated, "
        f"{len(tombstones)} deleted Contacts flagged"
    )
    return dg.MaterializeResult(
        metadata={
            **warehouse_table_metadata(warehouse, TABLE),
            "profiles": len(profiles),
            "with open escalation": int(profiles["has_open_escalation"].sum()),
            "with an open deal": int(profiles["crm_deal_stage"].notna().sum()),
            "deleted contacts flagged": len(tombstones),
            "preview (masked)": dg.MetadataValue.md(masked_preview(profiles)),
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name, str(dtype)) for name, dtype in table.dtypes.items()]
            ),
        }
    )


def with_tombstones(profiles: pd.DataFrame, tombstones: pd.DataFrame) -> pd.DataFrame:
    """Profiles and deleted Contacts' flags in one frame, typed as the profiles are, so the
    table's column types do not depend on whether any Contact was deleted."""
    if tombstones.empty:
        return profiles
    aligned = tombstones.reindex(columns=profiles.columns)
    for column in profiles.columns:
        if column not in tombstones:
            aligned[column] = aligned[column].astype(profiles[column].dtype)
    return pd.concat([profiles, aligned], ignore_index=True)


def _all_profiles(
    warehouse: WarehouseResource, config: SyncConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every profile, and the deleted Contacts' flags, from whole tables."""
    members = warehouse.read_table(MEMBERS_TABLE, columns=MEMBER_COLUMNS)
    identities = warehouse.read_table(IDENTITIES_TABLE, columns=["zoho_id", *REACHABLE_COLUMNS])
    stored = warehouse.column_names(TABLES["Contacts"])
    wanted = ["id", "Modified_Time", *(mapping.zoho for mapping in config.profile.mappings)]
    contacts = warehouse.read_table(TABLES["Contacts"], columns=[c for c in wanted if c in stored])
    deals = _read_present(warehouse, TABLES["Deals"], DEAL_COLUMNS)
    cases = _read_present(warehouse, TABLES["Cases"], CASE_COLUMNS)
    profiles = build_profile_attributes(members, identities, contacts, deals, cases, config)
    tombstones = _deleted_contact_profiles(warehouse, config)
    # An identity still claimed by a live record keeps that record's profile.
    if len(tombstones):
        tombstones = tombstones[~tombstones["identity"].isin(profiles["identity"])]
    return profiles, tombstones


def _read_present(warehouse: WarehouseResource, table: str, columns: list[str]) -> pd.DataFrame:
    """`columns` of a table, those it has (a module never synced has none)."""
    stored = warehouse.column_names(table)
    return warehouse.read_table(table, columns=[c for c in columns if c in stored])


def _queued_profiles(
    warehouse: WarehouseResource, config: SyncConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild the profiles of the records this run derived again, and of everyone sharing an
    Email or Phone value with them (whether a value is unshared depends on all its holders)."""
    scope = incremental.keys_of(warehouse.read_table(SCOPE_TABLE))
    now = incremental.rows_for_keys(warehouse, IDENTITIES_TABLE, scope)
    before = incremental.rows_for_keys(warehouse, PREVIOUS_TABLE, scope)
    concern = {
        field: set(_reachable(now, field).dropna()) | set(_reachable(before, field).dropna())
        for field in REACHABLE
    }
    holders = [now]
    for field, columns in REACHABLE.items():
        for column in columns:
            holders.append(warehouse.read_rows(IDENTITIES_TABLE, column, concern[field]))
    holders = [frame for frame in holders if len(frame)]
    found = (
        pd.concat(holders, ignore_index=True).drop_duplicates(["module", "zoho_id"])
        if holders
        else now
    )
    holding = pd.Series(False, index=found.index)
    for field in REACHABLE:
        holding |= _reachable(found, field).isin(concern[field])
    keys = scope | incremental.keys_of(found[holding])

    members = incremental.rows_for_keys(warehouse, MEMBERS_TABLE, keys)
    identities = incremental.rows_for_keys(warehouse, IDENTITIES_TABLE, keys)
    contact_ids = sorted(zoho_id for module, zoho_id in keys if module == "Contacts")
    contact_ids += sorted(zoho_id for module, zoho_id in keys if module == "Leads")
    contacts = warehouse.read_rows(TABLES["Contacts"], "id", contact_ids)
    if contacts.empty:
        contacts = warehouse.read_sql(f"SELECT * FROM {TABLES['Contacts']} WHERE 1 = 0")
    deals = warehouse.read_rows(TABLES["Deals"], "Contact_Name_id", contact_ids)
    cases = warehouse.read_rows(TABLES["Cases"], "Related_To_id", contact_ids)
    profiles = build_profile_attributes(members, identities, contacts, deals, cases, config)

    stored = warehouse.read_rows(TABLE, "crm_contact_id", contact_ids)
    stored_live = stored[stored["crm_deleted"].isna()] if "crm_deleted" in stored else stored
    for field in REACHABLE:
        # Values none of the changed records holds, now or before, keep their stored answer.
        kept = stored_live.set_index("crm_contact_id")[field] if len(stored_live) else None
        own = _reachable(identities.set_index("zoho_id").loc[profiles["crm_contact_id"]], field)
        own = own.reset_index(drop=True)
        settled = (own.isna() | own.isin(concern[field])).to_numpy()
        if kept is not None:
            profiles[field] = profiles[field].where(settled, profiles["crm_contact_id"].map(kept))

    replaced = set(stored["identity"]) | set(profiles["identity"])
    tombstones = _deleted_contact_profiles(
        warehouse, config, identities=replaced, contact_ids=contact_ids
    )
    with warehouse.transaction() as tx:
        tx.execute_in(f"DELETE FROM {TABLE} WHERE crm_contact_id IN :keys", contact_ids)
        tx.execute_in(f"DELETE FROM {TABLE} WHERE identity IN :keys", profiles["identity"])
        tx.upsert(TABLE, profiles, key=["identity"])
        if len(tombstones):
            claimed = tx.read_rows(TABLE, "identity", tombstones["identity"], ["identity"])
            tombstones = tombstones[~tombstones["identity"].isin(claimed["identity"])]
            tx.upsert(TABLE, tombstones, key=["identity"])
        flagged = set(tombstones["identity"]) if len(tombstones) else set()
        changed = pd.DataFrame({"identity": sorted(replaced | flagged)})
        tx.replace_table(CHANGES_TABLE, changed.astype("str"), key=["identity"])
    return profiles, tombstones


def _reachable(rows: pd.DataFrame, field: str) -> pd.Series:
    """A profile's Email or Phone before unsharing: the first of its identity columns set."""
    first, second = REACHABLE[field]
    if rows.empty or first not in rows:
        return pd.Series(dtype="str", index=rows.index)
    return rows[first].fillna(rows[second]).astype("str")


def masked_preview(profiles: pd.DataFrame, rows: int = PREVIEW_ROWS) -> str:
    """A few profiles as Markdown, personal fields masked or left out, for the Dagster UI."""
    sample = profiles.head(rows)
    shown = [c for c in sample.columns if c not in PERSONAL_COLUMNS and c != "identity"]
    preview = sample[shown].copy()
    preview.insert(0, "identity", sample["identity"].map(mask_identity))
    return preview.to_markdown(index=False)


def build_profile_attributes(
    members: pd.DataFrame,
    identities: pd.DataFrame,
    contacts: pd.DataFrame,
    deals: pd.DataFrame,
    cases: pd.DataFrame,
    config: SyncConfig,
) -> pd.DataFrame:
    """The profile rows for the canonical records that will be pushed."""
    modules = ["Contacts", "Leads"] if config.zoho.profiles_from_leads else ["Contacts"]
    pushed = members[
        members["is_canonical"].astype(bool)
        & (members["status"] == PUSH)
        & members["module"].isin(modules)
    ]
    missing = [m.zoho for m in config.profile.mappings if m.zoho not in contacts.columns]
    if missing:
        raise MissingMappedFieldError(
            f"mapped Zoho fields missing from zoho_contacts: {', '.join(missing)}; they were "
            "renamed or removed in Zoho, or are not readable by the API user: fix "
            "profile.mappings in the sync configuration"
        )

    source = contacts.set_index("id")
    rows = pushed[["zoho_id", "canonical_identity", "canonical_kind"]]
    rows = rows[rows["zoho_id"].isin(source.index)].reset_index(drop=True)
    record = source.loc[rows["zoho_id"]].reset_index(drop=True)
    reachable = identities.set_index("zoho_id").loc[rows["zoho_id"]].reset_index(drop=True)

    profile = pd.DataFrame(
        {
            "identity": rows["canonical_identity"].astype("str"),
            "identity_kind": rows["canonical_kind"].astype("str"),
            "crm_contact_id": rows["zoho_id"].astype("str"),
            "modified_time": pd.to_datetime(record["Modified_Time"], utc=True),
        }
    )
    for mapping in config.profile.mappings:
        profile[mapping.clevertap] = _cast(record[mapping.zoho], mapping)
    profile["Email"] = _unshared(reachable["email"].fillna(reachable["secondary_email"]))
    profile["Phone"] = _unshared(reachable["mobile_e164"].fillna(reachable["phone_e164"]))
    profile["crm_deal_stage"] = profile["crm_contact_id"].map(
        latest_open_stage(deals, config.deal_events.closed_stages)
    )
    escalated = contacts_with_open_escalation(cases, config)
    profile["has_open_escalation"] = profile["crm_contact_id"].isin(escalated).astype("boolean")
    profile["crm_deleted"] = pd.array([pd.NA] * len(profile), dtype="boolean")
    return profile


def _unshared(values: pd.Series) -> pd.Series:
    """Values held by one profile only: CleverTap may treat Email and Phone as identities, and
    a value two profiles carry could make it merge two different people."""
    values = values.astype("str")
    return values.where(~values.duplicated(keep=False), None)


def latest_open_stage(deals: pd.DataFrame, closed_stages: list[str]) -> pd.Series:
    """The stage of each Contact's most recently modified open deal, by Contact id."""
    if deals.empty or "Contact_Name_id" not in deals:
        return pd.Series(dtype="str")
    open_deals = deals[~deals["Stage"].isin(closed_stages) & deals["Contact_Name_id"].notna()]
    # Ties on Modified_Time (common: bulk edits share a second) go to the larger id, so the
    # answer never depends on the order rows were read in.
    ordered = open_deals.sort_values(["Modified_Time", "id"], kind="stable")
    latest = ordered.drop_duplicates("Contact_Name_id", keep="last")
    return latest.set_index("Contact_Name_id")["Stage"].astype("str")


def contacts_with_open_escalation(cases: pd.DataFrame, config: SyncConfig) -> set[str]:
    """Contact ids with at least one open Case at an escalation priority."""
    if cases.empty or "Related_To_id" not in cases:
        return set()
    rule = config.escalation
    open_escalations = cases[
        cases["Priority"].isin(rule.case_priorities) & cases["Status"].isin(rule.open_statuses)
    ]
    return set(open_escalations["Related_To_id"].dropna())


def _cast(values: pd.Series, mapping: FieldMapping) -> pd.Series:
    if mapping.type == "string":
        text = values.astype("str").str.strip()
        return text.where(text != "", None)
    if mapping.type == "number":
        return pd.to_numeric(values, errors="coerce").astype("float64")
    if mapping.type == "integer":
        return pd.to_numeric(values, errors="coerce").round().astype("Int64")
    if mapping.type == "boolean":
        return values.map(_boolean).astype("boolean")
    return pd.to_datetime(values, errors="coerce", utc=True)


def _boolean(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if value is None or value != value:
        return None
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    return None


def _deleted_contact_profiles(
    warehouse: WarehouseResource,
    config: SyncConfig,
    identities: set[str] | None = None,
    contact_ids: list[str] | None = None,
) -> pd.DataFrame:
    """`crm_deleted = true` for pushed profiles whose Contact was deleted (policy `flag`).

    With `identities` and `contact_ids`, only the pushed profiles with one of those identities
    or belonging to one of those Contacts (read by index).
    """
    if config.clevertap.deleted_contacts != "flag":
        return pd.DataFrame()
    if not (warehouse.table_exists(DELETED_RECORDS) and warehouse.table_exists(PUSHED_PROFILES)):
        return pd.DataFrame()
    if identities is None:
        flagged = warehouse.read_sql(
            f"SELECT p.identity, p.contact_id, d.deleted_time FROM {PUSHED_PROFILES} p "
            f"JOIN {DELETED_RECORDS} d ON d.id = p.contact_id AND d.module = 'Contacts'"
        )
    else:
        columns = ["identity", "contact_id"]
        pushed = pd.concat(
            [
                warehouse.read_rows(PUSHED_PROFILES, "identity", identities, columns),
                warehouse.read_rows(PUSHED_PROFILES, "contact_id", contact_ids or [], columns),
            ],
            ignore_index=True,
        ).drop_duplicates("identity")
        deleted = warehouse.read_rows(
            DELETED_RECORDS, "id", pushed["contact_id"], ["module", "id", "deleted_time"]
        )
        deleted = deleted[deleted["module"] == "Contacts"]
        flagged = pushed.merge(
            deleted.rename(columns={"id": "contact_id"})[["contact_id", "deleted_time"]],
            on="contact_id",
        )
    if flagged.empty:
        return pd.DataFrame()
    return pd.DataFrame(
        {
            "identity": flagged["identity"].astype("str"),
            "identity_kind": pd.Series([None] * len(flagged), dtype="str"),
            "crm_contact_id": flagged["contact_id"].astype("str"),
            "modified_time": pd.to_datetime(flagged["deleted_time"], utc=True, format="mixed"),
            "crm_deleted": pd.array([True] * len(flagged), dtype="boolean"),
        }
    )
