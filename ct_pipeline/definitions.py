"""The ct_pipeline code location: the one Definitions object Dagster loads."""

import dagster as dg

from ct_pipeline.warehouse import WarehouseResource

defs = dg.Definitions(
    resources={
        "warehouse": WarehouseResource(),
    },
)
