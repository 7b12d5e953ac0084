"""Raw Zoho CRM records, one table per module, kept in step incrementally or by full refresh."""

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pandas as pd

from ct_pipeline.assets import schemas
from ct_pipeline.assets.common import (
    WAREHOUSE_KIND,
    ZOHO_POOL,
    is_full_refresh,
    warehouse_table_metadata,
)
from ct_pipeline.config import SyncConfigResource
from ct_pipeline.warehouse import WarehouseResource, WarehouseTransaction
from ct_pipeline.warehouse.state import (
    DEAL_CHANGES,
    PERSON_CHANGES,
    queue_changes,
    read_cursor,
    request_full_derivation,
    write_cursor,
)
from ct_pipeline.zoho import ZohoCRMResource

GROUP = "zoho"
DELETED_RECORDS = "zoho_deleted_records"
LOOKUP_FIELDS = ("Owner", "Account_Name", "Contact_Name", "Related_To")

# The fields each module is read with, beyond those the profile mappings add. Lookups come back
# flattened as <Field>_id and <Field>_name.
MODULE_FIELDS: dict[str, list[str]] = {
    "Contacts": [
        "First_Name",
        "Last_Name",
        "Full_Name",
        "Email",
        "Secondary_Email",
        "Phone",
        "Mobile",
        "Mailing_City",
        "Owner",
        "Account_Name",
        "Created_Time",
        "Modified_Time",
    ],
    "Leads": [
        "Full_Name",
        "Email",
        "Phone",
        "Mobile",
        "City",
        "Lead_Status",
        "Converted__s",
        "Owner",
        "Created_Time",
        "Modified_Time",
    ],
    "Deals": [
        "Deal_Name",
        "Pipeline",
        "Stage",
        "Amount",
        "Closing_Date",
        "Product_Category",
        "Contact_Name",
        "Owner",
        "Created_Time",
        "Modified_Time",
    ],
    "Cases": [
        "Case_Number",
        "Subject",
        "Status",
        "Priority",
        "Related_To",
        "Owner",
        "Created_Time",
        "Modified_Time",
    ],
}
TABLES = {module: f"zoho_{module.lower()}" for module in MODULE_FIELDS}
# Modules whose records are people: read with the phone and email fields identities come from.
PERSON_MODULES = ("Contacts", "Leads")
# The Contact a Deal or Case belongs to: a change to one changes that Contact's profile (deal
# count, latest open stage, escalation flag). Indexed so an incremental run finds them by Contact.
CONTACT_REFERENCES = {"Deals": "Contact_Name_id", "Cases": "Related_To_id"}
SAME_SECOND_GUARD = pd.Timedelta(minutes=5)
# Modified_Time has one-second resolution.
ONE_SECOND = timedelta(seconds=1)
SETTLED_KEY = "zoho.{module}.cursor_settled"
# A hash of each stored record, by which a full re-read finds the records that changed.
ROW_HASH = "ct_row_hash"
# Set once Zoho was seen returning a record stamped with the If-Modified-Since second itself.
INCLUSIVE_KEY = "zoho.if_modified_since_includes_its_second"


def requested_fields(module: str, mapped_fields: list[str]) -> list[str]:
    """The Zoho fields to read: the module's own, plus mapped fields (lookups by their base)."""
    fields = list(MODULE_FIELDS[module])
    for name in mapped_fields:
        base = _lookup_base(name)
        if base not in fields:
            fields.append(base)
    return fields


def _lookup_base(name: str) -> str:
    for lookup in LOOKUP_FIELDS:
        if name in (f"{lookup}_id", f"{lookup}_name", f"{lookup}_email"):
            return lookup
    return name


def _module_asset(module: str) -> dg.AssetsDefinition:
    table = TABLES[module]

    @dg.asset(
        name=table,
        group_name=GROUP,
        kinds={"zoho", "pandas", WAREHOUSE_KIND},
        pool=ZOHO_POOL,
        owners=["team:data-engineering"],
        metadata={
            "dagster/column_schema": schemas.zoho_table_schema(module, MODULE_FIELDS[module])
        },
        description=(
            f"Zoho CRM {module}, one row per record id, as the CRM holds them now, with "
            "ct_row_hash, a hash of the record's fields. Incremental runs read what changed "
            "since the stored Modified_Time cursor and apply deletions; a full refresh (the "
            "nightly job) re-reads the module, with Bulk Read when large, and applies the "
            "records whose hash differs and the deletions."
        ),
    )
    def _extract(
        context: dg.AssetExecutionContext,
        zoho: ZohoCRMResource,
        warehouse: WarehouseResource,
        sync_config: SyncConfigResource,
    ) -> dg.MaterializeResult:
        usage_before = zoho.usage()
        config = sync_config.load()
        if module not in config.zoho.modules:
            context.log.info(f"{module} is not in zoho.modules; nothing read")
            return dg.MaterializeResult(metadata={"skipped": True})
        mapped = [m.zoho for m in config.profile.mappings] if module == "Contacts" else []
        if module in PERSON_MODULES:
            # The phone and email fields identities are chosen from and duplicates linked by.
            mapped += list(config.identity.linked_fields())
        fields = requested_fields(module, mapped)
        unknown = zoho.unknown_fields(module, fields)
        if unknown:
            # Not read, so the mapped-fields check fails naming them and nothing is pushed.
            context.log.warning(f"{module} has no field(s) {', '.join(unknown)} in Zoho")
            fields = [name for name in fields if name not in unknown]
        started = datetime.now(UTC)
        cursor = read_cursor(warehouse, module)
        full = is_full_refresh(context) or cursor is None or not warehouse.table_exists(table)

        if full:
            summary = _full_refresh(context, zoho, warehouse, module, table, fields, started)
        else:
            summary = _incremental(zoho, warehouse, module, table, fields, cursor, started)
        context.log.info(
            f"{module}: {summary['records read']} read, {summary['records changed']} "
            f"changed, {summary['records deleted']} deleted "
            f"({'full refresh' if full else 'incremental'})"
        )
        return dg.MaterializeResult(
            metadata={
                **summary,
                "mode": "full refresh" if full else "incremental",
                "fields missing in Zoho": ", ".join(unknown),
                **usage_metadata(usage_before, zoho.usage()),
                **warehouse_table_metadata(warehouse, table),
            }
        )

    return _extract


def usage_metadata(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """The Zoho API calls (token requests aside) and estimated credits one asset spent, from the
    resource's usage before and after it, and the day's credits Zoho says are left (it says so
    once half of them are used)."""

    def api_calls(usage: dict[str, Any]) -> int:
        return sum(count for kind, count in usage["calls"].items() if kind != "token")

    spent = {
        "zoho calls": api_calls(after) - api_calls(before),
        "zoho credits": after["total_credits"] - before["total_credits"],
    }
    if after.get("credits_remaining") is not None:
        spent["zoho credits remaining"] = int(after["credits_remaining"])
    return spent


def _full_refresh(
    context: dg.AssetExecutionContext,
    zoho: ZohoCRMResource,
    warehouse: WarehouseResource,
    module: str,
    table: str,
    fields: list[str],
    started: datetime,
) -> dict[str, int]:
    """Re-read the whole module and apply what differs from the stored table: changed and new
    records are upserted and queued for derivation, vanished ones deleted. Where the table's
    columns changed (a mapping was added or removed) or it has no row hashes yet, the table is
    replaced and everything is derived again."""
    records = with_row_hashes(zoho.read_all(module, fields))
    stored_columns = warehouse.column_names(table)
    hashed = [ROW_HASH] if ROW_HASH in stored_columns else []
    stored = warehouse.read_table(table, columns=["id", *hashed]) if stored_columns else None
    vanished = sorted(set(stored["id"]) - set(records["id"])) if stored is not None else []
    comparable = set(stored_columns) == set(records.columns)
    cursor = _max_time(records["Modified_Time"]) if len(records) else started
    with warehouse.transaction() as tx:
        if stored is None or not comparable:
            tx.replace_table(table, records, key=["id"])
            reference = CONTACT_REFERENCES.get(module)
            if reference in records.columns:
                tx.create_index(table, [reference])
            request_full_derivation(tx)
            changed = len(records)
        else:
            differs = records[ROW_HASH] != records["id"].map(stored.set_index("id")[ROW_HASH])
            updates = records[differs.to_numpy(dtype=bool)]
            _queue_for_derivation(tx, module, table, updates, vanished, only_modified=False)
            tx.upsert(table, updates, key=["id"])
            tx.delete_keys(table, "id", vanished)
            tx.delete_keys(DELETED_RECORDS, "id", updates["id"].tolist())
            changed = len(updates)
        _record_deletions(tx, module, pd.DataFrame({"id": vanished, "deleted_time": started}))
        write_cursor(tx, module, cursor)
        _write_settled(tx, module, settled(cursor, started))
        write_cursor(tx, module, started, kind="deleted")
    context.log.debug(f"{module}: cursor now {cursor.isoformat()}")
    return {
        "records read": len(records),
        "records changed": changed,
        "records deleted": len(vanished),
    }


def with_row_hashes(records: pd.DataFrame) -> pd.DataFrame:
    """`records` with ROW_HASH: a 64-bit hash of every other column, the same for equal
    records whether the records API or Bulk Read gave them."""
    columns = sorted(column for column in records.columns if column != ROW_HASH)
    normalised = {}
    for column in columns:
        values = records[column]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            values = values.dt.tz_convert("UTC").dt.as_unit("us")
        normalised[column] = values
    hashes = pd.util.hash_pandas_object(pd.DataFrame(normalised), index=False)
    return records.assign(**{ROW_HASH: hashes.to_numpy().view("int64")})


def _incremental(
    zoho: ZohoCRMResource,
    warehouse: WarehouseResource,
    module: str,
    table: str,
    fields: list[str],
    cursor: datetime,
    started: datetime,
) -> dict[str, int]:
    # A settled cursor second was read whole; reading it again would make every run re-read
    # whatever one mass update stamped with that second, in a module nobody has touched since.
    was_settled = warehouse.get_state(SETTLED_KEY.format(module=module)) == "true"
    since = cursor + ONE_SECOND if was_settled else cursor
    inclusive = warehouse.get_state(INCLUSIVE_KEY) == "true"
    read = zoho.read_records(module, fields, modified_since=since, inclusive_since=inclusive)
    new_cursor = read.cursor if len(read.records) and read.cursor is not None else cursor
    deleted_since = read_cursor(warehouse, module, kind="deleted") or cursor
    deleted = zoho.read_deleted(module, since=deleted_since)
    gone = _not_restored(deleted, read.records)
    new_cursor = before_deleted_during_read(new_cursor, gone, read.records)
    records = with_row_hashes(read.records)
    with warehouse.transaction() as tx:
        _queue_for_derivation(tx, module, table, records, deleted["id"].tolist())
        tx.upsert(table, records, key=["id"])
        removed = tx.delete_keys(table, "id", gone["id"].tolist())
        # A record read now is live in Zoho, whatever an earlier run saw deleted.
        if len(read.records):
            tx.delete_keys(DELETED_RECORDS, "id", read.records["id"].tolist())
        _record_deletions(tx, module, gone[["id", "deleted_time"]])
        write_cursor(tx, module, new_cursor)
        if read.server_inclusive and not inclusive:
            tx.set_state(INCLUSIVE_KEY, "true")
        _write_settled(
            tx, module, settled(new_cursor, started) or (was_settled and not len(read.records))
        )
        if len(deleted):
            write_cursor(tx, module, _max_time(deleted["deleted_time"]), kind="deleted")
    return {
        "records read": len(read.records),
        "records changed": len(read.records),
        "records deleted": removed,
    }


def before_deleted_during_read(
    cursor: datetime, gone: pd.DataFrame, records: pd.DataFrame
) -> datetime:
    """The cursor, moved back before any record that was read and then deleted. Deleting a
    record the read had paged past shifts the records behind it forward by one, and one of them
    is never served (`ct_pipeline.zoho.records`); from the second before the deleted record's
    Modified_Time the next run reads them again."""
    if gone.empty or records.empty:
        return cursor
    read_then_deleted = records[records["id"].isin(gone["id"])]
    if read_then_deleted.empty:
        return cursor
    earliest = pd.to_datetime(read_then_deleted["Modified_Time"], utc=True).min().floor("s")
    return min(cursor, (earliest - ONE_SECOND).to_pydatetime())


def settled(cursor: datetime, read_started: datetime) -> bool:
    """Whether a read that started at `read_started` saw every record Zoho will ever stamp with
    the cursor's second: Zoho stamps Modified_Time with the moment of the edit, so a second
    further back than SAME_SECOND_GUARD (which also absorbs clock skew and indexing lag)
    receives no new record. The next incremental read may then start after it."""
    return pd.Timestamp(cursor) < pd.Timestamp(read_started) - SAME_SECOND_GUARD


def _write_settled(tx: WarehouseTransaction, module: str, value: bool) -> None:
    tx.set_state(SETTLED_KEY.format(module=module), "true" if value else "false")


def _not_restored(deleted: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """The deletions still in force: a record restored from the recycle bin, or re-created with
    its id, after it was deleted comes back in `records` modified after its deletion time."""
    if deleted.empty or records.empty:
        return deleted
    modified = pd.to_datetime(records.set_index("id")["Modified_Time"], utc=True)
    came_back = deleted["id"].map(modified) >= pd.to_datetime(deleted["deleted_time"], utc=True)
    return deleted[~came_back.fillna(False).astype(bool)]


def _queue_for_derivation(
    tx: WarehouseTransaction,
    module: str,
    table: str,
    records: pd.DataFrame,
    deleted: list[str],
    only_modified: bool = True,
) -> None:
    """Queue the person records these changes touch, before the rows are overwritten: the
    records themselves (Contacts, Leads), or the Contacts a Deal or Case belonged to before and
    after the change. With `only_modified`, a record read again with the Modified_Time already
    stored (Zoho's cursor is inclusive, so its last second is read again) has not changed and is
    not queued; a full re-read passes only records whose content changed, and queues them all
    (a renamed Account changes its Contacts without touching their Modified_Time)."""
    reference = CONTACT_REFERENCES.get(module)
    if module not in ("Contacts", "Leads") and reference is None:
        return
    ids = [*map(str, records["id"])] if len(records) else []
    columns = ["id", "Modified_Time"] + ([reference] if reference else [])
    before = tx.read_rows(table, "id", [*ids, *map(str, deleted)], columns=columns)
    if len(records) and only_modified:
        stored = pd.to_datetime(before.set_index("id")["Modified_Time"], utc=True)
        modified = pd.to_datetime(records["Modified_Time"], utc=True)
        # An edit in the same second as the stored one leaves Modified_Time equal: recent
        # records are queued whatever their time says.
        recent = modified >= pd.Timestamp.now(tz="UTC") - SAME_SECOND_GUARD
        # Reindexed, not mapped: a read of only new records finds no stored row at all.
        previous = stored.reindex(records["id"].astype("str").to_numpy())
        previous.index = records.index
        unchanged = (previous == modified) & ~recent
        records = records[~unchanged.fillna(False).to_numpy(dtype=bool)]
        before = before[before["id"].isin([*records["id"].astype("str"), *map(str, deleted)])]
    if module in ("Contacts", "Leads"):
        queue_changes(tx, PERSON_CHANGES, module, [*records["id"].astype("str"), *deleted])
        return
    contacts = before[reference].tolist() if reference in before else []
    if reference in records.columns:
        contacts += records[reference].tolist()
    queue_changes(tx, PERSON_CHANGES, "Contacts", contacts)
    if module == "Deals" and len(records):
        queue_changes(tx, DEAL_CHANGES, module, records["id"].astype("str").tolist())


def _record_deletions(tx, module: str, deleted: pd.DataFrame) -> None:
    if deleted.empty:
        return
    rows = deleted.assign(module=module)[["module", "id", "deleted_time"]]
    rows["deleted_time"] = pd.to_datetime(rows["deleted_time"], utc=True)
    tx.upsert(DELETED_RECORDS, rows, key=["module", "id"])


def _max_time(values: pd.Series) -> datetime:
    return pd.to_datetime(values, utc=True).max().to_pydatetime()


zoho_contacts = _module_asset("Contacts")
zoho_leads = _module_asset("Leads")
zoho_deals = _module_asset("Deals")
zoho_cases = _module_asset("Cases")

ZOHO_ASSETS = [zoho_contacts, zoho_leads, zoho_deals, zoho_cases]
