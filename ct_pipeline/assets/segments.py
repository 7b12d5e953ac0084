"""`profile_attributes`: one row per CleverTap identity, with the attributes teams segment on."""

import dagster as dg
import pandas as pd

from ct_pipeline.assets import schemas
from ct_pipeline.assets.common import (
    OWNERS,
    WAREHOUSE_KIND,
    mask_identity,
    warehouse_table_metadata,
)
from ct_pipeline.assets.identity import IDENTITIES_TABLE, MEMBERS_TABLE, PUSH, duplicate_profiles
from ct_pipeline.assets.zoho import DELETED_RECORDS, TABLES, zoho_cases, zoho_contacts, zoho_deals
from ct_pipeline.config import FieldMapping, SyncConfig, SyncConfigResource, load_sync_config
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.warehouse.state import PUSHED_PROFILES

GROUP = "segments"
TABLE = "profile_attributes"

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
    members = warehouse.read_table(MEMBERS_TABLE)
    identities = warehouse.read_table(IDENTITIES_TABLE)
    contacts = warehouse.read_table(TABLES["Contacts"])
    deals = warehouse.read_table(TABLES["Deals"])
    cases = warehouse.read_table(TABLES["Cases"])

    profiles = build_profile_attributes(members, identities, contacts, deals, cases, config)
    tombstones = _deleted_contact_profiles(warehouse, config)
    # An identity still claimed by a live record keeps that record's profile.
    if len(tombstones):
        tombstones = tombstones[~tombstones["identity"].isin(profiles["identity"])]
    table = pd.concat([profiles, tombstones], ignore_index=True) if len(tombstones) else profiles
    warehouse.replace_table(TABLE, table, key=["identity"])

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
    profile["has_open_escalation"] = profile["crm_contact_id"].isin(escalated)
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


def _deleted_contact_profiles(warehouse: WarehouseResource, config: SyncConfig) -> pd.DataFrame:
    """`crm_deleted = true` for pushed profiles whose Contact was deleted (policy `flag`)."""
    if config.clevertap.deleted_contacts != "flag":
        return pd.DataFrame()
    if not (warehouse.table_exists(DELETED_RECORDS) and warehouse.table_exists(PUSHED_PROFILES)):
        return pd.DataFrame()
    flagged = warehouse.read_sql(
        f"SELECT p.identity, p.contact_id, d.deleted_time FROM {PUSHED_PROFILES} p "
        f"JOIN {DELETED_RECORDS} d ON d.id = p.contact_id AND d.module = 'Contacts'"
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
