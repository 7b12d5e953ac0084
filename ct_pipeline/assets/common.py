"""What the asset modules share: pool names, run tags, masking and table metadata."""

import dagster as dg

from ct_pipeline.warehouse import WarehouseResource

ZOHO_POOL = "zoho_api"
CLEVERTAP_POOL = "clevertap_api"
# The Dagster kind of the warehouse, fixed when the code location loads.
WAREHOUSE_KIND = WarehouseResource().kind

# Run tags that steer a run. The nightly job sets FULL_REFRESH_TAG; any run may set DRY_RUN_TAG,
# or FULL_DERIVATION_TAG to rebuild every derived table instead of what changed.
FULL_REFRESH_TAG = "ct_pipeline/full_refresh"
DRY_RUN_TAG = "ct_pipeline/dry_run"
FULL_DERIVATION_TAG = "ct_pipeline/full_derivation"
SYNC_TAG = "ct_pipeline/sync"
OWNERS = ["team:data-engineering"]


def is_full_refresh(context: dg.AssetExecutionContext) -> bool:
    """Whether this run re-reads the Zoho modules instead of reading what changed."""
    return _tag_is_true(context, FULL_REFRESH_TAG)


def is_full_derivation(context: dg.AssetExecutionContext) -> bool:
    """Whether this run rebuilds the derived tables whole, whatever changed."""
    return _tag_is_true(context, FULL_DERIVATION_TAG)


def is_dry_run(context: dg.AssetExecutionContext) -> bool:
    """Whether this run builds and checks everything but sends nothing to CleverTap."""
    return _tag_is_true(context, DRY_RUN_TAG)


def _tag_is_true(context: dg.AssetExecutionContext, tag: str) -> bool:
    return str(context.run.tags.get(tag, "")).lower() in ("1", "true", "yes")


def warehouse_table_metadata(warehouse: WarehouseResource, table: str) -> dict[str, object]:
    """Row count and location of a warehouse table, for an asset's materialisation."""
    count = 0
    if warehouse.table_exists(table):
        count = int(warehouse.read_sql(f"SELECT COUNT(*) AS n FROM {table}")["n"].iloc[0])
    return {"dagster/row_count": count, "warehouse table": table}


def mask_identity(value: str | None) -> str:
    """A phone or email masked for display: `+91******3210`, `r*****@example.com`."""
    if value is None or value != value or value == "":
        return ""
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}{'*' * max(len(local) - 1, 1)}@{domain}"
    if value.startswith("+") and len(value) > 7:
        return f"{value[:3]}{'*' * (len(value) - 7)}{value[-4:]}"
    return "*" * max(len(value) - 4, 1) + value[-4:]
