"""The SQL warehouse resource and the sync state it keeps."""

from ct_pipeline.warehouse.resource import (
    WAREHOUSE_URL_ENV_VAR,
    WarehouseResource,
    WarehouseTransaction,
    default_warehouse_url,
)

__all__ = [
    "WAREHOUSE_URL_ENV_VAR",
    "WarehouseResource",
    "WarehouseTransaction",
    "default_warehouse_url",
]
